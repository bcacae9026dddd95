/**
 * What a search optimises against: a model, calibration data and a quality metric, behind one
 * `evaluateMany(genomes)` call for the genomes of one search space (which turns each into engine feeds). Lower
 * quality values are better, whatever the metric: perplexity, KL divergence from the unpruned model, for
 * 'bleu' the *negated* corpus BLEU of greedy continuations of a calibration generation task (quality = −BLEU,
 * 0–100 scale: a dense model at BLEU 9.1 has quality −9.1), and for 'mc-accuracy' the *negated* accuracy on a
 * calibration multiple-choice task (quality = −accuracy, 0–1 scale: a dense model right on 62 % of the items
 * has quality −0.62). So every consumer that minimises quality (GA fitness, NSGA-II, baselines, archives)
 * handles them unchanged; `reportedQuality` turns a quality back into the value people quote. Every distinct
 * (genome, fidelity) is run once; repeats come from the cache, keyed by the space's genome key. How a batch's
 * evaluations run (one by one, or a worker pool) is the objective's `ElementwiseRunner`; what was computed and
 * what was cached never depends on it.
 *
 * Accuracy-type metrics go through a `Predictor` (a task's labels and, under a candidate's masks, one predicted
 * label per item): multiple choice predicts with the 'nll' runner (metrics/choices.ts); sequence classification
 * will predict with a logits runner and plug in the same way (metrics/classification.ts says how).
 */
import type { CandidateMasks, ModelRunner } from '../engine/runner.js';
import type { Device } from '../engine/session.js';
import { GenepruneError } from '../errors.js';
import type { ComputeDtype } from '../graph/weights.js';
import type { BleuKind } from '../metrics/bleu.js';
import type { ChoiceNorm, PreparedChoiceTask } from '../metrics/choices.js';
import type { PreparedClassification } from '../metrics/classify.js';
import type { CodeExecOptions } from '../metrics/codeexec.js';
import type { PreparedGenerationTask } from '../metrics/generation.js';
import { amountUnit, metricEntry, type QualityMetric } from '../metrics/registry.js';
import { type CalibrationScorer, predictionScorer, type RawEvaluation } from '../metrics/scorers.js';
import type { Seq2seqPairs } from '../metrics/seq2seq.js';
import type { ModelSpec } from '../model/spec.js';
import { calibrationRecipe, type RemoteEvaluation } from './backend.js';
import { registerObjective } from './record.js';
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

/**
 * The calibration generation task of a generation-metric objective ('bleu', 'exact-match', 'pass@1': named after
 * the first) and how it is scored.
 */
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
  /** 'pass@1': how the generated programs run (refused unless `allowCodeExecution` is true). */
  exec?: CodeExecOptions;
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

/** One genome's outcome in `evaluateMany`: its evaluation, what it cost and whether the cache answered it. */
export interface ScoredGenome {
  evaluation: Evaluation;
  /** Forward passes this genome spent (0 when cached). */
  forwardPasses: number;
  /**
   * True when no evaluation ran for it: the cache held it, or an earlier genome of the same batch (by index) is
   * the same genome at the same fidelity. Decided by index, so it does not depend on completion order.
   */
  cached: boolean;
}

export interface Objective<G, S extends SearchSpace<G> = SearchSpace<G>> {
  readonly space: S;
  readonly metric: QualityMetric;
  /**
   * Scores a batch at one fidelity; result i belongs to genomes[i]. Equal to scoring them one by one in index
   * order: the first occurrence of a genome runs, later ones (and cache hits) come back `cached`, and the
   * counters and the cache end the same. `onResult` (progress) sees every result in index order, each as soon as
   * it and every one before it are known.
   */
  evaluateMany(
    genomes: readonly G[],
    fidelity?: Fidelity,
    onResult?: (index: number, r: ScoredGenome) => void,
  ): Promise<ScoredGenome[]>;
  /** One genome: `evaluateMany([g])`'s evaluation. */
  evaluate(g: G, fidelity?: Fidelity): Promise<Evaluation>;
  /** Records a result computed earlier (a resumed run's log), so it is not computed again. */
  prime(g: G, fidelity: Fidelity, result: Evaluation): void;
  /** Forward passes (batches through the model) run so far, cache hits excluded. */
  forwardPasses(): number;
  /** Distinct evaluations run so far. */
  evaluations(): number;
  release(): Promise<void>;
}

/**
 * How the distinct evaluations of one batch are run (pymoo's elementwise runner): task i's value goes to index
 * i whatever order the tasks finish in, and `onSettled` is told as each finishes. The default runs them one
 * after another in index order; a worker pool runs them at once.
 */
export type ElementwiseRunner = <T>(
  tasks: ReadonlyArray<() => Promise<T>>,
  onSettled?: (index: number, value: T) => void,
) => Promise<T[]>;

/** The default runner: one task at a time, in index order (a failure stops the batch there). */
export const sequentialRunner: ElementwiseRunner = async <T>(
  tasks: ReadonlyArray<() => Promise<T>>,
  onSettled?: (index: number, value: T) => void,
): Promise<T[]> => {
  const out: T[] = [];
  for (let i = 0; i < tasks.length; i++) {
    out.push(await tasks[i]());
    onSettled?.(i, out[i]);
  }
  return out;
};

