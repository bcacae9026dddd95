/**
 * Text data: a text file, a folder of text files, or JSONL with a `text` field. Lines `<|endoftext|>`
 * separate documents inside text files.
 *
 * Data must be text: valid UTF-8 with no control bytes other than tab, LF, CR and form feed (form feed is a
 * page break in plain-text corpora such as Project Gutenberg books and RFCs; every other C0 byte and DEL 0x7f
 * mean a binary file). Anything else is refused naming the file and the byte offset, because a model scores
 * random bytes as happily as prose and the perplexity it prints would be meaningless.
 */
import { open, readdir, readFile, stat } from 'node:fs/promises';
import { extname, join } from 'node:path';
import { dataError, fileError } from '../errors.js';
import { pushAll } from '../util/arrays.js';
import { specialKind } from '../util/fs.js';

export const DOCUMENT_SEPARATOR = '<|endoftext|>';

export interface Dataset {
  /** The path the user gave. */
  source: string;
  /** Files read, in order. */
  files: string[];
  documents: string[];
}

const TEXT_EXTS = new Set(['.txt', '.text', '.md']);
const JSONL_EXTS = new Set(['.jsonl', '.ndjson']);
const SEPARATOR_LINE = /^<\|endoftext\|>[ \t]*$/;
const LINE_END = /[\n\r\u2028\u2029]/g;

/** C0 control bytes that text may hold: tab, LF, form feed, CR. */
const ALLOWED_CONTROL = new Set([0x09, 0x0a, 0x0c, 0x0d]);

/**
 * Offset of the first byte that makes `bytes` not text (invalid or truncated UTF-8 — overlong forms,
 * surrogates and code points past U+10FFFF included — or a control byte), or −1. For an invalid sequence the
 * offset is that of its first byte.
 */
export function firstNonTextByte(bytes: Uint8Array): number {
  const n = bytes.length;
  let i = 0;
  while (i < n) {
    const c = bytes[i];
    if (c < 0x80) {
      if ((c < 0x20 && !ALLOWED_CONTROL.has(c)) || c === 0x7f) return i;
      i++;
      continue;
    }
    // Second-byte range and sequence length by lead byte (RFC 3629 §4).
    let len: number;
    let lo = 0x80;
    let hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) len = 2;
    else if (c >= 0xe0 && c <= 0xef) {
      len = 3;
      if (c === 0xe0) lo = 0xa0;
      else if (c === 0xed) hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      len = 4;
      if (c === 0xf0) lo = 0x90;
      else if (c === 0xf4) hi = 0x8f;
    } else return i;
    if (i + len > n) return i;
    const b1 = bytes[i + 1];
    if (b1 < lo || b1 > hi) return i;
    for (let k = 2; k < len; k++) if ((bytes[i + k] & 0xc0) !== 0x80) return i;
    i += len;
  }
  return -1;
}

/** Bytes at the end of `bytes` that start a UTF-8 sequence the chunk cuts short (0..3). */
function incompleteTail(bytes: Uint8Array): number {
  for (let k = 1; k <= Math.min(3, bytes.length); k++) {
    const c = bytes[bytes.length - k];
    if ((c & 0xc0) === 0x80) continue;
    const need = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
    return need > k ? k : 0;
  }
  return 0;
}

function describeBadByte(bytes: Uint8Array, at: number): string {
  const c = bytes[at];
  return c < 0x80
    ? `control byte 0x${c.toString(16).padStart(2, '0')}`
    : `invalid UTF-8 (byte 0x${c.toString(16)})`;
}

function notText(path: string, bytes: Uint8Array, at: number, base = 0): Error {
  return fileError(
    path,
    `not text: ${describeBadByte(bytes, at)} at byte offset ${base + at} (data must be UTF-8 text; only tab, LF, CR and form feed among control bytes)`,
  );
}

function splitDocuments(text: string): string[] {
  return text
    .split(/^<\|endoftext\|>[ \t]*$/m)
    .map((d) => d.trim())
    .filter((d) => d.length > 0);
}

