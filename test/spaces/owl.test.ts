/**
 * OWL (`weights --method owl`): the outlier share and the per-block sparsities equal the paper's formula, computed
 * here by hand on hand-made scores and by a plain reference of the reference code's arithmetic on random ones; the
 * budget is exact; on tiny random models every matrix is per-row Wanda at its block's own rate, with the norms of
 * a sequential walk recomputed here by the full graph on the model with the earlier blocks masked. On stories260K:
 * --pattern is refused in one line, and 50 % is compared with Wanda at 50 % (measured numbers below).
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import type { TokenBatch } from '../../src/engine/runner.js';
import { type PrunableMatrix, prunableMatrices } from '../../src/masks/weights.js';
import { batches, makeWindows } from '../../src/metrics/perplexity.js';
import { randomLlamaSpec } from '../../src/model/random.js';
import { type ModelSpec, memoryTensor, type TensorSource } from '../../src/model/spec.js';
import {
  countsAtBudget,
  OWL,
  OWL_DEFAULTS,
  type OwlReport,
  outlierShare,
  owlSparsities,
} from '../../src/spaces/weights/owl.js';
import { createRng } from '../../src/util/rng.js';
import { tempDir } from '../checkpoint/helpers.js';
import { assertOneLineError, runCli } from '../helpers/cli.js';
import { fullGraphNorms, wandaAtCount } from '../helpers/wandaref.js';
import { CALIB, EVAL, MODEL, sharedPath, skipUnlessShared } from '../shared.js';

const tmp = tempDir('geneprune-owl-');
after(tmp.cleanup);

const CONTEXT = 32;
const TOKENS = 256;

function tiny(numLayers: number, seed = 1): ModelSpec {
  return randomLlamaSpec({
    hiddenSize: 16,
    numLayers,
    numHeads: 2,
    numKvHeads: 1,
    intermediateSize: 24,
    vocabSize: 32,
    maxPositions: CONTEXT,
    seed,
    scale: 20,
  });
}

function calibration(spec: ModelSpec) {
  const rng = createRng(5);
  const stream = Array.from({ length: TOKENS + 1 }, () => rng.nextInt(spec.config.vocabSize));
  return { stream, context: CONTEXT, tokens: TOKENS };
}

const zeros = (k: Uint8Array) => k.reduce((a, b) => a + (b ? 0 : 1), 0);

/** The reference code's map, written plainly: min-max to [0, 2λ], minus the plain mean plus 1 − S; s = 1 − ratio. */
function paperSparsities(lod: number[], S: number, lambda: number): number[] {
  const lo = Math.min(...lod);
  const hi = Math.max(...lod);
  const scaled = lod.map((d) => (d - lo) * (1 / (hi - lo)) * lambda * 2);
  const mean = scaled.reduce((a, b) => a + b, 0) / scaled.length;
  return scaled.map((r) => 1 - (r - mean + (1 - S)));
}

