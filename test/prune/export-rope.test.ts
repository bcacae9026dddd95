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
import { headMaskOf } from '../../src/masks/heads.js';
import { llamaSpecToHf } from '../../src/model/llama.js';
import { loadModelSpec } from '../../src/model/load.js';
import { randomLlamaSpec } from '../../src/model/random.js';
import type { ModelSpec } from '../../src/model/spec.js';
import { exportModel } from '../../src/prune/export.js';
import { tempDir } from '../checkpoint/helpers.js';
import { maxAbsDiff } from '../helpers/logits.js';
import { assertTransformersJsMatches, rowLogits } from '../helpers/tjs.js';
import { referenceForward } from '../reference/llama.js';

const tmp = tempDir('geneprune-export-rope-');
after(tmp.cleanup);
const V = 43;

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
  const expected = await rowLogits(spec, tokens, headMaskOf(spec.config, genome));
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
    maxAbsDiff(
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
  const fromHf = await rowLogits(reloaded, tokens);
  assert.ok(maxAbsDiff(fromHf, expected) <= 1e-4, 'Hugging Face files');

  // Greedy decoding through transformers.js' KV cache equals greedy decoding on our full-sequence graph.
  await assertTransformersJsMatches(root, reloaded, tokens, expected, 8);
});

test('rope_parameters (newer transformers) is written back under its own key, unchanged', async () => {
  const value = { rope_type: 'yarn', rope_theta: 500000, factor: 4, original_max_position_embeddings: 64 };
  const spec = await scaledSource('yarn-src', 'rope_parameters', value, 256);
  const tokens = [3, 30, 8, 14, 2, 21, 5, 40, 11, 6];
  const expected = await rowLogits(spec, tokens);
  const out = join(tmp.dir, 'yarn-out');
  await exportModel({ spec, out, format: 'hf' });
  const config = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'));
  assert.deepEqual(config.rope_parameters, value);
  assert.equal(config.rope_scaling, null);
  const reloaded = await loadModelSpec(out);
  assert.equal(reloaded.config.ropeScaling?.kind, 'yarn');
  assert.ok(maxAbsDiff(await rowLogits(reloaded, tokens), expected) <= 1e-5);
  // Exported twice: the same config.json (nothing drifts through a round trip).
  const again = join(tmp.dir, 'yarn-again');
  await exportModel({ spec: reloaded, out: again, format: 'hf' });
  const second = JSON.parse(readFileSync(join(again, 'config.json'), 'utf8'));
  for (const key of ['rope_parameters', 'rope_scaling', 'rope_theta', 'max_position_embeddings']) {
    assert.deepEqual(second[key], config[key], key);
  }
});
