/**
 * The calibration scorers behind the metric registry's objective factories (metrics/registry.ts): for one metric,
 * a runner built once and a `score(masks, fidelity)` that scores a candidate's masks on the calibration data of
 * that fidelity, returning the objective's quality (lower is better: perplexity, mean KL, −BLEU, −accuracy,
 * −macro-F1), the tokens or items scored and the forward passes run. They know nothing of genomes, caches or
 * searches: search/objective.ts wraps a scorer in its cache and counters.
 *
 * Accuracy-type metrics go through a `Predictor` (a task's labels and, under a candidate's masks, one predicted
 * label per item): multiple choice predicts with the 'nll' runner (metrics/choices.ts), sequence classification
 * with a 'class_logits' runner (metrics/classify.ts).
 */
import { type CandidateMasks, createRunner, type ModelRunner } from '../engine/runner.js';
import { GenepruneError } from '../errors.js';
import { prepareWeights, releaseWeights } from '../graph/weights.js';
import type { ModelSpec } from '../model/spec.js';
import type { Fidelity, ObjectiveOptions, Predictor } from '../search/objective.js';
import type { ObjectiveSettings } from '../search/record.js';
import { choiceLabels, type PreparedChoiceTask, scoreChoices, sliceChoiceTask } from './choices.js';
import { accuracy } from './classification.js';
import { scoreClassification, sliceClassification } from './classify.js';
import { type CodeExecOptions, refuseUnlessAllowed } from './codeexec.js';
import {
  codeProblemsOf,
  GENERATION_BATCH_SIZE,
  type PreparedGenerationTask,
  scoreGeneration,
  slicePreparedTask,
} from './generation.js';
import {
  batches,
  computeKlReference,
  defaultBatchSize,
  evaluateKl,
  evaluatePerplexity,
  type KlReference,
  makeWindows,
  type Windows,
} from './perplexity.js';
import { metricEntry, type QualityMetric, qualityOfValue } from './registry.js';
import { pairWindows } from './seq2seq.js';

/** Task items a BLEU objective scores at full fidelity by default (the first ones of the calibration task). */
export const BLEU_SEARCH_ITEMS = 32;
/** New tokens per prompt a BLEU objective decodes by default. */
export const BLEU_SEARCH_NEW_TOKENS = 32;

/** What one uncached evaluation of a candidate's masks returns. */
export interface RawEvaluation {
  /** The objective's quality (lower is better); NaN or ±Infinity when the forward pass was not finite. */
  quality: number;
  /** Calibration tokens (text metrics) or items (task metrics) scored. */
  tokens: number;
  forwards: number;
  /** The data it read, for messages. */
  source?: string;
  /**
   * Wall time of the scoring itself in ms, when it ran elsewhere (a pool's worker: the main thread's clock
   * would count the time the candidate waited for a free worker).
   */
  ms?: number;
}

/** A metric's scoring of candidates on the calibration data, its runner built once. */
export interface CalibrationScorer {
  /** Released with the objective that holds the scorer. */
  runner: Pick<ModelRunner, 'release'>;
  score(masks: CandidateMasks, fidelity: Fidelity): Promise<RawEvaluation>;
  /** What it was built from, for the objective's serialisable record (search/record.ts). */
  record?: ScorerRecord;
}

/** The settings and the data (per fidelity) a scorer computes from, and where the data came from. */
export interface ScorerRecord {
  settings: ObjectiveSettings;
  data: Record<Fidelity, unknown>;
  source?: string;
}

/** Where the candidates' masks go: the weight roles a weight space masks (none for a head space). */
export interface ScorerTarget {
  weightRoles?: readonly string[];
  /** The structured spaces' channel_mask / block_mask inputs (decoder and encoder graphs have them). */
  structuredMasks?: boolean;
}

const weightMasksOf = (target: ScorerTarget) => (target.weightRoles ? [...target.weightRoles] : undefined);
/** The runner option that gives the graph the structured mask inputs, where the target asks for them. */
const structuredOf = (target: ScorerTarget) => (target.structuredMasks ? { structuredMasks: true } : {});

