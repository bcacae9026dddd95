/**
 * Phi-3 / Phi-3.5 / Phi-4-mini: small random checkpoints written as Hugging Face folders (Phi3ForCausalLM names,
 * fused qkv_proj and gate_up_proj) load into the spec and their logits match the plain reference forward (written
 * from the published definition over the HF tensors) to 1e-4, with and without masked heads, on the fused and the
 * explicit attention paths: MHA, GQA, partial rotary, a tied head, LongRoPE below and above its original context,
 * a sliding window; block graphs and the KV-cache graph agree on both sides of the original context; spec → HF →
 * spec is exact; the fingerprint tells partial from whole-head rotary; what the graph cannot honour fails in one
 * line naming config.json.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { createRunner } from '../../src/engine/runner.js';
import { specToHf } from '../../src/model/families.js';
import { modelFingerprint } from '../../src/model/identity.js';
import { loadModelSpec } from '../../src/model/load.js';
import type { ModelSpec } from '../../src/model/spec.js';
import { tempDir } from '../checkpoint/helpers.js';
import { assertConfigRefused, assertWrittenTensors } from '../helpers/hffolder.js';
import {
  assertMatchesReference,
  cachedLogits,
  maxAbsDiff,
  prefillThenSteps,
  type ReferenceForward,
  randomTokens,
  referenceLogits,
} from '../helpers/logits.js';
import {
  longropeScaling,
  type Phi3Shape,
  type Phi3Tensors,
  phi3HeadDim,
  writePhi3,
} from '../helpers/phi3.js';
import { type Phi3Reference, phi3Forward } from '../reference/phi3.js';

const tmp = tempDir('geneprune-phi3-');
after(tmp.cleanup);

/** The reference model of a written folder, read from its config.json the way the published definition does. */
function referenceOf(s: Phi3Shape, tensors: Phi3Tensors, config: Record<string, unknown>): Phi3Reference {
  const hd = phi3HeadDim(s);
  const rope = (config.rope_scaling ?? config.rope_parameters) as Record<string, unknown> | undefined;
  const partial = (rope?.partial_rotary_factor ?? config.partial_rotary_factor ?? 1) as number;
  const kind = rope?.type ?? rope?.rope_type;
  return {
    hiddenSize: s.hidden,
    numLayers: s.layers,
    headDim: hd,
    headsPerLayer: s.headsPerLayer ?? new Array(s.layers).fill(s.heads),
    kvHeadsPerLayer: s.kvHeadsPerLayer ?? new Array(s.layers).fill(s.kvHeads),
    intermediateSize: s.inter,
    vocabSize: s.vocab,
    maxPositions: s.maxPositions,
    eps: 1e-5,
    ropeTheta: 10000,
    rotaryDim: Math.trunc(hd * partial),
    longrope:
      kind === 'longrope' || kind === 'su'
        ? {
            shortFactor: rope?.short_factor as number[],
            longFactor: rope?.long_factor as number[],
            original: (config.original_max_position_embeddings ?? 4096) as number,
            factor: rope?.factor as number | undefined,
            attentionFactor: rope?.attention_factor as number | undefined,
          }
        : undefined,
    slidingWindow: (config.sliding_window ?? undefined) as number | undefined,
    tieEmbeddings: s.tied === true,
    get: (name) => tensors.get(name)?.data,
  };
}

/** The reference as the shared comparison (test/helpers/logits.ts) runs it. */
const forward =
  (ref: Phi3Reference): ReferenceForward =>
  (tokens, headMask) =>
    phi3Forward(ref, tokens, headMask);

/** Engine logits against the reference, dense and with `mask`, on both attention paths, for each length. */
async function assertMatches(spec: ModelSpec, ref: Phi3Reference, mask: number[][], lengths = [7]) {
  for (const n of lengths) {
    const seqs = [randomTokens(n, ref.vocabSize, n), randomTokens(n, ref.vocabSize, n + 100)];
    await assertMatchesReference(spec, forward(ref), seqs, mask, `length ${n}, `);
  }
}

