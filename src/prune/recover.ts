/**
 * Recovery with the mask fixed, without gradients: the kept weights of a pruned linear are updated so that its
 * outputs on calibration inputs X stay close to the dense weights' outputs on the same inputs, i.e. Ŵ minimises
 * Σ_rows (w − ŵ)ᵀ H (w − ŵ) with H = XᵀX and ŵ zero where the mask prunes.
 *
 * The update is the optimal-brain-surgeon step applied column by column, as SparseGPT does with a mask it has
 * chosen (here the mask is given): with U the upper Cholesky factor of (H + δI)⁻¹, walking the inputs j = 0 … in−1,
 * every pruned w_rj is zeroed and its error w_rj / U_jj is pushed onto the row's later inputs along U_j,k>j. Cost
 * O(in³ + out·in²) per matrix rather than a least-squares solve per row. δ (ridge damping) is a fraction of the
 * mean diagonal of H; inputs that never fire (H_jj = 0) get weight 0, as they carry nothing.
 *
 * The sequential update is an approximation of the per-row least-squares optimum, so the result is checked: if
 * its calibration reconstruction error were larger than that of the plain masked weights, the masked weights are
 * returned instead (`recovered: false`) — recovery never makes a layer worse on the data it saw.
 */

/** Ridge damping of recovery as a fraction of mean(diag XᵀX): SparseGPT's, used by every command that recovers. */
export const RECOVERY_DAMPING = 0.01;

import { type Gemm, plainGemm } from '../engine/gemm.js';

export interface RecoverOptions {
  /** Ridge damping as a fraction of mean(diag H) (default 0.01, SparseGPT's). */
  damping?: number;
  /** The Gram matrix's factor from factorGram, when several linears share their input (q/k/v, gate/up). */
  factor?: GramFactor;
  /** Where products run (default plainGemm: float64 loops). */
  gemm?: Gemm;
  /**
   * The order in which the walk visits the inputs (a permutation of 0 … in−1; default in order). Each pruned
   * weight's error goes only to the inputs walked after it, so inputs pruned in every row walked first (see
   * prunedColumnsFirst) make the walk the exact damped least-squares optimum for a mask of whole columns (the o
   * projection of removed heads). The factor is then of the reordered Gram matrix: `factor` may not be given.
   */
  order?: ArrayLike<number>;
  /** Columns per block of the walk (default WALK_BLOCK, 128): where SparseGPT's adaptive mask is chosen. */
  block?: number;
  /**
   * Chooses the mask during the walk instead of taking it whole (SparseGPT's adaptive selection, prune/sparsegpt.ts):
   * `keep` is then written by `choose` as the walk reaches the columns it covers. Not with `order`.
   */
  choose?: WalkChooser;
}

/**
 * A mask chosen while the column walk runs, from the weights as the walk has updated them so far. For each row,
 * `choose(r, j, end, …)` is called when the walk reaches column j, for j = j0, j0 + every, … of each block
 * [j0, j1) (end = min(j + every, j1)), before any of the columns [j, end) is pruned, and must set
 * keep[r·cols + k] for k in [j, end). `w` is the matrix being walked ([rows, cols], float64): row r's columns
 * ≥ j hold every correction of the columns walked before j; `uDiag` is the diagonal of U.
 */
export interface WalkChooser {
  every: number;
  choose(r: number, j: number, end: number, w: Float64Array, uDiag: Float64Array, keep: Uint8Array): void;
}

/**
 * The walk order for masks that prune whole input columns: the columns pruned in every row first (in order),
 * then the rest. Removing a set of columns one at a time, each with the exact inverse Hessian of the inputs still
 * present, is the joint least-squares solution; walked first, every pruned column still sees all kept ones.
 */
export function prunedColumnsFirst(keep: Uint8Array, rows: number, cols: number): Int32Array {
  const off = new Uint8Array(cols).fill(1);
  for (let r = 0; r < rows; r++) for (let j = 0; j < cols; j++) if (keep[r * cols + j]) off[j] = 0;
  const order = new Int32Array(cols);
  let n = 0;
  for (let j = 0; j < cols; j++) if (off[j]) order[n++] = j;
  for (let j = 0; j < cols; j++) if (!off[j]) order[n++] = j;
  return order;
}

