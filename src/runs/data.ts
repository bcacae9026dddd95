/**
 * What a run reads besides its search space: the model and the two data sets. Calibration data (what the
 * search sees) and evaluation data (what reports quote) are kept apart — no shared file, no shared document —
 * and recorded with the sha256 of every file, so a resumed run can tell the data has not changed. Any space's
 * search prepares its run here and scores its final mask on the evaluation data here.
 */
import { resolve } from 'node:path';
import { archOf } from '../arch/registry.js';
import { checkMemoryBudget } from '../engine/memory.js';
import { type CandidateMasks, createRunner, type TokenBatch } from '../engine/runner.js';
import type { Device } from '../engine/session.js';
import { fileError, flagError, GenepruneError } from '../errors.js';
import type { ComputeDtype } from '../graph/weights.js';
import { scoreClassification } from '../metrics/classify.js';
import { readDataset } from '../metrics/data.js';
import { promptsBeyondContext, promptsCutNote } from '../metrics/generation.js';
import {
  batches,
  defaultBatchSize,
  evaluatePerplexity,
  makeWindows,
  tokenizeDocuments,
} from '../metrics/perplexity.js';
import {
  type ClassificationMetric,
  isClassificationMetric,
  labelledMetric,
  metricEntry,
  type QualityMetric,
} from '../metrics/registry.js';
import { pairWindows, type Seq2seqPairs } from '../metrics/seq2seq.js';
import { modelIdentity } from '../model/identity.js';
import { type OpenedModel, openModel } from '../model/open.js';
import { BLEU_SEARCH_ITEMS } from '../search/objective.js';
import { realPathOf, sha256File, sha256Text } from '../util/fs.js';
import {
  calibrationChoices,
  choicesRecord,
  evaluationChoices,
  type RunChoiceSettings,
  type RunChoices,
  refuseChoicesOverlap,
} from './choices.js';
import { labelledRecord, type RunLabelled, readLabelled, refuseLabelledOverlap } from './labels.js';
import { prepareSeq2seqRunData } from './pairs.js';
import { scoreDenseAndPruned } from './score.js';
import {
  calibrationTask,
  evaluationTask,
  type RunTask,
  type RunTaskSettings,
  refuseTaskOverlap,
  taskRecord,
} from './tasks.js';

/** One data file as config.json records it, so a resumed run can tell the data has not changed. */
export interface DataFileIdentity {
  path: string;
  sha256: string;
}

/** The settings every run has: where the model and the data are, and how the text is cut. */
export interface RunDataSettings extends RunTaskSettings, RunChoiceSettings {
  model?: string;
  tokenizer?: string;
  calib: string;
  eval: string;
  context?: number;
  calibTokens: number;
  evalTokens?: number;
  batchSize?: number;
  /**
   * The search's metric: a KL search sizes batches by the vocabulary and holds the dense log-probabilities; a
   * BLEU search scores greedy continuations of the calibration task (runs/tasks.ts).
   */
  metric?: QualityMetric;
  /** Compute precision (changes numerics, so it is part of the run). */
  dtype?: ComputeDtype;
}

export interface RunEnv {
  device?: Device;
  /** Intra-op threads (per worker with `workers`). */
  threads?: number;
  /** Candidate evaluations on this many worker threads (search/pool.ts; the head search's ppl metric so far). */
  workers?: number;
  /** `--queue redis://…`: candidate evaluations as BullMQ jobs for `geneprune worker` processes (queue/). */
  queue?: string;
  /** Refuse before loading when the estimated peak exceeds this many bytes (default: total memory). */
  memoryBudget?: number;
  /** Progress and warnings (e.g. truncated items), one line each. */
  onStatus?: (line: string) => void;
  /** Warnings shown even when progress is not (data shorter than asked for), one line each. */
  onNote?: (line: string) => void;
}

/**
 * The warning for calibration data shorter than `--calib-tokens`: the run goes on with what there is, but a
 * search scored on 51 tokens is not the search the user asked for, so it must be said (and recorded).
 */
export function shortCalibrationNote(
  where: string,
  tokens: number,
  asked: number,
  use = 'masks are scored on',
): string {
  return `${where}: the calibration data holds only ${tokens} tokens to predict, fewer than the ${asked} of --calib-tokens: ${use} those ${tokens}`;
}

