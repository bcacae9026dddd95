/**
 * Genetic operators over bit genomes (one byte per gene, 1 keep / 0 remove), and the operator sets the GA and
 * NSGA-II take for them. Pure functions: (inputs, rng) → outputs; nothing is modified in place. Selection
 * (tournament, fitness order, Fisher–Yates sampling) is `selection.ts`.
 */
import { GenepruneError } from '../errors.js';
import type { Rng } from '../util/rng.js';
import type { GaOperators } from './ga.js';
import type { NsgaOperators } from './nsga.js';
import { fitnessKey, sampleIndices } from './selection.js';

/** A bit genome: one byte per gene, 1 keeps the unit, 0 removes it. */
export type Genome = Uint8Array;

/** A genome with exactly `remove` of `genes` genes removed at random. */
export function randomGenome(genes: number, remove: number, rng: Rng): Genome {
  const g = new Uint8Array(genes).fill(1);
  for (const i of sampleIndices(genes, remove, rng)) g[i] = 0;
  return g;
}

/**
 * The paper's initial population: each individual has round(sInitial · genes) heads removed at random.
 * With `weights` (one per gene, higher = more removable, e.g. from single-head ablation), heads are removed
 * by weighted sampling without replacement instead, so the start is already informed.
 */
export function initialPopulation(
  size: number,
  genes: number,
  sInitial: number,
  rng: Rng,
  weights?: ArrayLike<number>,
): Genome[] {
  const remove = Math.round(sInitial * genes);
  return Array.from({ length: size }, () => {
    if (!weights) return randomGenome(genes, remove, rng);
    const g = new Uint8Array(genes).fill(1);
    // A NaN or infinite weight would poison the running total; it counts as barely removable.
    const w = Float64Array.from(weights, (x) => (Number.isFinite(x) ? Math.max(x, 1e-12) : 1e-12));
    for (let k = 0; k < remove; k++) {
      let total = 0;
      for (let i = 0; i < genes; i++) if (g[i]) total += w[i];
      let r = rng.nextFloat() * total;
      let pick = -1;
      for (let i = 0; i < genes; i++) {
        if (!g[i]) continue;
        pick = i;
        r -= w[i];
        if (r < 0) break;
      }
      g[pick] = 0;
    }
    return g;
  });
}

/**
 * The probability that a child takes a gene from parent 1, given the parents' fitness.
 *
 * The paper (Algorithm 2) uses f1 / (f1 + f2). That is right for positive fitness but wrong for the
 * negative fitness it recommends (−ppl·(1−s)): with f1 = −3 (better) and f2 = −5 it gives 0.375, favouring the
 * worse parent. We use 0.5 + 0.5·(f1 − f2) / (|f1| + |f2|), which
 *   - equals f1 / (f1 + f2) when both are positive (the paper's rule: 0.9 vs 0.1 → 0.9);
 *   - equals |f2| / (|f1| + |f2|) when both are negative, i.e. the paper's rule applied to 1/cost
 *     (−3 vs −5 → 0.625: the cheaper parent is favoured in proportion to the other's cost);
 *   - gives the parent with positive fitness every gene when the signs differ, and 0.5 for equal fitness;
 *   - gives the finite parent every gene when the other's is −Infinity (or NaN: a candidate that failed).
 * It is unchanged when both fitnesses are scaled by the same positive factor, whatever their sign.
 */
export function crossoverWeight(f1: number, f2: number): number {
  const a = fitnessKey(f1);
  const b = fitnessKey(f2);
  const denom = Math.abs(a) + Math.abs(b);
  if (denom === 0 || a === b) return 0.5;
  // An infinite fitness (a failed score, −∞) makes the formula ∞/∞; its limit gives the other parent every gene.
  if (!Number.isFinite(denom)) return a > b ? 1 : 0;
  return 0.5 + (0.5 * (a - b)) / denom;
}

/**
 * Fitness-weighted uniform crossover. With probability `rate` each of the two children takes every gene from
 * parent 1 with probability crossoverWeight(f1, f2), else from parent 2, drawn independently per child (the
 * paper's Algorithm 2 as printed appends to one child or the other and so builds children of uneven length;
 * what it means is that both children favour the fitter parent). Otherwise the children are copies.
 */
export function crossover(
  p1: Genome,
  p2: Genome,
  f1: number,
  f2: number,
  rate: number,
  rng: Rng,
): [Genome, Genome] {
  if (p1.length !== p2.length) throw new Error('crossover: parents differ in length');
  if (rng.nextFloat() >= rate) return [p1.slice(), p2.slice()];
  const w = crossoverWeight(f1, f2);
  const child = () => {
    const c = new Uint8Array(p1.length);
    for (let i = 0; i < c.length; i++) c[i] = rng.nextFloat() < w ? p1[i] : p2[i];
    return c;
  };
  return [child(), child()];
}

/**
 * Flip-bit mutation: each gene is chosen with probability `rate` and flipped. `removalBias` in [0, 1] pushes
 * sparsity up, as the paper's mutation does: a chosen gene that is 0 (removed) is restored only with
 * probability 1 − removalBias, while a chosen 1 is always removed. removalBias = 0 is plain flip-bit.
 */
export function mutate(g: Genome, rate: number, rng: Rng, removalBias = 0): Genome {
  const out = g.slice();
  for (let i = 0; i < out.length; i++) {
    if (rng.nextFloat() >= rate) continue;
    if (out[i] === 1) out[i] = 0;
    else if (removalBias === 0 || rng.nextFloat() >= removalBias) out[i] = 1;
  }
  return out;
}

