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
 * Accuracy-type metrics go through a `Predictor` (a task's labels and, under a candidate's masks, one predicted
 * label per item): multiple choice predicts with the 'nll' runner (metrics/choices.ts); sequence classification
 * will predict with a logits runner and plug in the same way (metrics/classification.ts says how).
 */
import { type CandidateMasks, createRunner, type ModelRunner } from '../engine/runner.js';
import type { Device } from '../engine/session.js';
import { GenepruneError } from '../errors.js';
import { prepareWeights, releaseWeights } from '../graph/decoder.js';
import type { ComputeDtype } from '../graph/weights.js';
import type { BleuKind } from '../metrics/bleu.js';
import {
  type ChoiceNorm,
  choiceLabels,
  type PreparedChoiceTask,
  scoreChoices,
  sliceChoiceTask,
} from '../metrics/choices.js';
import { accuracy, macroF1 } from '../metrics/classification.js';
import {
  type PreparedClassification,
  scoreClassification,
  sliceClassification,
} from '../metrics/classify.js';
import {
  GENERATION_BATCH_SIZE,
  type PreparedGenerationTask,
  scoreGeneration,
  slicePreparedTask,
} from '../metrics/generation.js';
import {
  batches,
  computeKlReference,
  defaultBatchSize,
  evaluateKl,
  evaluatePerplexity,
  type KlReference,
  makeWindows,
  type Windows,
} from '../metrics/perplexity.js';
import type { ModelSpec } from '../model/spec.js';
import type { SearchSpace } from './space.js';

export type QualityMetric = 'ppl' | 'kl' | 'bleu' | 'mc-accuracy' | 'accuracy' | 'macro-f1';
export const QUALITY_METRICS: readonly QualityMetric[] = [
  'ppl',
  'kl',
  'bleu',
  'mc-accuracy',
  'accuracy',
  'macro-f1',
];
/** Sequence-classification metrics: scored on labelled data by a model with a classification head. */
export type ClassificationMetric = 'accuracy' | 'macro-f1';
export function isClassificationMetric(metric: QualityMetric | undefined): metric is ClassificationMetric {
  return metric === 'accuracy' || metric === 'macro-f1';
}
/** Metrics whose reported value is higher-is-better (BLEU, accuracy, F1): their quality is the value negated. */
export function isNegatedMetric(
  metric: QualityMetric,
): metric is 'bleu' | 'mc-accuracy' | ClassificationMetric {
  return metric === 'bleu' || metric === 'mc-accuracy' || isClassificationMetric(metric);
}
/**
 * 'low' scores on the first `lowTokens` calibration tokens (BLEU, multiple choice: the first `lowItems` task
 * items), 'full' on all of them.
 */
export type Fidelity = 'low' | 'full';

/** Task items a BLEU objective scores at full fidelity by default (the first ones of the calibration task). */
export const BLEU_SEARCH_ITEMS = 32;
/** New tokens per prompt a BLEU objective decodes by default. */
export const BLEU_SEARCH_NEW_TOKENS = 32;

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

/** The metric's value as people quote it: perplexity, KL, BLEU or accuracy (negated qualities negated back). */
export function reportedQuality(metric: QualityMetric, quality: number): number {
  return isNegatedMetric(metric) ? -quality : quality;
}

