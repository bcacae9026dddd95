/**
 * Exporting a head-pruned Phi-3 (GQA, partial rotary, LongRoPE with an original context of 8): the compact Hugging
 * Face folder holds fused qkv_proj / gate_up_proj of each layer's pruned size and reloads with the masked logits,
 * below and past the original context; the padded layout keeps the original shapes and gives the same logits;
 * transformers.js (model_type phi3) loads the ONNX export offline with equal logits on both sides of the original
 * context, and its greedy tokens equal ours.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { openHfFolder } from '../../src/checkpoint/hf.js';
import { headMaskOf } from '../../src/masks/heads.js';
import { loadModelSpec } from '../../src/model/load.js';
import { exportModel } from '../../src/prune/export.js';
import { tempDir } from '../checkpoint/helpers.js';
import { maxAbsDiff } from '../helpers/logits.js';
import { longropeScaling, type Phi3Shape, writePhi3 } from '../helpers/phi3.js';
import { greedyTokens, loadTransformersJs, rowLogits } from '../helpers/tjs.js';

const tmp = tempDir('geneprune-export-phi3-');
after(tmp.cleanup);

const SHAPE: Phi3Shape = {
  hidden: 32,
  layers: 3,
  heads: 4,
  kvHeads: 2,
  headDim: 8,
  inter: 48,
  vocab: 41,
  maxPositions: 32,
};
const EXTRA = {
  partial_rotary_factor: 0.75,
  original_max_position_embeddings: 8,
  rope_scaling: longropeScaling(6, 21),
};
// Layer 0 loses heads 1 and 3 (one per KV group), layer 1 both heads of KV group 0, layer 2 nothing.
const GENOME = Uint8Array.from([1, 0, 1, 0, 0, 0, 1, 1, 1, 1, 1, 1]);
// 6 tokens stay within the original context (short factors), 12 go past it (long factors).
const SHORT = [3, 8, 30, 2, 11, 19];
const LONG = [3, 8, 30, 2, 11, 19, 4, 25, 6, 14, 40, 1];

test('a pruned Phi-3 exports compact (fused tensors of the pruned sizes) and padded, both with the masked logits', async () => {
  const src = join(tmp.dir, 'src');
  await writePhi3(src, SHAPE, 21, EXTRA);
  const spec = await loadModelSpec(src);
  const mask = headMaskOf(spec.config, GENOME);
  const expected = { short: await rowLogits(spec, SHORT, mask), long: await rowLogits(spec, LONG, mask) };

  const out = join(tmp.dir, 'compact');
  await exportModel({ spec, genome: GENOME, out, format: 'hf' });
  const config = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'));
  assert.deepEqual(config.architectures, ['Phi3ForCausalLM']);
  assert.deepEqual(config.num_attention_heads_per_layer, [2, 2, 4]);
  assert.deepEqual(config.num_key_value_heads_per_layer, [2, 1, 2]);
  assert.deepEqual(config.rope_scaling, EXTRA.rope_scaling);
  assert.equal(config.original_max_position_embeddings, 8);
  assert.equal(config.partial_rotary_factor, 0.75);
  const folder = await openHfFolder(out);
  // (q heads + 2 · KV heads) · head_dim rows per layer; gate_up keeps 2 · intermediate.
  const rows = [0, 1, 2].map((l) => folder.tensors.get(`model.layers.${l}.self_attn.qkv_proj.weight`)?.shape);
  assert.deepEqual(rows, [
    [(2 + 4) * 8, 32],
    [(2 + 2) * 8, 32],
    [(4 + 4) * 8, 32],
  ]);
  assert.deepEqual(folder.tensors.get('model.layers.1.self_attn.o_proj.weight')?.shape, [32, 16]);
  assert.deepEqual(folder.tensors.get('model.layers.1.mlp.gate_up_proj.weight')?.shape, [96, 32]);
  const reloaded = await loadModelSpec(out);
  assert.ok(
    maxAbsDiff(await rowLogits(reloaded, SHORT), expected.short) <= 1e-4,
    'compact, within the context',
  );
  assert.ok(maxAbsDiff(await rowLogits(reloaded, LONG), expected.long) <= 1e-4, 'compact, past the context');

  const paddedOut = join(tmp.dir, 'padded');
  await exportModel({ spec, genome: GENOME, out: paddedOut, format: 'hf', hfLayout: 'padded' });
  const padded = await openHfFolder(paddedOut);
  assert.deepEqual(padded.tensors.get('model.layers.1.self_attn.qkv_proj.weight')?.shape, [64, 32]);
  const full = await loadModelSpec(paddedOut);
  assert.ok(maxAbsDiff(await rowLogits(full, LONG), expected.long) <= 1e-4, 'padded, past the context');
});

test('transformers.js loads the pruned Phi-3 ONNX export offline: equal logits on both sides of the original context, equal greedy tokens', async () => {
  const src = join(tmp.dir, 'tjs-src');
  await writePhi3(src, { ...SHAPE, tied: true }, 22, EXTRA);
  const spec = await loadModelSpec(src);
  const mask = headMaskOf(spec.config, GENOME);
  const root = join(tmp.dir, 'tjs');
  await exportModel({ spec, genome: GENOME, out: join(root, 'pruned'), format: 'transformersjs' });
  const lm = await loadTransformersJs(root);
  for (const tokens of [SHORT, LONG]) {
    const d = maxAbsDiff(await lm.logits(tokens), await rowLogits(spec, tokens, mask));
    assert.ok(d <= 1e-4, `${tokens.length} tokens: transformers.js vs masked logits ${d}`);
  }
  // Greedy decoding from a 4-token prompt to 8 tokens stays within the original context, where every step's
  // rotary factors equal the full forward's.
  const prompt = SHORT.slice(0, 4);
  const generated = await lm.generate(prompt, 4);
  await lm.dispose();
  assert.deepEqual(generated, await greedyTokens(spec, prompt, 4, mask));
});
