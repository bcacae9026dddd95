import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { openHfFolder, writeHfFolder } from '../../src/checkpoint/hf.js';
import { openLlama2c } from '../../src/checkpoint/llama2c.js';
import { type WritableTensor, writeSafetensors } from '../../src/checkpoint/safetensors.js';
import { GenepruneError } from '../../src/errors.js';
import { parameterCount } from '../../src/model/cost.js';
import {
  halfSplitToInterleaved,
  interleavedToHalfSplit,
  llamaRoleShapes,
  llamaSpecFromHf,
  llamaSpecFromLlama2c,
  llamaSpecToHf,
  writeLlama2cFromSpec,
} from '../../src/model/llama.js';
import { loadModelSpec } from '../../src/model/load.js';
import { randomLlamaSpec } from '../../src/model/random.js';
import { type ModelConfig, type ModelSpec, memoryTensor } from '../../src/model/spec.js';
import { blockValue, rejectsFileError, tempDir, tinyL2cBlocks, tinyL2cBytes } from '../checkpoint/helpers.js';
import { sharedPath } from '../shared.js';

const tmp = tempDir();
after(tmp.cleanup);
let folderCount = 0;

// A tiny llama written by hand with Hugging Face names: hidden 8, 2 layers, 2 heads of 4, 1 KV head, mlp 12.
const BASE_CONFIG = {
  model_type: 'llama',
  hidden_size: 8,
  num_hidden_layers: 2,
  num_attention_heads: 2,
  num_key_value_heads: 1,
  intermediate_size: 12,
  vocab_size: 10,
  max_position_embeddings: 64,
  rms_norm_eps: 1e-5,
  rope_theta: 500000,
  bos_token_id: 1,
  eos_token_id: [2, 7],
};

function hfTensorShapes(layers = 2, extra: Array<[string, number[]]> = []): Array<[string, number[]]> {
  const out: Array<[string, number[]]> = [['model.embed_tokens.weight', [10, 8]]];
  for (let l = 0; l < layers; l++) {
    const p = `model.layers.${l}`;
    out.push(
      [`${p}.input_layernorm.weight`, [8]],
      [`${p}.self_attn.q_proj.weight`, [8, 8]],
      [`${p}.self_attn.k_proj.weight`, [4, 8]],
      [`${p}.self_attn.v_proj.weight`, [4, 8]],
      [`${p}.self_attn.o_proj.weight`, [8, 8]],
      [`${p}.post_attention_layernorm.weight`, [8]],
      [`${p}.mlp.gate_proj.weight`, [12, 8]],
      [`${p}.mlp.up_proj.weight`, [12, 8]],
      [`${p}.mlp.down_proj.weight`, [8, 12]],
    );
  }
  out.push(['model.norm.weight', [8]], ...extra);
  return out;
}

/** Writes a folder; each tensor k holds blockValue(k, i) so its origin is visible. */
async function hfFolder(
  config: Record<string, unknown>,
  shapes: Array<[string, number[]]>,
): Promise<{ dir: string; file: string; values: Map<string, Float32Array> }> {
  const dir = join(tmp.dir, `hf-${folderCount++}`);
  mkdirSync(dir);
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
  const values = new Map<string, Float32Array>();
  const tensors: WritableTensor[] = shapes.map(([name, shape], k) => {
    const data = Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, (_, i) => blockValue(k, i));
    values.set(name, data);
    return { name, shape, data };
  });
  const file = join(dir, 'model.safetensors');
  await writeSafetensors(file, tensors);
  return { dir, file, values };
}

