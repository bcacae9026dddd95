/**
 * NSGA-II, generic over the genome: one run returns the Pareto front of (quality ↓, kept parameters ↓) instead
 * of one mask per target sparsity. The building blocks (non-dominated sorting, crowding, selection) are pure
 * functions of objective vectors, all minimised; `runNsga` wires them to an Objective and the space's operators
 * (`bitNsgaOperators` for bit genomes) and is resumable from the `NsgaState` it reports after every generation.
 */
import { GenepruneError } from '../errors.js';
import type { Rng } from '../util/rng.js';
import type { Fidelity, Objective } from './objective.js';
import type { SearchSpace } from './space.js';

/** An objective vector; every component is minimised. */
export type Objectives = readonly number[];

/** True when `a` is no worse than `b` in every objective and strictly better in at least one. */
export function dominates(a: Objectives, b: Objectives): boolean {
  if (a.length !== b.length) throw new Error(`dominates: ${a.length} vs ${b.length} objectives`);
  let better = false;
  for (let m = 0; m < a.length; m++) {
    if (a[m] > b[m]) return false;
    if (a[m] < b[m]) better = true;
  }
  return better;
}

/**
 * Deb's fast non-dominated sort: fronts of point indices, best first. Each front lists indices in ascending
 * order so results do not depend on traversal order. Equal points do not dominate each other and share a front.
 */
export function fastNonDominatedSort(points: readonly Objectives[]): number[][] {
  const n = points.length;
  const beats: number[][] = Array.from({ length: n }, () => []);
  const beatenBy = new Array<number>(n).fill(0);
  for (let p = 0; p < n; p++) {
    for (let q = p + 1; q < n; q++) {
      if (dominates(points[p], points[q])) {
        beats[p].push(q);
        beatenBy[q]++;
      } else if (dominates(points[q], points[p])) {
        beats[q].push(p);
        beatenBy[p]++;
      }
    }
  }
  const fronts: number[][] = [];
  let current: number[] = [];
  for (let p = 0; p < n; p++) if (beatenBy[p] === 0) current.push(p);
  while (current.length > 0) {
    fronts.push(current);
    const next: number[] = [];
    for (const p of current) {
      for (const q of beats[p]) if (--beatenBy[q] === 0) next.push(q);
    }
    current = next.sort((a, b) => a - b);
  }
  return fronts;
}

/**
 * Crowding distance of each member of `front` (aligned with it): per objective, the normalised gap between
 * its two neighbours, summed. The extremes of every objective get Infinity so the front's ends are kept.
 * Non-finite values (a failed score is +Infinity) sort to the ends and count as extremes; the range and the
 * gaps of the others are taken over the finite values only, so one failure does not blank out an objective.
 */
export function crowdingDistance(points: readonly Objectives[], front: readonly number[]): number[] {
  const k = front.length;
  const dist = new Array<number>(k).fill(0);
  if (k <= 2) return dist.fill(Number.POSITIVE_INFINITY);
  const objectives = points[front[0]].length;
  for (let m = 0; m < objectives; m++) {
    const value = (i: number) => points[front[i]][m];
    // Ties broken by point index, so equal values give a reproducible order.
    const order = Array.from({ length: k }, (_, i) => i).sort(
      (a, b) => compare(value(a), value(b)) || front[a] - front[b],
    );
    const finite = order.filter((i) => Number.isFinite(value(i)));
    for (const i of order) if (!Number.isFinite(value(i))) dist[i] = Number.POSITIVE_INFINITY;
    if (finite.length === 0) continue;
    const lo = value(finite[0]);
    const hi = value(finite[finite.length - 1]);
    dist[finite[0]] = Number.POSITIVE_INFINITY;
    dist[finite[finite.length - 1]] = Number.POSITIVE_INFINITY;
    // A flat objective says nothing about spacing.
    if (!(hi > lo)) continue;
    for (let j = 1; j < finite.length - 1; j++) {
      dist[finite[j]] += (value(finite[j + 1]) - value(finite[j - 1])) / (hi - lo);
    }
  }
  return dist;
}

/** Three-way comparison that, unlike subtraction, is safe for two Infinities. */
function compare(a: number, b: number): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Rank (0 = first front) and crowding distance of every point. */
export interface Ranking {
  rank: number[];
  crowding: number[];
}

export function rankAndCrowd(points: readonly Objectives[]): Ranking {
  const rank = new Array<number>(points.length).fill(0);
  const crowding = new Array<number>(points.length).fill(0);
  fastNonDominatedSort(points).forEach((front, r) => {
    const d = crowdingDistance(points, front);
    front.forEach((p, i) => {
      rank[p] = r;
      crowding[p] = d[i];
    });
  });
  return { rank, crowding };
}

/** The crowded-comparison order: negative when `a` is preferred (lower rank, then larger crowding). */
export function crowdedCompare(
  a: { rank: number; crowding: number },
  b: { rank: number; crowding: number },
): number {
  if (a.rank !== b.rank) return a.rank - b.rank;
  if (a.crowding === b.crowding) return 0;
  return a.crowding > b.crowding ? -1 : 1;
}

