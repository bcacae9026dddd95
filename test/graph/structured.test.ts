/**
 * Structured mask inputs (channel_mask, block_mask): a runner built with `structuredMasks` computes a structured
 * plan — heads off, MLP channels off, whole attention / MLP blocks skipped — as the plain float64 references do
 * (written from each family's definition, the masks applied where masks/structured.ts says), on tiny random
 * llama-like (MHA and GQA), GPT-2 and Gemma 2 models, fused and explicit attention; a masked run equals the
 * unmasked run of a copy whose removed channels' gate/up rows and down columns are zeroed; without the option
 * the graph is unchanged and has no such inputs.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { createRunner, type RunnerOptions } from '../../src/engine/runner.js';
import { GenepruneError } from '../../src/errors.js';
import { buildDecoderGraph } from '../../src/graph/decoder.js';
import { prepareWeights } from '../../src/graph/weights.js';
import { type StructuredPlan, structuredMasksOf } from '../../src/masks/structured.js';
import { loadModelSpec } from '../../src/model/load.js';
import { randomLlamaSpec } from '../../src/model/random.js';
import { intermediateOf, type ModelSpec, memoryTensor } from '../../src/model/spec.js';
import { createRng } from '../../src/util/rng.js';
import { tempDir } from '../checkpoint/helpers.js';
import { writeRandomEncoder } from '../helpers/encoders.js';
import { writeGemma } from '../helpers/gemma.js';
import { writeGpt2 } from '../helpers/gpt2.js';
import { llamaReference, randomTokens } from '../helpers/llamalike.js';
import { writeSmallFamily } from '../helpers/smallfamily.js';
import { randomT5 } from '../helpers/t5.js';
import { referenceEncoderForward } from '../reference/bert.js';
import { gemmaForward } from '../reference/gemma.js';
import { gpt2Forward } from '../reference/gpt2.js';
import { referenceForward } from '../reference/llama.js';

const tmp = tempDir('geneprune-structured-');
after(tmp.cleanup);

/** A random plan: about a third of heads and channels off, some blocks skipped, every kind of unit touched. */
function randomPlan(spec: ModelSpec, seed: number): StructuredPlan {
  const c = spec.config;
  const rng = createRng(seed);
  const subset = (n: number) => Array.from({ length: n }, (_, j) => j).filter(() => rng.nextFloat() >= 0.35);
  const plan: StructuredPlan = {
    heads: c.headsPerLayer.map((h) => subset(h)),
    channels: Array.from({ length: c.numLayers }, (_, i) => subset(intermediateOf(c, i))),
    skipAttention: Array.from({ length: c.numLayers }, () => false),
    skipMlp: Array.from({ length: c.numLayers }, () => false),
  };
  // Layer 0 skips its attention block, the last layer its MLP block; the others run with units removed.
  plan.skipAttention[0] = true;
  plan.skipMlp[c.numLayers - 1] = true;
  return plan;
}

/** The plan as the references take it: [layer][unit] 0/1 rows, read from the plan itself. */
function planRows(spec: ModelSpec, plan: StructuredPlan) {
  const c = spec.config;
  const member = (kept: number[], n: number) =>
    Array.from({ length: n }, (_, j) => (kept.includes(j) ? 1 : 0));
  return {
    heads: c.headsPerLayer.map((h, i) => member(plan.heads[i], h)),
    channels: Array.from({ length: c.numLayers }, (_, i) => member(plan.channels[i], intermediateOf(c, i))),
    blocks: plan.skipAttention.map((s, i) => [s ? 0 : 1, plan.skipMlp[i] ? 0 : 1]),
  };
}

async function engineLogits(
  spec: ModelSpec,
  seqs: number[][],
  plan: StructuredPlan | undefined,
  opts: Omit<RunnerOptions, 'output'>,
): Promise<Float32Array> {
  const runner = await createRunner(spec, { output: 'logits', structuredMasks: true, ...opts });
  try {
    return await runner.run(
      { batch: seqs.length, seq: seqs[0].length, ids: BigInt64Array.from(seqs.flat().map(BigInt)) },
      plan ? structuredMasksOf(spec.config, plan) : undefined,
    );
  } finally {
    await runner.release();
  }
}

