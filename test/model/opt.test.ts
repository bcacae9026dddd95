/**
 * OPT: small random checkpoints written as real Hugging Face folders (OPTForCausalLM names, embed_positions with
 * OPT's two leading rows) load into the spec and their logits match the plain reference forward (written from
 * OPT's definition over the HF tensors) to 1e-4, with and without masked heads, under both attention kernels;
 * the older bare `decoder.*` names, enable_bias false, an untied head and physically pruned folders load too;
 * right-padded batched rows give OPT's logits (its positions come from the attention mask); spec → HF → spec is
 * exact; configs the graph cannot honour fail in one line naming config.json and the key.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { createRunner } from '../../src/engine/runner.js';
import type { GenepruneError } from '../../src/errors.js';
import { loadModelSpec } from '../../src/model/load.js';
import { optSpecToHf } from '../../src/model/opt.js';
import type { ModelSpec } from '../../src/model/spec.js';
import { tempDir } from '../checkpoint/helpers.js';
import { assertConfigRefused, assertWrittenTensors } from '../helpers/hffolder.js';
import { maxDiffToReference, type ReferenceForward, randomTokens, twoRows } from '../helpers/logits.js';
import { type OptShape as Shape, writeOpt } from '../helpers/opt.js';
import { type OptReference, optForward } from '../reference/opt.js';

const tmp = tempDir('geneprune-opt-');
after(tmp.cleanup);

function referenceOf(s: Shape, tensors: Map<string, { data: Float32Array }>): OptReference {
  return {
    hidden: s.hidden,
    heads: s.heads,
    layers: s.layers,
    vocab: s.vocab,
    headsPerLayer: s.kept,
    prefix: s.barePrefix ? 'decoder.' : 'model.decoder.',
    get: (name) => tensors.get(name)?.data,
  };
}

/** The largest |engine logit − reference logit| over two rows of 9 tokens. */
function maxDiff(
  spec: ModelSpec,
  tensors: Map<string, { data: Float32Array }>,
  s: Shape,
  headMask?: number[][],
  attention: 'fused' | 'explicit' = 'fused',
): Promise<number> {
  const ref = referenceOf(s, tensors);
  const forward: ReferenceForward = (tokens, mask) => optForward(ref, tokens, { headMask: mask });
  return maxDiffToReference(spec, forward, twoRows(9, s.vocab), headMask, { attention });
}

const SHAPE: Shape = { hidden: 32, heads: 4, layers: 2, ffn: 48, vocab: 41, positions: 16 };
const MASK = [
  [1, 0, 1, 1],
  [0, 1, 1, 0],
];

