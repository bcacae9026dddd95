/**
 * Block graphs (layers [from, to)) and activation statistics (capture).
 * - Composing blocks [0,a) → [a,b) → [b,L), each fed the previous block's hidden output, gives the full graph's
 *   logits and NLL, with head masks and weight masks, on random models (GQA, biases, tied and untied, a chunked
 *   vocabulary, fp16 weights).
 * - A block graph holds only its own layers' weights.
 * - Captured Σ_t X_tj² and XᵀX of every linear input equal those of the plain-TypeScript reference forward
 *   (test/reference/llama.ts) on the same weights, with a head mask, weight masks and padded rows.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import onnxProto from 'onnx-proto';
import { runBlock } from '../../src/engine/blocks.js';
import { createRunner, type TokenBatch } from '../../src/engine/runner.js';
import { CAPTURE_POINTS, type CapturePoint, statsName } from '../../src/graph/capture.js';
import { buildDecoderGraph } from '../../src/graph/decoder.js';
import { IGNORE_INDEX } from '../../src/graph/lmhead.js';
import { loadWeights } from '../../src/graph/weights.js';
import type { ModelSpec } from '../../src/model/spec.js';
import { createRng } from '../../src/util/rng.js';
import { composedBlocks, linearRoles, randomWeightMasks } from '../helpers/blocks.js';
import { caseDecoder } from '../helpers/llamacase.js';
import { maxAbsDiff } from '../helpers/logits.js';
import type { LinearInput, ReferenceWeights } from '../reference/llama.js';
import { referenceForward } from '../reference/llama.js';

const { onnx } = onnxProto;

interface Case {
  name: string;
  heads: number;
  kv: number;
  tie: boolean;
  bias: boolean;
  modelType?: string;
  vocabChunk?: number;
}

const cases: Case[] = [
  { name: 'GQA 4:2, tied, attention biases', heads: 4, kv: 2, tie: true, bias: true },
  {
    name: 'multi-head 4:4, untied, chunked vocabulary',
    heads: 4,
    kv: 4,
    tie: false,
    bias: false,
    vocabChunk: 16,
  },
  {
    name: 'qwen2 GQA 6:2, untied, q/k/v biases',
    heads: 6,
    kv: 2,
    tie: false,
    bias: true,
    modelType: 'qwen2',
  },
];

const LAYERS = 4;

function specOf(c: Case, seed: number): ModelSpec {
  return caseDecoder(c, LAYERS, seed, 3);
}

/** Random masks: about a quarter of every linear's weights and a third of the heads dropped. */
function someMasks(spec: ModelSpec, seed: number) {
  const rng = createRng(seed);
  const c = spec.config;
  const H = Math.max(...c.headsPerLayer);
  const headRows = Array.from({ length: c.numLayers }, () =>
    Array.from({ length: H }, () => (rng.nextFloat() < 0.35 ? 0 : 1)),
  );
  headRows[0][0] = 0;
  headRows[c.numLayers - 1][H - 1] = 1;
  const weightMasks = randomWeightMasks(spec, rng, 0.25);
  return { headRows, headMask: Float32Array.from(headRows.flat()), weightMasks };
}

/** Two rows of 11 positions; the second has 7 real tokens, then padding (token 0, target ignored). */
function paddedBatch(vocab: number, seed: number): TokenBatch & { rows: number[][] } {
  const rng = createRng(seed);
  const seq = 11;
  const lengths = [11, 7];
  const rows = lengths.map((n) => Array.from({ length: n + 1 }, () => rng.nextInt(vocab)));
  const ids = new BigInt64Array(2 * seq);
  const targets = new BigInt64Array(2 * seq).fill(BigInt(IGNORE_INDEX));
  const valid = new Uint8Array(2 * seq);
  rows.forEach((r, b) => {
    for (let t = 0; t < r.length - 1; t++) {
      ids[b * seq + t] = BigInt(r[t]);
      targets[b * seq + t] = BigInt(r[t + 1]);
      valid[b * seq + t] = 1;
    }
  });
  return { batch: 2, seq, ids, targets, valid, rows: rows.map((r) => r.slice(0, -1)) };
}

