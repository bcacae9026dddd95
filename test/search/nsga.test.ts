/** NSGA-II: building blocks against hand-worked sets, the search against a synthetic objective with a known front. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { type Genome, keptCount } from '../../src/masks/heads.js';
import { parameterCount } from '../../src/model/cost.js';
import { randomLlamaSpec } from '../../src/model/random.js';
import {
  binaryTournament,
  crowdedCompare,
  crowdingDistance,
  dominates,
  environmentalSelection,
  fastNonDominatedSort,
  type NsgaGenerationInfo,
  type NsgaPoint,
  type NsgaState,
} from '../../src/search/nsga.js';
import { runHeadNsga as runNsga } from '../../src/spaces/heads/algorithms.js';
import { createHeadObjective, type HeadObjective } from '../../src/spaces/heads/objective.js';
import { createHeadSpace, keptParameters } from '../../src/spaces/heads/space.js';
import { createRng, type Rng } from '../../src/util/rng.js';
import { computedObjective } from '../helpers/objective.js';

describe('dominates', () => {
  test('needs no-worse everywhere and better somewhere', () => {
    assert.equal(dominates([1, 2], [2, 2]), true);
    assert.equal(dominates([1, 2], [1, 2]), false); // equal points
    assert.equal(dominates([1, 3], [2, 2]), false); // a trade-off
    assert.equal(dominates([2, 2], [1, 2]), false);
    assert.equal(dominates([0, 0, 0], [0, 0, 1]), true);
  });
});

describe('fastNonDominatedSort', () => {
  test('six 2-D points with a duplicate and a tie', () => {
    // By hand: (1,5), the duplicated (2,3) and (4,1) are non-dominated; (3,3) ties (2,3) in y but is worse
    // in x, so it is beaten only by the duplicates; (5,5) is beaten by (1,5) and (3,3) too, so it comes last.
    const points = [
      [1, 5],
      [2, 3],
      [2, 3],
      [3, 3],
      [4, 1],
      [5, 5],
    ];
    assert.deepEqual(fastNonDominatedSort(points), [[0, 1, 2, 4], [3], [5]]);
  });

  test('a chain gives one point per front; no points give no fronts', () => {
    assert.deepEqual(
      fastNonDominatedSort([
        [3, 3],
        [1, 1],
        [2, 2],
      ]),
      [[1], [2], [0]],
    );
    assert.deepEqual(fastNonDominatedSort([]), []);
  });
});

describe('crowdingDistance', () => {
  test('a 4-point front, worked by hand', () => {
    // Front (1,8) (2,5) (4,3) (7,1); ranges 6 and 7. (2,5): (4-1)/6 + (8-3)/7; (4,3): (7-2)/6 + (5-1)/7.
    const points = [
      [4, 3],
      [9, 9], // not in the front: must not count
      [1, 8],
      [7, 1],
      [2, 5],
    ];
    const d = crowdingDistance(points, [0, 2, 3, 4]);
    assert.equal(d[1], Number.POSITIVE_INFINITY);
    assert.equal(d[2], Number.POSITIVE_INFINITY);
    assert.ok(Math.abs(d[0] - (5 / 6 + 4 / 7)) < 1e-12);
    assert.ok(Math.abs(d[3] - (3 / 6 + 5 / 7)) < 1e-12);
  });

  test('two points are both boundaries', () => {
    assert.deepEqual(
      crowdingDistance(
        [
          [0, 1],
          [1, 0],
        ],
        [0, 1],
      ),
      [Number.POSITIVE_INFINITY, Number.POSITIVE_INFINITY],
    );
  });
});

describe('crowdedCompare and binaryTournament', () => {
  test('lower rank first, then larger crowding', () => {
    assert.ok(crowdedCompare({ rank: 0, crowding: 0 }, { rank: 1, crowding: 9 }) < 0);
    assert.ok(crowdedCompare({ rank: 2, crowding: 0.5 }, { rank: 2, crowding: 0.2 }) < 0);
    assert.ok(crowdedCompare({ rank: 2, crowding: 0.2 }, { rank: 2, crowding: 0.5 }) > 0);
    const inf = Number.POSITIVE_INFINITY;
    assert.equal(crowdedCompare({ rank: 1, crowding: inf }, { rank: 1, crowding: inf }), 0);
  });

  test('the entrants are the rng draws; the better wins', () => {
    const ranking = { rank: [0, 1, 0, 0], crowding: [1, Number.POSITIVE_INFINITY, 5, 1] };
    // Draws i then j from the other n-1 (j ≥ i shifts up by one).
    assert.equal(binaryTournament(ranking, scripted([1, 0])), 0); // 1 vs 0: rank decides
    assert.equal(binaryTournament(ranking, scripted([0, 1])), 2); // 0 vs 2: crowding decides
    assert.equal(binaryTournament(ranking, scripted([3, 0])), 3); // 3 vs 0: a tie keeps the first
  });

  test('the unique worst never wins', () => {
    const ranking = { rank: [0, 0, 1, 2], crowding: [1, 2, 3, 4] };
    const rng = createRng(5);
    for (let t = 0; t < 500; t++) assert.notEqual(binaryTournament(ranking, rng), 3);
  });
});

describe('environmentalSelection', () => {
  // Front 1: (0,5) (5,0). Front 2: (1,9) (2,6) (3,5.5) (6,2) (9,1), ranges 8 and 8; interior crowding by hand:
  // (2,6) = 2/8 + 3.5/8, (3,5.5) = 4/8 + 4/8, (6,2) = 6/8 + 4.5/8. Front 3: (10,10).
  const points = [
    [1, 9],
    [10, 10],
    [0, 5],
    [2, 6],
    [6, 2],
    [3, 5.5],
    [5, 0],
    [9, 1],
  ];
  const sorted = (xs: number[]) => [...xs].sort((a, b) => a - b);

  test('whole fronts while they fit', () => {
    assert.deepEqual(sorted(environmentalSelection(points, 2)), [2, 6]);
    assert.deepEqual(sorted(environmentalSelection(points, 7)), [0, 2, 3, 4, 5, 6, 7]);
    assert.deepEqual(sorted(environmentalSelection(points, 8)), [0, 1, 2, 3, 4, 5, 6, 7]);
  });

  test('the overflowing front gives up its most crowded members', () => {
    assert.deepEqual(sorted(environmentalSelection(points, 4)), [0, 2, 6, 7]); // the two ends
    assert.deepEqual(sorted(environmentalSelection(points, 5)), [0, 2, 4, 6, 7]); // + (6,2)
    assert.deepEqual(sorted(environmentalSelection(points, 6)), [0, 2, 4, 5, 6, 7]); // + (3,5.5)
  });
});

// 4 layers × 4 heads, one KV head per query head: each removed head costs the same parameters, so the
// Pareto front is exactly: for k removed heads, remove the k lowest-damage ones.
const synthSpec = randomLlamaSpec({
  hiddenSize: 16,
  numLayers: 4,
  numHeads: 4,
  numKvHeads: 4,
  intermediateSize: 16,
  vocabSize: 8,
  maxPositions: 8,
  seed: 1,
});
const GENES = 16;
/** A permutation of 0.05 … 0.80, so the cheap heads are scattered over the layers. */
const damage = Array.from({ length: GENES }, (_, g) => (((g * 7) % GENES) + 1) * 0.05);
const byDamage = damage.map((_, g) => g).sort((a, b) => damage[a] - damage[b]);
const optimalQuality = (k: number) => 1 + byDamage.slice(0, k).reduce((s, g) => s + damage[g], 0);

