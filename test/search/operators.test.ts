/** GA operators against hand-checked expectations, with seeded RNGs. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { keptCount } from '../../src/masks/heads.js';
import {
  crossover,
  crossoverWeight,
  initialPopulation,
  mutate,
  randomGenome,
  repair,
} from '../../src/search/operators.js';
import { tournament } from '../../src/search/selection.js';
import { createRng } from '../../src/util/rng.js';

describe('tournament', () => {
  test('returns the fittest of the individuals it sampled', () => {
    const fitness = [5, -1, 9, 3, 7, 0, 2];
    // A tournament over the whole population must return the global best.
    assert.equal(tournament(fitness, 7, createRng(1)), 2);
    assert.equal(tournament(fitness, 50, createRng(1)), 2);
    // Size 3: replay the same draws by hand and check the winner is the best of that sample.
    for (let seed = 0; seed < 200; seed++) {
      const winner = tournament(fitness, 3, createRng(seed));
      const replay = createRng(seed);
      const idx = [0, 1, 2, 3, 4, 5, 6];
      const sample: number[] = [];
      for (let i = 0; i < 3; i++) {
        const j = i + replay.nextInt(7 - i);
        [idx[i], idx[j]] = [idx[j], idx[i]];
        sample.push(idx[i]);
      }
      assert.equal(fitness[winner], Math.max(...sample.map((i) => fitness[i])));
    }
  });

  test('never returns one of the two worst with size 3 of 4', () => {
    // Any 3 of 4 distinct individuals include one of the top two.
    const fitness = [1, 2, 3, 4];
    for (let seed = 0; seed < 100; seed++) assert.ok(tournament(fitness, 3, createRng(seed)) >= 2);
  });
});

describe('crossover', () => {
  test('the weight reproduces the paper for positive fitness and stays right for negative', () => {
    assert.equal(crossoverWeight(0.9, 0.1), 0.9);
    assert.ok(Math.abs(crossoverWeight(3, 1) - 0.75) < 1e-12);
    // −3 is better than −5: the first parent must be favoured, 5/8 (the paper's f1/(f1+f2) gives 3/8).
    assert.equal(crossoverWeight(-3, -5), 0.625);
    assert.equal(crossoverWeight(-5, -3), 0.375);
    assert.equal(crossoverWeight(2, 2), 0.5);
    assert.equal(crossoverWeight(0, 0), 0.5);
    assert.equal(crossoverWeight(0.5, -0.5), 1);
    // Scale invariance for either sign.
    assert.ok(Math.abs(crossoverWeight(-30, -50) - crossoverWeight(-3, -5)) < 1e-12);
  });

  test('parents of fitness 0.9 and 0.1 give children with ≈ 90 % of genes from the first', () => {
    const n = 20000;
    const p1 = new Uint8Array(n).fill(1);
    const p2 = new Uint8Array(n).fill(0);
    const [c1, c2] = crossover(p1, p2, 0.9, 0.1, 1, createRng(3));
    assert.equal(c1.length, n);
    assert.equal(c2.length, n);
    for (const c of [c1, c2]) {
      const share = keptCount(c) / n;
      assert.ok(Math.abs(share - 0.9) < 0.01, `share from parent 1: ${share}`);
    }
  });

  test('negative fitness favours the better (less negative) parent', () => {
    const n = 20000;
    const p1 = new Uint8Array(n).fill(1);
    const p2 = new Uint8Array(n).fill(0);
    const [c1] = crossover(p1, p2, -3.7, -11.1, 1, createRng(4)); // weight 11.1 / 14.8 = 0.75
    assert.ok(Math.abs(keptCount(c1) / n - 0.75) < 0.01);
    const [d1] = crossover(p1, p2, -11.1, -3.7, 1, createRng(4));
    assert.ok(Math.abs(keptCount(d1) / n - 0.25) < 0.01);
  });

  test('genes where the parents agree are inherited unchanged; rate 0 copies the parents', () => {
    const p1 = Uint8Array.from([1, 1, 0, 0, 1, 0]);
    const p2 = Uint8Array.from([1, 0, 0, 1, 1, 1]);
    for (let seed = 0; seed < 50; seed++) {
      for (const c of crossover(p1, p2, 1, 2, 1, createRng(seed))) {
        assert.equal(c[0], 1);
        assert.equal(c[2], 0);
        assert.equal(c[4], 1);
      }
    }
    const [a, b] = crossover(p1, p2, 1, 2, 0, createRng(0));
    assert.deepEqual(a, p1);
    assert.deepEqual(b, p2);
    assert.notEqual(a, p1, 'copies, not the same arrays');
  });
});

describe('mutation', () => {
  test('observed flip rate ≈ the set rate', () => {
    const n = 100000;
    const g = randomGenome(n, n / 2, createRng(5));
    const m = mutate(g, 0.01, createRng(6));
    let flips = 0;
    for (let i = 0; i < n; i++) if (g[i] !== m[i]) flips++;
    assert.ok(Math.abs(flips / n - 0.01) < 0.0015, `flip rate ${flips / n}`);
  });

  test('removal bias 1 only removes heads; 0.5 restores half as often as plain flip-bit', () => {
    const n = 100000;
    const g = randomGenome(n, n / 2, createRng(7));
    const onlyRemove = mutate(g, 0.05, createRng(8), 1);
    for (let i = 0; i < n; i++) if (g[i] === 0) assert.equal(onlyRemove[i], 0);
    assert.ok(keptCount(onlyRemove) < keptCount(g));
    const half = mutate(g, 0.05, createRng(9), 0.5);
    let restored = 0;
    let removed = 0;
    for (let i = 0; i < n; i++) {
      if (g[i] === 0 && half[i] === 1) restored++;
      if (g[i] === 1 && half[i] === 0) removed++;
    }
    // Expected: removed ≈ 0.05 · n/2 = 2500, restored ≈ 0.05 · 0.5 · n/2 = 1250.
    assert.ok(Math.abs(removed - 2500) < 200, `removed ${removed}`);
    assert.ok(Math.abs(restored - 1250) < 150, `restored ${restored}`);
  });
});

describe('repair and initialisation', () => {
  test('repair holds the exact budget and changes only what it must', () => {
    const rng = createRng(10);
    for (let trial = 0; trial < 200; trial++) {
      const g = randomGenome(40, rng.nextInt(41), rng);
      const target = rng.nextInt(41);
      const r = repair(g, target, rng);
      assert.equal(40 - keptCount(r), target);
      let changed = 0;
      for (let i = 0; i < 40; i++) if (g[i] !== r[i]) changed++;
      assert.equal(changed, Math.abs(40 - keptCount(g) - target));
    }
  });

  test('initial population removes round(s · genes) heads from each individual, deterministically', () => {
    const pop = initialPopulation(10, 40, 0.1, createRng(11));
    for (const g of pop) assert.equal(40 - keptCount(g), 4);
    assert.deepEqual(initialPopulation(10, 40, 0.1, createRng(11)), pop);
    assert.notDeepEqual(pop[0], pop[1]);
  });

  test('weighted initialisation removes the most removable heads most often', () => {
    const weights = Array.from({ length: 20 }, (_, i) => (i < 5 ? 100 : 1));
    const pop = initialPopulation(200, 20, 0.1, createRng(12), weights);
    let heavy = 0;
    for (const g of pop) for (let i = 0; i < 5; i++) if (!g[i]) heavy++;
    // Two removals per individual, almost always among the five heavy genes.
    assert.ok(heavy / (2 * 200) > 0.9, `share removed among heavy genes: ${heavy / 400}`);
  });
});