describe('llama config.json + tensors → ModelSpec', () => {
  it('maps config fields and every Hugging Face tensor to its role', async () => {
    const { dir, values } = await hfFolder(BASE_CONFIG, hfTensorShapes(2, [['lm_head.weight', [10, 8]]]));
    const spec = llamaSpecFromHf(await openHfFolder(dir));
    const expected: ModelConfig = {
      family: 'llama',
      modelType: 'llama',
      hiddenSize: 8,
      numLayers: 2,
      numHeads: 2,
      numKvHeads: 1,
      headDim: 4,
      headsPerLayer: [2, 2],
      kvHeadsPerLayer: [1, 1],
      intermediateSize: 12,
      vocabSize: 10,
      maxPositions: 64,
      normKind: 'rms',
      normPlacement: 'pre',
      normEps: 1e-5,
      activation: 'silu',
      mlpKind: 'gated',
      positionKind: 'rope',
      ropeTheta: 500000,
      attentionBias: false,
      attentionOutBias: false,
      mlpBias: false,
      tieEmbeddings: false, // unspecified + lm_head present → untied
      bosTokenId: 1,
      eosTokenId: 2,
    };
    assert.deepEqual(spec.config, expected);
    assert.equal(spec.source, dir);
    const roleToHf: Array<[string, string]> = [
      ['embed.tokens', 'model.embed_tokens.weight'],
      ['layers.1.attn_norm.weight', 'model.layers.1.input_layernorm.weight'],
      ['layers.0.attn.q.weight', 'model.layers.0.self_attn.q_proj.weight'],
      ['layers.1.attn.k.weight', 'model.layers.1.self_attn.k_proj.weight'],
      ['layers.0.attn.v.weight', 'model.layers.0.self_attn.v_proj.weight'],
      ['layers.1.attn.o.weight', 'model.layers.1.self_attn.o_proj.weight'],
      ['layers.0.mlp_norm.weight', 'model.layers.0.post_attention_layernorm.weight'],
      ['layers.1.mlp.gate.weight', 'model.layers.1.mlp.gate_proj.weight'],
      ['layers.1.mlp.up.weight', 'model.layers.1.mlp.up_proj.weight'],
      ['layers.0.mlp.down.weight', 'model.layers.0.mlp.down_proj.weight'],
      ['final_norm.weight', 'model.norm.weight'],
      ['lm_head.weight', 'lm_head.weight'],
    ];
    for (const [role, hf] of roleToHf)
      assert.deepEqual(await spec.tensors.get(role)!.load(), values.get(hf), role);
    assert.equal(spec.tensors.size, 1 + 2 * 9 + 1 + 1);
  });

  it('applies defaults: KV heads = heads, head_dim = hidden/heads, theta 10000, tied false', async () => {
    const config = {
      model_type: 'mistral',
      hidden_size: 8,
      num_hidden_layers: 1,
      num_attention_heads: 2,
      intermediate_size: 12,
      vocab_size: 10,
      head_dim: null,
    };
    const shapes = hfTensorShapes(1, [['lm_head.weight', [10, 8]]]).map(([n, s]): [string, number[]] =>
      /[kv]_proj/.test(n) ? [n, [8, 8]] : [n, s],
    );
    const { dir } = await hfFolder(config, shapes);
    const c = llamaSpecFromHf(await openHfFolder(dir)).config;
    assert.equal(c.modelType, 'mistral');
    assert.equal(c.numKvHeads, 2);
    assert.equal(c.headDim, 4);
    assert.equal(c.ropeTheta, 10000);
    assert.equal(c.normEps, 1e-6);
    assert.equal(c.maxPositions, 131072);
    assert.equal(c.tieEmbeddings, false);
    assert.equal(c.bosTokenId, undefined);
  });

  it('tied embeddings: no lm_head role, and a stored lm_head is ignored', async () => {
    for (const extra of [[], [['lm_head.weight', [10, 8]]]] as Array<Array<[string, number[]]>>) {
      const { dir } = await hfFolder({ ...BASE_CONFIG, tie_word_embeddings: true }, hfTensorShapes(2, extra));
      const spec = llamaSpecFromHf(await openHfFolder(dir));
      assert.equal(spec.config.tieEmbeddings, true);
      assert.ok(!spec.tensors.has('lm_head.weight'));
    }
  });

  it('qwen2: q/k/v biases, no o bias', async () => {
    const shapes = hfTensorShapes(2, [['lm_head.weight', [10, 8]]]);
    for (const l of [0, 1]) {
      shapes.push([`model.layers.${l}.self_attn.q_proj.bias`, [8]]);
      shapes.push([`model.layers.${l}.self_attn.k_proj.bias`, [4]]);
      shapes.push([`model.layers.${l}.self_attn.v_proj.bias`, [4]]);
    }
    const { dir, values } = await hfFolder({ ...BASE_CONFIG, model_type: 'qwen2' }, shapes);
    const spec = llamaSpecFromHf(await openHfFolder(dir));
    assert.equal(spec.config.attentionBias, true);
    assert.equal(spec.config.attentionOutBias, false);
    assert.deepEqual(
      await spec.tensors.get('layers.1.attn.k.bias')!.load(),
      values.get('model.layers.1.self_attn.k_proj.bias'),
    );
    assert.ok(!spec.tensors.has('layers.0.attn.o.bias'));
  });

  it('llama attention_bias and mlp_bias put biases on all projections', async () => {
    const shapes = hfTensorShapes(1, [['lm_head.weight', [10, 8]]]);
    const p = 'model.layers.0';
    shapes.push(
      [`${p}.self_attn.q_proj.bias`, [8]],
      [`${p}.self_attn.k_proj.bias`, [4]],
      [`${p}.self_attn.v_proj.bias`, [4]],
      [`${p}.self_attn.o_proj.bias`, [8]],
      [`${p}.mlp.gate_proj.bias`, [12]],
      [`${p}.mlp.up_proj.bias`, [12]],
      [`${p}.mlp.down_proj.bias`, [8]],
    );
    const config = { ...BASE_CONFIG, num_hidden_layers: 1, attention_bias: true, mlp_bias: true };
    const { dir } = await hfFolder(config, shapes);
    const spec = llamaSpecFromHf(await openHfFolder(dir));
    for (const role of ['attn.o.bias', 'mlp.gate.bias', 'mlp.down.bias'])
      assert.ok(spec.tensors.has(`layers.0.${role}`), role);
  });

  it('ignores stored rotary inv_freq buffers', async () => {
    const shapes = hfTensorShapes(2, [
      ['lm_head.weight', [10, 8]],
      ['model.layers.0.self_attn.rotary_emb.inv_freq', [2]],
    ]);
    const { dir } = await hfFolder(BASE_CONFIG, shapes);
    assert.equal(llamaSpecFromHf(await openHfFolder(dir)).tensors.size, 21);
  });
});

