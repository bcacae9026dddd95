/**
 * What the `geneprune bench` CLI tests (test/prune/bench.test.ts, test/latency/bench.test.ts) set up alike: the
 * shared stories260K with a head-mask file for a genome, and the short timing settings that keep a run quick.
 */
import { writeFileSync } from 'node:fs';
import { makeMaskFile } from '../../src/masks/headfile.js';
import type { Genome } from '../../src/masks/heads.js';
import { type OpenedModel, openModel } from '../../src/model/open.js';
import { MODEL, sharedPath } from '../shared.js';

/** One timed run of one row: 16 tokens of prefill, 2 prompt and 2 generated tokens. */
export const QUICK_BENCH = ['--runs', '1', '--batch', '1', '--seq', '16', '--prompt', '2', '--generate', '2'];

/** stories260K opened, and its head-mask file for `genome` written at `path` (what `bench --mask` reads). */
export async function storiesWithMask(path: string, genome: Genome): Promise<OpenedModel> {
  const model = await openModel(sharedPath(MODEL));
  writeFileSync(path, JSON.stringify(await makeMaskFile(model.spec, genome)));
  return model;
}
