/**
 * The Survival of the Smallest GA (Algorithm 1), generic over the genome: the space's operators (initial
 * population, crossover, mutation with any repair) are passed in; the generic loop (`evolve.ts`, generational
 * survival with elitism, tournament parents) runs the generations, and this adds multi-fidelity scoring (one
 * `evaluateMany` per population and per promotion), the run log, the summaries and the stop criteria. What the
 * paper leaves out is added as options: elitism, a fitness cache (in the objective), multi-fidelity scoring; the
 * operators over bits add an exact-budget repair and an informed initial population (`operators.ts`).
 *
 * One generation: score the population → log → stop? → select, cross over, mutate (repair) → save state.
 * The state saved after each generation holds everything the next one needs (population, RNG state, best so
 * far, counters), so a run resumed from it continues exactly as if it had never stopped.
 */

import { GenepruneError } from '../errors.js';
import { createRng, type Rng } from '../util/rng.js';
import { evolve, generational, rankByFitness } from './evolve.js';
import { type FitnessSpec, fitnessOf } from './fitness.js';
import type { Fidelity, Objective } from './objective.js';
import { byFitnessDesc, tournamentPair } from './selection.js';
import type { SearchSpace } from './space.js';

/** The variation a GA applies, for one kind of genome. Pure: inputs are never modified. */
export interface GaOperators<G> {
  /** The generation-0 population (already repaired where the space holds a budget). */
  initial(size: number, rng: Rng): G[];
  /** Two children of two parents, given the parents' fitness. */
  crossover(a: G, b: G, fitnessA: number, fitnessB: number, rng: Rng): [G, G];
  /** Mutation of a child, then any repair. */
  vary(g: G, rng: Rng): G;
}

export interface GaOptions<G> {
  population: number;
  generations: number;
  tournamentSize: number;
  operators: GaOperators<G>;
  fitness: FitnessSpec;
  /** Stop when the best fitness reaches this (τ). */
  fitnessThreshold?: number;
  /** Stop when any individual's sparsity reaches this (S). */
  maxSparsity?: number;
  /** Individuals copied unchanged into the next generation. */
  elitism: number;
  /** Multi-fidelity: everyone is scored on the 'low' token budget, the best `promote` re-scored on 'full'. */
  multiFidelity: boolean;
  promote: number;
  seed: number;
}

export interface Individual<G> {
  genome: G;
  fitness: number;
  quality: number;
  sparsity: number;
  fidelity: Fidelity;
}

/**
 * One line of the run log: one evaluated individual, its genome in the space's text. JSON has no Infinity or NaN: a candidate whose quality is
 * non-finite is logged with `nonFinite: true` and quality and fitness null (read back with qualityFromLog).
 */
export interface EvaluationRecord {
  generation: number;
  index: number;
  genome: string;
  sparsity: number;
  keptParameters: number;
  quality: number;
  metric: string;
  fitness: number;
  fidelity: Fidelity;
  tokens: number;
  cached: boolean;
  ms: number;
  nonFinite?: true;
}

export interface GenerationSummary {
  generation: number;
  bestFitness: number;
  bestQuality: number;
  bestSparsity: number;
  meanFitness: number;
  maxSparsity: number;
  /** Individuals whose quality was non-finite (fitness −Infinity); they are left out of meanFitness. */
  nonFinite: number;
  evaluations: number;
  forwardPasses: number;
  /** Best so far across generations (full fidelity). */
  best: { genome: string; fitness: number; quality: number; sparsity: number };
  stop?: 'generations' | 'threshold' | 'max-sparsity';
}

export interface GaState {
  version: 1;
  /** The generation the saved population belongs to (not yet scored). */
  generation: number;
  population: string[];
  rng: number[];
  best: GenerationSummary['best'] | null;
  evaluations: number;
  forwardPasses: number;
  done: boolean;
  stop?: GenerationSummary['stop'];
}