/** The model and the data of a run, ready to search. */
export interface RunData {
  model: OpenedModel;
  /** Calibration token stream (BOS-separated documents). */
  stream: number[];
  evalStream: number[];
  context: number;
  calibTokens: number;
  /** --calib-tokens, when the calibration data holds fewer tokens than it asks for. */
  calibTokensAsked?: number;
  calibFiles: DataFileIdentity[];
  evalFiles: DataFileIdentity[];
  /** `--metric bleu`: the calibration generation task. */
  calibTask?: RunTask;
  /** `--eval-task`: the evaluation generation task BLEU is reported on. */
  evalTask?: RunTask;
  /** `--metric mc-accuracy`: the calibration multiple-choice task. */
  calibChoices?: RunChoices;
  /** `--eval-choices`: the evaluation multiple-choice task accuracy is reported on. */
  evalChoices?: RunChoices;
  /** `--metric accuracy|macro-f1`: the labelled calibration items (--calib) ... */
  calibLabelled?: RunLabelled;
  /** ... and the labelled evaluation items (--eval). */
  evalLabelled?: RunLabelled;
  /**
   * Encoder-decoders (runs/pairs.ts): the calibration and evaluation task items as source/target pairs, which the
   * perplexity metrics score instead of token streams (`stream` and `evalStream` are empty).
   */
  calibPairs?: Seq2seqPairs;
  evalPairs?: Seq2seqPairs;
  /** Encoder-decoders: calibration items left out because the evaluation task has them too. */
  calibSharedDropped?: number;
}

/** The same settings with data and model paths absolute, so a run resumes from any working directory. */
export function absoluteSettings<S extends RunDataSettings>(s: S): S {
  const local = (p: string | undefined) => (p === undefined || p.startsWith('hf:') ? p : resolve(p));
  const task = (p: string | undefined) => (p === undefined || p === 'auto' ? p : resolve(p));
  return {
    ...s,
    ...(s.calibTask !== undefined ? { calibTask: task(s.calibTask) } : {}),
    ...(s.evalTask !== undefined ? { evalTask: task(s.evalTask) } : {}),
    ...(s.calibChoices !== undefined ? { calibChoices: resolve(s.calibChoices) } : {}),
    ...(s.evalChoices !== undefined ? { evalChoices: resolve(s.evalChoices) } : {}),
    calib: resolve(s.calib),
    eval: resolve(s.eval),
    model: local(s.model),
    tokenizer: local(s.tokenizer),
  };
}

async function identify(files: string[]): Promise<DataFileIdentity[]> {
  return Promise.all(files.map(async (f) => ({ path: resolve(f), sha256: await sha256File(f) })));
}

/** The documents of one data file; an empty file (allowed inside a folder) has none. */
async function documentsOf(file: string): Promise<string[]> {
  try {
    return (await readDataset(file)).documents;
  } catch (e) {
    if (e instanceof GenepruneError && e.kind === 'data') return [];
    throw e;
  }
}

/**
 * Refuses evaluation data that shares anything with the calibration data: a file (by real path, so a symlink
 * or a single page given by name is caught) or a document (by content hash, so a copied page is caught).
 */
async function refuseOverlap(calibFiles: string[], evalFiles: string[]): Promise<void> {
  const both = (e: string, c: string) =>
    resolve(e) === resolve(c) ? resolve(e) : `${resolve(e)} (calibration: ${resolve(c)})`;
  const calibByReal = new Map<string, string>();
  for (const f of calibFiles) calibByReal.set(await realPathOf(f), f);
  for (const f of evalFiles) {
    const c = calibByReal.get(await realPathOf(f));
    if (c !== undefined) {
      throw flagError('--eval', `${both(f, c)} is also calibration data: reports must quote unseen text`);
    }
  }
  const calibByDoc = new Map<string, string>();
  for (const f of calibFiles) for (const d of await documentsOf(f)) calibByDoc.set(sha256Text(d), f);
  for (const f of evalFiles) {
    for (const d of await documentsOf(f)) {
      const c = calibByDoc.get(sha256Text(d));
      if (c !== undefined) {
        throw flagError(
          '--eval',
          `${both(f, c)} holds a document that is also in the calibration data: reports must quote unseen text`,
        );
      }
    }
  }
}

/**
 * Reads both data sets (refusing overlap), opens the model, checks the context and the memory budget, and
 * tokenizes. `what` names the command in a memory refusal.
 */
