/**
 * A plain SparseGPT (Frantar & Alistarh, 2023, Algorithm 1) for one linear, in float64 loops, written from the
 * paper's definition and independent of src/prune (no shared factorization, no blocked products): the oracle
 * that test/prune/sparsegpt.test.ts checks geneprune's mask and updated weights against.
 *
 * H = 2XᵀX + λ·mean(diag 2XᵀX)·I; H⁻¹ by its Cholesky factor (H = LLᵀ, H⁻¹ = L⁻ᵀL⁻¹); U the upper Cholesky
 * factor of H⁻¹ (H⁻¹ = UᵀU). Columns are walked one at a time; at the start of each block of B columns
 * (unstructured) each row's mask of the block is chosen by the saliency w²/U_jj² from the weights as they stand;
 * with N:M each group of M is chosen when the walk reaches its first column. Every pruned w_rj is zeroed and
 * its error e = w_rj/U_jj subtracted from every later column k of its row as e·U_jk (the OBS update, unbatched:
 * the paper's lazy batching only regroups these sums). Per-row count of a block [j0, j1):
 * round(s·j1) − round(s·j0) (the rule geneprune states; the paper's code ranks a block over all rows together).
 */

export interface ReferenceSparseGpt {
  keep: Uint8Array;
  weight: Float64Array;
}

function lowerCholesky(a: Float64Array, n: number): Float64Array {
  const l = new Float64Array(n * n);
  for (let j = 0; j < n; j++) {
    let d = a[j * n + j];
    for (let k = 0; k < j; k++) d -= l[j * n + k] ** 2;
    l[j * n + j] = Math.sqrt(d);
    for (let i = j + 1; i < n; i++) {
      let s = a[i * n + j];
      for (let k = 0; k < j; k++) s -= l[i * n + k] * l[j * n + k];
      l[i * n + j] = s / l[j * n + j];
    }
  }
  return l;
}

/** H⁻¹ from H = LLᵀ: solve L Y = I by forward substitution, then H⁻¹ = Yᵀ Y. */
function inverseByCholesky(h: Float64Array, n: number): Float64Array {
  const l = lowerCholesky(h, n);
  const y = new Float64Array(n * n); // Y = L⁻¹
  for (let c = 0; c < n; c++) {
    for (let i = 0; i < n; i++) {
      let s = i === c ? 1 : 0;
      for (let k = 0; k < i; k++) s -= l[i * n + k] * y[k * n + c];
      y[i * n + c] = s / l[i * n + i];
    }
  }
  const inv = new Float64Array(n * n);
  for (let i = 0; i < n; i++)
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let k = 0; k < n; k++) s += y[k * n + i] * y[k * n + j];
      inv[i * n + j] = s;
    }
  return inv;
}

/** Indices of `values` in ascending order, ties by index. */
function lowestFirst(values: number[]): number[] {
  return values.map((_, i) => i).sort((a, b) => values[a] - values[b] || a - b);
}

export function referenceSparseGpt(
  w0: ArrayLike<number>,
  x: ArrayLike<number>,
  tokens: number,
  rows: number,
  cols: number,
  opts: { sparsity: number; pattern?: { n: number; m: number }; block: number; damping?: number },
): ReferenceSparseGpt {
  const h = new Float64Array(cols * cols);
  for (let t = 0; t < tokens; t++)
    for (let i = 0; i < cols; i++)
      for (let j = 0; j < cols; j++) h[i * cols + j] += 2 * x[t * cols + i] * x[t * cols + j];
  let mean = 0;
  for (let j = 0; j < cols; j++) mean += h[j * cols + j] / cols;
  for (let j = 0; j < cols; j++) h[j * cols + j] += (opts.damping ?? 0.01) * mean;
  const hinv = inverseByCholesky(h, cols);
  // U upper with H⁻¹ = UᵀU: the transpose of H⁻¹'s lower Cholesky factor.
  const lower = lowerCholesky(hinv, cols);
  const u = (i: number, j: number) => lower[j * cols + i];

  const w = Float64Array.from(w0);
  const keep = new Uint8Array(rows * cols).fill(1);
  const saliency = (r: number, j: number) => w[r * cols + j] ** 2 / u(j, j) ** 2;
  for (let j = 0; j < cols; j++) {
    if (!opts.pattern && j % opts.block === 0) {
      const j1 = Math.min(cols, j + opts.block);
      const drop = Math.round(opts.sparsity * j1) - Math.round(opts.sparsity * j);
      for (let r = 0; r < rows; r++) {
        const s = [];
        for (let k = j; k < j1; k++) s.push(saliency(r, k));
        lowestFirst(s).forEach((k, rank) => {
          keep[r * cols + j + k] = rank < drop ? 0 : 1;
        });
      }
    }
    if (opts.pattern && j % opts.pattern.m === 0) {
      const { n, m } = opts.pattern;
      for (let r = 0; r < rows; r++) {
        const s = [];
        for (let k = j; k < j + m; k++) s.push(saliency(r, k));
        lowestFirst(s).forEach((k, rank) => {
          keep[r * cols + j + k] = rank < m - n ? 0 : 1;
        });
      }
    }
    for (let r = 0; r < rows; r++) {
      if (keep[r * cols + j]) continue;
      const e = w[r * cols + j] / u(j, j);
      for (let k = j + 1; k < cols; k++) w[r * cols + k] -= e * u(j, k);
      w[r * cols + j] = 0;
    }
  }
  return { keep, weight: w };
}
