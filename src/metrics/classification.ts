/**
 * Sequence classification: accuracy and macro-F1 of predicted label indices against true ones, and the JSONL
 * reader of labelled text (`{text, label}` or `{text, text_pair, label}`).
 *
 * How it plugs into a search (`--metric accuracy` or `macro-f1`, with labelled JSONL files as --calib and --eval):
 * 1. the labelled file is read here with the model's labels (`readClassificationData(path, labels)`;
 *    ModelSpec.config.classifier.labels names them), and metrics/classify.ts encodes each item once (text, or
 *    text and text_pair as a pair) and batches the items with right padding and their attention mask;
 * 2. a 'class_logits' runner (input_ids, attention_mask, token_type_ids → logits [batch, numLabels]) scores the
 *    batches under a candidate's masks, and each item's argmax label (`argmaxRows` below) meets its true label;
 * 3. search/objective.ts wraps that in a `Predictor`, and `createPredictionObjective` turns it into
 *    quality = −accuracy (or −macro-F1), the convention the 'mc-accuracy' objective follows, so the GA,
 *    NSGA-II, the baselines and the fitness (search/fitness.ts: higher-is-better metrics) take it unchanged.
 *
 * Macro-F1 follows scikit-learn's default (`f1_score(average='macro')` without `labels`): the classes averaged
 * are those that occur among the true labels or the predictions; a class with neither support nor predictions
 * is left out, and a class that occurs on one side only has F1 0 (precision or recall 0, zero_division 0).
 * Per class F1 = 2·TP / (2·TP + FP + FN), which equals the harmonic mean of precision and recall and is 0 when
 * TP = 0.
 */
import { readFile } from 'node:fs/promises';
import { dataError, fileError } from '../errors.js';
import { firstNonTextByte, requireRegularFile } from './data.js';

function checkPairs(predictions: ArrayLike<number>, labels: ArrayLike<number>, what: string): void {
  if (predictions.length !== labels.length) {
    throw dataError(what, `${predictions.length} predictions for ${labels.length} labels`);
  }
  if (labels.length === 0) throw dataError(what, 'no items to score');
}

/** Share of items whose prediction equals the label, in [0, 1]. */
export function accuracy(predictions: ArrayLike<number>, labels: ArrayLike<number>): number {
  checkPairs(predictions, labels, 'accuracy');
  let right = 0;
  for (let i = 0; i < labels.length; i++) if (predictions[i] === labels[i]) right++;
  return right / labels.length;
}

/** Per-class counts and F1 of the classes that occur among labels or predictions, in ascending class order. */
export function perClassF1(
  predictions: ArrayLike<number>,
  labels: ArrayLike<number>,
): Array<{ label: number; tp: number; fp: number; fn: number; f1: number }> {
  checkPairs(predictions, labels, 'macro-F1');
  const counts = new Map<number, { tp: number; fp: number; fn: number }>();
  const at = (c: number) => {
    let x = counts.get(c);
    if (!x) {
      x = { tp: 0, fp: 0, fn: 0 };
      counts.set(c, x);
    }
    return x;
  };
  for (let i = 0; i < labels.length; i++) {
    const y = labels[i];
    const p = predictions[i];
    if (p === y) at(y).tp++;
    else {
      at(y).fn++;
      at(p).fp++;
    }
  }
  return [...counts.entries()]
    .sort((a, b) => a[0] - b[0])
    .map(([label, c]) => ({ label, ...c, f1: (2 * c.tp) / (2 * c.tp + c.fp + c.fn) }));
}

/** Mean per-class F1 over the classes present among labels or predictions (scikit-learn's macro average). */
export function macroF1(predictions: ArrayLike<number>, labels: ArrayLike<number>): number {
  const classes = perClassF1(predictions, labels);
  return classes.reduce((a, c) => a + c.f1, 0) / classes.length;
}

/**
 * The index of each row's largest value in `logits` ([rows, width], row-major): the predicted label. Ties go to
 * the lowest index; NaN never wins (a row of NaN predicts −1, which matches no label).
 */
export function argmaxRows(logits: ArrayLike<number>, width: number): Int32Array {
  if (!(Number.isInteger(width) && width > 0 && logits.length % width === 0)) {
    throw dataError('logits', `${logits.length} values do not make rows of ${width}`);
  }
  const rows = logits.length / width;
  const out = new Int32Array(rows).fill(-1);
  for (let r = 0; r < rows; r++) {
    let best = Number.NEGATIVE_INFINITY;
    for (let k = 0; k < width; k++) {
      const v = logits[r * width + k];
      if (v > best || (out[r] < 0 && v === best)) {
        best = v;
        out[r] = k;
      }
    }
  }
  return out;
}

