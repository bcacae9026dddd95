/**
 * The GA's operators over structured level genomes, holding a budget the way EvoPress does.
 *
 * Decision: every variation ends in one repair step, and the mutation is EvoPress's level switch. EvoPress keeps
 * the total compression level constant by moving one unit of level down somewhere and one up elsewhere; with
 * costs that differ per gene (a head, a 64-channel step and a whole block cost different parameters, FLOPs or
 * seconds) no such swap keeps a cost exactly, so the switch is followed by `repair`, which makes the genome
 * *maximal within the budget*:
 *   1. while the cost is over the limit, lower a random gene that can go down by one level;
 *   2. then, while some gene can go up one level and the cost stays within the limit, raise one of those at random.
 * So every individual costs at most the limit, and no single level could be added without breaking it: the
 * individuals sit at the budget (as close as the level grid allows), compared at equal cost as EvoPress's are.
 * Crossover (uniform over layers: a child takes each layer's genes from one parent) can break the budget either
 * way; the mutation that follows every child repairs it, so elites, the initial population and every child meet
 * it. Costs need not be monotone in the levels (a measured latency table may not be): step 1 ends at the
 * all-zero genome at worst, which the budget checked fits when it was priced.
 */
import type { StructuredPlan } from '../../masks/structured.js';
import type { GaOperators } from '../../search/ga.js';
import type { Rng } from '../../util/rng.js';
import type { Budget } from './budget.js';
import type { StructuredGenome, StructuredSpace } from './space.js';

export interface StructuredGaSettings {
  /** Probability that two parents cross over (else the children are copies). */
  crossoverRate: number;
  /** Level switches per mutation at most (each child gets 1 … this many, drawn uniformly). */
  switches: number;
}

/**
 * Lowers, then fills, until the genome is maximal within the budget (see the module comment). With `only`, the
 * genes it may lower are those first (a sub-space's genes, for the initial population), any gene once none of
 * them can go lower.
 */
export function repair(
  space: StructuredSpace,
  budget: Budget,
  g: StructuredGenome,
  rng: Rng,
  only?: (k: number) => boolean,
): StructuredGenome {
  const out = g.slice();
  const cost = () => budget.cost(space.shapes(out));
  const max = space.slots.map((s) => s.max);
  while (cost() > budget.limit) {
    const down: number[] = [];
    for (let k = 0; k < out.length; k++) if (out[k] > 0 && (only?.(k) ?? true)) down.push(k);
    if (down.length === 0 && only) {
      for (let k = 0; k < out.length; k++) if (out[k] > 0) down.push(k);
    }
    if (down.length === 0) break;
    out[down[rng.nextInt(down.length)]]--;
  }
  for (;;) {
    const up: number[] = [];
    for (let k = 0; k < out.length; k++) {
      if (out[k] >= max[k]) continue;
      out[k]++;
      if (cost() <= budget.limit) up.push(k);
      out[k]--;
    }
    if (up.length === 0) return out;
    out[up[rng.nextInt(up.length)]]++;
  }
}

/**
 * EvoPress's level switch: one gene down a level and another up a level (before repair). As in EvoPress, where a
 * switch moves compression between units of one kind, the gene that goes up is of the lowered gene's kind where one
 * can, and the lowered gene is of a kind the genome already prunes where there is one — so a heads-only individual
 * stays heads-only unless repair, crossover or a rare switch (1 in 8) takes it elsewhere.
 */
export function levelSwitch(space: StructuredSpace, g: StructuredGenome, rng: Rng): StructuredGenome {
  const out = g.slice();
  const kindOf = (k: number) => space.slots[k].kind;
  const pruned = new Set<string>();
  for (let k = 0; k < out.length; k++) if (out[k] < space.slots[k].max) pruned.add(kindOf(k));
  const anyKind = pruned.size === 0 || rng.nextInt(8) === 0;
  const down: number[] = [];
  for (let k = 0; k < out.length; k++) if (out[k] > 0 && (anyKind || pruned.has(kindOf(k)))) down.push(k);
  if (down.length === 0) for (let k = 0; k < out.length; k++) if (out[k] > 0) down.push(k);
  if (down.length === 0) return out;
  const a = down[rng.nextInt(down.length)];
  out[a]--;
  const up: number[] = [];
  for (let k = 0; k < out.length; k++)
    if (k !== a && out[k] < space.slots[k].max && kindOf(k) === kindOf(a)) up.push(k);
  if (up.length === 0)
    for (let k = 0; k < out.length; k++) if (k !== a && out[k] < space.slots[k].max) up.push(k);
  if (up.length > 0) out[up[rng.nextInt(up.length)]]++;
  return out;
}

/** Uniform crossover over layers: each child takes all of a layer's genes from one parent, the other child the rest. */
export function layerCrossover(
  space: StructuredSpace,
  a: StructuredGenome,
  b: StructuredGenome,
  rate: number,
  rng: Rng,
): [StructuredGenome, StructuredGenome] {
  if (rng.nextFloat() >= rate) return [a.slice(), b.slice()];
  const c1 = a.slice();
  const c2 = b.slice();
  const L = space.config.numLayers;
  const per = space.genes / L;
  for (let i = 0; i < L; i++) {
    if (rng.nextUint32() & 1) {
      c1.set(b.subarray(i * per, (i + 1) * per), i * per);
      c2.set(a.subarray(i * per, (i + 1) * per), i * per);
    }
  }
  return [c1, c2];
}