export async function prepareRunData(s: RunDataSettings, env: RunEnv, what: string): Promise<RunData> {
  if (isClassificationMetric(s.metric)) return prepareLabelledRunData(s, env, what);
  // The model first: an encoder-decoder's data are task files (runs/pairs.ts), read as pairs, not pages.
  const model = await openModel(s.model, { tokenizer: s.tokenizer });
  const arch = archOf(model.spec.config);
  if (arch.lmData === 'pairs') return prepareSeq2seqRunData(s, env, what, model);
  const calib = await readDataset(s.calib);
  const evalData = await readDataset(s.eval);
  await refuseOverlap(calib.files, evalData.files);
  if (!arch.languageModel) {
    throw flagError(
      '--metric',
      `${s.metric ?? 'ppl'} needs a language model; ${model.modelPath} is a ${model.spec.config.modelType} ${arch.kind}: use --metric accuracy or macro-f1 with labelled JSONL --calib and --eval files`,
    );
  }
  const context = s.context ?? Math.min(model.spec.config.maxPositions, 512);
  if (context > model.spec.config.maxPositions) {
    throw flagError(
      '--ctx',
      `${context} exceeds the model's context length ${model.spec.config.maxPositions}`,
    );
  }
  // A metric scored against the dense model (KL) runs whole-vocabulary windows and holds the dense outputs.
  const reference = metricEntry(s.metric ?? 'ppl').denseReference;
  const windowMetric = reference ? 'kl' : 'ppl';
  checkMemoryBudget(model.spec, {
    batch: s.batchSize ?? defaultBatchSize(context, model.spec.config.vocabSize, windowMetric),
    seq: context,
    budget: env.memoryBudget,
    workers: env.workers,
    what,
    metric: windowMetric,
    dtype: s.dtype,
    // KL: the dense model's log-probabilities of every calibration token stay in memory for the whole search.
    heldBytes: reference ? 4 * s.calibTokens * model.spec.config.vocabSize : 0,
  });
  const calibTask = await calibrationTask(s, model.tokenizer);
  const evalTask = await evaluationTask(s, model.tokenizer);
  await refuseTaskOverlap(calibTask, evalTask);
  const maxPositions = model.spec.config.maxPositions;
  for (const [task, items] of [
    [calibTask, s.calibItems ?? BLEU_SEARCH_ITEMS],
    [evalTask, s.evalItems ?? Number.POSITIVE_INFINITY],
  ] as const) {
    const cut = task && promptsCutOf(task, items, maxPositions);
    if (task && cut) env.onNote?.(promptsCutNote(task.source, cut, usedPrompts(task, items), maxPositions));
  }
  const calibChoices = await calibrationChoices(s, model.tokenizer, maxPositions);
  const evalChoices = await evaluationChoices(s, model.tokenizer, maxPositions);
  await refuseChoicesOverlap(calibChoices, evalChoices);
  const stream = tokenizeDocuments(calib.documents, model.tokenizer);
  const evalStream = tokenizeDocuments(evalData.documents, model.tokenizer);
  const calibTokens = Math.min(s.calibTokens, stream.length - 1);
  // Token counts matter to the token metrics only: BLEU and multiple choice score their own items.
  const tokenMetric = metricEntry(s.metric ?? 'ppl').data === 'text';
  const short = tokenMetric && calibTokens < s.calibTokens;
  if (short) env.onNote?.(shortCalibrationNote(s.calib, calibTokens, s.calibTokens));
  return {
    ...(calibTask ? { calibTask } : {}),
    ...(evalTask ? { evalTask } : {}),
    ...(calibChoices ? { calibChoices } : {}),
    ...(evalChoices ? { evalChoices } : {}),
    model,
    stream,
    evalStream,
    context,
    calibTokens,
    ...(short ? { calibTokensAsked: s.calibTokens } : {}),
    calibFiles: await identify(calib.files),
    evalFiles: await identify(evalData.files),
  };
}

/**
 * A classification run: `--calib` and `--eval` are labelled JSONL files ({text[, text_pair], label}), read with
 * the model's labels, encoded once, kept apart; no text streams (an encoder has no language-model head).
 */
