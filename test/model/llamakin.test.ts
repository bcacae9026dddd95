/**
 * SmolLM2 and Mistral, which load as the LLaMA kind, from config.json files shaped like the real releases' (the
 * same keys and proportions, scaled down to tiny random models) match the plain LLaMA reference to 1e-4, with and
 * without heads masked. Mistral's sliding_window is honoured on every layer as transformers applies it (a
 * sequence longer than the window sees only the window), and so is Qwen2's with use_sliding_window; the windows
 * survive an export, and config values the graph cannot honour are refused in one line naming config.json.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import onnxProto from 'onnx-proto';
import { writeHfFolder } from '../../src/checkpoint/hf.js';
import { GenepruneError } from '../../src/errors.js';
import { buildDecoderGraph } from '../../src/graph/decoder.js';
import { prepareWeights, releaseWeights } from '../../src/graph/weights.js';
import { llamaSpecToHf } from '../../src/model/llama.js';
import { loadModelSpec } from '../../src/model/load.js';
import { tempDir } from '../checkpoint/helpers.js';
import { maxLogitDiff, someHeadMask, writeLlamaLikeFolder } from '../helpers/llamalike.js';

const tmp = tempDir('geneprune-llamakin-');
after(tmp.cleanup);

/**
 * HuggingFaceTB/SmolLM2-135M's config.json keys and proportions (576 hidden = 9 heads × 64, 3 KV heads, MLP
 * 1536 = 8/3 × hidden, tied, rope_theta 100000, 30 layers, 49152 tokens) at 9 heads × 8, 2 layers, 61 tokens.
 */
const SMOLLM2 = {
  architectures: ['LlamaForCausalLM'],
  attention_bias: false,
  attention_dropout: 0.0,
  bos_token_id: 0,
  eos_token_id: 0,
  head_dim: 8,
  hidden_act: 'silu',
  hidden_size: 72,
  initializer_range: 0.041666666666666664,
  intermediate_size: 192,
  is_llama_config: true,
  max_position_embeddings: 64,
  mlp_bias: false,
  model_type: 'llama',
  num_attention_heads: 9,
  num_hidden_layers: 2,
  num_key_value_heads: 3,
  pretraining_tp: 1,
  rms_norm_eps: 1e-5,
  rope_interleaved: false,
  rope_scaling: null,
  rope_theta: 100000,
  tie_word_embeddings: true,
  torch_dtype: 'float32',
  transformers_version: '4.40.1',
  use_cache: true,
  vocab_size: 61,
};

/**
 * mistralai/Mistral-7B-v0.1's config.json keys and proportions (GQA 32:8 of 128 dims, MLP 3.5 × hidden, untied,
 * rope_theta 10000, sliding_window 4096 of 32768 positions) at 8:2 heads of 8 dims, a window of 4 of 32 positions.
 */
const MISTRAL = {
  architectures: ['MistralForCausalLM'],
  bos_token_id: 1,
  eos_token_id: 2,
  hidden_act: 'silu',
  hidden_size: 64,
  initializer_range: 0.02,
  intermediate_size: 224,
  max_position_embeddings: 32,
  model_type: 'mistral',
  num_attention_heads: 8,
  num_hidden_layers: 2,
  num_key_value_heads: 2,
  rms_norm_eps: 1e-5,
  rope_theta: 10000.0,
  sliding_window: 4,
  tie_word_embeddings: false,
  torch_dtype: 'float32',
  transformers_version: '4.34.0.dev0',
  use_cache: true,
  vocab_size: 53,
};

/** Qwen2's keys with the window switched on for the layers from max_window_layers on (here layer 1 of 2). */
const QWEN2 = {
  architectures: ['Qwen2ForCausalLM'],
  hidden_act: 'silu',
  hidden_size: 48,
  intermediate_size: 96,
  max_position_embeddings: 32,
  max_window_layers: 1,
  model_type: 'qwen2',
  num_attention_heads: 6,
  num_hidden_layers: 2,
  num_key_value_heads: 2,
  rms_norm_eps: 1e-5,
  rope_theta: 1000000.0,
  sliding_window: 3,
  tie_word_embeddings: false,
  torch_dtype: 'float32',
  use_sliding_window: true,
  vocab_size: 41,
};

