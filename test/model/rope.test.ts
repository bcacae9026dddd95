/**
 * Rotary scaling read from config.json: the inverse frequencies of each kind against values worked out by hand
 * from the definitions (Llama 3.1's three bands, YaRN's ramp and attention factor), the plain reference agreeing
 * with them, and one-line refusals of what is not supported or not well formed.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { GenepruneError } from '../../src/errors.js';
import { modelFingerprint } from '../../src/model/identity.js';
import { llamaConfigFromHf } from '../../src/model/llama.js';
import { randomLlamaSpec } from '../../src/model/random.js';
import {
  type RopeScaling,
  ropeCosSinFactor,
  ropeInverseFrequencies,
  ropeSettingsFromHf,
} from '../../src/model/rope.js';
import { referenceFrequencies } from '../reference/llama.js';

const fail = (message: string) => new GenepruneError('file', message, 'config.json');

function scaling(json: Record<string, unknown>, maxPositions: number): RopeScaling {
  const s = ropeSettingsFromHf(json, maxPositions, fail).scaling;
  assert.ok(s, 'a scaling');
  return s;
}

function assertClose(got: ArrayLike<number>, want: number[], rel: number, what: string): void {
  assert.equal(got.length, want.length, what);
  for (let j = 0; j < want.length; j++) {
    assert.ok(
      Math.abs(got[j] - want[j]) <= rel * Math.abs(want[j]),
      `${what}[${j}]: ${got[j]} vs ${want[j]}`,
    );
  }
}

// head_dim 16, θ = 10⁴: the unscaled frequencies are 10^(−j/2).
const PLAIN_16 = [1, 0.31622777, 0.1, 0.031622777, 0.01, 0.0031622777, 0.001, 0.00031622777];

describe('inverse frequencies, worked by hand', () => {
  it('llama3: untouched above, divided below, blended between (head_dim 16, context 512)', () => {
    const s = scaling(
      {
        rope_theta: 10000,
        rope_scaling: {
          rope_type: 'llama3',
          factor: 8,
          low_freq_factor: 1,
          high_freq_factor: 4,
          original_max_position_embeddings: 512,
        },
      },
      4096,
    );
    // Wavelengths 2π/f: 6.28, 19.9, 62.8 are below 512/4 = 128 (kept); 628, 1987, 6283, 19869 are above
    // 512/1 = 512 (divided by 8); 198.69 lies between: s = (512/198.69 − 1)/(4 − 1) = 0.52562, so
    // f = 0.031623·((1 − 0.52562)/8 + 0.52562) = 0.018497.
    const want = [1, 0.31622777, 0.1, 0.018496675, 0.01 / 8, 0.0031622777 / 8, 0.001 / 8, 0.00031622777 / 8];
    assertClose(ropeInverseFrequencies(10000, 16, s), want, 1e-7, 'llama3');
    assert.equal(ropeCosSinFactor(s), 1);
  });

  it("llama3 with Llama-3.2-1B's settings (θ 500000, head_dim 64, factor 32, context 8192)", () => {
    const s = scaling(
      {
        rope_theta: 500000,
        rope_scaling: {
          rope_type: 'llama3',
          factor: 32,
          low_freq_factor: 1,
          high_freq_factor: 4,
          original_max_position_embeddings: 8192,
        },
      },
      131072,
    );
    const f = ropeInverseFrequencies(500000, 64, s);
    // f_j = 500000^(−j/32). Wavelengths below 2048 (j ≤ 14) are kept, above 8192 (j ≥ 18) divided by 32; j = 15,
    // 16, 17 (wavelengths 2948, 4443, 6695) blend with s = 8192/λ − 1 over 3: 0.59284, 0.28128, 0.07452.
    assertClose([f[0], f[14]], [1, 500000 ** (-14 / 32)], 1e-12, 'high band');
    assertClose([f[15], f[16], f[17]], [0.0012905479, 0.0004295568, 0.000097082878], 1e-7, 'middle band');
    assertClose([f[18], f[31]], [500000 ** (-18 / 32) / 32, 500000 ** (-31 / 32) / 32], 1e-12, 'low band');
  });

  it('yarn: the ramp between the correction dimensions, and the attention factor', () => {
    const s = scaling(
      { rope_theta: 10000, rope_scaling: { type: 'yarn', factor: 4, original_max_position_embeddings: 64 } },
      256,
    );
    // Correction dimensions 16·ln(64/(2π·r))/(2·ln 10⁴): r = 32 → −0.994 (floor −1, clamped to 0), r = 1 → 2.016
    // (ceil 3). The ramp over pairs 0, 1, 2, ≥3 is 0, 1/3, 2/3, 1: f·(1 − ramp) + f/4·ramp.
    const want = [1, 0.31622777 * 0.75, 0.1 * 0.5, ...PLAIN_16.slice(3).map((f) => f / 4)];
    assertClose(ropeInverseFrequencies(10000, 16, s), want, 1e-7, 'yarn');
    // 0.1·ln 4 + 1.
    assert.ok(Math.abs(ropeCosSinFactor(s) - 1.1386294361) < 1e-9);
  });

  it('yarn: mscale / mscale_all_dim, a given attention_factor, truncate false', () => {
    const base = { type: 'yarn', factor: 4, original_max_position_embeddings: 64 };
    const ratio = (extra: Record<string, unknown>) =>
      ropeCosSinFactor(scaling({ rope_scaling: { ...base, ...extra } }, 256));
    // (0.1·2·ln 4 + 1)/(0.1·1·ln 4 + 1) = 1.277259/1.138629.
    assert.ok(Math.abs(ratio({ mscale: 2, mscale_all_dim: 1 }) - 1.1217511) < 1e-6);
    assert.equal(ratio({ mscale: 0.8, mscale_all_dim: 0.8 }), 1);
    // mscale alone does not count (transformers needs both).
    assert.ok(Math.abs(ratio({ mscale: 2 }) - 1.1386294) < 1e-6);
    assert.equal(ratio({ attention_factor: 1.5 }), 1.5);
    // Without truncation the ramp runs from 0 to 2.016 itself: pair 1 ramps by 1/2.016, pair 2 by 2/2.016.
    const f = ropeInverseFrequencies(10000, 16, scaling({ rope_scaling: { ...base, truncate: false } }, 256));
    const [r1, r2] = [1 / 2.0160002, 2 / 2.0160002];
    assertClose(
      [f[1], f[2], f[3]],
      [0.31622777 * (1 - r1 + r1 / 4), 0.1 * (1 - r2 + r2 / 4), 0.031622777 / 4],
      1e-6,
      'untruncated',
    );
  });

  it('linear divides every frequency; dynamic is unscaled inside the context', () => {
    const linear = scaling({ rope_scaling: { type: 'linear', factor: 2 } }, 64);
    assertClose(
      ropeInverseFrequencies(10000, 16, linear),
      PLAIN_16.map((f) => f / 2),
      1e-7,
      'linear',
    );
    const dynamic = scaling({ rope_scaling: { type: 'dynamic', factor: 2 } }, 64);
    assertClose(ropeInverseFrequencies(10000, 16, dynamic), PLAIN_16, 1e-7, 'dynamic');
  });

  it('the plain reference gives the same frequencies', () => {
    const configs: Array<[Record<string, unknown>, number]> = [
      [
        {
          rope_type: 'llama3',
          factor: 8,
          low_freq_factor: 1,
          high_freq_factor: 4,
          original_max_position_embeddings: 512,
        },
        4096,
      ],
      [{ type: 'yarn', factor: 4, original_max_position_embeddings: 64 }, 256],
      [
        {
          type: 'yarn',
          factor: 8,
          beta_fast: 16,
          beta_slow: 2,
          mscale: 1,
          mscale_all_dim: 0.5,
          truncate: false,
        },
        512,
      ],
      [{ type: 'linear', factor: 3 }, 64],
      [{ type: 'dynamic', factor: 3 }, 64],
    ];
    for (const [json, maxPositions] of configs) {
      const s = scaling({ rope_theta: 10000, rope_scaling: json }, maxPositions);
      const ref = referenceFrequencies(
        { ropeTheta: 10000, headDim: 16, ropeScalingJson: json, maxPositions },
        maxPositions,
      );
      assertClose(ropeInverseFrequencies(10000, 16, s), ref.freqs, 1e-12, JSON.stringify(json));
      assert.ok(Math.abs(ropeCosSinFactor(s) - ref.cosSinFactor) < 1e-12);
    }
  });

  it('dynamic NTK does change frequencies past the context (which the graphs refuse to run)', () => {
    const json = { type: 'dynamic', factor: 2 };
    const w = { ropeTheta: 10000, headDim: 16, ropeScalingJson: json, maxPositions: 64 };
    assertClose(referenceFrequencies(w, 64).freqs, PLAIN_16, 1e-7, 'at the context');
    // 128 positions: θ' = 10⁴·(2·128/64 − 1)^(16/14) = 10⁴·3^(8/7); pair 1: θ'^(−1/8).
    const beyond = referenceFrequencies(w, 128).freqs;
    assert.ok(Math.abs(beyond[1] - (10000 * 3 ** (8 / 7)) ** (-1 / 8)) < 1e-12);
    assert.ok(beyond[1] < PLAIN_16[1] * 0.9);
  });
});

describe('published Llama-3.x config.json files', () => {
  // Field for field as Meta's Llama-3.2-1B and Llama-3.1-8B ship them (JSON's 32.0 reads as 32).
  const llama32_1b = {
    architectures: ['LlamaForCausalLM'],
    attention_bias: false,
    attention_dropout: 0.0,
    bos_token_id: 128000,
    eos_token_id: 128001,
    head_dim: 64,
    hidden_act: 'silu',
    hidden_size: 2048,
    initializer_range: 0.02,
    intermediate_size: 8192,
    max_position_embeddings: 131072,
    mlp_bias: false,
    model_type: 'llama',
    num_attention_heads: 32,
    num_hidden_layers: 16,
    num_key_value_heads: 8,
    pretraining_tp: 1,
    rms_norm_eps: 1e-5,
    rope_scaling: {
      factor: 32.0,
      high_freq_factor: 4.0,
      low_freq_factor: 1.0,
      original_max_position_embeddings: 8192,
      rope_type: 'llama3',
    },
    rope_theta: 500000.0,
    tie_word_embeddings: true,
    torch_dtype: 'bfloat16',
    use_cache: true,
    vocab_size: 128256,
  };

  it('Llama-3.2-1B loads with θ 500000 and its llama3 scaling', () => {
    const c = llamaConfigFromHf(llama32_1b, 'config.json');
    assert.equal(c.ropeTheta, 500000);
    assert.equal(c.maxPositions, 131072);
    assert.deepEqual([c.headDim, c.numHeads, c.numKvHeads, c.tieEmbeddings], [64, 32, 8, true]);
    const { source, ...fields } = c.ropeScaling!;
    assert.deepEqual(fields, {
      kind: 'llama3',
      factor: 32,
      lowFreqFactor: 1,
      highFreqFactor: 4,
      originalMaxPositions: 8192,
    });
    assert.deepEqual(source, { key: 'rope_scaling', value: llama32_1b.rope_scaling });
  });

  it('Llama-3.1-8B (factor 8, no head_dim) loads too', () => {
    const c = llamaConfigFromHf(
      {
        ...llama32_1b,
        head_dim: undefined,
        hidden_size: 4096,
        intermediate_size: 14336,
        num_hidden_layers: 32,
        tie_word_embeddings: false,
        rope_scaling: { ...llama32_1b.rope_scaling, factor: 8.0 },
      },
      'config.json',
    );
    assert.equal(c.headDim, 128);
    assert.equal(c.ropeScaling?.factor, 8);
  });
});

describe('config.json rotary settings', () => {
  it('rope_parameters (newer transformers) carries theta and the scaling, remembered for export', () => {
    const value = { rope_type: 'yarn', rope_theta: 1e6, factor: 4, original_max_position_embeddings: 32768 };
    const r = ropeSettingsFromHf({ rope_parameters: value }, 131072, fail);
    assert.equal(r.theta, 1e6);
    assert.equal(r.scaling?.kind, 'yarn');
    assert.deepEqual(r.scaling?.source, { key: 'rope_parameters', value });
    assert.equal(ropeSettingsFromHf({ rope_scaling: { type: 'default' } }, 64, fail).scaling, undefined);
    assert.equal(ropeSettingsFromHf({ partial_rotary_factor: 1 }, 64, fail).scaling, undefined);
  });

  it('refuses in one line what it cannot compute', () => {
    const llama3 = {
      rope_type: 'llama3',
      factor: 8,
      low_freq_factor: 1,
      high_freq_factor: 4,
      original_max_position_embeddings: 512,
    };
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [
        { rope_scaling: { type: 'longrope', factor: 2 } },
        /rope_scaling type "longrope" is not supported \(supported: default, linear, dynamic, llama3, yarn\)/,
      ],
      [{ rope_scaling: { type: 'linear' } }, /rope_scaling\.factor \(linear\) is missing/],
      [
        { rope_scaling: { type: 'dynamic', factor: -2 } },
        /rope_scaling\.factor \(dynamic\) must be a positive number, got -2/,
      ],
      [
        { rope_scaling: { ...llama3, high_freq_factor: 1 } },
        /high_freq_factor.*1 must exceed low_freq_factor 1/,
      ],
      [
        { rope_scaling: { ...llama3, original_max_position_embeddings: undefined } },
        /original_max_position_embeddings \(llama3\) is missing/,
      ],
      [
        { rope_scaling: { ...llama3, original_max_position_embeddings: 8.5 } },
        /must be an integer, got 8\.5/,
      ],
      [
        { rope_scaling: { type: 'yarn', factor: 2, truncate: 'yes' } },
        /truncate \(yarn\) must be true or false/,
      ],
      [{ rope_scaling: [2] }, /"rope_scaling" must be an object or null/],
      [
        { rope_scaling: { type: 'linear', factor: 2 }, rope_parameters: { rope_type: 'linear', factor: 2 } },
        /both rope_scaling and rope_parameters/,
      ],
      [{ partial_rotary_factor: 0.5 }, /"partial_rotary_factor" 0\.5 is not supported/],
      [
        { rope_parameters: { rope_type: 'default', partial_rotary_factor: 0.25 } },
        /rope_parameters\.partial_rotary_factor 0\.25/,
      ],
      [{ rope_theta: 0 }, /"rope_theta" must be a positive number, got 0/],
    ];
    for (const [json, pattern] of cases) {
      assert.throws(
        () => ropeSettingsFromHf(json, 4096, fail),
        (err: unknown) =>
          err instanceof GenepruneError && err.where === 'config.json' && pattern.test(err.message),
        JSON.stringify(json),
      );
    }
  });
});

describe('fingerprints', () => {
  it('include the scaling (not the key it was written under); the same weights unscaled differ', async () => {
    const llama3 = {
      rope_type: 'llama3',
      factor: 8,
      low_freq_factor: 1,
      high_freq_factor: 4,
      original_max_position_embeddings: 16,
    };
    const spec = (ropeScaling?: Record<string, unknown>) =>
      randomLlamaSpec({
        hiddenSize: 16,
        numLayers: 1,
        numHeads: 2,
        numKvHeads: 1,
        intermediateSize: 8,
        vocabSize: 11,
        maxPositions: 64,
        seed: 3,
        ropeScaling,
      });
    const plain = await modelFingerprint(spec());
    const scaled = await modelFingerprint(spec(llama3));
    assert.notEqual(scaled, plain);
    assert.notEqual(await modelFingerprint(spec({ ...llama3, factor: 16 })), scaled);
    assert.notEqual(await modelFingerprint(spec({ type: 'linear', factor: 8 })), scaled);
    // The same scaling given as rope_parameters is the same model.
    const viaParameters = spec();
    const settings = ropeSettingsFromHf({ rope_parameters: llama3 }, 64, fail);
    viaParameters.config.ropeScaling = settings.scaling;
    assert.equal(await modelFingerprint(viaParameters), scaled);
  });
});
