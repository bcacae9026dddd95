/**
 * Ranged reads for the checkpoint formats: they open per call, so a lazily read model never holds file
 * descriptors; short files and fs errors become fileErrors that name the path.
 */
import { type FileHandle, open, stat } from 'node:fs/promises';
import { fileError, GenepruneError } from '../errors.js';
import { describeFsError } from '../util/fs.js';

/** Largest single read(); Node refuses lengths ≥ 2 GiB. */
const READ_CHUNK = 1 << 30;

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
 * Reads [offset, offset + length) of the file in chunks of at most `chunkBytes`, handing each to `onChunk`
 * (the same scratch buffer every time: copy out what you keep). One open for the whole range.
 */
export async function readChunks(
  path: string,
  offset: number,
  length: number,
  chunkBytes: number,
  onChunk: (bytes: Uint8Array, at: number) => void,
): Promise<void> {
  let fh: FileHandle;
  try {
    fh = await open(path, 'r');
  } catch (err) {
    throw fileError(path, `cannot open: ${describeFsError(err)}`, err);
  }
  const scratch = new Uint8Array(Math.min(chunkBytes, length));
  try {
    let done = 0;
    while (done < length) {
      const want = Math.min(scratch.length, length - done);
      let got = 0;
      while (got < want) {
        const { bytesRead } = await fh.read(scratch, got, want - got, offset + done + got);
        if (bytesRead === 0) {
          throw fileError(
            path,
            `truncated: needed ${length} bytes at offset ${offset}, file ends after ${offset + done + got}`,
          );
        }
        got += bytesRead;
      }
      onChunk(scratch.subarray(0, want), done);
      done += want;
    }
  } catch (err) {
    if (err instanceof GenepruneError) throw err;
    throw fileError(path, `read failed: ${describeFsError(err)}`, err);
  } finally {
    await fh.close();
  }
}
