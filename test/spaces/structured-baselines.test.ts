/**
 * The no-search structured baselines (src/spaces/structured/baselines.ts) on hand-built scores and a
 * hand-computable cost — a kept MLP channel costs 1, a kept head 3 (layerShapes: skipped blocks keep nothing) —
 * over three layers of MLP widths 8, 8, 4 (width grid step 2) and 2 heads each (full cost 20 + 18 = 38). Each
 * plan is the one the definition gives, worked out by hand in the comments; it meets the budget, and the next
 * larger plan of the baseline's walk does not.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { GenepruneError } from '../../src/errors.js';
import { checkPlan, fullPlan, layerShapes, type StructuredPlan } from '../../src/masks/structured.js';
import { randomLlamaSpec } from '../../src/model/random.js';
import type { ModelConfig } from '../../src/model/spec.js';
import {
  flapLike,
  STRUCTURED_BASELINES,
  type StructuredBudget,
  shortGpt,
  standardised,
  uniformWidth,
} from '../../src/spaces/structured/baselines.js';
import type { StructuredScores } from '../../src/spaces/structured/scores.js';

const base = randomLlamaSpec({
  hiddenSize: 8,
  numLayers: 3,
  numHeads: 2,
  numKvHeads: 2,
  intermediateSize: 8,
  vocabSize: 11,
  maxPositions: 8,
  seed: 1,
}).config;
const config: ModelConfig = { ...base, intermediatePerLayer: [8, 8, 4] };

const scores: StructuredScores = {
  channels: [
    Float64Array.from([5, 1, 4, 2, 8, 3, 7, 6]),
    Float64Array.from([0, 0, 0, 0, 0, 0, 0, 9]),
    Float64Array.from([1, 1, 2, 2]),
  ],
  heads: [Float64Array.from([1, 2]), Float64Array.from([5, 3]), Float64Array.from([4, 4])],
  influence: { layer: [0.5, 0.1, 0.3], attention: [0, 0, 0], mlp: [0, 0, 0] },
  tokens: 10,
};

const cost = (plan: StructuredPlan): number => {
  const s = layerShapes(config, plan);
  return s.widths.reduce((a, b) => a + b, 0) + 3 * s.heads.reduce((a, b) => a + b, 0);
};
const budget = (limit: number): StructuredBudget => ({ cost, limit });
const step = { widthStep: 2 };

function assertPlan(plan: StructuredPlan, heads: number[][], channels: number[][], limit: number): void {
  checkPlan(config, plan);
  assert.deepEqual(plan.heads, heads);
  assert.deepEqual(plan.channels, channels);
  assert.ok(cost(plan) <= limit);
}

describe('uniform width', () => {
  test('channels only: the largest common share within the budget, best channels kept', () => {
    // Heads cost 18 always, so channels may cost 12. Shares 1, .75, .5, …: at .75 layers keep 6, 6 and 2 (the
    // level at most 3 of 4) = 14, too many; at .5 they keep 4, 4, 2 = 10.
    const plan = uniformWidth(config, scores, budget(30), step);
    assertPlan(
      plan,
      [
        [0, 1],
        [0, 1],
        [0, 1],
      ],
      [
        [0, 4, 6, 7],
        [0, 1, 2, 7],
        [2, 3],
      ], // layer 1's ties (0s) by the lower index
      30,
    );
    assert.equal(cost(plan), 28);
    assert.equal(cost(uniformWidth(config, scores, budget(32), step)), 32); // share .75 fits 32 exactly
    assert.deepEqual(uniformWidth(config, scores, budget(38), step), fullPlan(config));
  });

  test('heads and channels: the same share of heads', () => {
    // .75: channels 14, heads ⌊1.5⌋ = 1 per layer (9): 23 > 20; .5: 10 + 9 = 19.
    const plan = uniformWidth(config, scores, budget(20), { ...step, heads: true });
    assertPlan(
      plan,
      [[1], [0], [0]],
      [
        [0, 4, 6, 7],
        [0, 1, 2, 7],
        [2, 3],
      ],
      20,
    );
    assert.equal(cost(plan), 19);
    assert.equal(cost(uniformWidth(config, scores, budget(23), { ...step, heads: true })), 23);
  });

  test('a budget no share meets is refused', () => {
    assert.throws(
      () => uniformWidth(config, scores, budget(17), step),
      (e) =>
        e instanceof GenepruneError &&
        /uniform width: no plan meets the budget of 17.*costs 18/.test(e.message),
    );
  });
});

describe('FLAP-like', () => {
  test('standardised is (s − mean) / sample std, 0 for equal scores', () => {
    const z = standardised([1, 2, 3]);
    assert.deepEqual([...z], [-1, 0, 1]);
    assert.deepEqual([...standardised([4, 4])], [0, 0]);
    assert.deepEqual([...standardised([7])], [0]);
  });

  test('channels only: removed globally by standardised score, layers snapped up to their grid', () => {
    // z: layer 0 (mean 4.5, std √6) removes channel 1 (−1.43), 3 (−1.02), 5 (−0.61), 2, …; layer 1 (seven 0s
    // and a 9) its 0s at −0.35 each; layer 2 ([1, 1, 2, 2]) channels 1 and 0 at −0.87. Globally: L0 → 7 (grid 8),
    // L0 → 6 (cost 36), L2 → 3 (grid 4), L2 → 2 (34), L0 → 5 (grid 6), L1 → 7, 6 (32), 5, 4 (30): fits 30.
    const plan = flapLike(config, scores, budget(30), step);
    assertPlan(
      plan,
      [
        [0, 1],
        [0, 1],
        [0, 1],
      ],
      [
        [0, 2, 4, 5, 6, 7],
        [0, 1, 2, 7],
        [2, 3],
      ],
      30,
    );
    assert.equal(cost(plan), 30);
    // The plan before it in the walk (widths 6, 6, 2) costs 32.
    assert.deepEqual(layerShapes(config, flapLike(config, scores, budget(32), step)).widths, [6, 6, 2]);
  });

  test('heads and channels in one pool', () => {
    // Heads' z: layer 0 [−0.71, 0.71], layer 1 [0.71, −0.71], layer 2 [0, 0]. After the channels above reach
    // widths 6, 8, 2 (34), heads 0 of layer 0 and 1 of layer 1 go (−0.71: 31, 28), then layer 1's channels 7 (no
    // change) and 6 (26).
    const plan = flapLike(config, scores, budget(26), { ...step, heads: true });
    assertPlan(
      plan,
      [[1], [0], [0, 1]],
      [
        [0, 2, 4, 5, 6, 7],
        [0, 1, 2, 3, 4, 7],
        [2, 3],
      ],
      26,
    );
    assert.equal(cost(plan), 26);
    assert.equal(cost(flapLike(config, scores, budget(27), { ...step, heads: true })), 26);
    assert.equal(cost(flapLike(config, scores, budget(28), { ...step, heads: true })), 28);
  });
});

describe('FLAP-like on the fluctuation metric', () => {
  test('ranks by scores.fluctuation, and refuses scores without it', () => {
    // Fluctuation reverses layer 0's order (z of channel j is −(z of the norm order)) and makes layer 1 uniform
    // (z 0); layer 2 as before. Removals: L0 channel 4 (−1.43), 6 (−1.02): width 6 (36); L2 → 2 (34); L0 channel
    // 7 (−0.61), 0 (−0.20): width 4 (32); then z 0: layer 1's channels 7, 6 (30).
    const fluctuation = {
      channels: [
        Float64Array.from([4, 8, 5, 7, 1, 6, 2, 3]),
        new Float64Array(8).fill(2),
        Float64Array.from([1, 1, 2, 2]),
      ],
      heads: scores.heads,
    };
    const plan = flapLike(config, { ...scores, fluctuation }, budget(30), { ...step, metric: 'fluctuation' });
    assertPlan(
      plan,
      [
        [0, 1],
        [0, 1],
        [0, 1],
      ],
      [
        [1, 2, 3, 5],
        [0, 1, 2, 3, 4, 5],
        [2, 3],
      ],
      30,
    );
    assert.throws(
      () => flapLike(config, scores, budget(30), { metric: 'fluctuation' }),
      /FLAP-like: the scores have no fluctuation metric/,
    );
  });
});

describe('ShortGPT', () => {
  test('skips whole layers, lowest block influence first, until the budget holds', () => {
    // Layers cost 14, 14, 10. BI 0.5, 0.1, 0.3: layer 1 goes (24 > 20), then layer 2 (14).
    const plan = shortGpt(config, scores, budget(20));
    checkPlan(config, plan);
    assert.deepEqual(plan.skipAttention, [false, true, true]);
    assert.deepEqual(plan.skipMlp, [false, true, true]);
    assert.deepEqual(plan.heads, fullPlan(config).heads);
    assert.equal(cost(plan), 14);
    assert.deepEqual(STRUCTURED_BASELINES.shortgpt(config, scores, budget(20)), plan);
    assert.deepEqual(shortGpt(config, scores, budget(24)).skipMlp, [false, true, false]);
    assert.deepEqual(shortGpt(config, scores, budget(38)), fullPlan(config));
    assert.throws(() => shortGpt(config, scores, budget(-1)), /ShortGPT: no plan meets the budget of -1/);
  });

  test('refuses scores of another model', () => {
    const wrong = { ...scores, heads: scores.heads.slice(0, 2) };
    assert.throws(() => shortGpt(config, wrong, budget(20)), /structured scores do not fit the model/);
  });
});