/** w[:, order] of a [rows, cols] matrix (and, with `inverse`, the columns put back). */
function permuteColumns<T extends Float32Array | Uint8Array>(
  a: T,
  order: ArrayLike<number>,
  rows: number,
  cols: number,
  inverse = false,
): T {
  const out = new (a.constructor as new (n: number) => T)(a.length);
  for (let r = 0; r < rows; r++) {
    for (let k = 0; k < cols; k++) {
      if (inverse) out[r * cols + order[k]] = a[r * cols + k];
      else out[r * cols + k] = a[r * cols + order[k]];
    }
  }
  return out;
}

function permuteGram(h: Float64Array, order: ArrayLike<number>, cols: number): Float64Array {
  const out = new Float64Array(cols * cols);
  for (let i = 0; i < cols; i++)
    for (let j = 0; j < cols; j++) out[i * cols + j] = h[order[i] * cols + order[j]];
  return out;
}

/** What the column walk needs of an input's Gram matrix: computed once per input, shared by its linears. */
export interface GramFactor {
  /** U upper with (H + δI)⁻¹ = Uᵀ U, row-major [cols, cols]. */
  u: Float64Array;
  /** 1 for inputs that never fire (H_jj = 0): their weights become 0. */
  dead: Uint8Array;
}

/**
 * Factors H = XᵀX for the column walk: dead inputs get H_jj = 1, the diagonal is damped by δ = damping ·
 * mean(diag H), and U is the upper Cholesky factor of (H + δI)⁻¹ — O(cols³), the expensive part of recovery.
 */
export function factorGram(gram: Float64Array, cols: number, damping = 0.01): GramFactor {
  const { h, dead } = dampedGram(gram, cols, damping);
  // Row j of U restricted to k ≥ j is the inverse Hessian of the inputs not yet walked, scaled by U_jj, so
  // err · U_j,k is the optimal-brain-surgeon correction for zeroing w_rj.
  return { u: inverseUpperFactor(h, cols), dead };
}

/** Inputs above this many use the blocked factorization on `gemm` (factorGramWith). */
export const BLOCKED_FACTOR_MIN = 512;
/** Columns per block of the blocked factorization. */
const FACTOR_BLOCK = 256;

/**
 * factorGram with the O(n³) work as products on `gemm` (ONNX Runtime's MatMul in prune/sequential.ts) once the
 * input is wider than BLOCKED_FACTOR_MIN: a right-looking blocked Cholesky (each diagonal block factored in
 * float64, the panel and the trailing update as products) and a block-row triangular inverse. With a float32
 * `gemm` the factor is accurate to float32 rounding; recovery stays safe whatever its accuracy, since a walk that
 * would not beat plain masking keeps the masked weights.
 */
export async function factorGramWith(
  gram: Float64Array,
  cols: number,
  damping: number,
  gemm: Gemm,
): Promise<GramFactor> {
  if (cols <= BLOCKED_FACTOR_MIN) return factorGram(gram, cols, damping);
  const { h, dead } = dampedGram(gram, cols, damping);
  const n = cols;
  const reversed = new Float64Array(n * n);
  for (let i = 0; i < n; i++)
    for (let j = 0; j < n; j++) reversed[i * n + j] = h[(n - 1 - i) * n + (n - 1 - j)];
  const l = await blockedCholesky(reversed, n, gemm);
  const li = await blockedLowerInverse(l, n, gemm);
  const u = reversed;
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) u[i * n + j] = li[(n - 1 - i) * n + (n - 1 - j)];
  return { u, dead };
}

/** rows [r0, r1) × cols [c0, c1) of an n-wide row-major matrix, as its own row-major block. */
function block(a: Float64Array, n: number, r0: number, r1: number, c0: number, c1: number): Float64Array {
  const w = c1 - c0;
  const out = new Float64Array((r1 - r0) * w);
  for (let r = r0; r < r1; r++) out.set(a.subarray(r * n + c0, r * n + c1), (r - r0) * w);
  return out;
}

