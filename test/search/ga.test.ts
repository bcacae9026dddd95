/**
 * The GA loop and fitness functions on a synthetic landscape whose optimum is known: quality = 1 + Σ damage of
 * removed heads. (A pure function of the genome, not an engine mock: the engine-backed objective is exercised
 * in headsearch.test.ts.)
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { type Genome, keptCount } from '../../src/masks/heads.js';
import type { ModelConfig } from '../../src/model/spec.js';
import { fitnessOf } from '../../src/search/fitness.js';
import { type GenerationSummary, initialState, runGa } from '../../src/search/ga.js';
import { type HeadGaSettings, headGaOptions } from '../../src/spaces/heads/algorithms.js';
import type { HeadObjective } from '../../src/spaces/heads/objective.js';
import { createHeadSpace } from '../../src/spaces/heads/space.js';
import { computedObjective } from '../helpers/objective.js';

const GENES = 24;
// Damages 0.01, 0.11, ..., 2.31: removing the cheapest head (0.01 < 1/23) improves −ppl·(1−s), any second does not.
const damage = Array.from({ length: GENES }, (_, i) => ((i * 7) % GENES) / 10 + 0.01);

function syntheticObjective(): HeadObjective {
  const config = {
    numLayers: 3,
    numHeads: 8,
    headsPerLayer: [8, 8, 8],
    kvHeadsPerLayer: [8, 8, 8],
  } as ModelConfig;
  return computedObjective(
    createHeadSpace({ ...config, hiddenSize: 8, headDim: 1, attentionBias: false }, 1000),
    (g: Genome) => {
      let q = 1;
      for (let i = 0; i < GENES; i++) if (!g[i]) q += damage[i];
      return q;
    },
  );
}

function options(over: Partial<HeadGaSettings> = {}): HeadGaSettings {
  return {
    population: 12,
    generations: 25,
    tournamentSize: 3,
    crossoverRate: 0.9,
    mutationRate: 0.05,
    removalBias: 0,
    sInitial: 0.25,
    fitness: { kind: 'budget', metric: 'ppl', lambda: 1, denseQuality: 1 },
    removeCount: 6,
    elitism: 2,
    multiFidelity: false,
    promote: 0,
    seed: 3,
    ...over,
  };
}

async function run(settings: HeadGaSettings) {
  const opts = headGaOptions(GENES, settings);
  const objective = syntheticObjective();
  const summaries: GenerationSummary[] = [];
  const final = await runGa(objective, opts, initialState(opts, objective.space), {
    onGeneration: (s) => {
      summaries.push(s);
    },
  });
  return { final, summaries };
}

describe('fitness', () => {
  test('hand-computed values', () => {
    const spec = { metric: 'ppl' as const, lambda: 2, denseQuality: 4 };
    assert.equal(fitnessOf({ ...spec, kind: 'sos' }, 6, 0.25), -4.5);
    assert.equal(fitnessOf({ ...spec, kind: 'lambda' }, 6, 0.25), -1.5 + 0.5);
    assert.equal(fitnessOf({ ...spec, kind: 'budget' }, 6, 0.25), -1.5);
    assert.equal(fitnessOf({ kind: 'lambda', metric: 'kl', lambda: 0.1, denseQuality: 0 }, 0.3, 0.5), -0.25);
  });
});

describe('GA loop', () => {
  test('with elitism the best fitness never falls, and the budget holds for everyone', async () => {
    const { final, summaries } = await run(options());
    for (let i = 1; i < summaries.length; i++)
      assert.ok(summaries[i].bestFitness >= summaries[i - 1].bestFitness);
    for (const key of final.population) assert.equal([...key].filter((c) => c === '0').length, 6);
    assert.equal(final.stop, 'generations');
    assert.equal(summaries.length, 25);
  });

  test('finds the known optimum of an additive landscape', async () => {
    const { final } = await run(options({ generations: 60, population: 16 }));
    const best = [...damage.keys()].sort((a, b) => damage[a] - damage[b]).slice(0, 6);
    const removed = [...final.best!.genome].flatMap((c, i) => (c === '0' ? [i] : []));
    assert.deepEqual(
      removed.sort((a, b) => a - b),
      best.sort((a, b) => a - b),
    );
  });

  test('stops on the fitness threshold τ', async () => {
    const { final, summaries } = await run(
      options({ fitnessThreshold: -2.9, generations: 200, population: 16 }),
    );
    assert.equal(final.stop, 'threshold');
    assert.ok(summaries.at(-1)!.best.fitness >= -2.9);
    assert.ok(summaries.length < 200);
    assert.ok(
      summaries.slice(0, -1).every((s) => s.best.fitness < -2.9),
      'it stops at the first generation reaching τ',
    );
  });

  test('stops on the maximum sparsity S (paper fitness, no budget)', async () => {
    const { final, summaries } = await run(
      options({
        removeCount: undefined,
        fitness: { kind: 'sos', metric: 'ppl', lambda: 0, denseQuality: 1 },
        removalBias: 1,
        mutationRate: 0.1,
        maxSparsity: 0.5,
      }),
    );
    assert.equal(final.stop, 'max-sparsity');
    assert.ok(summaries.at(-1)!.maxSparsity >= 0.5);
  });

  test('the sos fitness trades perplexity against size as the paper defines', async () => {
    // Only the cheapest head is worth removing: the optimum is −1.01·(23/24) ≈ −0.968, above the dense −1.
    const { final } = await run(
      options({
        removeCount: undefined,
        fitness: { kind: 'sos', metric: 'ppl', lambda: 0, denseQuality: 1 },
        generations: 100,
        population: 16,
      }),
    );
    const removed = [...final.best!.genome].flatMap((c, i) => (c === '0' ? [i] : []));
    assert.ok(removed.includes(0), 'the one head worth removing is removed');
    assert.ok(final.best!.fitness > -1, `better than the dense model's −1: ${final.best!.fitness}`);
    assert.ok(final.best!.fitness <= -1.01 * (23 / 24) + 1e-12, 'no better than the optimum');
  });

  test('same seed, same run; another seed, another run', async () => {
    const a = await run(options({ mutationRate: 0.1 }));
    const b = await run(options({ mutationRate: 0.1 }));
    const c = await run(options({ mutationRate: 0.1, seed: 4 }));
    assert.deepEqual(b.summaries, a.summaries);
    assert.notDeepEqual(c.summaries, a.summaries);
    assert.equal(keptCount(new Uint8Array(GENES).fill(1)), GENES);
  });
});