let folders = 0;
async function folder(config: Record<string, unknown>, seed: number) {
  const dir = join(tmp.dir, `m${folders++}`);
  const ref = await writeLlamaLikeFolder(dir, config, seed);
  return { dir, ref, spec: await loadModelSpec(dir) };
}

describe('SmolLM2 (model_type llama, head_dim given, GQA 9:3, tied)', () => {
  test('loads as the llama kind and matches the reference to 1e-4, unmasked and masked', async () => {
    const { ref, spec } = await folder(SMOLLM2, 11);
    const c = spec.config;
    assert.deepEqual(
      [c.family, c.modelType, c.headDim, c.numHeads, c.numKvHeads, c.tieEmbeddings, c.ropeTheta],
      ['llama', 'llama', 8, 9, 3, true, 100000],
    );
    assert.equal(c.slidingWindow, undefined);
    const plain = await maxLogitDiff(spec, ref, 'half');
    assert.ok(plain <= 1e-4, `max abs diff ${plain}`);
    const mask = someHeadMask(2, 9, 5);
    const masked = await maxLogitDiff(spec, ref, 'half', mask);
    assert.ok(masked <= 1e-4, `masked max abs diff ${masked}`);
  });
});

describe('Mistral (sliding_window on every layer, GQA 8:2)', () => {
  test('a sequence of 11 under a window of 4 matches the windowed reference to 1e-4, unmasked and masked', async () => {
    const { ref, spec } = await folder(MISTRAL, 12);
    assert.deepEqual(spec.config.slidingWindow, [4, 4]);
    const windowed = { ...ref, slidingWindow: [4, 4] };
    const plain = await maxLogitDiff(spec, windowed, 'half');
    assert.ok(plain <= 1e-4, `max abs diff ${plain}`);
    const mask = someHeadMask(2, 8, 6);
    const masked = await maxLogitDiff(spec, windowed, 'half', mask);
    assert.ok(masked <= 1e-4, `masked max abs diff ${masked}`);
    // The window bites: the same model read without one is far from these logits.
    const global = await maxLogitDiff(spec, ref, 'half');
    assert.ok(global > 1e-2, `the window changed the logits by only ${global}`);
  });

  test('told its rows are no longer than the window, a runner keeps the fused kernel, exactly, and refuses longer rows', async () => {
    const { ref, spec } = await folder(MISTRAL, 12);
    const windowed = { ...ref, slidingWindow: [4, 4] };
    const opTypes = async (maxSeq: number | undefined) => {
      const weights = await prepareWeights(spec);
      const graph = buildDecoderGraph(spec, weights, { output: 'logits', ...(maxSeq ? { maxSeq } : {}) });
      await releaseWeights(weights);
      return new Set(onnxProto.onnx.ModelProto.decode(graph.model).graph!.node!.map((n) => n.opType));
    };
    // A window of 4 hides keys only in rows longer than 4.
    assert.ok((await opTypes(4)).has('GroupQueryAttention'));
    assert.ok(!(await opTypes(5)).has('GroupQueryAttention'));
    assert.ok(!(await opTypes(undefined)).has('GroupQueryAttention'));
    const fused = await maxLogitDiff(spec, windowed, 'half', someHeadMask(2, 8, 6), 4, { maxSeq: 4 });
    assert.ok(fused <= 1e-4, `max abs diff ${fused}`);
    await assert.rejects(
      maxLogitDiff(spec, windowed, 'half', undefined, 5, { maxSeq: 4 }),
      /a row of 5 positions is longer than this runner's maxSeq of 4/,
    );
  });

  test('sliding_window null is global attention; an absent key is transformers’ default 4096', async () => {
    const none = await folder({ ...MISTRAL, sliding_window: null }, 13);
    assert.equal(none.spec.config.slidingWindow, undefined);
    const plain = await maxLogitDiff(none.spec, none.ref, 'half');
    assert.ok(plain <= 1e-4, `max abs diff ${plain}`);
    const { sliding_window: _, ...absent } = MISTRAL;
    assert.deepEqual((await folder(absent, 14)).spec.config.slidingWindow, [4096, 4096]);
  });

  test('the export writes the window back (null when there is none) and reloads it', async () => {
    const { spec } = await folder(MISTRAL, 15);
    const hf = llamaSpecToHf(spec);
    assert.equal(hf.config.sliding_window, 4);
    const out = join(tmp.dir, 'exported');
    await writeHfFolder(out, hf);
    assert.deepEqual((await loadModelSpec(out)).config.slidingWindow, [4, 4]);
    const none = await folder({ ...MISTRAL, sliding_window: null }, 16);
    assert.equal(llamaSpecToHf(none.spec).config.sliding_window, null);
  });
});