async function prepareLabelledRunData(s: RunDataSettings, env: RunEnv, what: string): Promise<RunData> {
  for (const [key, flag] of [
    ['calibTask', '--calib-task'],
    ['evalTask', '--eval-task'],
    ['promptTemplate', '--prompt-template'],
    ['allowCodeExecution', '--allow-code-execution'],
    ['execWorkers', '--exec-workers'],
    ['calibChoices', '--calib-choices'],
    ['evalChoices', '--eval-choices'],
    ['evalTokens', '--eval-tokens'],
  ] as const) {
    if (s[key] !== undefined)
      throw flagError(flag, `not with --metric ${s.metric} (labelled --calib and --eval files)`);
  }
  const model = await openModel(s.model, { tokenizer: s.tokenizer });
  const metric = s.metric as string;
  const calibLabelled = await readLabelled(s.calib, model.tokenizer, model.spec, metric, env.onStatus);
  const evalLabelled = await readLabelled(s.eval, model.tokenizer, model.spec, metric, env.onStatus);
  await refuseLabelledOverlap(calibLabelled, evalLabelled);
  const longest = Math.max(calibLabelled.prepared.maxLength, evalLabelled.prepared.maxLength);
  checkMemoryBudget(model.spec, {
    batch: Math.max(1, Math.floor(4096 / longest)),
    seq: longest,
    budget: env.memoryBudget,
    workers: env.workers,
    what,
    metric: 'ppl',
    dtype: s.dtype,
    heldBytes: 0,
  });
  return {
    model,
    stream: [],
    evalStream: [],
    context: model.spec.config.maxPositions,
    calibTokens: 0,
    calibFiles: [{ path: resolve(s.calib), sha256: calibLabelled.sha256 }],
    evalFiles: [{ path: resolve(s.eval), sha256: evalLabelled.sha256 }],
    calibLabelled,
    evalLabelled,
  };
}

/** Dense and pruned accuracy and macro-F1 on a classification run's evaluation items. */
export interface LabelledEval {
  metric: ClassificationMetric;
  accuracy: number;
  denseAccuracy: number;
  macroF1: number;
  denseMacroF1: number;
  items: number;
  data: string;
}

/**
 * Scores a candidate's masks and the dense model on the labelled evaluation items, in one session (score.ts).
 * `dense`: the dense scores taken from an earlier result instead (when `d.model` is not a dense model of its own:
 * recovered weights).
 */
export async function scoreLabelledOnEval(
  d: RunData,
  s: RunDataSettings,
  masks: CandidateMasks,
  env: RunEnv,
  dense?: { denseAccuracy: number; denseMacroF1: number },
): Promise<LabelledEval> {
  const e = d.evalLabelled;
  if (!e) throw new GenepruneError('internal', 'scoreLabelledOnEval: not a classification run');
  const { pruned, dense: unmasked } = await scoreDenseAndPruned({
    open: (spec, m) =>
      createRunner(spec, {
        output: 'class_logits',
        device: env.device,
        threads: env.threads,
        dtype: s.dtype,
        weightMasks: m?.weightMasks ? [...m.weightMasks.keys()] : undefined,
      }),
    score: (runner, m) => scoreClassification(runner, e.prepared, m ? { masks: m } : {}),
    spec: d.model.spec,
    masks,
    dense: dense ? undefined : 'same-session',
  });
  return {
    metric: labelledMetric(s.metric),
    accuracy: pruned.accuracy,
    denseAccuracy: unmasked ? unmasked.accuracy : dense!.denseAccuracy,
    macroF1: pruned.macroF1,
    denseMacroF1: unmasked ? unmasked.macroF1 : dense!.denseMacroF1,
    items: pruned.items,
    data: s.eval,
  };
}

/** The prompts of a task a run decodes: its first `items`. */
const usedPrompts = (task: RunTask, items: number) => Math.min(items, task.prepared.prompts.length);

/** How many of the prompts a run decodes are longer than the model's context (their beginning is not seen). */
function promptsCutOf(task: RunTask, items: number, maxPositions: number): number {
  return promptsBeyondContext(task.prepared.prompts.slice(0, usedPrompts(task, items)), maxPositions);
}

/** A task's record, with the count of prompts cut to the context when there are any. */
function taskRecordOf(task: RunTask, items: number, maxPositions: number) {
  const cut = promptsCutOf(task, items, maxPositions);
  return { ...taskRecord(task, usedPrompts(task, items)), ...(cut > 0 ? { promptsCut: cut } : {}) };
}

