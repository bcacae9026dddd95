/**
 * Source/target pairs for encoder-decoders: the language-model data of a model that reads a source and writes a
 * target (T5, CodeT5). Where a decoder-only model's perplexity is over a stream of pages, an encoder-decoder's is
 * the teacher-forced perplexity of each item's reference target given its source — the loss it was trained on
 * (`nll`/`ppl` of the reference target).
 *
 * Encoding (what T5 and CodeT5 fine-tuning feed): the source is the item's prompt (after the prompt template) as
 * one model input with the tokenizer's special-token template (CodeT5: `<s> text </s>`; T5: `text </s>`); the
 * target is the first reference without special tokens, then eos; the decoder reads the decoder start token then
 * the target shifted right. Pairs become perplexity windows (`pairWindows`: row i = start token + target, with its
 * source beside it), so every perplexity path — evaluation, search objectives, KL — runs on them unchanged.
 */
import { dataError } from '../errors.js';
import { encdecOf, type ModelConfig } from '../model/spec.js';
import type { Tokenizer } from '../tokenizer/types.js';
import {
  applyPromptTemplate,
  checkPromptTemplate,
  DEFAULT_PROMPT_TEMPLATE,
  type GenerationTask,
} from './generation.js';
import type { Windows } from './perplexity.js';

export interface Seq2seqPairs {
  /** The task file they come from. */
  source: string;
  /** Each item's source ids, special tokens included. */
  sources: number[][];
  /** Each item's target ids, eos last. */
  targets: number[][];
  decoderStart: number;
  padId: number;
}

/**
 * Encodes a task's items as pairs for a model, each source the prompt template applied to the item's prompt. An item whose source or target is longer than the model's
 * `maxPositions` is refused naming the task and item (rows that long would not run); a tokenizer without eos, or
 * a model that is not an encoder-decoder, likewise.
 */
export function prepareSeq2seqPairs(
  task: GenerationTask,
  tokenizer: Tokenizer,
  config: ModelConfig,
  template: string = DEFAULT_PROMPT_TEMPLATE,
): Seq2seqPairs {
  checkPromptTemplate(template);
  const e = encdecOf(config);
  const eos = config.eosTokenId ?? tokenizer.eosId;
  if (eos === undefined) {
    throw dataError(tokenizer.source, 'the tokenizer has no end-of-sequence token to end targets with');
  }
  const sources: number[][] = [];
  const targets: number[][] = [];
  for (const [i, item] of task.items.entries()) {
    const src = tokenizer.encodeInput(applyPromptTemplate(template, item.prompt)).ids;
    const tgt = [...tokenizer.encode(item.references[0], { bos: false, eos: false }), eos];
    for (const [what, ids] of [
      ['source', src],
      ['target', tgt],
    ] as const) {
      if (ids.length > config.maxPositions) {
        throw dataError(
          task.source,
          `item ${i + 1}: its ${what} is ${ids.length} tokens, longer than the model's ${config.maxPositions} (n_positions)`,
        );
      }
    }
    sources.push(src);
    targets.push(tgt);
  }
  if (sources.length === 0) throw dataError(task.source, 'the task has no items');
  return {
    source: task.source,
    sources,
    targets,
    decoderStart: e.decoderStartTokenId,
    padId: config.padTokenId ?? 0,
  };
}

/** Target tokens in all pairs together (what a perplexity over them predicts). */
export function pairTokens(pairs: Seq2seqPairs): number {
  let n = 0;
  for (const t of pairs.targets) n += t.length;
  return n;
}

/**
 * The pairs as perplexity windows: whole pairs in task order until their targets hold at least `maxTokens` tokens
 * (all pairs when undefined). `context` is the longest source or decoder row, so batch sizing and memory estimates
 * see the real row lengths.
 */
export function pairWindows(pairs: Seq2seqPairs, maxTokens?: number, where = pairs.source): Windows {
  const rows: Int32Array[] = [];
  const sources: Int32Array[] = [];
  let tokens = 0;
  let context = 1;
  for (let i = 0; i < pairs.targets.length; i++) {
    if (maxTokens !== undefined && tokens >= maxTokens) break;
    const t = pairs.targets[i];
    const row = new Int32Array(t.length + 1);
    row[0] = pairs.decoderStart;
    row.set(t, 1);
    rows.push(row);
    sources.push(Int32Array.from(pairs.sources[i]));
    tokens += t.length;
    context = Math.max(context, t.length, pairs.sources[i].length);
  }
  if (tokens === 0) throw dataError(where, 'no target tokens: nothing to predict');
  return { context, rows, tokens, source: where, sources, padId: pairs.padId };
}
