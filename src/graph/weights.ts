/**
 * A model's weights in the compute dtype, laid out for ONNX external data (each tensor at a 64-byte aligned
 * offset), in one of two places:
 * - in memory (`loadWeights`): a few large buffers (blobs), each tensor a view into one; small models, tests.
 * - in a file (`prepareWeights` above the threshold): written tensor by tensor, so this process never holds the
 *   model; ONNX Runtime reads it into its own memory when a session starts, and it is deleted once every session
 *   that needs it has started. Measured, ORT copies in-memory external data too, so memory blobs would mean two
 *   full copies while a session starts; the file means one.
 * Each tensor is converted once, from its checkpoint file straight into its place.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeWeightFile } from '../checkpoint/onnx.js';
import { loadTensorInto, type ModelSpec } from '../model/spec.js';
import { alignUp, type ElemType, TENSOR_ALIGN, type WeightBlob } from './builder.js';

/**
 * Weights by role. Views into `blobs` when loaded by `loadWeights`; any Map of fp32 arrays works too (its
 * tensors are then copied into external data when a graph needs it).
 */
export type WeightMap = Map<string, Float32Array> & { readonly blobs?: readonly WeightBlob[] };

/** Where one tensor lies: which blob, its byte offset there, its element type (fp32 today). */
export interface PackedTensor {
  role: string;
  type: ElemType;
  blob: number;
  offset: number;
  byteLength: number;
}

/** Blobs are at most this large unless one tensor is larger (a 128k-vocabulary embedding is 1 GB in fp32). */
export const BLOB_BYTES = 1 << 30;

const ELEM_BYTES: Partial<Record<ElemType, number>> = { float32: 4 };

/** The compute dtype of a tensor (one place to change when fp16/bf16 compute arrives). */
function computeType(_role: string): ElemType {
  return 'float32';
}

/** Lays the spec's tensors out in blobs, in spec order; returns the placements and each blob's size. */
export function packLayout(
  spec: ModelSpec,
  blobBytes = BLOB_BYTES,
): { tensors: PackedTensor[]; blobSizes: number[] } {
  const tensors: PackedTensor[] = [];
  const blobSizes: number[] = [];
  let size = 0;
  for (const [role, src] of spec.tensors) {
    const type = computeType(role);
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
export function packedWeightBytes(spec: ModelSpec): number {
  return packLayout(spec).blobSizes.reduce((a, b) => a + b, 0);
}

/** Reads every tensor of the spec into freshly allocated blobs. */
export async function loadWeights(spec: ModelSpec, opts: { blobBytes?: number } = {}): Promise<WeightMap> {
  const { tensors, blobSizes } = packLayout(spec, opts.blobBytes);
  // Zero-filled allocations are lazily backed: memory is taken as tensors are written, not up front.
  const blobs = blobSizes.map((n) => ({ bytes: new Uint8Array(n) }));
  const out = new Map<string, Float32Array>() as Map<string, Float32Array> & { blobs: WeightBlob[] };
  out.blobs = blobs;
  for (const t of tensors) {
    const view = new Float32Array(blobs[t.blob].bytes.buffer, t.offset, t.byteLength / 4);
    await loadTensorInto(spec.tensors.get(t.role)!, view);
    out.set(t.role, view);
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
  /** Deletes the file (sessions started on it keep working: ORT holds its own copy). */
  release(): Promise<void>;
}

export type Weights = WeightMap | WeightFile;

export function isWeightFile(w: Weights): w is WeightFile {
  return (w as Partial<WeightFile>).kind === 'file';
}

/**
 * Inline protobuf weights are copied twice (protobuf, then ORT); a weight file once. Measured on the 134M shape
 * (README, Scale): the file route peaked at 0.56x the inline route's RSS and started faster; below this size
 * the difference is a few MB and the in-memory route needs no disk.
 */
export const DEFAULT_EXTERNAL_DATA_THRESHOLD = 64 << 20;

/** The file layout: every tensor in one blob, offsets aligned as in memory. */
function fileLayout(spec: ModelSpec): Map<string, PackedTensor & { dims: number[] }> {
  const { tensors } = packLayout(spec, Number.POSITIVE_INFINITY);
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
  opts: { atomic?: boolean } = {},
): Promise<WeightFile> {
  const tensors = fileLayout(spec);
  const path = join(dir, location);
  await writeWeightFile(
    path,
    [...tensors.values()].map((t) => ({
      offset: t.offset,
      byteLength: t.byteLength,
      source: spec.tensors.get(t.role)!,
    })),
    opts,
  );
  let bytes = 0;
  for (const t of tensors.values()) bytes = Math.max(bytes, t.offset + t.byteLength);
  return { kind: 'file', dir, location, tensors, bytes, release: () => rm(path, { force: true }) };
}

export interface PrepareWeightsOptions {
  /** Above this many bytes (compute dtype) the weights go to a temporary file; default 64 MiB; 0 always. */
  externalDataThreshold?: number;
  /** Where the temporary file goes (default: the OS temp folder). */
  tempDir?: string;
}

/** The weights of a spec, in memory or in a temporary file by size (see the module comment). */
export async function prepareWeights(spec: ModelSpec, opts: PrepareWeightsOptions = {}): Promise<Weights> {
  const threshold = opts.externalDataThreshold ?? DEFAULT_EXTERNAL_DATA_THRESHOLD;
  if (packedWeightBytes(spec) <= threshold) return loadWeights(spec);
  const dir = await mkdtemp(join(opts.tempDir ?? tmpdir(), 'geneprune-weights-'));
  try {
    const file = await writeWeights(spec, dir, 'weights.bin');
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