function transpose(a: Float64Array, rows: number, cols: number): Float64Array {
  const t = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) t[c * rows + r] = a[r * cols + c];
  return t;
}

/** Lower L with A = L Lᵀ, right-looking by blocks: A (a copy) is overwritten by the trailing updates. */
async function blockedCholesky(a0: Float64Array, n: number, gemm: Gemm): Promise<Float64Array> {
  const a = Float64Array.from(a0);
  const l = new Float64Array(n * n);
  for (let k0 = 0; k0 < n; k0 += FACTOR_BLOCK) {
    const k1 = Math.min(n, k0 + FACTOR_BLOCK);
    const b = k1 - k0;
    const l11 = cholesky(block(a, n, k0, k1, k0, k1), b);
    for (let r = 0; r < b; r++) l.set(l11.subarray(r * b, r * b + r + 1), (k0 + r) * n + k0);
    const m = n - k1;
    if (m === 0) break;
    // L21 = A21 · L11⁻ᵀ
    const l21 = await gemm(block(a, n, k1, n, k0, k1), m, b, transpose(lowerInverse(l11, b), b, b), b);
    for (let r = 0; r < m; r++) l.set(l21.subarray(r * b, (r + 1) * b), (k1 + r) * n + k0);
    // A22 −= L21 · L21ᵀ, in row chunks to bound the product's size
    const l21t = transpose(l21, m, b);
    const CHUNK = 1024;
    for (let c0 = 0; c0 < m; c0 += CHUNK) {
      const c1 = Math.min(m, c0 + CHUNK);
      const upd = await gemm(l21.subarray(c0 * b, c1 * b), c1 - c0, b, l21t, m);
      for (let r = c0; r < c1; r++) {
        const row = (k1 + r) * n + k1;
        const ur = (r - c0) * m;
        for (let c = 0; c <= r; c++) a[row + c] -= upd[ur + c];
      }
    }
  }
  return l;
}

/** L⁻¹ of a lower-triangular L by block rows: X_II = L_II⁻¹, X_I,<I = −X_II · (L_I,<I · X_<I,<I). */
async function blockedLowerInverse(l: Float64Array, n: number, gemm: Gemm): Promise<Float64Array> {
  const x = new Float64Array(n * n);
  for (let i0 = 0; i0 < n; i0 += FACTOR_BLOCK) {
    const i1 = Math.min(n, i0 + FACTOR_BLOCK);
    const b = i1 - i0;
    const xii = lowerInverse(block(l, n, i0, i1, i0, i1), b);
    for (let r = 0; r < b; r++) x.set(xii.subarray(r * b, r * b + r + 1), (i0 + r) * n + i0);
    if (i0 === 0) continue;
    const t = await gemm(block(l, n, i0, i1, 0, i0), b, i0, block(x, n, 0, i0, 0, i0), i0);
    const xi = await gemm(xii, b, b, t, i0);
    for (let r = 0; r < b; r++) {
      const row = (i0 + r) * n;
      for (let c = 0; c < i0; c++) x[row + c] = -xi[r * i0 + c];
    }
  }
  return x;
}

/** H with dead inputs (H_jj = 0) set to 1 and the diagonal damped by damping · mean(diag H). */
function dampedGram(
  gram: Float64Array,
  cols: number,
  damping: number,
): { h: Float64Array; dead: Uint8Array } {
  if (gram.length !== cols * cols) throw new Error(`Gram matrix must be ${cols}×${cols}`);
  const h = Float64Array.from(gram);
  const dead = new Uint8Array(cols);
  let diagMean = 0;
  for (let j = 0; j < cols; j++) diagMean += h[j * cols + j];
  diagMean /= cols;
  for (let j = 0; j < cols; j++) {
    if (h[j * cols + j] === 0) {
      h[j * cols + j] = 1;
      dead[j] = 1;
    }
  }
  const damp = damping * (diagMean > 0 ? diagMean : 1);
  for (let j = 0; j < cols; j++) h[j * cols + j] += damp;
  return { h, dead };
}

