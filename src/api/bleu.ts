/**
 * `evaluateBleu`: a model (masked or not) on a generation task — greedy continuations of every prompt, BLEU
 * against the references (see metrics/generation.ts for the file format and metrics/bleu.ts for the two BLEUs).
 */
import { archOf } from '../arch/registry.js';
import { createRunner } from '../engine/runner.js';
import type { BleuKind, BleuScore } from '../metrics/bleu.js';
import {
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
  const model = await openModelInput(opts.model, opts.tokenizer);
  const weights = await resolveMasks(model.spec, opts);
  const headMask = weights.headMask;
  const seq2seq = archOf(model.spec.config).lmData === 'pairs';
  const prepared = prepareGenerationTask(task, model.tokenizer, seq2seq);
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