/**
 * Exact-budget repair: returns a genome with exactly `remove` heads removed, changing as few genes as possible
 * (restoring or removing at random among the candidates), so methods compare at equal size.
 */
export function repair(g: Genome, remove: number, rng: Rng): Genome {
  const out = g.slice();
  const removed: number[] = [];
  const kept: number[] = [];
  for (let i = 0; i < out.length; i++) (out[i] ? kept : removed).push(i);
  if (removed.length > remove) {
    for (const j of sampleIndices(removed.length, removed.length - remove, rng)) out[removed[j]] = 1;
  } else if (removed.length < remove) {
    for (const j of sampleIndices(kept.length, remove - removed.length, rng)) out[kept[j]] = 0;
  }
  return out;
}

/** Uniform crossover: each gene comes from either parent with probability 1/2; the second child gets the other. */
export function uniformCrossover(a: Genome, b: Genome, rng: Rng): [Genome, Genome] {
  const c1 = new Uint8Array(a.length);
  const c2 = new Uint8Array(a.length);
  for (let i = 0; i < a.length; i++) {
    const swap = rng.nextUint32() & 1;
    c1[i] = swap ? b[i] : a[i];
    c2[i] = swap ? a[i] : b[i];
  }
  return [c1, c2];
}

/** Flip-bit mutation: every gene flips independently with probability `rate` (returns a copy). */
export function flipMutation(g: Genome, rate: number, rng: Rng): Genome {
  const out = Uint8Array.from(g);
  for (let i = 0; i < out.length; i++) if (rng.nextFloat() < rate) out[i] ^= 1;
  return out;
}

/** A population spread evenly from the full genome (first) to `maxRemoveShare` of the genes removed. */
export function spreadPopulation(size: number, genes: number, maxRemoveShare: number, rng: Rng): Genome[] {
  return Array.from({ length: size }, (_, i) =>
    randomGenome(genes, Math.round((i / (size - 1)) * maxRemoveShare * genes), rng),
  );
}

/** Settings of the GA's operators over bit genomes (one byte per gene). */
export interface BitGaSettings {
  crossoverRate: number;
  mutationRate: number;
  /** Share of chosen genes that mutation only removes (0 = plain flip-bit). */
  removalBias: number;
  /** Share of genes removed in each initial individual. */
  sInitial: number;
  /** Exact number of genes removed in every individual (repair after every variation). */
  removeCount?: number;
  /** Per-gene removability weights for the initial population (e.g. from single-head ablation). */
  initWeights?: number[];
}

/** The GA's operators over bit genomes: the paper's initialisation, weighted crossover, biased mutation, repair. */
export function bitGaOperators(genes: number, s: BitGaSettings): GaOperators<Genome> {
  const repaired = (g: Genome, rng: Rng) => (s.removeCount === undefined ? g : repair(g, s.removeCount, rng));
  return {
    initial: (size, rng) =>
      initialPopulation(size, genes, s.sInitial, rng, s.initWeights).map((g) => repaired(g, rng)),
    crossover: (a, b, fa, fb, rng) => crossover(a, b, fa, fb, s.crossoverRate, rng),
    vary: (g, rng) => repaired(mutate(g, s.mutationRate, rng, s.removalBias), rng),
  };
}

/**
 * NSGA-II's operators over bit genomes: an initial population spread from the full genome to `maxRemoveShare`
 * removed (default 0.75), uniform crossover, flip-bit mutation at `mutationRate` (default 1 / genes).
 */
export function bitNsgaOperators(
  genes: number,
  opts: { mutationRate?: number; maxRemoveShare?: number } = {},
): NsgaOperators<Genome> {
  const mutationRate = opts.mutationRate ?? 1 / genes;
  const maxRemoveShare = opts.maxRemoveShare ?? 0.75;
  if (!(mutationRate >= 0 && mutationRate <= 1))
    throw new GenepruneError('flag', `mutation rate must lie in [0, 1], got ${mutationRate}`, 'mutationRate');
  if (!(maxRemoveShare >= 0 && maxRemoveShare <= 1))
    throw new GenepruneError(
      'flag',
      `max remove share must lie in [0, 1], got ${maxRemoveShare}`,
      'maxRemoveShare',
    );
  return {
    initial: (size, rng) => spreadPopulation(size, genes, maxRemoveShare, rng),
    crossover: uniformCrossover,
    mutate: (g, rng) => flipMutation(g, mutationRate, rng),
  };
}

/**
 * Single-point crossover on flattened genomes: a cut c drawn uniformly in [1, n − 1]; the first child is
 * a[0, c) + b[c, n), the second b[0, c) + a[c, n). With probability 1 − `rate` the children are copies. A genome
 * of fewer than two genes has no cut: the children are copies.
 */
export function singlePointCrossover(a: Genome, b: Genome, rate: number, rng: Rng): [Genome, Genome] {
  if (a.length !== b.length) throw new Error('singlePointCrossover: parents differ in length');
  if (a.length < 2 || rng.nextFloat() >= rate) return [a.slice(), b.slice()];
  const cut = 1 + rng.nextInt(a.length - 1);
  const c1 = new Uint8Array(a.length);
  const c2 = new Uint8Array(a.length);
  c1.set(a.subarray(0, cut));
  c1.set(b.subarray(cut), cut);
  c2.set(b.subarray(0, cut));
  c2.set(a.subarray(cut), cut);
  return [c1, c2];
}
