/**
 * The one GA loop (search/evolve.ts) and the one tournament (search/selection.ts) reproduce, draw for draw, the
 * loops they replace: the weight GA's steady state ("second parent drawn from the others", children replace the
 * two worst) and the seeded GAs' (μ+λ), written out here as they were, on a known bit landscape. Same final
 * population, same scores, same rng state. The allocation search's (1+λ) is checked against the loop written out
 * plainly, and a (1+λ) loop saved from `onScored` resumes exactly.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { evolve, muPlusLambda, onePlusLambda, replaceWorst } from '../../src/search/evolve.js';
import { mutate, randomGenome, singlePointCrossover, uniformCrossover } from '../../src/search/operators.js';
import {
  byFitnessDesc,
  fitnessKey,
  sampleIndices,
  tournament,
  tournamentPair,
} from '../../src/search/selection.js';
import { createRng, type Rng } from '../../src/util/rng.js';

/** The tournament as it was before the exclusion option (samples, fittest wins, first sampled on ties). */
function oldTournament(fitness: ArrayLike<number>, size: number, rng: Rng): number {
  const picks = sampleIndices(fitness.length, Math.min(size, fitness.length), rng);
  let best = picks[0];
  for (const i of picks) if (fitnessKey(fitness[i]) > fitnessKey(fitness[best])) best = i;
  return best;
}

/** The weight GAs' second parent as it was: a tournament over the others, then the next index if it is a. */
function oldSecondParent(fitness: number[], a: number, size: number, rng: Rng): number {
  const others = fitness.map((f, i) => (i === a ? Number.NEGATIVE_INFINITY : f));
  let b = oldTournament(others, size, rng);
  if (b === a) b = (a + 1) % fitness.length;
  return b;
}

const GENES = 40;
const weight = Array.from({ length: GENES }, (_, i) => ((i * 13) % GENES) / GENES + 0.05);
/** A known landscape: fitness rewards removing light genes, with a NaN for one pattern. */
function fitnessOf(g: Uint8Array): number {
  let f = 0;
  for (let i = 0; i < g.length; i++) if (!g[i]) f += 0.6 - weight[i];
  return g[3] === 0 && g[5] === 0 && g[7] === 0 ? Number.NaN : f;
}

interface Ind {
  genome: Uint8Array;
  fitness: number;
}

describe('one tournament', () => {
  test('with an exclusion it picks and draws exactly as the weight GAs’ “second parent from the others”', () => {
    const gen = createRng(1);
    for (let trial = 0; trial < 400; trial++) {
      const n = 2 + gen.nextInt(9);
      const fitness = Array.from({ length: n }, () => {
        const r = gen.nextInt(10);
        return r === 0 ? Number.NaN : r === 1 ? Number.NEGATIVE_INFINITY : r < 4 ? 1 : gen.nextFloat();
      });
      const size = 1 + gen.nextInt(n + 1);
      const seed = gen.nextUint32();
      const x = createRng(seed);
      const y = createRng(seed);
      const a = oldTournament(fitness, size, x);
      assert.equal(tournament(fitness, size, y), a);
      assert.equal(tournament(fitness, size, y, a), oldSecondParent(fitness, a, size, x), `trial ${trial}`);
      assert.deepEqual(y.getState(), x.getState(), 'the same draws');
      const z = createRng(seed);
      const w = createRng(seed);
      const [pa, pb] = tournamentPair(fitness, size, z, true);
      const oa = oldTournament(fitness, size, w);
      assert.deepEqual([pa, pb], [oa, oldSecondParent(fitness, oa, size, w)]);
    }
  });
});

