/**
 * The Survival of the Smallest GA over head masks (Algorithm 1), with what the paper leaves out added as
 * options: elitism, a fitness cache (in the objective), multi-fidelity scoring, an exact-budget repair, and an
 * informed initial population.
 *
 * One generation: score the population → log → stop? → select, cross over, mutate (repair) → save state.
 * The state saved after each generation holds everything the next one needs (population, RNG state, best so
 * far, counters), so a run resumed from it continues exactly as if it had never stopped.
 */

import { type Genome, genomeFromKey, genomeKey, keptParameters, sparsity } from '../masks/heads.js';
import { createRng, type Rng } from '../util/rng.js';
import { type FitnessSpec, fitnessOf } from './fitness.js';
import type { Fidelity, HeadEval, HeadObjective } from './objective.js';
import { byFitnessDesc, crossover, initialPopulation, mutate, repair, tournament } from './operators.js';

export interface GaOptions {
  population: number;
  generations: number;
  tournamentSize: number;
  crossoverRate: number;
  mutationRate: number;
  /** Share of chosen genes that mutation only removes (0 = plain flip-bit). */
  removalBias: number;
  /** Share of heads removed in each initial individual. */
  sInitial: number;
  fitness: FitnessSpec;
  /** Stop when the best fitness reaches this (τ). */
  fitnessThreshold?: number;
  /** Stop when any individual's sparsity reaches this (S). */
  maxSparsity?: number;
  /** Exact number of heads removed in every individual (repair after every variation). */
  removeCount?: number;
  /** Individuals copied unchanged into the next generation. */
  elitism: number;
  /** Multi-fidelity: everyone is scored on the 'low' token budget, the best `promote` re-scored on 'full'. */
  multiFidelity: boolean;
  promote: number;
  /** Per-gene removability weights for the initial population (e.g. from single-head ablation). */
  initWeights?: number[];
  seed: number;
}

export interface Individual {
  genome: Genome;
  fitness: number;
  quality: number;
  sparsity: number;
  fidelity: Fidelity;
}

/**
 * One line of the run log: one evaluated individual. JSON has no Infinity or NaN: a candidate whose quality is
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
export function initialState(
  opts: GaOptions,
  genes: number,
  counters = { evaluations: 0, forwardPasses: 0 },
): GaState {
  const rng = createRng(opts.seed);
  let pop = initialPopulation(opts.population, genes, opts.sInitial, rng, opts.initWeights);
  if (opts.removeCount !== undefined) pop = pop.map((g) => repair(g, opts.removeCount!, rng));
  return {
    version: 1,
    generation: 0,
    population: pop.map(genomeKey),
    rng: rng.getState(),
    best: null,
    evaluations: counters.evaluations,
    forwardPasses: counters.forwardPasses,
    done: false,
  };
}

/** Scores a population: all at full fidelity, or all at low and the best `promote` again at full. */
async function scorePopulation(
  objective: HeadObjective,
  opts: GaOptions,
  generation: number,
  population: Genome[],
  cb: GaCallbacks,
): Promise<Individual[]> {
  const log = async (i: number, g: Genome, fidelity: Fidelity, e: HeadEval, fit: number, cached: boolean) => {
    await cb.onEvaluation?.({
      generation,
      index: i,
      genome: genomeKey(g),
      sparsity: sparsity(g),
      keptParameters: keptParameters(objective.config, g, objective.totalParameters),
      quality: e.quality,
      metric: objective.metric,
      fitness: fit,
      fidelity,
      tokens: e.tokens,
      cached,
      ms: Math.round(e.ms),
      ...(Number.isFinite(e.quality) ? {} : { nonFinite: true as const }),
    });
  };
  const score = async (i: number, g: Genome, fidelity: Fidelity): Promise<Individual> => {
    const before = objective.evaluations();
    const e = await objective.evaluate(g, fidelity);
    const s = sparsity(g);
    const fit = fitnessOf(opts.fitness, e.quality, s);
    await log(i, g, fidelity, e, fit, objective.evaluations() === before);
    return { genome: g, fitness: fit, quality: e.quality, sparsity: s, fidelity };
  };
  const first: Fidelity = opts.multiFidelity ? 'low' : 'full';
  const scored: Individual[] = [];
  for (let i = 0; i < population.length; i++) scored.push(await score(i, population[i], first));
  if (opts.multiFidelity && opts.promote > 0) {
    const order = rankByFitness(scored).slice(0, opts.promote);
    for (const i of order) scored[i] = await score(i, population[i], 'full');
  }
  return scored;
}

