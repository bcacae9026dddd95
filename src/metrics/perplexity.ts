/**
 * Perplexity and KL-to-dense over fixed token windows.
 *
 * Protocol (the one llama2.c's validation loss uses): each document is encoded as BOS + tokens; documents are
 * concatenated into one stream; window i is stream[i*C .. i*C+C] (C+1 tokens, C = context length), so every
 * token after the first is predicted exactly once; the NLL is averaged over every predicted token.
 */

import { type CandidateMasks, IGNORE_INDEX, type ModelRunner, type TokenBatch } from '../engine/runner.js';
import { dataError, GenepruneError } from '../errors.js';
import { VOCAB_CHUNK } from '../graph/lmhead.js';
import type { Tokenizer } from '../tokenizer/types.js';
import { maxOf } from '../util/arrays.js';
import { type StreamStats, streamDocuments } from './data.js';

/** Token windows of up to C+1 tokens each (inputs are the first C, targets the last C). */
export interface Windows {
  context: number;
  rows: Int32Array[];
  /** Predicted tokens in all windows together. */
  tokens: number;
  /** The data the windows come from (a path, or e.g. "calibration data"), for messages. */
  source?: string;
  /**
   * Encoder-decoders (metrics/seq2seq.ts `pairWindows`): row i is the decoder's start token then the target
   * (its last token eos), predicted given the source `sources[i]` (special tokens included); batches pad sources
   * with `padId` under an attention mask.
   */
  sources?: Int32Array[];
  padId?: number;
}

export function tokenizeDocuments(documents: string[], tokenizer: Tokenizer): number[] {
  const stream: number[] = [];
  for (const doc of documents) {
    for (const id of tokenizer.encode(doc, { bos: true })) stream.push(id);
  }
  return stream;
}

export interface TokenPrefix {
  /** The first `count` tokens of tokenizeDocuments(readDataset(path).documents) (fewer when the data ends). */
  tokens: number[];
  /** Documents that contributed tokens (the last one possibly in part). */
  documents: number;
  /** Files opened, in order, and bytes read from them. */
  files: string[];
  bytesRead: number;
}

export interface TokenPrefixOptions {
  /** Bytes per file read (default 64 KiB). */
  chunkBytes?: number;
  /** A document longer than this (UTF-16 units) is tokenized in pieces of about this size (default 16 Ki). */
  pieceChars?: number;
}

/** Any word works: it only gives the continuation piece a left neighbour that is not whitespace. */
const ANCHOR = 'a';

/**
 * The first `count` tokens of a data path, reading and tokenizing only as much as they need (eval
 * --max-tokens on a 30 MB file reads a few hundred KB). The result equals the prefix of tokenizing every
 * document whole, because:
 * - documents arrive in readDataset's order and are encoded as BOS + tokens, trimmed, empty ones skipped;
 * - a long document is cut just before a space that follows a non-space character. SentencePiece-style
 *   tokenizers (llama2.c's tokenizer.bin and the tokenizer.json made from it, Hugging Face LLaMA tokenizers)
 *   and GPT-2-style pre-tokenizers never put such a space inside a token (a space only starts a piece), so no
 *   merge crosses the cut and each side tokenizes on its own. A piece after a cut is encoded behind an
 *   anchor word ("a" + piece, the anchor's tokens dropped) so it gets no dummy-prefix space of its own.
 *   test/metrics/prefix.test.ts checks the claim on the real tokenizers and data.
 * A document with no such space (one endless word) cannot be cut and is held whole until it ends or the
 * count is reached.
 */
