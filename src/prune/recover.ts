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

export interface RecoverOptions {
  /** Ridge damping as a fraction of mean(diag H) (default 0.01, SparseGPT's). */
  damping?: number;
  /** The Gram matrix's factor from factorGram, when several linears share their input (q/k/v, gate/up). */
  factor?: GramFactor;
  /**
   * The order in which the walk visits the inputs (a permutation of 0 … in−1; default in order). Each pruned
   * weight's error goes only to the inputs walked after it, so inputs pruned in every row walked first (see
   * prunedColumnsFirst) make the walk the exact damped least-squares optimum for a mask of whole columns (the o
   * projection of removed heads). The factor is then of the reordered Gram matrix: `factor` may not be given.
   */
  order?: ArrayLike<number>;
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
  // Row j of U restricted to k ≥ j is the inverse Hessian of the inputs not yet walked, scaled by U_jj, so
  // err · U_j,k is the optimal-brain-surgeon correction for zeroing w_rj.
  return { u: upperCholesky(inverseFromCholesky(cholesky(h, cols), cols), cols), dead };
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

/** (L Lᵀ)⁻¹ from the lower factor L. */
function inverseFromCholesky(l: Float64Array, n: number): Float64Array {
  // L⁻¹ by forward substitution, then (L Lᵀ)⁻¹ = L⁻ᵀ L⁻¹.
  const li = new Float64Array(n * n);
  for (let c = 0; c < n; c++) {
    li[c * n + c] = 1 / l[c * n + c];
    for (let i = c + 1; i < n; i++) {
      let s = 0;
      for (let k = c; k < i; k++) s += l[i * n + k] * li[k * n + c];
      li[i * n + c] = -s / l[i * n + i];
    }
  }
  const inv = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) {
      let s = 0;
      for (let k = i; k < n; k++) s += li[k * n + i] * li[k * n + j];
      inv[i * n + j] = s;
      inv[j * n + i] = s;
    }
  }
  return inv;
}

/** Σ_rows dᵀ H d for d = w − ŵ. */
export function reconstructionError(
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

/**
 * Recovers `weight` [rows, cols] under `keep` (1 kept) from the calibration Gram matrix `gram` = XᵀX
 * [cols, cols] of its inputs.
 */
export function recoverLinear(
  weight: Float32Array,
  keep: Uint8Array,
  gram: Float64Array,
  rows: number,
  cols: number,
  opts: RecoverOptions = {},
): RecoverResult {
  if (weight.length !== rows * cols || keep.length !== rows * cols) {
    throw new Error(`weight and mask must have ${rows}×${cols} entries`);
  }
  if (gram.length !== cols * cols) throw new Error(`Gram matrix must be ${cols}×${cols}`);
  if (opts.order) {
    const { order, ...rest } = opts;
    if (rest.factor)
      throw new Error('recoverLinear: a walk order needs the factor of the reordered Gram matrix');
    const seen = new Uint8Array(cols);
    for (let k = 0; k < cols; k++) seen[order[k]] = 1;
    if (order.length !== cols || !seen.every((v) => v === 1))
      throw new Error(`walk order must be a permutation of 0 … ${cols - 1}`);
    // The Gram matrix reordered has the same reconstruction errors: only the names of the inputs change.
    const r = recoverLinear(
      permuteColumns(weight, order, rows, cols),
      permuteColumns(keep, order, rows, cols),
      permuteGram(gram, order, cols),
      rows,
      cols,
      rest,
    );
    return { ...r, weight: permuteColumns(r.weight, order, rows, cols, true) };
  }
  const masked = weight.map((v, i) => (keep[i] ? v : 0));
  const maskedError = reconstructionError(weight, masked, gram, rows, cols);

  const { u, dead } = opts.factor ?? factorGram(gram, cols, opts.damping);
  const w = Float64Array.from(weight);
  for (let j = 0; j < cols; j++) if (dead[j]) for (let r = 0; r < rows; r++) w[r * cols + j] = 0;
  for (let j = 0; j < cols; j++) {
    const ujj = u[j * cols + j];
    for (let r = 0; r < rows; r++) {
      const at = r * cols + j;
      if (keep[at]) continue;
      const err = w[at] / ujj;
      if (err !== 0) for (let k = j + 1; k < cols; k++) w[r * cols + k] -= err * u[j * cols + k];
      w[at] = 0;
    }
  }
  const out = Float32Array.from(w);
  for (let i = 0; i < out.length; i++) if (!keep[i]) out[i] = 0;
  const error = reconstructionError(weight, out, gram, rows, cols);
  if (!(error <= maskedError)) return { weight: masked, maskedError, error: maskedError, recovered: false };
  return { weight: out, maskedError, error, recovered: true };
}

/** Upper factor U with A = Uᵀ U (row-major), for symmetric positive-definite A. */
function upperCholesky(a: Float64Array, n: number): Float64Array {
  const u = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    let s = a[i * n + i];
    for (let k = 0; k < i; k++) s -= u[k * n + i] * u[k * n + i];
    if (!(s > 0)) throw new Error(`matrix is not positive definite (pivot ${i}: ${s})`);
    const d = Math.sqrt(s);
    u[i * n + i] = d;
    for (let j = i + 1; j < n; j++) {
      let t = a[i * n + j];
      for (let k = 0; k < i; k++) t -= u[k * n + i] * u[k * n + j];
      u[i * n + j] = t / d;
    }
  }
  return u;
}
