/**
 * safetensors: an 8-byte little-endian header length, a JSON header (tensor name → dtype, shape, byte range in
 * the data section; optional `__metadata__` string map), then the raw little-endian data. The header is
 * untrusted input, so every field is checked before any tensor is read; tensors are read lazily by offset.
 */
import { fileError } from '../errors.js';
import { writeAll, writeFileAtomic } from '../util/fs.js';
import {
  convertInto,
  DTYPE_BYTES,
  type Dtype,
  describeElement,
  firstNonFinite,
  fromFloat32,
  isDtype,
  narrowInto,
  overflowText,
  toFloat32,
} from './dtype.js';
import { fileSize, readChunks, readRange } from './io.js';
import type { TensorSource } from './tensor.js';

/** Same bound as the reference implementation: real headers are at most a few MB. */
export const MAX_HEADER_BYTES = 100_000_000;

/** A tensor stored in a file: where it lives, so errors can name the file. */
export interface FileTensor extends TensorSource {
  readonly name: string;
  /** The file holding the tensor. */
  readonly file: string;
  readonly dtype: Dtype;
  /** Absolute byte offset of the first element in the file. */
  readonly byteOffset: number;
  readonly byteLength: number;
}

export interface SafetensorsFile {
  path: string;
  metadata: Record<string, string>;
  /** In header order. */
  tensors: Map<string, FileTensor>;
}

export function numelOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

const fmtShape = (shape: readonly number[]): string => `[${shape.join(',')}]`;

/** Bytes read per chunk when a tensor is widened in place: large enough for full-speed reads, small next to weights. */
const LOAD_CHUNK_BYTES = 16 << 20;

/**
 * A tensor read lazily from `file` at an absolute byte range and widened to fp32. Every checkpoint format's
 * tensors load through here, so this is where NaN/Inf weights are refused: one bad value makes every
 * perplexity NaN and every generated token meaningless, and the user should learn which tensor is broken.
 */
export function fileTensor(
  file: string,
  name: string,
  dtype: Dtype,
  shape: readonly number[],
  byteOffset: number,
): FileTensor {
  const byteLength = numelOf(shape) * DTYPE_BYTES[dtype];
  const refuseNonFinite = (values: Float32Array) => {
    const bad = firstNonFinite(values);
    if (bad >= 0) {
      throw fileError(
        file,
        `tensor ${name} ${fmtShape(shape)} holds ${values[bad]} at ${describeElement(shape, bad)}: the weights are corrupt (NaN/Inf)`,
      );
    }
  };
  return {
    name,
    file,
    dtype,
    shape,
    byteOffset,
    byteLength,
    async load(): Promise<Float32Array> {
      if (byteLength === 0) return new Float32Array(0);
      const bytes = new Uint8Array(byteLength);
      await readRange(file, byteOffset, bytes);
      const values = toFloat32(dtype, bytes);
      refuseNonFinite(values);
      return values;
    },
    async loadInto(out: Float32Array): Promise<void> {
      if (out.length !== numelOf(shape)) {
        throw fileError(file, `tensor ${name}: ${out.length} values asked for, it holds ${numelOf(shape)}`);
      }
      // Chunk by whole elements, so the storage bytes are never read twice or held whole.
      const elemBytes = DTYPE_BYTES[dtype];
      const chunk = Math.max(elemBytes, LOAD_CHUNK_BYTES - (LOAD_CHUNK_BYTES % elemBytes));
      await readChunks(file, byteOffset, byteLength, chunk, (bytes, at) => {
        const first = at / elemBytes;
        convertInto(dtype, bytes, out.subarray(first, first + bytes.length / elemBytes));
      });
      refuseNonFinite(out);
    },
  };
}

