/**
 * The config.json reading the rotary decoder families share (llama.ts decoderSizesFromHf, perLayerHeadsFromHf,
 * rotaryDecoderConfigFromHf): each family's ModelConfig keeps the keys, values and key order its own code gave
 * before they were shared — a distributed search compares the config's JSON between processes — and the shared
 * refusals name config.json; a folder whose untied head is missing says why a head was expected
 * (llama.ts rotaryDecoderSpecFromHf).
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { GenepruneError } from '../../src/errors.js';
import { gemmaConfigFromHf } from '../../src/model/gemma.js';
import { configReader } from '../../src/model/hfconfig.js';
import { llamaConfigFromHf, rotaryDecoderConfigFromHf } from '../../src/model/llama.js';
import { loadModelSpec } from '../../src/model/load.js';
import { phi3ConfigFromHf } from '../../src/model/phi3.js';
import { qwen3ConfigFromHf } from '../../src/model/qwen3.js';
import { rejectsFileError, tempDir } from '../checkpoint/helpers.js';
import { writeGemma } from '../helpers/gemma.js';
import { writePhi3 } from '../helpers/phi3.js';
import { writeQwen3 } from '../helpers/qwen3.js';

const PATH = '/models/x/config.json';
const BASE = {
  hidden_size: 64,
  num_hidden_layers: 3,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  intermediate_size: 96,
  vocab_size: 50,
  bos_token_id: 1,
  eos_token_id: [2, 3],
};
/** A physically pruned export's head keys: uneven groups in layer 1, no heads in layer 2. */
const PRUNED = {
  num_attention_heads_per_layer: [4, 3, 0],
  num_key_value_heads_per_layer: [2, 2, 0],
  kv_head_of_query_per_layer: [[0, 0, 1, 1], [0, 1, 1], []],
};
/** The keys every family's literal began with, in its order (llama's configs never had `arch`). */
const HEAD = [
  'hiddenSize',
  'numLayers',
  'numHeads',
  'numKvHeads',
  'headDim',
  'headsPerLayer',
  'kvHeadsPerLayer',
];
const MID = [
  'intermediateSize',
  'vocabSize',
  'maxPositions',
  'normKind',
  'normPlacement',
  'normEps',
  'activation',
];
const BIASES = ['attentionBias', 'attentionOutBias', 'mlpBias', 'tieEmbeddings'];
/** The keys up to ropeTheta, `arch` where the family writes it. */
const UP_TO_THETA = (arch: boolean) => [
  'family',
  ...(arch ? ['arch'] : []),
  'modelType',
  ...HEAD,
  ...MID,
  'mlpKind',
  'positionKind',
  'ropeTheta',
];

describe('the rotary decoders keep their ModelConfig', () => {
  test('llama: keys in order, pruned head keys read back', () => {
    const c = llamaConfigFromHf(
      { ...BASE, ...PRUNED, model_type: 'llama', rope_scaling: { rope_type: 'linear', factor: 2 } },
      PATH,
    );
    assert.deepEqual(Object.keys(c), [
      ...UP_TO_THETA(false),
      'ropeScaling',
      ...BIASES,
      'kvHeadOfQuery',
      'bosTokenId',
      'eosTokenId',
    ]);
    assert.deepEqual([c.headDim, c.headsPerLayer, c.kvHeadsPerLayer], [16, [4, 3, 0], [2, 2, 0]]);
    assert.deepEqual(c.kvHeadOfQuery, PRUNED.kv_head_of_query_per_layer);
    assert.deepEqual([c.bosTokenId, c.eosTokenId, c.tieEmbeddings, c.normEps], [1, 2, false, 1e-6]);
  });

  test('qwen3: head_dim defaults to 128, qkNorm after the shared keys, windows after the maps', () => {
    const c = qwen3ConfigFromHf(
      { ...BASE, model_type: 'qwen3', use_sliding_window: true, max_window_layers: 1 },
      PATH,
    );
    assert.deepEqual(Object.keys(c), [
      ...UP_TO_THETA(true),
      ...BIASES,
      'qkNorm',
      'slidingWindow',
      'bosTokenId',
      'eosTokenId',
    ]);
    assert.equal(c.headDim, 128);
    assert.deepEqual(c.slidingWindow, [0, 4096, 4096]);
  });

  test('gemma2: its defaults (4 KV heads, head_dim 256, tied head) and its own keys after the shared ones', () => {
    const { num_key_value_heads: _, ...noKv } = BASE;
    const c = gemmaConfigFromHf({ ...noKv, model_type: 'gemma2' }, PATH);
    assert.deepEqual(Object.keys(c), [
      ...UP_TO_THETA(true),
      ...BIASES,
      'normWeightOffset',
      'embedScale',
      'attnScale',
      'attnSoftcap',
      'finalSoftcap',
      'slidingWindow',
      'sandwichNorms',
      'bosTokenId',
      'eosTokenId',
    ]);
    assert.deepEqual([c.numKvHeads, c.headDim, c.tieEmbeddings], [4, 256, true]);
  });

  test('phi3: rotaryDim before the scaling, the window before the maps, then the pad id', () => {
    const c = phi3ConfigFromHf(
      {
        ...BASE,
        ...PRUNED,
        model_type: 'phi3',
        partial_rotary_factor: 0.75,
        max_position_embeddings: 64,
        original_max_position_embeddings: 32,
        rope_scaling: { type: 'longrope', short_factor: Array(6).fill(1), long_factor: Array(6).fill(2) },
        sliding_window: 7,
        pad_token_id: 9,
      },
      PATH,
    );
    assert.deepEqual(Object.keys(c), [
      ...UP_TO_THETA(true),
      'rotaryDim',
      'ropeScaling',
      ...BIASES,
      'slidingWindow',
      'kvHeadOfQuery',
      'padTokenId',
      'bosTokenId',
      'eosTokenId',
    ]);
    assert.deepEqual([c.rotaryDim, c.normEps, c.slidingWindow], [12, 1e-5, [7, 7, 7]]);
  });
});

