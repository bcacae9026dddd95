/**
 * A candidate whose quality is non-finite (its forward pass overflowed) gets the worst fitness and is logged as
 * such; every operator that does arithmetic on fitness or quality must treat it so, never as NaN or 0.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { createRunner } from '../../src/engine/runner.js';
import { GenepruneError } from '../../src/errors.js';
import type { Genome } from '../../src/masks/heads.js';
import {
  computeKlReference,
  evaluateKl,
  evaluatePerplexity,
  makeWindows,
} from '../../src/metrics/perplexity.js';
import { randomLlamaSpec } from '../../src/model/random.js';
import type { ModelConfig } from '../../src/model/spec.js';
import { type FitnessKind, fitnessOf } from '../../src/search/fitness.js';
import { type EvaluationRecord, initialState, runGa } from '../../src/search/ga.js';
import { crowdingDistance } from '../../src/search/nsga.js';
import { qualityFromLog } from '../../src/search/objective.js';
import { crossoverWeight } from '../../src/search/operators.js';
import { tournament } from '../../src/search/selection.js';
import { headGaOptions } from '../../src/spaces/heads/algorithms.js';
import { regressionBaseline } from '../../src/spaces/heads/baselines.js';
import { createHeadObjective, type HeadObjective } from '../../src/spaces/heads/objective.js';
import { createHeadSpace } from '../../src/spaces/heads/space.js';
import { createRng } from '../../src/util/rng.js';
import { computedObjective } from '../helpers/objective.js';

describe('fitness of a non-finite quality', () => {
  test('is −Infinity for every kind, at every sparsity (−∞·(1 − 1) would be NaN)', () => {
    for (const kind of ['sos', 'lambda', 'budget'] as FitnessKind[]) {
      for (const q of [Infinity, Number.NaN, -Infinity]) {
        for (const s of [0, 0.5, 1]) {
          const spec = { kind, metric: 'ppl' as const, lambda: 2, denseQuality: 4 };
          assert.equal(fitnessOf(spec, q, s), -Infinity, `${kind} q=${q} s=${s}`);
        }
      }
    }
    assert.equal(fitnessOf({ kind: 'sos', metric: 'ppl', lambda: 0, denseQuality: 1 }, 10, 0.5), -5);
  });
});

describe('operators on −Infinity and NaN fitness', () => {
  test('crossover weight: the finite parent gets every gene; equal failures split evenly', () => {
    assert.equal(crossoverWeight(-Infinity, -3), 0);
    assert.equal(crossoverWeight(-3, -Infinity), 1);
    assert.equal(crossoverWeight(5, -Infinity), 1);
    assert.equal(crossoverWeight(-Infinity, -Infinity), 0.5);
    assert.equal(crossoverWeight(Number.NaN, -3), 0);
    assert.equal(crossoverWeight(-3, Number.NaN), 1);
    // Finite values keep the documented rule.
    assert.equal(crossoverWeight(-3, -5), 0.625);
    assert.equal(crossoverWeight(0.9, 0.1), 0.9);
  });

  test('tournament: a NaN first pick does not block the fitter ones; −Infinity never beats a finite fitness', () => {
    const fitness = [Number.NaN, -Infinity, -7, -Infinity];
    const rng = createRng(4);
    for (let i = 0; i < 50; i++) assert.equal(tournament(fitness, 4, rng), 2);
  });

  test('NSGA-II crowding: a failed (+Infinity) member is an extreme; the others are spaced on the finite range', () => {
    // Objective 0 has one failure; objective 1 is distinct everywhere.
    const points = [
      [1, 40],
      [2, 30],
      [4, 20],
      [Infinity, 10],
      [3, 25],
    ];
    const d = crowdingDistance(points, [0, 1, 2, 3, 4]);
    // Objective 0, finite order 1,2,3,4 (points 0,1,4,2) over range 3: point 1 → (3−1)/3, point 4 → (4−2)/3.
    // Objective 1, order 10,20,25,30,40 (points 3,2,4,1,0) over range 30: 2 → 15/30, 4 → 10/30, 1 → 15/30.
    assert.equal(d[0], Infinity);
    assert.equal(d[3], Infinity);
    assert.equal(d[2], Infinity); // the largest finite value of objective 0
    assert.ok(Math.abs(d[1] - (2 / 3 + 15 / 30)) < 1e-12, `${d[1]}`);
    assert.ok(Math.abs(d[4] - (2 / 3 + 10 / 30)) < 1e-12, `${d[4]}`);
  });
});

const CONFIG = { numLayers: 2, numHeads: 4, headsPerLayer: [4, 4], kvHeadsPerLayer: [4, 4] } as ModelConfig;

/** quality = 1 + Σ damage of removed heads, but +Infinity whenever head 0 is removed (it "overflows"). */
function brittleObjective(): HeadObjective {
  return computedObjective(
    createHeadSpace({ ...CONFIG, hiddenSize: 4, headDim: 1, attentionBias: false }, 100),
    (g: Genome) => {
      let q = 1;
      for (let i = 0; i < 8; i++) if (!g[i]) q += 0.1 * (i + 1);
      return g[0] ? q : Infinity;
    },
    { tokens: 10 },
  );
}