// Phi-3-mini's shape in small: MHA, head_dim = hidden / heads, untied head.
const MINI: Phi3Shape = {
  hidden: 32,
  layers: 2,
  heads: 4,
  kvHeads: 4,
  inter: 40,
  vocab: 37,
  maxPositions: 32,
};
// Phi-4-mini's shape in small: GQA, partial rotary 0.75 (6 of 8 dims rotate), tied head.
const PHI4: Phi3Shape = {
  hidden: 32,
  layers: 2,
  heads: 4,
  kvHeads: 2,
  headDim: 8,
  inter: 48,
  vocab: 41,
  maxPositions: 32,
  tied: true,
};
const MASK = [
  [1, 0, 1, 1],
  [0, 1, 1, 0],
];

describe('Phi-3 checkpoints match the reference forward', () => {
  test('Phi-3-mini shape: spec fields, fused tensors split, logits with and without masked heads', async () => {
    const dir = join(tmp.dir, 'mini');
    const { tensors, config } = await writePhi3(dir, MINI, 1);
    const spec = await loadModelSpec(dir);
    const c = spec.config;
    assert.equal(c.family, 'phi3');
    assert.equal(c.modelType, 'phi3');
    assert.equal(c.headDim, 8);
    assert.equal(c.rotaryDim, undefined);
    assert.equal(c.ropeScaling, undefined);
    assert.equal(c.tieEmbeddings, false);
    assert.equal(c.normEps, 1e-5);
    // q/k/v are row ranges of qkv_proj, gate/up the halves of gate_up_proj.
    const qkv = tensors.get('model.layers.1.self_attn.qkv_proj.weight')!.data;
    const k = await spec.tensors.get('layers.1.attn.k.weight')!.load();
    assert.deepEqual([...k], [...qkv.slice(32 * 32, 64 * 32)]);
    const gateUp = tensors.get('model.layers.0.mlp.gate_up_proj.weight')!.data;
    assert.deepEqual(
      [...(await spec.tensors.get('layers.0.mlp.up.weight')!.load())],
      [...gateUp.slice(40 * 32)],
    );
    await assertMatches(spec, referenceOf(MINI, tensors, config), MASK);
  });

  test('Phi-4-mini shape: GQA, partial rotary 0.75, tied head (fused path falls back to the explicit chain)', async () => {
    const dir = join(tmp.dir, 'phi4');
    const { tensors, config } = await writePhi3(dir, PHI4, 2, { partial_rotary_factor: 0.75 });
    const spec = await loadModelSpec(dir);
    assert.equal(spec.config.rotaryDim, 6);
    assert.ok(spec.config.tieEmbeddings);
    const ref = referenceOf(PHI4, tensors, config);
    // Partial rotary must matter, or the test proves nothing.
    const seqs = [randomTokens(7, PHI4.vocab, 5)];
    const d = maxAbsDiff(
      referenceLogits(forward({ ...ref, rotaryDim: 8 }), seqs),
      referenceLogits(forward(ref), seqs),
    );
    assert.ok(d > 1e-2, `partial rotary changes the logits by only ${d}`);
    await assertMatches(spec, ref, MASK);
  });

  test('LongRoPE with partial rotary: short factors up to the original context (8), long ones past it', async () => {
    const dir = join(tmp.dir, 'longrope');
    const extra = {
      partial_rotary_factor: 0.75,
      original_max_position_embeddings: 8,
      rope_scaling: longropeScaling(6, 3),
    };
    const { tensors, config } = await writePhi3(dir, PHI4, 3, extra);
    const spec = await loadModelSpec(dir);
    const scaling = spec.config.ropeScaling;
    assert.equal(scaling?.kind, 'longrope');
    if (scaling?.kind !== 'longrope') return;
    assert.equal(scaling.originalMaxPositions, 8);
    // factor = max_position_embeddings / original = 4: attention factor √(1 + ln 4 / ln 8) = √(1 + 2/3).
    assert.ok(Math.abs(scaling.attentionFactor - Math.sqrt(5 / 3)) < 1e-12);
    const ref = referenceOf(PHI4, tensors, config);
    // Short and long factors give different logits at a length past the original context.
    const seqs = [randomTokens(12, PHI4.vocab, 6)];
    const asShort = { ...ref, longrope: { ...ref.longrope!, longFactor: ref.longrope!.shortFactor } };
    assert.ok(
      maxAbsDiff(referenceLogits(forward(asShort), seqs), referenceLogits(forward(ref), seqs)) > 1e-2,
    );
    // 8 tokens = the original context exactly (short), 9 and 12 past it (long).
    await assertMatches(spec, ref, MASK, [5, 8, 9, 12]);
  });

  test('LongRoPE on whole heads (fused kernel), old name "su", given attention_factor; GQA 4:1', async () => {
    const s: Phi3Shape = { ...MINI, kvHeads: 1 };
    const dir = join(tmp.dir, 'su');
    const extra = {
      original_max_position_embeddings: 8,
      rope_scaling: longropeScaling(8, 4, { type: 'su', attention_factor: 1.3 }),
    };
    const { tensors, config } = await writePhi3(dir, s, 4, extra);
    const spec = await loadModelSpec(dir);
    assert.equal(spec.config.ropeScaling?.kind, 'longrope');
    await assertMatches(spec, referenceOf(s, tensors, config), MASK, [6, 11]);
  });

  test('sliding_window: every layer sees the last w keys, as transformers 5.18 masks them', async () => {
    const dir = join(tmp.dir, 'window');
    const { tensors, config } = await writePhi3(dir, MINI, 5, { sliding_window: 3 });
    const spec = await loadModelSpec(dir);
    assert.deepEqual(spec.config.slidingWindow, [3, 3]);
    const ref = referenceOf(MINI, tensors, config);
    const seqs = [randomTokens(9, MINI.vocab, 7)];
    assert.ok(
      maxAbsDiff(
        referenceLogits(forward({ ...ref, slidingWindow: undefined }), seqs),
        referenceLogits(forward(ref), seqs),
      ) > 1e-2,
    );
    await assertMatches(spec, ref, MASK, [9]);
    // A window as long as the position table (Phi-3-mini-128k: 262144 ≥ 131072) hides nothing: decoder.ts counts
    // it as none (and may run the fused kernel); the logits are the reference's on both paths.
    const wide = join(tmp.dir, 'window-wide');
    const w = await writePhi3(wide, MINI, 5, { sliding_window: MINI.maxPositions });
    assert.deepEqual((await loadModelSpec(wide)).config.slidingWindow, [32, 32]);
    await assertMatches(await loadModelSpec(wide), referenceOf(MINI, w.tensors, w.config), MASK, [9]);
  });
});

