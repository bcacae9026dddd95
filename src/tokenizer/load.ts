/**
 * One entry point for tokenizers: picks the format from the file name, else from the content.
 */
import { open, stat } from 'node:fs/promises';
import { basename, extname, join } from 'node:path';
import { fileError } from '../errors.js';
import { loadHfTokenizer } from './hf.js';
import { loadLlama2cTokenizer } from './llama2c.js';
import type { Tokenizer } from './types.js';
import { loadVocabTxtTokenizer } from './vocabtxt.js';

export type { EncodeOptions, Tokenizer } from './types.js';

export interface LoadTokenizerOptions {
  /** The model's vocabulary size, checked against the tokenizer (and needed to read tokenizer.bin exactly). */
  vocabSize?: number;
}

/** Whether a file starts (after whitespace) with `{`, i.e. looks like JSON rather than llama2.c binary. */
async function looksLikeJson(path: string): Promise<boolean> {
  const fh = await open(path, 'r');
  try {
    const { buffer, bytesRead } = await fh.read(Buffer.alloc(64), 0, 64, 0);
    const head = buffer.subarray(0, bytesRead).toString('latin1').trimStart();
    return head.startsWith('{');
  } finally {
    await fh.close();
  }
}

async function isFile(path: string): Promise<boolean> {
  return (await stat(path).catch(() => undefined))?.isFile() ?? false;
}

/**
 * Load `tokenizer.json` (Hugging Face), a llama2.c `tokenizer.bin`, or a BERT `vocab.txt` (WordPiece, built as
 * transformers builds it). A folder is searched for tokenizer.json, then tokenizer.bin, then vocab.txt.
 */
export async function loadTokenizer(path: string, opts: LoadTokenizerOptions = {}): Promise<Tokenizer> {
  const info = await stat(path).catch(() => undefined);
  if (!info) throw fileError(path, 'tokenizer not found');
  if (info.isDirectory()) {
    for (const name of ['tokenizer.json', 'tokenizer.bin', 'vocab.txt']) {
      const inside = join(path, name);
      if (await isFile(inside)) return loadTokenizer(inside, opts);
    }
    throw fileError(
      path,
      'tokenizer not found: the folder has no tokenizer.json, tokenizer.bin or vocab.txt',
    );
  }
  if (basename(path) === 'vocab.txt') return loadVocabTxtTokenizer(path, opts);
  const ext = extname(path).toLowerCase();
  const isJson = ext === '.json' || (ext !== '.bin' && (await looksLikeJson(path)));
  return isJson ? loadHfTokenizer(path, opts) : loadLlama2cTokenizer(path, opts);
}
