/**
 * What a search optimises against: a model, calibration data and a quality metric, behind one
 * `evaluate(genome)` call for the genomes of one search space (which turns each into engine feeds). Lower
 * quality values are better, whatever the metric: perplexity, KL divergence from the unpruned model, for
 * 'bleu' the *negated* corpus BLEU of greedy continuations of a calibration generation task (quality = −BLEU,
 * 0–100 scale: a dense model at BLEU 9.1 has quality −9.1), and for 'mc-accuracy' the *negated* accuracy on a
 * calibration multiple-choice task (quality = −accuracy, 0–1 scale: a dense model right on 62 % of the items
 * has quality −0.62). So every consumer that minimises quality (GA fitness, NSGA-II, baselines, archives)
 * handles them unchanged; `reportedQuality` turns a quality back into the value people quote. Every distinct
 * (genome, fidelity) is run once; repeats come from the cache, keyed by the space's genome key.
 *
 * What each metric scores and how (its runner, data and quality) is its entry's objective factory in the metric
 * registry (metrics/registry.ts, scorers in metrics/scorers.ts); this module adds the genomes, the cache, the
 * counters and the non-finite rule. Accuracy-type metrics go through a `Predictor` (a task's labels and, under a
 * candidate's masks, one predicted label per item): multiple choice predicts with the 'nll' runner, sequence
 * classification with a 'class_logits' runner; `createPredictionObjective` takes any other predictor.
 */
import type { CandidateMasks, ModelRunner } from '../engine/runner.js';
import type { Device } from '../engine/session.js';
import { GenepruneError } from '../errors.js';
import type { ComputeDtype } from '../graph/weights.js';
import { prepareWeights, releaseWeights } from '../graph/weights.js';
import type { BleuKind } from '../metrics/bleu.js';
import type { ChoiceNorm, PreparedChoiceTask } from '../metrics/choices.js';
import type { PreparedClassification } from '../metrics/classify.js';
import type { PreparedGenerationTask } from '../metrics/generation.js';
import { amountUnit, metricEntry, type QualityMetric } from '../metrics/registry.js';
import { type CalibrationScorer, predictionScorer, type RawEvaluation } from '../metrics/scorers.js';
import type { ModelSpec } from '../model/spec.js';
import type { SearchSpace } from './space.js';

// The metric names and what each stands for live in the metric registry; re-exported for their many importers.
export {
  type ClassificationMetric,
  isClassificationMetric,
  isNegatedMetric,
  metricLabel,
  QUALITY_METRICS,
  type QualityMetric,
  reportedQuality,
} from '../metrics/registry.js';
export { BLEU_SEARCH_ITEMS, BLEU_SEARCH_NEW_TOKENS } from '../metrics/scorers.js';
/**
 * 'low' scores on the first `lowTokens` calibration tokens (BLEU, multiple choice: the first `lowItems` task
 * items), 'full' on all of them.
 */
export type Fidelity = 'low' | 'full';

/** The objective's quality for a BLEU score (0–100): −BLEU, so that lower is better as for every metric. */
export function qualityOfBleu(bleu: number): number {
  return -bleu;
}

/** The BLEU (0–100) a 'bleu' objective's quality stands for. */
export function bleuOfQuality(quality: number): number {
  return -quality;
}

/** The objective's quality for an accuracy (0–1): −accuracy, so that lower is better as for every metric. */
export function qualityOfAccuracy(acc: number): number {
  return -acc;
}

/** The accuracy (0–1) an 'mc-accuracy' objective's quality stands for. */
export function accuracyOfQuality(quality: number): number {
  return -quality;
}

