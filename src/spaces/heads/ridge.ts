/**
 * The linear algebra of the regression baseline (baselines.ts): ridge least squares over binary keep flags and
 * the Cholesky solve under it. Pure functions of arrays; no model, no objective.
 */
import { GenepruneError } from '../../errors.js';

/**
 * Ridge least squares for y ≈ b0 + X β with binary X, the intercept unpenalised (by centring). λ = ridge ·
 * mean diagonal of the centred XᵀX, so the penalty is relative to the data's scale and keeps the system
 * positive definite when samples are few or columns collinear. Returns β (the intercept is not needed).
 */
export function ridgeRegression(
  X: readonly Uint8Array[],
  y: readonly number[],
  ridge: number,
  n = X[0]?.length ?? 0,
): Float64Array {
  const m = X.length;
  if (m !== y.length) throw new GenepruneError('internal', 'ridgeRegression: X and y lengths differ');
  if (n === 0 || m === 0) return new Float64Array(n);
  const mean = new Float64Array(n);
  let yMean = 0;
  for (let s = 0; s < m; s++) {
    yMean += y[s];
    for (let j = 0; j < n; j++) mean[j] += X[s][j];
  }
  yMean /= m;
  for (let j = 0; j < n; j++) mean[j] /= m;
  // Σ (x − x̄)(x − x̄)ᵀ = Σ x xᵀ − m x̄ x̄ᵀ; the raw sum only touches kept pairs since x is 0/1.
  const A = new Float64Array(n * n);
  const b = new Float64Array(n);
  const kept: number[] = [];
  for (let s = 0; s < m; s++) {
    kept.length = 0;
    for (let j = 0; j < n; j++) if (X[s][j]) kept.push(j);
    const dy = y[s] - yMean;
    for (const i of kept) {
      b[i] += dy; // Σ (x − x̄) dy = Σ x dy, because Σ dy = 0
      for (const j of kept) A[i * n + j] += 1;
    }
  }
  let trace = 0;
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) A[i * n + j] -= m * mean[i] * mean[j];
    trace += A[i * n + i];
  }
  const lambda = trace > 0 ? (ridge * trace) / n : ridge > 0 ? ridge : 1e-12;
  for (let i = 0; i < n; i++) A[i * n + i] += lambda;
  return choleskySolve(A, b, n);
}

/** Solves A x = b for symmetric positive definite A (n×n, row-major; overwritten). */
export function choleskySolve(A: Float64Array, b: Float64Array, n: number): Float64Array {
  // A = L Lᵀ, L stored in the lower triangle of A.
  for (let j = 0; j < n; j++) {
    let d = A[j * n + j];
    for (let k = 0; k < j; k++) d -= A[j * n + k] * A[j * n + k];
    if (!(d > 0)) throw new GenepruneError('internal', 'choleskySolve: matrix is not positive definite');
    const ljj = Math.sqrt(d);
    A[j * n + j] = ljj;
    for (let i = j + 1; i < n; i++) {
      let s = A[i * n + j];
      for (let k = 0; k < j; k++) s -= A[i * n + k] * A[j * n + k];
      A[i * n + j] = s / ljj;
    }
  }
  const x = Float64Array.from(b);
  for (let i = 0; i < n; i++) {
    let s = x[i];
    for (let k = 0; k < i; k++) s -= A[i * n + k] * x[k];
    x[i] = s / A[i * n + i];
  }
  for (let i = n - 1; i >= 0; i--) {
    let s = x[i];
    for (let k = i + 1; k < n; k++) s -= A[k * n + i] * x[k];
    x[i] = s / A[i * n + i];
  }
  return x;
}