/** Binary tournament on the crowded comparison: two distinct random entrants, the better wins (ties: the first). */
export function binaryTournament(ranking: Ranking, rng: Rng): number {
  const n = ranking.rank.length;
  if (n === 0) throw new Error('binaryTournament: empty population');
  if (n === 1) return 0;
  const i = rng.nextInt(n);
  let j = rng.nextInt(n - 1);
  if (j >= i) j++;
  const at = (p: number) => ({ rank: ranking.rank[p], crowding: ranking.crowding[p] });
  return crowdedCompare(at(j), at(i)) < 0 ? j : i;
}

/**
 * NSGA-II survivor selection: whole fronts while they fit, then the most crowding-distant members of the front
 * that overflows (ties by index). Returns `n` point indices in selection order.
 */
export function environmentalSelection(points: readonly Objectives[], n: number): number[] {
  if (n > points.length)
    throw new Error(`environmentalSelection: ${n} survivors from ${points.length} points`);
  const chosen: number[] = [];
  for (const front of fastNonDominatedSort(points)) {
    if (chosen.length === n) break;
    if (chosen.length + front.length <= n) {
      chosen.push(...front);
      continue;
    }
    const d = crowdingDistance(points, front);
    // Compared, not subtracted: Infinity - Infinity is NaN.
    const order = front
      .map((_, i) => i)
      .sort((a, b) => (d[a] === d[b] ? front[a] - front[b] : d[b] > d[a] ? 1 : -1));
    for (const i of order.slice(0, n - chosen.length)) chosen.push(front[i]);
  }
  return chosen;
}

/** NSGA-II's variation for one kind of genome. Pure: inputs are never modified. */
export interface NsgaOperators<G> {
  /** The initial population. */
  initial(size: number, rng: Rng): G[];
  crossover(a: G, b: G, rng: Rng): [G, G];
  mutate(g: G, rng: Rng): G;
}

export interface NsgaPoint<G> {
  genome: G;
  quality: number;
  keptParameters: number;
  /** Share of units removed. */
  sparsity: number;
}

/** Everything needed to continue a run exactly; plain JSON. */
export interface NsgaState {
  version: 1;
  /** Generations completed (0 = the initial population has been evaluated). */
  generation: number;
  genes: number;
  /** Population genomes in the space's text (0/1 strings for heads). */
  population: string[];
  /** Their quality (null for a non-finite value, which JSON cannot hold) and scored tokens. */
  objectives: Array<{ quality: number | null; tokens: number }>;
  /** `rng.getState()` after this generation. */
  rng: number[];
}

export interface NsgaGenerationInfo<G> {
  generation: number;
  /** The population's non-dominated front, by kept parameters ascending. */
  front: NsgaPoint<G>[];
  /** The objective's distinct evaluations and forward passes so far (its own counters, cache hits excluded). */
  evaluations: number;
  forwardPasses: number;
  /** Save this (e.g. as JSON) to resume from here. */
  state: NsgaState;
}

export interface NsgaOptions<G> {
  population: number;
  /** Generations after the initial population (a resumed run stops at the same total). */
  generations: number;
  operators: NsgaOperators<G>;
  rng: Rng;
  fidelity?: Fidelity;
  /** Called after the initial population and after every generation; awaited, so it may write files. */
  onGeneration?: (info: NsgaGenerationInfo<G>) => void | Promise<void>;
  /** Continue from this state (the rng's state is restored from it). */
  state?: NsgaState;
}

export interface NsgaResult<G> {
  /** Non-dominated members of the final population, distinct genomes, by kept parameters ascending. */
  front: NsgaPoint<G>[];
  /** The final population in survivor order. */
  population: NsgaPoint<G>[];
  generation: number;
  evaluations: number;
  forwardPasses: number;
  state: NsgaState;
}

interface Individual<G> {
  genome: G;
  key: string;
  quality: number;
  tokens: number;
  kept: number;
}

