/**
 * A model's weights in the compute dtype, laid out for ONNX external data (each tensor at a 64-byte aligned
 * offset), in one of two places:
 * - in memory (`loadWeights`): a few large buffers (blobs), each tensor a view into one; small models, tests.
 * - in a file (`prepareWeights` above the threshold): written tensor by tensor, so this process never holds the
 *   model; ONNX Runtime reads it into its own memory when a session starts, and it is deleted once every session
 *   that needs it has started. Measured, ORT copies in-memory external data too, so memory blobs would mean two
 *   full copies while a session starts; the file means one.
 * Each tensor is converted once, from its checkpoint file straight into its place, in the compute dtype: with
 * fp16/bf16 compute the matrices are narrowed as they are written, so ONNX Runtime holds them at 2 bytes each and
 * no fp32 copy of the model exists anywhere (one tensor's fp32 values at a time while converting).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { narrowInto } from '../checkpoint/dtype.js';
import { writeWeightFile } from '../checkpoint/onnx.js';
import { flagError } from '../errors.js';
import { loadTensorInto, type ModelSpec, type TensorSource } from '../model/spec.js';
import { alignUp, type ElemType, TENSOR_ALIGN, type WeightBlob } from './builder.js';

/**
 * Compute precision: the dtype weights are held in by ONNX Runtime (and, where the execution provider has the
 * kernels, the linears run in). Normalisation statistics, softmax, attention on CPU and the loss stay fp32.
 */
export type ComputeDtype = 'fp32' | 'fp16' | 'bf16';
export const COMPUTE_DTYPES: readonly ComputeDtype[] = ['fp32', 'fp16', 'bf16'];

/** Bytes per weight element of a compute dtype (what matrices cost in memory). */
export const COMPUTE_DTYPE_BYTES: Readonly<Record<ComputeDtype, number>> = { fp32: 4, fp16: 2, bf16: 2 };

/**
 * Weights by role. Views into `blobs` when loaded by `loadWeights` (fp16/bf16 matrices as Uint16Array bits, their
 * element type in `types`); any Map of fp32 arrays works too (its tensors are then copied into external data when
 * a graph needs it).
 */
export type WeightMap = Map<string, Float32Array | Uint16Array> & {
  readonly blobs?: readonly WeightBlob[];
  readonly dtype?: ComputeDtype;
  readonly types?: ReadonlyMap<string, ElemType>;
};

/** Where one tensor lies: which blob, its byte offset there, its element type. */
export interface PackedTensor {
  role: string;
  type: ElemType;
  blob: number;
  offset: number;
  byteLength: number;
}

/** Blobs are at most this large unless one tensor is larger (a 128k-vocabulary embedding is 1 GB in fp32). */
export const BLOB_BYTES = 1 << 30;

const ELEM_BYTES: Partial<Record<ElemType, number>> = { float32: 4, float16: 2, bfloat16: 2 };

/**
 * The element type a tensor is held in. Matrices (linears, embeddings, the classifier) take the compute dtype:
 * they are the memory. Vectors (norm weights, biases) stay fp32: a few KB, and they enter fp32 arithmetic.
 */
export function storageTypeOf(src: { readonly shape: readonly number[] }, dtype: ComputeDtype): ElemType {
  if (dtype === 'fp32' || src.shape.length < 2) return 'float32';
  return dtype === 'fp16' ? 'float16' : 'bfloat16';
}

/** Lays the spec's tensors out in blobs, in spec order; returns the placements and each blob's size. */
export function packLayout(
  spec: ModelSpec,
  blobBytes = BLOB_BYTES,
  dtype: ComputeDtype = 'fp32',
): { tensors: PackedTensor[]; blobSizes: number[] } {
  const tensors: PackedTensor[] = [];
  const blobSizes: number[] = [];
  let size = 0;
  for (const [role, src] of spec.tensors) {
    const type = storageTypeOf(src, dtype);
    const byteLength = src.shape.reduce((a, b) => a * b, 1) * ELEM_BYTES[type]!;
    let offset = alignUp(size, TENSOR_ALIGN);
    if (blobSizes.length === 0 || (offset + byteLength > blobBytes && size > 0)) {
      if (blobSizes.length > 0) blobSizes[blobSizes.length - 1] = size;
      blobSizes.push(0);
      offset = 0;
    }
    tensors.push({ role, type, blob: blobSizes.length - 1, offset, byteLength });
    size = offset + byteLength;
  }
  if (blobSizes.length > 0) blobSizes[blobSizes.length - 1] = size;
  return { tensors, blobSizes };
}

/** Bytes the weights take in the compute dtype, padding included. */
export function packedWeightBytes(spec: ModelSpec, dtype: ComputeDtype = 'fp32'): number {
  return packLayout(spec, BLOB_BYTES, dtype).blobSizes.reduce((a, b) => a + b, 0);
}

/**
 * Fills `out` (fp32 values, or fp16/bf16 bits) with a tensor's values. Narrowing goes through one fp32 copy of
 * this tensor; a value beyond fp16's range is refused rather than turned into infinity.
 */
export async function loadTensorAs(
  role: string,
  src: TensorSource,
  type: ElemType,
  out: Float32Array | Uint16Array,
): Promise<void> {
  if (type === 'float32') return loadTensorInto(src, out as Float32Array);
  const values = new Float32Array(out.length);
  await loadTensorInto(src, values);
  const at = narrowInto(type === 'float16' ? 'F16' : 'BF16', values, out as Uint16Array);
  if (at >= 0) {
    throw flagError(
      '--dtype',
      `weight ${role} holds ${values[at]} (element ${at}), beyond ${type === 'float16' ? "fp16's range (±65504)" : "bf16's range"}; compute in fp32 or bf16`,
    );
  }
}