function worstDiff(out: Float32Array, expected: Float64Array[][]): number {
  const flat = expected.flatMap((rows) => rows.flatMap((r) => [...r]));
  assert.equal(out.length, flat.length);
  let worst = 0;
  flat.forEach((v, k) => {
    worst = Math.max(worst, Math.abs(v - out[k]));
  });
  return worst;
}

function llamaSpec(kvHeads: number, seed: number): ModelSpec {
  return randomLlamaSpec({
    hiddenSize: 32,
    numLayers: 3,
    numHeads: 4,
    numKvHeads: kvHeads,
    intermediateSize: 40,
    vocabSize: 37,
    maxPositions: 32,
    attentionBias: true,
    seed,
    scale: 20,
  });
}

describe('structured masks against the references', () => {
  for (const [name, kvHeads] of [
    ['llama-like', 4],
    ['llama-like GQA', 2],
  ] as const) {
    test(`${name}: random plans, fused and explicit`, async () => {
      const spec = llamaSpec(kvHeads, 11 + kvHeads);
      const ref = await llamaReference(spec);
      const seqs = [randomTokens(9, 37, 1), randomTokens(9, 37, 2)];
      for (const seed of [1, 2]) {
        const plan = randomPlan(spec, seed);
        const rows = planRows(spec, plan);
        const expected = seqs.map((s) =>
          referenceForward(ref, s, {
            rotary: 'half',
            headMask: rows.heads,
            channelMask: rows.channels,
            blockMask: rows.blocks,
          }),
        );
        const dense = seqs.map((s) => referenceForward(ref, s, { rotary: 'half' }));
        for (const attention of ['fused', 'explicit'] as const) {
          const d = worstDiff(await engineLogits(spec, seqs, plan, { attention }), expected);
          assert.ok(d <= 1e-4, `${attention}, plan ${seed}: max abs diff ${d}`);
          // No masks given: all ones, the dense model.
          const d0 = worstDiff(await engineLogits(spec, seqs, undefined, { attention }), dense);
          assert.ok(d0 <= 1e-4, `${attention}, no masks: max abs diff ${d0}`);
        }
        // The plan changes the logits well beyond the tolerance (the masks act).
        assert.ok(worstDiff(Float32Array.from(dense.flat(2).flatMap((r) => [...r])), expected) > 1e-2);
      }
    });
  }

  test('GPT-2: random plans, fused and explicit', async () => {
    const shape = { embd: 32, heads: 4, layers: 3, inner: 48, vocab: 41, positions: 16 };
    const dir = join(tmp.dir, 'gpt2');
    const tensors = await writeGpt2(dir, shape, 3);
    const spec = await loadModelSpec(dir);
    const ref = {
      nEmbd: shape.embd,
      nHead: shape.heads,
      nLayer: shape.layers,
      eps: 1e-5,
      vocab: shape.vocab,
      get: (n: string) => tensors.get(n)!.data,
    };
    const seqs = [randomTokens(9, shape.vocab, 1), randomTokens(9, shape.vocab, 2)];
    for (const seed of [3, 4]) {
      const plan = randomPlan(spec, seed);
      const rows = planRows(spec, plan);
      const expected = seqs.map((s) =>
        gpt2Forward(ref, s, rows.heads, { channelMask: rows.channels, blockMask: rows.blocks }),
      );
      for (const attention of ['fused', 'explicit'] as const) {
        const d = worstDiff(await engineLogits(spec, seqs, plan, { attention }), expected);
        assert.ok(d <= 1e-4, `${attention}, plan ${seed}: max abs diff ${d}`);
      }
    }
  });

  test('Gemma 2 (sandwich norms, soft-capping, sliding window): random plans', async () => {
    const dir = join(tmp.dir, 'gemma2');
    const s = {
      type: 'gemma2' as const,
      hidden: 24,
      layers: 3,
      heads: 4,
      kvHeads: 2,
      headDim: 8,
      inter: 20,
      vocab: 29,
    };
    const { tensors, config } = await writeGemma(dir, s, 5);
    const spec = await loadModelSpec(dir);
    const ref = {
      gemma2: true,
      hiddenSize: s.hidden,
      numLayers: s.layers,
      headDim: s.headDim,
      headsPerLayer: new Array(s.layers).fill(s.heads),
      kvHeadsPerLayer: new Array(s.layers).fill(s.kvHeads),
      intermediateSize: s.inter,
      vocabSize: s.vocab,
      eps: 1e-6,
      ropeTheta: 10000,
      activation: 'gelu_tanh' as const,
      tieEmbeddings: true,
      queryPreAttnScalar: config.query_pre_attn_scalar as number,
      attnSoftcap: config.attn_logit_softcapping as number,
      finalSoftcap: config.final_logit_softcapping as number,
      slidingWindow: config.sliding_window as number,
      get: (n: string) => tensors.get(n)?.data,
    };
    const seqs = [randomTokens(7, s.vocab, 1), randomTokens(7, s.vocab, 2)];
    const plan = randomPlan(spec, 6);
    const rows = planRows(spec, plan);
    const expected = seqs.map((q) =>
      gemmaForward(ref, q, rows.heads, { channelMask: rows.channels, blockMask: rows.blocks }),
    );
    for (const attention of ['fused', 'explicit'] as const) {
      const d = worstDiff(await engineLogits(spec, seqs, plan, { attention }), expected);
      assert.ok(d <= 1e-4, `${attention}: max abs diff ${d}`);
    }
  });
});

