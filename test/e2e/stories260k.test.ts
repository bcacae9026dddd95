/**
 * The real pretrained stories260K (llama2.c) through the public API: greedy decoding from BOS must reproduce
 * llama2.c's published known-good output (its test_all.py runs 200 steps: 200 tokens generated after BOS), and its
 * perplexity on the TinyStories evaluation pages must sit near the published validation loss 1.297.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { generate } from '../../src/arch/generate.js';
import { createRunner } from '../../src/engine/runner.js';
import { readDataset } from '../../src/metrics/data.js';
import { evaluatePerplexity, makeWindows, tokenizeDocuments } from '../../src/metrics/perplexity.js';
import { openModel } from '../../src/model/open.js';
import { sharedPath, skipUnlessShared } from '../shared.js';

const MODEL = 'models/stories260K/stories260K.bin';
const EVAL = 'data/tinystories/eval';

const PUBLISHED_200_STEPS =
  'Once upon a time, there was a little girl named Lily. She loved to play outside in the park. ' +
  'One day, she saw a big, red ball. She wanted to play with it, but it was too high.\n' +
  "Lily's mom said, \"Lily, let's go to the park.\" Lily was sad and didn't know what to do. " +
  'She said, "I want to play with your ball, but I can\'t find it."\n' +
  "Lily was sad and didn't know what to do. She said, \"I'm sorry, Lily. I didn't know what to do.\"\n" +
  "Lily didn't want to help her mom, so she";

describe('stories260K', { skip: skipUnlessShared(MODEL) }, () => {
  test('greedy decoding from BOS reproduces llama2.c', async () => {
    const model = await openModel(sharedPath(MODEL));
    assert.equal(model.spec.config.numLayers, 5);
    assert.equal(model.spec.config.numHeads, 8);
    assert.equal(model.spec.config.numKvHeads, 4);
    const runner = await createRunner(model.spec, { output: 'last_logits' });
    const tokens = await generate(runner, [1], { maxNewTokens: 200 });
    await runner.release();
    assert.equal(model.tokenizer.decode(tokens), PUBLISHED_200_STEPS);
  });

  test('eval perplexity is near the published validation loss', {
    skip: skipUnlessShared(EVAL),
  }, async () => {
    const model = await openModel(sharedPath(MODEL));
    const data = await readDataset(sharedPath(EVAL)!);
    const windows = makeWindows(tokenizeDocuments(data.documents, model.tokenizer), 512);
    const runner = await createRunner(model.spec, { output: 'nll' });
    const result = await evaluatePerplexity(runner, windows);
    await runner.release();
    assert.equal(result.tokens, windows.tokens);
    assert.ok(result.tokens > 30000);
    // Published: 1.297 on the whole validation split; these 80 KB of it land within a few hundredths.
    assert.ok(Math.abs(result.meanNll - 1.297) < 0.05, `mean NLL ${result.meanNll}`);
  });
});
