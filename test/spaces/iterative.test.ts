/**
 * Iterative pruning on the real stories260K: a pruned export (5 7 5 7 6 query heads) is searched again with one
 * gene per head it still has, by every method, and the mask found there exports to a twice-pruned model whose
 * logits equal the once-pruned model's under that mask.
 */
import assert from 'node:assert/strict';
import { cpSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createRunner } from '../../src/engine/runner.js';
import { geneCount, headMaskOf } from '../../src/masks/heads.js';
import { readDataset } from '../../src/metrics/data.js';
import { tokenizeDocuments } from '../../src/metrics/perplexity.js';
import { loadModelSpec } from '../../src/model/load.js';
import { openModel } from '../../src/model/open.js';
import type { ModelSpec } from '../../src/model/spec.js';
import { exportModel } from '../../src/prune/export.js';
import { runHeadSearch } from '../../src/spaces/heads/search.js';
import { HEAD_METHODS, type HeadSearchSettings } from '../../src/spaces/heads/settings.js';
import { tempDir } from '../checkpoint/helpers.js';
import { assertOneLineError, assertUnchanged, runCli, snapshot } from '../helpers/cli.js';
import { CALIB, EVAL, MODEL, sharedPath, skipUnlessShared } from '../shared.js';

const tmp = tempDir('geneprune-iterative-');
after(tmp.cleanup);

const skip = skipUnlessShared(MODEL, CALIB, EVAL);
const PRUNED_HEADS = [5, 7, 5, 7, 6];
/** Whole searches: more time than runCli's default. */
const cli = (args: string[]) => runCli(args, { timeout: 300_000 });

const readJson = (path: string) => JSON.parse(readFileSync(path, 'utf8'));

/** Every removed `L:H` names a head the model has. */
function assertRemovedExist(removed: string[], heads: number[]): void {
  for (const r of removed) {
    const [l, h] = r.split(':').map(Number);
    assert.ok(
      l < heads.length && h < heads[l],
      `${r} is not a head of a model with ${heads.join(' ')} heads`,
    );
  }
}

const searchArgs = (model: string, out: string, extra: string[]) => [
  'heads',
  '--model',
  model,
  '--calib',
  sharedPath(CALIB)!,
  '--eval',
  sharedPath(EVAL)!,
  '--target-sparsity',
  '0.25',
  '--calib-tokens',
  '1024',
  '--eval-tokens',
  '1024',
  '--seed',
  '3',
  '--quiet',
  '--out',
  out,
  ...extra,
];

