/**
 * `Objective.evaluateMany`, the one evaluation seam: a population scored through it gives the same log, cache
 * flags, counters and GA result whatever order its evaluations complete in (the elementwise runner is where a
 * worker pool plugs in), and genomes repeated inside one batch are flagged cached exactly as scoring them one by
 * one flags them. On the real stories260K (perplexity on TinyStories calibration tokens), and on a small head
 * space with a known landscape whose evaluations really run concurrently and finish in shuffled order.
 */
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import type { Genome } from '../../src/masks/heads.js';
import { readDataset } from '../../src/metrics/data.js';
import { tokenizeDocuments } from '../../src/metrics/perplexity.js';
import { type OpenedModel, openModel } from '../../src/model/open.js';
import type { ModelConfig } from '../../src/model/spec.js';
import { type EvaluationRecord, type GaState, initialState, runGa } from '../../src/search/ga.js';
import {
  type ElementwiseRunner,
  type Fidelity,
  type ScoredGenome,
  sequentialRunner,
} from '../../src/search/objective.js';
import { randomGenome } from '../../src/search/operators.js';
import { headGaOptions } from '../../src/spaces/heads/algorithms.js';
import { createHeadObjective, type HeadObjective } from '../../src/spaces/heads/objective.js';
import { createHeadSpace } from '../../src/spaces/heads/space.js';
import { createRng } from '../../src/util/rng.js';
import { computedObjective } from '../helpers/objective.js';
import { CALIB, MODEL, sharedPath, skipUnlessShared } from '../shared.js';

/** Runs the tasks one at a time, last index first: every batch of two or more completes out of order. */
function reversedRunner(completed: number[][]): ElementwiseRunner {
  return async <T>(tasks: ReadonlyArray<() => Promise<T>>, onSettled?: (i: number, v: T) => void) => {
    const out = new Array<T>(tasks.length);
    const order: number[] = [];
    for (let i = tasks.length - 1; i >= 0; i--) {
      out[i] = await tasks[i]();
      order.push(i);
      onSettled?.(i, out[i]);
    }
    completed.push(order);
    return out;
  };
}

/** Starts every task at once; each finishes after its own seeded random delay, so completion order is shuffled. */
function concurrentShuffledRunner(seed: number, completed: number[][]): ElementwiseRunner {
  const rng = createRng(seed);
  return async <T>(tasks: ReadonlyArray<() => Promise<T>>, onSettled?: (i: number, v: T) => void) => {
    const order: number[] = [];
    const out = await Promise.all(
      tasks.map(async (task, i) => {
        await new Promise((r) => setTimeout(r, rng.nextInt(8)));
        const v = await task();
        order.push(i);
        onSettled?.(i, v);
        return v;
      }),
    );
    completed.push(order);
    return out;
  };
}

const inOrder = (order: number[]) => order.every((v, i) => v === i);

/** The log without wall times (the only field that may differ between two identical runs). */
const withoutMs = (records: EvaluationRecord[]) => records.map(({ ms: _ms, ...r }) => r);

async function runLoggedGa(objective: HeadObjective, settings: Parameters<typeof headGaOptions>[1]) {
  const opts = headGaOptions(objective.space.genes, settings);
  const records: EvaluationRecord[] = [];
  const states: GaState[] = [];
  const final = await runGa(objective, opts, initialState(opts, objective.space), {
    onEvaluation: (r) => {
      records.push(r);
    },
    onGeneration: (_s, state) => {
      states.push(state);
    },
  });
  return {
    records,
    states,
    final,
    evaluations: objective.evaluations(),
    forwardPasses: objective.forwardPasses(),
  };
}

/** The cached flags a one-by-one loop gives: cached when the objective's evaluation counter did not move. */
async function sequentialFlags(objective: HeadObjective, genomes: Genome[], fidelity: Fidelity) {
  const out: boolean[] = [];
  for (const g of genomes) {
    const before = objective.evaluations();
    await objective.evaluate(g, fidelity);
    out.push(objective.evaluations() === before);
  }
  return out;
}

