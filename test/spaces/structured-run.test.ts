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

describe('--seed-plan: a joint search seeded with a heads-only search plan', { skip }, () => {
  const tmp = { dir: mkdtempSync(join(tmpdir(), 'geneprune-structured-seed-')) };
  after(() => rmSync(tmp.dir, { recursive: true, force: true }));

  it('starts from the seed genome in generation 0 and never ends worse than it', async () => {
    const small = { population: 4, generations: 2, seed: 3, budget: 'params:0.9' };
    const heads = await runStructuredSearch(join(tmp.dir, 'heads'), settings({ ...small, space: 'heads' }));
    const joint = await runStructuredSearch(
      join(tmp.dir, 'joint'),
      settings({ ...small, space: 'joint', seedPlans: [heads.planFile] }),
    );
    // The joint genome of a heads-only plan, written by hand: per layer heads kept . the full width's level
    // (stories260K's MLP width on a 16-wide grid: ceil(W/16) levels above 0) . attention runs . MLP runs.
    const model = await openModel(sharedPath(MODEL));
    const top = Math.ceil(model.spec.config.intermediateSize / 16);
    const seedText = heads.plan.heads.map((h) => `${h.length}.${top}.1.1`).join('/');
    const gen0 = readFileSync(join(joint.runDir, 'evals.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l))
      .filter((e) => e.generation === 0);
    const seeded = gen0.find((e) => e.genome === seedText);
    assert.ok(seeded, `${seedText} not in generation 0: ${gen0.map((e) => e.genome).join(' ')}`);
    // The same plan on the same calibration tokens scores the same; elitism keeps it to the end.
    assert.ok(
      Math.abs(seeded.quality - heads.calib.quality) < 1e-9,
      `${seeded.quality} vs ${heads.calib.quality}`,
    );
    assert.ok(
      joint.calib.quality <= heads.calib.quality + 1e-12,
      `${joint.calib.quality} > ${heads.calib.quality}`,
    );
  });

  it('refuses seeds for a baseline', () => {
    assert.throws(
      () => settings({ method: 'uniform', seedPlans: ['x.json'] }),
      /seeds a GA's initial population; --method uniform searches nothing/,
    );
  });
});
