/**
 * A generation task: prompts with reference continuations, scored by greedy decoding and BLEU — the quality
 * metric of the GenePrune paper (MBPP: problem text → code), usable as a search fitness and as a report metric.
 *
 * File format: JSONL, one object per line, `{"prompt": "...", "reference": "..."}` or, the seq2seq form, `{"source":
 * "...", "target": "..."}`; the reference (target) may also be an array of strings (several references for one
 * prompt). MBPP's own files are accepted as they are: `text` is the prompt and `code` the reference, and the
 * problem's tests — `test_list` (the assert lines), `test_setup_code`, `test_imports` (import lines the asserts
 * need, sanitized MBPP), `task_id` — are kept on the item as the `CodeProblem` pass@1 runs (metrics/codeexec.ts).
 * Blank lines are skipped; anything else that is not such an object, or test fields of the wrong type, is refused
 * naming the file and line.
 *
 * Prompt template (`--prompt-template`): the text each prompt is built from, `{text}` standing for the item's
 * prompt (text, source); the default `{text}` is the prompt itself. Applied when the task is prepared (encoded),
 * so the task's items keep the file's own text (the calibration / evaluation overlap check compares those).
 *
 * Scoring: each prompt is encoded with BOS, continued greedily by at most `maxNewTokens` tokens (stopping early at
 * the tokenizer's BOS/EOS, as `generate` does), decoded to text, and the continuations are scored against the
 * references with sacreBLEU's corpus BLEU ('corpus', default) or the GenePrune code's mean of NLTK sentence BLEUs
 * ('sentence-mean'); both are always computed, `bleu` is the chosen one. The same generations give every other
 * generation metric: exact match (always) and, when the caller passes code-execution options, pass@1 — one decode,
 * every metric. Prompts are decoded in batches (one
 * forward per step for a whole batch); a prompt's continuation is the one it would get alone (test). Everything
 * is deterministic: greedy, no sampling, a fixed batching order.
 */
import { readFile } from 'node:fs/promises';
import { decodeLoopOf } from '../arch/registry.js';
import type { CandidateMasks, ModelRunner } from '../engine/runner.js';
import { dataError, fileError, flagError } from '../errors.js';
import type { Tokenizer } from '../tokenizer/types.js';
import { maxOf } from '../util/arrays.js';
import {
  BLEU_KINDS,
  type BleuKind,
  type BleuScore,
  corpusBleu,
  nltkMethod1MeanBleu,
  sentenceMeanBleu,
} from './bleu.js';
import { type CodeExecOptions, type CodeProblem, type ExecResult, passAtOne } from './codeexec.js';
import { firstNonTextByte, requireRegularFile } from './data.js';
import { exactMatch } from './exactmatch.js';

export interface GenerationItem {
  prompt: string;
  /** One or more references (non-empty strings). */
  references: string[];
  /** MBPP rows with `test_list`: the problem pass@1 runs the generated program against. */
  problem?: CodeProblem;
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
  if ('source' in row || 'target' in row)
    return { prompt: row.source, reference: row.target, names: '"source" and "target"' };
  if ('text' in row && 'code' in row)
    return { prompt: row.text, reference: row.code, names: 'MBPP "text" and "code"' };
  return { prompt: undefined, reference: undefined, names: '' };
}

const TEST_FIELDS = ['test_list', 'test_setup_code', 'test_imports'] as const;

/**
 * The MBPP problem of a row, or undefined when it has no test fields. `test_list` must be a non-empty array of
 * strings (the asserts), `test_setup_code` a string, `test_imports` an array of strings (folded into the setup
 * code, before it: codeexec runs completion, setup, asserts), `task_id` (kept with them; alone it makes no
 * problem) an integer or a string; a row with other test fields but no `test_list` has nothing to run: refused.
 */
