/**
 * The sequential layer walk on stories260K's real calibration text, checked by another path: layer l's Wanda
 * masks must equal those computed from the full graph's captured input norms with layers < l masked through the
 * graph's weight-mask inputs (not replaced weights, not block graphs). Recovery never raises a linear's
 * calibration reconstruction error and lowers the calibration NLL of the pruned model.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { accumulateStats, statOf } from '../../src/engine/blocks.js';
import { createRunner, type TokenBatch } from '../../src/engine/runner.js';
import { blockSpec } from '../../src/graph/blocks.js';
import { CAPTURE_POINTS, rolesOfCapturePoint } from '../../src/graph/capture.js';
import { selectPerRow, wandaScores } from '../../src/masks/select.js';
import { batches, evaluatePerplexity, makeWindows, tokenizePrefix } from '../../src/metrics/perplexity.js';
import { openModel } from '../../src/model/open.js';
import type { ModelSpec } from '../../src/model/spec.js';
import { type LinearToPrune, pruneSequentially } from '../../src/prune/sequential.js';
import { CALIB, MODEL, sharedPath, skipUnlessShared } from '../shared.js';

const wanda = (sparsity: number) => (l: LinearToPrune) =>
  selectPerRow(wandaScores(l.weight, l.rows, l.cols, l.inputSquaredNorms), l.rows, l.cols, sparsity);

async function calibration(tokenizer: Parameters<typeof tokenizePrefix>[1]) {
  const prefix = await tokenizePrefix(sharedPath(CALIB)!, tokenizer, 1025);
  const windows = makeWindows(prefix.tokens, 256, 1024, 'calib');
  return { windows, list: [...batches(windows, 2)] as TokenBatch[] };
}

describe('sequential layer-wise pruning', { skip: skipUnlessShared(MODEL, CALIB) }, () => {
  test('a block runner loads only its block: one layer, plus embedding or head at the ends', async () => {
    const { spec } = await openModel(sharedPath(MODEL)!);
    const roles = (from: number, to: number) => [...blockSpec(spec, [from, to]).tensors.keys()];
    assert.ok(roles(2, 3).every((r) => r.startsWith('layers.2.')));
    assert.ok(roles(0, 1).includes('embed.tokens'));
    assert.ok(!roles(0, 1).includes('final_norm.weight'));
    assert.ok(roles(4, 5).includes('final_norm.weight'));
    assert.equal(blockSpec(spec, [0, 5]), spec);
  });

  test('Wanda masks of every layer equal the full graph’s, with earlier layers masked through mask inputs', async () => {
    const { spec, tokenizer } = await openModel(sharedPath(MODEL)!);
    const { list } = await calibration(tokenizer);
    const result = await pruneSequentially(spec, { batches: list, select: wanda(0.5) });
    const prunable = [...result.masks.keys()];
    assert.equal(prunable.length, 5 * 7);
    const earlier = new Map<string, Uint8Array>();
    for (let l = 0; l < spec.config.numLayers; l++) {
      const runner = await createRunner(spec, {
        output: 'nll',
        weightMasks: prunable,
        capture: { layers: [l], kind: 'sqnorm' },
      });
      const stats = await accumulateStats(runner, list, { masks: { weightMasks: earlier } });
      await runner.release();
      for (const point of CAPTURE_POINTS) {
        const sq = statOf(stats, l, point)!;
        for (const role of rolesOfCapturePoint(l, point)) {
          const src = spec.tensors.get(role)!;
          const [rows, cols] = src.shape;
          const expected = wanda(0.5)({
            role,
            layer: l,
            rows,
            cols,
            weight: await src.load(),
            inputSquaredNorms: sq,
          });
          assert.deepEqual(result.masks.get(role), expected, role);
          for (let r = 0; r < rows; r++) {
            let kept = 0;
            for (let j = 0; j < cols; j++) kept += expected[r * cols + j];
            assert.equal(kept, cols / 2, `${role} row ${r}`);
          }
          earlier.set(role, expected);
        }
      }
    }
  });

  test('recovery lowers every linear’s reconstruction error and the calibration NLL', async () => {
    const { spec, tokenizer } = await openModel(sharedPath(MODEL)!);
    const { windows, list } = await calibration(tokenizer);
    const plain = await pruneSequentially(spec, { batches: list, select: wanda(0.5) });
    const recovered = await pruneSequentially(spec, { batches: list, select: wanda(0.5), recover: true });
    for (const layer of recovered.layers) {
      for (const lin of layer.linears) {
        assert.ok(
          lin.recoveredError! <= lin.maskedError!,
          `${lin.role}: ${lin.recoveredError} > ${lin.maskedError}`,
        );
      }
    }
    // The recovered model keeps exactly the masked weights' zeros.
    for (const [role, keep] of recovered.masks) {
      const w = await recovered.spec.tensors.get(role)!.load();
      for (let i = 0; i < keep.length; i++) if (!keep[i]) assert.equal(w[i], 0, role);
    }
    const nll = async (s: ModelSpec) => {
      const runner = await createRunner(s, { output: 'nll' });
      const r = await evaluatePerplexity(runner, windows, { batchSize: 2 });
      await runner.release();
      return r.perplexity;
    };
    const pPlain = await nll(plain.spec);
    const pRecovered = await nll(recovered.spec);
    assert.ok(pRecovered < pPlain, `recovered calibration ppl ${pRecovered} vs ${pPlain}`);
  });
});
