/**
 * The one GA loop, generic over the genome and the scored individual, with pluggable operators in pymoo's split:
 * the caller's initial population, parent selection, variation (crossover, then mutation of each child) and
 * survival (which scored individuals form the next population). Scoring is the caller's `score`, called once
 * per generation with every genome that generation needs scored (one `Objective.evaluateMany`), so a worker pool
 * behind the objective speeds up every GA at once.
 *
 * One generation: score what needs scoring → merge into the population (survival) → report the scored
 * generation → stop? → breed (select, cross over, mutate) → report. The rng is drawn only by selection and variation, in the same order whatever
 * the survival or the scorer, so a loop resumed from a reported generation (its pending genomes, carried
 * population and rng state) continues exactly.
 *
 * Usage (the head GA, `ga.ts`, is the full example):
 *
 *   const { population } = await evolve(
 *     { generation: 0, pending: initialGenomes },
 *     {
 *       rng,
 *       score: (genomes, generation) => scoreThem(genomes),          // one evaluateMany
 *       fitness: (ind) => ind.fitness,
 *       parents: (pop, rng) => tournamentPair(pop.map((p) => p.fitness), 2, rng, true),
 *       crossover: (a, b, rng) => singlePointCrossover(a.genome, b.genome, 1, rng),
 *       mutate: (g, rng) => mutate(g, 0.05, rng, 1),
 *       survival: replaceWorst((ind) => ind.fitness, 2),   // or generational(…), muPlusLambda(…), onePlusLambda(…)
 *       stop: (pop, generation) => generation >= 5,
 *     },
 *   );
 */
import type { Rng } from '../util/rng.js';
import { byFitnessDesc } from './selection.js';

/** A scored individual: at least its genome. */
export interface Scored<G> {
  genome: G;
}

/**
 * How a population moves on (the replacement step). `offspring` says how many children to breed from the scored
 * population, `toScore` which genomes the next scoring gets (the children, plus whatever of the population is
 * scored again), `merge` the next scored population from the current one and those scored genomes (the current
 * one is empty for the initial population).
 */
export interface Survival<G, I extends Scored<G>> {
  offspring(population: readonly I[]): number;
  toScore(population: readonly I[], children: G[]): G[];
  merge(population: readonly I[], scored: I[]): I[];
}

/**
 * Generational with elitism (the head GA): the `elitism` fittest (ties: population order) go first, unchanged,
 * then `size − elites` children; the whole next population is scored again (elites come from the cache).
 */
export function generational<G, I extends Scored<G>>(
  size: number,
  elitism: number,
  fitness: (ind: I) => number,
): Survival<G, I> {
  const elites = (pop: readonly I[]) => rankByFitness(pop, fitness).slice(0, Math.min(elitism, pop.length));
  return {
    offspring: (pop) => size - elites(pop).length,
    toScore: (pop, children) => [...elites(pop).map((i) => pop[i].genome), ...children],
    merge: (_pop, scored) => scored,
  };
}

/**
 * Steady state (the paper's weight GA): `children` children a generation, scored alone, each taking the place of
 * one of the population's worst (the later index first on ties), so the best never gets worse. The initial
 * population is taken as scored.
 */
export function replaceWorst<G, I extends Scored<G>>(
  fitness: (ind: I) => number,
  children = 2,
): Survival<G, I> {
  return {
    offspring: () => children,
    toScore: (_pop, kids) => kids,
    merge: (pop, scored) => {
      if (pop.length === 0) return scored;
      const next = [...pop];
      const order = pop
        .map((_, i) => i)
        .sort((x, y) => byFitnessDesc(fitness(pop[x]), fitness(pop[y])) || y - x);
      const worst = order.slice(-scored.length);
      for (const [k, i] of worst.entries()) next[i] = scored[k];
      return next;
    },
  };
}

/**
 * (μ+λ) (the seeded GAs): `size` children a generation; parents and children together, sorted by fitness (ties:
 * parents first, then children, each in order), the `size` fittest survive. The initial population is sorted the
 * same way.
 */
export function muPlusLambda<G, I extends Scored<G>>(
  size: number,
  fitness: (ind: I) => number,
): Survival<G, I> {
  return {
    offspring: () => size,
    toScore: (_pop, kids) => kids,
    merge: (pop, scored) => {
      const merged = [...pop, ...scored];
      return rankByFitness(merged, fitness)
        .map((i) => merged[i])
        .slice(0, size);
    },
  };
}

/**
 * (1+λ) (the allocation search): one parent, `children` children a generation (breed them with
 * `parents: () => [0, 0]` and a crossover that hands back the parent's genome, so each child is a mutant of it);
 * the parent is replaced by the fittest child (ties: the earlier) only when that child is strictly fitter, by a
 * plain `>` (a NaN neither replaces nor is replaced). The initial population is the one parent, scored; a merge
 * with nothing scored (a resumed loop's first generation) keeps the population as it is.
 */
