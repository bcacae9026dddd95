/**
 * A tensor of a checkpoint as every reader hands it out: its shape and storage dtype, read from its file only
 * when asked for and converted to fp32 (safetensors, llama2c, ONNX initializers), or already in memory. A
 * ModelSpec (model/spec.ts) maps roles to these; the readers here produce them, so the interface lives with them.
 */

/** A tensor that is read from its file only when asked for, converted to fp32. */
export interface TensorSource {
  readonly shape: readonly number[];
  /** Storage dtype in the checkpoint (F32, F16, BF16, ...). */
  readonly dtype: string;
  /** Reads the tensor and returns fp32 values in the spec's layout (row-major). */
  load(): Promise<Float32Array>;
  /**
   * Reads the tensor straight into `out` (its element count), without a whole-tensor temporary; sources that
   * lack it are loaded and copied.
   */
  loadInto?(out: Float32Array): Promise<void>;
}

/** Fills `out` with the tensor's fp32 values, in place when the source can. */
export async function loadTensorInto(src: TensorSource, out: Float32Array): Promise<void> {
  if (src.loadInto) return src.loadInto(out);
  const data = await src.load();
  if (data.length !== out.length) throw new Error(`tensor has ${data.length} values, ${out.length} expected`);
  out.set(data);
}

/** A tensor already in memory, wrapped as a TensorSource. */
export function memoryTensor(shape: readonly number[], data: Float32Array): TensorSource {
  const n = shape.reduce((a, b) => a * b, 1);
  if (n !== data.length)
    throw new Error(`memoryTensor: shape ${shape.join('x')} needs ${n} values, got ${data.length}`);
  return { shape, dtype: 'F32', load: async () => data };
}
