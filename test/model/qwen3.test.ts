/**
 * Qwen3: small random checkpoints written as real Hugging Face folders (Qwen3ForCausalLM names) load into the spec
 * and their logits match the plain reference forward (written from the published definition over the HF tensors)
 * to 1e-4 — GQA, head_dim ≠ hidden/heads, per-head q/k norms — with and without masked heads, on the fused and the
 * explicit attention paths, through composed block graphs and through the KV-cache graph; sliding windows follow
 * transformers' rule; spec → HF → spec is exact, a physically head-pruned model included; Qwen3-0.6B's published
 * config.json maps to its shape; what the graph cannot honour (qwen3_moe among it) fails in one line naming
 * config.json.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { createRunner } from '../../src/engine/runner.js';
import { loadModelSpec } from '../../src/model/load.js';
import { qwen3ConfigFromHf, qwen3SpecToHf } from '../../src/model/qwen3.js';
import { pruneHeads } from '../../src/prune/heads.js';
import { tempDir } from '../checkpoint/helpers.js';
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
import { type Qwen3Shape as Shape, type Qwen3Tensors as Tensors, writeQwen3 } from '../helpers/qwen3.js';
import { type Qwen3Reference, qwen3Forward } from '../reference/qwen3.js';

const tmp = tempDir('geneprune-qwen3-');
after(tmp.cleanup);

/** The reference model of a written folder; `windows` as transformers' Qwen3Config derives them (stated by hand). */
function referenceOf(s: Shape, tensors: Tensors, windows?: number[]): Qwen3Reference {
  return { ...writtenReferenceShape(s, tensors), windows };
}

/** The reference as the shared comparison (test/helpers/logits.ts) runs it, and engine logits against it. */
const { forward, assertMatches } = familyComparison(qwen3Forward);

// GQA (4 query heads over 2 KV heads) and head_dim 8 with hidden 24: q dim 32 ≠ hidden, as in Qwen3-0.6B.
const QWEN3: Shape = { hidden: 24, layers: 3, heads: 4, kvHeads: 2, headDim: 8, inter: 40, vocab: 37 };
const MASK3 = [
  [1, 0, 1, 1],
  [0, 1, 1, 0],
  [1, 1, 0, 1],
];

