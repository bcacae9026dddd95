/**
 * The output head over vocabulary chunks ('nll' and 'kl' graphs of large vocabularies, so no [tokens, vocab]
 * tensor exists) against a plain float64 reference computed from the unchunked graph's logits: per-token NLL
 * and KL, tied and untied heads, an uneven last chunk, ignored targets, weights in memory and in an
 * external-data file, and logits large enough that a naive exp overflows float32.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { createRunner, type TokenBatch } from '../../src/engine/runner.js';
import { IGNORE_INDEX, vocabChunks } from '../../src/graph/lmhead.js';
import { loadWeights, prepareWeights, releaseWeights } from '../../src/graph/weights.js';
import { randomLlamaSpec } from '../../src/model/random.js';
import type { ModelSpec } from '../../src/model/spec.js';
import { createRng } from '../../src/util/rng.js';

const VOCAB = 300;
const CHUNK = 64; // 4 chunks of 64 and one of 44

function model(seed: number, tie: boolean, scale = 1): ModelSpec {
  return randomLlamaSpec({
    hiddenSize: 32,
    numLayers: 2,
    numHeads: 4,
    numKvHeads: 2,
    headDim: 8,
    intermediateSize: 40,
    vocabSize: VOCAB,
    maxPositions: 32,
    tieEmbeddings: tie,
    seed,
    scale,
  });
}

/** Two rows of 12 tokens covering ids at both ends of the vocabulary; row 1's last 4 targets ignored. */
function tokens(seed: number): TokenBatch {
  const rng = createRng(seed);
  const seq = 12;
  const ids = BigInt64Array.from({ length: 2 * seq }, () => BigInt(rng.nextInt(VOCAB)));
  const targets = BigInt64Array.from({ length: 2 * seq }, () => BigInt(rng.nextInt(VOCAB)));
  ids[0] = 0n;
  ids[1] = BigInt(VOCAB - 1);
  targets[0] = BigInt(VOCAB - 1);
  targets[1] = 0n;
  targets[2] = BigInt(CHUNK); // first row of the second chunk
  for (let t = seq - 4; t < seq; t++) targets[seq + t] = BigInt(IGNORE_INDEX);
  return { batch: 2, seq, ids, targets };
}

async function run(
  s: ModelSpec,
  output: 'logits' | 'nll' | 'kl',
  batch: TokenBatch,
  opts: { vocabChunk?: number; externalDataThreshold?: number; dtype?: 'fp32' | 'fp16' | 'bf16' } = {},
): Promise<Float32Array> {
  const dtype = opts.dtype;
  const weights =
    opts.externalDataThreshold === undefined
      ? await loadWeights(s, { dtype })
      : await prepareWeights(s, { externalDataThreshold: opts.externalDataThreshold, dtype });
  const runner = await createRunner(s, { output, weights, vocabChunk: opts.vocabChunk, dtype });
  await releaseWeights(weights);
  try {
    return await runner.run(batch);
  } finally {
    await runner.release();
  }
}

/** log Σ exp over one token's logits, in float64 with the maximum taken out. */
function logSumExp(logits: Float32Array, at: number): number {
  let m = Number.NEGATIVE_INFINITY;
  for (let v = 0; v < VOCAB; v++) m = Math.max(m, logits[at + v]);
  let s = 0;
  for (let v = 0; v < VOCAB; v++) s += Math.exp(logits[at + v] - m);
  return m + Math.log(s);
}

function referenceNll(logits: Float32Array, targets: BigInt64Array): Float64Array {
  return Float64Array.from(targets, (t, i) =>
    t === BigInt(IGNORE_INDEX) ? 0 : logSumExp(logits, i * VOCAB) - logits[i * VOCAB + Number(t)],
  );
}

/** Log-probabilities [tokens, vocab] in float64. */
function logprobs(logits: Float32Array): Float64Array {
  const out = new Float64Array(logits.length);
  for (let i = 0; i < logits.length / VOCAB; i++) {
    const lse = logSumExp(logits, i * VOCAB);
    for (let v = 0; v < VOCAB; v++) out[i * VOCAB + v] = logits[i * VOCAB + v] - lse;
  }
  return out;
}

function maxRelDiff(a: Float32Array, b: Float64Array): number {
  assert.equal(a.length, b.length);
  let d = 0;
  for (let i = 0; i < a.length; i++) {
    assert.ok(Number.isFinite(a[i]), `token ${i}: ${a[i]}`);
    d = Math.max(d, Math.abs(a[i] - b[i]) / Math.max(1, Math.abs(b[i])));
  }
  return d;
}

