/**
 * Recovery with a fixed mask against independent least squares: a plain normal-equations solve on each row's
 * kept inputs (Gaussian elimination, written here) is the optimum no update can beat; the OBS column walk must
 * match it exactly when only the first input is pruned, stay between it and plain masking otherwise, never
 * touch a pruned weight, and fall back to the masked weights rather than return a worse reconstruction.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { createOrtGemm } from '../../src/engine/gemm.js';
import {
  BLOCKED_FACTOR_MIN,
  cholesky,
  factorGram,
  factorGramWith,
  prunedColumnsFirst,
  recoverLinear,
} from '../../src/prune/recover.js';
import { createRng } from '../../src/util/rng.js';

/** Σ_rows dᵀ H d for d = w − ŵ: the reconstruction error a candidate ŵ makes on calibration H = XᵀX. */
function reconstructionError(
  w: ArrayLike<number>,
  what: ArrayLike<number>,
  h: Float64Array,
  rows: number,
  cols: number,
): number {
  let total = 0;
  const d = new Float64Array(cols);
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < cols; j++) d[j] = w[r * cols + j] - what[r * cols + j];
    for (let i = 0; i < cols; i++) {
      if (d[i] === 0) continue;
      let s = 0;
      for (let j = 0; j < cols; j++) s += h[i * cols + j] * d[j];
      total += d[i] * s;
    }
  }
  return total;
}

/** X [tokens, cols] with correlated columns (each mixes a few shared factors), and H = XᵀX. */
function calibration(tokens: number, cols: number, seed: number): { x: Float64Array; h: Float64Array } {
  const rng = createRng(seed);
  const factors = 3;
  const mix = Float64Array.from({ length: factors * cols }, () => rng.nextFloat() - 0.5);
  const x = new Float64Array(tokens * cols);
  for (let t = 0; t < tokens; t++) {
    const f = Array.from({ length: factors }, () => rng.nextFloat() - 0.5);
    for (let j = 0; j < cols; j++) {
      let v = 0.3 * (rng.nextFloat() - 0.5);
      for (let k = 0; k < factors; k++) v += f[k] * mix[k * cols + j];
      x[t * cols + j] = v;
    }
  }
  const h = new Float64Array(cols * cols);
  for (let t = 0; t < tokens; t++) {
    for (let i = 0; i < cols; i++)
      for (let j = 0; j < cols; j++) h[i * cols + j] += x[t * cols + i] * x[t * cols + j];
  }
  return { x, h };
}

/** Per row: minimise (w − ŵ)ᵀH(w − ŵ) over ŵ zero outside the kept set, i.e. H_SS ŵ_S = (H w)_S. */
function leastSquares(
  w: Float32Array,
  keep: Uint8Array,
  h: Float64Array,
  rows: number,
  cols: number,
): Float64Array {
  const out = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    const s: number[] = [];
    for (let j = 0; j < cols; j++) if (keep[r * cols + j]) s.push(j);
    const n = s.length;
    const a = s.map((i) => [...s.map((j) => h[i * cols + j]), 0]);
    for (let p = 0; p < n; p++) {
      let b = 0;
      for (let j = 0; j < cols; j++) b += h[s[p] * cols + j] * w[r * cols + j];
      a[p][n] = b;
    }
    for (let p = 0; p < n; p++) {
      let best = p;
      for (let q = p + 1; q < n; q++) if (Math.abs(a[q][p]) > Math.abs(a[best][p])) best = q;
      [a[p], a[best]] = [a[best], a[p]];
      for (let q = p + 1; q < n; q++) {
        const f = a[q][p] / a[p][p];
        for (let c = p; c <= n; c++) a[q][c] -= f * a[p][c];
      }
    }
    for (let p = n - 1; p >= 0; p--) {
      let v = a[p][n];
      for (let c = p + 1; c < n; c++) v -= a[p][c] * out[r * cols + s[c]];
      out[r * cols + s[p]] = v / a[p][p];
    }
  }
  return out;
}

function randomCase(rows: number, cols: number, seed: number, sparsity: number) {
  const rng = createRng(seed);
  const w = Float32Array.from({ length: rows * cols }, () => rng.nextFloat() - 0.5);
  const keep = Uint8Array.from({ length: rows * cols }, () => (rng.nextFloat() < sparsity ? 0 : 1));
  return { w, keep, ...calibration(64, cols, seed + 1) };
}