/**
 * U upper with A⁻¹ = Uᵀ U, for symmetric positive-definite A, in one Cholesky and one triangular inverse
 * (about n³/3 multiply-adds, against n³ for inverting A and factoring the inverse). With J the reversal
 * permutation and L the lower Cholesky factor of J A J, A = R Rᵀ with R = J L J upper, so A⁻¹ = R⁻ᵀ R⁻¹ and
 * U = R⁻¹ = J L⁻¹ J: upper with a positive diagonal, hence the Cholesky factor of A⁻¹ (which is unique).
 */
export function inverseUpperFactor(a: Float64Array, n: number): Float64Array {
  const reversed = new Float64Array(n * n);
  for (let i = 0; i < n; i++)
    for (let j = 0; j < n; j++) reversed[i * n + j] = a[(n - 1 - i) * n + (n - 1 - j)];
  const li = lowerInverse(cholesky(reversed, n), n);
  const u = reversed; // reused: every entry is overwritten
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) u[i * n + j] = li[(n - 1 - i) * n + (n - 1 - j)];
  return u;
}

/** L⁻¹ of a lower-triangular L, row by row: X_i = (e_i − Σ_{k<i} L_ik X_k) / L_ii (rows read contiguously). */
function lowerInverse(l: Float64Array, n: number): Float64Array {
  const x = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    const xi = i * n;
    for (let k = 0; k < i; k++) {
      const a = l[xi + k];
      if (a === 0) continue;
      const xk = k * n;
      for (let c = 0; c <= k; c++) x[xi + c] -= a * x[xk + c];
    }
    x[xi + i] += 1;
    const d = 1 / l[xi + i];
    for (let c = 0; c <= i; c++) x[xi + c] *= d;
  }
  return x;
}

export interface RecoverResult {
  /** The new [out, in] weight, zero where the mask prunes. */
  weight: Float32Array;
  /** Σ_rows (w − ŵ)ᵀ H (w − ŵ) of the masked weights and of the returned ones. */
  maskedError: number;
  error: number;
  /** False when the update was not better than masking alone and the masked weights came back. */
  recovered: boolean;
}

/** Lower Cholesky factor L of a symmetric positive-definite n×n matrix (row-major), in place of a copy. */
export function cholesky(a: Float64Array, n: number): Float64Array {
  const l = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) {
      let s = a[i * n + j];
      for (let k = 0; k < j; k++) s -= l[i * n + k] * l[j * n + k];
      if (i === j) {
        if (!(s > 0)) throw new Error(`matrix is not positive definite (pivot ${i}: ${s})`);
        l[i * n + i] = Math.sqrt(s);
      } else l[i * n + j] = s / l[j * n + j];
    }
  }
  return l;
}

/** Σ_rows dᵀ H d for d = w − ŵ, with the product D·H on `gemm`. */
async function gemmError(
  w: ArrayLike<number>,
  what: ArrayLike<number>,
  h: Float64Array,
  rows: number,
  cols: number,
  gemm: Gemm,
): Promise<number> {
  const d = new Float64Array(rows * cols);
  for (let i = 0; i < d.length; i++) d[i] = w[i] - what[i];
  const dh = await gemm(d, rows, cols, h, cols);
  let total = 0;
  for (let i = 0; i < d.length; i++) total += dh[i] * d[i];
  return total;
}

/** Columns per block of the walk: updates inside a block go column by column, past it as one product. */
export const WALK_BLOCK = 128;

/**
 * Recovers `weight` [rows, cols] under `keep` (1 kept) from the calibration Gram matrix `gram` = XᵀX
 * [cols, cols] of its inputs. With `opts.choose`, `keep` is an output: the walk fills it as it goes (SparseGPT).
 *
 * The walk is blocked as SparseGPT batches its updates: inside a block of WALK_BLOCK columns every pruned weight's
 * correction reaches the block's later columns at once; the corrections of the whole block reach the columns
 * after it as one product E·U[block, after] (the same sums, grouped). Products and the reconstruction errors run
 * on `opts.gemm` (plain float64 loops by default; prune/sequential.ts passes ONNX Runtime's float32 MatMul).
 */
