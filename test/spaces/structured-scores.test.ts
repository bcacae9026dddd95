/**
 * Structured scores (src/spaces/structured/scores.ts) against a float64 reference computed from the definitions
 * on the plain-TypeScript LLaMA forward (test/reference/llama.ts), on a tiny random GQA model and calibration
 * batches with a padded row:
 * - channel j of layer i = ‖X_j‖₂ · ‖W_down[:, j]‖₂ (X the input of down), head h = ‖X_h‖_F · ‖W_o[:, cols(h)]‖_F;
 * - block influence 1 − mean_t cos(x_in, x_out) of each layer, attention block and MLP block;
 * - FLAP's fluctuation: var_t(X_j) · ‖W_down[:, j]‖₂² per channel, Σ over the head's columns of o per head
 *   (sample variance over the real tokens, from the tokens kept whole);
 * - a layer whose o and down weights are zero has block influence 0 (its blocks add nothing), the others not;
 * - on a random BERT classifier (post-norm: the stream leaving a block is after its LayerNorm), block influence
 *   equals test/reference/bert.ts's on a right-padded batch (padding excluded);
 * - orders: descending score, ties by index; keptByScore: the best, ascending.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import type { TokenBatch } from '../../src/engine/runner.js';
import { batches, makeWindows } from '../../src/metrics/perplexity.js';
import { loadModelSpec } from '../../src/model/load.js';
import { randomLlamaSpec } from '../../src/model/random.js';
import { type ModelSpec, memoryTensor } from '../../src/model/spec.js';
import { keptByScore, orders, structuredScores } from '../../src/spaces/structured/scores.js';
import { createRng } from '../../src/util/rng.js';
import { tempDir } from '../checkpoint/helpers.js';
import { paddedEncoderBatch, rowsOf, weightsOf } from '../helpers/blocks.js';
import { writeRandomEncoder } from '../helpers/encoders.js';
import { referenceEncoderForward } from '../reference/bert.js';
import { type ReferenceWeights, referenceForward } from '../reference/llama.js';

const tmp = tempDir('geneprune-structured-scores-');
after(tmp.cleanup);

const cos = (a: Float64Array, b: Float64Array): number => {
  let ab = 0;
  let aa = 0;
  let bb = 0;
  for (let i = 0; i < a.length; i++) {
    ab += a[i] * b[i];
    aa += a[i] * a[i];
    bb += b[i] * b[i];
  }
  return ab / Math.sqrt(aa * bb);
};

/** The scores by their definitions, in float64, from the reference forward over every row. */
function referenceScores(spec: ModelSpec, w: Map<string, Float32Array>, rows: number[][]) {
  const c = spec.config;
  const L = c.numLayers;
  const D = c.hiddenSize;
  const hd = c.headDim;
  const down = Array.from({ length: L }, () => new Float64Array(c.intermediateSize));
  const oIn = Array.from({ length: L }, (_, i) => new Float64Array(c.headsPerLayer[i] * hd));
  // Every token's down and o input, for the variances.
  const seen = {
    down_in: Array.from({ length: L }, () => [] as Float64Array[]),
    o_in: Array.from({ length: L }, () => [] as Float64Array[]),
  };
  const cosSum = { layer: new Array(L).fill(0), attention: new Array(L).fill(0), mlp: new Array(L).fill(0) };
  let tokens = 0;
  const ref: ReferenceWeights = { ...c, get: (r) => w.get(r) };
  for (const row of rows) {
    tokens += row.length;
    const attnIn: Float64Array[][] = [];
    const mlpIn: Float64Array[][] = [];
    referenceForward(ref, row, {
      rotary: 'half',
      onLinearInput: (l, point, _t, x) => {
        const acc = point === 'down_in' ? down[l] : point === 'o_in' ? oIn[l] : undefined;
        if (acc) for (let j = 0; j < x.length; j++) acc[j] += x[j] * x[j];
        if (point === 'down_in' || point === 'o_in') seen[point][l].push(Float64Array.from(x));
      },
      onBlockInput: (l, block, xs) => {
        (block === 'attn' ? attnIn : mlpIn)[l] = xs;
      },
      onLayerOutput: (l, xs) => {
        for (let t = 0; t < xs.length; t++) {
          cosSum.attention[l] += cos(attnIn[l][t], mlpIn[l][t]);
          cosSum.mlp[l] += cos(mlpIn[l][t], xs[t]);
          cosSum.layer[l] += cos(attnIn[l][t], xs[t]);
        }
      },
    });
  }
  const columnNorm = (m: Float32Array, cols: number, j: number): number => {
    let s = 0;
    for (let r = 0; r < D; r++) s += m[r * cols + j] ** 2;
    return s;
  };
  const channels = down.map((x, l) =>
    x.map((v, j) => Math.sqrt(v) * Math.sqrt(columnNorm(w.get(`layers.${l}.mlp.down.weight`)!, x.length, j))),
  );
  const heads = oIn.map((x, l) =>
    Float64Array.from({ length: c.headsPerLayer[l] }, (_, h) => {
      const o = w.get(`layers.${l}.attn.o.weight`)!;
      let xs = 0;
      let ws = 0;
      for (let d = h * hd; d < (h + 1) * hd; d++) {
        xs += x[d];
        ws += columnNorm(o, x.length, d);
      }
      return Math.sqrt(xs) * Math.sqrt(ws);
    }),
  );
  const bi = (s: number[]) => s.map((v) => 1 - v / tokens);
  /** Two-pass sample variance of each column over the tokens seen. */
  const variance = (xs: Float64Array[]): Float64Array =>
    xs[0].map((_, j) => {
      const mean = xs.reduce((a, x) => a + x[j], 0) / xs.length;
      return xs.reduce((a, x) => a + (x[j] - mean) ** 2, 0) / (xs.length - 1);
    });
  const fluctuation = {
    channels: seen.down_in.map((xs, l) =>
      variance(xs).map((v, j) => v * columnNorm(w.get(`layers.${l}.mlp.down.weight`)!, xs[0].length, j)),
    ),
    heads: seen.o_in.map((xs, l) => {
      const f = variance(xs).map(
        (v, d) => v * columnNorm(w.get(`layers.${l}.attn.o.weight`)!, xs[0].length, d),
      );
      return Float64Array.from({ length: c.headsPerLayer[l] }, (_, h) =>
        f.subarray(h * hd, (h + 1) * hd).reduce((a, b) => a + b, 0),
      );
    }),
  };
  return {
    channels,
    heads,
    influence: { layer: bi(cosSum.layer), attention: bi(cosSum.attention), mlp: bi(cosSum.mlp) },
    tokens,
    fluctuation,
  };
}

