/**
 * Encoder-decoder block graphs and activation capture (graph/encdec.ts), through the runner and the descriptor:
 * - block runners chained over both stacks (encoder blocks hand on their residual stream, the block ending the
 *   encoder hands on the final encoder output, decoder blocks read it as encoderHidden) end in the reference's
 *   logits, with heads masked in each stack, a padded source row, and a block spanning the stacks' boundary;
 *   each block loads only the tensors blockSpec gives it;
 * - captured statistics: attn_in of the first encoder and first decoder layer and cross_kv_in of every decoder
 *   layer equal sums computed here from the weights and the reference's encoder output (padding and ignored
 *   targets weighted 0); every point's width is the input width of the roles the descriptor says read it; gram
 *   diagonals equal sqnorms; a block's statistics equal the whole graph's.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { archOf, headMaskShape } from '../../src/arch/registry.js';
import { type CandidateMasks, createRunner, IGNORE_INDEX, type TokenBatch } from '../../src/engine/runner.js';
import type { CaptureKind } from '../../src/graph/capture.js';
import type { ModelSpec } from '../../src/model/spec.js';
import { randomT5, type T5Version } from '../helpers/t5.js';
import { t5Reference } from '../reference/t5.js';

const int64 = (rows: number[][]) => BigInt64Array.from(rows.flat().map((v) => BigInt(v)));
const src = [
  [5, 9, 13, 2, 7, 30],
  [6, 8, 3, 0, 0, 0],
];
const srcMask = src.map((r, b) => r.map((_, t) => (b === 1 && t >= 3 ? 0 : 1)));
const dec = [
  [0, 11, 12, 6, 20],
  [0, 3, 3, 9, 0],
];
const targets = [
  [11, 12, 6, 20, 1],
  [3, 3, 9, 1, IGNORE_INDEX],
];
const batch: TokenBatch = {
  batch: 2,
  seq: 6,
  ids: int64(src),
  attentionMask: int64(srcMask),
  decoderIds: int64(dec),
  decoderSeq: 5,
  targets: int64(targets),
};

function maskOf(spec: ModelSpec): Float32Array {
  const [rows, maxHeads] = headMaskShape(spec.config);
  const m = new Float32Array(rows * maxHeads).fill(1);
  for (const [r, h] of [
    [0, 1],
    [3, 2],
    [5, 0],
  ])
    m[r * maxHeads + h] = 0;
  return m;
}

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** Runs a block runner on the batch (with `extra` inputs) and releases it; returns every output. */
async function runBlock(
  spec: ModelSpec,
  layers: [number, number],
  output: 'hidden' | 'logits' | 'nll',
  extra: Partial<TokenBatch>,
  masks: CandidateMasks,
  capture?: { kind: CaptureKind },
) {
  const runner = await createRunner(spec, {
    output,
    layers,
    ...(capture ? { capture: { layers: range(layers), kind: capture.kind } } : {}),
  });
  try {
    return await runner.runAll({ ...batch, ...extra }, masks);
  } finally {
    await runner.release();
  }
}

const range = ([from, to]: [number, number]) => Array.from({ length: to - from }, (_, i) => from + i);