export async function tokenizePrefix(
  path: string,
  tokenizer: Tokenizer,
  count: number,
  opts: TokenPrefixOptions = {},
): Promise<TokenPrefix> {
  const pieceChars = opts.pieceChars ?? 16 * 1024;
  const anchorTokens = tokenizer.encode(ANCHOR, { bos: false, eos: false }).length;
  const stats: StreamStats = { bytesRead: 0, files: [] };
  const tokens: number[] = [];
  let documents = 0;
  let pending = ''; // text of the current document not yet tokenized
  let started = false; // the current document has had non-whitespace text
  let first = true; // the next piece is the document's first (BOS, dummy prefix)

  const emit = (piece: string): void => {
    const ids = first
      ? tokenizer.encode(piece, { bos: true, eos: false })
      : tokenizer.encode(ANCHOR + piece, { bos: false, eos: false }).slice(anchorTokens);
    if (first) documents++;
    first = false;
    for (const id of ids) {
      if (tokens.length === count) return;
      tokens.push(id);
    }
  };
  /** The last place `pending` may be cut: before a space whose left neighbour is not whitespace. */
  const cutPoint = (): number => {
    for (let p = pending.lastIndexOf(' '); p > 0; p = pending.lastIndexOf(' ', p - 1)) {
      if (!/\s/.test(pending[p - 1])) return p;
    }
    return -1;
  };

  const stream = streamDocuments(path, { chunkBytes: opts.chunkBytes, stats });
  for await (const event of stream) {
    if (tokens.length >= count) break;
    if (event.kind === 'end') {
      pending = pending.trimEnd();
      if (pending) emit(pending);
      pending = '';
      started = false;
      first = true;
      continue;
    }
    pending += event.text;
    if (!started) {
      pending = pending.trimStart();
      started = pending.length > 0;
    }
    while (pending.length > pieceChars) {
      const cut = cutPoint();
      if (cut < 0) break;
      emit(pending.slice(0, cut));
      pending = pending.slice(cut);
      if (tokens.length >= count) break;
    }
  }
  return { tokens, documents, files: stats.files, bytesRead: stats.bytesRead };
}

/**
 * Cuts a token stream into windows. `maxTokens` caps the number of predicted tokens (the stream is cut after
 * maxTokens + 1 tokens).
 */
export function makeWindows(
  stream: ArrayLike<number>,
  context: number,
  maxTokens?: number,
  where = 'data',
): Windows {
  if (!Number.isInteger(context) || context < 1)
    throw dataError(where, `context length must be ≥ 1, got ${context}`);
  const end = maxTokens === undefined ? stream.length : Math.min(stream.length, maxTokens + 1);
  if (end < 2) throw dataError(where, 'fewer than 2 tokens: nothing to predict');
  const rows: Int32Array[] = [];
  let tokens = 0;
  for (let start = 0; start + 1 < end; start += context) {
    const stop = Math.min(start + context + 1, end);
    const row = new Int32Array(stop - start);
    for (let i = 0; i < row.length; i++) row[i] = stream[start + i];
    rows.push(row);
    tokens += row.length - 1;
  }
  return { context, rows, tokens, source: where };
}

/**
 * Groups windows into padded batches of `batchSize` rows. Pair windows (encoder-decoders) become batches of
 * sources (`ids`, `seq`, `attentionMask`) with the rows as decoder inputs and targets (`decoderIds`, `decoderSeq`).
 */
export function* batches(windows: Windows, batchSize: number): Generator<TokenBatch & { valid: Uint8Array }> {
  if (windows.sources) {
    yield* pairBatches(windows, windows.sources, batchSize);
    return;
  }
  for (let b = 0; b < windows.rows.length; b += batchSize) {
    const rows = windows.rows.slice(b, b + batchSize);
    const seq = maxOf(rows.map((r) => r.length - 1));
    const ids = new BigInt64Array(rows.length * seq);
    const targets = new BigInt64Array(rows.length * seq).fill(BigInt(IGNORE_INDEX));
    const valid = new Uint8Array(rows.length * seq);
    rows.forEach((r, i) => {
      for (let t = 0; t < r.length - 1; t++) {
        ids[i * seq + t] = BigInt(r[t]);
        targets[i * seq + t] = BigInt(r[t + 1]);
        valid[i * seq + t] = 1;
      }
    });
    yield { batch: rows.length, seq, ids, targets, valid };
  }
}

