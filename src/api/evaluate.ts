/**
 * `evaluate`: perplexity (and optionally KL to the unpruned model) of a model, masked or not, on text data — or,
 * for an encoder-decoder, the perplexity of each task item's reference target given its source.
 */

import { archOf } from '../arch/registry.js';
import { checkMemoryBudget, evaluatedShape, peakRssBytes } from '../engine/memory.js';
import { createRunner } from '../engine/runner.js';
import { flagError } from '../errors.js';
import type { ComputeDtype } from '../graph/weights.js';
import { readDataset } from '../metrics/data.js';
import { readGenerationTask } from '../metrics/generation.js';
import {
  computeKlReference,
  defaultBatchSize,
  evaluateKl,
  evaluatePerplexity,
  makeWindows,
  tokenizeDocuments,
  tokenizePrefix,
  type Windows,
} from '../metrics/perplexity.js';
import { pairWindows, prepareSeq2seqPairs } from '../metrics/seq2seq.js';
import { type ModelInput, openModelInput, type RuntimeOptions } from './common.js';
import { type HeadMaskChoice, headListText, resolveMasks, type WeightMaskChoice } from './masks.js';

export interface EvaluateOptions extends RuntimeOptions, HeadMaskChoice, WeightMaskChoice {
  model?: ModelInput;
  /** Tokenizer file (default: found beside the model). */
  tokenizer?: string;
  /** A text file, a folder of .txt/.jsonl files, or JSONL with a `text` field. */
  data: string;
  /**
   * Context length per window (default: the context the mask's run scored it at when a mask file came from a
   * run, so the run's perplexity is reproduced; else the model's).
   */
  context?: number;
  /** Score at most this many predicted tokens. */
  maxTokens?: number;
  /** Windows per forward pass (default: about 2048 tokens). */
  batchSize?: number;
  /** Encoder-decoders: the prompt template an item's source is built with (default `{text}`). */
  promptTemplate?: string;
  /** Also compute the mean KL divergence from the unpruned model. */
  kl?: boolean;
  onProgress?: (done: number, total: number) => void;
  /** Things the user should know, e.g. that the context was taken from the mask's run. */
  onNote?: (line: string) => void;
}

export interface EvaluateResult {
  model: string;
  tokenizer: string;
  data: string;
  documents: number;
  context: number;
  /** Where `context` came from: given, the mask file's run, or the model's own. */
  contextFrom: 'given' | 'run' | 'model';
  prunedHeads: string[];
  mask?: string;
  weightMask?: string;
  /** Share of the prunable weights the weight mask prunes. */
  weightSparsity?: number;
  /** The recovered weights used with the weight mask. */
  recovered?: string;
  /**
   * What was scored: 'windows' of a token stream (decoders: `documents` documents, windows of `context`), or
   * 'pairs' (encoder-decoders: `documents` task items, each reference target given its source; `context` is the
   * longest row).
   */
  scored: 'windows' | 'pairs';
  /** Predicted tokens scored. */
  tokens: number;
  meanNll: number;
  perplexity: number;
  /** Mean KL(unpruned ‖ masked) in nats per token, when asked for. */
  meanKl?: number;
  seconds: number;
  tokensPerSecond: number;
  device: string;
  /** Compute precision used. */
  dtype: ComputeDtype;
  /** Peak resident memory of the process by the end of the evaluation. */
  peakRssBytes: number;
}

/**
 * Protocol (llama2.c's validation loss): each document is BOS + tokens, documents are concatenated, window i
 * covers tokens [i·ctx, i·ctx + ctx], and the mean NLL is over every predicted token.
 */
