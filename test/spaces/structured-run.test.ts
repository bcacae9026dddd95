import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createRunner } from '../../src/engine/runner.js';
import { loadStructuredPlanFile } from '../../src/masks/structuredfile.js';
import { readDataset } from '../../src/metrics/data.js';
import { evaluatePerplexity, makeWindows, tokenizeDocuments } from '../../src/metrics/perplexity.js';
import { parameterCount } from '../../src/model/cost.js';
import { openModel } from '../../src/model/open.js';
import { pruneStructured, zeroStructured } from '../../src/prune/structured.js';
import {
  resumeStructuredSearch,
  runStructuredSearch,
  type StructuredSearchResult,
} from '../../src/spaces/structured/run.js';
import { structuredSearchSettings } from '../../src/spaces/structured/settings.js';
import { CALIB, EVAL, MODEL, sharedPath, skipUnlessShared } from '../shared.js';

const skip = skipUnlessShared(MODEL, CALIB, EVAL);
const settings = (extra: Record<string, unknown> = {}) =>
  structuredSearchSettings({
    model: sharedPath(MODEL)!,
    calib: sharedPath(CALIB)!,
    eval: sharedPath(EVAL)!,
    budget: 'params:0.75',
    widthStep: 16,
    population: 6,
    generations: 3,
    calibTokens: 512,
    scoreTokens: 512,
    evalTokens: 512,
    context: 64,
    ...extra,
  });

describe('geneprune structured runs on stories260K', { skip }, () => {
  const tmp = { dir: mkdtempSync(join(tmpdir(), 'geneprune-structured-')) };
  let first: StructuredSearchResult;
  before(async () => {
    first = await runStructuredSearch(join(tmp.dir, 'a'), settings());
  });
  after(() => rmSync(tmp.dir, { recursive: true, force: true }));

  it('holds the budget for every individual it scored, and keeps what physical removal keeps', async () => {
    const r = first;
    assert.equal(r.space, 'joint');
    assert.ok(r.budget.cost <= r.budget.limit);
    assert.equal(r.budget.limit, 0.75 * r.totalParameters);
    const model = await openModel(sharedPath(MODEL));
    assert.equal(r.keptParameters, parameterCount(pruneStructured(model.spec, r.plan)));
    const logged = readFileSync(join(r.runDir, 'evals.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    assert.equal(logged.length, 6 * 3);
    for (const e of logged)
      assert.ok(e.keptParameters <= r.budget.limit, `${e.genome} keeps ${e.keptParameters}`);
    assert.ok(r.calib.quality > 0 && r.calib.denseQuality < 1e-6, 'KL to the dense model');
    // The plan file is the sprune format, read back against the model.
    const file = await loadStructuredPlanFile(r.planFile, model.spec);
    assert.deepEqual(file.plan, r.plan);
  });

  it('reports the evaluation perplexity the physically pruned model gives, and the padded one', async () => {
    const model = await openModel(sharedPath(MODEL));
    const stream = tokenizeDocuments((await readDataset(sharedPath(EVAL)!)).documents, model.tokenizer);
    const windows = makeWindows(stream, 64, 512);
    for (const pruned of [pruneStructured(model.spec, first.plan), zeroStructured(model.spec, first.plan)]) {
      const runner = await createRunner(pruned, { output: 'nll' });
      try {
        const { perplexity } = await evaluatePerplexity(runner, windows, {});
        assert.ok(
          Math.abs(perplexity - first.eval.perplexity) < 1e-4 * perplexity,
          `${perplexity} vs ${first.eval.perplexity}`,
        );
      } finally {
        await runner.release();
      }
    }
    assert.ok(first.eval.perplexity > first.eval.densePerplexity);
  });

  it('gives the same result for the same seed', async () => {
    const again = await runStructuredSearch(join(tmp.dir, 'b'), settings());
    assert.equal(again.genome, first.genome);
    assert.equal(again.calib.quality, first.calib.quality);
    assert.equal(again.eval.perplexity, first.eval.perplexity);
  });

  it('resumes a run stopped after a generation to exactly the uninterrupted result', async () => {
    const dir = join(tmp.dir, 'c');
    await assert.rejects(
      runStructuredSearch(dir, settings(), {
        onGeneration: (s) => {
          if (s.generation === 0) throw new Error('stopped');
        },
      }),
      /stopped/,
    );
    const state = JSON.parse(readFileSync(join(dir, 'state.json'), 'utf8'));
    assert.equal(state.generation, 1);
    const resumed = await resumeStructuredSearch(dir);
    assert.equal(resumed.resumed, true);
    assert.equal(resumed.genome, first.genome);
    assert.equal(resumed.calib.quality, first.calib.quality);
    assert.equal(resumed.eval.perplexity, first.eval.perplexity);
    const genomes = (d: string) =>
      readFileSync(join(d, 'evals.jsonl'), 'utf8')
        .trim()
        .split('\n')
        .map((l) => {
          const e = JSON.parse(l);
          return `${e.generation} ${e.genome} ${e.quality}`;
        });
    assert.deepEqual(genomes(dir), genomes(first.runDir));
  });

  it('runs the ShortGPT baseline at the same budget: whole layers skipped, nothing else', async () => {
    const r = await runStructuredSearch(
      join(tmp.dir, 'd'),
      settings({ method: 'shortgpt', budget: 'flops:0.8' }),
    );
    assert.ok(r.budget.cost <= r.budget.limit);
    assert.ok(r.flopRatio <= 0.8);
    assert.equal(r.genome, undefined);
    for (let i = 0; i < r.plan.skipMlp.length; i++) {
      assert.equal(r.plan.skipAttention[i], r.plan.skipMlp[i]);
      assert.equal(r.plan.heads[i].length, 8);
    }
    assert.ok(r.plan.skipMlp.some(Boolean));
  });
});
