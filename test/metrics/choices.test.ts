/**
 * Multiple-choice scoring (metrics/choices.ts):
 * - every choice's log-likelihood equals the sum of the plain reference forward's log-softmax over the choice's
 *   tokens (test/reference/llama.ts, float64, no ONNX Runtime), unmasked and with heads masked, and the
 *   predictions, acc and acc_norm follow from those reference values;
 * - batching (longest first, right padding) does not change a row's score;
 * - the token boundary: a choice starting with a space is scored from the context's token count; a choice that
 *   merges into the context's last token is scored from that merged token;
 * - rows past the context are cut on the left, a choice that cannot fit is refused;
 * - bad files are refused in one line naming the file and the line.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createRunner } from '../../src/engine/runner.js';
import { GenepruneError } from '../../src/errors.js';
import {
  type ChoiceTask,
  parseChoiceTask,
  prepareChoiceTask,
  readChoiceTask,
  scoreChoices,
  sliceChoiceTask,
} from '../../src/metrics/choices.js';
import type { ModelSpec } from '../../src/model/spec.js';
import { loadLlama2cTokenizer } from '../../src/tokenizer/llama2c.js';
import type { Tokenizer } from '../../src/tokenizer/types.js';
import { tempDir } from '../checkpoint/helpers.js';
import { TINY_PIECES, tinySpec, tinyTokenizerBin } from '../helpers/tinylm.js';
import { type ReferenceWeights, referenceForward } from '../reference/llama.js';

const tmp = tempDir('geneprune-choices-');
after(tmp.cleanup);

let tokenizer: Tokenizer;
before(async () => {
  const path = join(tmp.dir, 'tok.bin');
  writeFileSync(path, tinyTokenizerBin());
  tokenizer = await loadLlama2cTokenizer(path, { vocabSize: TINY_PIECES.length });
});

const TASK: ChoiceTask = {
  source: 'task.jsonl',
  items: [
    { context: 'the cat', choices: [' sat', ' ran away', ' dog'], label: 0, line: 1 },
    { context: 'a dog', choices: [' cat', ' dog dog'], label: 1, line: 2 },
    { context: 'ab', choices: ['c', ' abc', 'at'], label: 2, line: 3 },
    { context: '', choices: ['cat', 'dog'], label: 0, line: 4 },
    { context: 'zzz yy', choices: [' x', ' q'], label: 1, line: 5 },
  ],
};

async function referenceWeights(spec: ModelSpec): Promise<ReferenceWeights> {
  const w = new Map<string, Float32Array>();
  for (const [role, t] of spec.tensors) w.set(role, await t.load());
  return { ...spec.config, get: (r) => w.get(r) };
}

/** Σ log p(token t | tokens < t) over t ≥ from, by the reference forward and a float64 log-softmax. */
function referenceLogLikelihood(
  ref: ReferenceWeights,
  tokens: number[],
  from: number,
  headMask?: number[][],
): number {
  const logits = referenceForward(ref, tokens.slice(0, -1), { rotary: 'half', headMask });
  let sum = 0;
  for (let t = from; t < tokens.length; t++) {
    const row = logits[t - 1];
    const max = Math.max(...row);
    let z = 0;
    for (const v of row) z += Math.exp(v - max);
    sum += row[tokens[t]] - max - Math.log(z);
  }
  return sum;
}

const argmax = (xs: number[]) => xs.reduce((b, x, k) => (x > xs[b] ? k : b), 0);