const skip = skipUnlessShared(MODEL, CALIB);

describe('evaluateMany on stories260K', { skip }, () => {
  let model: OpenedModel;
  let stream: number[];
  before(async () => {
    if (skip) return;
    model = await openModel(sharedPath(MODEL)!);
    stream = tokenizeDocuments((await readDataset(sharedPath(CALIB)!)).documents, model.tokenizer);
  });
  const objective = (elementwise?: ElementwiseRunner) =>
    createHeadObjective(model.spec, {
      stream,
      context: 128,
      metric: 'ppl',
      tokens: 512,
      lowTokens: 256,
      ...(elementwise ? { elementwise } : {}),
    });

  test('a multi-fidelity GA scored in reverse completion order logs, flags, counts and ends exactly as in order', async () => {
    const settings = {
      population: 8,
      generations: 3,
      tournamentSize: 3,
      crossoverRate: 0.9,
      mutationRate: 0.05,
      removalBias: 0,
      sInitial: 0.15,
      fitness: { kind: 'sos' as const, metric: 'ppl' as const, lambda: 0, denseQuality: 1 },
      elitism: 2,
      multiFidelity: true,
      promote: 3,
      seed: 11,
    };
    const inOrderObjective = await objective();
    const completed: number[][] = [];
    const reversed = await objective(reversedRunner(completed));
    try {
      const a = await runLoggedGa(inOrderObjective, settings);
      const b = await runLoggedGa(reversed, settings);
      assert.ok(
        completed.some((order) => order.length > 1 && !inOrder(order)),
        'some batch really completed out of order',
      );
      assert.deepEqual(withoutMs(b.records), withoutMs(a.records));
      assert.deepEqual(b.states, a.states);
      assert.deepEqual(b.final, a.final);
      assert.equal(b.evaluations, a.evaluations);
      assert.equal(b.forwardPasses, a.forwardPasses);
      // The log is what a one-by-one scorer writes: 8 low-fidelity lines then 3 promoted full-fidelity lines per
      // generation; cached exactly where the same (genome, fidelity) was logged before.
      assert.equal(a.records.length, 3 * (8 + 3));
      const seen = new Set<string>();
      for (const r of a.records) {
        const key = `${r.fidelity}:${r.genome}`;
        assert.equal(r.cached, seen.has(key), `line ${r.generation}/${r.index} ${r.fidelity}`);
        seen.add(key);
      }
      assert.equal(a.evaluations, seen.size, 'one evaluation per distinct (genome, fidelity)');
    } finally {
      await inOrderObjective.release();
      await reversed.release();
    }
  });

  test('duplicates inside one batch: the first occurrence runs, later ones are cached, as one by one', async () => {
    const genes = model.spec.config.numLayers * model.spec.config.numHeads;
    const rng = createRng(4);
    const [x, y, z] = [randomGenome(genes, 6, rng), randomGenome(genes, 6, rng), randomGenome(genes, 9, rng)];
    const batch = [x, y, x.slice(), z, y, x];
    const one = await objective();
    const completed: number[][] = [];
    const many = await objective(reversedRunner(completed));
    try {
      const flags = await sequentialFlags(one, batch, 'full');
      assert.deepEqual(flags, [false, false, true, false, true, true]);
      const seen: Array<[number, ScoredGenome]> = [];
      const results = await many.evaluateMany(batch, 'full', (i, r) => seen.push([i, r]));
      assert.deepEqual(completed, [[2, 1, 0]], 'three distinct genomes ran, last first');
      assert.deepEqual(
        results.map((r) => r.cached),
        flags,
      );
      assert.deepEqual(
        seen.map(([i]) => i),
        [0, 1, 2, 3, 4, 5],
        'progress in index order',
      );
      assert.equal(many.evaluations(), one.evaluations());
      assert.equal(many.forwardPasses(), one.forwardPasses());
      assert.equal(
        results.reduce((n, r) => n + r.forwardPasses, 0),
        many.forwardPasses(),
      );
      for (const [i, g] of batch.entries()) {
        const e = await one.evaluate(g, 'full');
        assert.equal(results[i].evaluation.quality, e.quality, `genome ${i}`);
        assert.equal(results[i].evaluation.tokens, 512);
        assert.equal(
          results[i].forwardPasses > 0,
          !results[i].cached,
          'a cached genome cost no forward pass',
        );
        if (results[i].cached) assert.equal(results[i].evaluation.ms, 0);
      }
      // A later batch finds them in the cache; the other fidelity is a different evaluation.
      const again = await many.evaluateMany([z, x], 'full');
      assert.deepEqual(
        again.map((r) => r.cached),
        [true, true],
      );
      const low = await many.evaluateMany([z], 'low');
      assert.equal(low[0].cached, false);
      assert.equal(many.evaluations(), 4);
    } finally {
      await one.release();
      await many.release();
    }
  });
});

