/**
 * One progress report for every search (head GA, NSGA-II, baselines; weight block searches, alloc, one-shot
 * methods and their recovery): what is being done, how far, the best so far by the metric's name, and the work
 * done, from which the CLI prints one line format (cli/progress.ts) with the rate and the ETA.
 */
import { metricLabel, type QualityMetric, reportedQuality } from './objective.js';

export interface SearchProgress {
  method: string;
  /** A name for the stage, e.g. 'search', 'ablation', 'recovery': the ETA restarts when it changes. */
  phase: string;
  /** What is being done, with its counts, e.g. 'generation 3/30' or 'block 2/5, generation 3/5'. */
  step: string;
  /** Share of the phase done, in [0, 1]. */
  fraction: number;
  /** The best so far, quoted; absent where the stage has none (a one-shot mask's recovery). */
  best?: QuotedBest;
  /** Work done so far in the phase (what the rate counts), and its unit, e.g. 'evals', 'layers'. */
  count: number;
  unit: string;
  /**
   * Seconds the phase has taken by the search's own clock (resumed runs included), where it keeps one: the
   * rate and ETA then come from it, as the dashboard computes them, instead of from this process's wall clock.
   */
  seconds?: number;
}

export interface QuotedBest {
  /** The metric as people name it: ppl, KL, BLEU, accuracy, macro-F1. */
  metric: string;
  /** Its value as quoted (BLEU and accuracies un-negated; accuracies as shares 0–1). */
  value: number;
  /** Share of the space's units removed. */
  sparsity: number;
  /** A short remark the line carries after the best, e.g. that it is not at the target size. */
  note?: string;
}

/** A quality (lower is better, as objectives give it) as the metric's quoted best. */
export function quotedBest(
  metric: QualityMetric,
  quality: number,
  sparsity: number,
  note?: string,
): QuotedBest {
  return {
    metric: metricLabel(metric),
    value: reportedQuality(metric, quality),
    sparsity,
    ...(note ? { note } : {}),
  };
}