/** The `text` field of one JSONL line (untrimmed), or undefined for a blank line. */
function jsonlText(path: string, line: string, lineNo: number): string | undefined {
  if (!line.trim()) return undefined;
  let row: unknown;
  try {
    row = JSON.parse(line);
  } catch {
    throw fileError(path, `line ${lineNo} is not valid JSON`);
  }
  const t = (row as { text?: unknown } | null)?.text;
  if (typeof t !== 'string') throw fileError(path, `line ${lineNo} has no string field "text"`);
  return t;
}

function parseJsonl(path: string, text: string): string[] {
  const docs: string[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const trimmed = jsonlText(path, lines[i], i + 1)?.trim();
    if (trimmed) docs.push(trimmed);
  }
  return docs;
}

const isJsonl = (path: string) => JSONL_EXTS.has(extname(path).toLowerCase());

async function readOne(path: string): Promise<string[]> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (e) {
    throw fileError(path, `cannot read data file (${(e as NodeJS.ErrnoException).code ?? e})`);
  }
  const bad = firstNonTextByte(bytes);
  if (bad >= 0) throw notText(path, bytes, bad);
  const text = bytes.toString('utf8');
  return isJsonl(path) ? parseJsonl(path, text) : splitDocuments(text);
}

type FileInfo = Awaited<ReturnType<typeof stat>>;

/**
 * Refuses a path that is not a regular file. Reading a FIFO or a device blocks until a writer comes (forever,
 * for a typo'd path), and its contents could not be hashed for resume anyway.
 */
function refuseSpecial(path: string, info: FileInfo, what: string): void {
  if (info.isFile()) return;
  if (info.isDirectory()) throw fileError(path, `${what} is a folder, expected a file`);
  throw fileError(path, `${what} is ${specialKind(info)}, not a regular file`);
}

/** Refuses `path` unless it is a regular file (see refuseSpecial); `what` names it in the message. */
export async function requireRegularFile(path: string, what = 'data file'): Promise<void> {
  let info: FileInfo;
  try {
    info = await stat(path);
  } catch (e) {
    throw fileError(path, `cannot read ${what} (${(e as NodeJS.ErrnoException).code ?? e})`);
  }
  refuseSpecial(path, info, what);
}

/** The files a data path stands for: itself, or a folder's .txt/.jsonl files in name order. */
export async function dataFiles(path: string): Promise<string[]> {
  let info: FileInfo;
  try {
    info = await stat(path);
  } catch {
    throw fileError(path, 'data path does not exist');
  }
  if (!info.isDirectory()) {
    refuseSpecial(path, info, 'data path');
    return [path];
  }
  const names = (await readdir(path)).filter((n) => {
    const ext = extname(n).toLowerCase();
    return !n.startsWith('.') && (TEXT_EXTS.has(ext) || JSONL_EXTS.has(ext));
  });
  names.sort();
  if (names.length === 0) throw dataError(path, 'folder holds no .txt or .jsonl files');
  const files = names.map((n) => join(path, n));
  for (const f of files) {
    let entry: FileInfo;
    try {
      entry = await stat(f);
    } catch (e) {
      throw fileError(f, `cannot read data file (${(e as NodeJS.ErrnoException).code ?? e})`);
    }
    refuseSpecial(f, entry, 'data file');
  }
  return files;
}

export async function readDataset(path: string): Promise<Dataset> {
  const files = await dataFiles(path);
  const documents: string[] = [];
  for (const f of files) pushAll(documents, await readOne(f));
  if (documents.length === 0) throw dataError(path, 'no text found (empty data)');
  return { source: path, files, documents };
}

/**
 * What streamDocuments yields: `text` continues the current document (raw, untrimmed; a document may come in
 * many parts), `end` closes it. Documents are those readDataset would return, before trimming, in order.
 */
export type DocumentEvent = { kind: 'text'; text: string } | { kind: 'end' };

export interface StreamStats {
  /** Bytes read from disk so far. */
  bytesRead: number;
  /** Files opened so far, in order. */
  files: string[];
}

export interface StreamOptions {
  /** Bytes per read (default 64 KiB). */
  chunkBytes?: number;
  /** Filled in as reading goes, so the caller can see how much was read when it stopped early. */
  stats?: StreamStats;
}

