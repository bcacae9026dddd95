/**
 * File plumbing shared by the checkpoint formats: ranged reads that open per call (so a lazily read model
 * never holds file descriptors), atomic writes (temp file in the same folder, then rename), and fs errors
 * turned into fileErrors that name the path.
 */
import { randomBytes } from 'node:crypto';
import { type FileHandle, open, rename, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { fileError, GenepruneError } from '../errors.js';

/** Largest single read(); Node refuses lengths ≥ 2 GiB. */
const READ_CHUNK = 1 << 30;

export function describeFsError(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  if (e?.code === 'ENOENT') return 'no such file or directory';
  if (e?.code === 'EACCES' || e?.code === 'EPERM') return 'permission denied';
  if (e?.code === 'EISDIR') return 'is a directory';
  if (e?.code === 'ENOTDIR') return 'a parent is not a directory';
  return e?.message ?? String(err);
}

/** Size of a regular file, or a fileError saying why it cannot be used. */
export async function fileSize(path: string): Promise<number> {
  let st: Awaited<ReturnType<typeof stat>>;
  try {
    st = await stat(path);
  } catch (err) {
    throw fileError(path, `cannot open: ${describeFsError(err)}`, err);
  }
  if (!st.isFile()) throw fileError(path, 'not a regular file');
  return st.size;
}

/** Fills `into` with the bytes at [offset, offset + into.length) of the file; short files are an error. */
export async function readRange(path: string, offset: number, into: Uint8Array): Promise<void> {
  let fh: FileHandle;
  try {
    fh = await open(path, 'r');
  } catch (err) {
    throw fileError(path, `cannot open: ${describeFsError(err)}`, err);
  }
  try {
    let done = 0;
    while (done < into.length) {
      const want = Math.min(READ_CHUNK, into.length - done);
      const { bytesRead } = await fh.read(into, done, want, offset + done);
      if (bytesRead === 0) {
        throw fileError(
          path,
          `truncated: needed ${into.length} bytes at offset ${offset}, file ends after ${offset + done}`,
        );
      }
      done += bytesRead;
    }
  } catch (err) {
    if (err instanceof GenepruneError) throw err;
    throw fileError(path, `read failed: ${describeFsError(err)}`, err);
  } finally {
    await fh.close();
  }
}

/**
 * Writes a file atomically: `write` fills a temp file beside `path`, which is synced and renamed over it, so a
 * crash never leaves a half-written checkpoint under the real name.
 */
export async function writeFileAtomic(path: string, write: (fh: FileHandle) => Promise<void>): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  let fh: FileHandle | undefined;
  try {
    fh = await open(tmp, 'wx');
    await write(fh);
    await fh.sync();
    await fh.close();
    fh = undefined;
    await rename(tmp, path);
  } catch (err) {
    if (fh) await fh.close().catch(() => {});
    await unlink(tmp).catch(() => {});
    if (err instanceof GenepruneError) throw err;
    throw fileError(path, `write failed: ${describeFsError(err)}`, err);
  }
}

/** Writes all of `bytes` at the handle's current end (positional writes may be partial). */
export async function writeAll(fh: FileHandle, bytes: Uint8Array): Promise<void> {
  let done = 0;
  while (done < bytes.length) {
    const { bytesWritten } = await fh.write(bytes, done, Math.min(READ_CHUNK, bytes.length - done));
    done += bytesWritten;
  }
}
