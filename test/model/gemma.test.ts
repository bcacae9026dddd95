/**
 * Gemma and Gemma 2: small random checkpoints written as real Hugging Face folders (GemmaForCausalLM /
 * Gemma2ForCausalLM names) load into the spec and their logits match the plain reference forward (written from the
 * published definitions over the HF tensors) to 1e-4, with and without masked heads, on the fused and the explicit
 * attention paths; the KV-cache graph agrees with the full graph on Gemma 2 past its sliding window; spec → HF →
 * spec is exact; what the graph cannot honour fails in one line naming config.json.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { createRunner } from '../../src/engine/runner.js';
import type { GenepruneError } from '../../src/errors.js';
import { gemmaSpecToHf } from '../../src/model/gemma.js';
import { loadModelSpec } from '../../src/model/load.js';
import type { ModelSpec } from '../../src/model/spec.js';
import { tempDir } from '../checkpoint/helpers.js';
import { type GemmaShape as Shape, type GemmaTensors as Tensors, writeGemma } from '../helpers/gemma.js';
import {
  assertConfigRefused,
  assertReloadsAs,
  assertWrittenTensors,
  writtenReferenceShape,
} from '../helpers/hffolder.js';
import {
  cachedLogits,
  engineLogits,
  familyComparison,
  maxAbsDiff,
  prefillThenSteps,
  randomTokens,
  referenceLogits,
  twoRows,
} from '../helpers/logits.js';
import { type GemmaReference, gemmaForward } from '../reference/gemma.js';

const tmp = tempDir('geneprune-gemma-');
after(tmp.cleanup);

/** The reference model of a written folder, read from its config.json the way the published definition does. */
function referenceOf(s: Shape, tensors: Tensors, config: Record<string, unknown>): GemmaReference {
  const nullable = (key: string, fallback: number) =>
    !(key in config) ? fallback : config[key] === null ? undefined : (config[key] as number);
  const act = (config.hidden_activation ?? config.hidden_act ?? 'gelu_pytorch_tanh') as string;
  return {
    ...writtenReferenceShape(s, tensors),
    gemma2: s.type === 'gemma2',
    activation: act === 'gelu' ? 'gelu' : 'gelu_tanh',
    queryPreAttnScalar: config.query_pre_attn_scalar as number | undefined,
    attnSoftcap: nullable('attn_logit_softcapping', 50),
    finalSoftcap: nullable('final_logit_softcapping', 30),
    slidingWindow: nullable('sliding_window', 4096),
    layerTypes: config.layer_types as string[] | undefined,
  };
}

/** The reference as the shared comparison (test/helpers/logits.ts) runs it, and engine logits against it. */
const { forward, assertMatches } = familyComparison(gemmaForward);

// MQA (one KV head) and head_dim 8 with hidden 24: head_dim ≠ hidden / heads.
const GEMMA: Shape = {
  type: 'gemma',
  hidden: 24,
  layers: 2,
  heads: 4,
  kvHeads: 1,
  headDim: 8,
  inter: 40,
  vocab: 37,
};
const GEMMA2: Shape = {
  type: 'gemma2',
  hidden: 32,
  layers: 3,
  heads: 4,
  kvHeads: 2,
  headDim: 8,
  inter: 48,
  vocab: 37,
};
const MASK3 = [
  [1, 0, 1, 1],
  [0, 1, 1, 0],
  [1, 1, 0, 1],
];