describe('evaluateMany with concurrent evaluations on a known landscape', () => {
  const config = {
    numLayers: 3,
    numHeads: 6,
    headsPerLayer: [6, 6, 6],
    kvHeadsPerLayer: [6, 6, 6],
    hiddenSize: 6,
    headDim: 1,
    attentionBias: false,
  } as ModelConfig;
  const damage = Array.from({ length: 18 }, (_, i) => (((i * 5) % 18) + 1) / 40);
  const landscape = (g: Genome, fidelity: Fidelity) => {
    let q = 1;
    for (let i = 0; i < g.length; i++) if (!g[i]) q += damage[i] * (fidelity === 'low' ? 1.1 : 1);
    return q;
  };
  const objective = (elementwise: ElementwiseRunner) =>
    computedObjective(createHeadSpace(config, 1000), landscape, {
      elementwise,
      forwards: (f) => (f === 'full' ? 2 : 1),
    });
  const settings = {
    population: 10,
    generations: 6,
    tournamentSize: 3,
    crossoverRate: 0.9,
    mutationRate: 0.08,
    removalBias: 0.3,
    sInitial: 0.2,
    fitness: { kind: 'sos' as const, metric: 'ppl' as const, lambda: 0, denseQuality: 1 },
    elitism: 2,
    multiFidelity: true,
    promote: 3,
    seed: 5,
  };

  test('a GA whose evaluations finish in shuffled order logs and ends exactly as one scored in order', async () => {
    const a = await runLoggedGa(objective(sequentialRunner), settings);
    for (const seed of [1, 2, 3]) {
      const completed: number[][] = [];
      const b = await runLoggedGa(objective(concurrentShuffledRunner(seed, completed)), settings);
      assert.ok(
        completed.some((o) => !inOrder(o)),
        `seed ${seed}: some batch finished out of order`,
      );
      assert.deepEqual(withoutMs(b.records), withoutMs(a.records));
      assert.deepEqual(b.states, a.states);
      assert.equal(b.evaluations, a.evaluations);
      assert.equal(b.forwardPasses, a.forwardPasses);
    }
    assert.ok(
      a.records.some((r) => r.cached),
      'elites and repeats come back cached',
    );
  });

  test('cached flags inside one concurrent batch are decided by index, as one by one', async () => {
    const rng = createRng(8);
    const pool = Array.from({ length: 4 }, () => randomGenome(18, 5, rng));
    const batch = Array.from({ length: 20 }, () => pool[rng.nextInt(pool.length)]);
    const flags = await sequentialFlags(objective(sequentialRunner), batch, 'low');
    const completed: number[][] = [];
    const o = objective(concurrentShuffledRunner(9, completed));
    const r = await o.evaluateMany(batch, 'low');
    assert.deepEqual(
      r.map((x) => x.cached),
      flags,
    );
    assert.equal(flags.filter((f) => !f).length, new Set(batch.map((g) => g.join(''))).size);
    assert.equal(o.evaluations(), flags.filter((f) => !f).length);
    assert.equal(o.forwardPasses(), o.evaluations());
  });
});
