/**
 * Per-layer MLP widths (ModelConfig.intermediatePerLayer, config.json's intermediate_size_per_layer): models whose
 * layers have different MLP widths — one of them 0, no MLP at all — compute what the plain float64 references
 * compute (llama-like and GPT-2, fused and explicit attention, with and without structured masks on top); a
 * decoder layer left with no heads adds its o projection's bias alone (GPT-2, a biased llama); folders written
 * with per-layer widths load back equal in every family that writes the key; bad values are refused in one line
 * naming config.json and the key; the KV-cache graph's greedy tokens equal the search graph's argmax steps;
 * capture statistics have each layer's width; FLOPs count each layer at its width.
 */
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { after, describe, test } from 'node:test';
import { writeHfFolder } from '../../src/checkpoint/hf.js';
import { emptyPastFeeds, pastFromPresent } from '../../src/engine/kvcache.js';
import { createRunner } from '../../src/engine/runner.js';
import { createEngine } from '../../src/engine/session.js';
import { GenepruneError } from '../../src/errors.js';
import { buildDecoderGraph } from '../../src/graph/decoder.js';
import { loadWeights } from '../../src/graph/weights.js';
import { type StructuredPlan, structuredMasksOf } from '../../src/masks/structured.js';
import { forwardFlopsPerToken } from '../../src/model/cost.js';
import { specToHf } from '../../src/model/families.js';
import { loadModelSpec } from '../../src/model/load.js';
import { randomLlamaSpec } from '../../src/model/random.js';
import { intermediateOf, type ModelSpec, memoryTensor, type TensorSource } from '../../src/model/spec.js';
import { pruneHeads } from '../../src/prune/heads.js';
import { tempDir } from '../checkpoint/helpers.js';
import { writeRandomEncoder } from '../helpers/encoders.js';
import { writeGpt2 } from '../helpers/gpt2.js';
import { llamaReference, randomTokens } from '../helpers/llamalike.js';
import { writeSmallFamily } from '../helpers/smallfamily.js';
import { referenceEncoderForward } from '../reference/bert.js';
import { gpt2Forward } from '../reference/gpt2.js';
import { referenceForward } from '../reference/llama.js';

const tmp = tempDir('geneprune-widths-');
after(tmp.cleanup);

/**
 * The spec with layer l's MLP cut to its first widths[l] channels — gate/up rows (and biases), down columns —
 * sliced here from the roles' [out, in] layout, not through any pruning code.
 */
async function narrowMlp(spec: ModelSpec, widths: number[]): Promise<ModelSpec> {
  const c = spec.config;
  const tensors = new Map<string, TensorSource>(spec.tensors);
  for (let l = 0; l < c.numLayers; l++) {
    const W = intermediateOf(c, l);
    const w = widths[l];
    for (const [role, t] of spec.tensors) {
      const m = /^layers\.(\d+)\.mlp\.(gate|up|down)\.(weight|bias)$/.exec(role);
      if (!m || Number(m[1]) !== l) continue;
      const data = await t.load();
      if (m[2] === 'down' && m[3] === 'weight') {
        const D = t.shape[0];
        const out = new Float32Array(D * w);
        for (let r = 0; r < D; r++) out.set(data.subarray(r * W, r * W + w), r * w);
        tensors.set(role, memoryTensor([D, w], out));
      } else if (m[2] !== 'down') {
        const cols = m[3] === 'weight' ? t.shape[1] : 1;
        tensors.set(role, memoryTensor(m[3] === 'weight' ? [w, cols] : [w], data.slice(0, w * cols)));
      }
    }
  }
  return { ...spec, config: { ...c, intermediatePerLayer: [...widths] }, tensors };
}

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
  return worst;
}