describe('Gemma checkpoints match the reference forward', () => {
  test('Gemma with MQA and head_dim ≠ hidden/heads: spec fields, logits with and without masked heads', async () => {
    const dir = join(tmp.dir, 'gemma');
    const { tensors, config } = await writeGemma(dir, GEMMA, 1);
    const spec = await loadModelSpec(dir);
    const c = spec.config;
    assert.equal(c.family, 'gemma');
    assert.equal(c.modelType, 'gemma');
    assert.equal(c.normWeightOffset, 1);
    assert.equal(c.embedScale, Math.sqrt(24));
    assert.equal(c.activation, 'gelu_tanh');
    assert.equal(c.headDim, 8);
    assert.deepEqual(c.kvHeadsPerLayer, [1, 1]);
    assert.ok(c.tieEmbeddings);
    assert.equal(c.attnScale, undefined);
    assert.equal(c.sandwichNorms, undefined);
    await assertMatches(spec, referenceOf(GEMMA, tensors, config), MASK3.slice(0, 2));
  });

  test('Gemma with attention biases and an untied head', async () => {
    const s: Shape = { ...GEMMA, kvHeads: 2, attentionBias: true, tied: false };
    const dir = join(tmp.dir, 'gemma-bias');
    const { tensors, config } = await writeGemma(dir, s, 2);
    const spec = await loadModelSpec(dir);
    assert.ok(spec.config.attentionBias && spec.config.attentionOutBias && !spec.config.tieEmbeddings);
    await assertMatches(spec, referenceOf(s, tensors, config), MASK3.slice(0, 2));
  });

  test('an old Gemma config with only hidden_act "gelu" runs the exact GELU, as transformers ≥ 4.48 does', async () => {
    const dir = join(tmp.dir, 'gemma-gelu');
    const { tensors, config } = await writeGemma(dir, GEMMA, 3, { hidden_act: 'gelu' });
    const spec = await loadModelSpec(dir);
    assert.equal(spec.config.activation, 'gelu');
    const ref = referenceOf(GEMMA, tensors, config);
    assert.equal(ref.activation, 'gelu');
    const seqs = twoRows(9, GEMMA.vocab);
    assert.ok(maxAbsDiff(await engineLogits(spec, seqs), referenceLogits(forward(ref), seqs)) <= 1e-4);
    // hidden_activation, where a config states it, is the explicit choice and wins.
    const both = join(tmp.dir, 'gemma-gelu-both');
    await writeGemma(both, GEMMA, 3, { hidden_act: 'gelu', hidden_activation: 'gelu_pytorch_tanh' });
    assert.equal((await loadModelSpec(both)).config.activation, 'gelu_tanh');
  });

  test('Gemma 2: soft-caps that bite and a window shorter than the sequence', async () => {
    const dir = join(tmp.dir, 'gemma2');
    const { tensors, config } = await writeGemma(dir, GEMMA2, 4);
    const spec = await loadModelSpec(dir);
    const c = spec.config;
    assert.equal(c.modelType, 'gemma2');
    assert.equal(c.attnScale, 12 ** -0.5);
    assert.equal(c.attnSoftcap, 1.5);
    assert.equal(c.finalSoftcap, 2.5);
    assert.deepEqual(c.slidingWindow, [3, 0, 3]);
    assert.equal(c.sandwichNorms, true);
    const ref = referenceOf(GEMMA2, tensors, config);
    // The test is only worth something if each Gemma 2 feature changes the logits.
    const seqs = twoRows(9, GEMMA2.vocab);
    const base = referenceLogits(forward(ref), seqs);
    for (const [what, change] of [
      ['attention soft-cap', { attnSoftcap: undefined }],
      ['final soft-cap', { finalSoftcap: undefined }],
      ['sliding window', { slidingWindow: undefined }],
    ] as const) {
      const d = maxAbsDiff(referenceLogits(forward({ ...ref, ...change }), seqs), base);
      assert.ok(d > 1e-2, `${what} changes the logits by only ${d}`);
    }
    await assertMatches(spec, ref, MASK3);
  });

  test('Gemma 2 layer_types, when present, choose the sliding layers', async () => {
    const dir = join(tmp.dir, 'gemma2-types');
    const layerTypes = ['full_attention', 'sliding_attention', 'sliding_attention'];
    const { tensors, config } = await writeGemma(dir, GEMMA2, 5, { layer_types: layerTypes });
    const spec = await loadModelSpec(dir);
    assert.deepEqual(spec.config.slidingWindow, [0, 3, 3]);
    const ref = referenceOf(GEMMA2, tensors, config);
    const seqs = twoRows(9, GEMMA2.vocab);
    const expected = referenceLogits(forward(ref), seqs);
    assert.ok(maxAbsDiff(referenceLogits(forward({ ...ref, layerTypes: undefined }), seqs), expected) > 1e-2);
    assert.ok(
      maxAbsDiff(await engineLogits(spec, seqs, undefined, { attention: 'explicit' }), expected) <= 1e-4,
    );
  });

  test('Gemma 2 without soft-caps or windows runs the fused kernel with its own score scale', async () => {
    const dir = join(tmp.dir, 'gemma2-plain');
    const { tensors, config } = await writeGemma(dir, GEMMA2, 6, {
      attn_logit_softcapping: null,
      final_logit_softcapping: null,
      sliding_window: null,
    });
    const spec = await loadModelSpec(dir);
    assert.equal(spec.config.attnSoftcap, undefined);
    assert.equal(spec.config.finalSoftcap, undefined);
    assert.deepEqual(spec.config.slidingWindow, [0, 0, 0]);
    await assertMatches(spec, referenceOf(GEMMA2, tensors, config), MASK3);
  });

  test('transformers defaults apply where Gemma 2 config.json leaves keys out', async () => {
    const dir = join(tmp.dir, 'gemma2-defaults');
    await writeGemma(dir, GEMMA2, 7, {
      query_pre_attn_scalar: undefined,
      sliding_window: undefined,
      attn_logit_softcapping: undefined,
      final_logit_softcapping: undefined,
    });
    const c = (await loadModelSpec(dir)).config;
    assert.equal(c.attnScale, 1 / 16);
    assert.equal(c.attnSoftcap, 50);
    assert.equal(c.finalSoftcap, 30);
    assert.deepEqual(c.slidingWindow, [4096, 0, 4096]);
  });

  test('Gemma 2 output nll, whole and in vocabulary chunks, equals the reference cross-entropy', async () => {
    const dir = join(tmp.dir, 'gemma2-nll');
    const { tensors, config } = await writeGemma(dir, GEMMA2, 8);
    const spec = await loadModelSpec(dir);
    const ref = referenceOf(GEMMA2, tensors, config);
    const seqs = twoRows(9, GEMMA2.vocab);
    const targets = seqs.map((seq, b) => [...seq.slice(1), b === 0 ? 5 : -100]);
    const expected = seqs.flatMap((seq, b) =>
      gemmaForward(ref, seq).map((logits, t) => {
        const target = targets[b][t];
        if (target < 0) return 0;
        const max = Math.max(...logits);
        const lse = max + Math.log(logits.reduce((s, v) => s + Math.exp(v - max), 0));
        return lse - logits[target];
      }),
    );
    for (const vocabChunk of [undefined, 8]) {
      const runner = await createRunner(spec, { output: 'nll', ...(vocabChunk ? { vocabChunk } : {}) });
      const nll = await runner.run({
        batch: 2,
        seq: 9,
        ids: BigInt64Array.from(seqs.flat().map(BigInt)),
        targets: BigInt64Array.from(targets.flat().map(BigInt)),
      });
      await runner.release();
      const d = maxAbsDiff(nll, expected);
      assert.ok(d <= 1e-4, `vocabChunk ${vocabChunk}: max abs diff ${d}`);
    }
  });
});