describe('iterative pruning of stories260K', { skip }, () => {
  const once = join(tmp.dir, 'stories260K-25');
  before(async () => {
    // 10 of 40 heads removed unevenly: layers keep 5 7 5 7 6.
    const removed = [[0, 3, 6], [5], [1, 2, 7], [4], [0, 7]];
    const genome = new Uint8Array(40).fill(1);
    removed.forEach((hs, l) => {
      for (const h of hs) genome[l * 8 + h] = 0;
    });
    const source = await openModel(sharedPath(MODEL)!);
    await exportModel({
      spec: source.spec,
      tokenizerPath: source.tokenizerPath,
      genome,
      out: once,
      format: 'hf',
    });
  });

  test('why: heads on a model with per-layer head counts has one gene per existing head', () => {
    const run = join(tmp.dir, 'random');
    const r = cli(searchArgs(once, run, ['--method', 'random']));
    assert.equal(r.code, 0, r.stderr);
    // 25 % of the 30 heads present, not of 40 (which counted heads removed already).
    assert.match(r.stdout, /removed {6}8\/30 heads/);
    const mask = readJson(join(run, 'mask.json'));
    assert.equal(mask.keep.length, 30);
    assert.deepEqual(mask.headsPerLayer, PRUNED_HEADS);
    assert.deepEqual(mask.model.shape.queryHeads, PRUNED_HEADS);
    assert.equal(mask.removed.length, 8);
    assertRemovedExist(mask.removed, PRUNED_HEADS);
    assert.deepEqual(readJson(join(run, 'config.json')).model.shape.queryHeads, PRUNED_HEADS);
  });

  test('a GA mask found on the pruned export exports to a model equal to the masked pruned one', async () => {
    const run = join(tmp.dir, 'ga');
    const r = cli(searchArgs(once, run, ['--population', '6', '--generations', '2']));
    assert.equal(r.code, 0, r.stderr);
    const maskPath = join(run, 'mask.json');
    const mask = readJson(maskPath);
    const onceSpec = await loadModelSpec(once);
    assert.equal(mask.keep.length, geneCount(onceSpec.config));
    assert.equal(mask.keep.length, 30);
    assert.equal(mask.removed.length, 8, 'the budget GA holds round(0.25 × 30) removed');
    assertRemovedExist(mask.removed, PRUNED_HEADS);

    const twice = join(tmp.dir, 'stories260K-25-25');
    const exported = cli(['export', '--model', once, '--mask', maskPath, '--out', twice, '--format', 'hf']);
    assert.equal(exported.code, 0, exported.stderr);
    const twiceSpec = await loadModelSpec(twice);
    assert.equal(geneCount(twiceSpec.config), 22);
    assert.equal(twiceSpec.provenance?.lineage.length, 2, 'both prunings are on record');
    assert.equal(twiceSpec.provenance?.lineage[1].source.path, once);

    const data = await readDataset(sharedPath(EVAL)!);
    const tokenizer = (await openModel(once)).tokenizer;
    const tokens = tokenizeDocuments(data.documents, tokenizer).slice(0, 96);
    const logits = async (spec: ModelSpec, headMask?: Float32Array) => {
      const runner = await createRunner(spec, { output: 'logits' });
      const ids = BigInt64Array.from(tokens.map(BigInt));
      const out = await runner.run({ batch: 1, seq: tokens.length, ids }, headMask ? { headMask } : {});
      await runner.release();
      return out;
    };
    const masked = await logits(onceSpec, headMaskOf(onceSpec.config, Uint8Array.from(mask.keep)));
    const pruned = await logits(twiceSpec);
    let d = 0;
    for (let i = 0; i < masked.length; i++) d = Math.max(d, Math.abs(masked[i] - pruned[i]));
    assert.ok(d <= 1e-4, `max abs logit difference ${d}`);

    // The first mask is for the grandparent: refused on the twice-pruned model as well.
    const first = cli(['eval', '--model', twice, '--mask', maskPath, '--data', sharedPath(EVAL)!]);
    assert.match(first.stderr, /this model is .*stories260K-25 pruned with mask sha256 [0-9a-f]{16}/);
  });

  test('--resume refuses a run whose config now names another model, saying which shape it was for', () => {
    const run = join(tmp.dir, 'moved');
    cpSync(join(tmp.dir, 'ga'), run, { recursive: true });
    const configPath = join(run, 'config.json');
    const config = readJson(configPath);
    writeFileSync(
      configPath,
      JSON.stringify({ ...config, settings: { ...config.settings, model: undefined } }),
    );
    const before = snapshot(run);
    const line = assertOneLineError(
      cli(['heads', '--resume', run, '--quiet']),
      'non-zero',
      'the run is for 5 7 5 7 6 query heads per layer, this model has 8 8 8 8 8',
    );
    assert.ok(line.startsWith(`geneprune: ${configPath}: the run was made with another model`), line);
    assertUnchanged(run, before, 'the run directory is untouched');
  });

  test('every search method runs on the pruned export, over its 30 heads', async () => {
    const settings: HeadSearchSettings = {
      model: once,
      calib: sharedPath(CALIB)!,
      eval: sharedPath(EVAL)!,
      method: 'ga',
      metric: 'ppl',
      targetSparsity: 0.25,
      calibTokens: 512,
      evalTokens: 512,
      promote: 2,
      population: 4,
      generations: 2,
      tournament: 2,
      crossoverRate: 0.9,
      mutationRate: 0.05,
      removalBias: 0,
      sInitial: 0.25,
      fitness: 'budget',
      lambda: 1,
      elitism: 1,
      seedAblation: false,
      regressionSamples: 12,
      seed: 1,
    };
    for (const method of HEAD_METHODS) {
      const run = join(tmp.dir, `all-${method}`);
      const result = await runHeadSearch(run, { ...settings, method });
      assert.equal(result.genes, 30, method);
      const mask = readJson(join(run, 'mask.json'));
      assert.equal(mask.keep.length, 30, method);
      assertRemovedExist(mask.removed, PRUNED_HEADS);
      if (method !== 'nsga') assert.equal(result.removed, 8, method);
    }
  });
});
