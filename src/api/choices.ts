/**
 * `evaluateChoices`: a model (masked or not) on a multiple-choice task — each choice scored by the log-likelihood
 * of its tokens after the context, the most likely one predicted; accuracy (acc) and per-character accuracy
 * (acc_norm). See metrics/choices.ts for the file format and the scoring rules.
 */
import { createRunner } from '../engine/runner.js';
import { type ChoiceTask, prepareChoiceTask, readChoiceTask, scoreChoices } from '../metrics/choices.js';
import { type ModelInput, openModelInput, type RuntimeOptions } from './common.js';
import { type HeadMaskChoice, headListText, resolveMasks, type WeightMaskChoice } from './masks.js';

export interface EvaluateChoicesOptions extends RuntimeOptions, HeadMaskChoice, WeightMaskChoice {
  model?: ModelInput;
  tokenizer?: string;
  /** A multiple-choice file (JSONL `{context, choices, label}`), or a task already read. */
  task: string | ChoiceTask;
  /** Rows (item × choice) per forward pass (default: about 2048 tokens). */
  batchSize?: number;
  /** Called after every forward pass with the rows scored so far and in all. */
  onProgress?: (done: number, total: number) => void;
  /** Also return each item's log-likelihoods and predictions. */
  details?: boolean;
}

export interface EvaluateChoicesResult {
  model: string;
  task: string;
  items: number;
  /** Share of items whose most likely choice (summed log-likelihood) is the label, 0–1. */
  accuracy: number;
  /** The same by log-likelihood per character of the choice (acc_norm), 0–1. */
  accuracyNorm: number;
  /** Rows cut on the left to fit the model's context. */
  truncated: number;
  forwards: number;
  /** With `details`: per item, per choice, the summed log-likelihood, and the predictions. */
  logLikelihoods?: number[][];
  predictions?: number[];
  predictionsNorm?: number[];
  prunedHeads: string[];
  mask?: string;
  weightMask?: string;
  /** Share of the prunable weights the weight mask prunes. */
  weightSparsity?: number;
  recovered?: string;
  seconds: number;
  device: string;
}

export async function evaluateChoices(opts: EvaluateChoicesOptions): Promise<EvaluateChoicesResult> {
  const device = opts.device ?? 'cpu';
  const task = typeof opts.task === 'string' ? await readChoiceTask(opts.task) : opts.task;
  const model = await openModelInput(opts.model, opts.tokenizer);
  const weights = await resolveMasks(model.spec, opts);
  const prepared = prepareChoiceTask(task, model.tokenizer, model.spec.config.maxPositions);
  const runner = await createRunner(weights.spec, {
    output: 'nll',
    device,
    threads: opts.threads,
    dtype: opts.dtype,
    weightMasks: weights.roles,
  });
  try {
    const s = await scoreChoices(runner, prepared, {
      masks: { headMask: weights.headMask, weightMasks: weights.feeds },
      batchSize: opts.batchSize,
      onProgress: opts.onProgress,
    });
    return {
      model: model.modelPath,
      task: task.source,
      items: s.items,
      accuracy: s.accuracy,
      accuracyNorm: s.accuracyNorm,
      truncated: s.truncated,
      forwards: s.forwards,
      ...(opts.details
        ? {
            logLikelihoods: s.logLikelihoods,
            predictions: s.predictions,
            predictionsNorm: s.predictionsNorm,
          }
        : {}),
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