describe('OWL arithmetic', () => {
  test('the outlier share counts the scores strictly above M × the mean of the whole block', () => {
    // mean 20/10 = 2, M 5: cut 10, only the 11 is above.
    assert.equal(outlierShare([[1, 1, 1, 1, 1, 1, 1, 1, 1, 11]], 5), 0.1);
    // Two linears together: sum 40 over 5 scores, mean 8, M 3: cut 24, only 30 (in the second linear) is above.
    assert.equal(
      outlierShare(
        [
          [1, 2],
          [3, 4, 30],
        ],
        3,
      ),
      0.2,
    );
    // The mean is of the block, not of each linear: alone, [1, 2] would have 0 above 3 × 1.5 and [3, 4, 30] 0 above 37.
    assert.equal(outlierShare([[1, 2]], 3), 0);
    // Strictly greater: equal to the cut is not an outlier.
    assert.equal(outlierShare([[5, 5, 5, 5]], 1), 0);
  });

  test('per-block sparsities: hand-computed values, the reference map on random shares, and the mean exactly S', () => {
    // D = [0.1, 0.3, 0.2, 0], λ 0.08: a = 0.16·D/0.3 = [0.05333, 0.16, 0.10667, 0], mean 0.08, s = 0.5 − (a − 0.08).
    const s = owlSparsities([0.1, 0.3, 0.2, 0], [100, 100, 100, 100], 0.5, 0.08);
    const hand = [0.5 + 0.08 - 0.16 / 3, 0.42, 0.5 + 0.08 - 0.32 / 3, 0.58];
    for (const [l, v] of s.entries())
      assert.ok(Math.abs(v - hand[l]) < 1e-12, `block ${l}: ${v} vs ${hand[l]}`);
    // Most outliers → least pruned; the spread is exactly 2λ.
    assert.ok(Math.abs(Math.max(...s) - Math.min(...s) - 0.16) < 1e-12);
    const rng = createRng(3);
    for (let trial = 0; trial < 100; trial++) {
      const L = 2 + rng.nextInt(30);
      const lod = Array.from({ length: L }, () => rng.nextFloat() * 10);
      const S = [0.3, 0.5, 0.7, 0.8][trial % 4];
      const lambda = [0.02, 0.05, 0.08, 0.1][trial % 4];
      const got = owlSparsities(lod, new Array(L).fill(4096), S, lambda);
      const ref = paperSparsities(lod, S, lambda);
      for (let l = 0; l < L; l++) assert.ok(Math.abs(got[l] - ref[l]) < 1e-12);
      assert.ok(Math.abs(got.reduce((a, b) => a + b, 0) / L - S) < 1e-12);
    }
  });

  test('blocks of different sizes: the mean is weighted by their weights, so the prunable share is S', () => {
    // a = [0, 0.2]; weighted mean (0·1 + 0.2·3)/4 = 0.15; s = [0.65, 0.45]; 0.65·1 + 0.45·3 = 2 = 0.5·4.
    const s = owlSparsities([0, 1], [1, 3], 0.5, 0.1);
    assert.ok(Math.abs(s[0] - 0.65) < 1e-12 && Math.abs(s[1] - 0.45) < 1e-12);
  });

  test('all shares equal: every block at S; a map leaving [0, 1] is clamped and the budget still holds', () => {
    assert.deepEqual(owlSparsities([0.2, 0.2, 0.2], [5, 5, 5], 0.4, 0.08), [0.4, 0.4, 0.4]);
    // S 0.05, λ 0.1, a = [0, 0.2]: the map gives [0.15, −0.05]; clamped and re-shifted: [0.1, 0].
    const s = owlSparsities([0, 1], [1, 1], 0.05, 0.1);
    assert.ok(Math.abs(s[0] - 0.1) < 1e-9 && s[1] === 0, `${s}`);
  });

  test('counts: floors, then the largest fractional parts (earlier on ties), then the sum is the budget', () => {
    // Floors [1, 2, 0] = 3, one missing: fractional parts 0.5, 0.5, 0.2 → the first matrix.
    assert.deepEqual(countsAtBudget([1.5, 2.5, 0.2], [3, 3, 3], 4), [2, 2, 0]);
    // Floors above the budget (float noise after clamping): the smallest fractional part gives one back.
    assert.deepEqual(countsAtBudget([2.0000001, 2], [3, 3], 3), [2, 1]);
    const rng = createRng(4);
    for (let trial = 0; trial < 100; trial++) {
      const sizes = Array.from({ length: 1 + rng.nextInt(20) }, () => 1 + rng.nextInt(3000));
      const x = sizes.map((n) => rng.nextFloat() * n);
      const budget = Math.round(x.reduce((a, b) => a + b, 0));
      const c = countsAtBudget(x, sizes, budget);
      assert.equal(
        c.reduce((a, b) => a + b, 0),
        budget,
      );
      for (const [i, ci] of c.entries()) assert.ok(Math.abs(ci - x[i]) < 1 && ci >= 0 && ci <= sizes[i]);
    }
  });
});

