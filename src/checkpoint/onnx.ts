/**
 * An ONNX model on disk: the ModelProto file and, beside it, the external-data files its initializers name
 * (each written part by part at its offset, zero-filled between, so nothing is concatenated in memory).
 */

import { type FileHandle, open } from 'node:fs/promises';
import { join } from 'node:path';
import { fileError } from '../errors.js';
import type { EncodedModel } from '../graph/builder.js';
import { loadTensorInto, type TensorSource } from '../model/spec.js';
import { describeFsError, writeAll, writeBytesAtomic, writeFileAtomic } from '../util/fs.js';

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
