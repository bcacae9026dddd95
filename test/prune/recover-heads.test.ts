/**
 * Recovery of o after heads are removed, on a small random GQA model, against an independent path: for each
 * layer, o's input Gram matrix captured by the *full* graph (not block graphs) on the model whose earlier layers
 * carry the result's o, and a plain per-row normal-equations solve (Gaussian elimination, written here) on the
 * kept columns with the same ridge damping. Only o of layers that remove a head changes; its removed columns are
 * zero; the reconstruction error never grows; and the recovered model computes the same with or without the
 * head mask.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { accumulateStats, statOf } from '../../src/engine/blocks.js';
import { createRunner, type TokenBatch } from '../../src/engine/runner.js';
import { headMaskOf } from '../../src/masks/heads.js';
import { batches, evaluatePerplexity, makeWindows } from '../../src/metrics/perplexity.js';
import { randomLlamaSpec } from '../../src/model/random.js';
import { type ModelSpec, memoryTensor, type TensorSource } from '../../src/model/spec.js';
import { oKeepOfGenome, RECOVERY_DAMPING, recoverHeadRemoval } from '../../src/prune/recover-heads.js';
import { createRng } from '../../src/util/rng.js';

const spec = randomLlamaSpec({
  hiddenSize: 32,
  numLayers: 3,
  numHeads: 4,
  numKvHeads: 2,
  intermediateSize: 48,
  vocabSize: 64,
  maxPositions: 32,
  seed: 11,
  scale: 20,
});
// Layer 0 loses head 1, layer 1 heads 0 and 3, layer 2 none.
const genome = Uint8Array.from([1, 0, 1, 1, 0, 1, 1, 0, 1, 1, 1, 1]);
const rng = createRng(5);
const stream = Array.from({ length: 8 * 32 + 1 }, () => 1 + Math.floor(rng.nextFloat() * 63));
const windows = makeWindows(stream, 32, undefined, 'random');
const list: TokenBatch[] = [...batches(windows, 3)];

/** Per row r: (H_KK) ŵ_K = (H w_r)_K over the kept columns K, with H damped as recovery damps it. */
function dampedLeastSquares(w: Float32Array, keepRow: Uint8Array, gram: Float64Array, rows: number) {
  const cols = keepRow.length;
  const h = Float64Array.from(gram);
  let mean = 0;
  for (let j = 0; j < cols; j++) mean += gram[j * cols + j] / cols;
  for (let j = 0; j < cols; j++) h[j * cols + j] += RECOVERY_DAMPING * mean;
  const kept = [...keepRow.keys()].filter((j) => keepRow[j]);
  const n = kept.length;
  const out = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    const a = kept.map((i) => {
      let b = 0;
      for (let j = 0; j < cols; j++) b += h[i * cols + j] * w[r * cols + j];
      return [...kept.map((j) => h[i * cols + j]), b];
    });
    for (let p = 0; p < n; p++) {
      let best = p;
      for (let q = p + 1; q < n; q++) if (Math.abs(a[q][p]) > Math.abs(a[best][p])) best = q;
      [a[p], a[best]] = [a[best], a[p]];
      for (let q = p + 1; q < n; q++) {
        const f = a[q][p] / a[p][p];
        for (let c = p; c <= n; c++) a[q][c] -= f * a[p][c];
      }
    }
    const x = new Float64Array(n);
    for (let p = n - 1; p >= 0; p--) {
      let v = a[p][n];
      for (let c = p + 1; c < n; c++) v -= a[p][c] * x[c];
      x[p] = v / a[p][p];
    }
    kept.forEach((j, p) => {
      out[r * cols + j] = x[p];
    });
  }
  return out;
}

describe('recovery of o after heads are removed', () => {
  test('each layer’s o equals a plain damped least-squares refit on the full graph’s Gram matrix', async () => {
    const result = await recoverHeadRemoval(spec, genome, { batches: list, threads: 1 });
    assert.deepEqual(result.roles, ['layers.0.attn.o.weight', 'layers.1.attn.o.weight']);
    assert.deepEqual(
      result.layers.map((l) => l.removedHeads),
      [1, 2, 0],
    );
    for (const [role, t] of spec.tensors) {
      if (!result.roles.includes(role)) assert.equal(result.spec.tensors.get(role), t, role);
    }
    const D = spec.config.hiddenSize;
    const cols = 4 * spec.config.headDim;
    for (const l of [0, 1]) {
      // The model as recovery leaves layers < l, read through the full graph.
      const tensors = new Map<string, TensorSource>(spec.tensors);
      for (let k = 0; k < l; k++) {
        const role = `layers.${k}.attn.o.weight`;
        tensors.set(role, memoryTensor([D, cols], await result.spec.tensors.get(role)!.load()));
      }
      const prefix: ModelSpec = { ...spec, tensors };
      const runner = await createRunner(prefix, {
        output: 'nll',
        threads: 1,
        capture: { layers: [l], kind: 'gram', points: ['o_in'] },
      });
      const stats = await accumulateStats(runner, list);
      await runner.release();
      const gram = statOf(stats, l, 'o_in')!;
      assert.equal(statOf(stats, l, 'attn_in'), undefined, 'only the points asked for are captured');
      const role = `layers.${l}.attn.o.weight`;
      const w = await spec.tensors.get(role)!.load();
      const keep = oKeepOfGenome(spec, genome, l);
      const expected = dampedLeastSquares(w, keep.subarray(0, cols), gram, D);
      const got = await result.spec.tensors.get(role)!.load();
      let scale = 0;
      for (const v of expected) scale = Math.max(scale, Math.abs(v));
      for (let i = 0; i < got.length; i++) {
        if (!keep[i]) assert.equal(got[i], 0, `${role}[${i}] is on a removed head`);
        assert.ok(
          Math.abs(got[i] - expected[i]) < 1e-4 * scale,
          `${role}[${i}]: ${got[i]} vs ${expected[i]}`,
        );
      }
      const layer = result.layers[l];
      assert.ok(layer.recovered && layer.recoveredError < layer.maskedError, `layer ${l}`);
    }
    assert.deepEqual(result.layers[2], {
      layer: 2,
      removedHeads: 0,
      maskedError: 0,
      recoveredError: 0,
      recovered: false,
    });
  });

  test('the recovered model needs no head mask: with and without it, the same perplexity', async () => {
    const result = await recoverHeadRemoval(spec, genome, { batches: list, threads: 1 });
    const runner = await createRunner(result.spec, { output: 'nll', threads: 1 });
    const masked = await evaluatePerplexity(runner, windows, {
      batchSize: 3,
      masks: { headMask: headMaskOf(spec.config, genome) },
    });
    const plain = await evaluatePerplexity(runner, windows, { batchSize: 3 });
    await runner.release();
    assert.ok(Math.abs(masked.meanNll - plain.meanNll) < 1e-6, `${masked.meanNll} vs ${plain.meanNll}`);
  });

  test('a genome of the wrong length is refused', async () => {
    await assert.rejects(recoverHeadRemoval(spec, genome.subarray(1), { batches: list }), /genes/);
  });
});