/** The calibration generation task of a 'bleu' objective and how it is scored. */
export interface BleuObjectiveOptions {
  /** The calibration task, prompts already encoded (its first `items` items are scored). */
  task: PreparedGenerationTask;
  /** Items scored at full fidelity (default BLEU_SEARCH_ITEMS, at most the task's). */
  items?: number;
  /** Items scored at low fidelity (default: same as full). */
  lowItems?: number;
  /** New tokens per prompt at most (default BLEU_SEARCH_NEW_TOKENS). */
  maxNewTokens?: number;
  /** Prompts per forward pass (default 16). */
  batchSize?: number;
  /** Which BLEU is the quality (default 'corpus': sacreBLEU's; 'sentence-mean': the GenePrune code's). */
  kind?: BleuKind;
}

/** The calibration multiple-choice task of an 'mc-accuracy' objective and how it is scored. */
export interface ChoiceObjectiveOptions {
  /** The calibration multiple-choice task, encoded (its first `items` items are scored). */
  task: PreparedChoiceTask;
  /** Items scored at full fidelity (default: all of the task's). */
  items?: number;
  /** Items scored at low fidelity (default: same as full). */
  lowItems?: number;
  /** Which accuracy is the quality: 'none' (summed log-likelihood, default) or 'chars' (acc_norm). */
  norm?: ChoiceNorm;
  /** Rows (item × choice) per forward pass (default: about 2048 tokens). */
  batchSize?: number;
}

/** The calibration labelled items of an 'accuracy' or 'macro-f1' objective. */
export interface LabelledObjectiveOptions {
  /** Encoded items (their first `items` are scored). */
  prepared: PreparedClassification;
  /** Items scored at full fidelity (default all). */
  items?: number;
  /** Items scored at low fidelity (default: same as full). */
  lowItems?: number;
  /** Rows per forward pass (default: about 4096 tokens). */
  batchSize?: number;
}

/**
 * What an accuracy objective needs from its task: under a candidate's masks, one predicted label per item of the
 * fidelity's items, with the true labels. `predictions` is null when the forward pass produced a non-finite
 * value (the candidate then gets the worst quality).
 */
export interface Predictor {
  predict(
    masks: CandidateMasks,
    fidelity: Fidelity,
  ): Promise<{ predictions: ArrayLike<number> | null; labels: ArrayLike<number>; forwards: number }>;
  /** The data it reads, for messages. */
  source: string;
}

export interface Evaluation {
  /**
   * The metric's value (perplexity, mean KL in nats per token, −BLEU or −accuracy); lower is better. +Infinity
   * when the candidate's forward pass produced a non-finite value: the worst possible quality, never NaN.
   */
  quality: number;
  /** Calibration tokens scored (BLEU, multiple choice: task items scored). */
  tokens: number;
  /** Wall time of this evaluation in ms (0 when it came from the cache). */
  ms: number;
}

export interface Objective<G, S extends SearchSpace<G> = SearchSpace<G>> {
  readonly space: S;
  readonly metric: QualityMetric;
  evaluate(g: G, fidelity?: Fidelity): Promise<Evaluation>;
  /** Records a result computed earlier (a resumed run's log), so it is not computed again. */
  prime(g: G, fidelity: Fidelity, result: Evaluation): void;
  /** Forward passes (batches through the model) run so far, cache hits excluded. */
  forwardPasses(): number;
  /** Distinct evaluations run so far. */
  evaluations(): number;
  release(): Promise<void>;
}

export interface ObjectiveOptions {
  /** Calibration token stream (BOS-separated documents); not read by 'bleu'. */
  stream: number[];
  context: number;
  metric: QualityMetric;
  /** The calibration generation task and its scoring, for 'bleu' (required there). */
  bleu?: BleuObjectiveOptions;
  /** The calibration multiple-choice task and its scoring, for 'mc-accuracy' (required there). */
  choices?: ChoiceObjectiveOptions;
  /** The calibration labelled items, for 'accuracy' and 'macro-f1' (required there). */
  labelled?: LabelledObjectiveOptions;
  /** Tokens for 'full' fidelity (default: the whole stream). */
  tokens?: number;
  /** Tokens for 'low' fidelity (default: same as full). */
  lowTokens?: number;
  batchSize?: number;
  device?: Device;
  threads?: number;
  dtype?: ComputeDtype;
}