function* pairBatches(
  windows: Windows,
  sources: Int32Array[],
  batchSize: number,
): Generator<TokenBatch & { valid: Uint8Array }> {
  const pad = BigInt(windows.padId ?? 0);
  for (let b = 0; b < windows.rows.length; b += batchSize) {
    const rows = windows.rows.slice(b, b + batchSize);
    const srcs = sources.slice(b, b + batchSize);
    const seq = maxOf(srcs.map((r) => r.length));
    const decoderSeq = maxOf(rows.map((r) => r.length - 1));
    const ids = new BigInt64Array(rows.length * seq).fill(pad);
    const attentionMask = new BigInt64Array(rows.length * seq);
    const decoderIds = new BigInt64Array(rows.length * decoderSeq).fill(pad);
    const targets = new BigInt64Array(rows.length * decoderSeq).fill(BigInt(IGNORE_INDEX));
    const valid = new Uint8Array(rows.length * decoderSeq);
    rows.forEach((r, i) => {
      const src = srcs[i];
      for (let t = 0; t < src.length; t++) {
        ids[i * seq + t] = BigInt(src[t]);
        attentionMask[i * seq + t] = 1n;
      }
      for (let t = 0; t < r.length - 1; t++) {
        decoderIds[i * decoderSeq + t] = BigInt(r[t]);
        targets[i * decoderSeq + t] = BigInt(r[t + 1]);
        valid[i * decoderSeq + t] = 1;
      }
    });
    yield { batch: rows.length, seq, ids, attentionMask, decoderIds, decoderSeq, targets, valid };
  }
}

export interface PerplexityResult {
  /** Predicted tokens scored. */
  tokens: number;
  meanNll: number;
  perplexity: number;
  seconds: number;
  tokensPerSecond: number;
}

export interface EvalProgress {
  done: number;
  total: number;
}

/** fp32 logits of one forward pass stay under this: ORT keeps several [tokens, width] buffers alive at once. */
const LOGITS_BYTES = 256 << 20;

/**
 * Default rows per batch: about 2048 tokens per forward pass, fewer when the logits would be large, never under
 * one row. Perplexity graphs hold logits one vocabulary chunk (VOCAB_CHUNK rows) at a time; KL graphs take the
 * reference's full [tokens, vocab] log-probabilities as input, so their batches are sized by the vocabulary (a
 * 128k vocabulary's reference is 1 GiB per 2048 tokens).
 */
export function defaultBatchSize(context: number, vocabSize = 0, metric: 'ppl' | 'kl' = 'ppl'): number {
  const width = metric === 'ppl' ? Math.min(vocabSize, VOCAB_CHUNK) : vocabSize;
  const tokens = width > 0 ? Math.min(2048, LOGITS_BYTES / (4 * width)) : 2048;
  return Math.max(1, Math.round(tokens / context));
}

/**
 * What to do when the model produces a non-finite value: 'throw' (the default: a reported NaN is a wrong
 * answer, so it is an error naming the data and the window) or 'infinite' (a search scoring a candidate:
 * the result is +Infinity, the worst possible quality, and the search carries on).
 */
export type NonFinitePolicy = 'throw' | 'infinite';

/** Scans one batch's per-token values; returns the first valid non-finite one's position, or −1. */
function firstNonFiniteValid(values: Float32Array, valid: Uint8Array): number {
  for (let i = 0; i < values.length; i++) {
    const x = values[i];
    if (valid[i] && x - x !== 0) return i;
  }
  return -1;
}

function nonFiniteError(
  what: string,
  windows: Windows,
  batchIndex: number,
  batchSize: number,
  seq: number,
  at: number,
  value: number,
): GenepruneError {
  const row = Math.floor(at / seq);
  const window = batchIndex * batchSize + row;
  return new GenepruneError(
    'model',
    `the model produced a non-finite ${what} (${value}) in window ${window} of ${windows.rows.length} ` +
      `(batch ${batchIndex}, token ${at % seq} of the window): the weights or the computation overflow`,
    windows.source ?? 'data',
  );
}

