/**
 * The deployment (KV-cache) graph must give the same logits as the full-sequence evaluation graph: prefill then
 * token-by-token decoding, for dense and physically pruned models (uneven query→KV maps, a layer with no heads),
 * and with a left-padded batch.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { emptyPastFeeds, pastFromPresent } from '../../src/engine/kvcache.js';
import { createRunner } from '../../src/engine/runner.js';
import { createEngine } from '../../src/engine/session.js';
import { buildDecoderGraph } from '../../src/graph/decoder.js';
import { loadWeights } from '../../src/graph/weights.js';
import { randomLlamaSpec } from '../../src/model/random.js';
import type { ModelSpec } from '../../src/model/spec.js';
import { pruneHeads } from '../../src/prune/heads.js';
import { createRng } from '../../src/util/rng.js';

const V = 31;

function model(): ModelSpec {
  return randomLlamaSpec({
    hiddenSize: 32,
    numLayers: 3,
    numHeads: 4,
    numKvHeads: 2,
    intermediateSize: 24,
    vocabSize: V,
    maxPositions: 32,
    attentionBias: true,
    modelType: 'qwen2',
    seed: 11,
    scale: 20,
  });
}

async function fullLogits(spec: ModelSpec, tokens: number[]): Promise<Float32Array> {
  const runner = await createRunner(spec, { output: 'logits' });
  const out = await runner.run({ batch: 1, seq: tokens.length, ids: BigInt64Array.from(tokens.map(BigInt)) });
  await runner.release();
  return out;
}

async function cachedSession(spec: ModelSpec) {
  const graph = buildDecoderGraph(spec, await loadWeights(spec), { output: 'logits', kvCache: true });
  return createEngine(graph);
}

const emptyPast = (spec: ModelSpec, batch: number) => emptyPastFeeds(spec.config, batch);

const int64 = (xs: number[]) => BigInt64Array.from(xs.map(BigInt));

async function decodeIncrementally(
  spec: ModelSpec,
  tokens: number[],
  prefill: number,
): Promise<Float32Array> {
  const engine = await cachedSession(spec);
  const logits = new Float32Array(tokens.length * V);
  let past = emptyPast(spec, 1);
  let pos = 0;
  const steps = [tokens.slice(0, prefill), ...tokens.slice(prefill).map((t) => [t])];
  for (const chunk of steps) {
    const total = pos + chunk.length;
    const out = await engine.run({
      input_ids: { type: 'int64', dims: [1, chunk.length], data: int64(chunk) },
      attention_mask: { type: 'int64', dims: [1, total], data: int64(Array(total).fill(1)) },
      position_ids: { type: 'int64', dims: [1, chunk.length], data: int64(chunk.map((_, j) => pos + j)) },
      ...past,
    });
    logits.set(out.logits.data, pos * V);
    spec.config.kvHeadsPerLayer.forEach((kv, i) => {
      for (const kind of ['key', 'value']) {
        assert.deepEqual([...out[`present.${i}.${kind}`].dims], [1, kv, total, spec.config.headDim]);
      }
    });
    past = pastFromPresent(spec.config, out);
    pos = total;
  }
  await engine.release();
  return logits;
}

function maxDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

describe('KV-cache graph', () => {
  const rng = createRng(5);
  const tokens = Array.from({ length: 12 }, () => rng.nextInt(V));

  test('prefill + incremental decoding equals the full forward (dense)', async () => {
    const spec = model();
    const diff = maxDiff(await decodeIncrementally(spec, tokens, 5), await fullLogits(spec, tokens));
    assert.ok(diff <= 1e-4, `max abs diff ${diff}`);
  });

  test('physically pruned: uneven KV groups and a layer with no heads', async () => {
    // Layer 0 keeps heads 0,1,3 (KV head 1 serves only head 3); layer 1 keeps none; layer 2 keeps head 2.
    const genome = Uint8Array.from([1, 1, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0]);
    const pruned = pruneHeads(model(), genome);
    assert.deepEqual(pruned.config.kvHeadsPerLayer, [2, 0, 1]);
    const diff = maxDiff(await decodeIncrementally(pruned, tokens, 4), await fullLogits(pruned, tokens));
    assert.ok(diff <= 1e-4, `max abs diff ${diff}`);
  });

  test('a left-padded batch matches each sequence run alone', async () => {
    const spec = model();
    const short = tokens.slice(0, 7);
    const engine = await cachedSession(spec);
    const T = tokens.length;
    const pad = T - short.length;
    const out = await engine.run({
      input_ids: { type: 'int64', dims: [2, T], data: int64([...tokens, ...Array(pad).fill(0), ...short]) },
      attention_mask: {
        type: 'int64',
        dims: [2, T],
        data: int64([...Array(T).fill(1), ...Array(pad).fill(0), ...Array(short.length).fill(1)]),
      },
      position_ids: {
        type: 'int64',
        dims: [2, T],
        data: int64([...tokens.map((_, j) => j), ...Array(pad).fill(0), ...short.map((_, j) => j)]),
      },
      ...emptyPast(spec, 2),
    });
    await engine.release();
    const logits = out.logits.data;
    assert.ok(logits.every(Number.isFinite), 'padded rows stay finite');
    assert.ok(maxDiff(logits.subarray(0, T * V), await fullLogits(spec, tokens)) <= 1e-4);
    const alone = await fullLogits(spec, short);
    assert.ok(maxDiff(logits.subarray((T + pad) * V, 2 * T * V), alone) <= 1e-4);
  });
});
