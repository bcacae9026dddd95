/**
 * Fitness of a head mask from its quality (lower is better) and sparsity s (share of heads removed).
 *
 *   sos     −ppl · (1 − s)                the paper's equation (1); meant for perplexity
 *   lambda  −q̃ + λ · s                     q̃ = ppl / dense ppl, KL in nats, 1 − BLEU / dense BLEU or
 *                                          1 − accuracy / dense accuracy; λ prices sparsity
 *   budget  −q̃                             sparsity is held fixed by the repair operator
 *
 * q̃ is each metric's own normalisation (its `normalise` in metrics/registry.ts). A 'bleu' quality is −BLEU, so
 * q̃ = (quality − dense)/|dense| = 1 − BLEU/BLEU_dense: 0 for the dense model, lower is better, as for KL. `sos`
 * is meant for perplexity only (for −BLEU, −q·(1 − s) would reward keeping heads); the settings refuse it with
 * every metric whose entry says so. 'mc-accuracy' (quality −accuracy, 0–1) is normalised as BLEU is:
 * 1 − accuracy/dense accuracy (−accuracy when the dense model gets nothing right).
 *
 * Higher fitness is better.
 */
import { metricEntry, type NormalForm } from '../metrics/registry.js';
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

/**
 * The one quality normalisation: a quality (the objective's, lower is better: perplexity, KL, −BLEU, −accuracy)
 * on the dense model's scale, LOWER IS BETTER, in one of two forms:
 *   'shifted' (the head fitness, default): perplexity / dense perplexity (dense model 1); for the negated metrics
 *             (quality − dense)/|dense| = 1 − value/dense value (dense model 0); KL as it is (dense model 0);
 *   'ratio'   (the block searches, which weigh its negation, higher is better: −ppl/ppl_dense, BLEU/BLEU_dense):
 *             perplexity / dense perplexity, quality/|dense| = −value/dense value for the negated metrics (dense
 *             model −1), KL as it is.
 * A negated metric whose dense value is 0 has no scale of its own: quality / the value's full scale (BLEU 100,
 * accuracy 1) in both forms.
 */
export function normalisedQuality(
  spec: FitnessSpec | Pick<FitnessSpec, 'metric' | 'denseQuality'>,
  quality: number,
  form: NormalForm = 'shifted',
): number {
  return metricEntry(spec.metric).normalise(quality, spec.denseQuality, form);
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