describe('Gemma 2 KV-cache graph', () => {
  test('prefill + token-by-token decoding past the sliding window equals the full forward', async () => {
    const dir = join(tmp.dir, 'gemma2-cache');
    const { tensors, config } = await writeGemma(dir, GEMMA2, 9);
    const spec = await loadModelSpec(dir);
    const V = GEMMA2.vocab;
    const tokens = randomTokens(12, V, 3);
    const cached = await cachedLogits(spec, tokens, prefillThenSteps(tokens, 4));
    const full = await engineLogits(spec, [tokens], undefined, { attention: 'explicit' });
    assert.ok(maxAbsDiff(cached, full) <= 1e-4, `cache vs full: ${maxAbsDiff(cached, full)}`);
    const expected = referenceLogits(forward(referenceOf(GEMMA2, tensors, config)), [tokens]);
    assert.ok(maxAbsDiff(cached, expected) <= 1e-4, `cache vs reference: ${maxAbsDiff(cached, expected)}`);
  });
});

describe('Gemma spec → Hugging Face → spec', () => {
  for (const [name, s] of [
    ['gemma (MQA, biases, untied)', { ...GEMMA, attentionBias: true, tied: false }],
    ['gemma2', GEMMA2],
    [
      'gemma2, physically pruned (per-layer heads, uneven KV groups, a layer without heads)',
      {
        ...GEMMA2,
        headsPerLayer: [3, 0, 2],
        kvHeadsPerLayer: [2, 0, 1],
        kvHeadOfQuery: [[0, 1, 1], [], [0, 0]],
      },
    ],
  ] as Array<[string, Shape]>) {
    test(`${name}: config and every tensor survive exactly`, async () => {
      const dir = join(tmp.dir, `rt-${name.length}`);
      const { tensors, config } = await writeGemma(dir, s, 10);
      const spec = await loadModelSpec(dir);
      if (s.headsPerLayer) {
        await assertMatches(spec, referenceOf(s, tensors, config), [[1, 0, 1], [], [0, 1]]);
      }
      const hf = gemmaSpecToHf(spec);
      await assertWrittenTensors(hf.tensors, tensors);
      const back = join(tmp.dir, `rt-back-${name.length}`);
      await assertReloadsAs(spec, hf, back);
    });
  }

  test('what a gemma config.json cannot say is refused in one line', () => {
    const spec: ModelSpec = {
      config: {
        family: 'gemma',
        modelType: 'gemma',
        hiddenSize: 8,
        numLayers: 1,
        numHeads: 2,
        numKvHeads: 1,
        headDim: 4,
        headsPerLayer: [2],
        kvHeadsPerLayer: [1],
        intermediateSize: 8,
        vocabSize: 5,
        maxPositions: 8,
        normKind: 'rms',
        normPlacement: 'pre',
        normEps: 1e-6,
        activation: 'gelu_tanh',
        mlpKind: 'gated',
        positionKind: 'rope',
        ropeTheta: 10000,
        attentionBias: false,
        attentionOutBias: false,
        mlpBias: false,
        tieEmbeddings: true,
        normWeightOffset: 1,
        embedScale: Math.sqrt(8),
        finalSoftcap: 30,
      },
      tensors: new Map(),
      source: '/models/x',
    };
    assert.throws(
      () => gemmaSpecToHf(spec),
      (e: GenepruneError) =>
        e.oneLine() === '/models/x: a gemma config.json cannot express this model: logits are soft-capped',
    );
    const gemma2 = { ...spec, config: { ...spec.config, modelType: 'gemma2', finalSoftcap: undefined } };
    assert.throws(
      () => gemmaSpecToHf(gemma2),
      (e: GenepruneError) =>
        e.oneLine() === '/models/x: model_type gemma2 needs sandwich norms, which this model lacks',
    );
  });
});

