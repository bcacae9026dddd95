/**
 * A generation task: prompts with reference continuations, scored by greedy decoding and BLEU — the quality
 * metric of the GenePrune paper (MBPP: problem text → code), usable as a search fitness and as a report metric.
 *
 * File format: JSONL, one object per line, `{"prompt": "...", "reference": "..."}`; `reference` may also be an
 * array of strings (several references for one prompt). MBPP's own files are accepted as they are: `text` is the
 * prompt and `code` the reference. Blank lines are skipped; anything else that is not such an object is refused
 * naming the file and line.
 *
 * Scoring: each prompt is encoded with BOS, continued greedily by at most `maxNewTokens` tokens (stopping early at
 * the tokenizer's BOS/EOS, as `generate` does), decoded to text, and the continuations are scored against the
 * references with sacreBLEU's corpus BLEU ('corpus', default) or the GenePrune code's mean of NLTK sentence BLEUs
 * ('sentence-mean'); both are always computed, `bleu` is the chosen one. Prompts are decoded in batches (one
 * forward per step for a whole batch); a prompt's continuation is the one it would get alone (test). Everything
 * is deterministic: greedy, no sampling, a fixed batching order.
 */
import { readFile } from 'node:fs/promises';
import { decodeLoopOf } from '../arch/registry.js';
import type { CandidateMasks, ModelRunner } from '../engine/runner.js';
import { dataError, fileError } from '../errors.js';
import type { Tokenizer } from '../tokenizer/types.js';
import { maxOf } from '../util/arrays.js';
import { BLEU_KINDS, type BleuKind, type BleuScore, corpusBleu, sentenceMeanBleu } from './bleu.js';
import { firstNonTextByte, requireRegularFile } from './data.js';

export interface GenerationItem {
  prompt: string;
  /** One or more references (non-empty strings). */
  references: string[];
}

export interface GenerationTask {
  /** The file it was read from. */
  source: string;
  items: GenerationItem[];
}

/** Default new tokens per prompt. */
export const GENERATION_MAX_NEW_TOKENS = 64;
/** Default prompts per forward pass. */
export const GENERATION_BATCH_SIZE = 16;

function fieldsOf(row: Record<string, unknown>): { prompt: unknown; reference: unknown; names: string } {
  if ('prompt' in row || 'reference' in row) {
    return { prompt: row.prompt, reference: row.reference, names: '"prompt" and "reference"' };
  }
  if ('text' in row && 'code' in row)
    return { prompt: row.text, reference: row.code, names: 'MBPP "text" and "code"' };
  return { prompt: undefined, reference: undefined, names: '' };
}

/** Parses a task file's text; `path` names it in errors (`<path>: line N: ...`). */
export function parseGenerationTask(path: string, text: string): GenerationTask {
  const items: GenerationItem[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (!line.trim()) continue;
    const where = `line ${i + 1}`;
    let row: unknown;
    try {
      row = JSON.parse(line);
    } catch {
      throw fileError(path, `${where}: not valid JSON`);
    }
    if (typeof row !== 'object' || row === null || Array.isArray(row)) {
      throw fileError(path, `${where}: not a JSON object (expected {"prompt": ..., "reference": ...})`);
    }
    const { prompt, reference, names } = fieldsOf(row as Record<string, unknown>);
    if (!names) {
      throw fileError(path, `${where}: needs fields "prompt" and "reference" (or MBPP's "text" and "code")`);
    }
    if (typeof prompt !== 'string') throw fileError(path, `${where}: the prompt (${names}) must be a string`);
    const refs = typeof reference === 'string' ? [reference] : reference;
    if (!Array.isArray(refs) || refs.length === 0 || refs.some((r) => typeof r !== 'string')) {
      throw fileError(
        path,
        `${where}: the reference (${names}) must be a string or a non-empty array of strings`,
      );
    }
    if (refs.some((r) => !r.trim())) throw fileError(path, `${where}: empty reference`);
    items.push({ prompt, references: refs as string[] });
  }
  if (items.length === 0)
    throw fileError(path, 'no items (expected JSONL lines {"prompt": ..., "reference": ...})');
  return { source: path, items };
}

export async function readGenerationTask(path: string): Promise<GenerationTask> {
  await requireRegularFile(path, 'task file');
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (e) {
    throw fileError(path, `cannot read task file (${(e as NodeJS.ErrnoException).code ?? e})`);
  }
  const bad = firstNonTextByte(bytes);
  if (bad >= 0) {
    throw fileError(path, `not text: byte ${bad} is not UTF-8 text (a task file is JSONL, UTF-8)`);
  }
  return parseGenerationTask(path, bytes.toString('utf8'));
}

/** A task with its prompts encoded once, ready to be scored many times (one candidate mask after another). */
export interface PreparedGenerationTask {
  task: GenerationTask;
  tokenizer: Tokenizer;
  /** Prompt ids, BOS first. */
  prompts: number[][];
  stopTokens: number[];
  /** The prompts are an encoder-decoder's sources: outputs are new texts, not continuations. */
  seq2seq?: boolean;
}

/**
 * Encodes a task's prompts for a model. A decoder continues each prompt (BOS first; stops at BOS or EOS); an
 * encoder-decoder (`seq2seq`) reads it as its source with the tokenizer's special tokens (CodeT5: `<s> text </s>`)
 * and writes a new text, stopping at EOS.
 */
