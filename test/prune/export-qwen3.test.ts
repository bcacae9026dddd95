/**
 * Qwen3 exports. A head-pruned random Qwen3 (GQA, one layer losing a whole KV group, head_dim ≠ hidden/heads)
 * exported compact as a Hugging Face folder reloads with the masked model's logits, per-layer head keys and the
 * q/k norms untouched; transformers.js (model_type qwen3) loads the same export's ONNX offline and gives the masked
 * logits and the same greedy tokens through its KV cache. The padded layout keeps the dense shapes with zeros exactly
 * where heads went, and gives the masked logits too.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { headMaskOf } from '../../src/masks/heads.js';
import { loadModelSpec } from '../../src/model/load.js';
import type { ModelSpec } from '../../src/model/spec.js';
import { exportModel } from '../../src/prune/export.js';
import { tempDir } from '../checkpoint/helpers.js';
import { maxAbsDiff } from '../helpers/logits.js';
import { type Qwen3Shape, writeQwen3 } from '../helpers/qwen3.js';
import { assertTransformersJsMatches, rowLogits } from '../helpers/tjs.js';

const tmp = tempDir('geneprune-export-qwen3-');
after(tmp.cleanup);

const V = 37;
const SHAPE: Qwen3Shape = { hidden: 24, layers: 3, heads: 4, kvHeads: 2, headDim: 8, inter: 40, vocab: V };
// Layer 0 drops head 1; layer 1 drops heads 2 and 3 (KV group 1 goes with them); layer 2 drops head 0.
const GENOME = Uint8Array.from([1, 0, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1]);
const TOKENS = [3, 8, 30, 2, 11, 19, 4, 25, 6, 14];

const logitsOf = (spec: ModelSpec, headMask?: Float32Array) => rowLogits(spec, TOKENS, headMask);

test('a head-pruned Qwen3 exports compact; geneprune and transformers.js give the masked logits and tokens', async () => {
  const src = join(tmp.dir, 'src');
  await writeQwen3(src, SHAPE, 31);
  const spec = await loadModelSpec(src);
  const expected = await logitsOf(spec, headMaskOf(spec.config, GENOME));
  // The mask must matter, or equal logits would prove nothing.
  assert.ok(maxAbsDiff(await logitsOf(spec), expected) > 1e-2);

  const root = join(tmp.dir, 'out');
  const out = join(root, 'pruned');
  await exportModel({ spec, genome: GENOME, out, format: 'all' });
  const config = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'));
  assert.equal(config.model_type, 'qwen3');
  assert.deepEqual(config.architectures, ['Qwen3ForCausalLM']);
  assert.equal(config.head_dim, 8);
  assert.deepEqual(config.num_attention_heads_per_layer, [3, 2, 3]);
  assert.deepEqual(config.num_key_value_heads_per_layer, [2, 1, 2]);

  const reloaded = await loadModelSpec(out);
  assert.equal(reloaded.config.qkNorm, true);
  assert.deepEqual(
    await reloaded.tensors.get('layers.1.attn.k_norm.weight')!.load(),
    await spec.tensors.get('layers.1.attn.k_norm.weight')!.load(),
  );
  assert.ok(maxAbsDiff(await logitsOf(reloaded), expected) <= 1e-4, 'Hugging Face files');

  await assertTransformersJsMatches(root, reloaded, TOKENS, expected, 6);
});

test('the padded layout keeps dense shapes, zeros where heads went, and the masked logits', async () => {
  const src = join(tmp.dir, 'src-padded');
  await writeQwen3(src, { ...SHAPE, attentionBias: true, tied: false }, 32);
  const spec = await loadModelSpec(src);
  const expected = await logitsOf(spec, headMaskOf(spec.config, GENOME));
  const out = join(tmp.dir, 'padded');
  await exportModel({ spec, genome: GENOME, out, format: 'hf', hfLayout: 'padded' });
  const config = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'));
  assert.equal(config.num_attention_heads_per_layer, undefined);
  const reloaded = await loadModelSpec(out);
  assert.deepEqual(reloaded.config.headsPerLayer, [4, 4, 4]);
  const hd = 8;
  const D = 24;
  // Layer 1: query heads 2, 3 and KV head 1 are zero (rows and biases), the rest kept.
  const q1 = await reloaded.tensors.get('layers.1.attn.q.weight')!.load();
  const k1 = await reloaded.tensors.get('layers.1.attn.k.weight')!.load();
  const kb1 = await reloaded.tensors.get('layers.1.attn.k.bias')!.load();
  assert.ok(q1.subarray(2 * hd * D).every((v) => v === 0) && q1.subarray(0, 2 * hd * D).some((v) => v !== 0));
  assert.ok(k1.subarray(hd * D).every((v) => v === 0) && kb1.subarray(hd).every((v) => v === 0));
  assert.ok(maxAbsDiff(await logitsOf(reloaded), expected) <= 1e-4, 'padded logits');
});