describe('rotaryDecoderConfigFromHf', () => {
  test('per-layer MLP widths, when a family passes them, follow intermediateSize; absent, no key', () => {
    const parts = {
      family: 'llama' as const,
      modelType: 'llama',
      sizes: { hiddenSize: 64, numLayers: 3, numHeads: 4, numKvHeads: 2, headDim: 16 },
      heads: { headsPerLayer: [4, 4, 4], kvHeadsPerLayer: [2, 2, 2] },
      intermediateSize: 96,
      maxPositions: 64,
      normEps: 1e-6,
      activation: 'silu' as const,
      rope: { theta: 10000 },
      biases: { attentionBias: false, attentionOutBias: false, mlpBias: false },
      tieEmbeddings: false,
    };
    const r = configReader({ vocab_size: 50 }, PATH);
    const keys = Object.keys(rotaryDecoderConfigFromHf(r, { ...parts, intermediatePerLayer: [96, 0, 32] }));
    assert.equal(keys[keys.indexOf('intermediateSize') + 1], 'intermediatePerLayer');
    assert.equal('intermediatePerLayer' in rotaryDecoderConfigFromHf(r, parts), false);
    assert.deepEqual(
      rotaryDecoderConfigFromHf(r, { ...parts, intermediatePerLayer: [96, 0, 32] }).intermediatePerLayer,
      [96, 0, 32],
    );
  });
});

describe('the shared refusals name config.json and the key', () => {
  const cases: Array<[string, (json: Record<string, unknown>, path: string) => unknown, object, string]> = [
    [
      'uneven KV groups',
      qwen3ConfigFromHf,
      { model_type: 'qwen3', num_key_value_heads: 3 },
      'num_attention_heads 4 is not a multiple of num_key_value_heads 3',
    ],
    [
      'no head_dim and an uneven split',
      llamaConfigFromHf,
      { model_type: 'llama', hidden_size: 66 },
      'hidden_size 66 is not a multiple of num_attention_heads 4 and head_dim is unset',
    ],
    [
      'an odd head_dim',
      gemmaConfigFromHf,
      { model_type: 'gemma', head_dim: 7 },
      'head_dim 7 is odd (rotary embedding needs pairs)',
    ],
    // Phi-3 rotates a fraction of each head: its own check speaks of that fraction, not of head_dim.
    [
      'an odd head_dim (phi3)',
      phi3ConfigFromHf,
      { model_type: 'phi3', head_dim: 7 },
      'partial_rotary_factor 1 gives 7 rotary dimensions of head_dim 7',
    ],
    [
      'one per-layer head key alone',
      phi3ConfigFromHf,
      { model_type: 'phi3', num_attention_heads_per_layer: [4, 4, 4] },
      'num_attention_heads_per_layer and num_key_value_heads_per_layer must be given together',
    ],
    [
      'no vocab_size',
      qwen3ConfigFromHf,
      { model_type: 'qwen3', vocab_size: undefined },
      '"vocab_size" is missing',
    ],
  ];
  for (const [name, read, extra, words] of cases) {
    test(name, () => {
      assert.throws(
        () => read({ ...BASE, ...extra }, PATH),
        (e: unknown) => e instanceof GenepruneError && e.oneLine().startsWith(`${PATH}: ${words}`),
      );
    });
  }
});

describe('a missing untied head is refused naming the folder and why a head was expected', () => {
  const tmp = tempDir('geneprune-decoderconfig-');
  after(tmp.cleanup);
  const SETS = 'tensor lm_head.weight is missing and config.json sets tie_word_embeddings false';
  const UNSET =
    'tensor lm_head.weight is missing and config.json does not set tie_word_embeddings (default false)';
  // Each writer leaves lm_head.weight out of a tied shape; `extra` then unties the config.
  const cases: Array<[string, (dir: string, extra: Record<string, unknown>) => Promise<unknown>, string[]]> =
    [
      [
        'qwen3',
        (dir, extra) =>
          writeQwen3(
            dir,
            { hidden: 24, layers: 2, heads: 4, kvHeads: 2, headDim: 8, inter: 40, vocab: 37 },
            1,
            extra,
          ),
        [SETS, UNSET],
      ],
      [
        'gemma2',
        (dir, extra) =>
          writeGemma(
            dir,
            { type: 'gemma2', hidden: 32, layers: 2, heads: 4, kvHeads: 2, headDim: 8, inter: 48, vocab: 37 },
            2,
            extra,
          ),
        // Gemma ties by default: only a config that says false expects a head.
        [SETS],
      ],
      [
        'phi3',
        (dir, extra) =>
          writePhi3(
            dir,
            {
              hidden: 32,
              layers: 2,
              heads: 4,
              kvHeads: 2,
              inter: 40,
              vocab: 37,
              maxPositions: 32,
              tied: true,
            },
            3,
            extra,
          ),
        [SETS, UNSET],
      ],
    ];
  for (const [family, write, messages] of cases) {
    for (const message of messages) {
      test(`${family}: ${message === SETS ? 'tie_word_embeddings false' : 'no tie_word_embeddings'}`, async () => {
        const dir = join(tmp.dir, `${family}-${message === SETS ? 'false' : 'unset'}`);
        await write(dir, { tie_word_embeddings: message === SETS ? false : undefined });
        await rejectsFileError(loadModelSpec(dir), dir, new RegExp(`^${message.replace(/[()]/g, '\\$&')}$`));
      });
    }
  }
});