export interface GaCallbacks {
  onEvaluation?: (r: EvaluationRecord) => void | Promise<void>;
  onGeneration?: (s: GenerationSummary, state: GaState) => void | Promise<void>;
}

/** The generation-0 state; `counters` are the work already spent (e.g. scoring the dense model). */
export function initialState<G>(
  opts: GaOptions<G>,
  space: SearchSpace<G>,
  counters = { evaluations: 0, forwardPasses: 0 },
): GaState {
  const rng = createRng(opts.seed);
  const pop = opts.operators.initial(opts.population, rng);
  return {
    version: 1,
    generation: 0,
    population: pop.map((g) => space.encode(g)),
    rng: rng.getState(),
    best: null,
    evaluations: counters.evaluations,
    forwardPasses: counters.forwardPasses,
    done: false,
  };
}

/**
 * Scores a population: all at full fidelity, or all at low and the best `promote` again at full; one
 * `evaluateMany` for each, then the log lines in index order (each carries the evaluation's own `cached` flag).
 */
async function scorePopulation<G>(
  objective: Objective<G>,
  opts: GaOptions<G>,
  generation: number,
  population: G[],
  cb: GaCallbacks,
): Promise<Individual<G>[]> {
  const space = objective.space;
  const score = async (indices: number[], fidelity: Fidelity): Promise<Individual<G>[]> => {
    const genomes = indices.map((i) => population[i]);
    const results = await objective.evaluateMany(genomes, fidelity);
    const out: Individual<G>[] = [];
    for (const [k, i] of indices.entries()) {
      const g = genomes[k];
      const { evaluation: e, cached } = results[k];
      const s = space.sparsity(g);
      const fit = fitnessOf(opts.fitness, e.quality, s);
      await cb.onEvaluation?.({
        generation,
        index: i,
        genome: space.encode(g),
        sparsity: s,
        keptParameters: space.keptParameters(g),
        quality: e.quality,
        metric: objective.metric,
        fitness: fit,
        fidelity,
        tokens: e.tokens,
        cached,
        ms: Math.round(e.ms),
        ...(Number.isFinite(e.quality) ? {} : { nonFinite: true as const }),
      });
      out.push({ genome: g, fitness: fit, quality: e.quality, sparsity: s, fidelity });
    }
    return out;
  };
  const first: Fidelity = opts.multiFidelity ? 'low' : 'full';
  const scored = await score(
    population.map((_, i) => i),
    first,
  );
  if (opts.multiFidelity && opts.promote > 0) {
    const order = rankByFitness(scored, fitnessOfIndividual).slice(0, opts.promote);
    const promoted = await score(order, 'full');
    for (const [k, i] of order.entries()) scored[i] = promoted[k];
  }
  return scored;
}

const fitnessOfIndividual = <G>(ind: Individual<G>) => ind.fitness;

/** The head GA's parents: two independent tournaments over the whole population. */
function gaParents<G>(opts: GaOptions<G>) {
  return (pop: readonly Individual<G>[], rng: Rng): [number, number] =>
    tournamentPair(
      pop.map((s) => s.fitness),
      opts.tournamentSize,
      rng,
      false,
    );
}

/** The head GA's crossover: the space's operator, given the parents' fitness. */
function gaCrossover<G>(opts: GaOptions<G>) {
  return (a: Individual<G>, b: Individual<G>, rng: Rng): G[] =>
    opts.operators.crossover(a.genome, b.genome, a.fitness, b.fitness, rng);
}

/** Mean of the finite values (−Infinity when there are none), so one failed candidate does not hide the rest. */
function meanFinite(values: number[]): number {
  const finite = values.filter(Number.isFinite);
  return finite.length === 0 ? Number.NEGATIVE_INFINITY : finite.reduce((a, b) => a + b, 0) / finite.length;
}

