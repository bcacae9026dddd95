/**
 * The generation tasks of a run: the *calibration* task a `--metric bleu` search scores candidates on, and the
 * *evaluation* task (`--eval-task`) its report quotes BLEU on. Like the calibration and evaluation text, they are
 * kept apart: never the same file, never a shared prompt.
 *
 * - Calibration task: `--calib-task FILE` (JSONL `{prompt, reference}` or MBPP `{text, code}`), or else the
 *   TinyStories continuation task built from the `--calib` pages (metrics/storytask.ts: pages whose documents are
 *   separated by `<|endoftext|>` lines). A search scores its first `--calib-items` items (default 32).
 * - Evaluation task: `--eval-task FILE`, or `--eval-task auto` for the continuation task built from the `--eval`
 *   pages; every item is scored unless `--eval-items` says fewer.
 *
 * Both are read with the run's `--prompt-template` (default `{text}`), and scored on every generation metric from
 * the same generations: BLEU (both kinds), exact match and, with `--allow-code-execution`, pass@1 (the items then
 * need their tests). A `--metric pass@1` run is refused without `--allow-code-execution`, or on a task without
 * tests, before anything is decoded.
 */

import { type CandidateMasks, createRunner } from '../engine/runner.js';
import type { Device } from '../engine/session.js';
import { fileError, flagError, GenepruneError } from '../errors.js';
import type { ComputeDtype } from '../graph/weights.js';
import { BLEU_KINDS, type BleuKind } from '../metrics/bleu.js';
import { type CodeExecOptions, refuseUnlessAllowed } from '../metrics/codeexec.js';
import {
  checkPromptTemplate,
  codeProblemsOf,
  DEFAULT_PROMPT_TEMPLATE,
  GENERATION_BATCH_SIZE,
  GENERATION_MAX_NEW_TOKENS,
  type GenerationTask,
  type PreparedGenerationTask,
  prepareGenerationTask,
  readGenerationTask,
  scoreGeneration,
  slicePreparedTask,
} from '../metrics/generation.js';
import { findMetric, metricNames, metricsScoredOn, orList } from '../metrics/registry.js';
import { buildContinuationTask } from '../metrics/storytask.js';
import type { ModelSpec } from '../model/spec.js';
import type { BleuObjectiveOptions, QualityMetric } from '../search/objective.js';
import { BLEU_SEARCH_ITEMS, BLEU_SEARCH_NEW_TOKENS } from '../search/objective.js';
import type { Tokenizer } from '../tokenizer/types.js';
import { realPathOf, sha256File } from '../util/fs.js';
import { scoreDenseAndPruned } from './score.js';

/** `--eval-task auto`: the continuation task built from the evaluation pages. */
export const AUTO_TASK = 'auto';

/** The task settings every run has (heads and weights alike). */
export interface RunTaskSettings {
  calib: string;
  eval: string;
  metric?: QualityMetric;
  /** `--metric bleu`: the calibration task file (default: built from the calibration pages). */
  calibTask?: string;
  /** `--metric bleu`: calibration items a full evaluation scores (default 32). */
  calibItems?: number;
  /** `--metric bleu`: calibration items a low-fidelity evaluation scores (default: all of calibItems). */
  lowItems?: number;
  /** `--metric bleu`: new tokens per calibration prompt (default 32). */
  calibNewTokens?: number;
  /** `--metric bleu`: which BLEU is the search's quality (default corpus, sacreBLEU's; sentence-mean: the GenePrune code's). */
  bleu?: BleuKind;
  /** Report BLEU on this task: a JSONL file, or 'auto' (the continuation task of the evaluation pages). */
  evalTask?: string;
  /** Evaluation task items scored (default: all). */
  evalItems?: number;
  /** New tokens per evaluation prompt (default 64, evaluateBleu's). */
  evalNewTokens?: number;
  /** The text each prompt is built from, `{text}` standing for the item's prompt (default `{text}`). */
  promptTemplate?: string;
  /** Run the generated code (pass@1: `--metric pass@1`, and pass@1 on the evaluation task). */
  allowCodeExecution?: boolean;
  /** Programs run at once (default metrics/codeexec.ts's). */
  execWorkers?: number;
}

/**
 * The code-execution options of a run, or undefined when it does not allow running code; `--exec-workers` without
 * `--allow-code-execution` is refused (it would do nothing), as are bad values of both (one line).
 */
