/**
 * The float64 building blocks the decoder references (gemma.ts, qwen3.ts, phi3.ts) share, each written from its
 * definition: a linear map, RMSNorm (with Gemma's 1 + w as an offset), half-split rotary and SiLU.
 */

/** y = W·x (+ b), W [out, in]. */
export function linear(W: Float32Array, x: Float64Array, out: number, b?: Float32Array): Float64Array {
  const n = x.length;
  const y = new Float64Array(out);
  for (let o = 0; o < out; o++) {
    let s = b ? b[o] : 0;
    for (let i = 0; i < n; i++) s += W[o * n + i] * x[i];
    y[o] = s;
  }
  return y;
}

/** RMSNorm: x / √(mean(x²) + eps) · (offset + w) (Gemma scales by 1 + w, the others by w). */
export function rmsNorm(x: Float64Array, w: Float32Array, eps: number, offset = 0): Float64Array {
  let ss = 0;
  for (const v of x) ss += v * v;
  const r = 1 / Math.sqrt(ss / x.length + eps);
  return x.map((v, i) => v * r * (offset + w[i]));
}

/** Half-split rotary on head `h` of a [heads·hd] vector at position `pos`, in place. */
export function rotate(v: Float64Array, h: number, hd: number, pos: number, theta: number): void {
  const half = hd / 2;
  const base = h * hd;
  for (let j = 0; j < half; j++) {
    const angle = pos / theta ** ((2 * j) / hd);
    const c = Math.cos(angle);
    const s = Math.sin(angle);
    const a = v[base + j];
    const b = v[base + half + j];
    v[base + j] = a * c - b * s;
    v[base + half + j] = b * c + a * s;
  }
}

export const silu = (x: number): number => x / (1 + Math.exp(-x));
