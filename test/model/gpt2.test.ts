/**
 * GPT-2: small random checkpoints written as real Hugging Face folders (GPT2LMHeadModel names, Conv1D [in, out]
 * weights, fused c_attn) load into the spec and their logits match the plain reference forward (written from
 * GPT-2's definition over the HF tensors) to 1e-4, with and without masked heads; pruned checkpoints in
 * transformers' `pruned_heads` convention load; spec → HF → spec is exact; bad configs fail in one line.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { writeHfFolder } from '../../src/checkpoint/hf.js';
import { createRunner } from '../../src/engine/runner.js';
import type { GenepruneError } from '../../src/errors.js';
import { gpt2SpecToHf } from '../../src/model/gpt2.js';
import { loadModelSpec } from '../../src/model/load.js';
import type { ModelSpec } from '../../src/model/spec.js';
import { createRng } from '../../src/util/rng.js';
import { tempDir } from '../checkpoint/helpers.js';
import { type Gpt2Shape as Shape, writeGpt2 } from '../helpers/gpt2.js';
import { gpt2Forward } from '../reference/gpt2.js';

const tmp = tempDir('geneprune-gpt2-');
after(tmp.cleanup);

function randomTokens(n: number, vocab: number, seed: number): number[] {
  const rng = createRng(seed);
  return Array.from({ length: n }, () => rng.nextInt(vocab));
}

async function maxDiff(
  spec: ModelSpec,
  tensors: Map<string, { data: Float32Array }>,
  s: Shape,
  headMask?: number[][],
  attention: 'fused' | 'explicit' = 'fused',
): Promise<number> {
  const seqs = [randomTokens(9, s.vocab, 1), randomTokens(9, s.vocab, 2)];
  const runner = await createRunner(spec, { output: 'logits', attention });
  const maxHeads = Math.max(...spec.config.headsPerLayer);
  const flat = headMask
    ? Float32Array.from(headMask.flatMap((row) => [...row, ...new Array(maxHeads - row.length).fill(1)]))
    : undefined;
  const out = await runner.run(
    { batch: 2, seq: 9, ids: BigInt64Array.from(seqs.flat().map(BigInt)) },
    { headMask: flat },
  );
  await runner.release();
  const ref = {
    nEmbd: s.embd,
    nHead: s.heads,
    nLayer: s.layers,
    headsPerLayer: s.kept,
    eps: 1e-5,
    vocab: s.vocab,
    get: (name: string) => {
      const t = tensors.get(name);
      if (!t) throw new Error(`no ${name}`);
      return t.data;
    },
  };
  let worst = 0;
  seqs.forEach((seq, b) => {
    const expected = gpt2Forward(ref, seq, headMask);
    expected.forEach((row, t) => {
      row.forEach((v, k) => {
        worst = Math.max(worst, Math.abs(v - out[(b * seq.length + t) * s.vocab + k]));
      });
    });
  });
  return worst;
}

const SHAPE: Shape = { embd: 32, heads: 4, layers: 2, inner: 48, vocab: 41, positions: 16 };

describe('GPT-2 checkpoints match the reference forward', () => {
  test('dense, with and without masked heads, fused and explicit attention', async () => {
    const dir = join(tmp.dir, 'dense');
    const tensors = await writeGpt2(dir, SHAPE, 1);
    const spec = await loadModelSpec(dir);
    assert.equal(spec.config.family, 'gpt2');
    assert.equal(spec.config.positionKind, 'learned');
    assert.ok((await maxDiff(spec, tensors, SHAPE)) <= 1e-4);
    const mask = [
      [1, 0, 1, 1],
      [0, 1, 1, 0],
    ];
    for (const kind of ['fused', 'explicit'] as const) {
      const d = await maxDiff(spec, tensors, SHAPE, mask, kind);
      assert.ok(d <= 1e-4, `${kind}: ${d}`);
    }
  });

  test('a pruned checkpoint (pruned_heads) loads with per-layer heads and matches', async () => {
    const s = { ...SHAPE, kept: [3, 2] };
    const dir = join(tmp.dir, 'pruned');
    const tensors = await writeGpt2(dir, s, 2);
    const spec = await loadModelSpec(dir);
    assert.deepEqual(spec.config.headsPerLayer, [3, 2]);
    assert.ok((await maxDiff(spec, tensors, s)) <= 1e-4);
    // spec → HF → spec: the same tensors by name, the same pruned_heads.
    const hf = gpt2SpecToHf(spec);
    assert.deepEqual(hf.config.pruned_heads, { '0': [3], '1': [2, 3] });
    // The same counts for modeling_geneprune.py (transformers 5 has no pruned_heads), read back in agreement.
    assert.deepEqual(hf.config.num_attention_heads_per_layer, [3, 2]);
    for (const [name, t] of tensors) {
      const back = hf.tensors.get(name);
      assert.ok(back, `no ${name} written back`);
      assert.deepEqual(await back.load(), t.data, name);
    }
  });

  test('a GPT2Model checkpoint (no transformer. prefix, old attn.bias buffers) loads', async () => {
    const dir = join(tmp.dir, 'base');
    const tensors = await writeGpt2(dir, SHAPE, 3);
    const renamed = [...tensors].map(([name, t]) => ({
      name: name.replace(/^transformer\./, ''),
      shape: t.shape,
      data: t.data,
    }));
    renamed.push({ name: 'h.0.attn.bias', shape: [1, 1, 16, 16], data: new Float32Array(256).fill(1) });
    const baseDir = join(tmp.dir, 'base2');
    await writeHfFolder(baseDir, {
      config: {
        model_type: 'gpt2',
        n_embd: 32,
        n_head: 4,
        n_layer: 2,
        n_inner: 48,
        n_positions: 16,
        vocab_size: 41,
      },
      tensors: renamed,
    });
    const spec = await loadModelSpec(baseDir);
    assert.ok((await maxDiff(spec, tensors, SHAPE)) <= 1e-4);
  });
});

describe('GPT-2 configs the graph cannot honour fail in one line', () => {
  for (const [extra, words] of [
    [{ scale_attn_by_inverse_layer_idx: true }, 'scale_attn_by_inverse_layer_idx'],
    [{ activation_function: 'gelu_fast' }, 'activation_function "gelu_fast" is not supported'],
    [{ pruned_heads: { '0': [0, 1, 2, 3] } }, 'removes every head of layer 0'],
    [{ n_head: 5 }, 'not a multiple of n_head'],
    [
      { pruned_heads: { '0': [1] }, num_attention_heads_per_layer: [4, 4] },
      '"num_attention_heads_per_layer" gives layer 0 4 heads, "pruned_heads" leaves it 3',
    ],
    [
      { intermediate_size_per_layer: [48, 49] },
      'gives layer 1 49 MLP units: each must be an integer in 0..48',
    ],
  ] as const) {
    test(words, async () => {
      const dir = join(tmp.dir, `bad-${words.length}`);
      await writeGpt2(dir, SHAPE, 4, extra);
      await assert.rejects(loadModelSpec(dir), (e: GenepruneError) => {
        const line = e.oneLine();
        assert.ok(line.includes(words), line);
        assert.ok(line.startsWith(join(dir, 'config.json')) && !line.includes('\n'), line);
        return true;
      });
    });
  }
  test('a wrong tensor shape names the file and tensor', async () => {
    const dir = join(tmp.dir, 'bad-shape');
    await writeGpt2(dir, SHAPE, 5, { n_inner: 40 });
    await assert.rejects(loadModelSpec(dir), (e: GenepruneError) => {
      const line = e.oneLine();
      assert.equal(
        line,
        `${join(dir, 'model.safetensors')}: tensor transformer.h.0.mlp.c_fc.weight has shape [32,48], config.json implies [32,40]`,
      );
      return true;
    });
  });
});