describe('Phi-3 block graphs', () => {
  test('LongRoPE + partial rotary: block [0, 1) then [1, 2) from its hidden states gives the reference logits on both sides of the original context', async () => {
    const dir = join(tmp.dir, 'blocks');
    const extra = {
      partial_rotary_factor: 0.75,
      original_max_position_embeddings: 8,
      rope_scaling: longropeScaling(6, 14),
    };
    const { tensors, config } = await writePhi3(dir, PHI4, 14, extra);
    const spec = await loadModelSpec(dir);
    const ref = referenceOf(PHI4, tensors, config);
    const flatMask = Float32Array.from(MASK.flat());
    for (const n of [6, 11]) {
      const seqs = [randomTokens(n, PHI4.vocab, 30 + n), randomTokens(n, PHI4.vocab, 40 + n)];
      const batch = { batch: 2, seq: n, ids: BigInt64Array.from(seqs.flat().map(BigInt)) };
      const first = await createRunner(spec, { output: 'hidden', layers: [0, 1] });
      const hidden = await first.run(batch, { headMask: flatMask });
      await first.release();
      const second = await createRunner(spec, { output: 'logits', layers: [1, 2] });
      const logits = await second.run({ ...batch, hidden }, { headMask: flatMask });
      await second.release();
      const d = maxAbsDiff(logits, referenceLogits(forward(ref), seqs, MASK));
      assert.ok(d <= 1e-4, `length ${n}: blocks vs reference ${d}`);
    }
  });
});

describe('Phi-3 KV-cache graph', () => {
  test('LongRoPE + partial rotary: decoding within the original context, and a prompt past it', async () => {
    const dir = join(tmp.dir, 'cache');
    const extra = {
      partial_rotary_factor: 0.75,
      original_max_position_embeddings: 8,
      rope_scaling: longropeScaling(6, 8),
    };
    const { tensors, config } = await writePhi3(dir, PHI4, 8, extra);
    const spec = await loadModelSpec(dir);
    const ref = referenceOf(PHI4, tensors, config);
    // Within the context: a 4-token prompt then one token at a time up to 8, all with the short factors.
    const short = randomTokens(8, PHI4.vocab, 9);
    const chunks = prefillThenSteps(short, 4);
    const d1 = maxAbsDiff(await cachedLogits(spec, short, chunks), referenceLogits(forward(ref), [short]));
    assert.ok(d1 <= 1e-4, `decoding within the context: ${d1}`);
    // A 12-token prompt: its largest position + 1 exceeds 8, so every position uses the long factors.
    const long = randomTokens(12, PHI4.vocab, 10);
    const d2 = maxAbsDiff(await cachedLogits(spec, long, [long]), referenceLogits(forward(ref), [long]));
    assert.ok(d2 <= 1e-4, `prompt past the context: ${d2}`);
  });
});

