/**
 * What the block-wise weight searches score (spaces/weights/ga.ts `blockMetricOf`, blockobjective.ts) comes from
 * the metric registry's `blockSearch`: the run's `--metric` is taken or refused in the words runs have always
 * used, and a metric registered from this file alone as scored on the suffix graph is taken by `blockMetricOf`,
 * joins the refusal's list, and has block l's candidates scored from the hidden states exactly as perplexity's.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { TokenBatch } from '../../src/engine/runner.js';
import { GenepruneError } from '../../src/errors.js';
import { prunableMatrices } from '../../src/masks/weights.js';
import { batches, makeWindows } from '../../src/metrics/perplexity.js';
import { metricEntry, registerMetric } from '../../src/metrics/registry.js';
import { randomLlamaSpec } from '../../src/model/random.js';
import type { BleuObjectiveOptions, QualityMetric } from '../../src/search/objective.js';
import { randomGenome } from '../../src/search/operators.js';
import type { WeightBaselineInput } from '../../src/spaces/weights/baselines.js';
import { type BlockMetric, createBlockObjective } from '../../src/spaces/weights/blockobjective.js';
import { advanceHidden } from '../../src/spaces/weights/blockpasses.js';
import { blockLayout } from '../../src/spaces/weights/blockspace.js';
import { blockMetricOf } from '../../src/spaces/weights/ga.js';
import { createRng } from '../../src/util/rng.js';

// blockMetricOf reads only the run's metric and BLEU options.
const input = (metric?: string, bleu?: BleuObjectiveOptions) =>
  ({ metric, ...(bleu ? { bleu } : {}) }) as unknown as WeightBaselineInput;
const refused = (words: string) => (e: unknown) => {
  assert.ok(e instanceof GenepruneError, String(e));
  assert.equal(e.oneLine(), `--metric: ${words}`);
  return true;
};

describe('the block searches’ metric', () => {
  test('ppl (or none) is the default, bleu brings its task, the others are refused in one line', () => {
    const bleu = { task: { prompts: [] } } as unknown as BleuObjectiveOptions;
    assert.deepEqual(blockMetricOf(input()), {});
    assert.deepEqual(blockMetricOf(input('ppl')), {});
    assert.deepEqual(blockMetricOf(input('bleu', bleu)), { metric: 'bleu', bleu });
    assert.deepEqual(blockMetricOf(input('bleu')), { metric: 'bleu' });
    for (const m of ['kl', 'mc-accuracy', 'accuracy', 'macro-f1']) {
      assert.throws(
        () => blockMetricOf(input(m)),
        refused(`block-wise searches score ppl, bleu, exact-match or pass@1, not ${m}`),
      );
    }
  });
});

describe('a metric registered as scored on the suffix graph', () => {
  const toy = { ...metricEntry('ppl'), name: 'toy-suffix', label: 'toy' };
  let unregister = () => {};
  before(() => {
    unregister = registerMetric(toy);
  });
  after(() => unregister());

  test('is taken by blockMetricOf and joins the refusal’s list', () => {
    assert.deepEqual(blockMetricOf(input('toy-suffix')), { metric: 'toy-suffix' });
    assert.throws(
      () => blockMetricOf(input('kl')),
      refused('block-wise searches score ppl, bleu, exact-match, pass@1 or toy-suffix, not kl'),
    );
  });

  test('has block 1’s candidates scored from the hidden states, as perplexity’s are', async () => {
    const spec = randomLlamaSpec({
      hiddenSize: 16,
      numLayers: 2,
      numHeads: 2,
      numKvHeads: 1,
      intermediateSize: 24,
      vocabSize: 32,
      maxPositions: 16,
      seed: 8,
      scale: 4,
    });
    const matrices = prunableMatrices(spec);
    const stream = Array.from({ length: 120 }, (_, i) => (i * 5 + (i >> 2)) % 32);
    const list: TokenBatch[] = [...batches(makeWindows(stream, 16, 64, 'test tokens'), 2)];
    const rng = createRng(3);
    const fixed = new Map(
      matrices
        .filter((m) => m.layer === 0)
        .map((m) => [m.role, randomGenome(m.rows * m.cols, Math.round(0.3 * m.rows * m.cols), rng)]),
    );
    const hidden = await advanceHidden(spec, 0, list, undefined, fixed);
    const block = blockLayout(matrices, 1);
    const population = [0.1, 0.5].map((s, i) =>
      randomGenome(block.genes, Math.round(s * block.genes), createRng(i)),
    );
    const scores = async (metric: string) => {
      const objective = await createBlockObjective({
        spec,
        block,
        batches: list,
        hidden,
        metric: metric as BlockMetric,
        engine: {},
        fixed,
      });
      try {
        const many = await objective.evaluateMany(population);
        return { qualities: many.map((r) => r.evaluation.quality), passes: objective.forwardPasses() };
      } finally {
        await objective.release();
      }
    };
    const ppl = await scores('ppl' satisfies QualityMetric);
    assert.deepEqual(await scores('toy-suffix'), ppl);
    assert.equal(ppl.passes, 2 * list.length);
    assert.notEqual(ppl.qualities[0], ppl.qualities[1], 'the masks matter');
  });
});
