/**
 * Text data: a text file, a folder of text files, or JSONL with a `text` field. Lines `<|endoftext|>`
 * separate documents inside text files.
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import { extname, join } from 'node:path';
import { dataError, fileError } from '../errors.js';

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

function splitDocuments(text: string): string[] {
  return text
    .split(/^<\|endoftext\|>[ \t]*$/m)
    .map((d) => d.trim())
    .filter((d) => d.length > 0);
}

function parseJsonl(path: string, text: string): string[] {
  const docs: string[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (!line) continue;
    let row: unknown;
    try {
      row = JSON.parse(line);
    } catch {
      throw fileError(path, `line ${i + 1} is not valid JSON`);
    }
    const t = (row as { text?: unknown } | null)?.text;
    if (typeof t !== 'string') throw fileError(path, `line ${i + 1} has no string field "text"`);
    const trimmed = t.trim();
    if (trimmed) docs.push(trimmed);
  }
  return docs;
}

async function readOne(path: string): Promise<string[]> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw fileError(path, `cannot read data file (${(e as NodeJS.ErrnoException).code ?? e})`);
  }
  return JSONL_EXTS.has(extname(path).toLowerCase()) ? parseJsonl(path, text) : splitDocuments(text);
}

export async function readDataset(path: string): Promise<Dataset> {
  let info: Awaited<ReturnType<typeof stat>>;
  try {
    info = await stat(path);
  } catch {
    throw fileError(path, 'data path does not exist');
  }
  let files: string[];
  if (info.isDirectory()) {
    const names = (await readdir(path)).filter((n) => {
      const ext = extname(n).toLowerCase();
      return !n.startsWith('.') && (TEXT_EXTS.has(ext) || JSONL_EXTS.has(ext));
    });
    names.sort();
    files = names.map((n) => join(path, n));
    if (files.length === 0) throw dataError(path, 'folder holds no .txt or .jsonl files');
  } else {
    files = [path];
  }
  const documents: string[] = [];
  for (const f of files) documents.push(...(await readOne(f)));
  if (documents.length === 0) throw dataError(path, 'no text found (empty data)');
  return { source: path, files, documents };
}