function syntheticObjective(): HeadObjective {
  return computedObjective(createHeadSpace(synthSpec.config, parameterCount(synthSpec)), (g: Genome) => {
    let quality = 1;
    for (let i = 0; i < g.length; i++) if (!g[i]) quality += damage[i];
    return quality;
  });
}

function assertMutuallyNonDominated(front: NsgaPoint<Genome>[]): void {
  for (const a of front) {
    for (const b of front) {
      const aBeatsB =
        a.quality <= b.quality &&
        a.keptParameters <= b.keptParameters &&
        (a.quality < b.quality || a.keptParameters < b.keptParameters);
      assert.ok(!aBeatsB, `front point (${a.quality}, ${a.keptParameters}) dominates another`);
    }
  }
}

/** Every population member is on the front (same objectives) or dominated by a front point. */
function assertFrontCoversPopulation(front: NsgaPoint<Genome>[], population: NsgaPoint<Genome>[]): void {
  for (const p of population) {
    const covered = front.some((f) => f.quality <= p.quality && f.keptParameters <= p.keptParameters);
    assert.ok(
      covered,
      `population point (${p.quality}, ${p.keptParameters}) is neither on nor behind the front`,
    );
  }
}

describe('runNsga on a synthetic objective with a known front', () => {
  test('the initial population spreads over sparsities, starting at the full model', async () => {
    const r = await runNsga(syntheticObjective(), { population: 5, generations: 0, rng: createRng(3) });
    // Individual i removes round(i/4 · 0.75 · 16) = 0, 3, 6, 9, 12 heads.
    assert.deepEqual(
      r.population.map((p) => GENES - keptCount(p.genome)),
      [0, 3, 6, 9, 12],
    );
    assert.equal(r.generation, 0);
  });

  test('finds the optimal masks over a range of sparsities', async () => {
    const objective = syntheticObjective();
    const r = await runNsga(objective, { population: 24, generations: 60, rng: createRng(11) });
    assertMutuallyNonDominated(r.front);
    assertFrontCoversPopulation(r.front, r.population);
    for (let i = 1; i < r.front.length; i++)
      assert.ok(r.front[i - 1].keptParameters <= r.front[i].keptParameters);
    const total = objective.space.totalParameters;
    for (const p of r.front) {
      assert.equal(p.keptParameters, keptParameters(synthSpec.config, p.genome, total));
      assert.equal(p.sparsity, 1 - keptCount(p.genome) / GENES);
    }
    const removed = new Map(r.front.map((p) => [GENES - keptCount(p.genome), p]));
    // Within one damage step (0.1) of the optimum at every checked k; seeds 1–200 all pass but one.
    for (const k of [0, 1, 2, 3, 4, 6, 8, 10, 12]) {
      const p = removed.get(k);
      assert.ok(p, `no front point removes ${k} heads (has ${[...removed.keys()].sort((a, b) => a - b)})`);
      assert.ok(
        p.quality <= optimalQuality(k) + 0.1 + 1e-9,
        `k=${k}: quality ${p.quality}, optimum ${optimalQuality(k)}`,
      );
    }
    // Most k hit the optimum exactly: the k cheapest heads removed and nothing else.
    const exact = [...removed].filter(([k, p]) => {
      const gone = [...p.genome].map((v, i) => (v ? -1 : i)).filter((i) => i >= 0);
      return (
        gone.join() ===
        byDamage
          .slice(0, k)
          .sort((x, y) => x - y)
          .join()
      );
    });
    assert.ok(exact.length >= 12, `only ${exact.length} of ${GENES + 1} sparsities are optimal`);
    const sparsities = r.front.map((p) => p.sparsity);
    assert.ok(Math.max(...sparsities) - Math.min(...sparsities) >= 0.5);
  });

  test('same seed, same result; onGeneration reports every generation', async () => {
    const seen: number[] = [];
    const a = await runNsga(syntheticObjective(), {
      population: 10,
      generations: 8,
      rng: createRng(21),
      onGeneration: (info) => {
        seen.push(info.generation);
      },
    });
    const b = await runNsga(syntheticObjective(), { population: 10, generations: 8, rng: createRng(21) });
    assert.deepEqual(seen, [0, 1, 2, 3, 4, 5, 6, 7, 8]);
    assert.deepEqual(a.front, b.front);
    assert.deepEqual(a.population, b.population);
    assert.deepEqual(a.state, b.state);
  });

  test('a run stopped after k generations and resumed from its JSON state ends exactly like an uninterrupted one', async () => {
    const opts = { population: 12, generations: 15, mutationRate: 0.1 };
    const states: NsgaGenerationInfo<Genome>['state'][] = [];
    const whole = await runNsga(syntheticObjective(), {
      ...opts,
      rng: createRng(99),
      onGeneration: (info) => {
        states.push(info.state);
      },
    });

    const first = await runNsga(syntheticObjective(), { ...opts, generations: 6, rng: createRng(99) });
    assert.deepEqual(first.state, states[6]);
    const saved = JSON.parse(JSON.stringify(first.state)) as NsgaState;
    const fresh = syntheticObjective();
    const resumedInfo: number[] = [];
    const resumed = await runNsga(fresh, {
      ...opts,
      rng: createRng(12345), // a different seed: the saved rng state must take over
      state: saved,
      onGeneration: (info) => {
        resumedInfo.push(info.generation);
      },
    });
    assert.deepEqual(resumedInfo, [7, 8, 9, 10, 11, 12, 13, 14, 15]);
    assert.equal(resumed.generation, 15);
    assert.deepEqual(resumed.front, whole.front);
    assert.deepEqual(resumed.population, whole.population);
    assert.deepEqual(resumed.state, whole.state);
  });

  test('a state from another model or population size is refused', async () => {
    const first = await runNsga(syntheticObjective(), { population: 6, generations: 1, rng: createRng(1) });
    await assert.rejects(
      runNsga(syntheticObjective(), { population: 8, generations: 2, rng: createRng(1), state: first.state }),
      /cannot resume/,
    );
    await assert.rejects(
      runNsga(syntheticObjective(), {
        population: 6,
        generations: 2,
        rng: createRng(1),
        state: { ...first.state, genes: 12 },
      }),
      /cannot resume/,
    );
  });
});