describe('one GA loop', () => {
  test('steady state (replace the two worst) equals the weight GA’s loop as it was', async () => {
    for (const seed of [1, 2, 3, 4]) {
      const generations = 12;
      const population = 8;
      // The loop as spaces/weights/ga.ts wrote it.
      const rng = createRng(seed);
      const pop = Array.from({ length: population }, () => randomGenome(GENES, 4, rng));
      const scores = pop.map(fitnessOf);
      const fittest = () => {
        let b = 0;
        for (let i = 1; i < pop.length; i++) if (byFitnessDesc(scores[i], scores[b]) < 0) b = i;
        return b;
      };
      const reached = () => scores[fittest()] >= 3;
      let iterations = 0;
      let stop = reached();
      while (!stop && iterations < generations) {
        const a = oldTournament(scores, 2, rng);
        const b = oldSecondParent(scores, a, 2, rng);
        const children = singlePointCrossover(pop[a], pop[b], 1, rng).map((c) => mutate(c, 0.05, rng, 1));
        const childScores = children.map(fitnessOf);
        const order = pop.map((_, i) => i).sort((x, y) => byFitnessDesc(scores[x], scores[y]) || y - x);
        for (const [k, i] of order.slice(-2).entries()) {
          pop[i] = children[k];
          scores[i] = childScores[k];
        }
        iterations++;
        stop = reached();
      }

      // The same through evolve.
      const rng2 = createRng(seed);
      const initial = Array.from({ length: population }, () => randomGenome(GENES, 4, rng2));
      const score = async (gs: Uint8Array[]) => gs.map((genome) => ({ genome, fitness: fitnessOf(genome) }));
      const best = (p: readonly Ind[]) =>
        p.reduce((b, x) => (byFitnessDesc(x.fitness, b.fitness) < 0 ? x : b));
      const out = await evolve<Uint8Array, Ind>(
        { generation: 0, pending: initial },
        {
          rng: rng2,
          score,
          parents: (p, r) =>
            tournamentPair(
              p.map((x) => x.fitness),
              2,
              r,
              true,
            ),
          crossover: (a, b, r) => singlePointCrossover(a.genome, b.genome, 1, r),
          mutate: (g, r) => mutate(g, 0.05, r, 1),
          survival: replaceWorst((x: Ind) => x.fitness),
          stop: (p, g) => best(p).fitness >= 3 || g >= generations,
        },
      );
      assert.ok(iterations > 0, 'it bred');
      assert.equal(out.generation, iterations, `seed ${seed}`);
      assert.deepEqual(
        out.population.map((x) => x.genome),
        pop,
      );
      assert.deepEqual(
        out.population.map((x) => x.fitness),
        scores,
      );
      assert.deepEqual(rng2.getState(), rng.getState());
    }
  });

  test('(μ+λ) equals the seeded GAs’ loop as it was', async () => {
    for (const seed of [5, 6, 7]) {
      const generations = 6;
      const population = 6;
      const sortByFitness = (gs: Uint8Array[], fs: number[]) => {
        const order = gs.map((_, i) => i).sort((x, y) => byFitnessDesc(fs[x], fs[y]) || x - y);
        return { gs: order.map((i) => gs[i]), fs: order.map((i) => fs[i]) };
      };
      // The loop as spaces/weights/seeded.ts wrote it.
      const rng = createRng(seed);
      const seedGenome = randomGenome(GENES, 10, rng);
      let pop = [seedGenome, ...Array.from({ length: population - 1 }, () => mutate(seedGenome, 0.1, rng))];
      let fit = pop.map(fitnessOf);
      ({ gs: pop, fs: fit } = sortByFitness(pop, fit));
      for (let gen = 1; gen <= generations; gen++) {
        const children: Uint8Array[] = [];
        while (children.length < population) {
          const a = oldTournament(fit, 2, rng);
          const b = oldSecondParent(fit, a, 2, rng);
          for (const c of uniformCrossover(pop[a], pop[b], rng)) {
            if (children.length < population) children.push(mutate(c, 0.1, rng));
          }
        }
        const merged = sortByFitness([...pop, ...children], [...fit, ...children.map(fitnessOf)]);
        pop = merged.gs.slice(0, population);
        fit = merged.fs.slice(0, population);
      }

      const rng2 = createRng(seed);
      const seed2 = randomGenome(GENES, 10, rng2);
      const initial = [seed2, ...Array.from({ length: population - 1 }, () => mutate(seed2, 0.1, rng2))];
      const out = await evolve<Uint8Array, Ind>(
        { generation: 0, pending: initial },
        {
          rng: rng2,
          score: async (gs) => gs.map((genome) => ({ genome, fitness: fitnessOf(genome) })),
          parents: (p, r) =>
            tournamentPair(
              p.map((x) => x.fitness),
              2,
              r,
              true,
            ),
          crossover: (a, b, r) => uniformCrossover(a.genome, b.genome, r),
          mutate: (g, r) => mutate(g, 0.1, r),
          survival: muPlusLambda(population, (x: Ind) => x.fitness),
          stop: (_p, g) => g >= generations,
        },
      );
      assert.equal(out.generation, generations);
      assert.deepEqual(
        out.population.map((x) => x.genome),
        pop,
      );
      assert.deepEqual(
        out.population.map((x) => x.fitness),
        fit,
      );
      assert.deepEqual(rng2.getState(), rng.getState());
    }
  });

  test('a loop resumed from a reported generation ends exactly as one that never stopped', async () => {
    const run = async (
      stopAt?: number,
      start?: { generation: number; pending: Uint8Array[] },
      state?: number[],
    ) => {
      const rng = createRng(9);
      if (state) rng.setState(state);
      const saved: Array<{ generation: number; next?: Uint8Array[]; rng: number[] }> = [];
      const out = await evolve<Uint8Array, Ind>(
        start ?? { generation: 0, pending: Array.from({ length: 6 }, () => randomGenome(GENES, 5, rng)) },
        {
          rng,
          score: async (gs) => gs.map((genome) => ({ genome, fitness: fitnessOf(genome) })),
          parents: (p, r) =>
            tournamentPair(
              p.map((x) => x.fitness),
              3,
              r,
              false,
            ),
          crossover: (a, b, r) => uniformCrossover(a.genome, b.genome, r),
          mutate: (g, r) => mutate(g, 0.05, r),
          survival: {
            offspring: (p) => p.length - 1,
            toScore: (p, kids) => [
              [...p].sort((x, y) => byFitnessDesc(x.fitness, y.fitness))[0].genome,
              ...kids,
            ],
            merge: (_p, s) => s,
          },
          stop: (_p, g) => g >= (stopAt ?? 8),
          onGeneration: ({ generation, next }) => {
            saved.push({ generation, next, rng: rng.getState() });
          },
        },
      );
      return { out, saved };
    };
    const whole = await run();
    const first = await run(4);
    const at3 = first.saved[3];
    const rest = await run(undefined, { generation: at3.generation + 1, pending: at3.next! }, at3.rng);
    assert.deepEqual(rest.out, whole.out);
  });

  test('(1+λ): the parent is replaced by the fittest child only when strictly fitter', () => {
    const f = (x: Ind) => x.fitness;
    const ind = (fitness: number, tag: number) => ({ genome: Uint8Array.of(tag), fitness });
    const s = onePlusLambda<Uint8Array, Ind>(3, f);
    const parent = ind(1, 0);
    assert.equal(s.offspring([parent]), 3);
    const kids = [Uint8Array.of(1), Uint8Array.of(2)];
    assert.deepEqual(s.toScore([parent], kids), kids);
    assert.deepEqual(s.merge([], [parent]), [parent], 'the initial parent');
    assert.deepEqual(s.merge([parent], []), [parent], 'nothing scored (a resumed loop)');
    assert.equal(s.merge([parent], [ind(0.5, 1), ind(1, 2)])[0], parent, 'a tie keeps the parent');
    const [a, b] = [ind(2, 1), ind(2, 2)];
    assert.equal(s.merge([parent], [ind(1.5, 3), a, b])[0], a, 'the earlier of two fittest children');
    assert.equal(s.merge([parent], [ind(Number.NaN, 1)])[0], parent, 'a NaN child does not replace');
    const nanParent = ind(Number.NaN, 0);
    assert.equal(s.merge([nanParent], [ind(5, 1)])[0], nanParent, 'nor is a NaN parent replaced');
  });

  test('(1+λ) equals the loop written out plainly; saved from onScored, it resumes exactly', async () => {
    const lambda = 5;
    const generations = 10;
    for (const seed of [11, 12, 13]) {
      // Plainly: λ mutants of the parent, the fittest (first on ties, NaN worst) replaces it when strictly fitter.
      const rng = createRng(seed);
      let parent = randomGenome(GENES, 8, rng);
      let best = fitnessOf(parent);
      const log: number[] = [];
      for (let g = 1; g <= generations; g++) {
        const kids = Array.from({ length: lambda }, () => mutate(parent, 0.1, rng));
        let k = 0;
        for (let i = 1; i < lambda; i++)
          if (fitnessKey(fitnessOf(kids[i])) > fitnessKey(fitnessOf(kids[k]))) k = i;
        if (fitnessOf(kids[k]) > best) [parent, best] = [kids[k], fitnessOf(kids[k])];
        log.push(best);
      }

      const run = async (
        stopAt: number,
        start?: { generation: number; population: Ind[]; rng: number[] },
      ) => {
        const r = createRng(seed);
        const first = start ? undefined : randomGenome(GENES, 8, r);
        if (start) r.setState(start.rng);
        const saved: Array<{ generation: number; population: Ind[]; rng: number[] }> = [];
        const reports: number[] = [];
        let scored = 0;
        const out = await evolve<Uint8Array, Ind>(
          start
            ? { generation: start.generation, pending: [], population: start.population }
            : { generation: 0, pending: [first!] },
          {
            rng: r,
            score: async (gs) => {
              scored += gs.length;
              return gs.map((genome) => ({ genome, fitness: fitnessOf(genome) }));
            },
            parents: () => [0, 0],
            crossover: (a) => [a.genome],
            mutate: (g, rr) => mutate(g, 0.1, rr),
            survival: onePlusLambda(lambda, (x: Ind) => x.fitness),
            onScored: ({ generation, population, scored: s }) => {
              if (generation > 0 && s.length > 0) reports.push(population[0].fitness);
              saved.push({ generation, population: [...population], rng: r.getState() });
            },
            stop: (_p, g) => g >= stopAt,
          },
        );
        return { out, saved, reports, scored };
      };
      const whole = await run(generations);
      assert.deepEqual(whole.reports, log, `seed ${seed}`);
      assert.deepEqual(whole.out.population[0].genome, parent);
      assert.equal(whole.scored, 1 + generations * lambda);
      const cut = await run(4);
      const at = cut.saved[cut.saved.length - 1];
      const rest = await run(generations, at);
      assert.deepEqual(rest.out, whole.out);
      assert.deepEqual([...cut.reports, ...rest.reports], log, 'the resumed loop scores nothing twice');
      assert.equal(cut.scored + rest.scored, whole.scored);
    }
  });
});