describe('llama config / tensor errors', () => {
  it('a shape that disagrees with config.json, naming the safetensors file', async () => {
    const shapes = hfTensorShapes(2, [['lm_head.weight', [10, 8]]]).map(([n, s]): [string, number[]] =>
      n === 'model.layers.0.self_attn.q_proj.weight' ? [n, [8, 4]] : [n, s],
    );
    const { dir, file } = await hfFolder(BASE_CONFIG, shapes);
    const folder = await openHfFolder(dir);
    await rejectsFileError(
      () => llamaSpecFromHf(folder),
      file,
      /^tensor model\.layers\.0\.self_attn\.q_proj\.weight has shape \[8,4\], config\.json implies \[8,8\]$/,
    );
  });

  it('an unknown model_type', async () => {
    const { dir } = await hfFolder({ ...BASE_CONFIG, model_type: 'xyz' }, hfTensorShapes());
    const folder = await openHfFolder(dir);
    await rejectsFileError(
      () => llamaSpecFromHf(folder),
      join(dir, 'config.json'),
      /^model_type "xyz" is not supported \(supported: llama, mistral, qwen2\)$/,
    );
  });

  it('missing tensors, by name', async () => {
    const shapes = hfTensorShapes(2, [['lm_head.weight', [10, 8]]]).filter(
      ([n]) => !n.includes('layers.1.mlp.up_proj'),
    );
    const { dir } = await hfFolder(BASE_CONFIG, shapes);
    const folder = await openHfFolder(dir);
    await rejectsFileError(
      () => llamaSpecFromHf(folder),
      dir,
      /missing tensors: model\.layers\.1\.mlp\.up_proj\.weight/,
    );
  });

  it('lm_head missing while untied', async () => {
    for (const [tie, why] of [
      [false, /tie_word_embeddings false/],
      [undefined, /does not set tie_word_embeddings/],
    ] as const) {
      const { dir } = await hfFolder({ ...BASE_CONFIG, tie_word_embeddings: tie }, hfTensorShapes());
      const folder = await openHfFolder(dir);
      const err = await rejectsFileError(
        () => llamaSpecFromHf(folder),
        dir,
        /tensor lm_head\.weight is missing/,
      );
      assert.match(err.message, why);
    }
  });

  it('a tensor the config does not explain', async () => {
    const shapes = hfTensorShapes(2, [
      ['lm_head.weight', [10, 8]],
      ['model.layers.0.self_attn.q_proj.bias', [8]],
    ]);
    const { dir, file } = await hfFolder(BASE_CONFIG, shapes);
    const folder = await openHfFolder(dir);
    await rejectsFileError(
      () => llamaSpecFromHf(folder),
      file,
      /unexpected tensor model\.layers\.0\.self_attn\.q_proj\.bias/,
    );
  });

  it('unsupported or incomplete rope scaling, bad head counts, bad fields', async () => {
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [
        { rope_scaling: { rope_type: 'llama3', factor: 8 } },
        /rope_scaling\.low_freq_factor \(llama3\) is missing/,
      ],
      [{ rope_scaling: { type: 'longrope', factor: 2 } }, /rope_scaling type "longrope" is not supported/],
      [{ rope_parameters: { rope_type: 'yarn' } }, /rope_parameters\.factor \(yarn\) is missing/],
      [{ partial_rotary_factor: 0.5 }, /"partial_rotary_factor" 0\.5 is not supported/],
      [{ num_key_value_heads: 3 }, /num_attention_heads 2 is not a multiple of num_key_value_heads 3/],
      [{ hidden_size: 7 }, /hidden_size 7 is not a multiple of num_attention_heads 2/],
      [{ intermediate_size: 0 }, /"intermediate_size" must be an integer ≥ 1, got 0/],
      [{ vocab_size: undefined }, /"vocab_size" is missing/],
      [{ hidden_act: 'tanh' }, /hidden_act "tanh" is not supported/],
      [{ num_attention_heads_per_layer: [2, 1] }, /must be given together/],
      [
        { num_attention_heads_per_layer: [2, 1, 2], num_key_value_heads_per_layer: [1, 1, 1] },
        /array of 2 counts/,
      ],
      [
        { num_attention_heads_per_layer: [2, 3], num_key_value_heads_per_layer: [1, 1] },
        /holds 3, not in 0\.\.2/,
      ],
      [{ intermediate_size_per_layer: [12] }, /"intermediate_size_per_layer" must be an array of 2 sizes/],
      [
        { intermediate_size_per_layer: [12, 13] },
        /gives layer 1 13 MLP units: each must be an integer in 0\.\.12 \(intermediate_size\)/,
      ],
    ];
    for (const [patch, pattern] of cases) {
      const { dir } = await hfFolder(
        { ...BASE_CONFIG, ...patch },
        hfTensorShapes(2, [['lm_head.weight', [10, 8]]]),
      );
      const folder = await openHfFolder(dir);
      await rejectsFileError(() => llamaSpecFromHf(folder), join(dir, 'config.json'), pattern);
    }
  });

  it('accepts rope_parameters with rope_theta (newer transformers)', async () => {
    const config = {
      ...BASE_CONFIG,
      rope_theta: undefined,
      rope_parameters: { rope_type: 'default', rope_theta: 1e6 },
    };
    const { dir } = await hfFolder(config, hfTensorShapes(2, [['lm_head.weight', [10, 8]]]));
    assert.equal(llamaSpecFromHf(await openHfFolder(dir)).config.ropeTheta, 1e6);
  });
});