/**
 * 'ppl' and 'kl': windows of the calibration token stream on an 'nll' runner (perplexity) or, with `kind`
 * 'kl', on a 'kl' runner against the dense model's log-probabilities, computed once per fidelity.
 */
export async function createTextScorer(
  spec: ModelSpec,
  target: ScorerTarget,
  opts: ObjectiveOptions,
  kind: 'ppl' | 'kl',
): Promise<CalibrationScorer> {
  const pairs = opts.pairs;
  if (pairs && kind === 'kl') {
    throw new GenepruneError(
      'flag',
      'not for an encoder-decoder yet: its graphs have no log-probability outputs',
      '--metric kl',
    );
  }
  const windowsOf = (tokens: number | undefined) =>
    pairs
      ? pairWindows(pairs, tokens, 'calibration data')
      : makeWindows(opts.stream, opts.context, tokens, 'calibration data');
  const full = windowsOf(opts.tokens);
  const low = opts.lowTokens ? windowsOf(opts.lowTokens) : full;
  const batchSize = opts.batchSize ?? defaultBatchSize(full.context, spec.config.vocabSize, kind);
  // Prepared once for both KL runners; released as soon as the last session has its own copy.
  const weights = await prepareWeights(spec, { dtype: opts.dtype });
  const engineOpts = {
    device: opts.device,
    threads: opts.threads,
    weights,
    dtype: opts.dtype,
    weightMasks: weightMasksOf(target),
    ...structuredOf(target),
    // The calibration rows are at most this long: a sliding window that long keeps the fused attention kernel.
    maxSeq: full.context,
  };
  let runner: ModelRunner;
  const references = new Map<Windows, KlReference>();
  try {
    if (kind === 'kl') {
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
  return {
    runner,
    async score(masks, fidelity) {
      const windows = fidelity === 'low' ? low : full;
      if (kind === 'kl') {
        const r = await evaluateKl(runner, windows, references.get(windows)!, {
          masks,
          nonFinite: 'infinite',
        });
        return { quality: r.meanKl, tokens: r.tokens, forwards: passes[fidelity], source: windows.source };
      }
      const r = await evaluatePerplexity(runner, windows, { masks, batchSize, nonFinite: 'infinite' });
      return { quality: r.perplexity, tokens: r.tokens, forwards: passes[fidelity], source: windows.source };
    },
    record: {
      settings: {
        context: opts.context,
        tokens: full.tokens,
        lowTokens: low.tokens,
        batchSize,
        dtype: opts.dtype,
      },
      // Pairs: the sources are data too.
      data: pairs
        ? { full: { rows: full.rows, sources: full.sources }, low: { rows: low.rows, sources: low.sources } }
        : { full: full.rows, low: low.rows },
      source: full.source,
    },
  };
}

/** What a generation task's record hashes: the encoded prompts, the items (references) and the stop tokens. */
const taskData = (t: PreparedGenerationTask) => ({
  prompts: t.prompts,
  items: t.task.items,
  stop: t.stopTokens,
});

/**
 * The generation metrics ('bleu', 'exact-match', 'pass@1'): greedy continuations of the calibration task's first
 * items on a 'row_logits' runner, the quality the metric's value (its registry entry's `fromGeneration`) negated.
 * pass@1 runs each continuation against its item's tests: refused up front unless code execution is allowed and
 * every item has tests.
 */
export async function createGenerationScorer(
  spec: ModelSpec,
  target: ScorerTarget,
  opts: ObjectiveOptions,
  metric: QualityMetric,
): Promise<CalibrationScorer> {
  const b = opts.bleu;
  if (!b) {
    throw new GenepruneError(
      'internal',
      `a ${metric} objective needs its calibration generation task (opts.bleu)`,
    );
  }
  const entry = metricEntry(metric);
  const metricValue = entry.fromGeneration;
  if (!metricValue) throw new GenepruneError('internal', `${metric} is not a generation metric`);
  const exec = entry.executesCode ? execOptionsFor(b) : undefined;
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
    weightMasks: weightMasksOf(target),
    ...structuredOf(target),
  });
  const scoring = {
    maxNewTokens: b.maxNewTokens ?? BLEU_SEARCH_NEW_TOKENS,
    batchSize: b.batchSize ?? GENERATION_BATCH_SIZE,
    bleu: b.kind ?? 'corpus',
  };
  return {
    runner,
    async score(masks, fidelity) {
      const task = fidelity === 'low' ? low : full;
      const r = await scoreGeneration(runner, task, { ...scoring, masks, ...(exec ? { exec } : {}) });
      return {
        quality: qualityOfValue(metric, metricValue(r)),
        tokens: r.items,
        forwards: r.forwards,
        source: task.task.source,
      };
    },
    record: {
      settings: { items, lowItems, ...scoring, dtype: opts.dtype },
      data: { full: taskData(full), low: low === full ? taskData(full) : taskData(low) },
      source: full.task.source,
    },
  };
}