describe('output head over vocabulary chunks', () => {
  test('chunk ranges: only nll and kl graphs past the chunk size are split; the last chunk may be short', () => {
    assert.deepEqual(vocabChunks(VOCAB, 'nll', CHUNK), [
      [0, 64],
      [64, 128],
      [128, 192],
      [192, 256],
      [256, 300],
    ]);
    assert.deepEqual(vocabChunks(VOCAB, 'logits', CHUNK), [[0, VOCAB]]);
    assert.deepEqual(vocabChunks(VOCAB, 'kl', VOCAB), [[0, VOCAB]]);
  });

  for (const tie of [false, true]) {
    for (const where of ['memory', 'file'] as const) {
      test(`NLL ${tie ? 'tied' : 'untied'} head, weights in ${where}: equals float64 log-softmax of the logits`, async () => {
        const s = model(tie ? 3 : 4, tie);
        const batch = tokens(5);
        const ext = where === 'file' ? { externalDataThreshold: 0 } : {};
        const logits = await run(s, 'logits', batch);
        const ref = referenceNll(logits, batch.targets!);
        const chunked = await run(s, 'nll', batch, { vocabChunk: CHUNK, ...ext });
        const plain = await run(s, 'nll', batch);
        assert.ok(maxRelDiff(chunked, ref) < 1e-5, `chunked NLL off by ${maxRelDiff(chunked, ref)}`);
        assert.ok(maxRelDiff(plain, ref) < 1e-5, `plain NLL off by ${maxRelDiff(plain, ref)}`);
        for (let t = 20; t < 24; t++) assert.equal(chunked[t], 0, 'ignored target gives 0');
      });
    }
  }

  test('NLL stays finite and exact when logits reach the thousands (log-sum-exp without overflow)', async () => {
    const s = model(6, false, 400);
    const batch = tokens(7);
    const logits = await run(s, 'logits', batch);
    const peak = logits.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    assert.ok(peak > 100, `logits too small to test overflow: ${peak}`);
    const chunked = await run(s, 'nll', batch, { vocabChunk: CHUNK });
    assert.ok(maxRelDiff(chunked, referenceNll(logits, batch.targets!)) < 1e-5);
  });

  for (const tie of [false, true]) {
    test(`KL ${tie ? 'tied' : 'untied'} head: equals float64 KL(ref || model) from the logits`, async () => {
      const s = model(8, tie);
      const other = model(9, tie); // the reference: another model's log-probabilities
      const batch = tokens(10);
      const refLp = logprobs(await run(other, 'logits', batch));
      const lp = logprobs(await run(s, 'logits', batch));
      const expected = new Float64Array(batch.batch * batch.seq);
      for (let i = 0; i < expected.length; i++) {
        for (let v = 0; v < VOCAB; v++) {
          const r = refLp[i * VOCAB + v];
          expected[i] += Math.exp(r) * (r - lp[i * VOCAB + v]);
        }
      }
      const withRef = { ...batch, refLogprobs: Float32Array.from(refLp) };
      const chunked = await run(s, 'kl', withRef, { vocabChunk: CHUNK });
      const plain = await run(s, 'kl', withRef);
      assert.ok(maxRelDiff(chunked, expected) < 1e-5, `chunked KL off by ${maxRelDiff(chunked, expected)}`);
      assert.ok(maxRelDiff(plain, expected) < 1e-5, `plain KL off by ${maxRelDiff(plain, expected)}`);
    });
  }

  for (const tie of [false, true]) {
    test(`fp16 weights, ${tie ? 'tied' : 'untied'} head: chunked NLL equals the fp16 model's own log-softmax`, async () => {
      const s = model(tie ? 13 : 14, tie);
      const batch = tokens(15);
      for (const where of [{}, { externalDataThreshold: 0 }]) {
        const logits = await run(s, 'logits', batch, { dtype: 'fp16', ...where });
        const chunked = await run(s, 'nll', batch, { vocabChunk: CHUNK, dtype: 'fp16', ...where });
        const d = maxRelDiff(chunked, referenceNll(logits, batch.targets!));
        assert.ok(d < 1e-5, `fp16 chunked NLL off by ${d}`);
      }
    });
  }

  test('an id or target outside the vocabulary is an error, not a zero row', async () => {
    const s = model(11, true);
    const batch = tokens(12);
    batch.ids[5] = BigInt(VOCAB);
    await assert.rejects(
      run(s, 'nll', batch, { vocabChunk: CHUNK }),
      /token id 300 at position 5 is outside the model's vocabulary of 300/,
    );
    const b2 = tokens(12);
    b2.targets![3] = -1n;
    await assert.rejects(run(s, 'nll', b2, { vocabChunk: CHUNK }), /target -1 at position 3 is outside/);
  });
});