describe('per-layer head counts (physically pruned models)', () => {
  // 4 heads of 4, 2 KV heads, hidden 16. Layer 0 keeps 3 query heads over 2 KV heads (uneven), layer 1 keeps 2 / 1.
  const config: ModelConfig = {
    ...randomLlamaSpec({
      hiddenSize: 16,
      numLayers: 2,
      numHeads: 4,
      numKvHeads: 2,
      intermediateSize: 20,
      vocabSize: 11,
      maxPositions: 32,
      seed: 1,
    }).config,
    headsPerLayer: [3, 2],
    kvHeadsPerLayer: [2, 1],
    kvHeadOfQuery: [
      [0, 0, 1],
      [0, 0],
    ],
  };
  const spec: ModelSpec = {
    config,
    tensors: new Map(
      llamaRoleShapes(config).map(([role, shape], k) => [
        role,
        memoryTensor(
          shape,
          Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, (_, i) => blockValue(k, i)),
        ),
      ]),
    ),
    source: 'test',
  };

  it('shapes follow each layer’s heads', () => {
    const shapes = new Map(llamaRoleShapes(config));
    assert.deepEqual(shapes.get('layers.0.attn.q.weight'), [12, 16]);
    assert.deepEqual(shapes.get('layers.0.attn.o.weight'), [16, 12]);
    assert.deepEqual(shapes.get('layers.1.attn.k.weight'), [4, 16]);
  });

  it('spec → HF → spec is the identity, with the per-layer arrays in config.json', async () => {
    const hf = llamaSpecToHf(spec);
    assert.deepEqual(hf.config.num_attention_heads_per_layer, [3, 2]);
    assert.deepEqual(hf.config.num_key_value_heads_per_layer, [2, 1]);
    assert.deepEqual(hf.config.kv_head_of_query_per_layer, config.kvHeadOfQuery);
    assert.deepEqual(hf.config.intermediate_size_per_layer, [
      config.intermediateSize,
      config.intermediateSize,
    ]);
    const dir = join(tmp.dir, 'pruned');
    await writeHfFolder(dir, hf);
    const back = await loadModelSpec(dir);
    assert.deepEqual(back.config, spec.config);
    for (const [role, t] of spec.tensors)
      assert.deepEqual(await back.tensors.get(role)!.load(), await t.load(), role);
    assert.equal(back.tensors.size, spec.tensors.size);
  });

  it('uneven groups without an explicit map are rejected', async () => {
    const hf = llamaSpecToHf(spec);
    delete hf.config.kv_head_of_query_per_layer;
    const dir = join(tmp.dir, 'pruned-nomap');
    await writeHfFolder(dir, hf);
    await rejectsFileError(
      loadModelSpec(dir),
      join(dir, 'config.json'),
      /layer 0 has 3 query heads and 2 KV heads/,
    );
  });

  it('cannot be written as llama2.c', async () => {
    const path = join(tmp.dir, 'pruned.bin');
    await rejectsFileError(writeLlama2cFromSpec(path, spec), path, /layers have different head counts/);
  });
});

