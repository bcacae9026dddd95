/**
 * A tiny real calibration on a tiny random GQA model: the profile has every head level 0 … H (with the KV heads a
 * uniform keep implies) and every width level of the grid, non-negative times with the full levels positive, and
 * prices the dense model at its measured forward (the difference base makes that exact); no other timing is
 * asserted. How timed groups combine into level costs (overhead, anchor scaling, the fastest of the replicas) is
 * checked on hand-computed times. The random models of pruned shapes have the shapes asked for (parameter counts by
 * hand) and run.
 * Encoder-decoders are refused.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { GenepruneError } from '../../src/errors.js';
import {
  calibrateLatency,
  combineBlockTimes,
  randomShapeSpec,
  timePair,
} from '../../src/latency/calibrate.js';
import {
  layerShapesOfConfig,
  predictSeconds,
  validateProfile,
  withBaseMethod,
} from '../../src/latency/profile.js';
import { parameterCount } from '../../src/model/cost.js';
import { randomLlamaSpec, randomT5Spec } from '../../src/model/random.js';

const shape = {
  hiddenSize: 256,
  numLayers: 2,
  numHeads: 4,
  numKvHeads: 2,
  intermediateSize: 1024,
  vocabSize: 64,
  maxPositions: 64,
};
const spec = randomLlamaSpec({ ...shape, seed: 3 });

/** A quick real profile of the tiny model (one replica, one run). */
const tinyProfile = () =>
  calibrateLatency(spec, { batch: 1, seq: 8, threads: 1, runs: 1, warmup: 0, widthStep: 512, replicas: 1 });

describe('combineBlockTimes (how the timed groups become level costs)', () => {
  // Hand-computed: overhead 1 (median reference); anchors 11 → 10 over the overhead in every group.
  test('one replica, one group: levels less the overhead', () => {
    const r = combineBlockTimes([{ replica: 0, reference: 1, anchors: [11, 11], levels: [3, 5, 9] }], 1, 3);
    assert.equal(r.overhead, 1);
    assert.deepEqual(r.levels, [2, 4, 8]);
  });

  test('a slow level session in one replica does not move the level; the fastest replica is kept', () => {
    const r = combineBlockTimes(
      [
        { replica: 0, reference: 1, anchors: [11, 11], levels: [3, 9.5, 9] },
        { replica: 1, reference: 1, anchors: [11, 11], levels: [3, 5, 9] },
        { replica: 2, reference: 1, anchors: [11, 11], levels: [3.2, 5.1, 9] },
      ],
      3,
      3,
    );
    assert.deepEqual(r.levels, [2, 4, 8]);
  });

  test('a slow anchor session does not scale its group; a loaded group is scaled back by its anchors', () => {
    const r = combineBlockTimes(
      [
        // one anchor session 2x slow: the group's faster anchor (11) is used, so no scale
        { replica: 0, reference: 1, anchors: [21, 11], levels: [3, 5] },
        // the whole group under 2x load (anchor 21 → 20 over the overhead): levels halved back
        { replica: 0, reference: 1, anchors: [21, 21], levels: [17] },
        { replica: 1, reference: 1, anchors: [11, 11], levels: [3, 5, 9] },
      ],
      2,
      3,
    );
    assert.equal(r.overhead, 1);
    // median anchor over the three groups' anchors (11, 21, 11) − 1 = 10
    assert.deepEqual(r.levels, [2, 4, 8]);
  });

  test('a replica missing a level is an internal error, never a silent number', () => {
    assert.throws(
      () => combineBlockTimes([{ replica: 0, reference: 1, anchors: [11], levels: [3] }], 1, 2),
      /replica 0 timed 1 of 2 levels/,
    );
  });
});