describe('block graphs compose to the full graph', () => {
  for (const [i, c] of cases.entries()) {
    test(c.name, async () => {
      const spec = specOf(c, 300 + i);
      const masks = someMasks(spec, 400 + i);
      const batch = paddedBatch(spec.config.vocabSize, 500 + i);
      const base = { weightMasks: linearRoles(spec), vocabChunk: c.vocabChunk };
      for (const output of ['logits', 'nll'] as const) {
        const full = await createRunner(spec, { ...base, output });
        const expected = await full.run(batch, masks);
        await full.release();
        const got = await composedBlocks(spec, [1, 3], { ...base, output }, batch, masks);
        const diff = maxAbsDiff(got, expected);
        assert.ok(diff <= 1e-5, `${output}: max abs diff ${diff}`);
        // The suffix alone, from the first block's hidden states.
        const got2 = await composedBlocks(spec, [2], { ...base, output }, batch, masks);
        assert.ok(maxAbsDiff(got2, expected) <= 1e-5, `${output}, two blocks`);
      }
      // Masks matter here, so the composition is not trivially equal.
      const plain = await createRunner(spec, { ...base, output: 'nll' });
      const unmasked = await plain.run(batch);
      await plain.release();
      const full = await createRunner(spec, { ...base, output: 'nll' });
      assert.ok(maxAbsDiff(unmasked, await full.run(batch, masks)) > 1e-3);
      await full.release();
    });
  }

  test('fp16 weights and the explicit attention chain', async () => {
    const spec = specOf(cases[0], 310);
    const masks = someMasks(spec, 410);
    const batch = paddedBatch(spec.config.vocabSize, 510);
    for (const base of [
      { weightMasks: linearRoles(spec), dtype: 'fp16' as const },
      { weightMasks: linearRoles(spec), attention: 'explicit' as const },
    ]) {
      const full = await createRunner(spec, { ...base, output: 'logits' });
      const expected = await full.run(batch, masks);
      await full.release();
      const got = await composedBlocks(spec, [1, 3], { ...base, output: 'logits' }, batch, masks);
      const diff = maxAbsDiff(got, expected);
      assert.ok(diff <= 1e-5, `${JSON.stringify(base.dtype ?? base.attention)}: max abs diff ${diff}`);
    }
  });
});