export interface ClassificationItem {
  text: string;
  /** The second text of a pair task (NLI, paraphrase), when the file has one. */
  textPair?: string;
  /** Index into the model's labels. */
  label: number;
  /** 1-based line of the file, for messages. */
  line: number;
}

export interface ClassificationData {
  source: string;
  /** The model's label names, by index, that `label` indexes. */
  labels: readonly string[];
  items: ClassificationItem[];
  /** Whether the items are text pairs. */
  pairs: boolean;
}

/**
 * Parses labelled JSONL: one object per line, `text` (string), optional `text_pair` (string; all lines or none),
 * `label` as the label's name (one of `labels`; a name that differs only in letter case matches when exactly one
 * label does, so "positive" reads a model's "POSITIVE") or its index (an integer in [0, labels.length)). Blank
 * lines are skipped; anything else is refused in one line naming the file and the line.
 */
export function parseClassificationData(
  path: string,
  text: string,
  labels: readonly string[],
): ClassificationData {
  if (labels.length === 0) throw dataError(path, 'the model has no labels to classify into');
  const byName = new Map<string, number>();
  labels.forEach((name, i) => {
    if (!byName.has(name)) byName.set(name, i);
  });
  // Case-insensitive names, only where they are unambiguous (−1 marks a clash).
  const byFolded = new Map<string, number>();
  labels.forEach((name, i) => {
    const k = name.toLowerCase();
    byFolded.set(k, byFolded.has(k) && byFolded.get(k) !== i ? -1 : i);
  });
  const known = () => (labels.length <= 8 ? labels.join(', ') : `${labels.slice(0, 8).join(', ')}, …`);
  const items: ClassificationItem[] = [];
  let pairs: boolean | undefined;
  let firstLine = 0;
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
      throw fileError(path, `${where}: not a JSON object (expected {"text": ..., "label": ...})`);
    }
    const r = row as Record<string, unknown>;
    if (!('text' in r)) throw fileError(path, `${where}: no field "text"`);
    if (typeof r.text !== 'string') throw fileError(path, `${where}: "text" must be a string`);
    const hasPair = 'text_pair' in r;
    if (hasPair && typeof r.text_pair !== 'string') {
      throw fileError(path, `${where}: "text_pair" must be a string`);
    }
    if (pairs === undefined) {
      pairs = hasPair;
      firstLine = i + 1;
    } else if (pairs !== hasPair) {
      throw fileError(
        path,
        `${where}: ${hasPair ? 'has' : 'lacks'} "text_pair" where line ${firstLine} ${pairs ? 'has' : 'lacks'} it (a file holds single texts or pairs, not both)`,
      );
    }
    if (!('label' in r)) throw fileError(path, `${where}: no field "label"`);
    let label: number;
    if (typeof r.label === 'string') {
      const folded = byFolded.get(r.label.toLowerCase());
      const found = byName.get(r.label) ?? (folded !== undefined && folded >= 0 ? folded : undefined);
      if (found === undefined) {
        throw fileError(path, `${where}: label "${r.label}" is not one of the model's labels (${known()})`);
      }
      label = found;
    } else if (typeof r.label === 'number') {
      if (!(Number.isInteger(r.label) && r.label >= 0 && r.label < labels.length)) {
        throw fileError(
          path,
          `${where}: label ${r.label} is not a label index of the model (0 to ${labels.length - 1})`,
        );
      }
      label = r.label;
    } else {
      throw fileError(path, `${where}: "label" must be a label name (string) or index (integer)`);
    }
    items.push({
      text: r.text,
      ...(hasPair ? { textPair: r.text_pair as string } : {}),
      label,
      line: i + 1,
    });
  }
  if (items.length === 0) {
    throw fileError(path, 'no items (expected JSONL lines {"text": ..., "label": ...})');
  }
  return { source: path, labels, items, pairs: pairs === true };
}

export async function readClassificationData(
  path: string,
  labels: readonly string[],
): Promise<ClassificationData> {
  await requireRegularFile(path, 'labelled data');
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (e) {
    throw fileError(path, `cannot read labelled data (${(e as NodeJS.ErrnoException).code ?? e})`);
  }
  const bad = firstNonTextByte(bytes);
  if (bad >= 0) throw fileError(path, `not text: byte ${bad} is not UTF-8 text (labelled data is JSONL)`);
  return parseClassificationData(path, bytes.toString('utf8'), labels);
}