export async function openSafetensors(path: string): Promise<SafetensorsFile> {
  const size = await fileSize(path);
  if (size < 8) {
    throw fileError(
      path,
      `truncated: ${size} bytes, but a safetensors file starts with an 8-byte header length`,
    );
  }
  const lenBytes = new Uint8Array(8);
  await readRange(path, 0, lenBytes);
  const declared = new DataView(lenBytes.buffer).getBigUint64(0, true);
  if (declared > BigInt(size - 8)) {
    throw fileError(path, `safetensors header length ${declared} exceeds file size ${size}`);
  }
  const headerLen = Number(declared);
  if (headerLen > MAX_HEADER_BYTES) {
    throw fileError(
      path,
      `safetensors header length ${headerLen} exceeds the ${MAX_HEADER_BYTES}-byte limit`,
    );
  }
  const headerBytes = new Uint8Array(headerLen);
  await readRange(path, 8, headerBytes);

  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(headerBytes));
  } catch (err) {
    throw fileError(path, `safetensors header is not valid JSON: ${(err as Error).message}`, err);
  }
  if (!isPlainObject(header)) throw fileError(path, 'safetensors header is not a JSON object');

  const dataStart = 8 + headerLen;
  const dataSize = size - dataStart;
  const metadata: Record<string, string> = {};
  const tensors = new Map<string, FileTensor>();
  const ranges: Array<{ name: string; begin: number; end: number }> = [];

  for (const [name, entry] of Object.entries(header)) {
    if (name === '__metadata__') {
      if (!isPlainObject(entry)) throw fileError(path, 'safetensors __metadata__ is not a JSON object');
      for (const [k, v] of Object.entries(entry)) {
        if (typeof v !== 'string')
          throw fileError(path, `safetensors __metadata__ value for "${k}" is not a string`);
        metadata[k] = v;
      }
      continue;
    }
    const bad = (what: string) => fileError(path, `tensor ${name} ${what}`);
    if (!isPlainObject(entry)) throw bad('has a header entry that is not a JSON object');
    const { dtype, shape, data_offsets: offsets } = entry;
    if (!isDtype(dtype)) {
      throw bad(`has unknown dtype ${JSON.stringify(dtype)} (known: ${Object.keys(DTYPE_BYTES).join(', ')})`);
    }
    if (!Array.isArray(shape) || !shape.every(isCount)) {
      throw bad(`has invalid shape ${JSON.stringify(shape)} (need an array of non-negative integers)`);
    }
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isCount)) {
      throw bad(`has invalid data_offsets ${JSON.stringify(offsets)} (need [begin, end])`);
    }
    const [begin, end] = offsets as number[];
    if (begin > end || end > dataSize) {
      throw bad(`data_offsets [${begin},${end}] out of range (data section is ${dataSize} bytes)`);
    }
    const numel = numelOf(shape);
    const need = numel * DTYPE_BYTES[dtype];
    if (!Number.isSafeInteger(need) || need !== end - begin) {
      throw bad(
        `data_offsets [${begin},${end}] hold ${end - begin} bytes, but ${dtype} ${fmtShape(shape)} needs ${need}`,
      );
    }
    if (end > begin) ranges.push({ name, begin, end });
    tensors.set(name, fileTensor(path, name, dtype, shape, dataStart + begin));
  }

  ranges.sort((a, b) => a.begin - b.begin);
  for (let i = 1; i < ranges.length; i++) {
    const p = ranges[i - 1];
    const r = ranges[i];
    if (r.begin < p.end) {
      throw fileError(
        path,
        `tensors ${p.name} [${p.begin},${p.end}] and ${r.name} [${r.begin},${r.end}] overlap in the data section`,
      );
    }
  }
  return { path, metadata, tensors };
}

export type StoredFloat = 'F32' | 'F16' | 'BF16';

/** A tensor to write; `data` may be a loader so large models are written one tensor at a time. */
export interface WritableTensor {
  name: string;
  shape: readonly number[];
  data: Float32Array | (() => Promise<Float32Array>);
  /** Storage dtype of this tensor; overrides the file-wide option. */
  dtype?: StoredFloat;
}