/** Indices by descending fitness; ties keep population order. */
function rankByFitness(pop: Individual[]): number[] {
  return pop.map((_, i) => i).sort((a, b) => byFitnessDesc(pop[a].fitness, pop[b].fitness) || a - b);
}

/** The next population: elites first, then children of tournament-selected parents. */
export function nextGeneration(scored: Individual[], opts: GaOptions, rng: Rng): Genome[] {
  const fitness = scored.map((s) => s.fitness);
  const next: Genome[] = rankByFitness(scored)
    .slice(0, Math.min(opts.elitism, scored.length))
    .map((i) => scored[i].genome.slice());
  while (next.length < opts.population) {
    const a = tournament(fitness, opts.tournamentSize, rng);
    const b = tournament(fitness, opts.tournamentSize, rng);
    const children = crossover(
      scored[a].genome,
      scored[b].genome,
      fitness[a],
      fitness[b],
      opts.crossoverRate,
      rng,
    );
    for (let c of children) {
      if (next.length >= opts.population) break;
      c = mutate(c, opts.mutationRate, rng, opts.removalBias);
      if (opts.removeCount !== undefined) c = repair(c, opts.removeCount, rng);
      next.push(c);
    }
  }
  return next;
}

/** Mean of the finite values (−Infinity when there are none), so one failed candidate does not hide the rest. */
function meanFinite(values: number[]): number {
  const finite = values.filter(Number.isFinite);
  return finite.length === 0 ? Number.NEGATIVE_INFINITY : finite.reduce((a, b) => a + b, 0) / finite.length;
}

/** Runs (or continues) the GA from `state` until a stop criterion; returns the final state. */
export async function runGa(
  objective: HeadObjective,
  opts: GaOptions,
  state: GaState,
  cb: GaCallbacks = {},
): Promise<GaState> {
  const rng = createRng(opts.seed);
  rng.setState(state.rng);
  // Counters continue from the state: this process adds only what it runs from here on.
  const evalsAtStart = objective.evaluations();
  const passesAtStart = objective.forwardPasses();
  let current = { ...state };
  while (!current.done) {
    const generation = current.generation;
    const population = current.population.map(genomeFromKey);
    const scored = await scorePopulation(objective, opts, generation, population, cb);

    // A saved state holds null where the best so far was non-finite (JSON has no −Infinity).
    let best = current.best && {
      ...current.best,
      fitness: current.best.fitness ?? Number.NEGATIVE_INFINITY,
      quality: current.best.quality ?? Number.POSITIVE_INFINITY,
    };
    for (const s of scored) {
      if (s.fidelity !== 'full') continue;
      if (!best || byFitnessDesc(s.fitness, best.fitness) < 0) {
        best = { genome: genomeKey(s.genome), fitness: s.fitness, quality: s.quality, sparsity: s.sparsity };
      }
    }
    const top = scored[rankByFitness(scored)[0]];
    const maxSparsity = Math.max(...scored.map((s) => s.sparsity));
    let stop: GenerationSummary['stop'];
    if (opts.fitnessThreshold !== undefined && best && best.fitness >= opts.fitnessThreshold)
      stop = 'threshold';
    else if (opts.maxSparsity !== undefined && maxSparsity >= opts.maxSparsity) stop = 'max-sparsity';
    else if (generation + 1 >= opts.generations) stop = 'generations';

    const nextPop = stop ? population : nextGeneration(scored, opts, rng);
    const summary: GenerationSummary = {
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
    current = {
      version: 1,
      generation: stop ? generation : generation + 1,
      population: nextPop.map(genomeKey),
      rng: rng.getState(),
      best,
      evaluations: summary.evaluations,
      forwardPasses: summary.forwardPasses,
      done: stop !== undefined,
      stop,
    };
    await cb.onGeneration?.(summary, current);
  }
  return current;
}
