/**
 * Which weights a score-based pruning keeps: given one score per weight (|W| for magnitude, |W|·‖X_j‖₂ for
 * Wanda, uniform draws for random), the lowest-scoring weights are pruned under one of these budgets:
 * - per row: every output row of an [out, in] matrix loses the same number of weights (Wanda's comparison group);
 * - per matrix: the matrix loses round(sparsity · out · in) weights wherever they lie;
 * - global: one threshold over several matrices, which may end up at different sparsities;
 * - N:M: in every group of M consecutive weights along a row (inputs j … j+M−1), the N highest-scoring survive —
 *   the pattern sparse tensor cores accelerate (2:4).
 * Masks are Uint8Array in the matrix's [out, in] layout, 1 = kept. Ties are broken by position: of two equal
 * scores the earlier weight (lower flat index) is pruned first, so every selection is deterministic.
 */

/** How many of `n` weights a sparsity prunes: the nearest whole number. */
export function prunedCount(n: number, sparsity: number): number {
  if (!(sparsity >= 0 && sparsity < 1)) throw new Error(`sparsity ${sparsity} is outside [0, 1)`);
  return Math.round(sparsity * n);
}

/** Indices [from, from + n) sorted by (score, index) ascending. */
function ascending(scores: ArrayLike<number>, from: number, n: number): Int32Array {
  const idx = new Int32Array(n);
  for (let i = 0; i < n; i++) idx[i] = from + i;
  idx.sort((a, b) => scores[a] - scores[b] || a - b);
  return idx;
}

function checkScores(scores: ArrayLike<number>, expected: number): void {
  if (scores.length !== expected) throw new Error(`${scores.length} scores for ${expected} weights`);
  for (let i = 0; i < scores.length; i++) {
    if (Number.isNaN(scores[i])) throw new Error(`score ${i} is NaN`);
  }
}

/** Each output row keeps `in − round(sparsity · in)` weights: its highest-scoring ones. */
export function selectPerRow(
  scores: ArrayLike<number>,
  rows: number,
  cols: number,
  sparsity: number,
): Uint8Array {
  checkScores(scores, rows * cols);
  const drop = prunedCount(cols, sparsity);
  const keep = new Uint8Array(rows * cols).fill(1);
  for (let r = 0; r < rows; r++) {
    const order = ascending(scores, r * cols, cols);
    for (let k = 0; k < drop; k++) keep[order[k]] = 0;
  }
  return keep;
}

/** The matrix keeps all but its round(sparsity · n) lowest-scoring weights. */
export function selectPerMatrix(scores: ArrayLike<number>, sparsity: number): Uint8Array {
  checkScores(scores, scores.length);
  const drop = prunedCount(scores.length, sparsity);
  const keep = new Uint8Array(scores.length).fill(1);
  const order = ascending(scores, 0, scores.length);
  for (let k = 0; k < drop; k++) keep[order[k]] = 0;
  return keep;
}

/**
 * One budget over several matrices: the round(sparsity · total) lowest scores of all of them are pruned, ties
 * broken by matrix order, then position.
 */
export function selectGlobal(scores: ReadonlyArray<ArrayLike<number>>, sparsity: number): Uint8Array[] {
  const total = scores.reduce((a, s) => a + s.length, 0);
  const drop = prunedCount(total, sparsity);
  const offsets: number[] = [];
  let at = 0;
  for (const s of scores) {
    checkScores(s, s.length);
    offsets.push(at);
    at += s.length;
  }
  const flat = new Float64Array(total);
  scores.forEach((s, m) => {
    for (let i = 0; i < s.length; i++) flat[offsets[m] + i] = s[i];
  });
  const order = ascending(flat, 0, total);
  const keeps = scores.map((s) => new Uint8Array(s.length).fill(1));
  for (let k = 0; k < drop; k++) {
    const g = order[k];
    let m = offsets.length - 1;
    while (offsets[m] > g) m--;
    keeps[m][g - offsets[m]] = 0;
  }
  return keeps;
}

/**
 * `selectGlobal` for models too large to hold every score at once: the same masks (the round(sparsity · total)
 * lowest scores pruned, ties broken by matrix order, then position), with one matrix's scores in memory at a
 * time. Scores must be non-negative (|W|, Wanda): their fp32 bit patterns then sort like the values, so the
 * exact threshold is found by a radix select over the bits in two passes (high 16 bits, then low 16 bits within
 * the threshold's bucket), and a third pass writes each matrix's mask. `scoresOf(i)` is called three times per
 * matrix, in matrix order, and must give the same scores each time.
 */
