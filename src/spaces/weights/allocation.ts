/**
 * The allocation arithmetic of `--method alloc` (alloc.ts holds the definitions): the uniform start by largest
 * remainder, the per-matrix bounds, the move quantum Δ, the budget-preserving mutation, and the mask of a matrix
 * at a pruned count cut from its per-row Wanda order. Pure functions of their inputs (and the rng).
 */
import { GenepruneError } from '../../errors.js';
import type { Rng } from '../../util/rng.js';

/** Σ c_i = round(s · N) exactly; c_i = floor(s · n_i) plus one for the largest fractional parts (earlier on ties). */
export function uniformAllocation(sizes: readonly number[], sparsity: number): number[] {
  if (!(sparsity >= 0 && sparsity < 1)) throw new GenepruneError('internal', `sparsity ${sparsity}`);
  const total = sizes.reduce((a, b) => a + b, 0);
  const budget = Math.round(sparsity * total);
  const counts = sizes.map((n) => Math.floor(sparsity * n));
  let missing = budget - counts.reduce((a, b) => a + b, 0);
  const order = sizes
    .map((n, i) => ({ i, frac: sparsity * n - Math.floor(sparsity * n) }))
    .sort((a, b) => b.frac - a.frac || a.i - b.i);
  for (let k = 0; missing > 0 && k < order.length; k++, missing--) counts[order[k].i]++;
  if (missing !== 0) throw new GenepruneError('internal', `allocation misses its budget by ${missing}`);
  return counts;
}

/** The upper bounds u_i = max(floor(max(maxShare, (1 + s)/2) · n_i), start_i). */
export function allocationBounds(
  sizes: readonly number[],
  start: readonly number[],
  maxShare: number,
  sparsity: number,
): number[] {
  const cap = Math.max(maxShare, (1 + sparsity) / 2);
  return sizes.map((n, i) => Math.max(Math.floor(cap * n), start[i]));
}

/** Δ = max(1, round(quantum · N / M)). */
export function allocationQuantum(sizes: readonly number[], quantum: number): number {
  const total = sizes.reduce((a, b) => a + b, 0);
  return Math.max(1, Math.round((quantum * total) / Math.max(1, sizes.length)));
}

/**
 * A mutant of `counts`: 1 … maxMoves moves of d = min(Δ, upper_i − c_i, c_j) pruned weights from j to i (i ≠ j
 * uniform). The sum is unchanged and the bounds hold. Returns the counts and the matrices touched.
 */
export function mutateAllocation(
  counts: readonly number[],
  upper: readonly number[],
  delta: number,
  maxMoves: number,
  rng: Rng,
): number[] {
  const out = counts.slice();
  const M = out.length;
  if (M < 2) return out;
  const moves = 1 + rng.nextInt(maxMoves);
  for (let k = 0; k < moves; k++) {
    for (let tries = 0; tries < 64; tries++) {
      const i = rng.nextInt(M);
      let j = rng.nextInt(M - 1);
      if (j >= i) j++;
      const d = Math.min(delta, upper[i] - out[i], out[j]);
      if (d <= 0) continue;
      out[i] += d;
      out[j] -= d;
      break;
    }
  }
  return out;
}

/**
 * One matrix's Wanda scores and, per row, its columns ordered by (score, column) ascending: what a mask at any
 * count is cut from.
 */
export interface RowOrder {
  rows: number;
  cols: number;
  scores: Float32Array;
  /** [rows · cols]: row r's columns from the lowest score, at r·cols … r·cols + cols − 1. */
  order: Uint16Array | Uint32Array;
}

export function rowOrder(scores: Float32Array, rows: number, cols: number): RowOrder {
  if (scores.length !== rows * cols)
    throw new GenepruneError('internal', `${scores.length} scores for [${rows}, ${cols}]`);
  const order = cols <= 65536 ? new Uint16Array(rows * cols) : new Uint32Array(rows * cols);
  const idx = new Int32Array(cols);
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    for (let j = 0; j < cols; j++) idx[j] = j;
    idx.sort((a, b) => scores[base + a] - scores[base + b] || a - b);
    order.set(idx, base);
  }
  return { rows, cols, scores, order };
}

/**
 * The keep-mask (1 kept) of a matrix losing `count` weights: floor(count / rows) lowest-scoring per row, and one
 * more in the count mod rows rows whose next weight scores lowest (ties: the lower row).
 */
export function allocatedMask(o: RowOrder, count: number): Uint8Array {
  const { rows, cols, scores, order } = o;
  if (!(Number.isInteger(count) && count >= 0 && count <= rows * cols)) {
    throw new GenepruneError('internal', `cannot prune ${count} of ${rows * cols} weights`);
  }
  const keep = new Uint8Array(rows * cols).fill(1);
  const q = Math.floor(count / rows);
  const extra = count - q * rows;
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    for (let k = 0; k < q; k++) keep[base + order[base + k]] = 0;
  }
  if (extra > 0) {
    const next = (r: number) => scores[r * cols + order[r * cols + q]];
    const byNext = Array.from({ length: rows }, (_, r) => r).sort((a, b) => next(a) - next(b) || a - b);
    for (let k = 0; k < extra; k++) {
      const r = byNext[k];
      keep[r * cols + order[r * cols + q]] = 0;
    }
  }
  return keep;
}
