/**
 * A block-wise weight search as the dashboard shows it while it runs: the block being searched, its generation,
 * the search time so far, the ETA and the block's best so far. Inside the searching process these come from
 * the search's own progress reports (the numbers its progress line is made of, so page and line agree); a
 * dashboard started on its own estimates them from the run's files: the candidates evals.jsonl logs (block,
 * generation, milliseconds) after the last checkpoint's blocks and seconds.
 */
import type { BlockSearchProgress } from '../spaces/weights/blockwise.js';
import { blockSearchEta, blockSearchShare } from '../spaces/weights/searchprogress.js';

export interface SearchPosition {
  /** The block being searched (0-based). */
  block: number;
  /** Generations reported in this block (0: the initial population), and how many it plans (null: unknown). */
  generation: number;
  generations: number | null;
  /** Seconds of search so far, the share of the whole search done, and the seconds still to go. */
  seconds: number;
  share: number;
  eta: number | null;
  /** The block's best so far: its score as the page shows scores, and its sparsity; null when not known. */
  bestScore: number | null;
  bestSparsity: number | null;
  /** 'process': the search's own report; 'log': estimated from the run's files. */
  from: 'process' | 'log';
}

/** What the log says of the latest block it has candidates of. */
export interface BlockLog {
  block: number;
  /** The highest `generation` of its lines: g means the g-th generation is being (or was last) scored. */
  generation: number;
  /** Milliseconds its candidates took to score. */
  ms: number;
  /** Its best-scoring candidate. */
  bestScore: number | null;
  bestSparsity: number | null;
}

/**
 * Weight methods whose every candidate keeps one budget (a seeded GA swaps kept and pruned weights inside a
 * row; the paper's GA with an N:M pattern draws only N:M masks): their candidates differ in quality alone, so
 * the fittest is the best-scoring, and sparsity is no axis to plot them on.
 */
const SEEDED_GAS = new Set(['ga-wanda', 'ga-magnitude']);

export function isFixedSparsitySearch(method: string | null, settings: Record<string, unknown>): boolean {
  if (method === null) return false;
  return SEEDED_GAS.has(method) || (method === 'ga' && typeof settings.pattern === 'string');
}

/** Generations per block: the run's --generations, else the method's default that config.json records. */
export function generationsPerBlock(config: Record<string, unknown> | undefined): number | null {
  const settings = (config?.settings ?? {}) as Record<string, unknown>;
  const described = (config?.methodDescription ?? {}) as Record<string, unknown>;
  for (const g of [settings.generations, described.generations])
    if (typeof g === 'number' && Number.isInteger(g) && g >= 0) return g;
  return null;
}

/** Adds one logged candidate to the latest block's summary (a new block starts a new one). */
export function addToBlockLog(
  log: BlockLog | undefined,
  point: { block: number; generation: number; ms: number; score: number | null; sparsity: number | null },
  higherIsBetter: boolean,
): BlockLog {
  const current =
    log && log.block === point.block
      ? log
      : { block: point.block, generation: 0, ms: 0, bestScore: null, bestSparsity: null };
  current.generation = Math.max(current.generation, point.generation);
  current.ms += point.ms;
  const s = point.score;
  if (
    s !== null &&
    (current.bestScore === null || (higherIsBetter ? s > current.bestScore : s < current.bestScore))
  ) {
    current.bestScore = s;
    current.bestSparsity = point.sparsity;
  }
  return current;
}

const finite = (x: number) => (Number.isFinite(x) ? x : null);

/** Where the search stands from its own report, or null when the report is older than the files. */
export function positionFromProcess(
  p: BlockSearchProgress,
  blocksDone: number,
  scoreOfValue: (value: number) => number | null,
): SearchPosition | null {
  // A report of an earlier block gives way to the files, except the last block fixed at its final generation:
  // that is where the search stands until the next block's start is reported (or, after the last block, for
  // good), and the progress line says the same.
  const justFixed = p.layer === blocksDone - 1 && p.generation >= p.generations;
  if (p.layer < blocksDone && !justFixed) return null;
  return {
    block: p.layer,
    generation: p.generation,
    generations: p.generations,
    seconds: p.seconds,
    share: blockSearchShare(p),
    eta: finite(blockSearchEta(p)),
    bestScore: scoreOfValue(p.best),
    bestSparsity: finite(p.bestSparsity),
    from: 'process',
  };
}

/**
 * Where the search stands by its files: the block after the checkpoint's (or the log's latest, when it is
 * later), its reports so far (a line of generation g means g − 1 were reported), and the checkpoint's seconds
 * plus the scoring time of the block's logged candidates. The block's best is known only where the fittest is
 * the best-scoring candidate (`bestKnown`: a fixed-sparsity search); else null.
 */
export function positionFromLog(o: {
  blocksDone: number;
  blocks: number;
  checkpointSeconds: number;
  log: BlockLog | undefined;
  generations: number | null;
  bestKnown: boolean;
}): SearchPosition | null {
  if (o.blocksDone >= o.blocks) return null;
  const mine = o.log !== undefined && o.log.block >= o.blocksDone ? o.log : undefined;
  const block = mine?.block ?? o.blocksDone;
  const generation = mine ? Math.max(mine.generation - 1, 0) : 0;
  const seconds = o.checkpointSeconds + (mine?.ms ?? 0) / 1000;
  // Unknown generations per block: count the block as just begun.
  const position = {
    layer: block,
    layers: o.blocks,
    generation: o.generations === null ? 0 : generation,
    generations: o.generations ?? 1,
    seconds,
  };
  return {
    block,
    generation,
    generations: o.generations,
    seconds,
    share: blockSearchShare(position),
    eta: finite(blockSearchEta(position)),
    bestScore: o.bestKnown ? (mine?.bestScore ?? null) : null,
    bestSparsity: o.bestKnown ? (mine?.bestSparsity ?? null) : null,
    from: 'log',
  };
}
