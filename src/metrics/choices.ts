/**
 * Multiple-choice tasks for language models: a context, several choices, one right. The model picks the choice
 * it finds most likely after the context; accuracy is the share of items it gets right. Usable as a search
 * fitness (`--metric mc-accuracy`, quality = −accuracy) and as a report metric (`eval --choices`).
 *
 * File format: JSONL, one object per line, `{"context": "...", "choices": ["...", "..."], "label": 1}`; `label`
 * is the index of the right choice or its text (which must then be exactly one of the choices). Choices are
 * appended to the context as they stand: nothing is inserted between them, so a choice that is a new word
 * starts with its space (`"The sky is", [" blue", " green"]`). Blank lines are skipped; anything else is refused
 * naming the file and the line.
 *
 * Scoring a choice: the log-likelihood of its tokens given the context, summed.
 * - Tokens: the context is encoded alone (BOS first) and context + choice as one string; the choice's tokens are
 *   those of the joint encoding from the first position where it departs from the context's own encoding (in
 *   the usual case, exactly the tokens after the context's token count). The joint encoding is what the model
 *   reads for that text, so the choice is scored as the tokenizer really cuts it, not as a separate encoding
 *   would (which would add SentencePiece's dummy-prefix space and forbid merges across the boundary). When a
 *   merge does cross the boundary (a choice that glues onto the context's last word), the merged token holds
 *   choice characters and is scored with the choice; the context's tokens before it condition it.
 * - Rows longer than the model's context are cut on the left (the context's oldest tokens go first); a choice
 *   whose own tokens do not fit is refused.
 * - Each (item, choice) is one row: the 'nll' graph gives per-token NLL with targets, −100 (ignored) everywhere
 *   but the choice's tokens; rows are right-padded, so padding never reaches a real position under causal
 *   attention. Rows are batched longest first (fewer padded positions), about 2048 tokens per forward pass.
 *
 * Prediction: the argmax over choices (ties: the lower index). Two accuracies are reported:
 * - `accuracy` ("acc"): by summed log-likelihood;
 * - `accuracyNorm` ("acc_norm"): by log-likelihood per character of the choice (Unicode code points of the
 *   choice string as written, its leading space included) — the per-character normalisation evaluation
 *   harnesses call acc_norm. It removes the bias toward short choices and, unlike per-token normalisation, does
 *   not depend on the tokenizer, so two models with different vocabularies are compared on the same scale.
 * A search uses one of them (`ChoiceNorm`: 'none' → accuracy, 'chars' → accuracyNorm).
 */
import { readFile } from 'node:fs/promises';
import { type CandidateMasks, IGNORE_INDEX, type ModelRunner, type TokenBatch } from '../engine/runner.js';
import { dataError, fileError, GenepruneError } from '../errors.js';
import type { Tokenizer } from '../tokenizer/types.js';
import { accuracy } from './classification.js';
import { firstNonTextByte, requireRegularFile } from './data.js';
import { defaultBatchSize, type NonFinitePolicy } from './perplexity.js';

export interface ChoiceItem {
  context: string;
  /** Two or more non-empty choices. */
  choices: string[];
  /** Index of the right choice. */
  label: number;
  /** 1-based line of the file, for messages. */
  line: number;
}

export interface ChoiceTask {
  /** The file it was read from. */
  source: string;
  items: ChoiceItem[];
}

/** How a choice's log-likelihood is compared: summed ('none', acc) or per character ('chars', acc_norm). */
export type ChoiceNorm = 'none' | 'chars';
export const CHOICE_NORMS: readonly ChoiceNorm[] = ['none', 'chars'];

