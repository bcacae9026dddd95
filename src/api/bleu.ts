/**
 * `evaluateBleu`: a model (masked or not) on a generation task — greedy continuations of every prompt, scored
 * from those same continuations on every generation metric: BLEU against the references (metrics/bleu.ts, both
 * kinds), exact match (metrics/exactmatch.ts) and, when `exec` allows running code, pass@1 against each item's
 * tests (metrics/codeexec.ts). See metrics/generation.ts for the file format and the prompt template.
 */
import { archOf } from '../arch/registry.js';
import { createRunner } from '../engine/runner.js';
import type { BleuKind, BleuScore } from '../metrics/bleu.js';
import { type CodeExecOptions, type ExecResult, refuseUnlessAllowed } from '../metrics/codeexec.js';
import {
  codeProblemsOf,
  DEFAULT_PROMPT_TEMPLATE,
  GENERATION_BATCH_SIZE,
  GENERATION_MAX_NEW_TOKENS,
  type GenerationTask,
  prepareGenerationTask,
  promptsBeyondContext,
  promptsCutNote,
  readGenerationTask,
  scoreGeneration,
} from '../metrics/generation.js';
import { type ModelInput, openModelInput, type RuntimeOptions } from './common.js';
import { type HeadMaskChoice, headListText, resolveMasks, type WeightMaskChoice } from './masks.js';

export interface EvaluateBleuOptions extends RuntimeOptions, HeadMaskChoice, WeightMaskChoice {
  model?: ModelInput;
  tokenizer?: string;
  /** A task file (JSONL `{prompt, reference}` or MBPP `{text, code}`), or a task already read. */
  task: string | GenerationTask;
  /** New tokens per prompt at most (default 64). */
  maxNewTokens?: number;
  /** Prompts per forward pass (default 16). */
  batchSize?: number;
  /** Which BLEU `bleu` reports (default 'corpus': sacreBLEU's; 'sentence-mean': the GenePrune code's). */
  bleu?: BleuKind;
  /** The text each prompt is built from, `{text}` standing for the item's prompt (default `{text}`). */
  promptTemplate?: string;
  /**
   * Also score pass@1 by running each greedy program against its item's tests (refused unless
   * `allowCodeExecution` is true; every item needs tests). Undefined: no code runs.
   */
  exec?: CodeExecOptions;
  /** With `exec`: hears each program as it ends. */
  onExec?: (index: number, result: ExecResult) => void;
  /** Called after every forward pass with the rows it decoded. */
  onStep?: (rows: number) => void;
  /** Warnings (prompts longer than the model's context), one line each, before decoding starts. */
  onNote?: (line: string) => void;
}

export interface EvaluateBleuResult {
  model: string;
  task: string;
  items: number;
  /** Prompts longer than the model's context, of which decoding saw only the last maxPositions tokens. */
  promptsCut: number;
  /** The chosen BLEU, 0–100. */
  bleu: number;
  kind: BleuKind;
  /** sacreBLEU corpus BLEU, 0–100, with precisions, brevity penalty and lengths. */
  corpus: BleuScore;
  /** Mean NLTK sentence BLEU (method1, whitespace tokens), 0–100. */
  sentenceMean: number;
  /** The same on the GenePrune code's 0–1 scale (nltkMethod1MeanBleu). */
  sentenceMeanUnit: number;
  /** Share of items whose continuation equals a reference after exact match's normalisation, 0–1. */
  exactMatch: number;
  /** With `exec`: share of items whose greedy program passed its tests (0–1), and how many passed. */
  passAt1?: number;
  passed?: number;
  /** The prompt template (`{text}` unless one was given). */
  promptTemplate: string;
  /** Continuations in task order. */
  hypotheses: string[];
  newTokens: number;
  stopped: number;
  forwards: number;
  maxNewTokens: number;
  prunedHeads: string[];
  mask?: string;
  weightMask?: string;
  /** Share of the prunable weights the weight mask prunes. */
  weightSparsity?: number;
  recovered?: string;
  seconds: number;
  device: string;
}

export async function evaluateBleu(opts: EvaluateBleuOptions): Promise<EvaluateBleuResult> {
  const device = opts.device ?? 'cpu';
  const maxNewTokens = opts.maxNewTokens ?? GENERATION_MAX_NEW_TOKENS;
  const task = typeof opts.task === 'string' ? await readGenerationTask(opts.task) : opts.task;
  // Code execution refused, and a task without tests, before the model is even opened.
  if (opts.exec) {
    refuseUnlessAllowed(opts.exec);
    codeProblemsOf(task);
  }
  const template = opts.promptTemplate ?? DEFAULT_PROMPT_TEMPLATE;
  const model = await openModelInput(opts.model, opts.tokenizer);
  const weights = await resolveMasks(model.spec, opts);
  const headMask = weights.headMask;
  const seq2seq = archOf(model.spec.config).lmData === 'pairs';
  const prepared = prepareGenerationTask(task, model.tokenizer, template, seq2seq);
  const maxPositions = model.spec.config.maxPositions;
  const promptsCut = promptsBeyondContext(prepared.prompts, maxPositions);
  if (promptsCut > 0)
    opts.onNote?.(promptsCutNote(task.source, promptsCut, prepared.prompts.length, maxPositions));
  const runner = await createRunner(weights.spec, {
    output: 'row_logits',
    device,
    threads: opts.threads,
    dtype: opts.dtype,
    weightMasks: weights.roles,
  });
  try {
    const s = await scoreGeneration(runner, prepared, {
      maxNewTokens,
      batchSize: opts.batchSize ?? GENERATION_BATCH_SIZE,
      bleu: opts.bleu,
      masks: { headMask, weightMasks: weights.feeds },
      onStep: opts.onStep,
      ...(opts.exec ? { exec: opts.exec } : {}),
      ...(opts.onExec ? { onExec: opts.onExec } : {}),
    });
    return {
      model: model.modelPath,
      task: task.source,
      items: s.items,
      promptsCut,
      bleu: s.bleu,
      kind: s.kind,
      corpus: s.corpus,
      sentenceMean: s.sentenceMean,
      sentenceMeanUnit: s.sentenceMeanUnit,
      exactMatch: s.exactMatch,
      ...(s.passAt1 !== undefined ? { passAt1: s.passAt1, passed: s.passed } : {}),
      promptTemplate: template,
      hypotheses: s.hypotheses,
      newTokens: s.newTokens,
      stopped: s.stopped,
      forwards: s.forwards,
      maxNewTokens,
      prunedHeads: headListText(opts.pruneHeads ?? []),
      ...(opts.mask ? { mask: opts.mask } : {}),
      ...(opts.weightMask ? { weightMask: opts.weightMask, weightSparsity: weights.sparsity } : {}),
      ...(opts.recovered ? { recovered: opts.recovered } : {}),
      seconds: s.seconds,
      device,
    };
  } finally {
    await runner.release();
  }
}