describe('a block graph holds only its own weights', () => {
  const spec = specOf(cases[1], 320);
  const initializers = async (layers: [number, number], output: 'hidden' | 'nll' = 'hidden') => {
    const graph = buildDecoderGraph(spec, await loadWeights(spec), {
      output,
      layers,
      weightMasks: linearRoles(spec),
    });
    const proto = onnx.ModelProto.decode(graph.model);
    const weights = proto
      .graph!.initializer!.map((t) => t.name!)
      .filter((n) => spec.tensors.has(n))
      .sort();
    const maskInputs = proto
      .graph!.input!.map((v) => v.name!)
      .filter((n) => n.startsWith('mask.'))
      .sort();
    const inputs = proto.graph!.input!.map((v) => v.name!).filter((n) => !n.startsWith('mask.'));
    // Every initializer feeds a node: ONNX Runtime warns on stderr about each one that does not.
    const used = new Set(proto.graph!.node!.flatMap((n) => n.input ?? []));
    const unused = proto.graph!.initializer!.map((t) => t.name!).filter((n) => !used.has(n));
    assert.deepEqual(unused, [], `unused initializers in block [${layers}]`);
    return { weights, maskInputs, inputs, outputs: proto.graph!.output!.map((v) => v.name!) };
  };
  const rolesOf = (prefix: string) => [...spec.tensors.keys()].filter((r) => r.startsWith(prefix)).sort();

  test('a middle block: one layer, hidden in, hidden out', async () => {
    const g = await initializers([2, 3]);
    assert.deepEqual(g.weights, rolesOf('layers.2.'));
    assert.deepEqual(
      g.maskInputs,
      linearRoles(spec)
        .filter((r) => r.startsWith('layers.2.'))
        .map((r) => `mask.${r}`)
        .sort(),
    );
    assert.deepEqual(g.inputs.sort(), ['head_mask', 'hidden_in']);
    assert.deepEqual(g.outputs, ['hidden']);
  });

  test('the first block has the embedding, the last the final norm and head', async () => {
    const first = await initializers([0, 1]);
    assert.deepEqual(first.weights, ['embed.tokens', ...rolesOf('layers.0.')].sort());
    assert.deepEqual(first.inputs.sort(), ['head_mask', 'input_ids']);
    const last = await initializers([3, 4], 'nll');
    assert.deepEqual(last.weights, ['final_norm.weight', 'lm_head.weight', ...rolesOf('layers.3.')].sort());
    assert.deepEqual(last.inputs.sort(), ['head_mask', 'hidden_in', 'targets']);
  });

  test('one-line errors for ranges, outputs and captured layers that do not fit', async () => {
    const w = await loadWeights(spec);
    const build = (o: Parameters<typeof buildDecoderGraph>[2]) => () => buildDecoderGraph(spec, w, o);
    assert.throws(build({ output: 'hidden', layers: [2, 2] }), /layer range \[2, 2\) is not inside/);
    assert.throws(build({ output: 'hidden', layers: [0, 5] }), /not inside the model's 4 layers/);
    assert.throws(build({ output: 'nll', layers: [0, 2] }), /outputs 'hidden', not 'nll'/);
    assert.throws(build({ output: 'hidden' }), /output 'hidden' needs a block/);
    assert.throws(
      build({ output: 'hidden', layers: [1, 2], capture: { layers: [2], kind: 'sqnorm' } }),
      /captured layer 2 is outside the graph's layers \[1, 2\)/,
    );
    const runner = await createRunner(spec, { output: 'hidden', layers: [1, 2] });
    await assert.rejects(
      runner.run({ batch: 1, seq: 3, ids: new BigInt64Array(3) }),
      /needs hidden states \[1, 3, 32\], got none/,
    );
    await runner.release();
  });
});

/** Reference statistics Σ_t x_j² or Σ_t x xᵀ per (layer, input), over each row's real tokens. */
function referenceStats(
  ref: ReferenceWeights,
  rows: number[][],
  headRows: number[][],
  kind: 'sqnorm' | 'gram',
): Map<string, Float64Array> {
  const sums = new Map<string, Float64Array>();
  for (const tokens of rows) {
    referenceForward(ref, tokens, {
      rotary: 'half',
      headMask: headRows,
      onLinearInput: (layer, input: LinearInput, _t, x) => {
        const name = `stats.${layer}.${input}`;
        const n = x.length;
        let acc = sums.get(name);
        if (!acc) {
          acc = new Float64Array(kind === 'gram' ? n * n : n);
          sums.set(name, acc);
        }
        if (kind === 'sqnorm') for (let j = 0; j < n; j++) acc[j] += x[j] * x[j];
        else for (let j = 0; j < n; j++) for (let k = 0; k < n; k++) acc[j * n + k] += x[j] * x[k];
      },
    });
  }
  return sums;
}

/** Reference weights with the weight masks applied (masked weights are zero). */
async function maskedReferenceWeights(
  spec: ModelSpec,
  weightMasks: Map<string, Uint8Array>,
): Promise<ReferenceWeights> {
  const w = new Map<string, Float32Array>();
  for (const [role, t] of spec.tensors) {
    const data = await t.load();
    const m = weightMasks.get(role);
    if (m) for (let i = 0; i < data.length; i++) if (!m[i]) data[i] = 0;
    w.set(role, data);
  }
  return { ...spec.config, get: (r) => w.get(r) };
}

/** Largest |got − expected| relative to the largest |expected| of that statistic. */
function relativeError(got: ArrayLike<number>, expected: ArrayLike<number>): number {
  let scale = 0;
  for (let i = 0; i < expected.length; i++) scale = Math.max(scale, Math.abs(expected[i]));
  return maxAbsDiff(got, expected) / scale;
}

describe('captured statistics equal the reference forward', () => {
  for (const kind of ['sqnorm', 'gram'] as const) {
    for (const [i, c] of cases.entries()) {
      test(`${kind}, ${c.name}, head and weight masks, a padded row`, async () => {
        const spec = specOf(c, 600 + i);
        const masks = someMasks(spec, 700 + i);
        const batch = paddedBatch(spec.config.vocabSize, 800 + i);
        const expected = referenceStats(
          await maskedReferenceWeights(spec, masks.weightMasks),
          batch.rows,
          masks.headRows,
          kind,
        );
        const base = { weightMasks: linearRoles(spec), vocabChunk: c.vocabChunk };
        // The whole graph capturing every layer, and blocks [0,1) → [1,3) (capturing) → [3,4) (capturing).
        const full = await createRunner(spec, {
          ...base,
          output: 'nll',
          capture: { layers: [0, 1, 2, 3], kind },
        });
        const whole = await runBlock(full, [batch], { masks });
        await full.release();
        const first = await createRunner(spec, { ...base, output: 'hidden', layers: [0, 1] });
        const h1 = await runBlock(first, [batch], { masks });
        await first.release();
        assert.equal(h1.stats.sums.size, 0);
        const mid = await createRunner(spec, {
          ...base,
          output: 'hidden',
          layers: [1, 3],
          capture: { layers: [1, 2], kind },
        });
        const h3 = await runBlock(mid, [batch], { masks, hidden: h1.hidden });
        await mid.release();
        const last = await createRunner(spec, {
          ...base,
          output: 'nll',
          layers: [3, 4],
          capture: { layers: [3], kind },
        });
        const tail = await runBlock(last, [batch], { masks, hidden: h3.hidden });
        await last.release();

        assert.equal(whole.stats.tokens, 11 + 7);
        assert.equal(whole.stats.kind, kind);
        const blockSums = new Map([...h3.stats.sums, ...tail.stats.sums]);
        assert.equal(whole.stats.sums.size, 4 * CAPTURE_POINTS.length);
        assert.equal(blockSums.size, 3 * CAPTURE_POINTS.length);
        for (let layer = 0; layer < LAYERS; layer++) {
          for (const point of CAPTURE_POINTS as readonly CapturePoint[]) {
            const name = statsName(layer, point);
            const want = expected.get(name)!;
            const err = relativeError(whole.stats.sums.get(name)!, want);
            assert.ok(err <= 1e-4, `${name}: relative error ${err}`);
            if (layer > 0) {
              const errBlock = relativeError(blockSums.get(name)!, want);
              assert.ok(errBlock <= 1e-4, `${name} (blocks): relative error ${errBlock}`);
            }
          }
        }
        // The head mask zeroes dropped heads' columns of o_in exactly.
        const hd = spec.config.headDim;
        const o0 = whole.stats.sums.get(statsName(0, 'o_in'))!;
        const width = spec.config.headsPerLayer[0] * hd;
        for (let j = 0; j < hd; j++) {
          assert.equal(kind === 'gram' ? o0[j * width + j] : o0[j], 0, 'head 0 of layer 0 is masked');
        }
      });
    }
  }

  test('padding counts only through token_weight: without it every position counts', async () => {
    const spec = specOf(cases[0], 900);
    const batch = paddedBatch(spec.config.vocabSize, 901);
    const runner = await createRunner(spec, { output: 'nll', capture: { layers: [0], kind: 'sqnorm' } });
    const withValid = await runBlock(runner, [batch]);
    const everyPosition = await runBlock(runner, [{ ...batch, valid: undefined }]);
    const explicit = await runBlock(runner, [
      { ...batch, valid: undefined, tokenWeight: Float32Array.from(batch.valid!) },
    ]);
    await runner.release();
    assert.equal(withValid.stats.tokens, 18);
    assert.equal(everyPosition.stats.tokens, 22);
    const name = statsName(0, 'attn_in');
    assert.deepEqual(explicit.stats.sums.get(name), withValid.stats.sums.get(name));
    assert.ok(maxAbsDiff(everyPosition.stats.sums.get(name)!, withValid.stats.sums.get(name)!) > 1e-3);
  });
});