/** Parses a multiple-choice file's text; `path` names it in errors (`<path>: line N: ...`). */
export function parseChoiceTask(path: string, text: string): ChoiceTask {
  const items: ChoiceItem[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    if (!lines[i].trim()) continue;
    const where = `line ${i + 1}`;
    let row: unknown;
    try {
      row = JSON.parse(lines[i]);
    } catch {
      throw fileError(path, `${where}: not valid JSON`);
    }
    if (typeof row !== 'object' || row === null || Array.isArray(row)) {
      throw fileError(path, `${where}: not a JSON object (expected {"context", "choices", "label"})`);
    }
    const r = row as Record<string, unknown>;
    for (const field of ['context', 'choices', 'label']) {
      if (!(field in r)) throw fileError(path, `${where}: no field "${field}"`);
    }
    if (typeof r.context !== 'string') throw fileError(path, `${where}: "context" must be a string`);
    const choices = r.choices;
    if (!Array.isArray(choices) || choices.length < 2 || choices.some((c) => typeof c !== 'string')) {
      throw fileError(path, `${where}: "choices" must be an array of two or more strings`);
    }
    const empty = choices.indexOf('');
    if (empty >= 0) throw fileError(path, `${where}: choice ${empty} is empty`);
    let label: number;
    if (typeof r.label === 'number') {
      if (!(Number.isInteger(r.label) && r.label >= 0 && r.label < choices.length)) {
        throw fileError(
          path,
          `${where}: label ${r.label} is not a choice index (0 to ${choices.length - 1})`,
        );
      }
      label = r.label;
    } else if (typeof r.label === 'string') {
      const at = choices.flatMap((c, k) => (c === r.label ? [k] : []));
      if (at.length === 0) throw fileError(path, `${where}: label "${r.label}" is not one of the choices`);
      if (at.length > 1) {
        throw fileError(path, `${where}: label "${r.label}" is choice ${at.join(' and ')}: ambiguous`);
      }
      label = at[0];
    } else {
      throw fileError(path, `${where}: "label" must be a choice index (integer) or a choice's text`);
    }
    items.push({ context: r.context, choices: choices as string[], label, line: i + 1 });
  }
  if (items.length === 0) {
    throw fileError(path, 'no items (expected JSONL lines {"context": ..., "choices": [...], "label": ...})');
  }
  return { source: path, items };
}

export async function readChoiceTask(path: string): Promise<ChoiceTask> {
  await requireRegularFile(path, 'multiple-choice file');
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (e) {
    throw fileError(path, `cannot read multiple-choice file (${(e as NodeJS.ErrnoException).code ?? e})`);
  }
  const bad = firstNonTextByte(bytes);
  if (bad >= 0) {
    throw fileError(path, `not text: byte ${bad} is not UTF-8 text (a multiple-choice file is JSONL, UTF-8)`);
  }
  return parseChoiceTask(path, bytes.toString('utf8'));
}

/** A task encoded once, ready to be scored many times (one candidate mask after another). */
export interface PreparedChoiceTask {
  task: ChoiceTask;
  /** One row per (item, choice), item-major: the tokens of context + choice, BOS first (unless cut on the left). */
  rows: Int32Array[];
  /** Per row, the index of its first scored token: the choice's tokens are rows[r][scoreFrom[r]…]. */
  scoreFrom: number[];
  /** Per item, the index of its first row (its choices' rows follow in order). */
  firstRow: number[];
  /** Per row, the characters (code points) of its choice, for acc_norm. */
  chars: number[];
  /** Per row, the tokens cut on its left to fit the model's context (0 for most). */
  cut: number[];
}

function commonPrefix(a: readonly number[], b: readonly number[]): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a[i] === b[i]) i++;
  return i;
}

/**
 * Encodes every item's choices (see the file's comment). `maxPositions`: the model's context length; a row holds
 * at most maxPositions + 1 tokens (maxPositions inputs, each predicting the next).
 */
