/**
 * Real short runs on the shared stories260K model and TinyStories pages, made once per test file into a temporary
 * folder: a GA head search with the paper's fitness (sparsity grows over generations), an NSGA-II search, the
 * single-head ablation baseline, Wanda weight pruning and a block-wise weight GA (ga-magnitude, which logs every
 * candidate). Small settings: the whole set takes seconds.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pruneWeights, searchHeads } from '../../src/index.js';
import { CALIB, EVAL, MODEL, sharedPath } from '../shared.js';

export interface ShortRuns {
  root: string;
  ga: string;
  nsga: string;
  ablation: string;
  wanda: string;
  gaWeights: string;
}

export const POPULATION = 8;
export const GENERATIONS = 5;

export async function makeShortRuns(): Promise<ShortRuns> {
  const root = mkdtempSync(join(tmpdir(), 'geneprune-report-'));
  const common = {
    model: sharedPath(MODEL)!,
    calib: sharedPath(CALIB)!,
    eval: sharedPath(EVAL)!,
    calibTokens: 1024,
    evalTokens: 1024,
    threads: 2,
  };
  const runs: ShortRuns = {
    root,
    ga: join(root, 'ga-sos'),
    nsga: join(root, 'nsga'),
    ablation: join(root, 'ablation'),
    wanda: join(root, 'wanda'),
    gaWeights: join(root, 'ga-magnitude'),
  };
  await searchHeads({
    ...common,
    preset: 'sos',
    population: POPULATION,
    generations: GENERATIONS,
    out: runs.ga,
  });
  await searchHeads({
    ...common,
    method: 'nsga',
    targetSparsity: 0.25,
    population: POPULATION,
    generations: 3,
    out: runs.nsga,
  });
  await searchHeads({ ...common, method: 'ablation', targetSparsity: 0.25, out: runs.ablation });
  await pruneWeights({ ...common, method: 'wanda', sparsity: 0.5, out: runs.wanda });
  await pruneWeights({
    ...common,
    method: 'ga-magnitude',
    sparsity: 0.4,
    population: 4,
    generations: 2,
    out: runs.gaWeights,
  });
  return runs;
}