export function runExecOptions(s: RunTaskSettings): CodeExecOptions | undefined {
  if (s.allowCodeExecution !== undefined && typeof s.allowCodeExecution !== 'boolean')
    throw flagError('--allow-code-execution', `takes no value, got ${String(s.allowCodeExecution)}`);
  if (s.execWorkers !== undefined) {
    if (!(Number.isSafeInteger(s.execWorkers) && s.execWorkers >= 1))
      throw flagError('--exec-workers', `must be a whole number ≥ 1, not ${s.execWorkers}`);
    if (s.allowCodeExecution !== true)
      throw flagError(
        '--exec-workers',
        'only with --allow-code-execution (it sizes the pool running generated code)',
      );
  }
  if (s.allowCodeExecution !== true) return undefined;
  return { allowCodeExecution: true, ...(s.execWorkers !== undefined ? { workers: s.execWorkers } : {}) };
}

/** The run's prompt template, checked (one line naming --prompt-template). */
function templateOf(s: RunTaskSettings): string {
  const t = s.promptTemplate ?? DEFAULT_PROMPT_TEMPLATE;
  if (typeof t !== 'string') throw flagError('--prompt-template', 'must be a text');
  checkPromptTemplate(t);
  return t;
}

/** A run's generation task, prompts encoded, with where it came from. */
export interface RunTask {
  prepared: PreparedGenerationTask;
  /** 'file': a task file; 'pages': built from the text pages named by `source`. */
  from: 'file' | 'pages';
  /** The file, or the pages it was built from. */
  source: string;
  /** sha256 of the task file (files only). */
  sha256?: string;
}

/**
 * The calibration task of a run whose metric is scored on a generation task (its registry entry's data kind
 * 'task': `--metric bleu`; undefined for other metrics), refused in one line if unusable.
 */
export async function calibrationTask(
  s: RunTaskSettings,
  tokenizer: Tokenizer,
): Promise<RunTask | undefined> {
  const entry = findMetric(s.metric ?? 'ppl');
  const kind = entry?.data;
  const template = templateOf(s);
  const exec = runExecOptions(s);
  if (entry?.executesCode) refuseUnlessAllowed({ allowCodeExecution: exec !== undefined });
  if (kind !== 'task') {
    for (const [key, flag] of [
      ['calibTask', '--calib-task'],
      ['calibItems', '--calib-items'],
      ['lowItems', '--low-items'],
      ['calibNewTokens', '--calib-new-tokens'],
      ['bleu', '--bleu'],
    ] as const) {
      // Item counts also size a multiple-choice calibration task (runs/choices.ts).
      if ((kind === 'choices' || kind === 'labels') && (key === 'calibItems' || key === 'lowItems')) continue;
      if (s[key] !== undefined)
        throw flagError(
          flag,
          key === 'calibItems' || key === 'lowItems'
            ? `only with --metric ${orList(metricsScoredOn(['task', 'choices', 'labels']))} (calibration items)`
            : `only with --metric ${orList(metricsScoredOn(['task']))} (a calibration generation task)`,
        );
    }
    return undefined;
  }
  if (s.bleu !== undefined && !BLEU_KINDS.includes(s.bleu)) {
    throw flagError('--bleu', `"${s.bleu}" is not one of ${BLEU_KINDS.join(', ')}`);
  }
  if (s.calibTask !== undefined) {
    if (s.calibTask === AUTO_TASK) {
      throw flagError(
        '--calib-task',
        'takes a task file; leave it out to build the task from the --calib pages',
      );
    }
    const task = await readGenerationTask(s.calibTask);
    if (entry?.executesCode) codeProblemsOf(task);
    return {
      prepared: prepareGenerationTask(task, tokenizer, template),
      from: 'file',
      source: s.calibTask,
      sha256: await sha256File(s.calibTask),
    };
  }
  let task: GenerationTask;
  try {
    task = await buildContinuationTask(s.calib);
  } catch (e) {
    if (e instanceof GenepruneError && e.kind === 'data') {
      throw flagError(
        '--calib-task',
        `--metric ${s.metric} needs a calibration generation task: give --calib-task FILE (JSONL {"prompt", "reference"} per line); ${s.calib} holds no TinyStories story openings to build one from`,
      );
    }
    throw e;
  }
  if (entry?.executesCode) codeProblemsOf(task);
  return { prepared: prepareGenerationTask(task, tokenizer, template), from: 'pages', source: s.calib };
}