describe('scoreChoices against the plain reference forward', () => {
  for (const masked of [false, true]) {
    test(`log-likelihoods, predictions, acc and acc_norm${masked ? ' with heads masked' : ''}`, async () => {
      const spec = tinySpec(7);
      const ref = await referenceWeights(spec);
      const prepared = prepareChoiceTask(TASK, tokenizer, spec.config.maxPositions);
      const headRows = [
        [1, 0, 1, 1],
        [0, 1, 1, 0],
      ];
      const runner = await createRunner(spec, { output: 'nll' });
      try {
        const r = await scoreChoices(runner, prepared, {
          masks: masked ? { headMask: Float32Array.from(headRows.flat()) } : undefined,
        });
        let right = 0;
        let rightNorm = 0;
        TASK.items.forEach((item, j) => {
          const expected = item.choices.map((choice, k) => {
            const row = prepared.firstRow[j] + k;
            // The reference encodes the text itself: context + choice, BOS first.
            const tokens = tokenizer.encode(item.context + choice, { bos: true, eos: false });
            assert.deepEqual([...prepared.rows[row]], tokens);
            return referenceLogLikelihood(
              ref,
              tokens,
              prepared.scoreFrom[row],
              masked ? headRows : undefined,
            );
          });
          for (let k = 0; k < expected.length; k++) {
            assert.ok(
              Math.abs(r.logLikelihoods[j][k] - expected[k]) < 1e-3,
              `item ${j} choice ${k}: ${r.logLikelihoods[j][k]} vs reference ${expected[k]}`,
            );
          }
          const perChar = expected.map((v, k) => v / [...item.choices[k]].length);
          assert.equal(r.predictions[j], argmax(expected), `item ${j}`);
          assert.equal(r.predictionsNorm[j], argmax(perChar), `item ${j} (per character)`);
          if (argmax(expected) === item.label) right++;
          if (argmax(perChar) === item.label) rightNorm++;
        });
        assert.equal(r.items, 5);
        assert.equal(r.accuracy, right / 5);
        assert.equal(r.accuracyNorm, rightNorm / 5);
        assert.deepEqual(r.labels, [0, 1, 2, 0, 1]);
        // One forward pass holds all 12 short rows; one row per pass gives the same scores.
        assert.equal(r.forwards, 1);
        const single = await scoreChoices(runner, prepared, {
          batchSize: 1,
          masks: masked ? { headMask: Float32Array.from(headRows.flat()) } : undefined,
        });
        assert.equal(single.forwards, 12);
        single.logLikelihoods.flat().forEach((v, i) => {
          assert.ok(Math.abs(v - r.logLikelihoods.flat()[i]) < 1e-4);
        });
      } finally {
        await runner.release();
      }
    });
  }

  test('the first items of a sliced task score as the whole task scores them', async () => {
    const spec = tinySpec(8);
    const prepared = prepareChoiceTask(TASK, tokenizer, spec.config.maxPositions);
    const runner = await createRunner(spec, { output: 'nll' });
    try {
      const all = await scoreChoices(runner, prepared);
      const two = await scoreChoices(runner, sliceChoiceTask(prepared, 2));
      assert.equal(two.items, 2);
      assert.deepEqual(two.predictions, all.predictions.slice(0, 2));
      two.logLikelihoods.flat().forEach((v, i) => {
        assert.ok(Math.abs(v - all.logLikelihoods.flat()[i]) < 1e-4);
      });
      assert.equal(sliceChoiceTask(prepared, 99), prepared);
    } finally {
      await runner.release();
    }
  });
});

describe('the token boundary', () => {
  test('a choice that starts with a space is scored from the context token count', () => {
    const p = prepareChoiceTask(
      { source: 't', items: [{ context: 'a', choices: [' b', ' cat'], label: 0, line: 1 }] },
      tokenizer,
      64,
    );
    const context = tokenizer.encode('a', { bos: true });
    assert.deepEqual(context, [1, 286]); // BOS, ' a'
    assert.equal(p.scoreFrom[0], context.length);
    assert.equal(p.scoreFrom[1], context.length);
    // ' cat' is one token: exactly one scored token after the context's.
    assert.equal(p.rows[1].length, context.length + 1);
  });

  test('a choice that merges into the context last token is scored from the merged token', () => {
    // 'a' → [BOS, ' a']; 'a' + 'b' → ' ab' is one token, replacing the context's last.
    const p = prepareChoiceTask(
      { source: 't', items: [{ context: 'a', choices: ['b', 'bz'], label: 0, line: 1 }] },
      tokenizer,
      64,
    );
    assert.deepEqual([...p.rows[0]], [1, 288]);
    assert.equal(p.scoreFrom[0], 1);
    assert.equal(p.rows[1].length, 3);
    assert.equal(p.scoreFrom[1], 1);
    assert.deepEqual(p.chars, [1, 2]);
  });

  test('rows past the context are cut on the left; a choice that cannot fit is refused', () => {
    const long = 'q'.repeat(20);
    const p = prepareChoiceTask(
      { source: 't', items: [{ context: long, choices: [' x', ' yy'], label: 0, line: 1 }] },
      tokenizer,
      8,
    );
    // ' ' + 20 × 'q' is 21 tokens after BOS; + ' x' 2 more: 24 tokens, cut to 9.
    assert.equal(p.rows[0].length, 9);
    assert.equal(p.cut[0], 24 - 9);
    assert.equal(p.scoreFrom[0], 7);
    assert.deepEqual([...p.rows[0].slice(7)], tokenizer.encode(` ${long} x`, { bos: true }).slice(-2));
    assert.throws(
      () =>
        prepareChoiceTask(
          { source: 'long.jsonl', items: [{ context: 'a', choices: [' b', ` ${long}`], label: 0, line: 3 }] },
          tokenizer,
          8,
        ),
      (e: unknown) =>
        e instanceof GenepruneError &&
        e.oneLine() ===
          "long.jsonl: line 3: choice 1 is 21 tokens, more than the model's context of 8 can score after any context",
    );
  });
});