/**
 * Runs (or continues) the GA from `state` until a stop criterion; returns the final state. The loop is
 * `evolve` with generational survival and elitism; this adds the multi-fidelity scoring, the log, the
 * summaries, the stop criteria and the state.
 */
export async function runGa<G>(
  objective: Objective<G>,
  opts: GaOptions<G>,
  state: GaState,
  cb: GaCallbacks = {},
): Promise<GaState> {
  if (state.done) return { ...state };
  const rng = createRng(opts.seed);
  rng.setState(state.rng);
  // Counters continue from the state: this process adds only what it runs from here on.
  const evalsAtStart = objective.evaluations();
  const passesAtStart = objective.forwardPasses();
  const space = objective.space;
  let current = { ...state };
  // A saved state holds null where the best so far was non-finite (JSON has no −Infinity).
  let best = current.best && {
    ...current.best,
    fitness: current.best.fitness ?? Number.NEGATIVE_INFINITY,
    quality: current.best.quality ?? Number.POSITIVE_INFINITY,
  };
  let summary: GenerationSummary | undefined;
  await evolve<G, Individual<G>>(
    { generation: state.generation, pending: state.population.map((text) => decodeOrThrow(space, text)) },
    {
      rng,
      score: (population, generation) => scorePopulation(objective, opts, generation, population, cb),
      parents: gaParents(opts),
      crossover: gaCrossover(opts),
      mutate: (g, r) => opts.operators.vary(g, r),
      // Elites first (genomes are values: operators never change their inputs, so elites are shared, not
      // copied), then children of tournament-selected parents.
      survival: generational(opts.population, opts.elitism, fitnessOfIndividual),
      stop: (scored, generation) => {
        for (const s of scored) {
          if (s.fidelity !== 'full') continue;
          if (!best || byFitnessDesc(s.fitness, best.fitness) < 0) {
            best = {
              genome: space.encode(s.genome),
              fitness: s.fitness,
              quality: s.quality,
              sparsity: s.sparsity,
            };
          }
        }
        const top = scored[rankByFitness(scored, fitnessOfIndividual)[0]];
        const maxSparsity = Math.max(...scored.map((s) => s.sparsity));
        let stop: GenerationSummary['stop'];
        if (opts.fitnessThreshold !== undefined && best && best.fitness >= opts.fitnessThreshold)
          stop = 'threshold';
        else if (opts.maxSparsity !== undefined && maxSparsity >= opts.maxSparsity) stop = 'max-sparsity';
        else if (generation + 1 >= opts.generations) stop = 'generations';
        summary = {
          generation,
          bestFitness: top.fitness,
          bestQuality: top.quality,
          bestSparsity: top.sparsity,
          meanFitness: meanFinite(scored.map((s) => s.fitness)),
          nonFinite: scored.filter((s) => !Number.isFinite(s.quality)).length,
          maxSparsity,
          evaluations: state.evaluations + objective.evaluations() - evalsAtStart,
          forwardPasses: state.forwardPasses + objective.forwardPasses() - passesAtStart,
          best: best!,
          stop,
        };
        return stop !== undefined;
      },
      onGeneration: async ({ generation, population, next }) => {
        const s = summary!;
        const stop = s.stop;
        current = {
          version: 1,
          generation: stop ? generation : generation + 1,
          population: (next ?? population.map((ind) => ind.genome)).map((g) => space.encode(g)),
          rng: rng.getState(),
          best,
          evaluations: s.evaluations,
          forwardPasses: s.forwardPasses,
          done: stop !== undefined,
          stop,
        };
        await cb.onGeneration?.(s, current);
      },
    },
  );
  return current;
}

/** A genome from a state's text; the run directory validated the texts before, so a failure is a bug. */
export function decodeOrThrow<G>(space: SearchSpace<G>, text: string): G {
  const g = space.decode(text);
  if (g === undefined) {
    throw new GenepruneError('internal', `not a genome of this ${space.unit} space: ${text.slice(0, 40)}`);
  }
  return g;
}