for (const [version, seed] of [
  ['v1.0', 41],
  ['v1.1', 42],
] as Array<[T5Version, number]>) {
  describe(`encoder-decoder block graphs, random T5 ${version}`, async () => {
    const spec = randomT5(version, seed);
    const ref = await t5Reference(spec);
    const headMask = maskOf(spec);
    const want = ref.decodeLogits(src, srcMask, dec, headMask).flatMap((r) => r.flatMap((p) => [...p]));

    it('chained over both stacks end in the reference logits (and a block may span the boundary)', async () => {
      const masks = { headMask };
      const h1 = (await runBlock(spec, [0, 1], 'hidden', {}, masks)).hidden.data;
      const enc = (await runBlock(spec, [1, 2], 'hidden', { hidden: h1 }, masks)).hidden.data;
      // The block ending the encoder hands on the final encoder output: the reference's, at real positions.
      const refEnc = ref.encode(src, srcMask, headMask);
      const D = spec.config.hiddenSize;
      for (let b = 0; b < 2; b++) {
        for (let t = 0; t < 6; t++) {
          if (srcMask[b][t])
            assert.ok(maxDiff(enc.subarray((b * 6 + t) * D, (b * 6 + t + 1) * D), refEnc[b][t]) < 1e-4);
        }
      }
      const d1 = (await runBlock(spec, [2, 3], 'hidden', { encoderHidden: enc }, masks)).hidden.data;
      assert.equal(d1.length, 2 * 5 * D);
      const logits = (await runBlock(spec, [3, 4], 'logits', { hidden: d1, encoderHidden: enc }, masks))
        .logits.data;
      assert.ok(maxDiff(logits, want) < 1e-4, 'chained blocks');
      const spanning = (await runBlock(spec, [1, 3], 'hidden', { hidden: h1 }, masks)).hidden.data;
      assert.ok(maxDiff(spanning, d1) < 1e-5, 'a block over the boundary');
    });

    it('load only their own tensors', () => {
      const roles = (layers: [number, number]) => [
        ...archOf(spec.config).blockSpec(spec, layers).tensors.keys(),
      ];
      const first = roles([0, 1]);
      assert.ok(first.includes('embed.tokens') && first.includes('rel_bias.encoder.weight'));
      assert.ok(!first.some((r) => r.startsWith('layers.1.') || r === 'encoder_norm.weight'));
      const end = roles([1, 2]);
      assert.ok(end.includes('encoder_norm.weight') && !end.includes('embed.tokens'));
      const decoder = roles([2, 3]);
      assert.ok(decoder.includes('embed.tokens') && decoder.includes('rel_bias.decoder.weight'));
      assert.ok(!decoder.includes('rel_bias.encoder.weight') && !decoder.includes('encoder_norm.weight'));
      const last = roles([3, 4]);
      assert.equal(last.includes('embed.tokens'), spec.config.tieEmbeddings);
      assert.equal(last.includes('lm_head.weight'), !spec.config.tieEmbeddings);
      assert.ok(last.includes('final_norm.weight') && !last.includes('rel_bias.encoder.weight'));
    });

    it('capture statistics at the inputs of the roles that read them, weighted by real tokens', async () => {
      const c = spec.config;
      const D = c.hiddenSize;
      const masks = { headMask };
      const all = await runBlock(spec, [0, 4], 'nll', {}, masks, { kind: 'sqnorm' });
      const gram = await runBlock(spec, [0, 4], 'nll', {}, masks, { kind: 'gram' });
      const arch = archOf(c);
      const E = c.encdec!.encoderLayers;
      let points = 0;
      for (let l = 0; l < c.numLayers; l++) {
        for (const point of arch.capturePoints) {
          const name = `stats.${l}.${point}`;
          const stat = all[name];
          const cross = point.startsWith('cross');
          assert.equal(stat === undefined, l < E && cross, name);
          if (!stat) continue;
          points++;
          // (A plain MLP has no gate: its role is listed for gated models only to read.)
          for (const role of arch.rolesOfCapturePoint(l, point).filter((r) => spec.tensors.has(r))) {
            assert.equal(stat.data.length, spec.tensors.get(role)!.shape[1], `${name} → ${role}`);
          }
          const g = gram[name].data;
          const n = stat.data.length;
          for (let j = 0; j < n; j++)
            assert.ok(Math.abs(g[j * n + j] - stat.data[j]) <= 1e-4 * (1 + stat.data[j]));
        }
      }
      assert.equal(points, 2 * 4 + 2 * 7);
      // attn_in of layer 0 and of the first decoder layer: the attention norm of the embeddings, by hand.
      const emb = await spec.tensors.get('embed.tokens')!.load();
      const normed = (id: number, w: Float32Array) => {
        const x = emb.subarray(id * D, (id + 1) * D);
        let ms = 0;
        for (const v of x) ms += v * v;
        const r = 1 / Math.sqrt(ms / D + c.normEps);
        return Array.from(x, (v, j) => v * r * w[j]);
      };
      const sqnormOf = async (rows: number[][], weight: number[][], role: string) => {
        const w = await spec.tensors.get(role)!.load();
        const out = new Float64Array(D);
        rows.forEach((row, b) => {
          row.forEach((id, t) => {
            if (!weight[b][t]) return;
            normed(id, w).forEach((v, j) => {
              out[j] += v * v;
            });
          });
        });
        return out;
      };
      const relClose = (a: ArrayLike<number>, b: ArrayLike<number>) => {
        for (let j = 0; j < a.length; j++) assert.ok(Math.abs(a[j] - b[j]) <= 1e-4 * (1 + Math.abs(b[j])));
      };
      relClose(all['stats.0.attn_in'].data, await sqnormOf(src, srcMask, 'layers.0.attn_norm.weight'));
      const realTargets = targets.map((r) => r.map((t) => (t === IGNORE_INDEX ? 0 : 1)));
      relClose(
        all[`stats.${E}.attn_in`].data,
        await sqnormOf(dec, realTargets, `layers.${E}.attn_norm.weight`),
      );
      // cross_kv_in: the final encoder output at real source positions, in every decoder layer.
      const refEnc = ref.encode(src, srcMask, headMask);
      const kv = new Float64Array(D);
      const kvGram = new Float64Array(D * D);
      refEnc.forEach((row, b) => {
        row.forEach((x, t) => {
          if (!srcMask[b][t]) return;
          for (let i = 0; i < D; i++) {
            kv[i] += x[i] * x[i];
            for (let j = 0; j < D; j++) kvGram[i * D + j] += x[i] * x[j];
          }
        });
      });
      for (let l = E; l < c.numLayers; l++) {
        relClose(all[`stats.${l}.cross_kv_in`].data, kv);
        relClose(gram[`stats.${l}.cross_kv_in`].data, kvGram);
      }
      // A block's statistics are the whole graph's: decoder block [3, 4) fed the chained hidden states.
      const enc = (await runBlock(spec, [0, 2], 'hidden', {}, masks)).hidden.data;
      const d1 = (await runBlock(spec, [2, 3], 'hidden', { encoderHidden: enc }, masks)).hidden.data;
      const last = await runBlock(spec, [3, 4], 'nll', { hidden: d1, encoderHidden: enc }, masks, {
        kind: 'sqnorm',
      });
      for (const point of arch.capturePoints)
        relClose(last[`stats.3.${point}`].data, all[`stats.3.${point}`].data);
    });
  });
}