/** The evaluation task (`--eval-task`), or undefined when BLEU is not reported. */
export async function evaluationTask(s: RunTaskSettings, tokenizer: Tokenizer): Promise<RunTask | undefined> {
  const template = templateOf(s);
  // With code execution allowed, pass@1 is reported on the evaluation task too: its items need their tests.
  const exec = runExecOptions(s);
  if (s.evalTask === undefined) {
    for (const [key, flag] of [
      ['evalItems', '--eval-items'],
      ['evalNewTokens', '--eval-new-tokens'],
    ] as const) {
      if (s[key] !== undefined) throw flagError(flag, 'only with --eval-task (FILE or auto)');
    }
    // Without an evaluation task, the template and code execution serve only the calibration task's metric.
    const entry = findMetric(s.metric ?? 'ppl');
    if (s.promptTemplate !== undefined && entry?.data !== 'task') {
      throw flagError(
        '--prompt-template',
        `only with a generation task: --metric ${orList(metricsScoredOn(['task']))}, or --eval-task`,
      );
    }
    if (exec && !entry?.executesCode) {
      const runs = metricNames().filter((m) => findMetric(m)?.executesCode);
      throw flagError(
        '--allow-code-execution',
        `nothing would run: only with --metric ${orList(runs)}, or --eval-task (pass@1 reported on it)`,
      );
    }
    return undefined;
  }
  if (s.evalTask === AUTO_TASK) {
    let task: GenerationTask;
    try {
      task = await buildContinuationTask(s.eval);
    } catch (e) {
      if (e instanceof GenepruneError && e.kind === 'data') {
        throw flagError(
          '--eval-task',
          `auto builds story continuations from the --eval pages, and ${s.eval} holds no TinyStories story openings; give --eval-task FILE`,
        );
      }
      throw e;
    }
    if (exec) codeProblemsOf(task);
    return { prepared: prepareGenerationTask(task, tokenizer, template), from: 'pages', source: s.eval };
  }
  const task = await readGenerationTask(s.evalTask);
  if (exec) codeProblemsOf(task);
  return {
    prepared: prepareGenerationTask(task, tokenizer, template),
    from: 'file',
    source: s.evalTask,
    sha256: await sha256File(s.evalTask),
  };
}

/**
 * Refuses an evaluation task that is the calibration task's file or shares an item (the same prompt with the
 * same references) with it. A shared prompt alone is allowed: TinyStories has different stories with the same
 * opening (calib and eval pages share two).
 */
export async function refuseTaskOverlap(
  calib: RunTask | undefined,
  evalTask: RunTask | undefined,
): Promise<void> {
  if (!calib || !evalTask) return;
  if (calib.from === 'file' && evalTask.from === 'file') {
    if ((await realPathOf(calib.source)) === (await realPathOf(evalTask.source))) {
      throw flagError(
        '--eval-task',
        `${evalTask.source} is also the calibration task: reports must quote unseen items`,
      );
    }
  }
  const itemKey = (it: { prompt: string; references: string[] }) =>
    JSON.stringify([it.prompt, it.references]);
  const seen = new Set(calib.prepared.task.items.map(itemKey));
  const shared = evalTask.prepared.task.items.findIndex((it) => seen.has(itemKey(it)));
  if (shared >= 0) {
    throw fileError(
      evalTask.source,
      `evaluation task item ${shared + 1} is also in the calibration task (${calib.source}): reports must quote unseen items`,
    );
  }
}

/**
 * What config.json and result.json record about a task; the prompt template only when it is not the default
 * `{text}` (so the records of runs made before templates existed read as they did).
 */
export function taskRecord(t: RunTask, items: number) {
  return {
    from: t.from,
    source: t.source,
    ...(t.sha256 ? { sha256: t.sha256 } : {}),
    items,
    taskItems: t.prepared.task.items.length,
    ...(t.prepared.template !== DEFAULT_PROMPT_TEMPLATE ? { promptTemplate: t.prepared.template } : {}),
  };
}

