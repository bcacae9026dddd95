/**
 * An ONNX model on disk: the ModelProto file and, beside it, the external-data files its initializers name
 * (each written part by part at its offset, zero-filled between, so nothing is concatenated in memory). What an
 * encoded model is (EncodedModel: the ModelProto bytes and its external data in memory) is defined here, by the
 * file it becomes; graph/builder.ts produces it.
 */

import { type FileHandle, open, readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import onnxProto from 'onnx-proto';
import { fileError } from '../errors.js';
import { describeFsError, writeAll, writeBytesAtomic, writeFileAtomic } from '../util/fs.js';
import { readRange } from './io.js';
import { loadTensorInto, type TensorSource } from './tensor.js';

/** One external-data file: its parts (blobs) at their byte offsets, zero-filled between. */
export interface ExternalFile {
  /** The `location` the graph names (a file name beside the model). */
  path: string;
  parts: Array<{ offset: number; data: Uint8Array }>;
  /** Total bytes of the file. */
  size: number;
}

export interface EncodedModel {
  /** ModelProto bytes. */
  model: Uint8Array;
  /** External data held in memory that the model refers to (empty when every initializer is inline). */
  externalData: ExternalFile[];
  /** The folder holding external files already on disk that the model names (see externalInitializer). */
  dir?: string;
}

/**
 * Writes tensors at the given byte offsets (ascending) of one external-data file, one tensor in memory at a
 * time, zero-filled between: as fp32 values from `source`, or whatever bytes `fill` puts in its buffer (fp16 and
 * bf16 weights). `atomic` (for files that outlive the process) syncs and renames into place; a scratch file skips
 * both, since nothing reads it after a crash.
 */
export async function writeWeightFile(
  path: string,
  tensors: ReadonlyArray<
    { offset: number; byteLength: number } & (
      | { source: TensorSource }
      | { fill: (out: Uint8Array) => Promise<void> }
    )
  >,
  opts: { atomic?: boolean } = {},
): Promise<void> {
  const write = async (fh: FileHandle) => {
    let at = 0;
    for (const t of tensors) {
      if (t.offset < at) throw new Error(`weight file ${path}: tensors overlap at ${t.offset}`);
      if (t.offset > at) await writeAll(fh, new Uint8Array(t.offset - at));
      // A Float32Array's buffer, so fp32 views of it are aligned.
      const bytes = new Uint8Array(new Float32Array(Math.ceil(t.byteLength / 4)).buffer, 0, t.byteLength);
      if ('fill' in t) await t.fill(bytes);
      else await loadTensorInto(t.source, new Float32Array(bytes.buffer, 0, t.byteLength / 4));
      await writeAll(fh, bytes);
      at = t.offset + t.byteLength;
    }
  };
  if (opts.atomic) return writeFileAtomic(path, write);
  let fh: FileHandle;
  try {
    fh = await open(path, 'wx');
  } catch (err) {
    throw fileError(path, `cannot create: ${describeFsError(err)}`, err);
  }
  try {
    await write(fh);
  } catch (err) {
    if (err instanceof Error && 'code' in err)
      throw fileError(path, `write failed: ${describeFsError(err)}`, err);
    throw err;
  } finally {
    await fh.close();
  }
}

/** Writes `model.model` to dir/name and each external file to dir/<its path>, every file atomically. */
export async function writeOnnxModel(dir: string, name: string, model: EncodedModel): Promise<string[]> {
  const written: string[] = [];
  for (const file of model.externalData) {
    await writeFileAtomic(join(dir, file.path), async (fh) => {
      let at = 0;
      for (const part of file.parts) {
        if (part.offset > at) await writeAll(fh, new Uint8Array(part.offset - at));
        await writeAll(fh, part.data);
        at = part.offset + part.data.byteLength;
      }
    });
    written.push(file.path);
  }
  // The graph last: a model file is never left naming data that is not there yet.
  await writeBytesAtomic(join(dir, name), model.model);
  return [name, ...written];
}

/**
 * Reads back the fp32 initializers named in `names` from an ONNX model file (inline, or in external data files
 * beside it), one at a time, for checks of what was written (e.g. the zeros of a pruned export). Every name must
 * be found, as fp32.
 */
export async function readOnnxFloatInitializers(
  path: string,
  names: ReadonlySet<string>,
  onTensor: (name: string, data: Float32Array) => void,
): Promise<void> {
  const { onnx } = onnxProto;
  let model: ReturnType<typeof onnx.ModelProto.decode>;
  try {
    model = onnx.ModelProto.decode(await readFile(path));
  } catch (err) {
    throw fileError(path, `cannot read the ONNX model: ${describeFsError(err)}`, err);
  }
  const found = new Set<string>();
  for (const t of model.graph?.initializer ?? []) {
    const name = t.name ?? '';
    if (!names.has(name)) continue;
    if (t.dataType !== onnx.TensorProto.DataType.FLOAT)
      throw fileError(path, `initializer ${name} is not fp32`);
    const numel = (t.dims ?? []).reduce((a: number, d) => a * Number(d), 1);
    let data: Float32Array;
    if (t.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL) {
      const kv = new Map((t.externalData ?? []).map((e) => [e.key, e.value]));
      const file = join(dirname(path), String(kv.get('location')));
      const bytes = new Uint8Array(numel * 4);
      await readRange(file, Number(kv.get('offset') ?? 0), bytes);
      data = new Float32Array(bytes.buffer);
    } else if (t.rawData && t.rawData.length > 0) {
      data = new Float32Array(Uint8Array.from(t.rawData).buffer);
    } else data = Float32Array.from(t.floatData ?? []);
    if (data.length !== numel)
      throw fileError(path, `initializer ${name} holds ${data.length} values, not ${numel}`);
    found.add(name);
    onTensor(name, data);
  }
  const missing = [...names].find((n) => !found.has(n));
  if (missing !== undefined) throw fileError(path, `holds no initializer ${missing}`);
}