describe('Qwen3 checkpoints match the reference forward', () => {
  test('GQA, head_dim ≠ hidden/heads, tied head: spec fields, logits with and without masked heads', async () => {
    const dir = join(tmp.dir, 'qwen3');
    const { tensors } = await writeQwen3(dir, QWEN3, 1);
    const spec = await loadModelSpec(dir);
    const c = spec.config;
    assert.equal(c.family, 'qwen3');
    assert.equal(c.modelType, 'qwen3');
    assert.equal(c.qkNorm, true);
    assert.equal(c.headDim, 8);
    assert.deepEqual(c.headsPerLayer, [4, 4, 4]);
    assert.deepEqual(c.kvHeadsPerLayer, [2, 2, 2]);
    assert.ok(c.tieEmbeddings && !c.attentionBias && !c.attentionOutBias && !c.mlpBias);
    assert.equal(c.slidingWindow, undefined);
    assert.deepEqual(spec.tensors.get('layers.1.attn.q_norm.weight')?.shape, [8]);
    const ref = referenceOf(QWEN3, tensors);
    // The test is only worth something if the q/k norms change the logits.
    const seqs = twoRows(9, QWEN3.vocab);
    const d = maxAbsDiff(
      referenceLogits(forward({ ...ref, skipQkNorm: true }), seqs),
      referenceLogits(forward(ref), seqs),
    );
    assert.ok(d > 1e-2, `the q/k norms change the logits by only ${d}`);
    await assertMatches(spec, ref, MASK3);
  });

  test('attention_bias puts biases on q, k, v and o; an untied head', async () => {
    const s: Shape = { ...QWEN3, kvHeads: 1, attentionBias: true, tied: false };
    const dir = join(tmp.dir, 'qwen3-bias');
    const { tensors } = await writeQwen3(dir, s, 2);
    const spec = await loadModelSpec(dir);
    assert.ok(spec.config.attentionBias && spec.config.attentionOutBias && !spec.config.tieEmbeddings);
    assert.ok(spec.tensors.has('layers.0.attn.o.bias') && spec.tensors.has('lm_head.weight'));
    await assertMatches(spec, referenceOf(s, tensors), MASK3);
  });

  test('use_sliding_window: layers from max_window_layers on slide, or those layer_types names', async () => {
    const dir = join(tmp.dir, 'qwen3-sliding');
    const { tensors } = await writeQwen3(dir, QWEN3, 3, {
      use_sliding_window: true,
      sliding_window: 3,
      max_window_layers: 1,
    });
    const spec = await loadModelSpec(dir);
    assert.deepEqual(spec.config.slidingWindow, [0, 3, 3]);
    const ref = referenceOf(QWEN3, tensors, [0, 3, 3]);
    const seqs = twoRows(9, QWEN3.vocab);
    const expected = referenceLogits(forward(ref), seqs);
    assert.ok(maxAbsDiff(referenceLogits(forward({ ...ref, windows: undefined }), seqs), expected) > 1e-2);
    assert.ok(maxAbsDiff(await engineLogits(spec, seqs), expected) <= 1e-4);

    const typed = join(tmp.dir, 'qwen3-layer-types');
    await writeQwen3(typed, QWEN3, 3, {
      use_sliding_window: true,
      sliding_window: 3,
      layer_types: ['sliding_attention', 'full_attention', 'sliding_attention'],
    });
    assert.deepEqual((await loadModelSpec(typed)).config.slidingWindow, [3, 0, 3]);
    // Without use_sliding_window the window counts for nothing (transformers sets it to None).
    const off = join(tmp.dir, 'qwen3-window-off');
    await writeQwen3(off, QWEN3, 3, { sliding_window: 3, max_window_layers: 0 });
    assert.equal((await loadModelSpec(off)).config.slidingWindow, undefined);
  });

  test('KV-cache graph: prefill + token-by-token decoding equals the reference forward', async () => {
    const dir = join(tmp.dir, 'qwen3-cache');
    const { tensors } = await writeQwen3(dir, QWEN3, 4);
    const spec = await loadModelSpec(dir);
    const V = QWEN3.vocab;
    const tokens = randomTokens(10, V, 3);
    const cached = await cachedLogits(spec, tokens, prefillThenSteps(tokens, 4));
    const expected = referenceLogits(forward(referenceOf(QWEN3, tensors)), [tokens]);
    assert.ok(maxAbsDiff(cached, expected) <= 1e-4, `cache vs reference: ${maxAbsDiff(cached, expected)}`);
  });

  test('block graphs [0,1) → [1,3), fed each other’s hidden states, give the reference’s masked logits', async () => {
    const dir = join(tmp.dir, 'qwen3-blocks');
    const { tensors } = await writeQwen3(dir, QWEN3, 6);
    const spec = await loadModelSpec(dir);
    const seqs = twoRows(9, QWEN3.vocab);
    const batch = { batch: 2, seq: 9, ids: BigInt64Array.from(seqs.flat().map(BigInt)) };
    const headMask = Float32Array.from(MASK3.flat());
    const first = await createRunner(spec, { output: 'hidden', layers: [0, 1] });
    const hidden = await first.run(batch, { headMask });
    await first.release();
    const rest = await createRunner(spec, { output: 'logits', layers: [1, 3] });
    const got = await rest.run({ ...batch, hidden }, { headMask });
    await rest.release();
    const d = maxAbsDiff(got, referenceLogits(forward(referenceOf(QWEN3, tensors)), seqs, MASK3));
    assert.ok(d <= 1e-4, `max abs diff ${d}`);
  });

  test('a physically head-pruned model keeps the shared q/k norms and computes the masked logits', async () => {
    const dir = join(tmp.dir, 'qwen3-pruned');
    const { tensors } = await writeQwen3(dir, QWEN3, 5);
    const spec = await loadModelSpec(dir);
    // Layer 1 keeps heads 1 and 2 (one from each KV group), layer 2 loses KV head 1's queries 2… only partly.
    const mask = [
      [1, 1, 1, 1],
      [0, 1, 1, 0],
      [0, 0, 0, 1],
    ];
    const pruned = pruneHeads(spec, Uint8Array.from(mask.flat()));
    assert.deepEqual(pruned.config.headsPerLayer, [4, 2, 1]);
    assert.deepEqual(pruned.config.kvHeadsPerLayer, [2, 2, 1]);
    assert.equal(
      pruned.tensors.get('layers.2.attn.k_norm.weight'),
      spec.tensors.get('layers.2.attn.k_norm.weight'),
    );
    const seqs = twoRows(9, QWEN3.vocab);
    const expected = referenceLogits(forward(referenceOf(QWEN3, tensors)), seqs, mask);
    for (const kind of ['fused', 'explicit'] as const) {
      const d = maxAbsDiff(await engineLogits(pruned, seqs, undefined, { attention: kind }), expected);
      assert.ok(d <= 1e-4, `${kind}: max abs diff ${d}`);
    }
  });
});

describe('Qwen3 spec → Hugging Face → spec', () => {
  for (const [name, s, extra] of [
    ['qwen3 (MQA, biases, untied)', { ...QWEN3, kvHeads: 1, attentionBias: true, tied: false }, {}],
    [
      'qwen3 with sliding layers',
      QWEN3,
      { use_sliding_window: true, sliding_window: 3, max_window_layers: 2 },
    ],
    [
      'qwen3, physically pruned (per-layer heads, uneven KV groups, a layer without heads)',
      {
        ...QWEN3,
        headsPerLayer: [3, 0, 2],
        kvHeadsPerLayer: [2, 0, 1],
        kvHeadOfQuery: [[0, 1, 1], [], [0, 0]],
      },
      {},
    ],
  ] as Array<[string, Shape, Record<string, unknown>]>) {
    test(`${name}: config and every tensor survive exactly`, async () => {
      const dir = join(tmp.dir, `rt-${name.length}`);
      const { tensors } = await writeQwen3(dir, s, 10, extra);
      const spec = await loadModelSpec(dir);
      if (s.headsPerLayer) {
        await assertMatches(spec, referenceOf(s, tensors), [[1, 0, 1], [], [0, 1]]);
      }
      const hf = qwen3SpecToHf(spec);
      assert.equal(hf.config.model_type, 'qwen3');
      assert.deepEqual(hf.config.architectures, ['Qwen3ForCausalLM']);
      await assertWrittenTensors(hf.tensors, tensors);
      const back = join(tmp.dir, `rt-back-${name.length}`);
      await assertReloadsAs(spec, hf, back);
    });
  }
});