describe('structured masks in encoders', () => {
  test('BERT: a random plan against the reference (post-norm: the norm after a skipped block stays)', async () => {
    const ckpt = await writeRandomEncoder(tmp.dir, 'bert', { modelType: 'bert', seed: 8, layers: 3 });
    const spec = await loadModelSpec(ckpt.dir);
    const plan = randomPlan(spec, 9);
    const rows = planRows(spec, plan);
    const V = spec.config.vocabSize;
    const seqs = [
      randomTokens(7, V, 1).map((t) => Math.max(1, t)),
      randomTokens(7, V, 2).map((t) => Math.max(1, t)),
    ];
    const expected = seqs.map((ids) => [
      ...referenceEncoderForward(
        ckpt.config,
        (n) => ckpt.tensors.get(n),
        { inputIds: ids },
        {
          headMask: rows.heads,
          channelMask: rows.channels,
          blockMask: rows.blocks,
        },
      ).lastHiddenState,
    ]);
    const runner = await createRunner(spec, { output: 'hidden', structuredMasks: true });
    const out = await runner.run(
      { batch: 2, seq: 7, ids: BigInt64Array.from(seqs.flat().map(BigInt)) },
      structuredMasksOf(spec.config, plan),
    );
    await runner.release();
    const d = worstDiff(out, expected);
    assert.ok(d <= 1e-4, `max abs diff ${d}`);
  });
});

/**
 * The copy of a model that computes a plan unmasked: removed heads' o columns, removed channels' down columns, and
 * a skipped block's o / down weight and bias set to zero (a skipped Gemma 2 block's post-norm then sees zeros,
 * which it maps to zeros).
 */