/**
 * The code-execution options of a pass@1 objective, refused in one line unless code execution is allowed, and the
 * calibration task refused unless every item has tests (before any runner is built).
 */
export function execOptionsFor(b: NonNullable<ObjectiveOptions['bleu']>): CodeExecOptions {
  refuseUnlessAllowed({ allowCodeExecution: b.exec?.allowCodeExecution === true });
  codeProblemsOf(b.task.task);
  return b.exec as CodeExecOptions;
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
 * 'mc-accuracy': the calibration multiple-choice task's first items on an 'nll' runner, quality = −accuracy
 * (metrics/choices.ts).
 */
export async function createChoiceScorer(
  spec: ModelSpec,
  target: ScorerTarget,
  opts: ObjectiveOptions,
): Promise<CalibrationScorer> {
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
    weightMasks: weightMasksOf(target),
    ...structuredOf(target),
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
  return {
    ...predictionScorer(runner, predictor),
    record: {
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
  };
}

/**
 * 'accuracy' or 'macro-f1': the calibration labelled items on a 'class_logits' runner, quality = −score of the
 * head's argmax (metrics/classify.ts), the score accuracy or macro-F1 (metrics/classification.ts).
 */
export async function createLabelledScorer(
  spec: ModelSpec,
  target: ScorerTarget,
  opts: ObjectiveOptions,
  metric: string,
  score: (predictions: ArrayLike<number>, labels: ArrayLike<number>) => number,
): Promise<CalibrationScorer> {
  const l = opts.labelled;
  if (!l)
    throw new GenepruneError('internal', `a ${metric} objective needs its labelled items (opts.labelled)`);
  const sets = fidelitySets(l.prepared.items.length, l, (n) => sliceClassification(l.prepared, n));
  const runner = await createRunner(spec, {
    output: 'class_logits',
    device: opts.device,
    threads: opts.threads,
    dtype: opts.dtype,
    weightMasks: weightMasksOf(target),
    ...structuredOf(target),
  });
  const predictor: Predictor = {
    source: l.prepared.data.source,
    async predict(masks, fidelity) {
      const r = await scoreClassification(runner, sets[fidelity], { masks, batchSize: l.batchSize });
      return { predictions: r.predictions, labels: r.labels, forwards: r.forwards };
    },
  };
  return {
    ...predictionScorer(runner, predictor, score),
    record: {
      settings: {
        items: sets.full.items.length,
        lowItems: sets.low.items.length,
        batchSize: l.batchSize,
        dtype: opts.dtype,
      },
      data: { full: sets.full.items, low: sets.low.items },
      source: l.prepared.data.source,
    },
  };
}

/**
 * A scorer over any `Predictor`: quality = −score(predictions, labels), the score accuracy unless given (macro-F1
 * fits too), `tokens` the items scored, NaN when the predictor saw a non-finite forward pass.
 */
export function predictionScorer(
  runner: Pick<ModelRunner, 'release'>,
  predictor: Predictor,
  score: (predictions: ArrayLike<number>, labels: ArrayLike<number>) => number = accuracy,
): CalibrationScorer {
  return {
    runner,
    async score(masks, fidelity) {
      const r = await predictor.predict(masks, fidelity);
      return {
        quality: r.predictions ? -score(r.predictions, r.labels) : Number.NaN,
        tokens: r.labels.length,
        forwards: r.forwards,
        source: predictor.source,
      };
    },
  };
}
