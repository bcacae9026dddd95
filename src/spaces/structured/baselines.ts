/**
 * The no-search structured baselines: plans chosen in one shot from structured scores (scores.ts) under a budget
 * the caller prices — kept parameters, FLOPs or predicted latency: `budget.cost(plan)` — each returning the plan
 * that keeps the most of its own family of plans while cost ≤ limit:
 * - uniform width: one share s of MLP channels in every layer (each layer's largest width level ≤ s·width, the
 *   levels of widthLevels), and with `heads` the same share of heads (⌊s·heads⌋); kept units by score. The shares
 *   tried are every layer's level / width (and heads count / heads), largest first; the first plan within the
 *   budget is returned.
 * - FLAP-like: channel (and with `heads`, head) scores standardised per layer — (s − mean) / sample std over the
 *   layer's units, 0 where they are all equal — then units removed globally, lowest standardised score first, no
 *   search. After each removal every layer keeps the smallest width level holding its remaining channels (snapped
 *   up: the plan keeps the most), its best channels by score; the first plan within the budget is returned.
 *   `metric: 'fluctuation'` ranks by FLAP's own fluctuation metric (scores.ts) instead of the norm scores; what
 *   FLAP does beyond this (bias compensation) is in docs/structured.md (Baselines).
 * - ShortGPT: whole layers (attention and MLP blocks) skipped, lowest layer block influence first (ties: the lower
 *   layer), until the budget holds.
 * Each baseline walks its plans from the largest down and stops at the first that fits, so with a cost that
 * falls as units go the plan returned is the largest of its family that fits; a budget that no plan of the family
 * meets is refused in one line. Sub-block depth pruning (EvoPress-style) is a search, not a baseline here.
 */
import { GenepruneError } from '../../errors.js';
import { fullPlan, type StructuredPlan, widthLevels } from '../../masks/structured.js';
import { intermediateOf, type ModelConfig } from '../../model/spec.js';
import { keptByScore, orders, type StructuredOrders, type StructuredScores } from './scores.js';

/** A budget: the caller's price of a plan, and the most it may cost. */
export interface StructuredBudget {
  cost(plan: StructuredPlan): number;
  limit: number;
}

export interface WidthBaselineOptions {
  /** Also remove heads (a heads-and-channels budget); default channels only. */
  heads?: boolean;
  /** The width grid's step (widthLevels' override for small models). */
  widthStep?: number;
}

export interface FlapOptions extends WidthBaselineOptions {
  /** The scores ranked: 'norm' (‖X‖·‖W‖, default) or 'fluctuation' (FLAP's var(X)·‖W‖², scores.fluctuation). */
  metric?: 'norm' | 'fluctuation';
}

/** The plan keeping, per layer, the `channels[i]` and `heads[i]` best units of `ranking`; nothing skipped. */
export function planOfCounts(
  config: ModelConfig,
  ranking: StructuredOrders,
  counts: { channels: readonly number[]; heads: readonly number[] },
): StructuredPlan {
  const L = config.numLayers;
  return {
    heads: Array.from({ length: L }, (_, i) => keptByScore(ranking.heads[i], counts.heads[i])),
    channels: Array.from({ length: L }, (_, i) => keptByScore(ranking.channels[i], counts.channels[i])),
    skipAttention: Array(L).fill(false),
    skipMlp: Array(L).fill(false),
  };
}

/** Checks the scores cover the model's layers, heads and widths. */
function checkScores(config: ModelConfig, scores: StructuredScores): void {
  const L = config.numLayers;
  const bad = (what: string): never => {
    throw new GenepruneError('data', `structured scores do not fit the model: ${what}`);
  };
  if (scores.channels.length !== L || scores.heads.length !== L)
    bad(`they list ${scores.channels.length} layers`);
  for (let i = 0; i < L; i++) {
    if (scores.channels[i].length !== intermediateOf(config, i)) bad(`layer ${i}'s MLP width`);
    if (scores.heads[i].length !== config.headsPerLayer[i]) bad(`layer ${i}'s heads`);
  }
  for (const v of Object.values(scores.influence)) if (v.length !== L) bad('block influence');
}

/** The first plan within the budget of a walk from the largest plan down, or a one-line refusal. */
function firstWithin(
  name: string,
  budget: StructuredBudget,
  plans: Iterable<StructuredPlan>,
): StructuredPlan {
  let cheapest = Number.POSITIVE_INFINITY;
  for (const plan of plans) {
    const cost = budget.cost(plan);
    if (cost <= budget.limit) return plan;
    cheapest = Math.min(cheapest, cost);
  }
  throw new GenepruneError(
    'data',
    `${name}: no plan meets the budget of ${budget.limit} (its smallest plan costs ${cheapest})`,
  );
}

/** A layer's width grid (0 and the width included), ascending. */
function gridOf(config: ModelConfig, i: number, step: number | undefined): number[] {
  const width = intermediateOf(config, i);
  return width === 0 ? [0] : widthLevels(width, step);
}

// Shares are compared with a little slack, so level / width · width never falls a hair below level.
const SLACK = 1e-9;