/** Whether `line` (a line seen so far, maybe incomplete) could still turn out to be a separator line. */
function maybeSeparator(line: string): boolean {
  if (line.length <= DOCUMENT_SEPARATOR.length) return DOCUMENT_SEPARATOR.startsWith(line);
  return SEPARATOR_LINE.test(line);
}

/**
 * The documents of a data path as a stream, read in chunks and checked to be text as they are read, so a
 * consumer that stops early (see tokenizePrefix) reads and checks only what it used. A long line in a text
 * file is passed on as it arrives; a JSONL line is parsed whole.
 */
export async function* streamDocuments(
  path: string,
  opts: StreamOptions = {},
): AsyncGenerator<DocumentEvent> {
  const chunkBytes = opts.chunkBytes ?? 64 * 1024;
  const stats = opts.stats ?? { bytesRead: 0, files: [] };
  for (const file of await dataFiles(path)) {
    stats.files.push(file);
    const jsonl = isJsonl(file);
    let fh: Awaited<ReturnType<typeof open>>;
    try {
      fh = await open(file, 'r');
    } catch (e) {
      throw fileError(file, `cannot read data file (${(e as NodeJS.ErrnoException).code ?? e})`);
    }
    try {
      const decoder = new TextDecoder('utf-8');
      const buf = new Uint8Array(chunkBytes + 3);
      let carry = 0; // bytes of a UTF-8 sequence cut by the previous chunk, moved to the front of buf
      let position = 0; // file offset of buf[0]
      let line = ''; // the current line so far (text files: only while it may be a separator)
      let midLine = false; // part of the current line was passed on already, so it cannot be a separator
      let lineNo = 1;
      let inDocument = false;
      for (;;) {
        const { bytesRead } = await fh.read(buf, carry, chunkBytes, position + carry);
        stats.bytesRead += bytesRead;
        const eof = bytesRead === 0;
        const filled = carry + bytesRead;
        const tail = eof ? 0 : incompleteTail(buf.subarray(0, filled));
        const bytes = buf.subarray(0, filled - tail);
        const bad = firstNonTextByte(bytes);
        if (bad >= 0) throw notText(file, bytes, bad, position);
        const text = decoder.decode(bytes, { stream: !eof });
        buf.copyWithin(0, filled - tail, filled);
        position += filled - tail;
        carry = tail;

        if (jsonl) {
          const parts = (line + text).split('\n');
          line = eof ? '' : parts.pop()!;
          for (const part of parts) {
            const t = jsonlText(file, part, lineNo++);
            if (t !== undefined) {
              yield { kind: 'text', text: t };
              yield { kind: 'end' };
            }
          }
          if (eof) break;
          continue;
        }

        // Text file: lines that are exactly a separator end documents; everything else is document text. Line
        // ends are those of splitDocuments' /^…$/m: each of \n, \r, U+2028, U+2029.
        let start = 0;
        const lineEnd = new RegExp(LINE_END); // own lastIndex: generators may interleave
        for (let m = lineEnd.exec(text); m !== null; m = lineEnd.exec(text)) {
          const whole = line + text.slice(start, m.index);
          if (!midLine && SEPARATOR_LINE.test(whole)) {
            if (inDocument) yield { kind: 'end' };
            inDocument = false;
          } else {
            inDocument = true;
            yield { kind: 'text', text: whole + m[0] };
          }
          line = '';
          midLine = false;
          start = m.index + 1;
        }
        const rest = line + text.slice(start);
        line = '';
        if (eof) {
          if (rest && (midLine || !SEPARATOR_LINE.test(rest))) {
            inDocument = true;
            yield { kind: 'text', text: rest };
          }
          if (inDocument) yield { kind: 'end' };
          break;
        }
        // A line that may still become a separator is held back; any other is passed on as it arrives.
        if (!midLine && maybeSeparator(rest)) line = rest;
        else if (rest) {
          inDocument = true;
          midLine = true;
          yield { kind: 'text', text: rest };
        }
      }
    } finally {
      await fh.close();
    }
  }
}