async function zeroPadded(spec: ModelSpec, plan: StructuredPlan): Promise<ModelSpec> {
  const c = spec.config;
  const tensors = new Map(spec.tensors);
  const set = async (role: string, keepCol: (j: number) => boolean) => {
    const t = spec.tensors.get(role);
    if (!t) return;
    const data = Float32Array.from(await t.load());
    const cols = t.shape.length === 2 ? t.shape[1] : t.shape[0];
    const rows = t.shape.length === 2 ? t.shape[0] : 1;
    for (let r = 0; r < rows; r++) for (let j = 0; j < cols; j++) if (!keepCol(j)) data[r * cols + j] = 0;
    tensors.set(role, memoryTensor([...t.shape], data));
  };
  for (let i = 0; i < c.numLayers; i++) {
    const p = `layers.${i}`;
    if (plan.skipAttention[i]) {
      await set(`${p}.attn.o.weight`, () => false);
      await set(`${p}.attn.o.bias`, () => false);
    } else await set(`${p}.attn.o.weight`, (j) => plan.heads[i].includes(Math.floor(j / c.headDim)));
    if (plan.skipMlp[i]) {
      await set(`${p}.mlp.down.weight`, () => false);
      await set(`${p}.mlp.down.bias`, () => false);
    } else await set(`${p}.mlp.down.weight`, (j) => plan.channels[i].includes(j));
  }
  return { ...spec, tensors };
}

describe('structured masks in every decoder family = the zero-padded copy', () => {
  const folders: Array<[string, (dir: string) => Promise<unknown>]> = (
    ['opt', 'phi3', 'qwen3', 'gemma', 'gemma2', 'gpt2'] as const
  ).map((name, i) => [name, (dir) => writeSmallFamily(name, dir, 40, i + 1)]);
  for (const [name, write] of folders) {
    test(`${name}: fused and explicit`, async () => {
      const dir = join(tmp.dir, `padded-${name}`);
      await write(dir);
      const spec = await loadModelSpec(dir);
      const plan = randomPlan(spec, 12);
      const copy = await zeroPadded(spec, plan);
      const seqs = [randomTokens(8, 29, 1), randomTokens(8, 29, 2)];
      for (const attention of ['fused', 'explicit'] as const) {
        const masked = await engineLogits(spec, seqs, plan, { attention });
        const padded = await engineLogits(copy, seqs, undefined, { attention });
        let worst = 0;
        masked.forEach((v, k) => {
          worst = Math.max(worst, Math.abs(v - padded[k]));
        });
        assert.ok(worst <= 1e-4, `${attention}: max abs diff ${worst}`);
      }
    });
  }
});

