/**
 * Locating the project's shared real model and data (`../shared` beside the checkout). Tests that need them
 * call `sharedPath` and skip with a clear message only when the folder is absent.
 */
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const SHARED_DIR = process.env.GENEPRUNE_SHARED ?? resolve(repoRoot, '..', 'shared');

/** The absolute path of `rel` inside ../shared, or undefined when it is absent. */
export function sharedPath(rel: string): string | undefined {
  const p = join(SHARED_DIR, rel);
  return existsSync(p) ? p : undefined;
}

/** Skip reason for node:test's `{ skip }` option when a shared file is absent (the first absent one of `rels`). */
export function skipUnlessShared(...rels: string[]): string | false {
  const missing = rels.find((rel) => !sharedPath(rel));
  return missing === undefined
    ? false
    : `needs ${join(SHARED_DIR, missing)} (the shared model/data folder), which is absent`;
}

/** The shared real model (llama2.c stories260K), its tokenizer, and the TinyStories data, inside ../shared. */
export const MODEL = 'models/stories260K/stories260K.bin';
export const TOKENIZER = 'models/stories260K/tok512.bin';
export const CALIB = 'data/tinystories/calib';
export const EVAL = 'data/tinystories/eval';

export const REPO_ROOT = repoRoot;