describe('recovery with the mask fixed', () => {
  test('Cholesky reproduces its matrix', () => {
    const { h } = calibration(20, 5, 3);
    const l = cholesky(h, 5);
    for (let i = 0; i < 5; i++) {
      for (let j = 0; j < 5; j++) {
        let s = 0;
        for (let k = 0; k < 5; k++) s += l[i * 5 + k] * l[j * 5 + k];
        assert.ok(Math.abs(s - h[i * 5 + j]) < 1e-9 * Math.max(1, Math.abs(h[i * 5 + j])));
      }
    }
    assert.throws(() => cholesky(Float64Array.from([1, 2, 2, 1]), 2), /not positive definite/);
  });

  test('only the first input pruned: the column walk is the exact least-squares optimum', async () => {
    const rows = 4;
    const cols = 6;
    const { w, h } = randomCase(rows, cols, 5, 0);
    const keep = new Uint8Array(rows * cols).fill(1);
    for (let r = 0; r < rows; r++) keep[r * cols] = 0;
    const got = await recoverLinear(w, keep, h, rows, cols, { damping: 1e-12 });
    const exact = leastSquares(w, keep, h, rows, cols);
    for (let i = 0; i < got.weight.length; i++)
      assert.ok(Math.abs(got.weight[i] - exact[i]) < 1e-4, `weight ${i}`);
    assert.ok(got.recovered);
  });

  for (const sparsity of [0.3, 0.5, 0.7]) {
    test(`${sparsity * 100} % pruned at random: optimum ≤ recovered < masked, pruned weights exactly 0`, async () => {
      const rows = 8;
      const cols = 16;
      const { w, keep, h } = randomCase(rows, cols, 20 + sparsity * 10, sparsity);
      const got = await recoverLinear(w, keep, h, rows, cols);
      const optimum = reconstructionError(w, leastSquares(w, keep, h, rows, cols), h, rows, cols);
      assert.ok(got.recovered);
      assert.ok(got.error < 0.8 * got.maskedError, `recovered ${got.error} vs masked ${got.maskedError}`);
      assert.ok(got.error >= optimum * (1 - 1e-9), `recovered ${got.error} below the optimum ${optimum}`);
      for (let i = 0; i < keep.length; i++) if (!keep[i]) assert.equal(got.weight[i], 0);
    });
  }

  test('a pruned input that duplicates a kept one moves onto it: the error vanishes', async () => {
    // Columns 1 and 2 of X are equal: pruning w_r1 loses nothing when w_r2 takes it over.
    const cols = 4;
    const { x } = calibration(32, cols, 9);
    for (let t = 0; t < 32; t++) x[t * cols + 2] = x[t * cols + 1];
    const h = new Float64Array(cols * cols);
    for (let t = 0; t < 32; t++) {
      for (let i = 0; i < cols; i++)
        for (let j = 0; j < cols; j++) h[i * cols + j] += x[t * cols + i] * x[t * cols + j];
    }
    const w = Float32Array.from([0.5, 0.25, -0.125, 1]);
    const keep = Uint8Array.from([1, 0, 1, 1]);
    const got = await recoverLinear(w, keep, h, 1, cols, { damping: 1e-9 });
    assert.ok(Math.abs(got.weight[2] - (0.25 - 0.125)) < 1e-4, `w2 = ${got.weight[2]}`);
    assert.ok(got.error < 1e-6 * got.maskedError);
  });

  test('inputs that never fire get weight 0 and the result is never worse than masking', async () => {
    const cols = 5;
    const { w, keep, h } = randomCase(3, cols, 40, 0.4);
    for (let j = 0; j < cols; j++) {
      h[3 * cols + j] = 0;
      h[j * cols + 3] = 0;
    }
    const got = await recoverLinear(w, keep, h, 3, cols);
    assert.ok(got.error <= got.maskedError);
    for (let r = 0; r < 3; r++) if (got.recovered) assert.equal(got.weight[r * cols + 3], 0);
  });

  test('a factor shared by linears reading one input gives what each would compute alone', async () => {
    const { w, keep, h } = randomCase(6, 12, 50, 0.5);
    const other = randomCase(4, 12, 51, 0.4);
    const factor = factorGram(h, 12);
    assert.deepEqual(
      await recoverLinear(w, keep, h, 6, 12, { factor }),
      await recoverLinear(w, keep, h, 6, 12),
    );
    assert.deepEqual(
      await recoverLinear(other.w, other.keep, h, 4, 12, { factor }),
      await recoverLinear(other.w, other.keep, h, 4, 12),
    );
  });

  test('whole columns pruned, walked first: the exact damped least-squares optimum; in order: not', async () => {
    // The o projection after heads are removed: the same columns off in every row, in the middle of the input.
    const rows = 6;
    const cols = 12;
    const { w, h } = randomCase(rows, cols, 60, 0);
    const off = new Set([3, 4, 5, 9]);
    const keep = Uint8Array.from({ length: rows * cols }, (_, i) => (off.has(i % cols) ? 0 : 1));
    const order = prunedColumnsFirst(keep, rows, cols);
    assert.deepEqual([...order], [3, 4, 5, 9, 0, 1, 2, 6, 7, 8, 10, 11]);
    const damping = 0.01;
    let mean = 0;
    for (let j = 0; j < cols; j++) mean += h[j * cols + j] / cols;
    const damped = Float64Array.from(h);
    for (let j = 0; j < cols; j++) damped[j * cols + j] += damping * mean;
    const exact = leastSquares(w, keep, damped, rows, cols);
    const got = await recoverLinear(w, keep, h, rows, cols, { damping, order });
    for (let i = 0; i < exact.length; i++)
      assert.ok(Math.abs(got.weight[i] - exact[i]) < 1e-5 * (1 + Math.abs(exact[i])), `weight ${i}`);
    const inOrder = await recoverLinear(w, keep, h, rows, cols, { damping });
    assert.ok(got.error < inOrder.error, `walked first ${got.error} vs in order ${inOrder.error}`);
    await assert.rejects(
      () => recoverLinear(w, keep, h, rows, cols, { order: [0, 0, ...order.slice(2)] }),
      /permutation/,
    );
  });

  test('the blocked walk equals the column-by-column walk; ONNX Runtime float32 products agree to 1e-4', async () => {
    const rows = 5;
    const cols = 300; // three blocks of the walk, the last one partial
    const { w, keep, h } = randomCase(rows, cols, 33, 0.5);
    const damping = 0.01;
    // The walk as defined, one column at a time over the whole row, in float64.
    const { u, dead } = factorGram(h, cols, damping);
    const ref = Float64Array.from(w);
    for (let j = 0; j < cols; j++) if (dead[j]) for (let r = 0; r < rows; r++) ref[r * cols + j] = 0;
    for (let j = 0; j < cols; j++) {
      for (let r = 0; r < rows; r++) {
        if (keep[r * cols + j]) continue;
        const err = ref[r * cols + j] / u[j * cols + j];
        for (let k = j + 1; k < cols; k++) ref[r * cols + k] -= err * u[j * cols + k];
        ref[r * cols + j] = 0;
      }
    }
    const got = await recoverLinear(w, keep, h, rows, cols, { damping });
    assert.ok(got.recovered);
    for (let i = 0; i < ref.length; i++) {
      assert.ok(
        Math.abs(got.weight[i] - Math.fround(ref[i])) <= 1e-6 * (1 + Math.abs(ref[i])),
        `weight ${i}`,
      );
    }
    const ort = await createOrtGemm();
    try {
      const fast = await recoverLinear(w, keep, h, rows, cols, { damping, gemm: ort.gemm });
      assert.ok(fast.recovered);
      assert.ok(Math.abs(fast.error - got.error) / got.error < 1e-4, `${fast.error} vs ${got.error}`);
      assert.ok(Math.abs(fast.maskedError - got.maskedError) / got.maskedError < 1e-4);
      let scale = 0;
      for (const v of got.weight) scale = Math.max(scale, Math.abs(v));
      for (let i = 0; i < ref.length; i++)
        assert.ok(Math.abs(fast.weight[i] - got.weight[i]) < 1e-4 * scale, `weight ${i}`);
    } finally {
      await ort.release();
    }
  });

  test('the blocked factorization on ONNX Runtime products equals the float64 one to float32 rounding', async () => {
    const n = 700; // past BLOCKED_FACTOR_MIN: three blocks, the last one partial
    assert.ok(n > BLOCKED_FACTOR_MIN);
    const rng = createRng(71);
    const t = n + 50;
    const x = Float64Array.from({ length: t * n }, () => rng.nextFloat() - 0.5);
    const h = new Float64Array(n * n);
    for (let r = 0; r < t; r++)
      for (let i = 0; i < n; i++) {
        const a = x[r * n + i];
        for (let j = 0; j < n; j++) h[i * n + j] += a * x[r * n + j];
      }
    h.fill(0, 5 * n, 6 * n); // input 5 never fires
    for (let i = 0; i < n; i++) h[i * n + 5] = 0;
    const ref = factorGram(h, n, 0.01);
    const ort = await createOrtGemm();
    try {
      const fast = await factorGramWith(h, n, 0.01, ort.gemm);
      assert.deepEqual(fast.dead, ref.dead);
      let worst = 0;
      let scale = 0;
      for (let i = 0; i < ref.u.length; i++) {
        worst = Math.max(worst, Math.abs(ref.u[i] - fast.u[i]));
        scale = Math.max(scale, Math.abs(ref.u[i]));
      }
      assert.ok(worst / scale < 1e-5, `max |ΔU| / max |U| = ${worst / scale}`);
      for (let i = 1; i < n; i++) for (let j = 0; j < i; j++) assert.equal(fast.u[i * n + j], 0);
    } finally {
      await ort.release();
    }
  });
});