function assertClose(got: ArrayLike<number>, want: ArrayLike<number>, tol: number, what: string): void {
  assert.equal(got.length, want.length, what);
  let scale = 0;
  for (let i = 0; i < want.length; i++) scale = Math.max(scale, Math.abs(want[i]));
  for (let i = 0; i < want.length; i++) {
    assert.ok(Math.abs(got[i] - want[i]) <= tol * scale, `${what}[${i}]: ${got[i]} vs ${want[i]}`);
  }
}

function tinyModel(seed: number): ModelSpec {
  return randomLlamaSpec({
    hiddenSize: 32,
    numLayers: 3,
    numHeads: 4,
    numKvHeads: 2,
    intermediateSize: 40,
    vocabSize: 41,
    maxPositions: 32,
    seed,
    scale: 3,
  });
}

function calibration(seed: number): TokenBatch[] {
  const rng = createRng(seed);
  const stream = Array.from({ length: 70 }, () => rng.nextInt(41));
  return [...batches(makeWindows(stream, 16), 3)]; // 5 windows: batches of 3 and 2, the last row padded
}

describe('structured scores', () => {
  test('equal the float64 reference of their definitions on a tiny random model', async () => {
    const spec = tinyModel(91);
    const calib = calibration(92);
    assert.ok(calib.at(-1)?.valid?.includes(0));
    const got = await structuredScores(spec, calib);
    const want = referenceScores(spec, await weightsOf(spec), rowsOf(calib));
    assert.equal(got.tokens, want.tokens);
    for (let l = 0; l < 3; l++) {
      assertClose(got.channels[l], want.channels[l], 1e-4, `layer ${l} channels`);
      assertClose(got.heads[l], want.heads[l], 1e-4, `layer ${l} heads`);
      assertClose(
        got.fluctuation!.channels[l],
        want.fluctuation.channels[l],
        1e-4,
        `layer ${l} channel fluctuation`,
      );
      assertClose(got.fluctuation!.heads[l], want.fluctuation.heads[l], 1e-4, `layer ${l} head fluctuation`);
    }
    for (const block of ['layer', 'attention', 'mlp'] as const) {
      assert.ok(
        want.influence[block].every((v) => v > 0.01),
        `${block}: the model's blocks change the stream`,
      );
      assertClose(got.influence[block], want.influence[block], 1e-4, `${block} influence`);
    }
  });

  test('a layer whose blocks add nothing has block influence 0', async () => {
    const base = tinyModel(93);
    const tensors = new Map(base.tensors);
    for (const role of ['layers.1.attn.o.weight', 'layers.1.mlp.down.weight']) {
      const shape = base.tensors.get(role)!.shape;
      tensors.set(role, memoryTensor(shape, new Float32Array(shape[0] * shape[1])));
    }
    const got = await structuredScores({ ...base, tensors }, calibration(94));
    for (const block of ['layer', 'attention', 'mlp'] as const) {
      assert.ok(Math.abs(got.influence[block][1]) < 1e-6, `${block}: ${got.influence[block][1]}`);
      assert.ok(got.influence[block][0] > 0.01 && got.influence[block][2] > 0.01, block);
    }
    // Zero weights score zero: every channel and head of layer 1.
    assert.ok(got.channels[1].every((v) => v === 0) && got.heads[1].every((v) => v === 0));
  });
});