export function prepareChoiceTask(
  task: ChoiceTask,
  tokenizer: Tokenizer,
  maxPositions: number,
): PreparedChoiceTask {
  const rows: Int32Array[] = [];
  const scoreFrom: number[] = [];
  const firstRow: number[] = [];
  const chars: number[] = [];
  const cutTokens: number[] = [];
  for (const item of task.items) {
    const where = `line ${item.line}`;
    const context = tokenizer.encode(item.context, { bos: true, eos: false });
    if (context.length === 0) {
      throw fileError(
        task.source,
        `${where}: the context is empty and the tokenizer has no BOS token: nothing to condition the choices on`,
      );
    }
    firstRow.push(rows.length);
    item.choices.forEach((choice, k) => {
      const joint = tokenizer.encode(item.context + choice, { bos: true, eos: false });
      // The first token that is not the context's own; never the very first (it has nothing before it).
      let from = Math.max(1, commonPrefix(joint, context));
      if (from >= joint.length) {
        throw fileError(task.source, `${where}: choice ${k} adds no token to the context's`);
      }
      let tokens = joint;
      let cut = 0;
      if (tokens.length > maxPositions + 1) {
        cut = tokens.length - (maxPositions + 1);
        if (from - cut < 1) {
          throw fileError(
            task.source,
            `${where}: choice ${k} is ${joint.length - from} tokens, more than the model's context of ${maxPositions} can score after any context`,
          );
        }
        tokens = tokens.slice(cut);
        from -= cut;
      }
      rows.push(Int32Array.from(tokens));
      scoreFrom.push(from);
      chars.push([...choice].length);
      cutTokens.push(cut);
    });
  }
  return { task, rows, scoreFrom, firstRow, chars, cut: cutTokens };
}

/** The first `n` items of a prepared task (the whole task when it has no more), nothing encoded again. */
export function sliceChoiceTask(prepared: PreparedChoiceTask, n: number): PreparedChoiceTask {
  if (n >= prepared.task.items.length) return prepared;
  const rowEnd = prepared.firstRow[n];
  return {
    task: { source: prepared.task.source, items: prepared.task.items.slice(0, n) },
    rows: prepared.rows.slice(0, rowEnd),
    scoreFrom: prepared.scoreFrom.slice(0, rowEnd),
    firstRow: prepared.firstRow.slice(0, n),
    chars: prepared.chars.slice(0, rowEnd),
    cut: prepared.cut.slice(0, rowEnd),
  };
}

/** The labels of a prepared task's items. */
export function choiceLabels(prepared: PreparedChoiceTask): number[] {
  return prepared.task.items.map((it) => it.label);
}

/**
 * The task's rows in 'nll' batches: longest rows first, each batch right-padded to its longest row, targets
 * −100 except at the choice's tokens. `rowsOf[b]` lists the task rows of batch b in batch order.
 */
export function choiceBatches(
  prepared: PreparedChoiceTask,
  vocabSize: number,
  batchSize?: number,
): Array<{ batch: TokenBatch & { valid: Uint8Array }; rowsOf: number[] }> {
  const order = prepared.rows.map((_, i) => i);
  // Stable: equal lengths keep the task's order, so batches are the same on every run.
  order.sort((a, b) => prepared.rows[b].length - prepared.rows[a].length);
  const out: Array<{ batch: TokenBatch & { valid: Uint8Array }; rowsOf: number[] }> = [];
  for (let start = 0; start < order.length; ) {
    const seq = prepared.rows[order[start]].length - 1;
    const take = Math.max(1, batchSize ?? defaultBatchSize(seq, vocabSize));
    const rowsOf = order.slice(start, start + take);
    start += rowsOf.length;
    const n = rowsOf.length;
    const ids = new BigInt64Array(n * seq);
    const targets = new BigInt64Array(n * seq).fill(BigInt(IGNORE_INDEX));
    const valid = new Uint8Array(n * seq);
    rowsOf.forEach((r, b) => {
      const row = prepared.rows[r];
      for (let t = 0; t < row.length - 1; t++) {
        ids[b * seq + t] = BigInt(row[t]);
        // Position t predicts token t + 1: scored when that token is the choice's.
        if (t + 1 >= prepared.scoreFrom[r]) {
          targets[b * seq + t] = BigInt(row[t + 1]);
          valid[b * seq + t] = 1;
        }
      }
    });
    out.push({ batch: { batch: n, seq, ids, targets, valid }, rowsOf });
  }
  return out;
}

export interface ChoiceScoreOptions {
  masks?: CandidateMasks;
  /** Rows (item × choice) per forward pass at most (default: about 2048 tokens). */
  batchSize?: number;
  /** 'throw' (default) or 'infinite': a non-finite log-likelihood makes both accuracies NaN. */
  nonFinite?: NonFinitePolicy;
  onProgress?: (done: number, total: number) => void;
}