export interface ObjectiveOptions {
  /** Calibration token stream (BOS-separated documents); not read by 'bleu'. */
  stream: number[];
  /**
   * Encoder-decoders: the calibration source/target pairs the perplexity metrics score instead of `stream`
   * (`tokens` / `lowTokens` count target tokens, whole pairs in task order).
   */
  pairs?: Seq2seqPairs;
  context: number;
  metric: QualityMetric;
  /** The calibration generation task and its scoring, for the generation metrics (required there). */
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
  /** How a batch's distinct evaluations run (default `sequentialRunner`). */
  elementwise?: ElementwiseRunner;
  /**
   * `--workers N` or `--queue URL`: the evaluations run on an evaluation backend (search/backend.ts), each
   * evaluator rebuilding this objective's scorer from its recipe; the batch runner is then the backend's.
   * Results are the same as without.
   */
  remote?: RemoteEvaluation;
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
  const remote = opts.remote;
  const scorer = remote
    ? await remote.backend.open(calibrationRecipe(spec, space, opts, remote.model), spec)
    : await metricEntry(opts.metric).objective(spec, space, opts);
  const objective = scoredObjective(
    space,
    opts.metric,
    scorer,
    remote ? remote.backend.elementwise : opts.elementwise,
  );
  return scorer.record ? registerObjective(objective, { spec, ...scorer.record }) : objective;
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
  elementwise?: ElementwiseRunner,
): Objective<G, S> {
  return scoredObjective(space, metric, predictionScorer(runner, predictor, score), elementwise);
}

/** A calibration scorer over the space's genomes: the candidate's masks are the space's. */
function scoredObjective<G, S extends SearchSpace<G>>(
  space: S,
  metric: QualityMetric,
  scorer: CalibrationScorer,
  elementwise: ElementwiseRunner | undefined,
): Objective<G, S> {
  return createCachedObjective(
    space,
    metric,
    { elementwise, release: () => scorer.runner.release() },
    (g, fidelity) => scorer.score(space.masks(g), fidelity),
  );
}

/** What runs an objective's evaluations: the batch runner and the release of what the evaluations hold. */
export interface EvaluationRunner {
  elementwise?: ElementwiseRunner;
  release(): Promise<void>;
}

/**
 * The cache, the counters and the non-finite rule around a metric's evaluation function `run` (one genome at
 * one fidelity): the one implementation of `Objective`, whatever the metric or the space.
 */
export function createCachedObjective<G, S extends SearchSpace<G>>(
  space: S,
  metric: QualityMetric,
  runner: EvaluationRunner,
  run: (g: G, fidelity: Fidelity) => Promise<RawEvaluation>,
): Objective<G, S> {
  const cache = new Map<string, Evaluation>();
  const elementwise = runner.elementwise ?? sequentialRunner;
  let forward = 0;
  let distinct = 0;
  let released = false;
  /** One distinct evaluation, the non-finite rule applied; counted by the caller. */
  const runOne = async (g: G, fidelity: Fidelity): Promise<{ evaluation: Evaluation; forwards: number }> => {
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
    const ms = r.ms ?? performance.now() - t0;
    return { evaluation: { quality, tokens: r.tokens, ms }, forwards: r.forwards };
  };
  const objective: Objective<G, S> = {
    space,
    metric,
    async evaluateMany(genomes, fidelity = 'full', onResult) {
      const n = genomes.length;
      const keys = genomes.map((g) => `${fidelity}:${space.key(g)}`);
      // Decided by index before anything runs: what the cache holds, which index runs each new key.
      const results: Array<ScoredGenome | undefined> = new Array(n);
      const firstOf = new Map<string, number>();
      const jobs: number[] = [];
      for (let i = 0; i < n; i++) {
        const hit = cache.get(keys[i]);
        if (hit) results[i] = { evaluation: { ...hit, ms: 0 }, forwardPasses: 0, cached: true };
        else if (!firstOf.has(keys[i])) {
          firstOf.set(keys[i], i);
          jobs.push(i);
        }
      }
      const ran = new Map<number, { evaluation: Evaluation; forwards: number }>();
      // Results are committed (counters, cache, onResult) in index order as far as they are known, so the
      // objective ends as a one-by-one loop leaves it whatever order the runner finishes in.
      let next = 0;
      const flush = () => {
        for (; next < n; next++) {
          const i = next;
          if (results[i]) {
            onResult?.(i, results[i]);
            continue;
          }
          const first = firstOf.get(keys[i])!;
          if (first === i) {
            const r = ran.get(i);
            if (!r) return;
            forward += r.forwards;
            distinct++;
            cache.set(keys[i], r.evaluation);
            results[i] = { evaluation: r.evaluation, forwardPasses: r.forwards, cached: false };
          } else {
            results[i] = { evaluation: { ...cache.get(keys[i])!, ms: 0 }, forwardPasses: 0, cached: true };
          }
          onResult?.(i, results[i]);
        }
      };
      flush();
      await elementwise(
        jobs.map((i) => () => runOne(genomes[i], fidelity)),
        (j, r) => {
          ran.set(jobs[j], r);
          flush();
        },
      );
      flush();
      return results as ScoredGenome[];
    },
    async evaluate(g, fidelity = 'full') {
      return (await objective.evaluateMany([g], fidelity))[0].evaluation;
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
  return objective;
}