describe('the GA with candidates that fail', () => {
  test('why: a non-finite candidate must get the worst fitness and be logged as such, and read back the same', async () => {
    const opts = headGaOptions(8, {
      population: 12,
      generations: 6,
      tournamentSize: 3,
      crossoverRate: 1,
      mutationRate: 0.1,
      removalBias: 0.5,
      sInitial: 0.5,
      fitness: { kind: 'sos', metric: 'ppl', lambda: 0, denseQuality: 1 },
      elitism: 2,
      multiFidelity: false,
      promote: 0,
      seed: 3,
    });
    const records: EvaluationRecord[] = [];
    const summaries: Array<Record<string, unknown>> = [];
    const objective = brittleObjective();
    const final = await runGa(objective, opts, initialState(opts, objective.space), {
      onEvaluation: (r) => {
        records.push(r);
      },
      onGeneration: (s) => {
        summaries.push(JSON.parse(JSON.stringify(s)));
      },
    });
    const failed = records.filter((r) => r.genome[0] === '0');
    assert.ok(failed.length > 0, 'the initial population removes head 0 somewhere');
    for (const r of failed) {
      assert.equal(r.fitness, -Infinity);
      assert.equal(r.nonFinite, true);
      const line = JSON.parse(JSON.stringify(r));
      assert.equal(line.quality, null);
      assert.equal(line.fitness, null);
      assert.equal(qualityFromLog(line), Infinity, 'the resume path reads the same worst value, not 0');
    }
    for (const r of records.filter((x) => x.genome[0] === '1')) {
      assert.equal(r.nonFinite, undefined);
      assert.equal(qualityFromLog(JSON.parse(JSON.stringify(r))), r.quality);
    }
    // Summaries stay numbers: the mean is over finite fitness, failures are counted.
    for (const s of summaries) {
      assert.equal(typeof s.meanFitness, 'number');
      assert.equal(typeof s.bestFitness, 'number');
      assert.equal(typeof s.nonFinite, 'number');
    }
    assert.ok(summaries.some((s) => (s.nonFinite as number) > 0));
    assert.equal(final.best!.genome[0], '1', 'the best mask keeps the head whose removal fails');
    assert.ok(Number.isFinite(final.best!.fitness));
  });

  test('qualityFromLog: null, missing and flagged are +Infinity; numbers pass', () => {
    assert.equal(qualityFromLog({ quality: null, nonFinite: true }), Infinity);
    assert.equal(qualityFromLog({ quality: null }), Infinity);
    assert.equal(qualityFromLog({}), Infinity);
    assert.equal(qualityFromLog({ quality: 0 }), 0);
    assert.equal(qualityFromLog({ quality: 4.25 }), 4.25);
  });

  test('the regression baseline fits on the finite samples only and ranks the failing head most important', async () => {
    const r = await regressionBaseline(brittleObjective(), 3, createRng(2), { samples: 60 });
    assert.ok(r.ranking!.every(Number.isFinite), `${r.ranking}`);
    assert.equal(r.genome[0], 1, 'head 0 is kept');
    assert.ok(Number.isFinite(r.quality));
  });
});

/** The shape of the small random models below. */
const SMALL = {
  hiddenSize: 16,
  numLayers: 1,
  numHeads: 2,
  numKvHeads: 1,
  intermediateSize: 8,
  vocabSize: 64,
  maxPositions: 32,
  seed: 1,
};

/** A random model whose weights (std 2e18) are finite but overflow fp32 inside the forward pass. */
function overflowingSpec() {
  return randomLlamaSpec({ ...SMALL, scale: 1e20 });
}
const stream = Array.from({ length: 100 }, (_, i) => (i * 7) % 64);

describe('non-finite values from a real forward pass', () => {
  test('eval: a non-finite NLL is an error naming the data and the window, not a printed NaN', async () => {
    const runner = await createRunner(overflowingSpec(), { output: 'nll' });
    const windows = makeWindows(stream, 16, undefined, 'eval.txt');
    await assert.rejects(evaluatePerplexity(runner, windows, { batchSize: 2 }), (e: unknown) => {
      assert.ok(e instanceof GenepruneError);
      assert.equal(e.kind, 'model');
      assert.equal(e.where, 'eval.txt');
      assert.match(
        e.message,
        /^the model produced a non-finite NLL \((NaN|Infinity)\) in window 0 of 7 \(batch 0, /,
      );
      return true;
    });
    // A search asks for the worst value instead.
    const r = await evaluatePerplexity(runner, windows, { nonFinite: 'infinite' });
    assert.equal(r.perplexity, Infinity);
    await runner.release();
  });

  test('KL: a broken unpruned reference is an error', async () => {
    const spec = overflowingSpec();
    const dense = await createRunner(spec, { output: 'logprobs' });
    const windows = makeWindows(stream, 16, undefined, 'calib.txt');
    await assert.rejects(computeKlReference(dense, windows, 2), /calib.txt|non-finite log-probability/);
    await dense.release();
    // And the KL path itself reports non-finite values the same way (reference from a sane model).
    const sane = randomLlamaSpec({ ...spec.config, ...SMALL });
    const ref = await createRunner(sane, { output: 'logprobs' });
    const reference = await computeKlReference(ref, windows, 2);
    await ref.release();
    const kl = await createRunner(spec, { output: 'kl' });
    await assert.rejects(evaluateKl(kl, windows, reference), /non-finite KL divergence .* in window 0 /);
    assert.equal((await evaluateKl(kl, windows, reference, { nonFinite: 'infinite' })).meanKl, Infinity);
    await kl.release();
  });

  test('search: the unpruned model scoring non-finite on the calibration data is an error', async () => {
    const objective = await createHeadObjective(overflowingSpec(), { stream, context: 16, metric: 'ppl' });
    await assert.rejects(objective.evaluate(new Uint8Array(2).fill(1)), (e: unknown) => {
      assert.ok(e instanceof GenepruneError);
      assert.equal(e.where, 'calibration data');
      assert.match(e.message, /^the unpruned model scores a non-finite perplexity on the calibration data/);
      return true;
    });
    // A pruned candidate of the same model is just the worst, not an error.
    assert.equal((await objective.evaluate(Uint8Array.of(1, 0))).quality, Infinity);
    await objective.release();
  });
});
