/**
 * Genetic operators over a block's weight-mask genome (one byte per weight, 1 kept, the block's matrices
 * flattened [out, in] row-major) that hold a budget exactly:
 * - `rowCrossover`: each output row of the children comes whole from one parent, so every row keeps as many
 *   weights as it did in its parents (and every N:M group stays N:M);
 * - `boundarySwaps`: a mutation that swaps a kept and a pruned weight inside one output row, drawn near the row's
 *   score boundary (the seed's weakest kept and strongest pruned weights), so no row's count changes;
 * - `groupSwaps` / `randomNmGenome` / `groupSinglePointCrossover`: the same for N:M patterns, within a group of M.
 * Pure functions: (inputs, rng) → new genomes.
 */
import type { Rng } from '../../util/rng.js';
import type { BlockLayout } from './blockspace.js';

/** The first gene of every output row of a block, and the end (rows + 1 entries). */
export function rowStarts(block: BlockLayout): Int32Array {
  const rows = block.matrices.reduce((a, m) => a + m.rows, 0);
  const starts = new Int32Array(rows + 1);
  let r = 0;
  for (const [i, m] of block.matrices.entries()) {
    for (let k = 0; k < m.rows; k++) starts[r++] = block.offsets[i] + k * m.cols;
  }
  starts[rows] = block.genes;
  return starts;
}

/**
 * Row-wise uniform crossover: with probability `rate` each row of the first child comes from `a` or `b` with
 * probability 1/2 and the second child takes the other; otherwise the children are copies.
 */
export function rowCrossover(
  a: Uint8Array,
  b: Uint8Array,
  starts: Int32Array,
  rate: number,
  rng: Rng,
): [Uint8Array, Uint8Array] {
  if (a.length !== b.length) throw new Error('rowCrossover: parents differ in length');
  const c1 = a.slice();
  const c2 = b.slice();
  if (rng.nextFloat() >= rate) return [c1, c2];
  for (let r = 0; r + 1 < starts.length; r++) {
    if (rng.nextUint32() & 1) {
      const [s, e] = [starts[r], starts[r + 1]];
      c1.set(b.subarray(s, e), s);
      c2.set(a.subarray(s, e), s);
    }
  }
  return [c1, c2];
}

/**
 * Where a seeded search may swap: per output row, the genes around its score boundary. For row r with `cut_r`
 * pruned weights, sorted by ascending seed score, the genes at sorted positions [cut_r − w, cut_r + w) with
 * w = max(1, round(window · cols)) — the seed's strongest pruned and weakest kept weights. Rows with nothing
 * pruned or nothing kept are left out (no swap keeps their count and changes them).
 */
export interface SwapRegions {
  /** Per swappable row: its candidates are genes[from[k] … from[k+1]). */
  from: Int32Array;
  genes: Int32Array;
}

export function boundaryRegions(
  seed: Uint8Array,
  scores: ArrayLike<number>,
  starts: Int32Array,
  window: number,
): SwapRegions {
  const from: number[] = [0];
  const genes: number[] = [];
  for (let r = 0; r + 1 < starts.length; r++) {
    const [s, e] = [starts[r], starts[r + 1]];
    const cols = e - s;
    let cut = 0;
    for (let i = s; i < e; i++) cut += seed[i] ? 0 : 1;
    if (cut === 0 || cut === cols) continue;
    const order = Int32Array.from({ length: cols }, (_, j) => s + j);
    order.sort((x, y) => scores[x] - scores[y] || x - y);
    const w = Math.max(1, Math.round(window * cols));
    for (let k = Math.max(0, cut - w); k < Math.min(cols, cut + w); k++) genes.push(order[k]);
    from.push(genes.length);
  }
  return { from: Int32Array.from(from), genes: Int32Array.from(genes) };
}