describe('rotary layout permutation', () => {
  it('moves rows [0,1,2,3] of a head of 4 to [0,2,1,3], per head, and back', () => {
    const rows = Float32Array.from({ length: 8 }, (_, i) => i); // two heads, one column
    assert.deepEqual([...interleavedToHalfSplit(rows, 1, 4)], [0, 2, 1, 3, 4, 6, 5, 7]);
    assert.deepEqual([...halfSplitToInterleaved(interleavedToHalfSplit(rows, 1, 4), 1, 4)], [...rows]);
    // whole rows move: 2 columns
    const wide = Float32Array.from({ length: 8 }, (_, i) => i);
    assert.deepEqual([...interleavedToHalfSplit(wide, 2, 4)], [0, 1, 4, 5, 2, 3, 6, 7]);
    const eight = Float32Array.from({ length: 8 }, (_, i) => i);
    assert.deepEqual([...interleavedToHalfSplit(eight, 1, 8)], [0, 2, 4, 6, 1, 3, 5, 7]);
  });

  it('gives the same attention scores under half-split rotary as the original under interleaved rotary', () => {
    // Independent check of the convention: rotate q and k both ways and compare q·k at two positions.
    const hd = 8;
    const theta = 10000;
    const freq = (i: number) => theta ** ((-2 * i) / hd);
    const interleavedRope = (v: number[], pos: number) => {
      const out = [...v];
      for (let i = 0; i < hd / 2; i++) {
        const [c, s] = [Math.cos(pos * freq(i)), Math.sin(pos * freq(i))];
        out[2 * i] = v[2 * i] * c - v[2 * i + 1] * s;
        out[2 * i + 1] = v[2 * i] * s + v[2 * i + 1] * c;
      }
      return out;
    };
    const halfSplitRope = (v: number[], pos: number) => {
      const out = [...v];
      const h = hd / 2;
      for (let i = 0; i < h; i++) {
        const [c, s] = [Math.cos(pos * freq(i)), Math.sin(pos * freq(i))];
        out[i] = v[i] * c - v[i + h] * s;
        out[i + h] = v[i] * s + v[i + h] * c;
      }
      return out;
    };
    const dot = (a: number[], b: number[]) => a.reduce((s, x, i) => s + x * b[i], 0);
    const q = Array.from({ length: hd }, (_, i) => Math.sin(i * 1.7 + 0.3));
    const k = Array.from({ length: hd }, (_, i) => Math.cos(i * 0.9 - 0.2));
    const qp = [...interleavedToHalfSplit(Float32Array.from(q), 1, hd)];
    const kp = [...interleavedToHalfSplit(Float32Array.from(k), 1, hd)];
    const want = dot(interleavedRope(q, 5), interleavedRope(k, 2));
    const got = dot(halfSplitRope(qp, 5), halfSplitRope(kp, 2));
    assert.ok(Math.abs(want - got) < 1e-5, `${want} vs ${got}`);
    // and without the permutation the two layouts disagree (the test can fail)
    const wrong = dot(halfSplitRope(q, 5), halfSplitRope(k, 2));
    assert.ok(Math.abs(want - wrong) > 1e-3);
  });
});