describe('structured scores of an encoder', () => {
  test('block influence equals the BERT reference over real tokens', async () => {
    const ckpt = await writeRandomEncoder(tmp.dir, 'bert-cls', {
      modelType: 'bert',
      labels: 3,
      typeVocab: 2,
      layers: 3,
      seed: 95,
    });
    const spec = await loadModelSpec(ckpt.dir);
    const c = spec.config;
    const rng = createRng(96);
    const lengths = [7, 4, 6];
    const seq = 7;
    const pad = c.padTokenId ?? 0;
    const rows = lengths.map((n) =>
      Array.from({ length: n }, () => {
        let id = pad;
        while (id === pad) id = rng.nextInt(c.vocabSize);
        return id;
      }),
    );
    const batch = paddedEncoderBatch(
      rows.map((ids) => ({ ids })),
      seq,
      pad,
    );
    const got = await structuredScores(spec, [batch]);
    assert.equal(got.tokens, 17);

    // The stream entering layer l is its attn_in, after the attention block its mlp_in, leaving it the next
    // layer's attn_in (the last hidden state after the last layer).
    const L = c.numLayers;
    const sums = { layer: new Array(L).fill(0), attention: new Array(L).fill(0), mlp: new Array(L).fill(0) };
    for (const ids of rows) {
      const streams: Float64Array[][][] = Array.from({ length: L + 1 }, () => [[], []]);
      const out = referenceEncoderForward(
        ckpt.config,
        (name) => ckpt.tensors.get(name),
        { inputIds: ids },
        {
          onLinearInput: (l, input, t, x) => {
            if (input === 'attn_in') streams[l][0][t] = Float64Array.from(x);
            if (input === 'mlp_in') streams[l][1][t] = Float64Array.from(x);
          },
        },
      );
      streams[L][0] = out.lastHiddenState;
      for (let l = 0; l < L; l++) {
        for (let t = 0; t < ids.length; t++) {
          const [xin, mid, xout] = [streams[l][0][t], streams[l][1][t], streams[l + 1][0][t]];
          sums.attention[l] += cos(xin, mid);
          sums.mlp[l] += cos(mid, xout);
          sums.layer[l] += cos(xin, xout);
        }
      }
    }
    for (const block of ['layer', 'attention', 'mlp'] as const) {
      const want = sums[block].map((v) => 1 - v / 17);
      assert.ok(
        want.every((v) => v > 0.01),
        block,
      );
      assertClose(got.influence[block], want, 1e-4, `${block} influence`);
    }
  });
});

describe('orders', () => {
  test('rank by descending score, ties by index; keptByScore keeps the best, ascending', () => {
    const o = orders({
      channels: [Float64Array.from([0.5, 2, 0.5, 3, 1]), new Float64Array(0)],
      heads: [Float64Array.from([1, 1, 1]), Float64Array.from([0, 7])],
    });
    assert.deepEqual(o.channels, [[3, 1, 4, 0, 2], []]);
    assert.deepEqual(o.heads, [
      [0, 1, 2],
      [1, 0],
    ]);
    assert.deepEqual(keptByScore(o.channels[0], 3), [1, 3, 4]);
    assert.deepEqual(keptByScore(o.channels[0], 0), []);
    assert.throws(() => keptByScore(o.channels[0], 6));
  });
});