export async function evaluatePerplexity(
  runner: ModelRunner,
  windows: Windows,
  opts: {
    masks?: CandidateMasks;
    batchSize?: number;
    onProgress?: (p: EvalProgress) => void;
    nonFinite?: NonFinitePolicy;
  } = {},
): Promise<PerplexityResult> {
  if (runner.output !== 'nll') throw new Error('evaluatePerplexity needs an nll runner');
  const batchSize = opts.batchSize ?? defaultBatchSize(windows.context, runner.spec.config.vocabSize);
  const t0 = performance.now();
  let sum = 0;
  let count = 0;
  let b = 0;
  for (const batch of batches(windows, batchSize)) {
    const nll = await runner.run(batch, opts.masks);
    const bad = firstNonFiniteValid(nll, batch.valid);
    if (bad >= 0) {
      if (opts.nonFinite !== 'infinite')
        throw nonFiniteError('NLL', windows, b, batchSize, batch.decoderSeq ?? batch.seq, bad, nll[bad]);
      const seconds = (performance.now() - t0) / 1000;
      const n = windows.tokens;
      return { tokens: n, meanNll: Infinity, perplexity: Infinity, seconds, tokensPerSecond: n / seconds };
    }
    b++;
    for (let i = 0; i < nll.length; i++) {
      if (batch.valid[i]) {
        sum += nll[i];
        count++;
      }
    }
    opts.onProgress?.({ done: count, total: windows.tokens });
  }
  const seconds = (performance.now() - t0) / 1000;
  const meanNll = sum / count;
  return { tokens: count, meanNll, perplexity: Math.exp(meanNll), seconds, tokensPerSecond: count / seconds };
}

/** The dense model's log-probabilities for every batch, computed once and reused for every candidate. */
export interface KlReference {
  batchSize: number;
  logprobs: Float32Array[];
}

export async function computeKlReference(
  logprobRunner: ModelRunner,
  windows: Windows,
  batchSize = defaultBatchSize(windows.context, logprobRunner.spec.config.vocabSize, 'kl'),
): Promise<KlReference> {
  if (logprobRunner.output !== 'logprobs') throw new Error('computeKlReference needs a logprobs runner');
  const logprobs: Float32Array[] = [];
  for (const batch of batches(windows, batchSize)) {
    const lp = await logprobRunner.run(batch);
    // The reference is the unpruned model: NaN or +Inf there makes every KL meaningless (−Inf is a
    // log-probability of 0 and allowed).
    for (let i = 0; i < lp.length; i++) {
      if (!(lp[i] <= 0)) {
        const vocab = lp.length / (batch.batch * batch.seq);
        const token = Math.floor(i / vocab);
        if (!batch.valid[token]) continue;
        throw nonFiniteError(
          'log-probability',
          windows,
          logprobs.length,
          batchSize,
          batch.decoderSeq ?? batch.seq,
          token,
          lp[i],
        );
      }
    }
    logprobs.push(lp);
  }
  return { batchSize, logprobs };
}

export interface KlResult {
  tokens: number;
  /** Mean KL(dense || candidate) per predicted token, in nats. */
  meanKl: number;
  seconds: number;
}

export async function evaluateKl(
  klRunner: ModelRunner,
  windows: Windows,
  reference: KlReference,
  opts: { masks?: CandidateMasks; nonFinite?: NonFinitePolicy } = {},
): Promise<KlResult> {
  if (klRunner.output !== 'kl') throw new Error('evaluateKl needs a kl runner');
  const t0 = performance.now();
  let sum = 0;
  let count = 0;
  let b = 0;
  for (const batch of batches(windows, reference.batchSize)) {
    const kl = await klRunner.run({ ...batch, refLogprobs: reference.logprobs[b] }, opts.masks);
    const bad = firstNonFiniteValid(kl, batch.valid);
    if (bad >= 0) {
      if (opts.nonFinite !== 'infinite')
        throw nonFiniteError(
          'KL divergence',
          windows,
          b,
          reference.batchSize,
          batch.decoderSeq ?? batch.seq,
          bad,
          kl[bad],
        );
      return { tokens: windows.tokens, meanKl: Infinity, seconds: (performance.now() - t0) / 1000 };
    }
    b++;
    for (let i = 0; i < kl.length; i++) {
      if (batch.valid[i]) {
        sum += kl[i];
        count++;
      }
    }
  }
  return { tokens: count, meanKl: sum / count, seconds: (performance.now() - t0) / 1000 };
}