async function logits(
  spec: ModelSpec,
  seqs: number[][],
  opts: { attention?: 'fused' | 'explicit'; plan?: StructuredPlan } = {},
): Promise<Float32Array> {
  const runner = await createRunner(spec, {
    output: 'logits',
    attention: opts.attention,
    ...(opts.plan ? { structuredMasks: true } : {}),
  });
  try {
    return await runner.run(
      { batch: seqs.length, seq: seqs[0].length, ids: BigInt64Array.from(seqs.flat().map(BigInt)) },
      opts.plan ? structuredMasksOf(spec.config, opts.plan) : undefined,
    );
  } finally {
    await runner.release();
  }
}

const flat = (rows: Float64Array[][]) => Float64Array.from(rows.flatMap((r) => r.flatMap((v) => [...v])));

const V = 37;
const WIDTHS = [40, 0, 17];

function llamaWithWidths(seed: number, widths = WIDTHS): ModelSpec {
  return randomLlamaSpec({
    hiddenSize: 32,
    numLayers: 3,
    numHeads: 4,
    numKvHeads: 2,
    intermediateSize: 40,
    intermediatePerLayer: widths,
    vocabSize: V,
    maxPositions: 32,
    attentionBias: true,
    seed,
    scale: 20,
  });
}

describe('per-layer MLP widths against the references', () => {
  test('llama-like (GQA, biased attention), widths 40/0/17: fused, explicit, with a structured plan', async () => {
    const spec = llamaWithWidths(3);
    assert.deepEqual(spec.config.intermediatePerLayer, WIDTHS);
    assert.deepEqual(spec.tensors.get('layers.1.mlp.gate.weight')!.shape, [0, 32]);
    assert.deepEqual(spec.tensors.get('layers.1.mlp.down.weight')!.shape, [32, 0]);
    assert.deepEqual(spec.tensors.get('layers.2.mlp.down.weight')!.shape, [32, 17]);
    const ref = await llamaReference(spec);
    const seqs = [randomTokens(9, V, 1), randomTokens(9, V, 2)];
    const dense = flat(seqs.map((s) => referenceForward(ref, s, { rotary: 'half' })));
    // The plan: a few heads and channels off, layer 2's attention skipped.
    const plan: StructuredPlan = {
      heads: [[0, 2, 3], [1], [0, 1, 2, 3]],
      channels: [Array.from({ length: 40 }, (_, j) => j).filter((j) => j % 3 !== 1), [], [0, 4, 5, 9, 16]],
      skipAttention: [false, false, true],
      skipMlp: [false, false, false],
    };
    const rows = {
      headMask: [
        [1, 0, 1, 1],
        [0, 1, 0, 0],
        [1, 1, 1, 1],
      ],
      channelMask: WIDTHS.map((w, l) =>
        Array.from({ length: w }, (_, j) => (plan.channels[l].includes(j) ? 1 : 0)),
      ),
      blockMask: [
        [1, 1],
        [1, 1],
        [0, 1],
      ],
    };
    const planned = flat(seqs.map((s) => referenceForward(ref, s, { rotary: 'half', ...rows })));
    for (const attention of ['fused', 'explicit'] as const) {
      const d = maxDiff(await logits(spec, seqs, { attention }), dense);
      assert.ok(d <= 1e-4, `${attention}: max abs diff ${d}`);
      const dp = maxDiff(await logits(spec, seqs, { attention, plan }), planned);
      assert.ok(dp <= 1e-4, `${attention}, planned: max abs diff ${dp}`);
    }
  });

  test('a llama layer left with no heads adds its o bias alone (physically pruned = masked = reference)', async () => {
    const spec = llamaWithWidths(4);
    // Every head of layer 0 removed (genes are layer-major, 4 per layer).
    const genome = Uint8Array.from([0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1]);
    const pruned = pruneHeads(spec, genome);
    assert.equal(pruned.config.headsPerLayer[0], 0);
    const seqs = [randomTokens(8, V, 3)];
    const ref = await llamaReference(pruned);
    const want = flat(seqs.map((s) => referenceForward(ref, s, { rotary: 'half' })));
    const d = maxDiff(await logits(pruned, seqs), want);
    assert.ok(d <= 1e-4, `pruned vs reference: ${d}`);
    // The bias matters: a reference without it differs.
    const noBias = { ...ref, get: (r: string) => (r === 'layers.0.attn.o.bias' ? undefined : ref.get(r)) };
    assert.ok(maxDiff(flat(seqs.map((s) => referenceForward(noBias, s, { rotary: 'half' }))), want) > 1e-2);
  });

  test('GPT-2, widths 48/0/20 written and loaded back, and a head-less layer, against the reference', async () => {
    const shape = { embd: 32, heads: 4, layers: 3, inner: 48, vocab: 41, positions: 16 };
    await writeGpt2(join(tmp.dir, 'gpt2'), shape, 1);
    const dense = await loadModelSpec(join(tmp.dir, 'gpt2'));
    const narrowed = await narrowMlp(dense, [48, 0, 20]);
    const files = specToHf(narrowed);
    assert.deepEqual(files.config.intermediate_size_per_layer, [48, 0, 20]);
    const dir = join(tmp.dir, 'gpt2-narrow');
    await writeHfFolder(dir, { config: files.config, tensors: files.tensors });
    const loaded = await loadModelSpec(dir);
    assert.deepEqual(loaded.config.intermediatePerLayer, [48, 0, 20]);
    const hf = new Map<string, Float32Array>();
    for (const [name, t] of files.tensors) hf.set(name, await t.load());
    const ref = {
      nEmbd: shape.embd,
      nHead: shape.heads,
      nLayer: shape.layers,
      eps: 1e-5,
      vocab: shape.vocab,
      get: (n: string) => hf.get(n)!,
    };
    const seqs = [randomTokens(9, shape.vocab, 1), randomTokens(9, shape.vocab, 2)];
    const want = flat(seqs.map((s) => gpt2Forward(ref, s)));
    for (const attention of ['fused', 'explicit'] as const) {
      const d = maxDiff(await logits(loaded, seqs, { attention }), want);
      assert.ok(d <= 1e-4, `${attention}: max abs diff ${d}`);
    }
    // Every head of layer 1 removed: c_proj's bias alone, as the masked reference computes it.
    const headless = pruneHeads(loaded, Uint8Array.from([1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1]));
    assert.equal(headless.config.headsPerLayer[1], 0);
    const masked = flat(
      seqs.map((s) =>
        gpt2Forward(ref, s, [
          [1, 1, 1, 1],
          [0, 0, 0, 0],
          [1, 1, 1, 1],
        ]),
      ),
    );
    for (const attention of ['fused', 'explicit'] as const) {
      const d = maxDiff(await logits(headless, seqs, { attention }), masked);
      assert.ok(d <= 1e-4, `head-less, ${attention}: max abs diff ${d}`);
    }
  });
});