/** Label of a metric's reported value in logs and reports. */
export function metricLabel(metric: QualityMetric): string {
  return {
    ppl: 'ppl',
    kl: 'KL',
    bleu: 'BLEU',
    'mc-accuracy': 'accuracy',
    accuracy: 'accuracy',
    'macro-f1': 'macro-F1',
  }[metric];
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
  if (opts.metric === 'bleu') return createBleuObjective(spec, space, opts);
  if (opts.metric === 'mc-accuracy') return createChoiceObjective(spec, space, opts);
  if (isClassificationMetric(opts.metric)) return createLabelledObjective(spec, space, opts, opts.metric);
  const full = makeWindows(opts.stream, opts.context, opts.tokens, 'calibration data');
  const low = opts.lowTokens
    ? makeWindows(opts.stream, opts.context, opts.lowTokens, 'calibration data')
    : full;
  const batchSize = opts.batchSize ?? defaultBatchSize(opts.context, spec.config.vocabSize, opts.metric);
  // Prepared once for both KL runners; released as soon as the last session has its own copy.
  const weights = await prepareWeights(spec, { dtype: opts.dtype });
  const engineOpts = {
    device: opts.device,
    threads: opts.threads,
    weights,
    dtype: opts.dtype,
    weightMasks: space.weightRoles ? [...space.weightRoles] : undefined,
  };
  let runner: ModelRunner;
  const references = new Map<Windows, KlReference>();
  try {
    if (opts.metric === 'kl') {
      const dense = await createRunner(spec, { ...engineOpts, output: 'logprobs' });
      references.set(full, await computeKlReference(dense, full, batchSize));
      if (low !== full) references.set(low, await computeKlReference(dense, low, batchSize));
      await dense.release();
      runner = await createRunner(spec, { ...engineOpts, output: 'kl' });
    } else {
      runner = await createRunner(spec, { ...engineOpts, output: 'nll' });
    }
  } finally {
    await releaseWeights(weights);
  }
  const batchCount = (w: Windows) => [...batches(w, batchSize)].length;
  const passes = { low: batchCount(low), full: batchCount(full) };

  return cachedObjective(space, opts.metric, runner, async (g, fidelity) => {
    const windows = fidelity === 'low' ? low : full;
    const masks = space.masks(g);
    if (opts.metric === 'kl') {
      const r = await evaluateKl(runner, windows, references.get(windows)!, {
        masks,
        nonFinite: 'infinite',
      });
      return { quality: r.meanKl, tokens: r.tokens, forwards: passes[fidelity], source: windows.source };
    }
    const r = await evaluatePerplexity(runner, windows, { masks, batchSize, nonFinite: 'infinite' });
    return { quality: r.perplexity, tokens: r.tokens, forwards: passes[fidelity], source: windows.source };
  });
}

/** A 'bleu' objective: greedy continuations of the calibration task's first items on a 'row_logits' runner. */
async function createBleuObjective<G, S extends SearchSpace<G>>(
  spec: ModelSpec,
  space: S,
  opts: ObjectiveOptions,
): Promise<Objective<G, S>> {
  const b = opts.bleu;
  if (!b) {
    throw new GenepruneError(
      'internal',
      'a bleu objective needs its calibration generation task (opts.bleu)',
    );
  }
  const items = Math.min(b.items ?? BLEU_SEARCH_ITEMS, b.task.prompts.length);
  const lowItems = Math.min(b.lowItems ?? items, items);
  for (const [name, v] of [
    ['items', items],
    ['lowItems', lowItems],
  ] as const) {
    if (!Number.isInteger(v) || v < 1)
      throw new GenepruneError('flag', `must be an integer ≥ 1, got ${v}`, name);
  }
  const full = slicePreparedTask(b.task, items);
  const low = lowItems === items ? full : slicePreparedTask(b.task, lowItems);
  const runner = await createRunner(spec, {
    output: 'row_logits',
    device: opts.device,
    threads: opts.threads,
    dtype: opts.dtype,
    weightMasks: space.weightRoles ? [...space.weightRoles] : undefined,
  });
  const scoring = {
    maxNewTokens: b.maxNewTokens ?? BLEU_SEARCH_NEW_TOKENS,
    batchSize: b.batchSize ?? GENERATION_BATCH_SIZE,
    bleu: b.kind ?? 'corpus',
  };
  return cachedObjective(space, 'bleu', runner, async (g, fidelity) => {
    const task = fidelity === 'low' ? low : full;
    const r = await scoreGeneration(runner, task, { ...scoring, masks: space.masks(g) });
    return {
      quality: qualityOfBleu(r.bleu),
      tokens: r.items,
      forwards: r.forwards,
      source: task.task.source,
    };
  });
}

/**
 * The items a task-scored objective reads at each fidelity: the first `items` (default all `total`) at 'full', the
 * first `lowItems` (default the same) at 'low', sliced once; counts below 1 are refused.
 */
function fidelitySets<T>(
  total: number,
  counts: { items?: number; lowItems?: number },
  slice: (n: number) => T,
): Record<Fidelity, T> {
  const items = Math.min(counts.items ?? total, total);
  const lowItems = Math.min(counts.lowItems ?? items, items);
  for (const [name, v] of [
    ['items', items],
    ['lowItems', lowItems],
  ] as const) {
    if (!Number.isInteger(v) || v < 1)
      throw new GenepruneError('flag', `must be an integer ≥ 1, got ${v}`, name);
  }
  const full = slice(items);
  return { full, low: lowItems === items ? full : slice(lowItems) };
}

