/**
 * Weights outside the protobuf: the eval graph gives the same logits with its weights inline, as external data
 * passed in memory (referenced where loadWeights put them), and as an external file (prepareWeights), which may
 * be deleted once the session has started.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { after, describe, test } from 'node:test';
import { createRunner } from '../../src/engine/runner.js';
import { TENSOR_ALIGN } from '../../src/graph/builder.js';
import { buildDecoderGraph } from '../../src/graph/decoder.js';
import { isWeightFile, loadWeights, prepareWeights, releaseWeights } from '../../src/graph/weights.js';
import { randomLlamaSpec } from '../../src/model/random.js';
import type { ModelSpec } from '../../src/model/spec.js';
import { createRng } from '../../src/util/rng.js';
import { tempDir } from '../checkpoint/helpers.js';

const tmp = tempDir('geneprune-external-');
after(tmp.cleanup);

const V = 37;
const spec = (modelType: string, tie: boolean): ModelSpec =>
  randomLlamaSpec({
    hiddenSize: 32,
    numLayers: 2,
    numHeads: 4,
    numKvHeads: 2,
    intermediateSize: 24,
    vocabSize: V,
    maxPositions: 16,
    modelType,
    tieEmbeddings: tie,
    seed: 3,
    scale: 20,
  });

const tokens = (() => {
  const rng = createRng(4);
  return BigInt64Array.from({ length: 2 * 9 }, () => BigInt(rng.nextInt(V)));
})();

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

for (const [modelType, tie] of [
  ['qwen2', true],
  ['llama', false],
] as const) {
  describe(`${modelType}, ${tie ? 'tied' : 'untied'}`, () => {
    const model = spec(modelType, tie);
    const run = async (opts: Parameters<typeof createRunner>[1]) => {
      const runner = await createRunner(model, opts);
      const out = await runner.run({ batch: 2, seq: 9, ids: tokens });
      await runner.release();
      return out;
    };

    test('external data in memory refers to the loaded blobs and gives the inline logits', async () => {
      const weights = await loadWeights(model);
      assert.equal(weights.blobs?.length, 1);
      const graph = buildDecoderGraph(model, weights, { output: 'logits', externalDataThreshold: 0 });
      const inline = buildDecoderGraph(model, weights, { output: 'logits' });
      assert.deepEqual(inline.externalData, [], 'small models stay inline by default');
      // The embedding is in the blob itself, not a copy; every large tensor lies 64-byte aligned.
      const blob = graph.externalData.find((f) => f.parts[0].data === weights.blobs![0].bytes);
      assert.ok(blob, 'the blob is passed as is');
      assert.equal(weights.get('embed.tokens')!.byteOffset % TENSOR_ALIGN, 0);
      assert.ok(graph.model.byteLength < inline.model.byteLength / 4, 'the protobuf holds no weights');

      const expected = await run({ output: 'logits', weights });
      const external = await run({ output: 'logits', weights, externalDataThreshold: 0 });
      assert.ok(maxDiff(external, expected) <= 1e-6, `max diff ${maxDiff(external, expected)}`);
    });

    test('an external file gives the inline logits and can go once the session runs', async () => {
      const expected = await run({ output: 'logits' });
      const weights = await prepareWeights(model, { externalDataThreshold: 0, tempDir: tmp.dir });
      assert.ok(isWeightFile(weights));
      assert.ok(existsSync(weights.dir));
      const runner = await createRunner(model, { output: 'logits', weights });
      await releaseWeights(weights);
      assert.ok(!existsSync(weights.dir), 'released weights leave no file');
      const out = await runner.run({ batch: 2, seq: 9, ids: tokens });
      await runner.release();
      assert.ok(maxDiff(out, expected) <= 1e-6, `max diff ${maxDiff(out, expected)}`);
      // A runner that prepares its own file deletes it itself.
      const before = readdirSync(tmp.dir).length;
      const own = await run({ output: 'logits', externalDataThreshold: 0 });
      assert.ok(maxDiff(own, expected) <= 1e-6);
      assert.equal(readdirSync(tmp.dir).length, before);
    });
  });
}