export interface ChoiceScore {
  items: number;
  /** Share of items whose most likely choice (summed log-likelihood) is the label, in [0, 1]. */
  accuracy: number;
  /** The same with the log-likelihood per character of the choice (acc_norm). */
  accuracyNorm: number;
  /** Per item, per choice: the summed log-likelihood (natural log) of the choice's tokens. */
  logLikelihoods: number[][];
  /** Per item, per choice: the tokens scored. */
  choiceTokens: number[][];
  /** Per item: the argmax choice by summed and by per-character log-likelihood. */
  predictions: number[];
  predictionsNorm: number[];
  labels: number[];
  /** Rows cut on the left to fit the context. */
  truncated: number;
  forwards: number;
  seconds: number;
}

/** Index of the largest value; ties go to the lower index. */
function argmax(values: readonly number[]): number {
  let best = 0;
  for (let k = 1; k < values.length; k++) if (values[k] > values[best]) best = k;
  return best;
}

/** Scores every choice of every item on an 'nll' runner (see the file's comment). */
export async function scoreChoices(
  runner: ModelRunner,
  prepared: PreparedChoiceTask,
  opts: ChoiceScoreOptions = {},
): Promise<ChoiceScore> {
  if (runner.output !== 'nll') throw new GenepruneError('internal', 'scoreChoices needs an nll runner');
  const items = prepared.task.items;
  if (items.length === 0) throw dataError(prepared.task.source, 'the task has no items');
  const t0 = performance.now();
  const rowLogLik = new Float64Array(prepared.rows.length);
  const rowTokens = new Int32Array(prepared.rows.length);
  const batches = choiceBatches(prepared, runner.spec.config.vocabSize, opts.batchSize);
  let nonFinite = false;
  let done = 0;
  let forwards = 0;
  for (const { batch, rowsOf } of batches) {
    const nll = await runner.run(batch, opts.masks);
    forwards++;
    for (let b = 0; b < rowsOf.length; b++) {
      let sum = 0;
      let count = 0;
      for (let t = 0; t < batch.seq; t++) {
        const i = b * batch.seq + t;
        if (!batch.valid[i]) continue;
        sum += nll[i];
        count++;
      }
      if (!Number.isFinite(sum)) {
        if (opts.nonFinite !== 'infinite') {
          const r = rowsOf[b];
          let item = 0;
          while (item + 1 < items.length && prepared.firstRow[item + 1] <= r) item++;
          throw new GenepruneError(
            'model',
            `the model produced a non-finite NLL (${sum}) for choice ${r - prepared.firstRow[item]} of line ${items[item].line}: the weights or the computation overflow`,
            prepared.task.source,
          );
        }
        nonFinite = true;
      }
      rowLogLik[rowsOf[b]] = -sum;
      rowTokens[rowsOf[b]] = count;
    }
    done += rowsOf.length;
    opts.onProgress?.(done, prepared.rows.length);
    if (nonFinite) break;
  }
  const logLikelihoods: number[][] = [];
  const choiceTokens: number[][] = [];
  const predictions: number[] = [];
  const predictionsNorm: number[] = [];
  const labels = choiceLabels(prepared);
  items.forEach((item, j) => {
    const first = prepared.firstRow[j];
    const ll = item.choices.map((_, k) => rowLogLik[first + k]);
    const perChar = ll.map((v, k) => v / prepared.chars[first + k]);
    logLikelihoods.push(ll);
    choiceTokens.push(item.choices.map((_, k) => rowTokens[first + k]));
    predictions.push(argmax(ll));
    predictionsNorm.push(argmax(perChar));
  });
  return {
    items: items.length,
    accuracy: nonFinite ? Number.NaN : accuracy(predictions, labels),
    accuracyNorm: nonFinite ? Number.NaN : accuracy(predictionsNorm, labels),
    logLikelihoods,
    choiceTokens,
    predictions,
    predictionsNorm,
    labels,
    truncated: prepared.cut.filter((c) => c > 0).length,
    forwards,
    seconds: (performance.now() - t0) / 1000,
  };
}
