/**
 * Fitness of a head mask from its quality (lower is better) and sparsity s (share of heads removed).
 *
 *   sos     −ppl · (1 − s)                the paper's equation (1); meant for perplexity
 *   lambda  −q̃ + λ · s                     q̃ = ppl / dense ppl, or KL in nats; λ prices sparsity
 *   budget  −q̃                             sparsity is held fixed by the repair operator
 *
 * Higher fitness is better.
 */
import type { QualityMetric } from './objective.js';

export type FitnessKind = 'sos' | 'lambda' | 'budget';

export interface FitnessSpec {
  kind: FitnessKind;
  metric: QualityMetric;
  /** λ for 'lambda'. */
  lambda: number;
  /** The unpruned model's quality (to normalise perplexity). */
  denseQuality: number;
}

/** Quality on a scale where the dense model is 1 (perplexity) or 0 (KL). */
export function normalisedQuality(spec: FitnessSpec, quality: number): number {
  return spec.metric === 'ppl' ? quality / spec.denseQuality : quality;
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
