/**
 * Source/target pairs as perplexity windows (metrics/seq2seq.ts): the engine's teacher-forced NLL over them equals
 * the plain reference forward's (test/reference/t5.ts), unmasked and with heads masked, whatever the batching; on
 * codet5-tiny it is the README's dense NLL/token.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { createRunner, type ModelRunner } from '../../src/engine/runner.js';
import { readGenerationTask } from '../../src/metrics/generation.js';
import { batches, evaluatePerplexity } from '../../src/metrics/perplexity.js';
import { pairTokens, pairWindows, prepareSeq2seqPairs } from '../../src/metrics/seq2seq.js';
import { loadModelSpec } from '../../src/model/load.js';
import type { ModelSpec } from '../../src/model/spec.js';
import { loadTokenizer } from '../../src/tokenizer/load.js';
import { randomT5 } from '../helpers/t5.js';
import { t5Reference } from '../reference/t5.js';
import { sharedPath, skipUnlessShared } from '../shared.js';

const CODET5 = 'models/codet5-tiny';
const EVAL = 'data/codegen/eval.jsonl';

/** The reference's mean target NLL of pairs, with the same head mask. */
async function referenceNll(
  spec: ModelSpec,
  sources: number[][],
  targets: number[][],
  headMask?: Float32Array,
): Promise<number> {
  const ref = await t5Reference(spec);
  const r = ref.targetNll(
    sources,
    sources.map((s) => s.map(() => 1)),
    targets,
    headMask,
  );
  return r.sum / r.count;
}

describe('pair windows on a random T5', () => {
  const runners: ModelRunner[] = [];
  after(async () => {
    for (const r of runners) await r.release();
  });

  for (const version of ['v1.0', 'v1.1'] as const) {
    it(`${version}: engine NLL = reference NLL for batches of 1 and 3 rows, dense and with a head of each stack masked`, async () => {
      const spec = randomT5(version, 11, { scale: 8 });
      const c = spec.config;
      // Sources and targets of different lengths, so batches pad both sides.
      const sources = [
        [5, 9, 3, 1],
        [7, 2, 8, 6, 4, 12, 1],
        [10, 1],
        [3, 3, 14, 15, 1],
      ];
      const targets = [
        [4, 6, 1],
        [9, 1],
        [2, 13, 11, 7, 1],
        [8, 1],
      ];
      const pairs = {
        source: 'test pairs',
        sources,
        targets,
        decoderStart: c.encdec!.decoderStartTokenId,
        padId: 0,
      };
      const windows = pairWindows(pairs);
      assert.equal(windows.tokens, pairTokens(pairs));
      assert.equal(windows.tokens, 12);
      const runner = await createRunner(spec, { output: 'nll' });
      runners.push(runner);
      const rows = c.numLayers + c.encdec!.crossHeadsPerLayer.length;
      const maxHeads = c.numHeads;
      const masked = new Float32Array(rows * maxHeads).fill(1);
      masked[0 * maxHeads + 1] = 0; // encoder layer 0, head 1
      masked[(c.encdec!.encoderLayers + 1) * maxHeads + 2] = 0; // decoder self layer 1, head 2
      masked[(c.numLayers + 0) * maxHeads + 0] = 0; // cross layer 0, head 0
      for (const headMask of [undefined, masked]) {
        const want = await referenceNll(spec, sources, targets, headMask);
        for (const batchSize of [1, 3]) {
          const got = await evaluatePerplexity(runner, windows, {
            batchSize,
            masks: headMask ? { headMask } : undefined,
          });
          assert.equal(got.tokens, 12);
          assert.ok(
            Math.abs(got.meanNll - want) <= 1e-5 * Math.max(1, want),
            `${version} batch ${batchSize} ${headMask ? 'masked' : 'dense'}: ${got.meanNll} vs ${want}`,
          );
        }
      }
    });
  }

  it('batches: sources padded under the attention mask, decoder rows start with the start token', () => {
    const windows = pairWindows({
      source: 't',
      sources: [
        [5, 1],
        [6, 7, 8, 1],
      ],
      targets: [
        [9, 1],
        [4, 1],
      ],
      decoderStart: 0,
      padId: 0,
    });
    const [b] = [...batches(windows, 2)];
    assert.equal(b.seq, 4);
    assert.equal(b.decoderSeq, 2);
    assert.deepEqual([...b.ids], [5n, 1n, 0n, 0n, 6n, 7n, 8n, 1n]);
    assert.deepEqual([...b.attentionMask!], [1n, 1n, 0n, 0n, 1n, 1n, 1n, 1n]);
    assert.deepEqual([...b.decoderIds!], [0n, 9n, 0n, 4n]);
    assert.deepEqual([...b.targets!], [9n, 1n, 4n, 1n]);
  });

  it('maxTokens keeps whole pairs until the targets hold that many tokens', () => {
    const pairs = {
      source: 't',
      sources: [[1], [1], [1]],
      targets: [
        [2, 1],
        [3, 4, 1],
        [5, 1],
      ],
      decoderStart: 0,
      padId: 0,
    };
    assert.equal(pairWindows(pairs, 2).rows.length, 1);
    assert.equal(pairWindows(pairs, 3).rows.length, 2);
    assert.equal(pairWindows(pairs, 3).tokens, 5);
    assert.equal(pairWindows(pairs).rows.length, 3);
  });
});

describe('codet5-tiny target NLL', { skip: skipUnlessShared(CODET5, EVAL) }, () => {
  it("the engine's NLL/token over all 200 eval problems is the README's 0.00438", async () => {
    const dir = sharedPath(CODET5)!;
    const spec = await loadModelSpec(dir);
    const tok = await loadTokenizer(join(dir, 'tokenizer.json'));
    const task = await readGenerationTask(sharedPath(EVAL)!);
    const pairs = prepareSeq2seqPairs(task, tok, spec.config);
    // The README's encoding: `<s> text </s>` sources, `code </s>` labels without `<s>`.
    assert.deepEqual([pairs.sources[0][0], pairs.sources[0].at(-1)], [1, 2]);
    assert.equal(pairs.targets[0].at(-1), 2);
    assert.notEqual(pairs.targets[0][0], 1);
    const runner = await createRunner(spec, { output: 'nll' });
    try {
      const r = await evaluatePerplexity(runner, pairWindows(pairs), { batchSize: 32 });
      assert.equal(r.tokens, pairTokens(pairs));
      // README: 0.00438 printed to 5 decimals.
      assert.ok(Math.abs(r.meanNll - 0.00438) <= 5e-6, `NLL/token ${r.meanNll}`);
    } finally {
      await runner.release();
    }
  });
});
