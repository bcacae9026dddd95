/**
 * Matrix products for work outside the model graphs (recovery's reconstruction errors and blocked updates):
 * `plainGemm` in float64 TypeScript (the reference, and what tests use), and `createOrtGemm`, one small ONNX
 * Runtime MatMul session with symbolic shapes that runs any [m, k] × [k, n] product in float32 on the run's
 * device and threads — tens of times faster on a CPU than plain loops, at float32 precision.
 */
import { GraphBuilder } from '../graph/builder.js';
import { createEngine, type Device } from './session.js';

/** C = A·B for row-major A [m, k] and B [k, n]. */
export type Gemm = (
  a: Float64Array,
  m: number,
  k: number,
  b: Float64Array,
  n: number,
) => Promise<Float64Array>;

export const plainGemm: Gemm = async (a, m, k, b, n) => {
  const c = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    const ci = i * n;
    for (let p = 0; p < k; p++) {
      const x = a[i * k + p];
      if (x === 0) continue;
      const bp = p * n;
      for (let j = 0; j < n; j++) c[ci + j] += x * b[bp + j];
    }
  }
  return c;
};

export interface OrtGemm {
  gemm: Gemm;
  release(): Promise<void>;
}

export async function createOrtGemm(opts: { device?: Device; threads?: number } = {}): Promise<OrtGemm> {
  const g = new GraphBuilder();
  const a = g.input('a', 'float32', ['m', 'k']);
  const b = g.input('b', 'float32', ['k', 'n']);
  g.node('MatMul', [a, b], {}, { outputs: ['c'] });
  g.output('c', 'float32', ['m', 'n']);
  const engine = await createEngine(g.encode({ opset: 17 }), opts);
  return {
    async gemm(x, m, k, y, n) {
      if (m === 0 || n === 0 || k === 0) return new Float64Array(m * n);
      const out = await engine.run({
        a: { type: 'float32', dims: [m, k], data: Float32Array.from(x) },
        b: { type: 'float32', dims: [k, n], data: Float32Array.from(y) },
      });
      return Float64Array.from(out.c.data as Float32Array);
    },
    release: () => engine.release(),
  };
}