describe('llama2.c → ModelSpec', () => {
  for (const format of ['legacy', 'v1'] as const) {
    it(`maps a hand-built ${format} file, permuting q and k rows`, async () => {
      const path = join(tmp.dir, `l2c-${format}.bin`);
      writeFileSync(path, tinyL2cBytes(format, true));
      const spec = llamaSpecFromLlama2c(await openLlama2c(path));
      const blocks = tinyL2cBlocks(format, true).map(([n]) => n);
      const block = (name: string, from: number, n: number) =>
        Array.from({ length: n }, (_, i) => blockValue(blocks.indexOf(name), from + i));
      const c = spec.config;
      assert.equal(c.modelType, 'llama2c');
      assert.deepEqual([c.hiddenSize, c.numLayers, c.numHeads, c.numKvHeads, c.headDim], [8, 2, 2, 1, 4]);
      assert.deepEqual([c.intermediateSize, c.vocabSize, c.maxPositions], [12, 5, 4]);
      assert.deepEqual([c.normEps, c.ropeTheta, c.bosTokenId, c.eosTokenId], [1e-5, 10000, 1, 2]);
      assert.equal(c.tieEmbeddings, false);
      // q of layer 1: llama2.c rows 0..7 of 8 columns; each head of 4 rows reordered [0,2,1,3]
      const raw = block('wq', 64, 64);
      const rowsOf = (order: number[]) => order.flatMap((r) => raw.slice(r * 8, r * 8 + 8));
      assert.deepEqual(
        [...(await spec.tensors.get('layers.1.attn.q.weight')!.load())],
        rowsOf([0, 2, 1, 3, 4, 6, 5, 7]),
      );
      const rawK = block('wk', 0, 32);
      assert.deepEqual(
        [...(await spec.tensors.get('layers.0.attn.k.weight')!.load())],
        [0, 2, 1, 3].flatMap((r) => rawK.slice(r * 8, r * 8 + 8)),
      );
      // v and o are not permuted; w1 = gate, w3 = up, w2 = down
      assert.deepEqual([...(await spec.tensors.get('layers.0.attn.v.weight')!.load())], block('wv', 0, 32));
      assert.deepEqual([...(await spec.tensors.get('layers.1.attn.o.weight')!.load())], block('wo', 64, 64));
      assert.deepEqual(
        [...(await spec.tensors.get('layers.1.mlp.gate.weight')!.load())],
        block('w1', 96, 96),
      );
      assert.deepEqual([...(await spec.tensors.get('layers.1.mlp.up.weight')!.load())], block('w3', 96, 96));
      assert.deepEqual(
        [...(await spec.tensors.get('layers.1.mlp.down.weight')!.load())],
        block('w2', 96, 96),
      );
      assert.deepEqual(
        [...(await spec.tensors.get('layers.0.mlp_norm.weight')!.load())],
        block('rms_ffn_weight', 0, 8),
      );
      assert.deepEqual([...(await spec.tensors.get('lm_head.weight')!.load())], block('wcls', 0, 40));
      assert.deepEqual(spec.tensors.get('layers.1.attn.q.weight')!.shape, [8, 8]);
      assert.deepEqual(new Set(spec.tensors.keys()), new Set(llamaRoleShapes(c).map(([r]) => r)));
    });
  }
});