export async function evaluate(opts: EvaluateOptions): Promise<EvaluateResult> {
  const device = opts.device ?? 'cpu';
  const model = await openModelInput(opts.model, opts.tokenizer);
  const { config } = model.spec;
  // Masks first: a bad mask or flag is reported before the data is read (and a run's mask says its ctx).
  const weights = await resolveMasks(model.spec, opts);
  const fromRun = opts.context === undefined ? weights.runContext : undefined;
  const context = opts.context ?? fromRun?.context ?? config.maxPositions;
  if (context > config.maxPositions) {
    throw flagError('--ctx', `${context} exceeds the model's context length ${config.maxPositions}`);
  }
  // Said only when it changes the number: the model's own context needs no note.
  if (fromRun && context !== config.maxPositions) {
    opts.onNote?.(
      `context ${context}, as the run that wrote ${fromRun.file} scored it (give --ctx to choose another)`,
    );
  }
  const batchSize = opts.batchSize ?? defaultBatchSize(context, config.vocabSize);
  const dtype = opts.dtype ?? 'fp32';
  const headMask = weights.headMask;
  const masks = { headMask, weightMasks: weights.feeds };
  const maxTokens = opts.maxTokens;
  let windows: Windows;
  let documents: number;
  if (archOf(config).lmData === 'pairs') {
    // An encoder-decoder: the data is a task file, scored as each item's reference target given its source.
    if (opts.context !== undefined) {
      throw flagError(
        '--ctx',
        `not for an encoder-decoder: it scores whole source/target pairs of ${opts.data}`,
      );
    }
    const task = await readGenerationTask(opts.data);
    const pairs = prepareSeq2seqPairs(task, model.tokenizer, config, opts.promptTemplate);
    windows = pairWindows(pairs, maxTokens, opts.data);
    documents = windows.rows.length;
  } else {
    if (opts.promptTemplate !== undefined) {
      throw flagError(
        '--prompt-template',
        'only with --task (a generation task), or --data of an encoder-decoder (a task file)',
      );
    }
    // With maxTokens only the first maxTokens + 1 tokens are read and tokenized, however large the data.
    const data =
      maxTokens === undefined
        ? await readDataset(opts.data).then((d) => ({
            documents: d.documents.length,
            tokens: tokenizeDocuments(d.documents, model.tokenizer),
          }))
        : await tokenizePrefix(opts.data, model.tokenizer, maxTokens + 1);
    windows = makeWindows(data.tokens, context, maxTokens, opts.data);
    documents = data.documents;
  }
  // Sized by the windows actually scored, not the model's context: a 256-token evaluation of a model whose
  // config allows 32768 positions needs 256-token attention, not 32768² (it was refused as 96.6 GiB).
  checkMemoryBudget(model.spec, {
    ...evaluatedShape(windows, batchSize),
    budget: opts.memoryBudget,
    what: 'eval',
    dtype,
  });
  // Every row is at most the windows' context: a sliding window that long keeps the fused attention kernel.
  const runtime = {
    device,
    threads: opts.threads,
    dtype,
    weightMasks: weights.roles,
    maxSeq: windows.context,
  };
  const runner = await createRunner(weights.spec, { output: 'nll', ...runtime });
  let result: Awaited<ReturnType<typeof evaluatePerplexity>>;
  try {
    result = await evaluatePerplexity(runner, windows, {
      masks,
      batchSize,
      onProgress: (p) => opts.onProgress?.(p.done, p.total),
    });
  } finally {
    await runner.release();
  }
  let meanKl: number | undefined;
  if (opts.kl) {
    if (archOf(config).lmData === 'pairs') {
      throw flagError('--kl', 'not for an encoder-decoder yet: its graphs have no log-probability outputs');
    }
    // The unpruned model's log-probabilities once, then the masked model's KL from them.
    const dense = await createRunner(model.spec, { output: 'logprobs', ...runtime, weightMasks: undefined });
    const reference = await computeKlReference(dense, windows, batchSize).finally(() => dense.release());
    const klRunner = await createRunner(weights.spec, { output: 'kl', ...runtime });
    meanKl = (await evaluateKl(klRunner, windows, reference, { masks }).finally(() => klRunner.release()))
      .meanKl;
  }
  return {
    model: model.modelPath,
    tokenizer: model.tokenizerPath,
    data: opts.data,
    documents,
    scored: archOf(config).lmData === 'pairs' ? 'pairs' : 'windows',
    context: archOf(config).lmData === 'pairs' ? windows.context : context,
    contextFrom: opts.context !== undefined ? 'given' : fromRun ? 'run' : 'model',
    prunedHeads: headListText(opts.pruneHeads ?? []),
    ...(opts.mask ? { mask: opts.mask } : {}),
    ...(opts.weightMask ? { weightMask: opts.weightMask, weightSparsity: weights.sparsity } : {}),
    ...(opts.recovered ? { recovered: opts.recovered } : {}),
    tokens: result.tokens,
    meanNll: result.meanNll,
    perplexity: result.perplexity,
    ...(meanKl === undefined ? {} : { meanKl }),
    seconds: result.seconds,
    tokensPerSecond: result.tokensPerSecond,
    device,
    dtype,
    peakRssBytes: peakRssBytes(),
  };
}
