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
import { registerObjective } from './record.js';
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
  /** How a batch's distinct evaluations run (default `sequentialRunner`). */
  elementwise?: ElementwiseRunner;
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

  const evalRunner = runnerOf(runner, opts);
  const objective = createCachedObjective(space, opts.metric, evalRunner, async (g: G, fidelity) => {
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
  return registerObjective(objective, {
    spec,
    settings: {
      context: opts.context,
      tokens: full.tokens,
      lowTokens: low.tokens,
      batchSize,
      dtype: opts.dtype,
    },
    data: { full: full.rows, low: low.rows },
    source: full.source,
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
  const objective = createCachedObjective(space, 'bleu', runnerOf(runner, opts), async (g: G, fidelity) => {
    const task = fidelity === 'low' ? low : full;
    const r = await scoreGeneration(runner, task, { ...scoring, masks: space.masks(g) });
    return {
      quality: qualityOfBleu(r.bleu),
      tokens: r.items,
      forwards: r.forwards,
      source: task.task.source,
    };
  });
  const taskData = (t: PreparedGenerationTask) => ({
    prompts: t.prompts,
    items: t.task.items,
    stop: t.stopTokens,
  });
  return registerObjective(objective, {
    spec,
    settings: { items, lowItems, ...scoring, dtype: opts.dtype },
    data: { full: taskData(full), low: low === full ? taskData(full) : taskData(low) },
    source: full.task.source,
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
  const choiceData = (t: PreparedChoiceTask) => ({
    rows: t.rows,
    scoreFrom: t.scoreFrom,
    labels: choiceLabels(t),
  });
  const fullData = choiceData(tasks.full);
  return registerObjective(
    createPredictionObjective<G, S>(space, 'mc-accuracy', runner, predictor, accuracy, opts.elementwise),
    {
      spec,
      settings: {
        items: tasks.full.task.items.length,
        lowItems: tasks.low.task.items.length,
        batchSize: c.batchSize,
        norm,
        dtype: opts.dtype,
      },
      data: { full: fullData, low: tasks.low === tasks.full ? fullData : choiceData(tasks.low) },
      source: c.task.task.source,
    },
  );
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
  const objective = createPredictionObjective<G, S>(
    space,
    metric,
    runner,
    predictor,
    metric === 'macro-f1' ? macroF1 : accuracy,
    opts.elementwise,
  );
  return registerObjective(objective, {
    spec,
    settings: {
      items: sets.full.items.length,
      lowItems: sets.low.items.length,
      batchSize: l.batchSize,
      dtype: opts.dtype,
    },
    data: { full: sets.full.items, low: sets.low.items },
    source: l.prepared.data.source,
  });
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
  elementwise?: ElementwiseRunner,
): Objective<G, S> {
  return createCachedObjective(space, metric, runnerOf(runner, { elementwise }), async (g, fidelity) => {
    const r = await predictor.predict(space.masks(g), fidelity);
    return {
      quality: r.predictions ? qualityOfAccuracy(score(r.predictions, r.labels)) : Number.NaN,
      tokens: r.labels.length,
      forwards: r.forwards,
      source: predictor.source,
    };
  });
}

/** What one uncached evaluation returns to `createCachedObjective`. */
export interface RawEvaluation {
  quality: number;
  tokens: number;
  forwards: number;
  /** The data it read, for messages. */
  source?: string;
}

/** What runs an objective's evaluations: the batch runner and the release of what the evaluations hold. */
export interface EvaluationRunner {
  elementwise?: ElementwiseRunner;
  release(): Promise<void>;
}

function runnerOf(runner: ModelRunner, opts: { elementwise?: ElementwiseRunner }): EvaluationRunner {
  return { elementwise: opts.elementwise, release: () => runner.release() };
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
    return { evaluation: { quality, tokens: r.tokens, ms: performance.now() - t0 }, forwards: r.forwards };
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
