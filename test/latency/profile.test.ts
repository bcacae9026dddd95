/**
 * The latency model's arithmetic on a written profile, against values computed by hand: linear interpolation
 * between measured levels, 0 for blocks that do not run, the KV-head correction, the layer scale, both base
 * methods, and the predicted speedup; the profile's JSON round trip and its one-line refusals.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { GenepruneError } from '../../src/errors.js';
import {
  interpolate,
  type LatencyProfile,
  layerShapesOfConfig,
  monotoneFit,
  planSeconds,
  predictedSpeedup,
  predictSeconds,
  profileShapeOf,
  readLatencyProfile,
  withBaseMethod,
  writeLatencyProfile,
} from '../../src/latency/profile.js';
import { fullPlan, type LayerShapes, layerShapes } from '../../src/masks/structured.js';
import { randomLlamaSpec } from '../../src/model/random.js';

// Two layers, 4 query heads over 2 KV heads, MLP width 128.
const spec = randomLlamaSpec({
  hiddenSize: 16,
  numLayers: 2,
  numHeads: 4,
  numKvHeads: 2,
  intermediateSize: 128,
  vocabSize: 32,
  maxPositions: 16,
  seed: 1,
});
const config = spec.config;

function writtenProfile(): LatencyProfile {
  return {
    format: 'geneprune-latency-profile',
    version: 1,
    geneprune: '0.1.0',
    measuredAt: '2026-12-07T20:00:00.000Z',
    device: 'cpu',
    threads: 2,
    dtype: 'fp32',
    batch: 4,
    seq: 256,
    runs: 5,
    warmup: 1,
    statistic: 'median',
    shape: profileShapeOf(config),
    prefill: {
      base: 0.05,
      baseMethod: 'difference',
      layerScale: 1,
      attention: [
        { heads: 0, kvHeads: 0, seconds: 0 },
        { heads: 2, kvHeads: 2, seconds: 0.01 },
        { heads: 4, kvHeads: 2, seconds: 0.016 },
      ],
      kvHeadSeconds: 0.001,
      mlp: [
        { width: 0, seconds: 0 },
        { width: 64, seconds: 0.004 },
        { width: 128, seconds: 0.01 },
      ],
      // Dense: 2 layers × (0.016 + 0.010) = 0.052 of layers; the forward took 0.102 (base 0.05 by difference).
      denseSeconds: 0.102,
      denseLayerSeconds: 0.052,
      directBase: 0.024,
    },
  };
}

const shapes = (
  s: Partial<LayerShapes> & Pick<LayerShapes, 'heads' | 'kvHeads' | 'widths'>,
): LayerShapes => ({
  attentionRuns: s.heads.map(() => true),
  mlpRuns: s.widths.map(() => true),
  ...s,
});

const close = (a: number, b: number, what: string) =>
  assert.ok(Math.abs(a - b) < 1e-12, `${what}: ${a} vs ${b}`);

describe('latency model arithmetic', () => {
  test('monotoneFit pools adjacent violators into their mean', () => {
    assert.deepEqual(monotoneFit([1, 3, 2, 4]), [1, 2.5, 2.5, 4]);
    assert.deepEqual(monotoneFit([0, 5, 1, 1, 6]), [0, 7 / 3, 7 / 3, 7 / 3, 6]);
    assert.deepEqual(monotoneFit([0, 1, 2]), [0, 1, 2]);
    assert.deepEqual(monotoneFit([3, 2, 1]), [2, 2, 2]);
  });

  test('interpolate: between levels, at levels, past the ends', () => {
    close(interpolate([0, 2, 4], [0, 10, 16], 3), 13, 'between');
    close(interpolate([0, 2, 4], [0, 10, 16], 2), 10, 'at a level');
    close(interpolate([0, 2, 4], [0, 10, 16], 5), 19, 'past the last (last segment extended)');
    close(interpolate([0, 2, 4], [0, 10, 16], 1), 5, 'first segment');
  });

  test('predictSeconds: base + Σ attention(heads) + Σ mlp(width), interpolated', () => {
    const p = writtenProfile();
    // Layer 0: attention(3) = 0.010 + ½·0.006 = 0.013 (KV 2 as calibrated), mlp(96) = 0.004 + ½·0.006 = 0.007.
    // Layer 1: attention(1) = ½·0.010 = 0.005 (calibrated KV at 1 head: 1), mlp(128) = 0.010.
    const s = shapes({ heads: [3, 1], kvHeads: [2, 1], widths: [96, 128] });
    close(predictSeconds(p, s), 0.05 + 0.013 + 0.007 + 0.005 + 0.01, 'sum');
  });

  test('a skipped block costs 0 whatever its heads or width say; 0 heads / 0 width cost 0', () => {
    const p = writtenProfile();
    const skipped = shapes({
      heads: [4, 4],
      kvHeads: [2, 2],
      widths: [128, 128],
      attentionRuns: [false, true],
      mlpRuns: [true, false],
    });
    close(predictSeconds(p, skipped), 0.05 + 0.01 + 0.016, 'skipped blocks');
    close(
      predictSeconds(p, shapes({ heads: [0, 0], kvHeads: [0, 0], widths: [0, 0] })),
      0.05,
      'nothing left',
    );
  });

  test('KV heads other than the calibrated keep are corrected by kvHeadSeconds each', () => {
    const p = writtenProfile();
    // 3 heads over 1 KV head (a grouped keep): 0.013 − 1 × 0.001.
    const s = shapes({ heads: [3, 0], kvHeads: [1, 0], widths: [0, 0] });
    close(predictSeconds(p, s), 0.05 + 0.012, 'one KV head fewer');
  });

  test('layerScale multiplies the layers, not the base; both base methods price the dense model at its forward', () => {
    const p = writtenProfile();
    const dense = layerShapesOfConfig(config);
    close(predictSeconds(p, dense), 0.102, 'difference');
    const direct = withBaseMethod(p, 'direct');
    close(direct.prefill.base, 0.024, 'direct base');
    close(direct.prefill.layerScale, (0.102 - 0.024) / 0.052, 'layer scale');
    close(predictSeconds(direct, dense), 0.102, 'direct, dense');
    // A model with half the MLP width: layers 2 × (0.016 + 0.004) = 0.040.
    const half = shapes({ heads: [4, 4], kvHeads: [2, 2], widths: [64, 64] });
    close(predictSeconds(direct, half), 0.024 + 1.5 * 0.04, 'direct, half width');
    close(predictSeconds(withBaseMethod(direct, 'difference'), half), 0.05 + 0.04, 'back to difference');
    close(predictedSpeedup(p, dense, half), 0.102 / 0.09, 'speedup');
  });

  test('a model with layers removed is priced as the dense layer count with empty layers', () => {
    const p = writtenProfile();
    const one = randomLlamaSpec({ ...shapeArgs, numLayers: 1, seed: 1 }).config;
    const padded = layerShapesOfConfig(one, 2);
    assert.deepEqual(padded.heads, [4, 0]);
    assert.deepEqual(padded.mlpRuns, [true, false]);
    close(predictSeconds(p, padded), 0.05 + 0.016 + 0.01, 'one layer left');
  });

  test('the layer shapes of the full plan are those of the config; a plan is priced by its layer shapes', () => {
    assert.deepEqual(layerShapes(config, fullPlan(config)), layerShapesOfConfig(config));
    const p = writtenProfile();
    // Layer 0 keeps heads 0 and 3 (one in each KV group: KV 2) and 64 channels; layer 1's attention is skipped
    // and it keeps 128 channels: 0.05 + 0.010 + 0.004 + 0.010.
    const plan = fullPlan(config);
    plan.heads[0] = [0, 3];
    plan.channels[0] = plan.channels[0].slice(0, 64);
    plan.skipAttention[1] = true;
    close(planSeconds(p, config, plan), 0.05 + 0.01 + 0.004 + 0.01, 'plan');
    // Heads 0 and 1 read the same KV head: one KV head fewer than the calibrated keep of 2 heads.
    plan.heads[0] = [0, 1];
    close(planSeconds(p, config, plan), 0.05 + 0.009 + 0.004 + 0.01, 'grouped plan');
  });
});

describe('latency profile files', () => {
  const dir = mkdtempSync(join(tmpdir(), 'geneprune-latency-profile-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('round trip', async () => {
    const path = join(dir, 'latency.json');
    await writeLatencyProfile(path, writtenProfile());
    assert.deepEqual(await readLatencyProfile(path, { config, device: 'cpu', threads: 2 }), writtenProfile());
  });

  test('a profile of another model shape, device or thread count is refused in one line naming the file', async () => {
    const path = join(dir, 'other.json');
    await writeLatencyProfile(path, writtenProfile());
    const wider = randomLlamaSpec({ ...shapeArgs, hiddenSize: 32, seed: 1 }).config;
    const refused = async (p: Promise<unknown>, pattern: RegExp) => {
      await assert.rejects(p, (e: unknown) => {
        assert.ok(e instanceof GenepruneError);
        assert.equal(e.where, path);
        assert.match(e.oneLine(), pattern);
        assert.ok(!e.oneLine().includes('\n'));
        return true;
      });
    };
    await refused(
      readLatencyProfile(path, { config: wider }),
      /another model shape \(hiddenSize 16, this model has 32\)/,
    );
    await refused(
      readLatencyProfile(path, { config, device: 'cuda' }),
      /measured with device "cpu", this run uses "cuda"/,
    );
    await refused(readLatencyProfile(path, { config, threads: 1 }), /threads 2, this run uses 1/);
  });

  test('malformed files are refused naming the file', async () => {
    const cases: Array<[string, string, RegExp]> = [
      ['not-json.json', '{', /not valid JSON/],
      ['format.json', JSON.stringify({ ...writtenProfile(), format: 'x' }), /format must be/],
      [
        'descending.json',
        JSON.stringify({
          ...writtenProfile(),
          prefill: { ...writtenProfile().prefill, mlp: [...writtenProfile().prefill.mlp].reverse() },
        }),
        /prefill\.mlp levels must ascend in width/,
      ],
    ];
    for (const [name, text, pattern] of cases) {
      const path = join(dir, name);
      writeFileSync(path, text);
      await assert.rejects(readLatencyProfile(path), (e: unknown) => {
        assert.ok(e instanceof GenepruneError);
        assert.equal(e.where, path);
        assert.match(e.message, pattern);
        return true;
      });
    }
    await assert.rejects(readLatencyProfile(join(dir, 'absent.json')), /cannot read the latency profile/);
  });
});

const shapeArgs = {
  hiddenSize: 16,
  numLayers: 2,
  numHeads: 4,
  numKvHeads: 2,
  intermediateSize: 128,
  vocabSize: 32,
  maxPositions: 16,
};