describe('OPT checkpoints match the reference forward', () => {
  test('dense, with and without masked heads, fused and explicit attention', async () => {
    const dir = join(tmp.dir, 'dense');
    const tensors = await writeOpt(dir, SHAPE, 1);
    const spec = await loadModelSpec(dir);
    assert.equal(spec.config.family, 'opt');
    assert.equal(spec.config.positionOffset, 2);
    assert.equal(spec.config.activation, 'relu');
    assert.deepEqual(spec.tensors.get('embed.positions')?.shape, [18, 32]);
    for (const kind of ['fused', 'explicit'] as const) {
      const plain = await maxDiff(spec, tensors, SHAPE, undefined, kind);
      assert.ok(plain <= 1e-4, `${kind}, unmasked: ${plain}`);
      const masked = await maxDiff(spec, tensors, SHAPE, MASK, kind);
      assert.ok(masked <= 1e-4, `${kind}, masked: ${masked}`);
    }
  });

  test('the position offset matters: reading rows 0… instead of 2… gives other logits', async () => {
    // Guards the reference and the graph against agreeing by accident on an offset of 0.
    const dir = join(tmp.dir, 'offset');
    const tensors = await writeOpt(dir, SHAPE, 6);
    const spec = await loadModelSpec(dir);
    const shifted: ModelSpec = { ...spec, config: { ...spec.config, positionOffset: 0 } };
    assert.ok((await maxDiff(shifted, tensors, SHAPE)) > 1e-2);
  });

  test('older uploads name the base model decoder.* (facebook/opt-125m), an untied head, enable_bias false', async () => {
    for (const [name, s] of [
      ['bare', { ...SHAPE, barePrefix: true }],
      ['untied', { ...SHAPE, untied: true }],
      ['nobias', { ...SHAPE, bias: false }],
    ] as const) {
      const dir = join(tmp.dir, name);
      const tensors = await writeOpt(dir, s, 3);
      const spec = await loadModelSpec(dir);
      if (name === 'nobias') {
        assert.equal(spec.tensors.has('layers.0.attn.q.bias'), false);
        assert.equal(spec.tensors.has('layers.0.attn_norm.bias'), true);
      }
      const d = await maxDiff(spec, tensors, s, MASK);
      assert.ok(d <= 1e-4, `${name}: ${d}`);
    }
  });

  test('a physically pruned folder (num_attention_heads_per_layer) loads and matches; spec → HF is exact', async () => {
    const s = { ...SHAPE, kept: [3, 2] };
    const dir = join(tmp.dir, 'pruned');
    const tensors = await writeOpt(dir, s, 2);
    const spec = await loadModelSpec(dir);
    assert.deepEqual(spec.config.headsPerLayer, [3, 2]);
    assert.ok((await maxDiff(spec, tensors, s)) <= 1e-4);
    const hf = optSpecToHf(spec);
    assert.deepEqual(hf.config.architectures, ['OPTForCausalLM']);
    assert.deepEqual(hf.config.num_attention_heads_per_layer, [3, 2]);
    assert.equal(hf.config.max_position_embeddings, 16);
    await assertWrittenTensors(hf.tensors, tensors);
  });

  test("right-padded rows of different lengths give OPT's logits at each row's last token", async () => {
    // OPT numbers positions from the attention mask; with right padding the real tokens count 0, 1, … as in an
    // unpadded row, which is what batched greedy decoding (right-padded, row_logits) relies on.
    const dir = join(tmp.dir, 'padded');
    const tensors = await writeOpt(dir, SHAPE, 4);
    const spec = await loadModelSpec(dir);
    const rows = [
      randomTokens(7, SHAPE.vocab, 5),
      randomTokens(4, SHAPE.vocab, 6),
      randomTokens(1, SHAPE.vocab, 7),
    ];
    const seq = 7;
    const ids = new BigInt64Array(rows.length * seq);
    rows.forEach((r, b) => {
      for (const [t, id] of r.entries()) ids[b * seq + t] = BigInt(id);
    });
    const runner = await createRunner(spec, { output: 'row_logits' });
    const out = await runner.run({
      batch: rows.length,
      seq,
      ids,
      lastIndex: BigInt64Array.from(rows.map((r) => BigInt(r.length - 1))),
    });
    await runner.release();
    const ref = referenceOf(SHAPE, tensors);
    rows.forEach((r, b) => {
      const padded = [...r, ...new Array(seq - r.length).fill(0)];
      const mask = padded.map((_, t) => (t < r.length ? 1 : 0));
      const expected = optForward(ref, padded, { mask })[r.length - 1];
      // And the same as the row alone: right padding changes nothing.
      const alone = optForward(ref, r).at(-1)!;
      for (let v = 0; v < SHAPE.vocab; v++) {
        assert.ok(Math.abs(expected[v] - out[b * SHAPE.vocab + v]) <= 1e-4, `row ${b} token ${v}`);
        assert.ok(Math.abs(expected[v] - alone[v]) <= 1e-9);
      }
    });
  });
});

describe('OPT configs the graph cannot honour fail in one line', () => {
  for (const [extra, words] of [
    [{ do_layer_norm_before: false }, 'do_layer_norm_before false is not supported'],
    [{ word_embed_proj_dim: 16 }, 'word_embed_proj_dim 16 differs from hidden_size 32'],
    [{ _remove_final_layer_norm: true }, '_remove_final_layer_norm true is not supported'],
    [{ layer_norm_elementwise_affine: false }, 'layer_norm_elementwise_affine false is not supported'],
    [{ activation_function: 'gelu_fast' }, 'activation_function "gelu_fast" is not supported'],
    [{ num_attention_heads: 5 }, 'not a multiple of num_attention_heads'],
    [{ num_key_value_heads_per_layer: [2, 2] }, 'OPT has no grouped KV heads'],
  ] as const) {
    test(words, async () => {
      const dir = join(tmp.dir, `bad-${Object.keys(extra)[0]}`);
      await writeOpt(dir, SHAPE, 4, extra);
      await assertConfigRefused(dir, words);
    });
  }
  test('a position table without the two offset rows names the tensor', async () => {
    const dir = join(tmp.dir, 'bad-positions');
    await writeOpt(dir, SHAPE, 5, { max_position_embeddings: 17 });
    await assert.rejects(loadModelSpec(dir), (e: GenepruneError) => {
      assert.equal(
        e.oneLine(),
        `${join(dir, 'model.safetensors')}: tensor model.decoder.embed_positions.weight has shape [18,32], config.json implies [19,32]`,
      );
      return true;
    });
  });
});