describe('calibrateLatency', () => {
  test('a tiny calibration gives complete, positive tables and prices the dense model at its forward', {
    timeout: 120_000,
  }, async () => {
    const profile = await calibrateLatency(spec, {
      batch: 4,
      seq: 64,
      threads: 1,
      runs: 3,
      warmup: 1,
      widthStep: 256,
      // Load from other work only adds time: the fastest run keeps the > 0 checks below steady on a busy machine.
      statistic: 'min',
    });
    validateProfile(JSON.parse(JSON.stringify(profile)), 'profile');
    const t = profile.prefill;
    assert.deepEqual(
      t.attention.map((l) => [l.heads, l.kvHeads]),
      [
        [0, 0],
        [1, 1],
        [2, 2],
        [3, 2],
        [4, 2],
      ],
    );
    assert.deepEqual(
      t.mlp.map((l) => l.width),
      [0, 256, 512, 768, 1024],
    );
    for (const l of [...t.attention, ...t.mlp]) assert.ok(l.seconds >= 0 && Number.isFinite(l.seconds));
    for (const table of [t.attention, t.mlp]) {
      for (let i = 1; i < table.length; i++)
        assert.ok(table[i].seconds >= table[i - 1].seconds, 'non-decreasing');
      assert.ok(table.every((l) => l.measured !== undefined && Number.isFinite(l.measured)));
    }
    assert.ok(t.attention.at(-1)!.seconds > 0, 'the full attention block takes time');
    assert.ok(t.mlp.at(-1)!.seconds > 0, 'the full MLP block takes time');
    assert.ok(t.denseSeconds > 0);
    assert.equal(t.baseMethod, 'direct');
    assert.ok(Math.abs(predictSeconds(profile, layerShapesOfConfig(spec.config)) - t.denseSeconds) < 1e-9);
    const difference = withBaseMethod(profile, 'difference');
    assert.ok(Math.abs(predictSeconds(difference, layerShapesOfConfig(spec.config)) - t.denseSeconds) < 1e-9);
    assert.equal(profile.batch, 4);
    assert.equal(profile.seq, 64);
    assert.equal(profile.statistic, 'min');
    assert.equal(profile.threads, 1);
    assert.equal(profile.replicas, 3);
    assert.equal(profile.shape.hiddenSize, 256);
  });

  test('a replica count that is not a positive integer is refused', async () => {
    await assert.rejects(
      calibrateLatency(spec, { batch: 1, seq: 8, replicas: 0 }),
      (e: unknown) => e instanceof GenepruneError && /replicas must be a positive integer/.test(e.message),
    );
    const profile = { ...JSON.parse(JSON.stringify(await tinyProfile())), replicas: 'three' };
    assert.throws(() => validateProfile(profile, 'p.json'), /replicas must be a number/);
  });

  test('random models of pruned shapes have those shapes and run', async () => {
    const pruned = randomShapeSpec(spec, [
      { heads: 3, width: 256 },
      { heads: 0, width: 0 },
      { heads: 1, width: 128 },
    ]);
    const c = pruned.config;
    assert.deepEqual(c.headsPerLayer, [3, 0, 1]);
    assert.deepEqual(c.kvHeadsPerLayer, [2, 0, 1]);
    // 3 heads over 2 KV heads kept evenly: the first group keeps two.
    assert.deepEqual(c.kvHeadOfQuery?.[0], [0, 0, 1]);
    assert.equal(c.intermediateSize, 1024);
    assert.deepEqual(c.intermediatePerLayer, [256, 0, 128]);
    const D = 256;
    const hd = 64;
    const V = 64;
    const layer = (h: number, kv: number, w: number) => 2 * D + h * hd * D * 2 + kv * hd * D * 2 + 3 * w * D;
    const expected = 2 * V * D + D + layer(3, 2, 256) + layer(0, 0, 0) + layer(1, 1, 128);
    assert.equal(parameterCount(pruned), expected);
    const seconds = await timePair(pruned, spec, { dtype: 'fp32', batch: 1, seq: 16, runs: 1, warmup: 0 }, 1);
    assert.ok(seconds[0] > 0 && seconds[1] > 0);
  });

  test('encoder-decoders are refused', async () => {
    const t5 = randomT5Spec({
      hiddenSize: 16,
      headDim: 4,
      numHeads: 4,
      intermediateSize: 32,
      encoderLayers: 1,
      decoderLayers: 1,
      vocabSize: 32,
      seed: 1,
    });
    await assert.rejects(
      calibrateLatency(t5, { batch: 1, seq: 8 }),
      (e: unknown) => e instanceof GenepruneError && /prices decoder layers/.test(e.message),
    );
  });
});