describe('per-layer widths in folders', () => {
  const families: Array<[string, (dir: string) => Promise<unknown>]> = [
    ['llama', async (dir) => writeHfFolder(dir, specToHf(llamaWithWidths(5, [40, 40, 40])))],
    ...(['gpt2', 'opt', 'phi3', 'qwen3', 'gemma2'] as const).map(
      (name, i): [string, (dir: string) => Promise<unknown>] => [
        name,
        (dir) => writeSmallFamily(name, dir, 48, i + 2),
      ],
    ),
    [
      'bert',
      (dir) =>
        writeRandomEncoder(dirname(dir), basename(dir), {
          modelType: 'bert',
          seed: 7,
          layers: 3,
          intermediate: 48,
        }),
    ],
  ];
  for (const [name, write] of families) {
    test(`${name}: a folder written with per-layer widths loads back equal, and runs`, async () => {
      const dir = join(tmp.dir, `${name}-dense`);
      await write(dir);
      const dense = await loadModelSpec(dir);
      assert.equal(dense.config.intermediatePerLayer, undefined);
      const W = dense.config.intermediateSize;
      const widths = [W, 0, 13];
      const narrowed = await narrowMlp(dense, widths);
      const out = join(tmp.dir, `${name}-narrow`);
      await writeHfFolder(out, specToHf(narrowed));
      const json = JSON.parse(await readFile(join(out, 'config.json'), 'utf8'));
      assert.deepEqual(json.intermediate_size_per_layer, widths);
      const loaded = await loadModelSpec(out);
      assert.deepEqual(loaded.config.intermediatePerLayer, widths);
      assert.deepEqual(loaded.config, narrowed.config);
      assert.deepEqual([...loaded.tensors.keys()].sort(), [...narrowed.tensors.keys()].sort());
      for (const [role, t] of narrowed.tensors) {
        const back = loaded.tensors.get(role)!;
        assert.deepEqual(back.shape, t.shape, role);
        assert.deepEqual(await back.load(), await t.load(), role);
      }
      if (name === 'bert') {
        // The encoder with a layer of width 0 against the reference over the written tensors.
        const hf = new Map<string, Float32Array>();
        for (const [n, t] of specToHf(narrowed).tensors) hf.set(n, await t.load());
        const ids = randomTokens(6, 20, 4).map((t) => t + 1);
        const want = referenceEncoderForward(json, (n) => hf.get(n), { inputIds: ids }).lastHiddenState;
        const r = await createRunner(loaded, { output: 'hidden' });
        const got = await r.run({ batch: 1, seq: 6, ids: BigInt64Array.from(ids.map(BigInt)) });
        await r.release();
        const d = maxDiff(got, Float64Array.from(want.flatMap((v) => [...v])));
        assert.ok(d <= 1e-4, `bert: max abs diff ${d}`);
      }
      const runner = await createRunner(loaded, { output: name === 'bert' ? 'hidden' : 'logits' });
      const ids = BigInt64Array.from(
        randomTokens(5, Math.min(loaded.config.vocabSize, 20), 9).map((t) => BigInt(t + 1)),
      );
      const got = await runner.run({ batch: 1, seq: 5, ids });
      await runner.release();
      assert.ok(got.every(Number.isFinite));
    });
  }

  test('uniform full widths leave intermediatePerLayer absent; bad values are refused in one line', async () => {
    const dir = join(tmp.dir, 'llama-keys');
    await writeHfFolder(dir, specToHf(llamaWithWidths(8, [40, 40, 40])));
    const path = join(dir, 'config.json');
    const json = JSON.parse(await readFile(path, 'utf8'));
    const withKey = async (v: unknown) =>
      writeFile(path, JSON.stringify({ ...json, intermediate_size_per_layer: v }));
    await withKey([40, 40, 40]);
    assert.equal((await loadModelSpec(dir)).config.intermediatePerLayer, undefined);
    for (const [bad, why] of [
      [[40, -1, 40], /layer 1 -1 MLP units.*0\.\.40/],
      [[40, 2.5, 40], /layer 1 2\.5 MLP units/],
      [[40, 41, 40], /layer 1 41 MLP units.*0\.\.40/],
      [[40, 40], /array of 3 sizes/],
      ['40', /array of 3 sizes/],
    ] as const) {
      await withKey(bad);
      await assert.rejects(loadModelSpec(dir), (e: unknown) => {
        assert.ok(e instanceof GenepruneError, String(e));
        assert.ok(e.where?.endsWith('config.json'), e.oneLine());
        assert.match(e.message, /intermediate_size_per_layer/);
        assert.match(e.message, why);
        assert.ok(!e.oneLine().includes('\n'));
        return true;
      });
    }
  });
});