describe('runNsga end to end on a tiny random model', () => {
  test('population 8, 3 generations: a non-dominated, reproducible front', async () => {
    const spec = randomLlamaSpec({
      hiddenSize: 16,
      numLayers: 2,
      numHeads: 4,
      numKvHeads: 2,
      intermediateSize: 32,
      vocabSize: 50,
      maxPositions: 32,
      scale: 10,
      seed: 7,
    });
    const tokenRng = createRng(8);
    const stream = Array.from({ length: 300 }, () => tokenRng.nextInt(50));
    const run = async () => {
      const objective = await createHeadObjective(spec, { stream, context: 16, metric: 'ppl' });
      try {
        const r = await runNsga(objective, { population: 8, generations: 3, rng: createRng(4) });
        return { r, objective };
      } finally {
        await objective.release();
      }
    };
    const { r, objective } = await run();
    assert.ok(r.front.length > 0);
    assertMutuallyNonDominated(r.front);
    for (const p of r.front) {
      assert.ok(Number.isFinite(p.quality) && p.quality > 1);
      assert.equal(p.keptParameters, keptParameters(spec.config, p.genome, objective.space.totalParameters));
    }
    assertFrontCoversPopulation(r.front, r.population);
    assert.ok(objective.forwardPasses() > 0);
    const again = await run();
    assert.deepEqual(again.r.front, r.front);
    assert.deepEqual(again.r.state, r.state);
  });
});

/** An Rng whose nextInt returns the scripted values in order (for tournament draws). */
function scripted(values: number[]): Rng {
  let i = 0;
  const fail = () => {
    throw new Error('scripted rng: unexpected call');
  };
  return {
    nextUint32: fail,
    nextFloat: fail,
    nextInt: (n: number) => {
      const v = values[i++];
      assert.ok(v !== undefined && v < n, `scripted draw ${v} out of range ${n}`);
      return v;
    },
    getState: fail,
    setState: fail,
  };
}