/**
 * An 'mc-accuracy' objective: the calibration multiple-choice task's first items on an 'nll' runner, quality =
 * −accuracy (metrics/choices.ts).
 */
async function createChoiceObjective<G, S extends SearchSpace<G>>(
  spec: ModelSpec,
  space: S,
  opts: ObjectiveOptions,
): Promise<Objective<G, S>> {
  const c = opts.choices;
  if (!c) {
    throw new GenepruneError(
      'internal',
      'an mc-accuracy objective needs its calibration multiple-choice task (opts.choices)',
    );
  }
  const tasks = fidelitySets(c.task.task.items.length, c, (n) => sliceChoiceTask(c.task, n));
  const runner = await createRunner(spec, {
    output: 'nll',
    device: opts.device,
    threads: opts.threads,
    dtype: opts.dtype,
    weightMasks: space.weightRoles ? [...space.weightRoles] : undefined,
  });
  const norm = c.norm ?? 'none';
  const predictor: Predictor = {
    source: c.task.task.source,
    async predict(masks, fidelity) {
      const task = tasks[fidelity];
      const r = await scoreChoices(runner, task, { masks, batchSize: c.batchSize, nonFinite: 'infinite' });
      const finite = Number.isFinite(r.accuracy);
      return {
        predictions: finite ? (norm === 'chars' ? r.predictionsNorm : r.predictions) : null,
        labels: choiceLabels(task),
        forwards: r.forwards,
      };
    },
  };
  return createPredictionObjective(space, 'mc-accuracy', runner, predictor);
}

/**
 * An 'accuracy' or 'macro-f1' objective: the calibration labelled items on a 'class_logits' runner, quality =
 * −accuracy or −macro-F1 of the head's argmax (metrics/classify.ts).
 */
async function createLabelledObjective<G, S extends SearchSpace<G>>(
  spec: ModelSpec,
  space: S,
  opts: ObjectiveOptions,
  metric: ClassificationMetric,
): Promise<Objective<G, S>> {
  const l = opts.labelled;
  if (!l)
    throw new GenepruneError('internal', `a ${metric} objective needs its labelled items (opts.labelled)`);
  const sets = fidelitySets(l.prepared.items.length, l, (n) => sliceClassification(l.prepared, n));
  const runner = await createRunner(spec, {
    output: 'class_logits',
    device: opts.device,
    threads: opts.threads,
    dtype: opts.dtype,
    weightMasks: space.weightRoles ? [...space.weightRoles] : undefined,
  });
  const predictor: Predictor = {
    source: l.prepared.data.source,
    async predict(masks, fidelity) {
      const r = await scoreClassification(runner, sets[fidelity], { masks, batchSize: l.batchSize });
      return { predictions: r.predictions, labels: r.labels, forwards: r.forwards };
    },
  };
  return createPredictionObjective(
    space,
    metric,
    runner,
    predictor,
    metric === 'macro-f1' ? macroF1 : accuracy,
  );
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
  score: (predictions: ArrayLike<number>, labels: ArrayLike<number>) => number = accuracy,
): Objective<G, S> {
  return cachedObjective(space, metric, runner, async (g, fidelity) => {
    const r = await predictor.predict(space.masks(g), fidelity);
    return {
      quality: r.predictions ? qualityOfAccuracy(score(r.predictions, r.labels)) : Number.NaN,
      tokens: r.labels.length,
      forwards: r.forwards,
      source: predictor.source,
    };
  });
}

/** What one uncached evaluation returns to `cachedObjective`. */
interface RawEvaluation {
  quality: number;
  tokens: number;
  forwards: number;
  source?: string;
}

/** The cache, the counters and the non-finite rule around a metric's evaluation function. */
function cachedObjective<G, S extends SearchSpace<G>>(
  space: S,
  metric: QualityMetric,
  runner: ModelRunner,
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
          const what = metric === 'ppl' ? 'perplexity' : metricLabel(metric);
          throw new GenepruneError(
            'model',
            `the unpruned model scores a non-finite ${what} on the calibration data (${fidelity} fidelity, ` +
              `${r.tokens} ${isNegatedMetric(metric) ? 'items' : 'tokens'}): nothing to search`,
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