export function onePlusLambda<G, I extends Scored<G>>(
  children: number,
  fitness: (ind: I) => number,
): Survival<G, I> {
  return {
    offspring: () => children,
    toScore: (_pop, kids) => kids,
    merge: (pop, scored) => {
      if (pop.length === 0 || scored.length === 0) return pop.length === 0 ? scored : [...pop];
      const best = scored[rankByFitness(scored, fitness)[0]];
      return fitness(best) > fitness(pop[0]) ? [best] : [pop[0]];
    },
  };
}

/** Indices by descending fitness; ties keep population order. */
export function rankByFitness<I>(pop: readonly I[], fitness: (ind: I) => number): number[] {
  return pop.map((_, i) => i).sort((a, b) => byFitnessDesc(fitness(pop[a]), fitness(pop[b])) || a - b);
}

export interface EvolveOptions<G, I extends Scored<G>> {
  rng: Rng;
  /** Scores genomes for a generation, result i for genomes[i] (one `evaluateMany`). */
  score(genomes: G[], generation: number): Promise<I[]>;
  /** Two parents, as indices into the population. */
  parents(population: readonly I[], rng: Rng): [number, number];
  /** Children of two parents (pure: the parents are not modified). */
  crossover(a: I, b: I, rng: Rng): G[];
  /** A child's mutation, with any repair. */
  mutate(g: G, rng: Rng): G;
  survival: Survival<G, I>;
  /**
   * Called once a generation is scored and merged, before `stop` and breeding, with what was just scored: the
   * rng has not yet drawn for the next generation, so a loop that saves its population and rng state here
   * resumes exactly from `{ generation, pending: [], population }`.
   */
  onScored?(g: ScoredGeneration<I>): void | Promise<void>;
  /** Called once a generation is scored and merged: stop here? (may compute the generation's summary). */
  stop(population: readonly I[], generation: number): boolean | Promise<boolean>;
  /**
   * Called at the end of every generation, after breeding: `next` is what the next generation will score
   * (undefined when the loop stops), with the rng already past this generation's draws — save state here.
   */
  onGeneration?(g: EvolveGeneration<G, I>): void | Promise<void>;
}

export interface EvolveGeneration<G, I> {
  generation: number;
  population: readonly I[];
  /** Genomes the next generation scores; undefined after the last generation. */
  next?: G[];
}

export interface ScoredGeneration<I> {
  generation: number;
  /** The population after the merge. */
  population: readonly I[];
  /** What this generation's `score` returned (empty for a resumed loop's first generation with nothing pending). */
  scored: readonly I[];
}

/** Where the loop starts: a fresh run's initial genomes, or a resumed run's pending genomes and population. */
export interface EvolveStart<G, I> {
  generation: number;
  /** Genomes to score first (the initial population, or a saved generation's). */
  pending: G[];
  /** The scored population they merge into (empty at the start, and for generational survival). */
  population?: I[];
}

/**
 * Children of the population: while fewer than `count`, two parents, their crossover, and each child mutated
 * as long as there is room (a child without room is neither mutated nor kept).
 */
export function breed<G, I extends Scored<G>>(
  population: readonly I[],
  count: number,
  opts: Pick<EvolveOptions<G, I>, 'parents' | 'crossover' | 'mutate' | 'rng'>,
): G[] {
  const children: G[] = [];
  while (children.length < count) {
    const [a, b] = opts.parents(population, opts.rng);
    for (const c of opts.crossover(population[a], population[b], opts.rng)) {
      if (children.length >= count) break;
      children.push(opts.mutate(c, opts.rng));
    }
  }
  return children;
}

/** Runs generations from `start` until `stop`; returns the last population and its generation. */
export async function evolve<G, I extends Scored<G>>(
  start: EvolveStart<G, I>,
  opts: EvolveOptions<G, I>,
): Promise<{ population: I[]; generation: number }> {
  let generation = start.generation;
  let pending = start.pending;
  let population: I[] = start.population ?? [];
  for (;;) {
    const scored = await opts.score(pending, generation);
    population = opts.survival.merge(population, scored);
    await opts.onScored?.({ generation, population, scored });
    if (await opts.stop(population, generation)) {
      await opts.onGeneration?.({ generation, population });
      return { population, generation };
    }
    const children = breed(population, opts.survival.offspring(population), opts);
    pending = opts.survival.toScore(population, children);
    await opts.onGeneration?.({ generation, population, next: pending });
    generation++;
  }
}
