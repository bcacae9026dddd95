/**
 * `evaluateLabels`: a sequence-classification model (masked or not) on labelled JSONL items ({text[, text_pair],
 * label}, labels by name or index through the model's id2label): accuracy and macro-F1 of the classification
 * head's argmax. Items longer than the model's positions are truncated and counted. See metrics/classify.ts.
 */
import { createRunner } from '../engine/runner.js';
import { GenepruneError } from '../errors.js';
import { readClassificationData } from '../metrics/classification.js';
import { prepareClassification, scoreClassification } from '../metrics/classify.js';
import { classifierLabels } from '../runs/labels.js';
import { type ModelInput, openModelInput, type RuntimeOptions } from './common.js';
import { type HeadMaskChoice, headListText, resolveMasks, type WeightMaskChoice } from './masks.js';

export interface EvaluateLabelsOptions extends RuntimeOptions, HeadMaskChoice, WeightMaskChoice {
  model?: ModelInput;
  tokenizer?: string;
  /** A labelled JSONL file. */
  data: string;
  /** Items per forward pass (default: about 4096 tokens). */
  batchSize?: number;
  /** Also return each item's prediction. */
  details?: boolean;
}

export interface EvaluateLabelsResult {
  model: string;
  data: string;
  items: number;
  /** The model's label names by index. */
  labels: string[];
  /** Share of items whose predicted label is the true one, 0–1. */
  accuracy: number;
  /** Mean per-class F1 over the classes among labels and predictions (scikit-learn's macro average), 0–1. */
  macroF1: number;
  /** Items cut to the model's positions. */
  truncated: number;
  forwards: number;
  predictions?: number[];
  prunedHeads: string[];
  mask?: string;
  weightMask?: string;
  weightSparsity?: number;
  recovered?: string;
  seconds: number;
  device: string;
}

export async function evaluateLabels(opts: EvaluateLabelsOptions): Promise<EvaluateLabelsResult> {
  const device = opts.device ?? 'cpu';
  const model = await openModelInput(opts.model, opts.tokenizer);
  const labels = classifierLabels(model.spec, 'accuracy');
  const data = await readClassificationData(opts.data, labels);
  const weights = await resolveMasks(model.spec, opts);
  const prepared = prepareClassification(data, model.tokenizer, model.spec);
  const t0 = performance.now();
  const runner = await createRunner(weights.spec, {
    output: 'class_logits',
    device,
    threads: opts.threads,
    dtype: opts.dtype,
    weightMasks: weights.roles,
  });
  try {
    const s = await scoreClassification(runner, prepared, {
      masks: { headMask: weights.headMask, weightMasks: weights.feeds },
      batchSize: opts.batchSize,
    });
    if (!s.predictions) {
      throw new GenepruneError(
        'model',
        'the model produced a non-finite logit: the weights or the computation overflow',
        opts.data,
      );
    }
    return {
      model: model.modelPath,
      data: opts.data,
      items: s.items,
      labels: [...labels],
      accuracy: s.accuracy,
      macroF1: s.macroF1,
      truncated: prepared.truncated,
      forwards: s.forwards,
      ...(opts.details ? { predictions: [...s.predictions] } : {}),
      prunedHeads: headListText(opts.pruneHeads ?? []),
      ...(opts.mask ? { mask: opts.mask } : {}),
      ...(opts.weightMask ? { weightMask: opts.weightMask, weightSparsity: weights.sparsity } : {}),
      ...(opts.recovered ? { recovered: opts.recovered } : {}),
      seconds: (performance.now() - t0) / 1000,
      device,
    };
  } finally {
    await runner.release();
  }
}
