/**
 * The GenePrune GA over weight masks (`weights --method ga`) on stories260K: a run finishes, its mask file holds
 * exactly the GA's choice (zeros only where the GA turned weights off, the same bytes for the same seed), no
 * block's fixed mask is less fit than its initial population's best, and the layer-wise shortcut is exact: the
 * suffix graph's perplexity of a candidate equals the full graph's with the same masks as inputs.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { createRunner, type TokenBatch } from '../../src/engine/runner.js';
import { perplexityRun, pruneWeights } from '../../src/index.js';
import { unpackBits } from '../../src/masks/bitset.js';
import { loadWeightMaskFile } from '../../src/masks/weightfile.js';
import { prunableMatrices } from '../../src/masks/weights.js';
import { batches, evaluatePerplexity, makeWindows, tokenizePrefix } from '../../src/metrics/perplexity.js';
import { openModel } from '../../src/model/open.js';
import { randomGenome, singlePointCrossover } from '../../src/search/operators.js';
import { createLayerEvaluator } from '../../src/spaces/weights/blockobjective.js';
import { advanceHidden } from '../../src/spaces/weights/blockpasses.js';
import { GA, type GaReport } from '../../src/spaces/weights/ga.js';
import { weightPruneSettings } from '../../src/spaces/weights/settings.js';
import { createRng } from '../../src/util/rng.js';
import { tempDir } from '../checkpoint/helpers.js';
import { assertOneLineError, runCli } from '../helpers/cli.js';
import { CALIB, EVAL, MODEL, sharedPath, skipUnlessShared } from '../shared.js';

const tmp = tempDir('geneprune-ga-');
after(tmp.cleanup);

describe('single-point crossover', () => {
  test('children swap the parents’ tails at one cut, and keep every gene of the pair', () => {
    const a = new Uint8Array(50).fill(1);
    const b = new Uint8Array(50).fill(0);
    const [c1, c2] = singlePointCrossover(a, b, 1, createRng(3));
    const cut = c1.indexOf(0);
    assert.ok(cut >= 1 && cut < 50);
    assert.ok(c1.subarray(0, cut).every((x) => x === 1) && c1.subarray(cut).every((x) => x === 0));
    assert.ok(c2.subarray(0, cut).every((x) => x === 0) && c2.subarray(cut).every((x) => x === 1));
    const [d1, d2] = singlePointCrossover(a, b, 0, createRng(3));
    assert.deepEqual([d1, d2], [a, b]);
  });
});

describe('weights --method ga on stories260K', { skip: skipUnlessShared(MODEL, CALIB, EVAL) }, () => {
  test('--preset geneprune is the paper’s GA; it refuses another --method and unknown presets', () => {
    assert.equal(
      weightPruneSettings({ calib: 'c', eval: 'e', preset: 'geneprune', sparsity: 0.3 }).method,
      'ga',
    );
    assert.throws(
      () =>
        weightPruneSettings({ calib: 'c', eval: 'e', preset: 'geneprune', method: 'wanda', sparsity: 0.3 }),
      /paper's GA \(method ga\); it does not combine with --method wanda/,
    );
    const r = runCli([
      'weights',
      '--calib',
      'c',
      '--eval',
      'e',
      '--out',
      join(tmp.dir, 'x'),
      '--preset',
      'sos',
    ]);
    assertOneLineError(r, 2, '--preset: unknown preset "sos" (known: geneprune)');
  });

  test('a run finishes; its mask is the GA’s, the same for the same seed; no block ends below its start', async () => {
    const common = {
      model: sharedPath(MODEL)!,
      calib: sharedPath(CALIB)!,
      eval: sharedPath(EVAL)!,
      calibTokens: 1024,
      evalTokens: 2048,
      method: 'ga',
      sparsity: 0.2,
      seed: 7,
    };
    const r = perplexityRun(await pruneWeights({ ...common, out: join(tmp.dir, 'ga20') }));
    const report = r.methodReport as GaReport;
    assert.equal(report.layers.length, 5);
    for (const l of report.layers) {
      assert.ok(l.best.fitness >= l.initialBest.fitness, `layer ${l.layer}`);
      assert.ok(l.evaluations >= 10 && l.evaluations <= 20);
      assert.ok(l.best.sparsity >= 0.05 - 1e-4, `layer ${l.layer} sparsity ${l.best.sparsity}`);
    }
    assert.ok(Math.abs(report.densePerplexity! - r.calib.densePerplexity) / r.calib.densePerplexity < 1e-5);
    // The last block's best perplexity is the pruned model's calibration perplexity.
    const last = report.layers[4].best.perplexity!;
    assert.ok(
      Math.abs(last - r.calib.perplexity) / r.calib.perplexity < 1e-5,
      `${last} vs ${r.calib.perplexity}`,
    );

    // The same selection again, outside the run, with the same seed: the same bytes as the file.
    const { spec, tokenizer } = await openModel(sharedPath(MODEL)!);
    const file = await loadWeightMaskFile(r.mask, spec);
    const prefix = await tokenizePrefix(sharedPath(CALIB)!, tokenizer, 1025);
    const matrices = prunableMatrices(spec);
    const again = await GA.select({
      spec,
      matrices,
      sparsity: 0.2,
      rng: createRng(7),
      calibration: { stream: prefix.tokens, context: Math.min(spec.config.maxPositions, 512), tokens: 1024 },
    });
    let off = 0;
    for (const [i, m] of matrices.entries()) {
      const bits = unpackBits(file.masks.get(m.role)!);
      assert.deepEqual(bits, again.keeps[i], m.role);
      off += bits.reduce((a, b) => a + (b ? 0 : 1), 0);
    }
    const total = matrices.reduce((a, m) => a + m.rows * m.cols, 0);
    assert.ok(Math.abs(off / total - r.sparsity.achieved) < 1e-12);
  });

  test('the suffix graph of block l scores a candidate as the full graph does (1e-5)', async () => {
    const { spec, tokenizer } = await openModel(sharedPath(MODEL)!);
    const prefix = await tokenizePrefix(sharedPath(CALIB)!, tokenizer, 1025);
    const windows = makeWindows(prefix.tokens, 256, 1024, 'calib');
    const list: TokenBatch[] = [...batches(windows, 2)];
    const matrices = prunableMatrices(spec);
    const rng = createRng(11);
    const masks = new Map(
      matrices.map((m) => [m.role, randomGenome(m.rows * m.cols, Math.round(0.3 * m.rows * m.cols), rng)]),
    );
    const of = (layer: number) =>
      new Map(matrices.filter((m) => m.layer === layer).map((m) => [m.role, masks.get(m.role)!]));
    const layer = 2;
    let hidden: Float32Array[] | undefined;
    for (let l = 0; l < layer; l++) hidden = await advanceHidden(spec, l, list, hidden, of(l));
    const evaluator = await createLayerEvaluator(spec, layer, [...of(layer).keys()], list, hidden);
    const suffix = await evaluator.perplexity(of(layer));
    await evaluator.release();

    const full = await createRunner(spec, { output: 'nll', weightMasks: matrices.map((m) => m.role) });
    const upTo = new Map(matrices.filter((m) => m.layer <= layer).map((m) => [m.role, masks.get(m.role)!]));
    const ref = await evaluatePerplexity(full, windows, { batchSize: 2, masks: { weightMasks: upTo } });
    await full.release();
    assert.ok(Math.abs(suffix - ref.perplexity) / ref.perplexity < 1e-5, `${suffix} vs ${ref.perplexity}`);
    assert.ok(ref.perplexity > 4, 'the masks change the model');
  });
});