/** A tensor of raw bytes written as they are (U8: packed bit masks), not converted from fp32. */
export interface WritableBytes {
  name: string;
  shape: readonly number[];
  dtype: 'U8';
  bytes: Uint8Array | (() => Promise<Uint8Array>);
}

/** The float dtypes a safetensors file can hold here; anything else is written as F32. */
export function storedFloatOf(dtype: string): StoredFloat {
  return dtype === 'F16' || dtype === 'BF16' ? dtype : 'F32';
}

export interface WriteSafetensorsOptions {
  /** Storage dtype of tensors that name none; values are rounded to nearest even for F16 / BF16. Default F32. */
  dtype?: StoredFloat;
}

/** Writes tensors (in the given order) to a safetensors file, atomically. */
export async function writeSafetensors(
  path: string,
  tensors: readonly (WritableTensor | WritableBytes)[],
  metadata?: Record<string, string>,
  options: WriteSafetensorsOptions = {},
): Promise<void> {
  const dtype = options.dtype ?? 'F32';
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length > 0) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string') throw fileError(path, `metadata value for "${k}" must be a string`);
    }
    header.__metadata__ = metadata;
  }
  let offset = 0;
  for (const t of tensors) {
    if (t.name === '__metadata__' || Object.hasOwn(header, t.name)) {
      throw fileError(path, `cannot write tensor name "${t.name}" (reserved or duplicated)`);
    }
    if (!t.shape.every(isCount))
      throw fileError(path, `tensor ${t.name} has invalid shape ${fmtShape(t.shape)}`);
    const stored = t.dtype ?? dtype;
    const bytes = numelOf(t.shape) * DTYPE_BYTES[stored];
    header[t.name] = { dtype: stored, shape: [...t.shape], data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }

  const json = new TextEncoder().encode(JSON.stringify(header));
  // Pad with spaces so the data section starts 8-byte aligned (readers may map it as typed arrays).
  const padded = Math.ceil(json.length / 8) * 8;
  const head = new Uint8Array(8 + padded).fill(0x20);
  new DataView(head.buffer).setBigUint64(0, BigInt(padded), true);
  head.set(json, 8);

  await writeFileAtomic(path, async (fh) => {
    await writeAll(fh, head);
    for (const t of tensors) {
      const numel = numelOf(t.shape);
      const data = 'bytes' in t ? await resolveData(t.bytes) : await resolveData(t.data);
      if (data.length !== numel) {
        throw fileError(
          path,
          `tensor ${t.name}: shape ${fmtShape(t.shape)} needs ${numel} values, got ${data.length}`,
        );
      }
      await writeAll(
        fh,
        'bytes' in t
          ? (data as Uint8Array)
          : storedBytes(path, t.name, t.dtype ?? dtype, data as Float32Array),
      );
    }
  });
}

/** fp32 values as `dtype` bytes; a finite value that would become infinity is refused, never written. */
function storedBytes(path: string, name: string, dtype: StoredFloat, values: Float32Array): Uint8Array {
  if (dtype === 'F32') return fromFloat32('F32', values);
  const bits = new Uint16Array(values.length);
  const at = narrowInto(dtype, values, bits);
  if (at >= 0) throw fileError(path, overflowText(name, dtype, values, at));
  return new Uint8Array(bits.buffer);
}

const resolveData = <T>(v: T | (() => Promise<T>)): Promise<T> | T =>
  typeof v === 'function' ? (v as () => Promise<T>)() : v;

/** The stored bytes of a tensor, as they are (for U8 / BOOL tensors, which are not weights). */
export async function readTensorBytes(t: FileTensor): Promise<Uint8Array> {
  const bytes = new Uint8Array(t.byteLength);
  if (t.byteLength > 0) await readRange(t.file, t.byteOffset, bytes);
  return bytes;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isCount(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}