/**
 * The quality a log line (evals.jsonl) recorded. JSON turned a non-finite quality into null (and the log marks
 * it `nonFinite: true`); it is read back as +Infinity, the value the search saw, not Number(null) = 0.
 */
export function qualityFromLog(r: { quality?: unknown; nonFinite?: unknown }): number {
  if (r.nonFinite === true || r.quality === null || r.quality === undefined) return Number.POSITIVE_INFINITY;
  const q = Number(r.quality);
  return Number.isFinite(q) ? q : Number.POSITIVE_INFINITY;
}

export async function createObjective<G, S extends SearchSpace<G>>(
  spec: ModelSpec,
  space: S,
  opts: ObjectiveOptions,
): Promise<Objective<G, S>> {
  // The metric's own part (its runner, data and scoring) comes from its registry entry.
  const scorer = await metricEntry(opts.metric).objective(spec, space, opts);
  return scoredObjective(space, opts.metric, scorer);
}

/**
 * An accuracy objective over any `Predictor`: quality = −score(predictions, labels), the score accuracy unless
 * given (macro-F1 fits too), `tokens` the items scored. The runner is the predictor's, released with the
 * objective.
 */
export function createPredictionObjective<G, S extends SearchSpace<G>>(
  space: S,
  metric: QualityMetric,
  runner: ModelRunner,
  predictor: Predictor,
  score?: (predictions: ArrayLike<number>, labels: ArrayLike<number>) => number,
): Objective<G, S> {
  return scoredObjective(space, metric, predictionScorer(runner, predictor, score));
}

/** A calibration scorer over the space's genomes: the candidate's masks are the space's. */
function scoredObjective<G, S extends SearchSpace<G>>(
  space: S,
  metric: QualityMetric,
  scorer: CalibrationScorer,
): Objective<G, S> {
  return cachedObjective(space, metric, scorer.runner, (g, fidelity) =>
    scorer.score(space.masks(g), fidelity),
  );
}

/** The cache, the counters and the non-finite rule around a metric's evaluation function. */
function cachedObjective<G, S extends SearchSpace<G>>(
  space: S,
  metric: QualityMetric,
  runner: Pick<ModelRunner, 'release'>,
  run: (g: G, fidelity: Fidelity) => Promise<RawEvaluation>,
): Objective<G, S> {
  const cache = new Map<string, Evaluation>();
  let forward = 0;
  let distinct = 0;
  let released = false;
  return {
    space,
    metric,
    async evaluate(g, fidelity = 'full') {
      const key = `${fidelity}:${space.key(g)}`;
      const hit = cache.get(key);
      if (hit) return { ...hit, ms: 0 };
      const t0 = performance.now();
      const r = await run(g, fidelity);
      let quality = r.quality;
      if (!Number.isFinite(quality)) {
        // A search on a model that is broken unpruned would only rank garbage.
        if (space.isFull(g)) {
          const m = metricEntry(metric);
          throw new GenepruneError(
            'model',
            `the unpruned model scores a non-finite ${m.noun} on the calibration data (${fidelity} fidelity, ` +
              `${r.tokens} ${amountUnit(m)}): nothing to search`,
            r.source ?? 'calibration data',
          );
        }
        quality = Number.POSITIVE_INFINITY;
      }
      const result = { quality, tokens: r.tokens, ms: performance.now() - t0 };
      forward += r.forwards;
      distinct++;
      cache.set(key, result);
      return result;
    },
    prime(g, fidelity, result) {
      cache.set(`${fidelity}:${space.key(g)}`, result);
    },
    forwardPasses: () => forward,
    evaluations: () => distinct,
    // Idempotent: a run frees the model's session before scoring on evaluation data, then again on exit.
    release: async () => {
      if (released) return;
      released = true;
      await runner.release();
    },
  };
}