/**
 * `swaps` times: a swappable row drawn uniformly, one kept and one pruned gene drawn uniformly among the row's
 * candidates (up to 64 draws each; a row whose candidates are all kept or all pruned is passed over), and the
 * two are exchanged. Every row keeps its count.
 */
export function boundarySwaps(g: Uint8Array, regions: SwapRegions, swaps: number, rng: Rng): Uint8Array {
  const out = g.slice();
  const rows = regions.from.length - 1;
  if (rows === 0) return out;
  for (let k = 0; k < swaps; k++) {
    const r = rng.nextInt(rows);
    const s = regions.from[r];
    const n = regions.from[r + 1] - s;
    let kept = -1;
    let pruned = -1;
    for (let t = 0; t < 64 && (kept < 0 || pruned < 0); t++) {
      const i = regions.genes[s + rng.nextInt(n)];
      if (out[i]) {
        if (kept < 0) kept = i;
      } else if (pruned < 0) pruned = i;
    }
    if (kept < 0 || pruned < 0) continue;
    out[kept] = 0;
    out[pruned] = 1;
  }
  return out;
}

/** A genome keeping N random weights of every group of M consecutive genes (rows are whole groups). */
export function randomNmGenome(genes: number, n: number, m: number, rng: Rng): Uint8Array {
  const g = new Uint8Array(genes);
  const idx = Array.from({ length: m }, (_, i) => i);
  for (let s = 0; s < genes; s += m) {
    for (let i = 0; i < n; i++) {
      const j = i + rng.nextInt(m - i);
      [idx[i], idx[j]] = [idx[j], idx[i]];
    }
    for (let i = 0; i < n; i++) g[s + idx[i]] = 1;
  }
  return g;
}

/** Within one group [s, s + m): exchanges a random kept and a random pruned gene (none when the group is uniform). */
function swapInGroup(g: Uint8Array, s: number, m: number, rng: Rng): void {
  let kept = 0;
  for (let i = 0; i < m; i++) kept += g[s + i];
  if (kept === 0 || kept === m) return;
  let a = rng.nextInt(kept);
  let b = rng.nextInt(m - kept);
  let ka = -1;
  let pb = -1;
  for (let i = 0; i < m; i++) {
    if (g[s + i]) {
      if (a-- === 0) ka = s + i;
    } else if (b-- === 0) pb = s + i;
  }
  g[ka] = 0;
  g[pb] = 1;
}

/** Each group of M is chosen with probability `rate` and has one kept and one pruned weight exchanged. */
export function groupSwapMutation(g: Uint8Array, m: number, rate: number, rng: Rng): Uint8Array {
  const out = g.slice();
  for (let s = 0; s < out.length; s += m) if (rng.nextFloat() < rate) swapInGroup(out, s, m, rng);
  return out;
}

/** `swaps` groups drawn uniformly (with replacement), each with one kept and one pruned weight exchanged. */
export function groupSwaps(g: Uint8Array, m: number, swaps: number, rng: Rng): Uint8Array {
  const out = g.slice();
  const groups = Math.floor(out.length / m);
  for (let k = 0; k < swaps; k++) swapInGroup(out, rng.nextInt(groups) * m, m, rng);
  return out;
}

/**
 * Single-point crossover whose cut falls on a group boundary (a multiple of M, uniform among the G − 1 inner
 * boundaries), so both children keep the N:M pattern. With probability 1 − `rate` the children are copies.
 */
export function groupSinglePointCrossover(
  a: Uint8Array,
  b: Uint8Array,
  m: number,
  rate: number,
  rng: Rng,
): [Uint8Array, Uint8Array] {
  const groups = Math.floor(a.length / m);
  if (groups < 2 || rng.nextFloat() >= rate) return [a.slice(), b.slice()];
  const cut = m * (1 + rng.nextInt(groups - 1));
  const c1 = a.slice();
  const c2 = b.slice();
  c1.set(b.subarray(cut), cut);
  c2.set(a.subarray(cut), cut);
  return [c1, c2];
}