/** The objective options of a run whose metric is a generation metric (bleu, exact-match, pass@1). */
export function bleuObjectiveOptions(
  s: RunTaskSettings,
  calib: RunTask | undefined,
): BleuObjectiveOptions | undefined {
  if (!calib) return undefined;
  return {
    task: calib.prepared,
    items: s.calibItems ?? BLEU_SEARCH_ITEMS,
    ...(s.lowItems !== undefined ? { lowItems: s.lowItems } : {}),
    maxNewTokens: s.calibNewTokens ?? BLEU_SEARCH_NEW_TOKENS,
    kind: s.bleu ?? 'corpus',
    ...(findMetric(s.metric)?.executesCode ? { exec: runExecOptions(s) } : {}),
  };
}

/** Dense and pruned BLEU on the evaluation task, as result.json records them. */
export interface EvalBleu {
  /** 'file' or 'pages' (`--eval-task auto`), and the file or pages. */
  from: 'file' | 'pages';
  task: string;
  items: number;
  maxNewTokens: number;
  /** sacreBLEU corpus BLEU, 0–100. */
  corpus: number;
  denseCorpus: number;
  /** Mean NLTK sentence BLEU (the GenePrune code's), 0–100. */
  sentenceMean: number;
  denseSentenceMean: number;
  brevityPenalty: number;
  denseBrevityPenalty: number;
  /** Share of items generated exactly as a reference (metrics/exactmatch.ts), 0–1. */
  exactMatch: number;
  denseExactMatch: number;
  /** With --allow-code-execution: the share of items whose greedy program passes its tests, 0–1. */
  passAt1?: number;
  densePassAt1?: number;
  forwards: number;
  seconds: number;
}

/**
 * BLEU of the dense model (`denseSpec`) and of the candidate (`spec` — the same model, or its recovered weights —
 * under `masks`) on the evaluation task, each in a session of its own (score.ts). `dense`: the dense model's scores from an
 * earlier call on the same task (a recovered model is scored after its masked self), not generated again.
 */
export async function scoreBleuOnEval(
  task: RunTask,
  s: RunTaskSettings & { dtype?: ComputeDtype },
  denseSpec: ModelSpec,
  spec: ModelSpec,
  masks: CandidateMasks,
  env: { device?: Device; threads?: number },
  dense?: Pick<
    EvalBleu,
    'denseCorpus' | 'denseSentenceMean' | 'denseBrevityPenalty' | 'denseExactMatch' | 'densePassAt1'
  >,
): Promise<EvalBleu> {
  const prepared = slicePreparedTask(task.prepared, s.evalItems ?? task.prepared.prompts.length);
  const maxNewTokens = s.evalNewTokens ?? GENERATION_MAX_NEW_TOKENS;
  const exec = runExecOptions(s);
  const t0 = performance.now();
  const { pruned, dense: fresh } = await scoreDenseAndPruned({
    open: (m, withMasks) =>
      createRunner(m, {
        output: 'row_logits',
        device: env.device,
        threads: env.threads,
        dtype: s.dtype,
        weightMasks: withMasks?.weightMasks ? [...withMasks.weightMasks.keys()] : undefined,
      }),
    score: (runner, withMasks) =>
      scoreGeneration(runner, prepared, {
        maxNewTokens,
        batchSize: GENERATION_BATCH_SIZE,
        masks: withMasks ?? {},
        ...(exec ? { exec } : {}),
      }),
    spec,
    masks,
    dense: dense ? undefined : { spec: denseSpec },
  });
  return {
    from: task.from,
    task: task.source,
    items: pruned.items,
    maxNewTokens,
    corpus: pruned.corpus.score,
    denseCorpus: fresh ? fresh.corpus.score : dense!.denseCorpus,
    sentenceMean: pruned.sentenceMean,
    denseSentenceMean: fresh ? fresh.sentenceMean : dense!.denseSentenceMean,
    brevityPenalty: pruned.corpus.bp,
    denseBrevityPenalty: fresh ? fresh.corpus.bp : dense!.denseBrevityPenalty,
    exactMatch: pruned.exactMatch,
    denseExactMatch: fresh ? fresh.exactMatch : dense!.denseExactMatch,
    ...(pruned.passAt1 !== undefined
      ? { passAt1: pruned.passAt1, densePassAt1: fresh ? fresh.passAt1 : dense!.densePassAt1 }
      : {}),
    forwards: pruned.forwards + (fresh?.forwards ?? 0),
    seconds: (performance.now() - t0) / 1000,
  };
}