describe('round trips', () => {
  const variants: Array<[string, Parameters<typeof randomLlamaSpec>[0]]> = [
    [
      'llama untied, GQA',
      {
        hiddenSize: 32,
        numLayers: 3,
        numHeads: 4,
        numKvHeads: 2,
        intermediateSize: 48,
        vocabSize: 40,
        maxPositions: 64,
        seed: 7,
      },
    ],
    [
      'llama tied, biases, head_dim ≠ hidden/heads',
      {
        hiddenSize: 24,
        numLayers: 2,
        numHeads: 3,
        numKvHeads: 1,
        headDim: 6,
        intermediateSize: 40,
        vocabSize: 30,
        maxPositions: 16,
        attentionBias: true,
        tieEmbeddings: true,
        seed: 8,
      },
    ],
    [
      'qwen2',
      {
        hiddenSize: 16,
        numLayers: 2,
        numHeads: 2,
        numKvHeads: 2,
        intermediateSize: 24,
        vocabSize: 20,
        maxPositions: 16,
        modelType: 'qwen2',
        tieEmbeddings: true,
        seed: 9,
      },
    ],
  ];
  for (const [label, opts] of variants) {
    for (const shardBytes of [undefined, 4096]) {
      it(`spec → HF${shardBytes ? ' (sharded)' : ''} → spec is the identity: ${label}`, async () => {
        const spec = randomLlamaSpec(opts);
        const dir = join(tmp.dir, `rt-${folderCount++}`);
        await writeHfFolder(dir, { ...llamaSpecToHf(spec), shardBytes });
        const back = await loadModelSpec(dir);
        assert.deepEqual(back.config, spec.config);
        assert.deepEqual([...back.tensors.keys()].sort(), [...spec.tensors.keys()].sort());
        for (const [role, t] of spec.tensors)
          assert.deepEqual(await back.tensors.get(role)!.load(), await t.load(), role);
      });
    }
  }

  for (const tie of [false, true]) {
    it(`spec → llama2.c → spec is the identity (tied ${tie})`, async () => {
      const spec = randomLlamaSpec({
        hiddenSize: 32,
        numLayers: 2,
        numHeads: 4,
        numKvHeads: 2,
        intermediateSize: 40,
        vocabSize: 25,
        maxPositions: 12,
        tieEmbeddings: tie,
        seed: 3,
      });
      const path = join(tmp.dir, `rt-${tie}.bin`);
      await writeLlama2cFromSpec(path, spec);
      const back = await loadModelSpec(path);
      const { modelType, bosTokenId, eosTokenId, ...rest } = back.config;
      assert.equal(modelType, 'llama2c');
      const { modelType: _m, bosTokenId: _b, eosTokenId: _e, ...want } = spec.config;
      assert.deepEqual(rest, want);
      assert.deepEqual([...back.tensors.keys()].sort(), [...spec.tensors.keys()].sort());
      for (const [role, t] of spec.tensors)
        assert.deepEqual(await back.tensors.get(role)!.load(), await t.load(), role);
    });
  }

  it('llama2.c → spec → llama2.c keeps the llama2.c tensors bit for bit', async () => {
    const src = join(tmp.dir, 'l2c-src.bin');
    writeFileSync(src, tinyL2cBytes('legacy', true));
    const out = join(tmp.dir, 'l2c-out.bin');
    await writeLlama2cFromSpec(out, llamaSpecFromLlama2c(await openLlama2c(src)));
    const a = await openLlama2c(src);
    const b = await openLlama2c(out);
    for (const [name, t] of a.tensors) {
      if (!name.startsWith('freq_cis'))
        assert.deepEqual(await b.tensors.get(name)!.load(), await t.load(), name);
    }
  });

  it('refuses to write what llama2.c cannot express', async () => {
    const biased = randomLlamaSpec({
      hiddenSize: 16,
      numLayers: 1,
      numHeads: 2,
      numKvHeads: 2,
      intermediateSize: 8,
      vocabSize: 8,
      maxPositions: 8,
      attentionBias: true,
      seed: 1,
    });
    const path = join(tmp.dir, 'biased.bin');
    await rejectsFileError(
      writeLlama2cFromSpec(path, biased),
      path,
      /cannot write as llama2\.c: linears carry biases/,
    );
    const eps = {
      ...biased,
      config: { ...biased.config, attentionBias: false, attentionOutBias: false, normEps: 1e-6 },
    };
    await rejectsFileError(
      writeLlama2cFromSpec(path, eps),
      path,
      /norm eps is 0\.000001, llama2\.c fixes 1e-5/,
    );
  });

  it('refuses biases a config.json cannot express', () => {
    const spec = randomLlamaSpec({
      hiddenSize: 16,
      numLayers: 1,
      numHeads: 2,
      numKvHeads: 2,
      intermediateSize: 8,
      vocabSize: 8,
      maxPositions: 8,
      seed: 1,
    });
    const odd = { ...spec, config: { ...spec.config, attentionBias: true } };
    assert.throws(
      () => llamaSpecToHf(odd),
      (e: unknown) => e instanceof GenepruneError && /cannot express these biases/.test(e.message),
    );
  });
});

