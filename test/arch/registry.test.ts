/**
 * The architecture table takes a new kind from a test file alone: a toy decoder variant (the decoder's graph with
 * its input embedding scaled by 2, and its heads in two named stacks) is registered here, run through createRunner
 * against the plain-TypeScript reference forward, and its head genomes are read through masks/heads.ts.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { DECODER } from '../../src/arch/decoder.js';
import type { ArchDescriptor } from '../../src/arch/descriptor.js';
import { archOf, buildGraph, registerArch, unregisterArch } from '../../src/arch/registry.js';
import { createRunner } from '../../src/engine/runner.js';
import { GenepruneError } from '../../src/errors.js';
import { loadWeights } from '../../src/graph/weights.js';
import { geneCount, headMaskOf, removedList } from '../../src/masks/heads.js';
import { randomLlamaSpec } from '../../src/model/random.js';
import { kvMapOfLayer, type ModelSpec } from '../../src/model/spec.js';
import { createRng } from '../../src/util/rng.js';
import { type ReferenceWeights, referenceForward } from '../reference/llama.js';

const TOY: ArchDescriptor = {
  ...DECODER,
  kind: 'toy-scaled-decoder',
  // The twist: the decoder's graph of the same weights with the token embedding multiplied by 2.
  buildGraph: (spec, weights, opts) =>
    DECODER.buildGraph(
      { ...spec, config: { ...spec.config, arch: 'decoder', embedScale: 2 } },
      weights,
      opts,
    ),
  // Layer 0 in a stack of its own, the other layers in a second one.
  headStacks: (config) => [
    {
      name: 'lower',
      headsPerLayer: config.headsPerLayer.slice(0, 1),
      firstMaskRow: 0,
      kvMap: (l) => kvMapOfLayer(config, l),
      rolePrefix: (l) => `layers.${l}.attn`,
    },
    {
      name: 'upper',
      headsPerLayer: config.headsPerLayer.slice(1),
      firstMaskRow: 1,
      kvMap: (l) => kvMapOfLayer(config, 1 + l),
      rolePrefix: (l) => `layers.${1 + l}.attn`,
    },
  ],
};
registerArch(TOY);
after(() => unregisterArch(TOY.kind));

const spec = randomLlamaSpec({
  hiddenSize: 32,
  numLayers: 3,
  numHeads: 4,
  numKvHeads: 2,
  intermediateSize: 40,
  vocabSize: 37,
  maxPositions: 32,
  tieEmbeddings: false,
  seed: 7,
  scale: 20,
});
const toySpec: ModelSpec = { ...spec, config: { ...spec.config, arch: TOY.kind } };

/** The reference's weights, with the token embedding doubled when `scaled`. */
async function referenceWeights(scaled: boolean): Promise<ReferenceWeights> {
  const w = new Map<string, Float32Array>();
  for (const [role, t] of spec.tensors) {
    const data = await t.load();
    w.set(role, scaled && role === 'embed.tokens' ? data.map((x) => 2 * x) : data);
  }
  return { ...spec.config, get: (r) => w.get(r) };
}

/** Largest |logit − reference| over one batch of two random rows. */
async function worstDiff(s: ModelSpec, ref: ReferenceWeights, mask?: Float32Array, rows?: number[][]) {
  const V = s.config.vocabSize;
  const rng = createRng(3);
  const seqs = [0, 1].map(() => Array.from({ length: 9 }, () => rng.nextInt(V)));
  const runner = await createRunner(s, { output: 'logits' });
  const out = await runner.run(
    { batch: 2, seq: 9, ids: BigInt64Array.from(seqs.flat().map(BigInt)) },
    { headMask: mask },
  );
  await runner.release();
  let worst = 0;
  seqs.forEach((seq, b) => {
    const expected = referenceForward(ref, seq, { rotary: 'half', headMask: rows });
    for (let t = 0; t < seq.length; t++) {
      for (let v = 0; v < V; v++)
        worst = Math.max(worst, Math.abs(expected[t][v] - out[(b * 9 + t) * V + v]));
    }
  });
  return worst;
}

describe('a toy architecture kind registered from a test file', () => {
  test('createRunner builds the toy kind graph, which matches the reference with a doubled embedding', async () => {
    const scaled = await referenceWeights(true);
    assert.ok((await worstDiff(toySpec, scaled)) < 1e-4);
    // The same weights as a plain decoder are another model: the lookup went to the toy descriptor.
    assert.ok((await worstDiff(spec, scaled)) > 1e-2);
    assert.ok((await worstDiff(spec, await referenceWeights(false))) < 1e-4);
  });

  test('its head genome is the concatenation of its named stacks', async () => {
    const genes = 3 * 4;
    assert.equal(geneCount(toySpec.config), genes);
    const genome = new Uint8Array(genes).fill(1);
    genome[1] = 0; // lower stack, its layer 0, head 1
    genome[4 + 2] = 0; // upper stack, its layer 0 (model layer 1), head 2
    genome[8 + 3] = 0; // upper stack, its layer 1 (model layer 2), head 3
    assert.deepEqual(removedList(toySpec.config, genome), ['lower.0:1', 'upper.0:2', 'upper.1:3']);
    assert.deepEqual(removedList(spec.config, genome), ['0:1', '1:2', '2:3']);
    const mask = headMaskOf(toySpec.config, genome);
    const rows = [
      [1, 0, 1, 1],
      [1, 1, 0, 1],
      [1, 1, 1, 0],
    ];
    assert.deepEqual([...mask], rows.flat());
    assert.ok((await worstDiff(toySpec, await referenceWeights(true), mask, rows)) < 1e-4);
  });

  test('buildGraph dispatches by kind; unknown kinds and second registrations are refused in one line', async () => {
    const weights = await loadWeights(spec);
    const scaledSpec = { ...spec, config: { ...spec.config, embedScale: 2 } };
    assert.deepEqual(
      buildGraph(toySpec, weights, { output: 'nll' }).model,
      buildGraph(scaledSpec, weights, { output: 'nll' }).model,
    );
    assert.throws(
      () => archOf({ arch: 'no-such-kind' }),
      (e: unknown) =>
        e instanceof GenepruneError &&
        e.message ===
          `architecture kind 'no-such-kind' is not one this build knows (decoder, encoder, encdec, ${TOY.kind})`,
    );
    assert.throws(
      () => registerArch({ ...TOY, kind: 'decoder' }),
      /architecture kind 'decoder' is already registered/,
    );
    assert.throws(() => unregisterArch('encoder'), /architecture kind 'encoder' is built in/);
    assert.equal(archOf({}).kind, 'decoder');
  });
});