/** The dense model's outlier share of each block, from full-graph norms: the paper's D_l written plainly. */
async function referenceShares(spec: ModelSpec, matrices: readonly PrunableMatrix[], list: TokenBatch[]) {
  const norms = await fullGraphNorms(spec, list);
  const byBlock = new Map<number, number[]>();
  for (const m of matrices) {
    const w = await spec.tensors.get(m.role)!.load();
    const sq = norms.get(m.role)!;
    const own = byBlock.get(m.layer) ?? [];
    for (let r = 0; r < m.rows; r++)
      for (let j = 0; j < m.cols; j++) own.push(Math.abs(w[r * m.cols + j]) * Math.sqrt(sq[j]));
    byBlock.set(m.layer, own);
  }
  return new Map(
    [...byBlock].map(([l, s]) => {
      const mean = s.reduce((a, b) => a + b, 0) / s.length;
      return [l, s.filter((v) => v > OWL_DEFAULTS.outlierThreshold * mean).length / s.length];
    }),
  );
}

describe('OWL on small random models', () => {
  test('block sparsities from the dense outlier shares, an exact budget, each matrix per-row Wanda at its block’s rate', async () => {
    const spec = tiny(4);
    const matrices = prunableMatrices(spec);
    const cal = calibration(spec);
    const list: TokenBatch[] = [...batches(makeWindows(cal.stream, CONTEXT, TOKENS), 8)];
    const shares = await referenceShares(spec, matrices, list);
    const N = matrices.reduce((a, m) => a + m.rows * m.cols, 0);
    for (const S of [0.3, 0.5, 0.62]) {
      const out = await OWL.select({ spec, matrices, sparsity: S, rng: createRng(0), calibration: cal });
      const report = out.report as OwlReport;
      // The outlier shares match the full graph's (up to float32 ties at the cut), and the sparsities the paper's map.
      const D = report.blocks.map((b) => b.outlierShare);
      for (const b of report.blocks) assert.ok(Math.abs(b.outlierShare - shares.get(b.layer)!) < 2e-3);
      assert.ok(new Set(D).size > 1, `the tiny model's blocks should differ in outliers: ${D}`);
      const paper = paperSparsities(D, S, OWL_DEFAULTS.lambda);
      for (const [k, b] of report.blocks.entries()) assert.ok(Math.abs(b.sparsity - paper[k]) < 1e-12);
      // Exact budget.
      const pruned = out.keeps.map(zeros);
      assert.equal(
        pruned.reduce((a, b) => a + b, 0),
        Math.round(S * N),
      );
      // Each block at its own rate, each matrix the plain per-row Wanda at its count on the norms the sequential walk
      // sees: the full graph's, with the blocks before this one masked.
      const tensors = new Map<string, TensorSource>(spec.tensors);
      for (const b of report.blocks) {
        const norms = await fullGraphNorms({ ...spec, tensors }, list);
        let blockPruned = 0;
        for (const [i, m] of matrices.entries()) {
          if (m.layer !== b.layer) continue;
          blockPruned += pruned[i];
          assert.ok(Math.abs(pruned[i] - b.sparsity * m.rows * m.cols) < 1, `${m.role} at ${S}`);
          const w = await spec.tensors.get(m.role)!.load();
          assert.deepEqual(
            out.keeps[i],
            wandaAtCount(w, m, norms.get(m.role)!, pruned[i]),
            `${m.role} at ${S}`,
          );
          for (let r = 0; r < m.rows; r++) {
            const rowPruned = zeros(out.keeps[i].subarray(r * m.cols, (r + 1) * m.cols));
            assert.ok(Math.abs(rowPruned - b.sparsity * m.cols) < 2, `${m.role} row ${r} at ${S}`);
          }
          tensors.set(
            m.role,
            memoryTensor(
              [m.rows, m.cols],
              w.map((v, k) => (out.keeps[i][k] ? v : 0)),
            ),
          );
        }
        assert.equal(blockPruned, b.pruned);
      }
      // The rates differ between blocks (they span 2λ), so "its own rate" is not Wanda's uniform one.
      const rates = report.blocks.map((b) => b.sparsity);
      assert.ok(Math.abs(Math.max(...rates) - Math.min(...rates) - 2 * OWL_DEFAULTS.lambda) < 1e-12);
    }
  });

  test('blocks of different prunable sizes (--layers): the budget counts the selected weights only, exactly', async () => {
    const spec = tiny(3, 2);
    const all = prunableMatrices(spec);
    // Block 0's MLP only, block 2 whole: 3 of 7 matrices against 7.
    const matrices = all.filter((m) => (m.layer === 0 && m.role.includes('.mlp.')) || m.layer === 2);
    const N = matrices.reduce((a, m) => a + m.rows * m.cols, 0);
    const out = await OWL.select({
      spec,
      matrices,
      sparsity: 0.5,
      rng: createRng(0),
      calibration: calibration(spec),
    });
    const report = out.report as OwlReport;
    assert.deepEqual(
      report.blocks.map((b) => b.layer),
      [0, 2],
    );
    assert.equal(
      out.keeps.map(zeros).reduce((a, b) => a + b, 0),
      Math.round(0.5 * N),
    );
    const weighted = report.blocks.reduce((a, b) => a + b.sparsity * b.weights, 0) / N;
    assert.ok(Math.abs(weighted - 0.5) < 1e-12);
    assert.notEqual(report.blocks[0].weights, report.blocks[1].weights);
  });
});

