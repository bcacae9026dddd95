/**
 * One entry point for tokenizers: picks the format from the file name, else from the content.
 */
import { open, stat } from 'node:fs/promises';
import { basename, extname, join } from 'node:path';
import { fileError } from '../errors.js';
import { specialKind } from '../util/fs.js';
import { loadHfTokenizer } from './hf.js';
import { loadLlama2cTokenizer } from './llama2c.js';
import type { Tokenizer } from './types.js';
import { loadVocabJsonTokenizer } from './vocabjson.js';
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

/** The names a tokenizer file goes by: a folder named so is a mistake, never a folder to search. */
const TOKENIZER_FILE_NAME = /\.(json|bin|txt|model)$/i;

/**
 * Load `tokenizer.json` (Hugging Face), a llama2.c `tokenizer.bin`, a BERT `vocab.txt` (WordPiece, built as
 * transformers builds it) or a byte-level BPE `vocab.json` with `merges.txt` beside it (RoBERTa / CodeT5, built as
 * transformers builds it). A folder is searched for tokenizer.json, then tokenizer.bin, vocab.txt, vocab.json.
 */
export async function loadTokenizer(path: string, opts: LoadTokenizerOptions = {}): Promise<Tokenizer> {
  const info = await stat(path).catch(() => undefined);
  if (!info) throw fileError(path, 'tokenizer not found');
  if (info.isDirectory()) {
    if (TOKENIZER_FILE_NAME.test(basename(path)))
      throw fileError(path, 'is a directory, not a tokenizer file');
    for (const name of ['tokenizer.json', 'tokenizer.bin', 'vocab.txt', 'vocab.json']) {
      const inside = join(path, name);
      // Present but not a file is refused by the call below, not skipped as if absent.
      if (await stat(inside).catch(() => undefined)) return loadTokenizer(inside, opts);
    }
    throw fileError(
      path,
      'tokenizer not found: the folder has no tokenizer.json, tokenizer.bin, vocab.txt or vocab.json',
    );
  }
  // A FIFO or device would block the reads below until a writer comes.
  if (!info.isFile()) throw fileError(path, `tokenizer is ${specialKind(info)}, not a regular file`);
  if (basename(path) === 'vocab.txt') return loadVocabTxtTokenizer(path, opts);
  if (basename(path) === 'vocab.json') return loadVocabJsonTokenizer(path, opts);
  const ext = extname(path).toLowerCase();
  const isJson = ext === '.json' || (ext !== '.bin' && (await looksLikeJson(path)));
  return isJson ? loadHfTokenizer(path, opts) : loadLlama2cTokenizer(path, opts);
}