/** What a run's config.json records about its model and data (paths, identity, data hashes). */
export async function runModelAndData(s: RunDataSettings, d: RunData) {
  return {
    model: {
      path: d.model.modelPath,
      tokenizer: d.model.tokenizerPath,
      ...(await modelIdentity(d.model.spec)),
    },
    calibration: {
      path: s.calib,
      files: d.calibFiles,
      tokens: d.calibTokens,
      ...(d.calibTokensAsked !== undefined ? { tokensAsked: d.calibTokensAsked } : {}),
      context: d.context,
      ...(d.calibPairs ? { pairs: d.calibPairs.targets.length } : {}),
      // Calibration items the evaluation task also holds, left out (runs/pairs.ts).
      ...(d.calibSharedDropped ? { sharedItemsLeftOut: d.calibSharedDropped } : {}),
      ...(d.calibTask
        ? {
            task: taskRecordOf(
              d.calibTask,
              s.calibItems ?? BLEU_SEARCH_ITEMS,
              d.model.spec.config.maxPositions,
            ),
          }
        : {}),
      ...(d.calibChoices
        ? {
            choices: choicesRecord(
              d.calibChoices,
              Math.min(s.calibItems ?? Number.POSITIVE_INFINITY, d.calibChoices.prepared.task.items.length),
            ),
          }
        : {}),
      ...(d.calibLabelled
        ? {
            labelled: labelledRecord(
              d.calibLabelled,
              Math.min(s.calibItems ?? Number.POSITIVE_INFINITY, d.calibLabelled.prepared.items.length),
            ),
          }
        : {}),
    },
    evaluation: {
      path: s.eval,
      files: d.evalFiles,
      ...(d.evalChoices
        ? { choices: choicesRecord(d.evalChoices, d.evalChoices.prepared.task.items.length) }
        : {}),
      ...(d.evalLabelled
        ? { labelled: labelledRecord(d.evalLabelled, d.evalLabelled.prepared.items.length) }
        : {}),
      ...(d.evalTask
        ? {
            task: taskRecordOf(
              d.evalTask,
              s.evalItems ?? Number.POSITIVE_INFINITY,
              d.model.spec.config.maxPositions,
            ),
          }
        : {}),
    },
  };
}

/** Refuses data that changed since the run began: a file missing, added or with other bytes. */
export async function refuseChangedData(label: string, path: string, stored: unknown): Promise<boolean> {
  const recorded = (stored as { files?: unknown } | undefined)?.files;
  if (!Array.isArray(recorded) || !recorded.every((f) => typeof f?.sha256 === 'string')) return false;
  const now = await identify((await readDataset(path)).files);
  const before = new Map((recorded as DataFileIdentity[]).map((f) => [f.path, f.sha256]));
  const after = new Map(now.map((f) => [f.path, f.sha256]));
  const why = 'since the run began (config.json records its sha256); resume needs the same data';
  for (const [f, hash] of before) {
    if (!after.has(f)) throw fileError(f, `${label} file is missing ${why}`);
    if (after.get(f) !== hash) throw fileError(f, `${label} file changed ${why}`);
  }
  for (const f of after.keys()) {
    if (!before.has(f)) throw fileError(f, `${label} file was added ${why}`);
  }
  return true;
}

/**
 * Scores a candidate's masks (and, unless `dense: false`, the dense model) on the evaluation data, in one session
 * (score.ts).
 */
export async function scoreOnEval(
  d: RunData,
  s: RunDataSettings,
  masks: CandidateMasks,
  env: RunEnv,
  opts: { dense?: boolean } = {},
) {
  const windows = d.evalPairs
    ? pairWindows(d.evalPairs, s.evalTokens, s.eval)
    : makeWindows(d.evalStream, d.context, s.evalTokens, s.eval);
  const batchSize = s.batchSize ?? defaultBatchSize(windows.context, d.model.spec.config.vocabSize);
  // dense: false when `d.model` is not a dense model of its own (recovered weights): NaN then.
  const { pruned, dense } = await scoreDenseAndPruned({
    open: (spec, m) =>
      createRunner(spec, {
        output: 'nll',
        device: env.device,
        threads: env.threads,
        dtype: s.dtype,
        weightMasks: m?.weightMasks ? [...m.weightMasks.keys()] : undefined,
      }),
    score: (runner, m) => evaluatePerplexity(runner, windows, m ? { masks: m, batchSize } : { batchSize }),
    spec: d.model.spec,
    masks,
    dense: opts.dense === false ? undefined : 'same-session',
  });
  return {
    perplexity: pruned.perplexity,
    densePerplexity: dense ? dense.perplexity : Number.NaN,
    tokens: pruned.tokens,
    data: s.eval,
  };
}

/**
 * The calibration batches recovery reads: the first `tokens` tokens of `stream` in windows of `context`, in
 * batches of `batchSize` windows (default: about 2048 tokens). Runs and `export --recover` cut them alike, so
 * the same data and settings give the same recovered weights.
 */
export function recoveryBatches(
  stream: ArrayLike<number>,
  opts: { context: number; tokens: number; label: string; vocabSize: number; batchSize?: number },
): TokenBatch[] {
  const windows = makeWindows(stream, opts.context, opts.tokens, opts.label);
  return [...batches(windows, opts.batchSize ?? defaultBatchSize(opts.context, opts.vocabSize))];
}