export async function recoverLinear(
  weight: Float32Array,
  keep: Uint8Array,
  gram: Float64Array,
  rows: number,
  cols: number,
  opts: RecoverOptions = {},
): Promise<RecoverResult> {
  if (weight.length !== rows * cols || keep.length !== rows * cols) {
    throw new Error(`weight and mask must have ${rows}×${cols} entries`);
  }
  if (gram.length !== cols * cols) throw new Error(`Gram matrix must be ${cols}×${cols}`);
  if (opts.order) {
    const { order, ...rest } = opts;
    if (rest.choose) throw new Error('recoverLinear: a walk order takes a given mask, not a chosen one');
    if (rest.factor)
      throw new Error('recoverLinear: a walk order needs the factor of the reordered Gram matrix');
    const seen = new Uint8Array(cols);
    for (let k = 0; k < cols; k++) seen[order[k]] = 1;
    if (order.length !== cols || !seen.every((v) => v === 1))
      throw new Error(`walk order must be a permutation of 0 … ${cols - 1}`);
    // The Gram matrix reordered has the same reconstruction errors: only the names of the inputs change.
    const r = await recoverLinear(
      permuteColumns(weight, order, rows, cols),
      permuteColumns(keep, order, rows, cols),
      permuteGram(gram, order, cols),
      rows,
      cols,
      rest,
    );
    return { ...r, weight: permuteColumns(r.weight, order, rows, cols, true) };
  }
  const gemm = opts.gemm ?? plainGemm;
  const walkBlock = opts.block ?? WALK_BLOCK;
  const chooser = opts.choose;
  if (!(Number.isSafeInteger(walkBlock) && walkBlock >= 1)) throw new Error(`walk block ${walkBlock}`);
  if (chooser && !(Number.isSafeInteger(chooser.every) && chooser.every >= 1))
    throw new Error(`chooser step ${chooser.every}`);

  const { u, dead } = opts.factor ?? factorGram(gram, cols, opts.damping);
  const uDiag = chooser ? Float64Array.from({ length: cols }, (_, j) => u[j * cols + j]) : undefined;
  const w = Float64Array.from(weight);
  for (let j = 0; j < cols; j++) if (dead[j]) for (let r = 0; r < rows; r++) w[r * cols + j] = 0;
  for (let j0 = 0; j0 < cols; j0 += walkBlock) {
    const j1 = Math.min(cols, j0 + walkBlock);
    const bw = j1 - j0;
    const errs = new Float64Array(rows * bw);
    let any = false;
    for (let r = 0; r < rows; r++) {
      const wr = r * cols;
      for (let j = j0; j < j1; j++) {
        if (chooser && (j - j0) % chooser.every === 0)
          chooser.choose(r, j, Math.min(j + chooser.every, j1), w, uDiag!, keep);
        if (keep[wr + j]) continue;
        const err = w[wr + j] / u[j * cols + j];
        w[wr + j] = 0;
        if (err === 0) continue;
        any = true;
        errs[r * bw + (j - j0)] = err;
        const uj = j * cols;
        for (let k = j + 1; k < j1; k++) w[wr + k] -= err * u[uj + k];
      }
    }
    const rest = cols - j1;
    if (!any || rest === 0) continue;
    const tail = new Float64Array(bw * rest);
    for (let j = 0; j < bw; j++) tail.set(u.subarray((j0 + j) * cols + j1, (j0 + j + 1) * cols), j * rest);
    const delta = await gemm(errs, rows, bw, tail, rest);
    for (let r = 0; r < rows; r++) {
      const wr = r * cols + j1;
      const dr = r * rest;
      for (let k = 0; k < rest; k++) w[wr + k] -= delta[dr + k];
    }
  }
  // Measured after the walk: a chosen mask is only complete once the walk has passed every column.
  const masked = weight.map((v, i) => (keep[i] ? v : 0));
  const maskedError = await gemmError(weight, masked, gram, rows, cols, gemm);
  const out = Float32Array.from(w);
  for (let i = 0; i < out.length; i++) if (!keep[i]) out[i] = 0;
  const error = await gemmError(weight, out, gram, rows, cols, gemm);
  if (!(error <= maskedError)) return { weight: masked, maskedError, error: maskedError, recovered: false };
  return { weight: out, maskedError, error, recovered: true };
}