const STORIES = sharedPath('models/stories260K/stories260K.bin');
describe('stories260K as a ModelSpec', { skip: STORIES ? false : 'shared model absent' }, () => {
  it('has the published shape', async () => {
    const spec = await loadModelSpec(STORIES!);
    const c = spec.config;
    assert.deepEqual(
      [c.hiddenSize, c.numLayers, c.numHeads, c.numKvHeads, c.headDim, c.vocabSize, c.maxPositions],
      [64, 5, 8, 4, 8, 512, 512],
    );
    assert.equal(c.intermediateSize, 172);
    assert.equal(c.tieEmbeddings, true);
    assert.ok(!spec.tensors.has('lm_head.weight'));
    // "about 260K parameters"
    const n = parameterCount(spec);
    assert.equal(n, 512 * 64 + 5 * (64 + 64 * 64 + 2 * 32 * 64 + 64 * 64 + 64 + 3 * 172 * 64) + 64);
    assert.ok(n > 250_000 && n < 270_000);
  });

  it('stores q rows permuted relative to the file', async () => {
    const spec = await loadModelSpec(STORIES!);
    const raw = await (await openLlama2c(STORIES!)).tensors.get('wq.2')!.load();
    const q = await spec.tensors.get('layers.2.attn.q.weight')!.load();
    // head 1, half-split row 1 (index 8 + 1) is interleaved row 2 (8 + 2)
    assert.deepEqual(q.subarray(9 * 64, 10 * 64), raw.subarray(10 * 64, 11 * 64));
    assert.deepEqual(q.subarray(8 * 64 + 4 * 64, 8 * 64 + 5 * 64), raw.subarray(9 * 64, 10 * 64));
  });

  it('exports to a Hugging Face folder and reads back equal', async () => {
    const spec = await loadModelSpec(STORIES!);
    const dir = join(tmp.dir, 'stories-hf');
    await writeHfFolder(dir, llamaSpecToHf(spec));
    const back = await loadModelSpec(dir);
    assert.equal(back.config.modelType, 'llama');
    assert.deepEqual({ ...back.config, modelType: 'llama2c' }, spec.config);
    for (const [role, t] of spec.tensors)
      assert.deepEqual(await back.tensors.get(role)!.load(), await t.load(), role);
  });
});
