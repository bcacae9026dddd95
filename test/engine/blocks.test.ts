/**
 * Layer-wise calibration helpers (src/engine/blocks.ts):
 * - a sequential walk over one-layer blocks — capture layer l's statistics from the cached hidden states,
 *   change layer l's weights, rebuild only block l's session, hand its output to layer l+1 — captures, at every
 *   layer, what the plain-TypeScript reference forward computes on the model with layers < l changed and layers
 *   ≥ l as they were, and ends on the full graph's NLL of the changed model;
 * - on stories260K and real TinyStories text (windows of makeWindows/batches, a padded last row), the captured
 *   Σ_t X_tj² of every linear input equal the reference forward's.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { blockHidden, runBlock, statOf } from '../../src/engine/blocks.js';
import { createRunner } from '../../src/engine/runner.js';
import { CAPTURE_POINTS, rolesOfCapturePoint, statsName } from '../../src/graph/capture.js';
import { batches, makeWindows, tokenizePrefix } from '../../src/metrics/perplexity.js';
import { openModel } from '../../src/model/open.js';
import { randomLlamaSpec } from '../../src/model/random.js';
import type { ModelSpec } from '../../src/model/spec.js';
import { createRng } from '../../src/util/rng.js';
import { rowsOf, weightsOf } from '../helpers/blocks.js';
import { type ReferenceWeights, referenceForward } from '../reference/llama.js';
import { CALIB, MODEL, sharedPath, skipUnlessShared } from '../shared.js';

const asReference = (spec: ModelSpec, w: Map<string, Float32Array>): ReferenceWeights => ({
  ...spec.config,
  get: (r) => w.get(r),
});

/** Reference Σ_t x_j² per `stats.{layer}.{point}` over every row's real tokens. */
function referenceSqnorms(ref: ReferenceWeights, rows: number[][]): Map<string, Float64Array> {
  const sums = new Map<string, Float64Array>();
  for (const tokens of rows) {
    referenceForward(ref, tokens, {
      rotary: 'half',
      onLinearInput: (layer, point, _t, x) => {
        const name = statsName(layer, point);
        let acc = sums.get(name);
        if (!acc) {
          acc = new Float64Array(x.length);
          sums.set(name, acc);
        }
        for (let j = 0; j < x.length; j++) acc[j] += x[j] * x[j];
      },
    });
  }
  return sums;
}

function relativeError(got: ArrayLike<number>, expected: ArrayLike<number>): number {
  assert.equal(got.length, expected.length);
  let scale = 0;
  let worst = 0;
  for (let i = 0; i < expected.length; i++) {
    scale = Math.max(scale, Math.abs(expected[i]));
    worst = Math.max(worst, Math.abs(got[i] - expected[i]));
  }
  return worst / scale;
}

describe('a sequential walk over one-layer blocks', () => {
  test('sees the already changed layers, and ends on the changed model', async () => {
    const L = 3;
    const spec = randomLlamaSpec({
      hiddenSize: 32,
      numLayers: L,
      numHeads: 4,
      numKvHeads: 2,
      intermediateSize: 40,
      vocabSize: 41,
      maxPositions: 32,
      seed: 77,
      scale: 3,
    });
    const rng = createRng(78);
    const stream = Array.from({ length: 70 }, () => rng.nextInt(41));
    const calib = [...batches(makeWindows(stream, 16), 3)]; // 5 windows: batches of 3 and 2, the last padded
    assert.ok(calib.at(-1)!.valid.includes(0));
    const rows = rowsOf(calib);

    const weights = await weightsOf(spec);
    let hidden: Float32Array[] | undefined;
    for (let l = 0; l < L; l++) {
      // 1. Layer l's statistics from the hidden states of the already changed layers < l.
      const capture = await createRunner(spec, {
        output: l + 1 < L ? 'hidden' : 'nll',
        layers: [l, l + 1],
        capture: { layers: [l], kind: 'sqnorm' },
        weights,
      });
      const pass = await runBlock(capture, calib, { hidden });
      await capture.release();
      const expected = referenceSqnorms(asReference(spec, weights), rows);
      for (const point of CAPTURE_POINTS) {
        const err = relativeError(statOf(pass.stats, l, point)!, expected.get(statsName(l, point))!);
        assert.ok(err <= 1e-4, `layer ${l} ${point}: relative error ${err}`);
      }
      assert.equal(pass.stats.tokens, 70 - 1);
      // 2. Change layer l: zero the third of each row's weights with the smallest |W_ij|·‖X_j‖ (Wanda's score).
      for (const point of CAPTURE_POINTS) {
        const norms = statOf(pass.stats, l, point)!;
        for (const role of rolesOfCapturePoint(l, point)) {
          const [out, inn] = spec.tensors.get(role)!.shape;
          const w = Float32Array.from(weights.get(role)!);
          for (let o = 0; o < out; o++) {
            const order = Array.from({ length: inn }, (_, j) => j).sort(
              (a, b) =>
                Math.abs(w[o * inn + a]) * Math.sqrt(norms[a]) -
                Math.abs(w[o * inn + b]) * Math.sqrt(norms[b]),
            );
            for (const j of order.slice(0, Math.floor(inn / 3))) w[o * inn + j] = 0;
          }
          weights.set(role, w);
        }
      }
      // 3. Rebuild only block l on its new weights: its output feeds layer l+1.
      if (l + 1 < L) {
        const block = await createRunner(spec, { output: 'hidden', layers: [l, l + 1], weights });
        hidden = await blockHidden(block, calib, { hidden });
        await block.release();
      }
    }
    // The walk's hidden states into the last layer, through a suffix graph, give the changed full model's NLL.
    const suffix = await createRunner(spec, { output: 'nll', layers: [L - 1, L], weights });
    const full = await createRunner(spec, { output: 'nll', weights });
    for (const [b, batch] of calib.entries()) {
      const got = await suffix.run({ ...batch, hidden: hidden![b] });
      const want = await full.run(batch);
      for (let i = 0; i < want.length; i++)
        assert.ok(Math.abs(got[i] - want[i]) <= 1e-5, `batch ${b} [${i}]`);
    }
    await suffix.release();
    await full.release();
  });
});

describe('stories260K on real text', () => {
  test('captured Σ_t X_tj² of every linear input equal the reference forward', {
    skip: skipUnlessShared(MODEL, CALIB),
  }, async () => {
    const model = await openModel(sharedPath(MODEL));
    const spec = model.spec;
    const prefix = await tokenizePrefix(sharedPath(CALIB)!, model.tokenizer, 601);
    const calib = [...batches(makeWindows(prefix.tokens, 256, 600), 3)]; // rows of 256, 256, 88 tokens
    assert.equal(calib.length, 1);
    const L = spec.config.numLayers;
    const runner = await createRunner(spec, {
      output: 'nll',
      capture: { layers: Array.from({ length: L }, (_, i) => i), kind: 'sqnorm' },
    });
    const { stats } = await runBlock(runner, calib);
    await runner.release();
    assert.equal(stats.tokens, 600);
    const expected = referenceSqnorms(asReference(spec, await weightsOf(spec)), rowsOf(calib));
    for (let l = 0; l < L; l++) {
      for (const point of CAPTURE_POINTS) {
        const err = relativeError(statOf(stats, l, point)!, expected.get(statsName(l, point))!);
        assert.ok(err <= 1e-4, `layer ${l} ${point}: relative error ${err}`);
      }
    }
  });
});
