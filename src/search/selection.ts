/**
 * Selection helpers shared by every GA over any genome: tournament selection (with the weight GAs' "second
 * parent drawn from the others" as an option of the same function) and the NaN-safe fitness order. Pure
 * functions of fitness arrays and the rng; also the one home of Fisher–Yates sampling (`sampleIndices`). The
 * variation operators live in `operators.ts`, NSGA-II's crowded tournament in `nsga.ts`.
 */
import type { Rng } from '../util/rng.js';

/** Picks `k` distinct indices from [0, n) uniformly (partial Fisher–Yates). */
export function sampleIndices(n: number, k: number, rng: Rng): number[] {
  if (k > n) throw new Error(`sampleIndices: cannot pick ${k} of ${n}`);
  const idx = Array.from({ length: n }, (_, i) => i);
  for (let i = 0; i < k; i++) {
    const j = i + rng.nextInt(n - i);
    [idx[i], idx[j]] = [idx[j], idx[i]];
  }
  return idx.slice(0, k);
}

/**
 * Tournament selection: samples `size` distinct individuals (all of them when the population is smaller) and
 * returns the index of the fittest (higher fitness wins; the first sampled wins ties). With `exclude` (the first
 * parent's index) that individual is sampled like any other but ranks as −Infinity, and should it still win (every
 * entrant is it or as bad) the next index is returned instead, so the two parents differ; the rng is drawn
 * exactly as without it.
 */
export function tournament(fitness: ArrayLike<number>, size: number, rng: Rng, exclude?: number): number {
  const key = (i: number) => (i === exclude ? Number.NEGATIVE_INFINITY : fitnessKey(fitness[i]));
  const picks = sampleIndices(fitness.length, Math.min(size, fitness.length), rng);
  let best = picks[0];
  for (const i of picks) if (key(i) > key(best)) best = i;
  return best === exclude ? (best + 1) % fitness.length : best;
}

/**
 * Two parents by tournament: the second drawn from the others when `distinct` (the weight GAs), else from the
 * whole population again (the head GA).
 */
export function tournamentPair(
  fitness: ArrayLike<number>,
  size: number,
  rng: Rng,
  distinct: boolean,
): [number, number] {
  const a = tournament(fitness, size, rng);
  return [a, tournament(fitness, size, rng, distinct ? a : undefined)];
}

/** NaN ranks as −Infinity (the worst) so that it neither wins nor blocks every comparison after it. */
export function fitnessKey(f: number): number {
  return Number.isNaN(f) ? Number.NEGATIVE_INFINITY : f;
}

/** Descending-fitness comparator that, unlike b − a, is safe for infinities and NaN. */
export function byFitnessDesc(a: number, b: number): number {
  const x = fitnessKey(a);
  const y = fitnessKey(b);
  return x > y ? -1 : x < y ? 1 : 0;
}