describe('Phi-3 spec → Hugging Face → spec', () => {
  test('fused tensors and config survive exactly, pruned layers included', async () => {
    const s: Phi3Shape = { ...PHI4, headsPerLayer: [2, 4], kvHeadsPerLayer: [1, 2] };
    const extra = {
      partial_rotary_factor: 0.75,
      original_max_position_embeddings: 8,
      rope_scaling: longropeScaling(6, 11),
      sliding_window: 5,
    };
    const dir = join(tmp.dir, 'rt-src');
    const { tensors, config } = await writePhi3(dir, s, 11, extra);
    const spec = await loadModelSpec(dir);
    await assertMatches(
      spec,
      referenceOf(s, tensors, config),
      [
        [1, 0],
        [0, 1, 1, 1],
      ],
      [9],
    );
    const hf = specToHf(spec);
    assert.deepEqual(hf.config.architectures, ['Phi3ForCausalLM']);
    assert.deepEqual(hf.config.rope_scaling, config.rope_scaling);
    assert.equal(hf.config.original_max_position_embeddings, 8);
    assert.equal(hf.config.partial_rotary_factor, 0.75);
    assert.equal(hf.config.sliding_window, 5);
    assert.equal(hf.config.pad_token_id, 0);
    // Phi3Config's default pad id (32000) lies outside this vocabulary, which transformers refuses: written as null.
    const noPad = specToHf({ ...spec, config: { ...spec.config, padTokenId: 32000 } });
    assert.equal(noPad.config.pad_token_id, null);
    assert.deepEqual(hf.config.num_attention_heads_per_layer, [2, 4]);
    await assertWrittenTensors(hf.tensors, tensors);
  });
});

describe('Phi-3 identity', () => {
  test('the same weights with partial and with whole-head rotary have different fingerprints', async () => {
    const whole = join(tmp.dir, 'fp-whole');
    const partial = join(tmp.dir, 'fp-partial');
    await writePhi3(whole, PHI4, 15);
    await writePhi3(partial, PHI4, 15, { partial_rotary_factor: 0.75 });
    const [a, b] = await Promise.all(
      [whole, partial].map(async (d) => modelFingerprint(await loadModelSpec(d))),
    );
    assert.notEqual(a, b);
    const again = await modelFingerprint(await loadModelSpec(whole));
    assert.equal(again, a);
  });
});

describe('published Phi-3 configs', () => {
  // The keys of microsoft/Phi-4-mini-instruct's and Phi-3-mini-4k-instruct's config.json (factor lists stand-ins
  // of the published length).
  const phi4mini = {
    model_type: 'phi3',
    hidden_size: 3072,
    num_hidden_layers: 32,
    num_attention_heads: 24,
    num_key_value_heads: 8,
    intermediate_size: 8192,
    vocab_size: 200064,
    max_position_embeddings: 131072,
    original_max_position_embeddings: 4096,
    partial_rotary_factor: 0.75,
    rope_theta: 10000,
    rope_scaling: {
      type: 'longrope',
      short_factor: new Array(48).fill(1),
      long_factor: new Array(48).fill(2),
    },
    sliding_window: 262144,
    tie_word_embeddings: true,
    rms_norm_eps: 1e-5,
    hidden_act: 'silu',
    attention_bias: false,
    mlp_bias: false,
    pad_token_id: 199999,
  };
  test('Phi-4-mini: 96 of 128 dims rotate; attention factor √(1 + ln 32 / ln 4096) = √(17/12)', async () => {
    const { phi3ConfigFromHf } = await import('../../src/model/phi3.js');
    const c = phi3ConfigFromHf(phi4mini, 'config.json');
    assert.equal(c.headDim, 128);
    assert.equal(c.rotaryDim, 96);
    assert.ok(c.tieEmbeddings);
    assert.deepEqual(c.slidingWindow, new Array(32).fill(262144));
    const s = c.ropeScaling;
    assert.ok(s?.kind === 'longrope');
    assert.equal(s.originalMaxPositions, 4096);
    assert.equal(s.factor, 32);
    assert.ok(Math.abs(s.attentionFactor - Math.sqrt(17 / 12)) < 1e-12);
  });
  test('Phi-3-mini-4k: no scaling, a 2047-token window on every layer', async () => {
    const { phi3ConfigFromHf } = await import('../../src/model/phi3.js');
    const c = phi3ConfigFromHf(
      {
        ...phi4mini,
        num_key_value_heads: 32,
        num_attention_heads: 32,
        vocab_size: 32064,
        max_position_embeddings: 4096,
        partial_rotary_factor: undefined,
        rope_scaling: null,
        sliding_window: 2047,
        tie_word_embeddings: false,
      },
      'config.json',
    );
    assert.equal(c.headDim, 96);
    assert.equal(c.rotaryDim, undefined);
    assert.equal(c.ropeScaling, undefined);
    assert.deepEqual(c.slidingWindow, new Array(32).fill(2047));
  });
});

