/**
 * How far a block-wise search has come and how long it still needs, from one progress report: the CLI's
 * progress line and the dashboard both compute them here, so the two never disagree. Blocks count equally; a
 * block's generations count equally within it (the initial population counts as none).
 */
import type { BlockSearchProgress } from './blockwise.js';

type Position = Pick<BlockSearchProgress, 'layer' | 'layers' | 'generation' | 'generations'>;

/** Share of the whole search done, in [0, 1]. */
export function blockSearchShare(p: Position): number {
  if (p.layers <= 0) return 1;
  const inBlock = p.generations > 0 ? Math.min(p.generation / p.generations, 1) : 1;
  return Math.min((p.layer + inBlock) / p.layers, 1);
}

/** Seconds still to go at the pace so far; NaN before anything is done. */
export function blockSearchEta(p: Position & Pick<BlockSearchProgress, 'seconds'>): number {
  const done = blockSearchShare(p);
  return done > 0 ? (p.seconds / done) * (1 - done) : Number.NaN;
}