function problemOf(row: Record<string, unknown>, bad: (m: string) => Error): CodeProblem | undefined {
  if (!TEST_FIELDS.some((k) => k in row)) return undefined;
  const { test_list: tests, test_setup_code: setup, test_imports: imports, task_id: id } = row;
  if (tests === undefined) {
    const given = TEST_FIELDS.filter((k) => k in row).join(', ');
    throw bad(`has ${given} but no "test_list" (the asserts pass@1 runs)`);
  }
  if (!Array.isArray(tests) || tests.length === 0 || tests.some((t) => typeof t !== 'string' || !t.trim()))
    throw bad('"test_list" must be a non-empty array of non-empty strings (assert lines)');
  if (setup !== undefined && setup !== null && typeof setup !== 'string')
    throw bad('"test_setup_code" must be a string');
  if (imports !== undefined && imports !== null) {
    if (!Array.isArray(imports) || imports.some((t) => typeof t !== 'string'))
      throw bad('"test_imports" must be an array of strings (import lines)');
  }
  if (id !== undefined && !(typeof id === 'string' || Number.isInteger(id)))
    throw bad('"task_id" must be an integer or a string');
  const setupCode = [...((imports as string[] | null | undefined) ?? []), (setup as string | null) ?? '']
    .filter((t) => t.length > 0)
    .join('\n');
  return {
    ...(id !== undefined ? { task_id: id as number | string } : {}),
    test_list: tests as string[],
    ...(setupCode ? { test_setup_code: setupCode } : {}),
  };
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
      throw fileError(
        path,
        `${where}: needs fields "prompt" and "reference" (or "source" and "target", or MBPP's "text" and "code")`,
      );
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
    const problem = problemOf(row as Record<string, unknown>, (m) => fileError(path, `${where}: ${m}`));
    items.push({ prompt, references: refs as string[], ...(problem ? { problem } : {}) });
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

/** `--prompt-template`'s default: the item's prompt as it is. */
export const DEFAULT_PROMPT_TEMPLATE = '{text}';

/** A `{name}` field of a template; other braces (code in a prefix) are literal text. */
const TEMPLATE_FIELD = /\{([A-Za-z_][A-Za-z0-9_]*)\}/g;

/**
 * Refuses, in one line naming `--prompt-template`, a template without `{text}` (every prompt would be the same
 * text) or with a field other than `{text}` (nothing would fill it).
 */
export function checkPromptTemplate(template: string): void {
  const unknown = [...template.matchAll(TEMPLATE_FIELD)].map((m) => m[0]).filter((f) => f !== '{text}');
  if (unknown.length > 0) {
    throw flagError(
      '--prompt-template',
      `unknown field ${[...new Set(unknown)].join(', ')} in "${template}": the only field is {text} (the item's prompt)`,
    );
  }
  if (!template.includes('{text}'))
    throw flagError('--prompt-template', `"${template}" has no {text} (where the item's prompt goes)`);
}

/** The prompt text a template makes of an item's prompt: every `{text}` replaced by it (no `$` patterns). */
export function applyPromptTemplate(template: string, text: string): string {
  return template.split('{text}').join(text);
}

/** A task with its prompts encoded once, ready to be scored many times (one candidate mask after another). */
export interface PreparedGenerationTask {
  task: GenerationTask;
  tokenizer: Tokenizer;
  /** Prompt ids, BOS first: the template applied to each item's prompt, encoded. */
  prompts: number[][];
  stopTokens: number[];
  /** The prompt template the prompts were built with (DEFAULT_PROMPT_TEMPLATE when none was given). */
  template: string;
  /** The prompts are an encoder-decoder's sources: outputs are new texts, not continuations. */
  seq2seq?: boolean;
}

/**
 * Encodes a task's prompts (the template applied to each item's prompt) for a model. A decoder continues each
 * prompt (BOS first; stops at BOS or EOS); an encoder-decoder (`seq2seq`) reads it as its source with the
 * tokenizer's special tokens (CodeT5: `<s> text </s>`) and writes a new text, stopping at EOS.
 */
export function prepareGenerationTask(
  task: GenerationTask,
  tokenizer: Tokenizer,
  template: string = DEFAULT_PROMPT_TEMPLATE,
  seq2seq = false,
): PreparedGenerationTask {
  checkPromptTemplate(template);
  const bos = tokenizer.bosId ?? 1;
  const prompts = task.items.map((it) => {
    const text = applyPromptTemplate(template, it.prompt);
    const ids = seq2seq ? tokenizer.encodeInput(text).ids : tokenizer.encode(text, { bos: true });
    return ids.length > 0 ? ids : [bos];
  });
  const stops = seq2seq ? [tokenizer.eosId] : [tokenizer.bosId, tokenizer.eosId];
  const stopTokens = stops.filter((t): t is number => t !== undefined);
  return { task, tokenizer, prompts, stopTokens, template, ...(seq2seq ? { seq2seq } : {}) };
}

/**
 * Every item's code problem, for pass@1; a task with an item without tests (no `test_list`) is refused in one line
 * naming the task and the item.
 */
export function codeProblemsOf(task: GenerationTask): CodeProblem[] {
  const missing = task.items.findIndex((it) => !it.problem);
  if (missing >= 0) {
    const none = task.items.every((it) => !it.problem);
    throw fileError(
      task.source,
      none
        ? 'pass@1 needs each item\'s tests, and this task has none (MBPP rows with "test_list")'
        : `item ${missing + 1} has no "test_list": pass@1 needs each item's tests`,
    );
  }
  return task.items.map((it) => it.problem as CodeProblem);
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
  /**
   * Also score pass@1: each item's greedy program run against its tests (metrics/codeexec.ts; every item needs
   * them, `codeProblemsOf`). Undefined: no code runs and `passAt1` is absent.
   */
  exec?: CodeExecOptions;
  /** With `exec`: hears each program as it ends. */
  onExec?: (index: number, result: ExecResult) => void;
}

export interface GenerationScore {
  /** The chosen BLEU, 0–100. */
  bleu: number;
  kind: BleuKind;
  /** sacreBLEU corpus BLEU (13a, exp smoothing), with its precisions and brevity penalty. */
  corpus: BleuScore;
  /** Mean of NLTK sentence BLEU-4 (method1, whitespace tokens), 0–100. */
  sentenceMean: number;
  /**
   * The same mean on the GenePrune code's 0–1 scale: `nltkMethod1MeanBleu` of the continuations against the one
   * reference of each item (sentenceMean / 100 where an item has several references).
   */
  sentenceMeanUnit: number;
  /** Share of items whose continuation equals one of its references after exactmatch.ts's normalisation, 0–1. */
  exactMatch: number;
  /** With `exec`: the share of items whose greedy program passed its tests, 0–1, and how many passed. */
  passAt1?: number;
  passed?: number;
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

/** What `scoreCompletions` computes from given completions: every generation metric. */
export type CompletionScores = Pick<
  GenerationScore,
  'bleu' | 'kind' | 'corpus' | 'sentenceMean' | 'sentenceMeanUnit' | 'exactMatch' | 'passAt1' | 'passed'
>;

/**
 * Every generation metric of given completions (one per item, in order) against the task's references: both
 * BLEUs, exact match and, with `exec`, pass@1 of the completions run against the items' tests. The scoring half
 * of `scoreGeneration`, apart so that completions from anywhere (a reference solution, another decoder) are
 * scored exactly as the greedy ones are.
 */
export async function scoreCompletions(
  task: GenerationTask,
  completions: readonly string[],
  opts: Pick<GenerationScoreOptions, 'bleu' | 'exec' | 'onExec'> = {},
): Promise<CompletionScores> {
  const kind = opts.bleu ?? 'corpus';
  const items = task.items;
  if (items.length === 0) throw dataError(task.source, 'the task has no items');
  if (completions.length !== items.length)
    throw dataError(task.source, `${completions.length} completions for ${items.length} items`);
  if (!BLEU_KINDS.includes(kind))
    throw dataError('bleu', `unknown BLEU kind "${kind}" (corpus or sentence-mean)`);
  const problems = opts.exec ? codeProblemsOf(task) : undefined;
  const hypotheses = [...completions];
  const maxRefs = maxOf(items.map((it) => it.references.length));
  // sacreBLEU's layout: reference set k holds each item's k-th reference (null where an item has fewer).
  const refSets = Array.from({ length: maxRefs }, (_, k) => items.map((it) => it.references[k] ?? null));
  const corpus = corpusBleu(hypotheses, refSets);
  const sentenceMean = sentenceMeanBleu(hypotheses, refSets);
  const oneRef = items.every((it) => it.references.length === 1);
  const sentenceMeanUnit = oneRef
    ? nltkMethod1MeanBleu(
        hypotheses,
        items.map((it) => it.references[0]),
      )
    : sentenceMean / 100;
  const matched = hypotheses.filter((h, i) => items[i].references.some((r) => exactMatch(h, r))).length;
  const exec =
    problems && opts.exec ? await passAtOne(problems, hypotheses, opts.exec, opts.onExec) : undefined;
  return {
    bleu: kind === 'corpus' ? corpus.score : sentenceMean,
    kind,
    corpus,
    sentenceMean,
    sentenceMeanUnit,
    exactMatch: matched / items.length,
    ...(exec ? { passAt1: exec.passAt1, passed: exec.passed } : {}),
  };
}

/** Greedy continuations of every prompt on a 'row_logits' runner, scored on every generation metric. */
export async function scoreGeneration(
  runner: ModelRunner,
  prepared: PreparedGenerationTask,
  opts: GenerationScoreOptions = {},
): Promise<GenerationScore> {
  const kind = opts.bleu ?? 'corpus';
  if (prepared.task.items.length === 0) throw dataError(prepared.task.source, 'the task has no items');
  if (!BLEU_KINDS.includes(kind))
    throw dataError('bleu', `unknown BLEU kind "${kind}" (corpus or sentence-mean)`);
  // Refused before decoding, not after: a task without tests cannot give pass@1.
  if (opts.exec) codeProblemsOf(prepared.task);
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
  const scores = await scoreCompletions(prepared.task, hypotheses, {
    bleu: kind,
    ...(opts.exec ? { exec: opts.exec } : {}),
    ...(opts.onExec ? { onExec: opts.onExec } : {}),
  });
  const items = prepared.task.items;
  return {
    ...scores,
    hypotheses,
    items: items.length,
    newTokens: out.tokens.reduce((a, t) => a + t.length, 0),
    stopped: out.finish.filter((f) => f === 'stop').length,
    forwards: out.forwards,
    seconds: (performance.now() - t0) / 1000,
  };
}