describe('Gemma configs the graph cannot honour fail in one line naming config.json', () => {
  for (const [s, extra, words] of [
    [GEMMA, { rope_scaling: { type: 'linear', factor: 2 } }, 'rope_scaling type "linear" is not supported'],
    [
      GEMMA2,
      { rope_parameters: { rope_type: 'yarn', rope_theta: 10000 } },
      'rope_parameters type "yarn" is not supported',
    ],
    [GEMMA, { model_type: 'gemma3' }, 'model_type "gemma3" is not supported'],
    [GEMMA, { hidden_act: 'quick_gelu' }, 'hidden_act "quick_gelu" is not supported'],
    [GEMMA2, { hidden_activation: 'gelu_fast' }, 'hidden_activation "gelu_fast" is not supported'],
    [
      GEMMA2,
      { layer_types: ['sliding_attention', 'chunked_attention', 'full_attention'] },
      '"layer_types"[1] "chunked_attention" is not supported',
    ],
    [GEMMA2, { layer_types: ['sliding_attention'] }, '"layer_types" must list 3 layer types'],
    [GEMMA, { use_bidirectional_attention: true }, 'use_bidirectional_attention true is not supported'],
    [GEMMA2, { num_key_value_heads: 3 }, 'num_attention_heads 4 is not a multiple of num_key_value_heads 3'],
    [GEMMA2, { attn_logit_softcapping: -1 }, '"attn_logit_softcapping" must be a positive number'],
  ] as Array<[Shape, Record<string, unknown>, string]>) {
    test(words, async () => {
      const dir = join(tmp.dir, `bad-${words.replace(/\W+/g, '-')}`);
      await writeGemma(dir, s, 11, extra);
      await assertConfigRefused(dir, words);
    });
  }

  test('a wrong tensor shape names the weights file and the tensor', async () => {
    const dir = join(tmp.dir, 'bad-shape');
    await writeGemma(dir, GEMMA, 12, { intermediate_size: 36 });
    await assert.rejects(loadModelSpec(dir), (e: GenepruneError) => {
      assert.equal(
        e.oneLine(),
        `${join(dir, 'model.safetensors')}: tensor model.layers.0.mlp.gate_proj.weight has shape [40,24], config.json implies [36,24]`,
      );
      return true;
    });
  });

  test('Gemma tensors under model_type gemma2 are missing their sandwich norms', async () => {
    const dir = join(tmp.dir, 'bad-missing');
    await writeGemma(dir, GEMMA, 13, { model_type: 'gemma2', layer_types: undefined });
    await assert.rejects(loadModelSpec(dir), (e: GenepruneError) => {
      assert.equal(
        e.oneLine(),
        `${dir}: missing tensors: model.layers.0.pre_feedforward_layernorm.weight, model.layers.0.post_feedforward_layernorm.weight, model.layers.1.pre_feedforward_layernorm.weight, model.layers.1.post_feedforward_layernorm.weight`,
      );
      return true;
    });
  });

  test('Gemma 2 tensors under model_type gemma are unexpected', async () => {
    const dir = join(tmp.dir, 'bad-unexpected');
    await writeGemma(dir, GEMMA2, 14, { model_type: 'gemma' });
    await assert.rejects(loadModelSpec(dir), (e: GenepruneError) => {
      assert.equal(
        e.oneLine(),
        `${join(dir, 'model.safetensors')}: unexpected tensor model.layers.0.pre_feedforward_layernorm.weight: not part of a gemma model as config.json describes it`,
      );
      return true;
    });
  });
});