describe('multiple-choice files', () => {
  const refused = (text: string, message: string) => {
    assert.throws(
      () => parseChoiceTask('mc.jsonl', text),
      (e: unknown) => e instanceof GenepruneError && e.oneLine() === `mc.jsonl: ${message}`,
      message,
    );
  };

  test('labels by index or by text; blank lines skipped', () => {
    const t = parseChoiceTask(
      'mc.jsonl',
      `${JSON.stringify({ context: 'x', choices: [' a', ' b'], label: 1 })}\n\n${JSON.stringify({ context: 'y', choices: [' a', ' b', ' c'], label: ' c' })}\n`,
    );
    assert.deepEqual(
      t.items.map((it) => [it.label, it.line]),
      [
        [1, 1],
        [2, 3],
      ],
    );
  });

  test('bad lines are refused naming the file and the line', () => {
    const ok = { context: 'x', choices: [' a', ' b'], label: 0 };
    const line2 = (row: unknown) =>
      `${JSON.stringify(ok)}\n${typeof row === 'string' ? row : JSON.stringify(row)}\n`;
    refused(line2('{"context": '), 'line 2: not valid JSON');
    refused(line2([1, 2]), 'line 2: not a JSON object (expected {"context", "choices", "label"})');
    refused(line2({ choices: [' a', ' b'], label: 0 }), 'line 2: no field "context"');
    refused(line2({ context: 'x', label: 0 }), 'line 2: no field "choices"');
    refused(line2({ context: 'x', choices: [' a', ' b'] }), 'line 2: no field "label"');
    refused(line2({ ...ok, context: 3 }), 'line 2: "context" must be a string');
    refused(line2({ ...ok, choices: [' a'] }), 'line 2: "choices" must be an array of two or more strings');
    refused(
      line2({ ...ok, choices: [' a', 2] }),
      'line 2: "choices" must be an array of two or more strings',
    );
    refused(line2({ ...ok, choices: [' a', ''] }), 'line 2: choice 1 is empty');
    refused(line2({ ...ok, label: 2 }), 'line 2: label 2 is not a choice index (0 to 1)');
    refused(line2({ ...ok, label: 0.5 }), 'line 2: label 0.5 is not a choice index (0 to 1)');
    refused(line2({ ...ok, label: ' c' }), 'line 2: label " c" is not one of the choices');
    refused(
      line2({ ...ok, choices: [' a', ' a'], label: ' a' }),
      'line 2: label " a" is choice 0 and 1: ambiguous',
    );
    refused(
      line2({ ...ok, label: null }),
      'line 2: "label" must be a choice index (integer) or a choice\'s text',
    );
    refused('\n\n', 'no items (expected JSONL lines {"context": ..., "choices": [...], "label": ...})');
  });

  test('a missing, binary or empty file is refused in one line', async () => {
    const missing = join(tmp.dir, 'missing.jsonl');
    await assert.rejects(readChoiceTask(missing), (e: unknown) =>
      (e as GenepruneError).oneLine().startsWith(`${missing}: cannot read multiple-choice file (ENOENT)`),
    );
    const binary = join(tmp.dir, 'binary.jsonl');
    writeFileSync(binary, Buffer.from([0x7b, 0x00, 0x7d]));
    await assert.rejects(readChoiceTask(binary), (e: unknown) =>
      (e as GenepruneError).oneLine().startsWith(`${binary}: not text: byte 1`),
    );
    const empty = join(tmp.dir, 'empty.jsonl');
    writeFileSync(empty, '');
    await assert.rejects(readChoiceTask(empty), (e: unknown) =>
      (e as GenepruneError).oneLine().startsWith(`${empty}: no items`),
    );
  });
});
