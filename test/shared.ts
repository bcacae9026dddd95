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

/** Skip reason for node:test's `{ skip }` option when a shared file is absent. */
export function skipUnlessShared(rel: string): string | false {
  return sharedPath(rel)
    ? false
    : `needs ${join(SHARED_DIR, rel)} (the shared model/data folder), which is absent`;
}

export const REPO_ROOT = repoRoot;