describe('structured masks: independent checks', () => {
  test('a channel-masked run equals the unmasked run of a copy with those channels zeroed', async () => {
    const spec = llamaSpec(2, 21);
    const c = spec.config;
    const plan = randomPlan(spec, 7);
    plan.skipAttention.fill(false);
    plan.skipMlp.fill(false);
    plan.heads = c.headsPerLayer.map((h) => Array.from({ length: h }, (_, j) => j));
    // The copy: removed channels' gate/up rows and down columns set to zero.
    const D = c.hiddenSize;
    const zeroed = new Map(spec.tensors);
    for (let i = 0; i < c.numLayers; i++) {
      const W = intermediateOf(c, i);
      const off = Array.from({ length: W }, (_, j) => j).filter((j) => !plan.channels[i].includes(j));
      for (const which of ['gate', 'up'] as const) {
        const role = `layers.${i}.mlp.${which}.weight`;
        const data = Float32Array.from(await spec.tensors.get(role)!.load());
        for (const j of off) data.fill(0, j * D, (j + 1) * D);
        zeroed.set(role, memoryTensor([W, D], data));
      }
      const role = `layers.${i}.mlp.down.weight`;
      const data = Float32Array.from(await spec.tensors.get(role)!.load());
      for (let r = 0; r < D; r++) for (const j of off) data[r * W + j] = 0;
      zeroed.set(role, memoryTensor([D, W], data));
    }
    const seqs = [randomTokens(8, c.vocabSize, 3)];
    const masked = await engineLogits(spec, seqs, plan, {});
    const copy = await engineLogits({ ...spec, tensors: zeroed }, seqs, undefined, {});
    let worst = 0;
    masked.forEach((v, k) => {
      worst = Math.max(worst, Math.abs(v - copy[k]));
    });
    assert.ok(worst <= 1e-5, `max abs diff ${worst}`);
  });

  test('a capture runner sees the masked MLP activation (down_in) and the masked stream after it', async () => {
    const spec = llamaSpec(2, 51);
    const c = spec.config;
    const ref = await llamaReference(spec);
    const plan = randomPlan(spec, 10);
    const rows = planRows(spec, plan);
    const tokens = randomTokens(8, c.vocabSize, 4);
    const layers = [0, 1, 2];
    const expected = new Map<string, Float64Array>();
    referenceForward(ref, tokens, {
      rotary: 'half',
      headMask: rows.heads,
      channelMask: rows.channels,
      blockMask: rows.blocks,
      onLinearInput: (l, point, _t, x) => {
        const key = `stats.${l}.${point}`;
        const sum = expected.get(key) ?? new Float64Array(x.length);
        x.forEach((v, j) => {
          sum[j] += v * v;
        });
        expected.set(key, sum);
      },
    });
    const runner = await createRunner(spec, {
      output: 'nll',
      structuredMasks: true,
      capture: { layers, kind: 'sqnorm', points: ['mlp_in', 'down_in'] },
    });
    const targets = BigInt64Array.from([...tokens.slice(1), 0].map(BigInt));
    const got = await runner.runAll(
      { batch: 1, seq: 8, ids: BigInt64Array.from(tokens.map(BigInt)), targets },
      structuredMasksOf(c, plan),
    );
    await runner.release();
    for (const l of layers) {
      for (const point of ['mlp_in', 'down_in']) {
        const key = `stats.${l}.${point}`;
        const want = expected.get(key)!;
        const have = got[key].data;
        assert.equal(have.length, want.length, key);
        want.forEach((v, j) => {
          assert.ok(
            Math.abs(v - have[j]) <= 1e-3 * Math.max(1, Math.abs(v)),
            `${key}[${j}]: ${have[j]} vs ${v}`,
          );
        });
      }
      // Removed channels contribute exactly nothing.
      rows.channels[l].forEach((keep, j) => {
        if (!keep) assert.equal(got[`stats.${l}.down_in`].data[j], 0);
      });
    }
  });

  test('without the option the graph has no structured inputs and is the same bytes', async () => {
    const spec = llamaSpec(2, 31);
    const weights = await prepareWeights(spec);
    const plain = buildDecoderGraph(spec, weights, { output: 'nll' });
    const off = buildDecoderGraph(spec, weights, { output: 'nll', structuredMasks: false });
    assert.deepEqual(Buffer.from(off.model), Buffer.from(plain.model));
    const on = buildDecoderGraph(spec, weights, { output: 'nll', structuredMasks: true });
    assert.notDeepEqual(Buffer.from(on.model), Buffer.from(plain.model));
    const runner = await createRunner(spec, { output: 'nll', weights });
    assert.ok(!runner.engine.inputNames.includes('channel_mask'));
    assert.ok(!runner.engine.inputNames.includes('block_mask'));
    await runner.release();
  });

  test('an encoder-decoder runner refuses structured masks in one line', async () => {
    await assert.rejects(
      createRunner(randomT5('v1.0', 1), { output: 'nll', structuredMasks: true }),
      (e: unknown) => e instanceof GenepruneError && /structured masks.*encoder-decoder/.test(e.oneLine()),
    );
  });

  test('masks of the wrong length are an internal error naming the input', async () => {
    const spec = llamaSpec(4, 41);
    const runner = await createRunner(spec, { output: 'logits', structuredMasks: true });
    const batch = { batch: 1, seq: 3, ids: BigInt64Array.from([1n, 2n, 3n]) };
    await assert.rejects(
      runner.run(batch, { channelMask: new Float32Array(5) }),
      (e: unknown) => e instanceof GenepruneError && e.kind === 'internal' && /channel_mask/.test(e.message),
    );
    await assert.rejects(
      runner.run(batch, { blockMask: new Float32Array(5) }),
      (e: unknown) => e instanceof GenepruneError && e.kind === 'internal' && /block_mask/.test(e.message),
    );
    await runner.release();
  });
});