export function prepareGenerationTask(
  task: GenerationTask,
  tokenizer: Tokenizer,
  seq2seq = false,
): PreparedGenerationTask {
  const bos = tokenizer.bosId ?? 1;
  const prompts = task.items.map((it) => {
    const ids = seq2seq ? tokenizer.encodeInput(it.prompt).ids : tokenizer.encode(it.prompt, { bos: true });
    return ids.length > 0 ? ids : [bos];
  });
  const stops = seq2seq ? [tokenizer.eosId] : [tokenizer.bosId, tokenizer.eosId];
  const stopTokens = stops.filter((t): t is number => t !== undefined);
  return { task, tokenizer, prompts, stopTokens, seq2seq };
}

/**
 * How many prompts are longer than `maxPositions` tokens: decoding sees only each one's last `maxPositions`
 * tokens (the beginning is cut), which callers must say rather than score silently.
 */
export function promptsBeyondContext(prompts: readonly (readonly number[])[], maxPositions: number): number {
  let n = 0;
  for (const p of prompts) if (p.length > maxPositions) n++;
  return n;
}

/** The warning for `cut` of `items` prompts longer than the context (`source` names the task). */
export function promptsCutNote(source: string, cut: number, items: number, maxPositions: number): string {
  return `${source}: ${cut} of ${items} prompts are longer than the model's context of ${maxPositions} tokens: only the last ${maxPositions} tokens of each are seen`;
}

/** The first `n` items of a prepared task (the whole task when it has no more), prompts not encoded again. */
export function slicePreparedTask(prepared: PreparedGenerationTask, n: number): PreparedGenerationTask {
  if (n >= prepared.prompts.length) return prepared;
  return {
    ...prepared,
    task: { source: prepared.task.source, items: prepared.task.items.slice(0, n) },
    prompts: prepared.prompts.slice(0, n),
  };
}

export interface GenerationScoreOptions {
  /** New tokens per prompt at most (default 64). */
  maxNewTokens?: number;
  /** Prompts per forward pass (default 16). */
  batchSize?: number;
  /** Which BLEU `bleu` holds (default 'corpus'). */
  bleu?: BleuKind;
  masks?: CandidateMasks;
  onStep?: (rows: number) => void;
}

export interface GenerationScore {
  /** The chosen BLEU, 0–100. */
  bleu: number;
  kind: BleuKind;
  /** sacreBLEU corpus BLEU (13a, exp smoothing), with its precisions and brevity penalty. */
  corpus: BleuScore;
  /** Mean of NLTK sentence BLEU-4 (method1, whitespace tokens), 0–100. */
  sentenceMean: number;
  /** The generated continuations, in the task's order. */
  hypotheses: string[];
  items: number;
  /** New tokens generated, over all prompts. */
  newTokens: number;
  /** Prompts that stopped at BOS/EOS before maxNewTokens. */
  stopped: number;
  forwards: number;
  seconds: number;
}

/** Greedy continuations of every prompt on a 'row_logits' runner, scored with BLEU against the references. */
export async function scoreGeneration(
  runner: ModelRunner,
  prepared: PreparedGenerationTask,
  opts: GenerationScoreOptions = {},
): Promise<GenerationScore> {
  const kind = opts.bleu ?? 'corpus';
  if (prepared.task.items.length === 0) throw dataError(prepared.task.source, 'the task has no items');
  if (!BLEU_KINDS.includes(kind))
    throw dataError('bleu', `unknown BLEU kind "${kind}" (corpus or sentence-mean)`);
  const t0 = performance.now();
  const out = await decodeLoopOf(runner.spec.config).greedyBatch(runner, prepared.prompts, {
    maxNewTokens: opts.maxNewTokens ?? GENERATION_MAX_NEW_TOKENS,
    batchSize: opts.batchSize ?? GENERATION_BATCH_SIZE,
    masks: opts.masks,
    stopTokens: prepared.stopTokens,
    onStep: opts.onStep,
  });
  const tok = prepared.tokenizer;
  const hypotheses = out.tokens.map((ids, i) => {
    let prev: number | undefined = prepared.seq2seq
      ? undefined
      : prepared.prompts[i][prepared.prompts[i].length - 1];
    let text = '';
    for (const id of ids) {
      text += tok.decodeToken(prev, id);
      prev = id;
    }
    return text;
  });
  const items = prepared.task.items;
  const maxRefs = maxOf(items.map((it) => it.references.length));
  // sacreBLEU's layout: reference set k holds each item's k-th reference (null where an item has fewer).
  const refSets = Array.from({ length: maxRefs }, (_, k) => items.map((it) => it.references[k] ?? null));
  const corpus = corpusBleu(hypotheses, refSets);
  const sentenceMean = sentenceMeanBleu(hypotheses, refSets);
  return {
    bleu: kind === 'corpus' ? corpus.score : sentenceMean,
    kind,
    corpus,
    sentenceMean,
    hypotheses,
    items: items.length,
    newTokens: out.tokens.reduce((a, t) => a + t.length, 0),
    stopped: out.finish.filter((f) => f === 'stop').length,
    forwards: out.forwards,
    seconds: (performance.now() - t0) / 1000,
  };
}