export async function selectGlobalStreaming(
  sizes: readonly number[],
  sparsity: number,
  scoresOf: (matrix: number) => Promise<ArrayLike<number>>,
  onMask: (matrix: number, keep: Uint8Array) => Promise<void> | void,
): Promise<void> {
  const total = sizes.reduce((a, b) => a + b, 0);
  const drop = prunedCount(total, sparsity);
  const bits = new Uint32Array(1);
  const f = new Float32Array(bits.buffer);
  const scoreBits = async (i: number): Promise<Uint32Array> => {
    const scores = await scoresOf(i);
    checkScores(scores, sizes[i]);
    const out = new Uint32Array(scores.length);
    for (let k = 0; k < scores.length; k++) {
      const v = scores[k];
      if (!(v >= 0)) throw new Error(`score ${k} of matrix ${i} is ${v}: global selection needs scores ≥ 0`);
      f[0] = v;
      out[k] = bits[0];
    }
    return out;
  };
  // The threshold T (as bits) is the drop-th smallest score; below it everything goes, at it the first `atT`.
  let threshold = 0;
  let below = 0;
  if (drop > 0) {
    const high = new Float64Array(65536);
    for (let i = 0; i < sizes.length; i++) for (const b of await scoreBits(i)) high[b >>> 16]++;
    let bucket = 0;
    while (below + high[bucket] < drop) below += high[bucket++];
    const low = new Float64Array(65536);
    for (let i = 0; i < sizes.length; i++) {
      for (const b of await scoreBits(i)) if (b >>> 16 === bucket) low[b & 0xffff]++;
    }
    let lowBits = 0;
    while (below + low[lowBits] < drop) below += low[lowBits++];
    threshold = ((bucket << 16) | lowBits) >>> 0;
  }
  let atThreshold = drop - below;
  for (let i = 0; i < sizes.length; i++) {
    const keep = new Uint8Array(sizes[i]).fill(1);
    if (drop > 0) {
      const b = await scoreBits(i);
      for (let k = 0; k < b.length; k++) {
        if (b[k] < threshold) keep[k] = 0;
        else if (b[k] === threshold && atThreshold > 0) {
          keep[k] = 0;
          atThreshold--;
        }
      }
    }
    await onMask(i, keep);
  }
}

/** An N:M pattern, e.g. 2:4 keeps 2 weights of every 4 consecutive ones along a row. */
export interface NmPattern {
  n: number;
  m: number;
}

/** Parses "N:M" (0 < N < M); undefined for anything else. */
export function parsePattern(text: string): NmPattern | undefined {
  const m = /^(\d+):(\d+)$/.exec(text);
  if (!m) return undefined;
  const keep = Number(m[1]);
  const group = Number(m[2]);
  return keep > 0 && keep < group ? { n: keep, m: group } : undefined;
}

/** In every group of M consecutive weights of a row, the N highest-scoring are kept. */
export function selectNm(scores: ArrayLike<number>, rows: number, cols: number, p: NmPattern): Uint8Array {
  checkScores(scores, rows * cols);
  if (cols % p.m !== 0) throw new Error(`a row of ${cols} weights does not divide into groups of ${p.m}`);
  const keep = new Uint8Array(rows * cols).fill(1);
  for (let start = 0; start < rows * cols; start += p.m) {
    const order = ascending(scores, start, p.m);
    for (let k = 0; k < p.m - p.n; k++) keep[order[k]] = 0;
  }
  return keep;
}

/** True when every group of M consecutive weights along each row keeps at most N. */
export function holdsPattern(keep: Uint8Array, cols: number, p: NmPattern): boolean {
  if (cols % p.m !== 0 || keep.length % cols !== 0) return false;
  for (let start = 0; start < keep.length; start += p.m) {
    let kept = 0;
    for (let k = 0; k < p.m; k++) kept += keep[start + k];
    if (kept > p.n) return false;
  }
  return true;
}

/** |W|: magnitude pruning's score. */
export function magnitudeScores(w: Float32Array): Float32Array {
  return w.map(Math.abs);
}

/**
 * Wanda's score |W_ij| · ‖X_j‖₂ for an [out, in] weight, from the squared norms Σ_t X_tj² of its input's columns
 * over the calibration tokens.
 */
export function wandaScores(
  w: Float32Array,
  rows: number,
  cols: number,
  inputSquaredNorms: ArrayLike<number>,
): Float32Array {
  if (w.length !== rows * cols) throw new Error(`${w.length} weights for [${rows}, ${cols}]`);
  if (inputSquaredNorms.length !== cols)
    throw new Error(`${inputSquaredNorms.length} input norms for ${cols} inputs`);
  const norms = Float64Array.from(inputSquaredNorms, (v) => Math.sqrt(v));
  const out = new Float32Array(w.length);
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < cols; j++) out[r * cols + j] = Math.abs(w[r * cols + j]) * norms[j];
  }
  return out;
}
