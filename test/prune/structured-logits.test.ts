/**
 * Structured removal computes the masked model: the full model run with `structuredMasksOf(plan)` (channel_mask,
 * block_mask and head_mask inputs; checked against the float64 references in test/graph/structured.test.ts)
 * against pruneStructured's smaller model and zeroStructured's padded one, each run with no mask at all — logits
 * to 1e-4 on llama-like GQA with biases, GPT-2 and Gemma 2, with skipped attention and MLP blocks, an MLP left
 * without channels and an attention left without heads (their down / o biases alone stay).
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { createRunner } from '../../src/engine/runner.js';
import { type StructuredPlan, structuredMasksOf } from '../../src/masks/structured.js';
import { loadModelSpec } from '../../src/model/load.js';
import { randomLlamaSpec } from '../../src/model/random.js';
import type { ModelSpec } from '../../src/model/spec.js';
import { pruneStructured, pruneStructuredKeepingAHead, zeroStructured } from '../../src/prune/structured.js';
import { tempDir } from '../checkpoint/helpers.js';
import { writeRandomEncoder } from '../helpers/encoders.js';
import { writeGemma } from '../helpers/gemma.js';
import { writeGpt2 } from '../helpers/gpt2.js';
import { randomTokens } from '../helpers/llamalike.js';

const tmp = tempDir('geneprune-structured-logits-');
after(tmp.cleanup);

const SEQ = 9;

async function logits(spec: ModelSpec, ids: number[][], plan?: StructuredPlan): Promise<Float32Array> {
  // Encoders: the last hidden state (a base model has no logits).
  const output = spec.config.family === 'bert' ? 'hidden' : 'logits';
  const runner = await createRunner(spec, { output, ...(plan ? { structuredMasks: true } : {}) });
  try {
    return await runner.run(
      { batch: ids.length, seq: SEQ, ids: BigInt64Array.from(ids.flat().map(BigInt)) },
      plan ? structuredMasksOf(spec.config, plan) : undefined,
    );
  } finally {
    await runner.release();
  }
}

function maxDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
  return worst;
}

/** The masked full model against the pruned and the padded model, and the plan does change the logits. */
async function checkFamily(spec: ModelSpec, plan: StructuredPlan): Promise<void> {
  const V = spec.config.vocabSize;
  // Token 0 is an encoder's padding id: ids from 1.
  const ids = [1, 2].map((seed) => randomTokens(SEQ, V, seed).map((t) => Math.max(1, t)));
  const masked = await logits(spec, ids, plan);
  const dense = await logits(spec, ids);
  assert.ok(maxDiff(masked, dense) > 1e-2, 'the plan changes the logits');
  const padded = await logits(zeroStructured(spec, plan), ids);
  assert.ok(maxDiff(padded, masked) < 1e-4, `padded: ${maxDiff(padded, masked)}`);
  const pruned = pruneStructured(spec, plan);
  const compact = await logits(pruned, ids);
  assert.ok(maxDiff(compact, masked) < 1e-4, `pruned: ${maxDiff(compact, masked)}`);
  // The form for configs without head-less layers (GPT-2's): one zeroed head where the plan leaves none.
  const oneHead = pruneStructuredKeepingAHead(spec, plan);
  assert.deepEqual(
    oneHead.config.headsPerLayer,
    pruned.config.headsPerLayer.map((h, i) => (h === 0 && spec.config.headsPerLayer[i] > 0 ? 1 : h)),
  );
  const withHead = await logits(oneHead, ids);
  assert.ok(maxDiff(withHead, masked) < 1e-4, `pruned, a zeroed head kept: ${maxDiff(withHead, masked)}`);
}

describe('structured removal equals the masked model', () => {
  test('llama GQA 4:2 with q/k/v/o biases', async () => {
    const spec = randomLlamaSpec({
      hiddenSize: 16,
      numLayers: 4,
      numHeads: 4,
      numKvHeads: 2,
      intermediateSize: 24,
      vocabSize: 41,
      maxPositions: 16,
      attentionBias: true,
      seed: 8,
      scale: 20,
    });
    await checkFamily(spec, {
      heads: [[0, 1, 2, 3], [1, 3], [], [2]],
      channels: [[0, 5, 6, 7, 20, 23], [], [1, 2, 3], Array.from({ length: 24 }, (_, j) => j)],
      skipAttention: [true, false, false, false],
      skipMlp: [false, false, false, true],
    });
  });

  test('gpt2: biases everywhere, a skipped block of each kind, an MLP and an attention left empty', async () => {
    const dir = join(tmp.dir, 'gpt2');
    await writeGpt2(dir, { embd: 12, heads: 3, layers: 4, inner: 20, vocab: 37, positions: 16 }, 4);
    const spec = await loadModelSpec(dir);
    await checkFamily(spec, {
      heads: [[0, 2], [], [1], [0, 1, 2]],
      channels: [[3, 4, 9, 19], [0, 1], [], [5]],
      skipAttention: [false, false, false, true],
      skipMlp: [false, true, false, false],
    });
  });

  test('gemma2: sandwich norms around skipped blocks, GQA, soft-capping', async () => {
    const dir = join(tmp.dir, 'gemma2');
    await writeGemma(
      dir,
      { type: 'gemma2', hidden: 16, layers: 3, heads: 4, kvHeads: 2, headDim: 4, inter: 24, vocab: 33 },
      6,
    );
    const spec = await loadModelSpec(dir);
    await checkFamily(spec, {
      heads: [[0, 1], [3], [0, 1, 2, 3]],
      channels: [[], [2, 3, 8, 9, 10], [0, 23]],
      skipAttention: [false, false, true],
      skipMlp: [true, false, false],
    });
  });

  test('bert: post-norm layers keep their LayerNorm around a skipped block', async () => {
    const ckpt = await writeRandomEncoder(tmp.dir, 'bert', { modelType: 'bert', seed: 8, layers: 3 });
    const spec = await loadModelSpec(ckpt.dir);
    const c = spec.config;
    const all = (n: number) => Array.from({ length: n }, (_, j) => j);
    await checkFamily(spec, {
      heads: [all(c.headsPerLayer[0]).slice(1), [0], all(c.headsPerLayer[2])],
      channels: [[], all(c.intermediateSize).filter((j) => j % 3 !== 0), [1, 2]],
      skipAttention: [false, false, true],
      skipMlp: [false, true, false],
    });
  });
});