describe('Phi-3 config refusals', () => {
  const refusals: Array<[string, Record<string, unknown>, RegExp]> = [
    [
      'a yarn scaling',
      { rope_scaling: { type: 'yarn', factor: 2 } },
      /rope_scaling type "yarn" is not supported for phi3/,
    ],
    [
      'short_factor of the wrong length',
      { rope_scaling: { type: 'longrope', short_factor: [1], long_factor: [1, 1, 1, 1] } },
      /short_factor \(longrope\) must list 4 numbers/,
    ],
    [
      'a non-positive long factor',
      { rope_scaling: longropeScaling(8, 1, { long_factor: [1, 0, 1, 1] }) },
      /long_factor \(longrope\) holds 0/,
    ],
    [
      'two original contexts',
      {
        original_max_position_embeddings: 8,
        rope_scaling: longropeScaling(8, 1, { original_max_position_embeddings: 16 }),
      },
      /original_max_position_embeddings 16 differs from the original context 8/,
    ],
    [
      'an odd rotary width',
      { partial_rotary_factor: 0.375 },
      /partial_rotary_factor 0.375 gives 3 rotary dimensions/,
    ],
    ['a factor above 1', { partial_rotary_factor: 1.5 }, /exceeds 1/],
    ['attention biases', { attention_bias: true }, /"attention_bias" true is not supported/],
    ['a bad sliding window', { sliding_window: 0 }, /"sliding_window" must be an integer ≥ 1/],
    [
      'both rope keys',
      { rope_scaling: longropeScaling(8, 1), rope_parameters: { rope_type: 'default' } },
      /both rope_scaling and rope_parameters/,
    ],
  ];
  for (const [what, extra, message] of refusals) {
    test(`${what} is refused in one line naming config.json`, async () => {
      const dir = join(tmp.dir, `bad-${what.replace(/\W+/g, '-')}`);
      await writePhi3(dir, MINI, 12, extra);
      await assertConfigRefused(dir, message);
    });
  }

  test('other Phi model types stay refused by the model_type table', async () => {
    for (const type of ['phi3small', 'phimoe', 'phi3_v']) {
      const dir = join(tmp.dir, `type-${type}`);
      await writePhi3(dir, MINI, 13, { model_type: type });
      await assert.rejects(loadModelSpec(dir), /model_type "\w+" is not supported/);
    }
  });

  test('other families keep refusing longrope and partial rotary', async () => {
    const { llamaConfigFromHf } = await import('../../src/model/llama.js');
    const base = {
      model_type: 'llama',
      hidden_size: 32,
      num_hidden_layers: 1,
      num_attention_heads: 4,
      intermediate_size: 8,
      vocab_size: 10,
    };
    assert.throws(
      () => llamaConfigFromHf({ ...base, rope_scaling: longropeScaling(8, 1) }, 'config.json'),
      /type "longrope" is not supported/,
    );
    assert.throws(
      () => llamaConfigFromHf({ ...base, partial_rotary_factor: 0.5 }, 'config.json'),
      /"partial_rotary_factor" 0.5 is not supported/,
    );
  });
});
