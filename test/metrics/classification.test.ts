/**
 * Classification metrics and the labelled-data reader (metrics/classification.ts): accuracy and macro-F1 on
 * examples computed by hand (scikit-learn's macro average: the classes among labels or predictions), argmax of
 * logits rows, and every refusal of a labelled file in one line naming the file and the line.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { GenepruneError } from '../../src/errors.js';
import {
  accuracy,
  argmaxRows,
  macroF1,
  parseClassificationData,
  perClassF1,
  readClassificationData,
} from '../../src/metrics/classification.js';
import { tempDir } from '../checkpoint/helpers.js';

const tmp = tempDir('geneprune-classification-');
after(tmp.cleanup);

const close = (a: number, b: number) => assert.ok(Math.abs(a - b) < 1e-12, `${a} vs ${b}`);

describe('accuracy and macro-F1', () => {
  test('accuracy is the share of items predicted right', () => {
    assert.equal(accuracy([0, 1, 1, 2], [0, 1, 2, 2]), 0.75);
    assert.equal(accuracy([1, 1], [0, 0]), 0);
    assert.throws(() => accuracy([0], [0, 1]), /1 predictions for 2 labels/);
    assert.throws(() => accuracy([], []), /no items/);
  });

  test('macro-F1 by hand: three classes', () => {
    // labels      0 0 0 1 1 2
    // predictions 0 0 1 1 2 2
    // class 0: TP 2, FP 0, FN 1 → F1 4/5; class 1: TP 1, FP 1, FN 1 → 2/4; class 2: TP 1, FP 1, FN 0 → 2/3.
    const y = [0, 0, 0, 1, 1, 2];
    const p = [0, 0, 1, 1, 2, 2];
    close(macroF1(p, y), (4 / 5 + 1 / 2 + 2 / 3) / 3);
    assert.deepEqual(
      perClassF1(p, y).map((c) => [c.label, c.tp, c.fp, c.fn]),
      [
        [0, 2, 0, 1],
        [1, 1, 1, 1],
        [2, 1, 1, 0],
      ],
    );
  });

  test('a class with no support and no predictions is left out; one side only counts as F1 0', () => {
    // Labels index a model with 4 classes, but class 3 never occurs: excluded (scikit-learn's default).
    const y = [0, 0, 1, 1];
    const p = [0, 0, 1, 1];
    assert.equal(macroF1(p, y), 1);
    // Class 2 predicted but never true: F1 0, averaged in. Class 1 true but never predicted: F1 0.
    // labels 0 0 1 1, predictions 0 2 0 0: class 0 TP 1 FP 2 FN 1 → 2/5; class 1 → 0; class 2 → 0.
    close(macroF1([0, 2, 0, 0], y), 2 / 5 / 3);
    // All wrong, two classes: 0.
    assert.equal(macroF1([1, 1, 0, 0], y), 0);
  });

  test('argmaxRows: the largest logit per row, ties to the lower index, NaN never wins', () => {
    assert.deepEqual([...argmaxRows([0.1, 0.9, 0.3, 2, 2, 1, Number.NaN, -1, -5], 3)], [1, 0, 1]);
    assert.deepEqual([...argmaxRows([Number.NaN, Number.NaN], 2)], [-1]);
    assert.throws(() => argmaxRows([1, 2, 3], 2), /do not make rows of 2/);
  });
});

describe('labelled data', () => {
  const LABELS = ['negative', 'positive'];
  const refused = (text: string, message: string, labels = LABELS) => {
    assert.throws(
      () => parseClassificationData('data.jsonl', text, labels),
      (e: unknown) => e instanceof GenepruneError && e.oneLine() === `data.jsonl: ${message}`,
      message,
    );
  };
  const lines = (...rows: unknown[]) =>
    rows.map((r) => (typeof r === 'string' ? r : JSON.stringify(r))).join('\n');

  test('labels by name or by index, pairs, blank lines', () => {
    const d = parseClassificationData(
      'data.jsonl',
      lines({ text: 'good', label: 'positive' }, '', { text: 'bad', label: 0 }),
      LABELS,
    );
    assert.equal(d.pairs, false);
    assert.deepEqual(
      d.items.map((it) => [it.text, it.label, it.line]),
      [
        ['good', 1, 1],
        ['bad', 0, 3],
      ],
    );
    const pairs = parseClassificationData(
      'pairs.jsonl',
      lines({ text: 'a', text_pair: 'b', label: 'entailment' }),
      ['contradiction', 'entailment'],
    );
    assert.equal(pairs.pairs, true);
    assert.equal(pairs.items[0].textPair, 'b');
    assert.equal(pairs.items[0].label, 1);
  });

  test('names match across letter case only where that is unambiguous', () => {
    const upper = parseClassificationData(
      'sst2.jsonl',
      lines({ text: 'good', label: 'positive' }, { text: 'bad', label: 'NEGATIVE' }),
      ['NEGATIVE', 'POSITIVE'],
    );
    assert.deepEqual(
      upper.items.map((it) => it.label),
      [1, 0],
    );
    // An exact name wins; 'pos' folds to two labels, so it is refused.
    const clash = ['Pos', 'pos', 'POS'];
    assert.equal(
      parseClassificationData('c.jsonl', lines({ text: 'x', label: 'POS' }), clash).items[0].label,
      2,
    );
    refused(
      lines({ text: 'x', label: 'pOs' }),
      'line 1: label "pOs" is not one of the model\'s labels (Pos, pos, POS)',
      clash,
    );
  });

  test('every bad line is refused naming the file and the line', () => {
    const ok = { text: 'fine', label: 'positive' };
    refused(lines(ok, '{"text": "x",'), 'line 2: not valid JSON');
    refused(lines(ok, '"just text"'), 'line 2: not a JSON object (expected {"text": ..., "label": ...})');
    refused(lines(ok, { label: 1 }), 'line 2: no field "text"');
    refused(lines(ok, { text: 5, label: 1 }), 'line 2: "text" must be a string');
    refused(lines(ok, { text: 'x' }), 'line 2: no field "label"');
    refused(
      lines(ok, { text: 'x', label: 'neutral' }),
      'line 2: label "neutral" is not one of the model\'s labels (negative, positive)',
    );
    refused(lines(ok, { text: 'x', label: 2 }), 'line 2: label 2 is not a label index of the model (0 to 1)');
    refused(
      lines(ok, { text: 'x', label: -1 }),
      'line 2: label -1 is not a label index of the model (0 to 1)',
    );
    refused(
      lines(ok, { text: 'x', label: true }),
      'line 2: "label" must be a label name (string) or index (integer)',
    );
    refused(lines(ok, { text: 'x', text_pair: 3, label: 1 }), 'line 2: "text_pair" must be a string');
    refused(
      lines(ok, { text: 'x', text_pair: 'y', label: 1 }),
      'line 2: has "text_pair" where line 1 lacks it (a file holds single texts or pairs, not both)',
    );
    refused('\n  \n', 'no items (expected JSONL lines {"text": ..., "label": ...})');
  });

  test('a missing or binary file is refused in one line', async () => {
    const missing = join(tmp.dir, 'none.jsonl');
    await assert.rejects(readClassificationData(missing, LABELS), (e: unknown) =>
      (e as GenepruneError).oneLine().startsWith(`${missing}: cannot read labelled data (ENOENT)`),
    );
    const binary = join(tmp.dir, 'bin.jsonl');
    writeFileSync(binary, Buffer.from([0x41, 0xff]));
    await assert.rejects(readClassificationData(binary, LABELS), (e: unknown) =>
      (e as GenepruneError).oneLine().startsWith(`${binary}: not text: byte 1`),
    );
    const good = join(tmp.dir, 'good.jsonl');
    writeFileSync(good, `${JSON.stringify({ text: 'ok', label: 'negative' })}\n`);
    assert.equal((await readClassificationData(good, LABELS)).items[0].label, 0);
  });
});
