/**
 * OPT exports: a head-pruned random OPT's Hugging Face folder (compact: per-layer head counts in config.json,
 * OPTForCausalLM names) reloads with the masked model's logits; the padded layout keeps the stock shapes with the
 * removed heads zeroed and gives the same logits; transformers.js (model_type opt) loads the exported ONNX graph
 * offline — feeding the position_ids it derives from the attention mask, which the graph reads at OPT's offset of
 * 2 — with equal logits (a left-padded row too), and its greedy generation through the KV cache equals geneprune's greedy decoding.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { headMaskOf } from '../../src/masks/heads.js';
import { loadModelSpec } from '../../src/model/load.js';
import { exportModel } from '../../src/prune/export.js';
import { tempDir } from '../checkpoint/helpers.js';
import { maxAbsDiff } from '../helpers/logits.js';
import { writeOpt } from '../helpers/opt.js';
import { greedyTokens, loadTransformersJs, rowLogits } from '../helpers/tjs.js';

const tmp = tempDir('geneprune-export-opt-');
after(tmp.cleanup);

const V = 43;
const SHAPE = { hidden: 32, heads: 4, layers: 3, ffn: 40, vocab: V, positions: 24 };
// Layer 0 loses head 2, layer 1 heads 0 and 3, layer 2 nothing.
const GENOME = Uint8Array.from([1, 1, 0, 1, 0, 1, 1, 0, 1, 1, 1, 1]);
const TOKENS = [5, 17, 3, 40, 22, 9, 1, 30, 12, 7];

async function maskedLogits(dir: string): Promise<Float32Array> {
  const spec = await loadModelSpec(dir);
  return rowLogits(spec, TOKENS, headMaskOf(spec.config, GENOME));
}

async function logitsOf(dir: string): Promise<Float32Array> {
  return rowLogits(await loadModelSpec(dir), TOKENS);
}

test('a head-pruned OPT exports to HF and transformers.js with the masked logits and greedy tokens', async () => {
  const src = join(tmp.dir, 'src');
  await writeOpt(src, SHAPE, 11);
  const spec = await loadModelSpec(src);
  const expected = await maskedLogits(src);

  const root = join(tmp.dir, 'out');
  const out = join(root, 'pruned');
  await exportModel({ spec, genome: GENOME, out, format: 'all' });
  const config = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'));
  assert.equal(config.model_type, 'opt');
  assert.deepEqual(config.architectures, ['OPTForCausalLM']);
  assert.equal(config.num_attention_heads, 4);
  assert.deepEqual(config.num_attention_heads_per_layer, [3, 2, 4]);
  assert.equal(config.max_position_embeddings, 24);

  const reloaded = await loadModelSpec(out);
  assert.deepEqual(reloaded.config.headsPerLayer, [3, 2, 4]);
  assert.deepEqual(reloaded.tensors.get('layers.1.attn.q.weight')?.shape, [16, 32]);
  assert.deepEqual(reloaded.tensors.get('embed.positions')?.shape, [26, 32]);
  assert.ok(maxAbsDiff(await logitsOf(out), expected) <= 1e-4, 'Hugging Face files');

  const lm = await loadTransformersJs(root);
  assert.ok(maxAbsDiff(await lm.logits(TOKENS), expected) <= 1e-4, 'transformers.js');

  // A left-padded batch: transformers.js numbers the real tokens 0, 1, … from the attention mask, as OPT does, so
  // the padded row's real tokens get the unpadded row's logits. Row 0 is the prompt and three more real tokens.
  const pad = 3;
  const padded = await lm.batchLogits(
    [
      [...TOKENS, 1, 1, 1],
      [1, 1, 1, ...TOKENS],
    ],
    [
      [...TOKENS.map(() => 1), 1, 1, 1],
      [0, 0, 0, ...TOKENS.map(() => 1)],
    ],
  );
  const rowLen = (TOKENS.length + pad) * V;
  assert.ok(maxAbsDiff(padded.subarray(0, TOKENS.length * V), expected) <= 1e-4, 'row 0');
  assert.ok(maxAbsDiff(padded.subarray(rowLen + pad * V, 2 * rowLen), expected) <= 1e-4, 'left-padded row');

  // Greedy generation through transformers.js' KV cache (position_ids it computes step by step) equals greedy
  // decoding on our full-sequence graph (positions 0 … n−1), 8 steps past a 10-token prompt.
  const generated = await lm.generate(TOKENS, 8);
  await lm.dispose();
  assert.deepEqual(generated, await greedyTokens(reloaded, TOKENS, 8));
});

test('an OPT in the older decoder.* names exports in OPTForCausalLM names, padded layout: stock shapes, masked logits', async () => {
  const src = join(tmp.dir, 'src-bare');
  const written = await writeOpt(src, { ...SHAPE, barePrefix: true }, 12);
  const spec = await loadModelSpec(src);
  const expected = await maskedLogits(src);
  const out = join(tmp.dir, 'padded');
  await exportModel({ spec, genome: GENOME, out, format: 'hf', hfLayout: 'padded' });
  const config = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'));
  assert.equal(config.num_attention_heads_per_layer, undefined);
  const { openHfFolder } = await import('../../src/checkpoint/hf.js');
  const folder = await openHfFolder(out);
  // Layer 1 lost heads 0 and 3: their q rows are zero, the others are the source's.
  const q1 = await folder.tensors.get('model.decoder.layers.1.self_attn.q_proj.weight')!.load();
  const before = written.get('decoder.layers.1.self_attn.q_proj.weight')!.data;
  assert.equal(q1.length, 32 * 32);
  for (let i = 0; i < q1.length; i++) {
    const head = Math.floor(Math.floor(i / 32) / 8);
    assert.equal(q1[i], head === 0 || head === 3 ? 0 : before[i], `q_proj[${i}]`);
  }
  const reloaded = await loadModelSpec(out);
  assert.deepEqual(reloaded.config.headsPerLayer, [4, 4, 4]);
  assert.ok(maxAbsDiff(await logitsOf(out), expected) <= 1e-4, 'padded logits');
});
