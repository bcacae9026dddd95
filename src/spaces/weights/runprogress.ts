/**
 * What a weight run tells its caller while it works (WeightPruneEnv), and the methods' progress callbacks that
 * report it: each method's own counts, and the same in the one SearchProgress shape (search/progress.ts) the
 * progress line and the dashboard take.
 */
import { metricLabel } from '../../metrics/registry.js';
import type { RunEnv } from '../../runs/data.js';
import type { QuotedBest, SearchProgress } from '../../search/progress.js';
import type { SearchBest } from './baselines.js';
import type { BlockSearchProgress } from './blockwise.js';
import { blockSearchShare } from './searchprogress.js';

export interface WeightPruneEnv extends RunEnv {
  onStatus?: (line: string) => void;
  /** Things the user should see even when quiet: a stale lock taken over, leftovers removed. */
  onNote?: (line: string) => void;
  onProgress?: (done: number, total: number, unit?: string) => void;
  /** Searching methods: after each generation of each block. */
  onSearchProgress?: (p: BlockSearchProgress) => void;
  /** Every method's progress in one shape (search/progress.ts): what it does, the best so far, the work done. */
  onSearchUpdate?: (p: SearchProgress) => void;
}

/** Progress words for a unit the methods count in: the step's noun and the rate's unit. */
const PROGRESS_UNITS: Record<string, { step: string; unit: string }> = {
  matrices: { step: 'matrix', unit: 'matrices' },
  layers: { step: 'layer', unit: 'layers' },
  generations: { step: 'generation', unit: 'evals' },
  'layers recovered': { step: 'recovery, layer', unit: 'layers' },
};

/**
 * The env's callbacks as a method's, reporting each also as a SearchProgress: a block search's generations
 * (and, when a block is fixed, the next block's start), alloc's generations with its best, and a one-shot
 * method's matrices or layers (no best: nothing is scored until the mask is fixed).
 */
export function progressCallbacks(method: string, env: WeightPruneEnv, fixed?: QuotedBest) {
  const update = env.onSearchUpdate;
  let lastBlock: BlockSearchProgress | undefined;
  const searchProgress = (p: BlockSearchProgress) => {
    env.onSearchProgress?.(p);
    update?.({
      method,
      phase: 'search',
      step: `block ${p.layer + 1}/${p.layers}, generation ${p.generation}/${p.generations}`,
      fraction: blockSearchShare(p),
      ...(Number.isFinite(p.best)
        ? { best: { metric: metricLabel(p.metric), value: p.best, sparsity: p.bestSparsity } }
        : {}),
      count: p.evaluations,
      unit: 'evals',
      seconds: p.seconds,
    });
  };
  return {
    onProgress: (done: number, total: number, unit?: string, best?: SearchBest) => {
      env.onProgress?.(done, total, unit);
      // A block search's block is fixed: the next one starts, nothing scored in it yet (best NaN). Said now, so
      // the line (and the dashboard, which takes the same report) no longer shows the finished block's last
      // generation while the next block's initial population is scored.
      if (unit === 'blocks' && lastBlock && done < total) {
        searchProgress({
          ...lastBlock,
          layer: done,
          generation: 0,
          best: Number.NaN,
          bestSparsity: Number.NaN,
        });
        return;
      }
      const words = PROGRESS_UNITS[unit ?? 'matrices'];
      if (!update || !words) return;
      update({
        method,
        phase: unit ?? 'matrices',
        step: `${words.step} ${done}/${total}`,
        fraction: total > 0 ? done / total : 1,
        ...(best
          ? { best: { metric: 'ppl', value: best.perplexity, sparsity: best.sparsity } }
          : fixed
            ? { best: fixed }
            : {}),
        count: best ? best.evaluations : done,
        unit: words.unit,
      });
    },
    onSearchProgress: (p: BlockSearchProgress) => {
      lastBlock = p;
      searchProgress(p);
    },
  };
}
