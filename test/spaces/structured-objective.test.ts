import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createRunner } from '../../src/engine/runner.js';
import { structuredMasksOf } from '../../src/masks/structured.js';
import { evaluatePerplexity, makeWindows } from '../../src/metrics/perplexity.js';
import { parameterCount } from '../../src/model/cost.js';
import { randomLlamaSpec } from '../../src/model/random.js';
import { createObjective } from '../../src/search/objective.js';
import { createPlanSpace, levelObjective } from '../../src/spaces/structured/planobjective.js';
import { createStructuredSpace } from '../../src/spaces/structured/space.js';
import { createRng } from '../../src/util/rng.js';

const spec = randomLlamaSpec({
  hiddenSize: 16,
  numLayers: 2,
  numHeads: 4,
  numKvHeads: 2,
  intermediateSize: 32,
  vocabSize: 40,
  maxPositions: 32,
  seed: 3,
  scale: 20,
});
const rng = createRng(9);
const stream = Array.from({ length: 200 }, () => rng.nextInt(40));

describe('the structured plan objective', () => {
  it('scores a genome as the perplexity of its plan, and a skipped block whatever its levels once', async () => {
    const total = parameterCount(spec);
    const space = createStructuredSpace(spec, total, { kind: 'joint', widthStep: 8 });
    const plans = await createObjective(spec, createPlanSpace(spec.config, total, space.keptParametersOf), {
      stream,
      context: 16,
      metric: 'ppl',
    });
    const objective = levelObjective(plans, space);
    try {
      // Layer 0: 3 heads, width level 2 (16 channels); layer 1: attention skipped, MLP runs at full width.
      const a = Uint8Array.from([3, 2, 1, 1, 4, 4, 0, 1]);
      const b = Uint8Array.from([3, 2, 1, 1, 1, 4, 0, 1]); // only the skipped block's head level differs
      const [ra, rb] = await objective.evaluateMany([a, b]);
      assert.equal(ra.cached, false);
      assert.equal(rb.cached, true);
      assert.equal(rb.evaluation.quality, ra.evaluation.quality);
      assert.equal(plans.evaluations(), 1);
      // Independent: the same windows through a runner fed the plan's masks directly.
      const runner = await createRunner(spec, { output: 'nll', structuredMasks: true });
      try {
        const { perplexity } = await evaluatePerplexity(runner, makeWindows(stream, 16), {
          masks: structuredMasksOf(spec.config, space.plan(a)),
        });
        assert.ok(Math.abs(perplexity - ra.evaluation.quality) < 1e-6 * perplexity, `${perplexity}`);
        const dense = await evaluatePerplexity(runner, makeWindows(stream, 16), {});
        assert.notEqual(dense.perplexity, perplexity);
      } finally {
        await runner.release();
      }
      // A genome whose attention runs is another plan: evaluated anew.
      const c = Uint8Array.from([3, 2, 1, 1, 1, 4, 1, 1]);
      const [rc] = await objective.evaluateMany([c]);
      assert.equal(rc.cached, false);
      assert.notEqual(rc.evaluation.quality, ra.evaluation.quality);
    } finally {
      await objective.release();
    }
  });
});
