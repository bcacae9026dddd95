/**
 * GPT-2 exports: a pruned random GPT-2's Hugging Face folder (transformers' `pruned_heads` convention) and its
 * transformers.js folder give the masked model's logits; transformers.js loads it offline (model_type gpt2) and
 * its logits and greedy tokens equal ours.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { createRunner } from '../../src/engine/runner.js';
import { headMaskOf } from '../../src/masks/heads.js';
import { loadModelSpec } from '../../src/model/load.js';
import { exportModel } from '../../src/prune/export.js';
import { tempDir } from '../checkpoint/helpers.js';
import { writeGpt2 } from '../helpers/gpt2.js';

const tmp = tempDir('geneprune-export-gpt2-');
after(tmp.cleanup);
const int64 = (xs: number[]) => BigInt64Array.from(xs.map(BigInt));

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

test('a pruned GPT-2 exports to HF (pruned_heads) and transformers.js with the masked logits', async () => {
  const V = 43;
  const src = join(tmp.dir, 'src');
  await writeGpt2(src, { embd: 32, heads: 4, layers: 3, inner: 40, vocab: V, positions: 24 }, 11);
  const spec = await loadModelSpec(src);
  // Layer 0 loses head 2, layer 1 heads 0 and 3, layer 2 nothing.
  const genome = Uint8Array.from([1, 1, 0, 1, 0, 1, 1, 0, 1, 1, 1, 1]);
  const tokens = [5, 17, 3, 40, 22, 9, 1, 30, 12, 7];
  const masked = await createRunner(spec, { output: 'logits' });
  const expected = await masked.run(
    { batch: 1, seq: tokens.length, ids: int64(tokens) },
    { headMask: headMaskOf(spec.config, genome) },
  );
  await masked.release();

  const root = join(tmp.dir, 'out');
  const out = join(root, 'pruned');
  await exportModel({ spec, genome, out, format: 'all' });
  const config = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'));
  assert.equal(config.model_type, 'gpt2');
  assert.deepEqual(config.architectures, ['GPT2LMHeadModel']);
  // transformers' format: layer index (a string key) → the original indices of the removed heads.
  assert.deepEqual(config.pruned_heads, { '0': [2], '1': [0, 3] });
  assert.equal(config.n_head, 4);

  const reloaded = await loadModelSpec(out);
  assert.deepEqual(reloaded.config.headsPerLayer, [3, 2, 4]);
  const runner = await createRunner(reloaded, { output: 'logits' });
  const fromHf = await runner.run({ batch: 1, seq: tokens.length, ids: int64(tokens) });
  await runner.release();
  assert.ok(maxDiff(fromHf, expected) <= 1e-4, 'Hugging Face files');

  const { env: tjs, AutoModelForCausalLM, Tensor } = await import('@huggingface/transformers');
  tjs.allowRemoteModels = false;
  tjs.localModelPath = `${root}/`;
  const lm = await AutoModelForCausalLM.from_pretrained('pruned', { dtype: 'fp32' });
  const input_ids = new Tensor('int64', int64(tokens), [1, tokens.length]);
  const attention_mask = new Tensor('int64', new BigInt64Array(tokens.length).fill(1n), [1, tokens.length]);
  const { logits } = (await lm({ input_ids, attention_mask })) as { logits: { data: Float32Array } };
  assert.ok(maxDiff(logits.data, expected) <= 1e-4, 'transformers.js');

  // Greedy generation through transformers.js' KV cache equals greedy decoding on our full-sequence graph.
  const generated = (await lm.generate({
    input_ids,
    attention_mask,
    max_new_tokens: 6,
    do_sample: false,
  })) as unknown as { tolist(): bigint[][] };
  await lm.dispose();
  const ids = [...tokens];
  const full = await createRunner(reloaded, { output: 'last_logits' });
  for (let s = 0; s < 6; s++) {
    const last = await full.run({ batch: 1, seq: ids.length, ids: int64(ids) });
    let best = 0;
    for (let v = 1; v < V; v++) if (last[v] > last[best]) best = v;
    ids.push(best);
  }
  await full.release();
  assert.deepEqual(generated.tolist()[0].map(Number), ids);
});
