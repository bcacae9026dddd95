/**
 * Following a JSONL log that another process appends to: each `read` returns the records of the lines completed
 * since the last one. A line still being written (no newline yet) waits for the next read. A log that was
 * replaced (a resumed run rewrites its logs atomically: new inode) or shortened is read again from its start,
 * and the read says so, so that whoever shows the records can start over.
 */
import { open, stat } from 'node:fs/promises';

export interface TailRead {
  /** The file was replaced or truncated: `records` are the whole file again, and earlier ones are void. */
  reset: boolean;
  records: Array<Record<string, unknown>>;
  /** Complete lines that are not a JSON object (skipped). */
  corrupt: number;
}

export interface JsonlTail {
  read(): Promise<TailRead>;
}

export function tailJsonl(path: string): JsonlTail {
  let inode: number | undefined;
  let offset = 0;
  let partial = Buffer.alloc(0);
  return {
    async read() {
      const info = await stat(path).catch(() => undefined);
      let reset = false;
      if (!info) {
        // Gone (not yet written, or between a rewrite's unlink and rename): void what was shown if anything was.
        reset = inode !== undefined;
        inode = undefined;
        offset = 0;
        partial = Buffer.alloc(0);
        return { reset, records: [], corrupt: 0 };
      }
      if (inode !== undefined && (info.ino !== inode || info.size < offset)) reset = true;
      if (inode === undefined || reset) {
        inode = info.ino;
        offset = 0;
        partial = Buffer.alloc(0);
      }
      if (info.size === offset) return { reset, records: [], corrupt: 0 };
      const handle = await open(path, 'r');
      let bytes: Buffer;
      try {
        const buffer = Buffer.alloc(info.size - offset);
        const { bytesRead } = await handle.read(buffer, 0, buffer.length, offset);
        offset += bytesRead;
        bytes = Buffer.concat([partial, buffer.subarray(0, bytesRead)]);
      } finally {
        await handle.close();
      }
      // Bytes after the last newline (a line being written, perhaps cut inside a character) wait for the next read.
      const end = bytes.lastIndexOf(0x0a) + 1;
      partial = Buffer.from(bytes.subarray(end));
      const lines = bytes.subarray(0, end).toString('utf8').split('\n');
      const records: Array<Record<string, unknown>> = [];
      let corrupt = 0;
      for (const line of lines) {
        if (!line.trim()) continue;
        try {
          const r = JSON.parse(line);
          if (r !== null && typeof r === 'object' && !Array.isArray(r)) records.push(r);
          else corrupt++;
        } catch {
          corrupt++;
        }
      }
      return { reset, records, corrupt };
    },
  };
}