/** Uniform width: the same share of every layer's channels (and heads), chosen by score. */
export function uniformWidth(
  config: ModelConfig,
  scores: StructuredScores,
  budget: StructuredBudget,
  opts: WidthBaselineOptions = {},
): StructuredPlan {
  checkScores(config, scores);
  const L = config.numLayers;
  const ranking = orders(scores);
  const grids = Array.from({ length: L }, (_, i) => gridOf(config, i, opts.widthStep));
  const shares = new Set<number>([1]);
  for (let i = 0; i < L; i++) {
    const width = intermediateOf(config, i);
    if (width > 0) for (const level of grids[i]) shares.add(level / width);
    const H = config.headsPerLayer[i];
    if (opts.heads && H > 0) for (let k = 0; k <= H; k++) shares.add(k / H);
  }
  const descending = [...shares].sort((a, b) => b - a);
  function* plans(): Generator<StructuredPlan> {
    for (const s of descending) {
      const channels = grids.map((grid, i) => {
        const most = s * intermediateOf(config, i) + SLACK;
        return grid.filter((level) => level <= most).at(-1)!;
      });
      const heads = config.headsPerLayer.map((H) => (opts.heads ? Math.floor(s * H + SLACK) : H));
      yield planOfCounts(config, ranking, { channels, heads });
    }
  }
  return firstWithin('uniform width', budget, plans());
}

/** (s − mean) / sample std over one layer's scores; all 0 where the scores are equal or there is one. */
export function standardised(scores: ArrayLike<number>): Float64Array {
  const n = scores.length;
  const z = new Float64Array(n);
  if (n < 2) return z;
  let mean = 0;
  for (let j = 0; j < n; j++) mean += scores[j];
  mean /= n;
  let ss = 0;
  for (let j = 0; j < n; j++) ss += (scores[j] - mean) ** 2;
  const std = Math.sqrt(ss / (n - 1));
  if (!(std > 0)) return z;
  for (let j = 0; j < n; j++) z[j] = (scores[j] - mean) / std;
  return z;
}

/** FLAP-like: standardised scores, units removed globally lowest first, layers snapped up to their width grid. */
export function flapLike(
  config: ModelConfig,
  measured: StructuredScores,
  budget: StructuredBudget,
  opts: FlapOptions = {},
): StructuredPlan {
  checkScores(config, measured);
  let scores = measured;
  if (opts.metric === 'fluctuation') {
    if (!measured.fluctuation) {
      throw new GenepruneError(
        'data',
        'FLAP-like: the scores have no fluctuation metric (no column sums captured)',
      );
    }
    scores = { ...measured, ...measured.fluctuation };
    checkScores(config, scores);
  }
  const L = config.numLayers;
  const ranking = orders(scores);
  const grids = Array.from({ length: L }, (_, i) => gridOf(config, i, opts.widthStep));
  // The removals: a layer loses its units from the end of its ranking (lowest score first), so its k-th removal
  // is the unit ranked n − 1 − k, at that unit's standardised score.
  interface Removal {
    z: number;
    layer: number;
    kind: 0 | 1; // 0 channel, 1 head
    k: number;
  }
  const removals: Removal[] = [];
  for (let i = 0; i < L; i++) {
    const kinds: [0 | 1, Float64Array, number[]][] = [[0, scores.channels[i], ranking.channels[i]]];
    if (opts.heads) kinds.push([1, scores.heads[i], ranking.heads[i]]);
    for (const [kind, s, rank] of kinds) {
      const z = standardised(s);
      for (let k = 0; k < rank.length; k++)
        removals.push({ z: z[rank[rank.length - 1 - k]], layer: i, kind, k });
    }
  }
  removals.sort((a, b) => a.z - b.z || a.layer - b.layer || a.kind - b.kind || a.k - b.k);

  function* plans(): Generator<StructuredPlan> {
    const channels = Array.from({ length: L }, (_, i) => intermediateOf(config, i));
    const heads = [...config.headsPerLayer];
    const remaining = [...channels];
    yield planOfCounts(config, ranking, { channels, heads });
    for (const r of removals) {
      if (r.kind === 1) heads[r.layer]--;
      else {
        remaining[r.layer]--;
        const snapped = grids[r.layer].find((level) => level >= remaining[r.layer])!;
        if (snapped === channels[r.layer]) continue; // the plan is unchanged
        channels[r.layer] = snapped;
      }
      yield planOfCounts(config, ranking, { channels, heads });
    }
  }
  return firstWithin('FLAP-like', budget, plans());
}

/** ShortGPT: whole layers skipped, lowest block influence first, until the budget holds. */
export function shortGpt(
  config: ModelConfig,
  scores: StructuredScores,
  budget: StructuredBudget,
): StructuredPlan {
  checkScores(config, scores);
  const bi = scores.influence.layer;
  const order = bi.map((_, i) => i).sort((a, b) => bi[a] - bi[b] || a - b);
  function* plans(): Generator<StructuredPlan> {
    const plan = fullPlan(config);
    yield plan;
    for (const i of order) {
      plan.skipAttention = plan.skipAttention.map((s, j) => s || j === i);
      plan.skipMlp = plan.skipMlp.map((s, j) => s || j === i);
      yield { ...plan };
    }
  }
  return firstWithin('ShortGPT', budget, plans());
}

/** The baselines by the names a command lists them under, all as `(config, scores, budget, opts)`. */
export const STRUCTURED_BASELINES = {
  'uniform-width': uniformWidth,
  'flap-like': flapLike,
  shortgpt: (config: ModelConfig, scores: StructuredScores, budget: StructuredBudget, _opts?: FlapOptions) =>
    shortGpt(config, scores, budget),
} as const satisfies Record<
  string,
  (
    config: ModelConfig,
    scores: StructuredScores,
    budget: StructuredBudget,
    opts?: FlapOptions,
  ) => StructuredPlan
>;
export type StructuredBaselineName = keyof typeof STRUCTURED_BASELINES;