/** Reads every tensor of the spec into freshly allocated blobs, in the compute dtype (default fp32). */
export async function loadWeights(
  spec: ModelSpec,
  opts: { blobBytes?: number; dtype?: ComputeDtype } = {},
): Promise<WeightMap> {
  const dtype = opts.dtype ?? 'fp32';
  const { tensors, blobSizes } = packLayout(spec, opts.blobBytes, dtype);
  // Zero-filled allocations are lazily backed: memory is taken as tensors are written, not up front.
  const blobs = blobSizes.map((n) => ({ bytes: new Uint8Array(n) }));
  const types = new Map<string, ElemType>();
  const out = Object.assign(new Map<string, Float32Array | Uint16Array>(), { blobs, dtype, types });
  for (const t of tensors) {
    const buffer = blobs[t.blob].bytes.buffer;
    const view =
      t.type === 'float32'
        ? new Float32Array(buffer, t.offset, t.byteLength / 4)
        : new Uint16Array(buffer, t.offset, t.byteLength / 2);
    await loadTensorAs(t.role, spec.tensors.get(t.role)!, t.type, view);
    out.set(t.role, view);
    types.set(t.role, t.type);
  }
  return out;
}

/** Weights in one external-data file: what a graph names, and the folder it lies in. */
export interface WeightFile {
  readonly kind: 'file';
  readonly dir: string;
  readonly location: string;
  readonly tensors: ReadonlyMap<string, PackedTensor & { dims: number[] }>;
  readonly bytes: number;
  readonly dtype: ComputeDtype;
  /** Deletes the file (sessions started on it keep working: ORT holds its own copy). */
  release(): Promise<void>;
}

export type Weights = WeightMap | WeightFile;

export function isWeightFile(w: Weights): w is WeightFile {
  return (w as Partial<WeightFile>).kind === 'file';
}

/**
 * Inline protobuf weights are copied twice (protobuf, then ORT); a weight file once. Measured on the 134M shape
 * (docs/scale-and-precision.md): the file route peaked at 0.56x the inline route's RSS and started faster; below this size
 * the difference is a few MB and the in-memory route needs no disk.
 */
export const DEFAULT_EXTERNAL_DATA_THRESHOLD = 64 << 20;

/** The compute dtype weights were prepared in. */
export function weightsDtype(w: Weights): ComputeDtype {
  return w.dtype ?? 'fp32';
}

/** The element type of one tensor as prepared (fp32 for any plain Map of fp32 arrays). */
export function weightType(w: Weights, role: string): ElemType {
  if (isWeightFile(w)) return w.tensors.get(role)?.type ?? 'float32';
  return w.types?.get(role) ?? 'float32';
}

/** The file layout: every tensor in one blob, offsets aligned as in memory. */
function fileLayout(spec: ModelSpec, dtype: ComputeDtype): Map<string, PackedTensor & { dims: number[] }> {
  const { tensors } = packLayout(spec, Number.POSITIVE_INFINITY, dtype);
  return new Map(tensors.map((t) => [t.role, { ...t, dims: [...spec.tensors.get(t.role)!.shape] }]));
}

/**
 * Writes the spec's weights as one external-data file `location` in `dir` (the caller owns the folder; release
 * deletes only the file).
 */
export async function writeWeights(
  spec: ModelSpec,
  dir: string,
  location: string,
  opts: { atomic?: boolean; dtype?: ComputeDtype } = {},
): Promise<WeightFile> {
  const dtype = opts.dtype ?? 'fp32';
  const tensors = fileLayout(spec, dtype);
  const path = join(dir, location);
  await writeWeightFile(
    path,
    [...tensors.values()].map((t) => ({
      offset: t.offset,
      byteLength: t.byteLength,
      fill: (out: Uint8Array) =>
        loadTensorAs(
          t.role,
          spec.tensors.get(t.role)!,
          t.type,
          t.type === 'float32'
            ? new Float32Array(out.buffer, out.byteOffset, out.byteLength / 4)
            : new Uint16Array(out.buffer, out.byteOffset, out.byteLength / 2),
        ),
    })),
    opts,
  );
  let bytes = 0;
  for (const t of tensors.values()) bytes = Math.max(bytes, t.offset + t.byteLength);
  return { kind: 'file', dir, location, tensors, bytes, dtype, release: () => rm(path, { force: true }) };
}

export interface PrepareWeightsOptions {
  /** Above this many bytes (compute dtype) the weights go to a temporary file; default 64 MiB; 0 always. */
  externalDataThreshold?: number;
  /** Where the temporary file goes (default: the OS temp folder). */
  tempDir?: string;
  /** The dtype the weights are held in (default fp32). */
  dtype?: ComputeDtype;
}

/** The weights of a spec, in memory or in a temporary file by size (see the module comment). */
export async function prepareWeights(spec: ModelSpec, opts: PrepareWeightsOptions = {}): Promise<Weights> {
  const threshold = opts.externalDataThreshold ?? DEFAULT_EXTERNAL_DATA_THRESHOLD;
  const dtype = opts.dtype ?? 'fp32';
  if (packedWeightBytes(spec, dtype) <= threshold) return loadWeights(spec, { dtype });
  const dir = await mkdtemp(join(opts.tempDir ?? tmpdir(), 'geneprune-weights-'));
  try {
    const file = await writeWeights(spec, dir, 'weights.bin', { dtype });
    return { ...file, release: () => rm(dir, { recursive: true, force: true }) };
  } catch (e) {
    await rm(dir, { recursive: true, force: true });
    throw e;
  }
}

/** Frees what prepareWeights made (a temporary file; memory is left to the garbage collector). */
export async function releaseWeights(w: Weights): Promise<void> {
  if (isWeightFile(w)) await w.release();
}
