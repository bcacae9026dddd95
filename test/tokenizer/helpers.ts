/** Tiny hand-written tokenizer.json files for the tokenizer tests, written into a temp folder. */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadTokenizer } from '../../src/tokenizer/load.js';
import type { Tokenizer } from '../../src/tokenizer/types.js';

/** tokenizer.json's added_tokens entries for special tokens, given [content, id] pairs. */
export function specialTokens(tokens: [string, number][]): Record<string, unknown>[] {
  return tokens.map(([content, id]) => ({
    id,
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  }));
}

/** Write `files` (JSON values, or raw strings) into `root/name` and return that folder. */
export function writeFolder(root: string, name: string, files: Record<string, unknown>): string {
  const dir = join(root, name);
  mkdirSync(dir);
  for (const [file, value] of Object.entries(files)) {
    writeFileSync(join(dir, file), typeof value === 'string' ? value : JSON.stringify(value));
  }
  return dir;
}

/** Write the files and load the folder's tokenizer.json. */
export async function loadWritten(
  root: string,
  name: string,
  files: Record<string, unknown>,
): Promise<Tokenizer> {
  return loadTokenizer(join(writeFolder(root, name, files), 'tokenizer.json'));
}