describe('Qwen2 (use_sliding_window)', () => {
  test('the layers from max_window_layers slide, and match the reference windowed there to 1e-4', async () => {
    const { ref, spec } = await folder(QWEN2, 17);
    assert.deepEqual(spec.config.slidingWindow, [0, 3]);
    const diff = await maxLogitDiff(spec, { ...ref, slidingWindow: [0, 3] }, 'half');
    assert.ok(diff <= 1e-4, `max abs diff ${diff}`);
    const out = llamaSpecToHf(spec).config;
    assert.deepEqual(
      [out.use_sliding_window, out.sliding_window, out.max_window_layers, out.layer_types],
      [true, 3, 1, ['full_attention', 'sliding_attention']],
    );
  });

  test('layer_types, when given, names the sliding layers; without use_sliding_window nothing slides', async () => {
    const typed = await folder({ ...QWEN2, layer_types: ['sliding_attention', 'full_attention'] }, 18);
    assert.deepEqual(typed.spec.config.slidingWindow, [3, 0]);
    const off = await folder({ ...QWEN2, use_sliding_window: false }, 19);
    assert.equal(off.spec.config.slidingWindow, undefined);
    const diff = await maxLogitDiff(off.spec, off.ref, 'half');
    assert.ok(diff <= 1e-4, `max abs diff ${diff}`);
  });
});

describe('sliding-window keys the graph cannot honour are refused in one line naming config.json', () => {
  const cases: Array<[string, Record<string, unknown>, RegExp]> = [
    [
      'a zero window',
      { ...MISTRAL, sliding_window: 0 },
      /"sliding_window" must be an integer ≥ 1 or null, got 0/,
    ],
    [
      'a text window',
      { ...QWEN2, sliding_window: '4' },
      /"sliding_window" must be an integer ≥ 1 or null, got "4"/,
    ],
    [
      'sliding layers without use_sliding_window',
      { ...QWEN2, use_sliding_window: false, layer_types: ['full_attention', 'sliding_attention'] },
      /"layer_types" marks sliding layers but "use_sliding_window" is not true/,
    ],
    [
      'layer_types of the wrong length',
      { ...QWEN2, layer_types: ['full_attention'] },
      /"layer_types" must list 2 layer types, one per layer/,
    ],
    [
      'an unknown layer type',
      { ...QWEN2, use_sliding_window: true, layer_types: ['full_attention', 'chunked_attention'] },
      /"layer_types"\[1\] "chunked_attention" is not supported \(supported: sliding_attention, full_attention\)/,
    ],
    [
      'a negative max_window_layers',
      { ...QWEN2, max_window_layers: -1 },
      /"max_window_layers" must be an integer ≥ 0, got -1/,
    ],
  ];
  for (const [i, [name, config, message]] of cases.entries()) {
    test(name, async () => {
      const dir = join(tmp.dir, `refused-${i}`);
      await writeLlamaLikeFolder(dir, config, 20 + i);
      await assert.rejects(loadModelSpec(dir), (e: unknown) => {
        assert.ok(e instanceof GenepruneError);
        assert.equal(e.where, join(dir, 'config.json'));
        assert.match(e.oneLine(), message);
        assert.equal(e.oneLine().split('\n').length, 1);
        return true;
      });
    });
  }
});