describe('Qwen3 configs the graph cannot honour fail in one line naming config.json', () => {
  for (const [extra, words] of [
    [
      { model_type: 'qwen3_moe' },
      'model_type "qwen3_moe" is a mixture-of-experts model: experts are not a search space yet',
    ],
    [
      { layer_types: ['sliding_attention', 'full_attention', 'full_attention'] },
      '"layer_types" names sliding layers but use_sliding_window is false',
    ],
    [
      {
        use_sliding_window: true,
        sliding_window: null,
        layer_types: ['full_attention', 'sliding_attention', 'full_attention'],
      },
      '"layer_types" names sliding layers but sliding_window is null',
    ],
    [{ layer_types: ['full_attention'] }, '"layer_types" must list 3 layer types'],
    [
      { layer_types: ['full_attention', 'chunked_attention', 'full_attention'] },
      '"layer_types"[1] "chunked_attention" is not supported',
    ],
    [{ num_key_value_heads: 3 }, 'num_attention_heads 4 is not a multiple of num_key_value_heads 3'],
    [{ head_dim: 7 }, 'head_dim 7 is odd'],
    [{ hidden_act: 'quick_gelu' }, 'hidden_act "quick_gelu" is not supported'],
    [{ use_sliding_window: 'yes' }, '"use_sliding_window" must be true or false'],
    [{ rope_scaling: { rope_type: 'mystery', factor: 2 } }, 'mystery'],
  ] as Array<[Record<string, unknown>, string]>) {
    test(words, async () => {
      const dir = join(tmp.dir, `bad-${words.replace(/\W+/g, '-').slice(0, 60)}`);
      await writeQwen3(dir, QWEN3, 11, extra);
      await assertConfigRefused(dir, words);
    });
  }

  test('Qwen3-0.6B’s published config.json: 16 heads × 128 over hidden 1024, 8 KV heads, tied, θ 1e6', () => {
    const c = qwen3ConfigFromHf(
      {
        architectures: ['Qwen3ForCausalLM'],
        attention_bias: false,
        attention_dropout: 0.0,
        bos_token_id: 151643,
        eos_token_id: 151645,
        head_dim: 128,
        hidden_act: 'silu',
        hidden_size: 1024,
        initializer_range: 0.02,
        intermediate_size: 3072,
        max_position_embeddings: 40960,
        max_window_layers: 28,
        model_type: 'qwen3',
        num_attention_heads: 16,
        num_hidden_layers: 28,
        num_key_value_heads: 8,
        rms_norm_eps: 1e-6,
        rope_scaling: null,
        rope_theta: 1000000,
        sliding_window: null,
        tie_word_embeddings: true,
        torch_dtype: 'bfloat16',
        use_cache: true,
        use_sliding_window: false,
        vocab_size: 151936,
      },
      '/m/config.json',
    );
    assert.equal(c.headDim, 128);
    assert.equal(c.headsPerLayer[0] * c.headDim, 2048);
    assert.deepEqual([c.numHeads, c.numKvHeads, c.numLayers, c.hiddenSize], [16, 8, 28, 1024]);
    assert.ok(c.tieEmbeddings && c.qkNorm && !c.attentionBias);
    assert.equal(c.ropeTheta, 1e6);
    assert.equal(c.ropeScaling, undefined);
    assert.equal(c.slidingWindow, undefined);
    assert.deepEqual([c.bosTokenId, c.eosTokenId], [151643, 151645]);
  });

  test("transformers' Qwen3Config defaults where config.json leaves keys out", () => {
    const c = qwen3ConfigFromHf(
      {
        model_type: 'qwen3',
        hidden_size: 64,
        num_hidden_layers: 30,
        num_attention_heads: 4,
        intermediate_size: 8,
        vocab_size: 11,
        use_sliding_window: true,
      },
      '/m/config.json',
    );
    // head_dim 128 (not hidden/heads = 16), no GQA, untied, 32768 positions, θ 10000, window 4096 from layer 28.
    assert.equal(c.headDim, 128);
    assert.equal(c.numKvHeads, 4);
    assert.equal(c.tieEmbeddings, false);
    assert.equal(c.maxPositions, 32768);
    assert.equal(c.ropeTheta, 10000);
    assert.deepEqual(c.slidingWindow, [...new Array(28).fill(0), 4096, 4096]);
  });
});