/** A random genome (every gene uniform over its levels), repaired to the budget. */
export function randomAtBudget(space: StructuredSpace, budget: Budget, rng: Rng): StructuredGenome {
  const g = Uint8Array.from(space.slots, (s) => rng.nextInt(s.max + 1));
  return repair(space, budget, g, rng);
}

/**
 * The uniform genome at the budget (EvoPress starts from uniform compression): every head and width gene at the
 * same share f of its highest level (rounded down), f the largest share that meets the budget, blocks running;
 * then repaired (blocks go only where no share does, and the fill spends what rounding left).
 */
export function uniformAtBudget(space: StructuredSpace, budget: Budget, rng: Rng): StructuredGenome {
  const levelled = (f: number) =>
    Uint8Array.from(space.slots, (s) =>
      s.kind === 'attention' || s.kind === 'mlp' ? 1 : Math.floor(f * s.max + 1e-9),
    );
  // Every share at which some gene changes level, largest first.
  const shares = new Set<number>([1, 0]);
  for (const s of space.slots) {
    if (s.kind === 'heads' || s.kind === 'width') for (let l = 0; l <= s.max; l++) shares.add(l / s.max);
  }
  for (const f of [...shares].sort((a, b) => b - a)) {
    const g = levelled(f);
    if (budget.cost(space.shapes(g)) <= budget.limit) return repair(space, budget, g, rng);
  }
  return repair(space, budget, levelled(0), rng);
}

/**
 * The initial population: the uniform genome first, then random genomes. In a space of several kinds of genes
 * (joint) the random ones take turns: one lowered anywhere, then one lowered in the heads first, one in the MLP
 * widths first, one in the blocks first — so the joint search starts from every single-space region too, not only
 * from their mixtures (a joint search started from mixtures alone lost to heads-only on stories260K; see
 * docs/structured.md, Budgets).
 */
export function initialAtBudget(
  space: StructuredSpace,
  budget: Budget,
  size: number,
  rng: Rng,
): StructuredGenome[] {
  const kinds = new Set(space.slots.map((s) => s.kind));
  const groups: Array<((k: number) => boolean) | undefined> = [undefined];
  if (kinds.size > 1) {
    const of =
      (...ks: string[]) =>
      (k: number) =>
        ks.includes(space.slots[k].kind);
    if (kinds.has('heads')) groups.push(of('heads'));
    if (kinds.has('width')) groups.push(of('width'));
    if (kinds.has('attention')) groups.push(of('attention', 'mlp'));
  }
  const out: StructuredGenome[] = [];
  if (size > 0) out.push(uniformAtBudget(space, budget, rng));
  for (let i = 1; i < size; i++) {
    const only = groups[(i - 1) % groups.length];
    const g = Uint8Array.from(space.slots, (s, k) => (only && !only(k) ? s.max : rng.nextInt(s.max + 1)));
    out.push(repair(space, budget, g, rng, only));
  }
  return out;
}

/**
 * The genome of this space nearest a plan: per layer, the heads level is the number of query heads the plan keeps,
 * the width level the largest grid width not above the channels it keeps, a block gene 0 where the plan skips the
 * block (in a space without block genes a skipped block's heads / width level is 0). The genome decodes to the
 * plan itself when the plan keeps the best units by this space's score orders at grid widths (a plan another
 * search over the same scores wrote); otherwise to the plan with the same counts of the best units.
 */
export function genomeOfPlan(space: StructuredSpace, plan: StructuredPlan): StructuredGenome {
  const has = new Set(space.slots.map((s) => s.kind));
  return Uint8Array.from(space.slots, (slot) => {
    const i = slot.layer;
    const attention = !plan.skipAttention[i];
    const mlp = !plan.skipMlp[i];
    switch (slot.kind) {
      case 'attention':
        return attention ? 1 : 0;
      case 'mlp':
        return mlp ? 1 : 0;
      case 'heads':
        return attention || has.has('attention') ? Math.min(slot.max, plan.heads[i].length) : 0;
      case 'width': {
        if (!mlp && !has.has('mlp')) return 0;
        const kept = plan.channels[i].length;
        let level = 0;
        for (const [j, w] of space.widths[i].entries()) if (w <= kept) level = j;
        return Math.min(slot.max, level);
      }
    }
  });
}

/**
 * The GA's operators in a space at a budget. `seeds` (genomes, e.g. `genomeOfPlan` of other searches' results)
 * open the initial population, each repaired to the budget (a seed within it and maximal stays as it is); the
 * rest is `initialAtBudget`'s. With elitism the run never ends worse than its best seed.
 */
export function structuredGaOperators(
  space: StructuredSpace,
  budget: Budget,
  s: StructuredGaSettings,
  seeds: readonly StructuredGenome[] = [],
): GaOperators<StructuredGenome> {
  return {
    initial: (size, rng) => {
      const seeded = seeds.slice(0, size).map((g) => repair(space, budget, g, rng));
      return [...seeded, ...initialAtBudget(space, budget, size - seeded.length, rng)];
    },
    crossover: (a, b, _fa, _fb, rng) => layerCrossover(space, a, b, s.crossoverRate, rng),
    vary: (g, rng) => {
      let out = g;
      const n = 1 + rng.nextInt(Math.max(1, s.switches));
      for (let k = 0; k < n; k++) out = levelSwitch(space, out, rng);
      return repair(space, budget, out, rng);
    },
  };
}