describe('weights --method owl on stories260K', { skip: skipUnlessShared(MODEL, CALIB, EVAL) }, () => {
  const base = ['weights', '--calib', sharedPath(CALIB)!, '--eval', sharedPath(EVAL)!];

  test('--pattern is refused in one line, before anything is written', () => {
    const out = join(tmp.dir, 'owl24');
    const r = runCli([...base, '--method', 'owl', '--pattern', '2:4', '--out', out]);
    assertOneLineError(r, 2, '--pattern: OWL sets a sparsity per block');
    assert.ok(!existsSync(out));
  });

  test('50 %: exactly half the prunable weights, blocks at their own rates, against Wanda at 50 %', () => {
    // Measured on this machine (8,192 calibration tokens, all 38,008 eval tokens): OWL's blocks at 44.3, 43.4, 50.5,
    // 52.3, 59.4 % (outlier shares 2.27, 2.36, 1.66, 1.49, 0.78 %), eval perplexity 17.109 against Wanda's 18.895
    // (calibration 15.848 against 17.098); with --recover 12.696 against 14.262. At 20 and 30 % OWL was slightly
    // worse (3.999, 4.623 against 3.948, 4.550) — see docs/weight-pruning.md.
    type Res = {
      sparsity: { achieved: number };
      layers: Array<{ layer: number; sparsity: number }>;
      eval: { perplexity: number; densePerplexity: number };
      methodReport?: OwlReport;
    };
    const run = (method: string): Res => {
      const out = join(tmp.dir, `${method}50`);
      const r = runCli([...base, '--method', method, '--sparsity', '0.5', '--out', out, '--json'], {
        timeout: 120_000,
      });
      assert.equal(r.code, 0, r.stderr);
      const res = JSON.parse(r.stdout) as Res;
      const saved = JSON.parse(readFileSync(join(out, 'result.json'), 'utf8')) as Res;
      assert.deepEqual(saved.methodReport, res.methodReport);
      return res;
    };
    const owl = run('owl');
    const wanda = run('wanda');
    assert.equal(owl.sparsity.achieved, 0.5);
    const rep = owl.methodReport!;
    assert.equal(rep.blocks.length, 5);
    for (const [k, b] of rep.blocks.entries()) {
      // The per-layer table of the result is the method’s allocation, each of the 7 matrices within one weight.
      assert.equal(b.pruned / b.weights, owl.layers[k].sparsity);
      assert.ok(Math.abs(owl.layers[k].sparsity - b.sparsity) < 7 / b.weights);
    }
    // Layer 1 has the most outliers here and is pruned least, layer 4 the fewest and most.
    assert.ok(owl.layers[1].sparsity < 0.45 && owl.layers[4].sparsity > 0.58);
    assert.equal(wanda.sparsity.achieved, 0.5);
    assert.equal(owl.eval.densePerplexity, wanda.eval.densePerplexity);
    // Measured better at 50 % (above), so asserted; the margin is what was measured, not a claim for other levels.
    assert.ok(
      owl.eval.perplexity < wanda.eval.perplexity,
      `${owl.eval.perplexity} vs ${wanda.eval.perplexity}`,
    );
  });
});
