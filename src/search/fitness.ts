/**
 * Fitness of a head mask from its quality (lower is better) and sparsity s (share of heads removed).
 *
 *   sos     −ppl · (1 − s)                the paper's equation (1); meant for perplexity
 *   lambda  −q̃ + λ · s                     q̃ = ppl / dense ppl, KL in nats, 1 − BLEU / dense BLEU or
 *                                          1 − accuracy / dense accuracy; λ prices sparsity
 *   budget  −q̃                             sparsity is held fixed by the repair operator
 *
 * A 'bleu' quality is −BLEU (search/objective.ts), so q̃ = (quality − dense)/|dense| = 1 − BLEU/BLEU_dense: 0 for
 * the dense model, lower is better, as for KL. `sos` is meant for perplexity only (for −BLEU, −q·(1 − s) would
 * reward keeping heads); the settings refuse it with kl and bleu. 'mc-accuracy' (quality −accuracy, 0–1) is
 * normalised as BLEU is: 1 − accuracy/dense accuracy (−accuracy when the dense model gets nothing right).
 *
 * Higher fitness is better.
 */
import { isNegatedMetric, type QualityMetric } from './objective.js';

export type FitnessKind = 'sos' | 'lambda' | 'budget';

export interface FitnessSpec {
  kind: FitnessKind;
  metric: QualityMetric;
  /** λ for 'lambda'. */
  lambda: number;
  /** The unpruned model's quality (to normalise perplexity). */
  denseQuality: number;
}

/**
 * The one normalisation of a quality against the dense model's: quality / |dense|, or quality / the metric's full
 * scale (BLEU 100, accuracy 1) when a higher-is-better metric's dense model scores 0. The head fitness below
 * weighs it (perplexity as ppl/ppl_dense; BLEU and accuracy measured from the dense model's, so 0 there), and so
 * do the block-wise weight searches (spaces/weights/blockwise.ts: −ppl/ppl_dense, or BLEU/BLEU_dense).
 */
export function relativeQuality(metric: QualityMetric, quality: number, dense: number): number {
  // The value's full scale: BLEU 0–100, accuracy 0–1.
  if (isNegatedMetric(metric) && dense === 0) return quality / (metric === 'bleu' ? 100 : 1);
  return quality / Math.abs(dense);
}

/**
 * Quality on a scale where the dense model is 1 (perplexity) or 0 (KL; BLEU: 1 − BLEU/dense BLEU, or −BLEU/100
 * when the dense model scores BLEU 0; accuracy alike, −accuracy when the dense accuracy is 0). Lower is better.
 */
export function normalisedQuality(spec: FitnessSpec, quality: number): number {
  if (spec.metric === 'ppl') return relativeQuality('ppl', quality, spec.denseQuality);
  if (isNegatedMetric(spec.metric)) {
    return relativeQuality(spec.metric, quality - spec.denseQuality, spec.denseQuality);
  }
  return quality;
}

/**
 * A quality that is NaN or ±Infinity (the candidate's forward pass overflowed) gets −Infinity, the worst
 * possible fitness, whatever the kind: −∞·(1 − s) would be NaN at s = 1, and NaN compares false with everything.
 */
export function fitnessOf(spec: FitnessSpec, quality: number, sparsity: number): number {
  if (!Number.isFinite(quality)) return Number.NEGATIVE_INFINITY;
  switch (spec.kind) {
    case 'sos':
      return -quality * (1 - sparsity);
    case 'lambda':
      return -normalisedQuality(spec, quality) + spec.lambda * sparsity;
    case 'budget':
      return -normalisedQuality(spec, quality);
  }
}
