/**
 * Exports of rotary-scaled models: config.json keeps rope_scaling (or rope_parameters) exactly as the source had
 * it, the Hugging Face folder reloads to the same logits, and transformers.js (offline) runs the exported
 * llama3-scaled, physically pruned model with the same logits and greedy tokens — its ONNX graph carries the
 * scaled rotary tables, so transformers.js computes nothing of its own from the config.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { writeHfFolder } from '../../src/checkpoint/hf.js';
import { createRunner } from '../../src/engine/runner.js';
import { headMaskOf } from '../../src/masks/heads.js';
import { llamaSpecToHf } from '../../src/model/llama.js';
import { loadModelSpec } from '../../src/model/load.js';
import { randomLlamaSpec } from '../../src/model/random.js';
import type { ModelSpec } from '../../src/model/spec.js';
import { exportModel } from '../../src/prune/export.js';
import { tempDir } from '../checkpoint/helpers.js';
import { referenceForward } from '../reference/llama.js';

const tmp = tempDir('geneprune-export-rope-');
after(tmp.cleanup);
const int64 = (xs: number[]) => BigInt64Array.from(xs.map(BigInt));
const V = 43;

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** A random GQA llama written as a Hugging Face folder whose config.json has `key: value`, loaded back. */
async function scaledSource(
  name: string,
  key: string,
  value: Record<string, unknown>,
  maxPositions: number,
): Promise<ModelSpec> {
  const spec = randomLlamaSpec({
    hiddenSize: 64,
    numLayers: 2,
    numHeads: 4,
    numKvHeads: 2,
    intermediateSize: 48,
    vocabSize: V,
    maxPositions,
    ropeTheta: 500000,
    seed: 31,
    scale: 12,
  });
  const dir = join(tmp.dir, name);
  const hf = llamaSpecToHf(spec);
  await writeHfFolder(dir, { config: { ...hf.config, [key]: value }, tensors: hf.tensors });
  return loadModelSpec(dir);
}

// Llama-3.2's rope_scaling with the context shrunk to fit head_dim 16 at θ 500000 (wavelengths 6.3, 32, 167,
// 860, …): pair 0 is kept, pair 1 blended, pairs 2–7 divided by 32.
const LLAMA3 = {
  factor: 32,
  high_freq_factor: 4,
  low_freq_factor: 1,
  original_max_position_embeddings: 64,
  rope_type: 'llama3',
};

test('a pruned llama3-scaled model exports with rope_scaling unchanged; HF and transformers.js give its logits', async () => {
  const spec = await scaledSource('llama3-src', 'rope_scaling', LLAMA3, 2048);
  const genome = Uint8Array.from([1, 0, 1, 1, 0, 1, 1, 0]); // layer 0 loses head 1, layer 1 heads 0 and 3
  const tokens = [5, 17, 3, 40, 22, 9, 1, 30, 12, 7, 19, 2, 35, 8, 26, 14];
  const masked = await createRunner(spec, { output: 'logits' });
  const expected = await masked.run(
    { batch: 1, seq: tokens.length, ids: int64(tokens) },
    { headMask: headMaskOf(spec.config, genome) },
  );
  await masked.release();
  // The masked logits are the scaled model's: against the reference, with the same heads zeroed.
  const w = new Map<string, Float32Array>();
  for (const [role, t] of spec.tensors) w.set(role, await t.load());
  const rows = [
    [1, 0, 1, 1],
    [0, 1, 1, 0],
  ];
  const ref = referenceForward({ ...spec.config, ropeScalingJson: LLAMA3, get: (r) => w.get(r) }, tokens, {
    rotary: 'half',
    headMask: rows,
  });
  assert.ok(
    maxDiff(
      expected,
      ref.flatMap((r) => [...r]),
    ) <= 1e-4,
    'masked logits against the reference',
  );

  const root = join(tmp.dir, 'out');
  await exportModel({ spec, genome, out: join(root, 'pruned'), format: 'all' });
  const config = JSON.parse(readFileSync(join(root, 'pruned', 'config.json'), 'utf8'));
  assert.deepEqual(config.rope_scaling, LLAMA3);
  assert.equal(config.rope_theta, 500000);
  assert.equal(config.max_position_embeddings, 2048);
  assert.equal(config.rope_parameters, undefined);

  const reloaded = await loadModelSpec(join(root, 'pruned'));
  assert.deepEqual(reloaded.config.ropeScaling, spec.config.ropeScaling);
  assert.deepEqual(reloaded.config.headsPerLayer, [3, 2]);
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
  assert.ok(maxDiff(logits.data, expected) <= 1e-4, 'transformers.js logits');
  // Greedy decoding through transformers.js' KV cache equals greedy decoding on our full-sequence graph.
  const generated = (await lm.generate({
    input_ids,
    attention_mask,
    max_new_tokens: 8,
    do_sample: false,
  })) as unknown as { tolist(): bigint[][] };
  await lm.dispose();
  const ids = [...tokens];
  const full = await createRunner(reloaded, { output: 'last_logits' });
  for (let s = 0; s < 8; s++) {
    const last = await full.run({ batch: 1, seq: ids.length, ids: int64(ids) });
    let best = 0;
    for (let v = 1; v < V; v++) if (last[v] > last[best]) best = v;
    ids.push(best);
  }
  await full.release();
  assert.deepEqual(generated.tolist()[0].map(Number), ids);
});

test('rope_parameters (newer transformers) is written back under its own key, unchanged', async () => {
  const value = { rope_type: 'yarn', rope_theta: 500000, factor: 4, original_max_position_embeddings: 64 };
  const spec = await scaledSource('yarn-src', 'rope_parameters', value, 256);
  const tokens = [3, 30, 8, 14, 2, 21, 5, 40, 11, 6];
  const before = await createRunner(spec, { output: 'logits' });
  const expected = await before.run({ batch: 1, seq: tokens.length, ids: int64(tokens) });
  await before.release();
  const out = join(tmp.dir, 'yarn-out');
  await exportModel({ spec, out, format: 'hf' });
  const config = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'));
  assert.deepEqual(config.rope_parameters, value);
  assert.equal(config.rope_scaling, null);
  const reloaded = await loadModelSpec(out);
  assert.equal(reloaded.config.ropeScaling?.kind, 'yarn');
  const after = await createRunner(reloaded, { output: 'logits' });
  assert.ok(maxDiff(await after.run({ batch: 1, seq: tokens.length, ids: int64(tokens) }), expected) <= 1e-5);
  await after.release();
  // Exported twice: the same config.json (nothing drifts through a round trip).
  const again = join(tmp.dir, 'yarn-again');
  await exportModel({ spec: reloaded, out: again, format: 'hf' });
  const second = JSON.parse(readFileSync(join(again, 'config.json'), 'utf8'));
  for (const key of ['rope_parameters', 'rope_scaling', 'rope_theta', 'max_position_embeddings']) {
    assert.deepEqual(second[key], config[key], key);
  }
});