describe('per-layer widths: generation, capture, cost', () => {
  test("the KV-cache graph's greedy tokens equal the search graph's argmax steps", async () => {
    // Widths 40/0/17, and layer 0 without heads (its o bias alone).
    const spec = pruneHeads(llamaWithWidths(9), Uint8Array.from([0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1]));
    const prompt = randomTokens(4, V, 5);
    const steps = 6;
    const argmax = (row: ArrayLike<number>, from: number) => {
      let best = 0;
      for (let v = 1; v < V; v++) if (row[from + v] > row[from + best]) best = v;
      return best;
    };
    // Search graph: the whole sequence again each step, the last position's argmax.
    const searched = [...prompt];
    const searchedRows: Float32Array[] = [];
    const cachedRows: Float32Array[] = [];
    const runner = await createRunner(spec, { output: 'logits' });
    for (let s = 0; s < steps; s++) {
      const out = await runner.run({
        batch: 1,
        seq: searched.length,
        ids: BigInt64Array.from(searched.map(BigInt)),
      });
      const at = (searched.length - 1) * V;
      searchedRows.push(out.slice(at, at + V));
      searched.push(argmax(out, at));
    }
    await runner.release();
    // KV cache: prefill, then one token per step.
    const engine = await createEngine(
      buildDecoderGraph(spec, await loadWeights(spec), { output: 'logits', kvCache: true }),
    );
    const int64 = (xs: number[]) => BigInt64Array.from(xs.map(BigInt));
    const cached = [...prompt];
    let past = emptyPastFeeds(spec.config, 1);
    let chunk = prompt;
    let pos = 0;
    for (let s = 0; s < steps; s++) {
      const total = pos + chunk.length;
      const out = await engine.run({
        input_ids: { type: 'int64', dims: [1, chunk.length], data: int64(chunk) },
        attention_mask: { type: 'int64', dims: [1, total], data: int64(Array(total).fill(1)) },
        position_ids: { type: 'int64', dims: [1, chunk.length], data: int64(chunk.map((_, j) => pos + j)) },
        ...past,
      });
      const at = (chunk.length - 1) * V;
      cachedRows.push(out.logits.data.slice(at, at + V));
      const next = argmax(out.logits.data, at);
      cached.push(next);
      past = pastFromPresent(spec.config, out);
      pos = total;
      chunk = [next];
    }
    await engine.release();
    assert.deepEqual(cached, searched);
    searchedRows.forEach((row, s) => {
      assert.ok(maxDiff(cachedRows[s], row) <= 1e-4, `step ${s}`);
    });
  });

  test("capture statistics have each layer's width (none for a layer without MLP)", async () => {
    const spec = llamaWithWidths(10);
    const runner = await createRunner(spec, {
      output: 'nll',
      capture: { layers: [0, 1, 2], kind: 'sqnorm' },
    });
    const tokens = randomTokens(6, V, 6);
    const got = await runner.runAll({
      batch: 1,
      seq: 6,
      ids: BigInt64Array.from(tokens.map(BigInt)),
      targets: BigInt64Array.from([...tokens.slice(1), 0].map(BigInt)),
    });
    await runner.release();
    assert.equal(got['stats.0.down_in'].data.length, 40);
    assert.equal(got['stats.2.down_in'].data.length, 17);
    assert.equal(got['stats.1.down_in'], undefined);
    assert.equal(got['stats.1.mlp_in'], undefined);
    assert.equal(got['stats.1.attn_in'].data.length, 32);
  });

  test('forward FLOPs count each MLP at its own width', () => {
    const spec = llamaWithWidths(11);
    const seq = 8;
    // Per layer: q/k/v/o 2·D·(2q + 2kv) with q = 32, kv = 16; gated MLP 2·3·D·width; attention 2·2·seq·q; head 2·D·V.
    const attn = 2 * 32 * (2 * 32 + 2 * 16) + 2 * 2 * seq * 32;
    const want = 3 * attn + 2 * 3 * 32 * (40 + 0 + 17) + 2 * 32 * V;
    assert.equal(forwardFlopsPerToken(spec, seq), want);
  });
});
