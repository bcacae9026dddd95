/**
 * Sequence classification on the engine: labelled items (metrics/classification.ts) encoded once with the
 * model's tokenizer template ([CLS] text [SEP], or a pair), batched with right padding and an attention mask,
 * run on a 'class_logits' runner under a candidate's masks, and scored by accuracy and macro-F1 of the logits'
 * argmax.
 *
 * Inputs longer than the model's positions are truncated (longest text first for pairs, the special tokens
 * kept) and counted, so callers warn once; the encoded items are what every candidate sees.
 */
import type { CandidateMasks, ModelRunner, TokenBatch } from '../engine/runner.js';
import { dataError, fileError } from '../errors.js';
import type { ModelSpec } from '../model/spec.js';
import type { Tokenizer } from '../tokenizer/types.js';
import { maxOf } from '../util/arrays.js';
import { accuracy, argmaxRows, type ClassificationData, macroF1 } from './classification.js';

export interface EncodedItem {
  ids: number[];
  typeIds: number[];
  label: number;
}

export interface PreparedClassification {
  data: ClassificationData;
  items: EncodedItem[];
  /** Items cut to the model's positions. */
  truncated: number;
  /** The longest encoded item (tokens). */
  maxLength: number;
  padId: number;
}

/** Encodes every item once (truncating to `maxPositions`), checking the model can classify them. */
export function prepareClassification(
  data: ClassificationData,
  tokenizer: Tokenizer,
  spec: ModelSpec,
): PreparedClassification {
  const c = spec.config;
  if (!c.classifier) {
    throw dataError(
      spec.source,
      'the model has no sequence-classification head (config.json architectures *ForSequenceClassification)',
    );
  }
  if (c.classifier.labels.length !== data.labels.length) {
    throw fileError(
      data.source,
      `read with ${data.labels.length} labels, the model has ${c.classifier.labels.length}`,
    );
  }
  let truncated = 0;
  let maxLength = 0;
  const items = data.items.map((it) => {
    const input = tokenizer.encodeInput(it.text, {
      ...(it.textPair !== undefined ? { pair: it.textPair } : {}),
      maxLength: c.maxPositions,
    });
    if (input.truncated) truncated++;
    if (input.ids.length === 0)
      throw fileError(data.source, `line ${it.line}: the text encodes to no tokens`);
    maxLength = Math.max(maxLength, input.ids.length);
    return { ids: input.ids, typeIds: input.typeIds, label: it.label };
  });
  return { data, items, truncated, maxLength, padId: tokenizer.padId ?? c.padTokenId ?? 0 };
}

/** The first `n` items of a prepared set (a search's calibration items). */
export function sliceClassification(p: PreparedClassification, n: number): PreparedClassification {
  if (n >= p.items.length) return p;
  const items = p.items.slice(0, n);
  return { ...p, items, maxLength: maxOf(items.map((i) => i.ids.length)) };
}

/** Tokens per batch the classifier runs at most (rows × padded length), unless a batch size is given. */
const BATCH_TOKENS = 4096;

/**
 * Batches of item indices, longest first, right-padded to each batch's longest row: attentionMask and `valid` are 1
 * on real tokens (so captured activation statistics skip padding), typeIds the items' segment ids.
 */
export function* classificationBatches(
  p: PreparedClassification,
  batchSize?: number,
): Generator<{ rows: number[]; batch: TokenBatch }> {
  const order = p.items
    .map((_, i) => i)
    .sort((a, b) => p.items[b].ids.length - p.items[a].ids.length || a - b);
  let at = 0;
  while (at < order.length) {
    const seq = p.items[order[at]].ids.length;
    const n = batchSize ?? Math.max(1, Math.floor(BATCH_TOKENS / seq));
    const rows = order.slice(at, at + n);
    at += rows.length;
    const ids = new BigInt64Array(rows.length * seq).fill(BigInt(p.padId));
    const typeIds = new BigInt64Array(rows.length * seq);
    const attentionMask = new BigInt64Array(rows.length * seq);
    const valid = new Uint8Array(rows.length * seq);
    rows.forEach((r, b) => {
      const item = p.items[r];
      item.ids.forEach((id, t) => {
        ids[b * seq + t] = BigInt(id);
        typeIds[b * seq + t] = BigInt(item.typeIds[t] ?? 0);
        attentionMask[b * seq + t] = 1n;
        valid[b * seq + t] = 1;
      });
    });
    yield { rows, batch: { batch: rows.length, seq, ids, typeIds, attentionMask, valid } };
  }
}

export interface ClassificationScore {
  /** Predicted label index per item (in item order); null when some logit was not finite. */
  predictions: Int32Array | null;
  labels: Int32Array;
  accuracy: number;
  macroF1: number;
  items: number;
  forwards: number;
}

/** Runs every item under `masks` and scores the argmax against the labels. */
export async function scoreClassification(
  runner: ModelRunner,
  p: PreparedClassification,
  opts: { masks?: CandidateMasks; batchSize?: number } = {},
): Promise<ClassificationScore> {
  const width = p.data.labels.length;
  const predictions = new Int32Array(p.items.length);
  const labels = Int32Array.from(p.items.map((i) => i.label));
  let forwards = 0;
  let finite = true;
  for (const { rows, batch } of classificationBatches(p, opts.batchSize)) {
    const logits = await runner.run(batch, opts.masks);
    forwards++;
    for (const v of logits) if (!Number.isFinite(v)) finite = false;
    const best = argmaxRows(logits, width);
    rows.forEach((r, b) => {
      predictions[r] = best[b];
    });
  }
  if (!finite)
    return {
      predictions: null,
      labels,
      accuracy: Number.NaN,
      macroF1: Number.NaN,
      items: labels.length,
      forwards,
    };
  return {
    predictions,
    labels,
    accuracy: accuracy(predictions, labels),
    macroF1: macroF1(predictions, labels),
    items: labels.length,
    forwards,
  };
}