export async function runNsga<G>(objective: Objective<G>, opts: NsgaOptions<G>): Promise<NsgaResult<G>> {
  const space = objective.space;
  const genes = space.genes;
  const size = opts.population;
  const rng = opts.rng;
  const fidelity = opts.fidelity ?? 'full';
  if (!Number.isInteger(size) || size < 2)
    throw new GenepruneError('flag', `population must be an integer ≥ 2, got ${size}`, 'population');
  if (!Number.isInteger(opts.generations) || opts.generations < 0)
    throw new GenepruneError(
      'flag',
      `generations must be an integer ≥ 0, got ${opts.generations}`,
      'generations',
    );

  const individual = (genome: G, quality: number, tokens: number): Individual<G> => ({
    genome,
    key: space.key(genome),
    // NaN would make dominance meaningless; a failed score counts as the worst possible.
    quality: Number.isNaN(quality) ? Number.POSITIVE_INFINITY : quality,
    tokens,
    kept: space.keptParameters(genome),
  });
  // One batch per population: the initial one, then each generation's children.
  const evaluateAll = async (genomes: G[]): Promise<Individual<G>[]> => {
    const results = await objective.evaluateMany(genomes, fidelity);
    return genomes.map((genome, i) =>
      individual(genome, results[i].evaluation.quality, results[i].evaluation.tokens),
    );
  };

  let population: Individual<G>[];
  let generation: number;
  if (opts.state) {
    const state = opts.state;
    checkState(state, size, space);
    population = state.population.map((text, i) =>
      individual(
        space.decode(text)!,
        state.objectives[i].quality ?? Number.POSITIVE_INFINITY,
        state.objectives[i].tokens,
      ),
    );
    generation = state.generation;
    rng.setState(state.rng);
    // Prime the cache so offspring equal to a saved parent are not run again.
    for (const ind of population)
      objective.prime(ind.genome, fidelity, { quality: ind.quality, tokens: ind.tokens, ms: 0 });
  } else {
    population = await evaluateAll(opts.operators.initial(size, rng));
    generation = 0;
  }

  const snapshot = (): NsgaGenerationInfo<G> => ({
    generation,
    front: frontOf(population).map((ind) => toPoint(space, ind)),
    evaluations: objective.evaluations(),
    forwardPasses: objective.forwardPasses(),
    state: {
      version: 1,
      generation,
      genes,
      population: population.map((ind) => space.encode(ind.genome)),
      objectives: population.map((ind) => ({
        quality: Number.isFinite(ind.quality) ? ind.quality : null,
        tokens: ind.tokens,
      })),
      rng: rng.getState(),
    },
  });
  if (!opts.state) await opts.onGeneration?.(snapshot());

  while (generation < opts.generations) {
    // A generation reads only (population, rng); ranks are recomputed here, so a resumed run matches exactly.
    const ranking = rankAndCrowd(population.map(objectivesOf));
    const children: G[] = [];
    while (children.length < size) {
      const a = population[binaryTournament(ranking, rng)].genome;
      const b = population[binaryTournament(ranking, rng)].genome;
      for (const child of opts.operators.crossover(a, b, rng)) {
        if (children.length < size) children.push(opts.operators.mutate(child, rng));
      }
    }
    population = survivors(population.concat(await evaluateAll(children)), size);
    generation++;
    await opts.onGeneration?.(snapshot());
  }

  const last = snapshot();
  return {
    front: last.front,
    population: population.map((ind) => toPoint(space, ind)),
    generation,
    evaluations: last.evaluations,
    forwardPasses: last.forwardPasses,
    state: last.state,
  };
}

function objectivesOf<G>(ind: Individual<G>): number[] {
  return [ind.quality, ind.kept];
}

function toPoint<G>(space: SearchSpace<G>, ind: Individual<G>): NsgaPoint<G> {
  return {
    genome: ind.genome,
    quality: ind.quality,
    keptParameters: ind.kept,
    sparsity: space.sparsity(ind.genome),
  };
}

/** First occurrences of each genome, then the repeats (both in order). */
function splitDuplicates<G>(inds: Individual<G>[]): [Individual<G>[], Individual<G>[]] {
  const seen = new Set<string>();
  const unique: Individual<G>[] = [];
  const repeats: Individual<G>[] = [];
  for (const ind of inds) {
    if (seen.has(ind.key)) repeats.push(ind);
    else {
      seen.add(ind.key);
      unique.push(ind);
    }
  }
  return [unique, repeats];
}

/**
 * Survivors of parents + offspring. Copies of one genome would share a front and crowd out distinct masks, so
 * selection runs over distinct genomes and repeats only fill places left over.
 */
function survivors<G>(merged: Individual<G>[], size: number): Individual<G>[] {
  const [unique, repeats] = splitDuplicates(merged);
  if (unique.length <= size) return unique.concat(repeats.slice(0, size - unique.length));
  return environmentalSelection(unique.map(objectivesOf), size).map((i) => unique[i]);
}

/** The population's distinct non-dominated members by kept parameters, then quality, then genome. */
function frontOf<G>(population: Individual<G>[]): Individual<G>[] {
  const [unique] = splitDuplicates(population);
  const [first = []] = fastNonDominatedSort(unique.map(objectivesOf));
  return first
    .map((i) => unique[i])
    .sort(
      (a, b) =>
        a.kept - b.kept || compare(a.quality, b.quality) || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0),
    );
}

function checkState<G>(state: NsgaState, size: number, space: SearchSpace<G>): void {
  const genes = space.genes;
  const bad = (msg: string) => new GenepruneError('data', `cannot resume: ${msg}`, 'nsga state');
  if (state.version !== 1) throw bad(`unknown state version ${state.version}`);
  if (state.genes !== genes) throw bad(`the state has ${state.genes} genes, the model ${genes}`);
  if (state.population.length !== size || state.objectives.length !== size)
    throw bad(`the state holds ${state.population.length} individuals, the run wants ${size}`);
  if (!Number.isInteger(state.generation) || state.generation < 0)
    throw bad(`bad generation ${state.generation}`);
  if (state.population.some((text) => space.decode(text) === undefined)) throw bad('a genome is malformed');
  if (!Array.isArray(state.rng) || state.rng.length !== 4) throw bad('the rng state needs 4 words');
}
