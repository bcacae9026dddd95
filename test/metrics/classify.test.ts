/**
 * Sequence classification on the engine: a random BERT classifier (3 labels, token types) and a WordPiece
 * tokenizer score labelled items, single texts and pairs, in padded batches; every prediction is the argmax of the
 * plain reference forward's logits on the same encoded item (written from BERT's definition over the HF tensors),
 * unmasked and with heads masked, and accuracy and macro-F1 follow from those predictions by hand. Over-long
 * items are truncated to the model's positions and counted.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createRunner } from '../../src/engine/runner.js';
import { headMaskOf } from '../../src/masks/heads.js';
import { parseClassificationData } from '../../src/metrics/classification.js';
import { prepareClassification, scoreClassification } from '../../src/metrics/classify.js';
import { loadModelSpec } from '../../src/model/load.js';
import type { ModelSpec } from '../../src/model/spec.js';
import { loadTokenizer } from '../../src/tokenizer/load.js';
import type { Tokenizer } from '../../src/tokenizer/types.js';
import { tempDir } from '../checkpoint/helpers.js';
import { type RandomEncoder, writeRandomEncoder } from '../helpers/encoders.js';
import { wordPieceTokenizerJson } from '../helpers/wordpiece.js';
import { referenceEncoderForward } from '../reference/bert.js';

const tmp = tempDir('geneprune-classify-');
after(tmp.cleanup);

const WORDS = ['good', 'bad', 'movie', 'the', 'was', 'not', 'very', 'fun'];
const LABELS = ['negative', 'neutral', 'positive'];

describe('classification on a random BERT classifier', () => {
  let model: RandomEncoder;
  let spec: ModelSpec;
  let tokenizer: Tokenizer;
  before(async () => {
    const tok = wordPieceTokenizerJson(WORDS);
    model = await writeRandomEncoder(tmp.dir, 'bert', {
      modelType: 'bert',
      labels: 3,
      typeVocab: 2,
      vocab: tok.size,
      maxPositions: 24,
      hidden: 16,
      heads: 4,
      layers: 2,
      seed: 5,
    });
    writeFileSync(join(model.dir, 'tokenizer.json'), JSON.stringify(tok.json));
    spec = await loadModelSpec(model.dir);
    tokenizer = await loadTokenizer(model.dir, { vocabSize: spec.config.vocabSize });
  });

  const lines = (pairs: boolean) =>
    [
      ['the movie was good', 'very fun', 'positive'],
      ['bad', 'not fun', 0],
      ['the movie was not very good at all', 'meh', 'neutral'],
      ['fun fun fun', 'good', 2],
      ['xyz', 'the', 'negative'],
      ['was it good or bad', 'movie', 1],
      ['a very long text '.repeat(8), 'and more', 'positive'],
    ]
      .map(([text, pair, label]) => JSON.stringify({ text, ...(pairs ? { text_pair: pair } : {}), label }))
      .join('\n');

  for (const pairs of [false, true]) {
    test(`${pairs ? 'text pairs' : 'single texts'}: predictions are the reference's argmax`, async () => {
      const data = parseClassificationData('items.jsonl', lines(pairs), LABELS);
      const prepared = prepareClassification(data, tokenizer, spec);
      assert.equal(prepared.truncated, 1, 'the long item is cut to 24 positions');
      assert.ok(prepared.items.every((i) => i.ids.length <= 24));
      assert.equal(prepared.items[6].ids.at(-1), 3, 'the cut item still ends with [SEP]');
      const runner = await createRunner(spec, { output: 'class_logits' });
      for (const kept of [
        undefined,
        [
          [1, 0, 1, 1],
          [0, 1, 1, 0],
        ],
      ]) {
        const genome = kept ? Uint8Array.from(kept.flat()) : undefined;
        const r = await scoreClassification(runner, prepared, {
          masks: genome ? { headMask: headMaskOf(spec.config, genome) } : {},
          batchSize: 3,
        });
        const expected = prepared.items.map((item) => {
          const out = referenceEncoderForward(
            model.config,
            (n) => model.tensors.get(n),
            { inputIds: item.ids, tokenTypeIds: item.typeIds },
            kept ? { headMask: kept } : {},
          );
          const logits = out.logits!;
          let best = 0;
          for (let k = 1; k < logits.length; k++) if (logits[k] > logits[best]) best = k;
          return best;
        });
        assert.deepEqual([...r.predictions!], expected);
        const labels = data.items.map((i) => i.label);
        const right = expected.filter((p, i) => p === labels[i]).length;
        assert.equal(r.accuracy, right / labels.length);
        // Macro-F1 by hand over the classes present among labels or predictions.
        const classes = [...new Set([...labels, ...expected])];
        const f1 = classes.map((c) => {
          const tp = expected.filter((p, i) => p === c && labels[i] === c).length;
          const fp = expected.filter((p, i) => p === c && labels[i] !== c).length;
          const fn = expected.filter((p, i) => p !== c && labels[i] === c).length;
          return (2 * tp) / (2 * tp + fp + fn);
        });
        assert.ok(Math.abs(r.macroF1 - f1.reduce((a, b) => a + b, 0) / f1.length) < 1e-12);
        // Batching does not change predictions.
        const whole = await scoreClassification(runner, prepared, {
          masks: genome ? { headMask: headMaskOf(spec.config, genome) } : {},
        });
        assert.deepEqual([...whole.predictions!], expected);
      }
      await runner.release();
    });
  }

  test('a decoder or a model without a classifier is refused in one line', async () => {
    const base = await writeRandomEncoder(tmp.dir, 'base', { modelType: 'bert', seed: 6, vocab: 60 });
    const baseSpec = await loadModelSpec(base.dir);
    const data = parseClassificationData('items.jsonl', lines(false), LABELS);
    assert.throws(() => prepareClassification(data, tokenizer, baseSpec), /no sequence-classification head/);
  });
});
