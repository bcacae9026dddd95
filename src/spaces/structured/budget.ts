/**
 * Budgets of a structured search: what a plan may cost, as a share of the dense model's cost.
 *
 *   params:R    the pruned model keeps at most R of the dense model's parameters (all of them: embeddings and
 *               head included, as "7B → 2.7B" counts), 0 < R ≤ 1
 *   flops:R     at most R of the dense model's FLOPs per token of a forward over the run's context, 0 < R ≤ 1
 *   speedup:S   the latency model predicts at least S times the dense model's speed (prefill seconds at most
 *               dense / S), S ≥ 1; the profile is measured once on the run's device and stored in the run
 *
 * A budget is a cost function of the plan's layer shapes and a limit; a genome meets it when cost ≤ limit. The
 * search operators (operators.ts) keep every individual at the budget.
 */
import { flagError } from '../../errors.js';
import type { LayerShapes } from '../../masks/structured.js';
import { fullPlan, layerShapes } from '../../masks/structured.js';
import { planFlopsPerToken, type StructuredSpace } from './space.js';

export const BUDGET_KINDS = ['params', 'flops', 'speedup'] as const;
export type BudgetKind = (typeof BUDGET_KINDS)[number];

export interface BudgetSpec {
  kind: BudgetKind;
  value: number;
}

export const BUDGET_HELP =
  'params:R (keep at most R of the parameters, 0 < R ≤ 1), flops:R (at most R of the FLOPs per token at the ' +
  "run's context), or speedup:S (the latency model, measured on --device, predicts at least S× the dense " +
  'speed, S ≥ 1); e.g. --budget params:0.6, --budget flops:0.5, --budget speedup:1.5';

/** `--budget` text → a budget; refuses anything else in one line. */
export function parseBudget(text: string): BudgetSpec {
  const m = /^(params|flops|speedup):([0-9]*\.?[0-9]+)$/.exec(text.trim());
  const bad = (why: string) => flagError('--budget', `${why}: ${BUDGET_HELP}`);
  if (!m) throw bad(`'${text}' is not a budget`);
  const kind = m[1] as BudgetKind;
  const value = Number(m[2]);
  if (kind === 'speedup' ? !(value >= 1) : !(value > 0 && value <= 1))
    throw bad(`${kind}:${m[2]} is out of range`);
  return { kind, value };
}

export function budgetText(b: BudgetSpec): string {
  return `${b.kind}:${b.value}`;
}

/** A priced budget: the cost of a plan's shapes, the dense model's cost, and the limit cost ≤ limit. */
export interface Budget {
  spec: BudgetSpec;
  cost(shapes: LayerShapes): number;
  dense: number;
  limit: number;
  /** What the cost counts, for messages ('parameters', 'FLOPs per token', 'predicted seconds'). */
  unit: string;
}

/**
 * Prices a budget for a space. `seconds` (the latency model's prediction for a plan's shapes) is needed for
 * `speedup` only; `seq` is the context the FLOPs are counted at.
 */
export function priceBudget(
  space: StructuredSpace,
  spec: BudgetSpec,
  opts: { seq: number; seconds?: (shapes: LayerShapes) => number },
): Budget {
  const config = space.config;
  const dense = layerShapes(config, fullPlan(config));
  let cost: (s: LayerShapes) => number;
  let unit: string;
  if (spec.kind === 'params') {
    cost = (s) => space.keptParametersOf(s);
    unit = 'parameters';
  } else if (spec.kind === 'flops') {
    cost = (s) => planFlopsPerToken(config, s, opts.seq);
    unit = `FLOPs per token at context ${opts.seq}`;
  } else {
    if (!opts.seconds)
      throw flagError('--budget', 'speedup budgets need the latency model (calibrated on --device)');
    cost = opts.seconds;
    unit = 'predicted seconds';
  }
  const denseCost = cost(dense);
  const limit = spec.kind === 'speedup' ? denseCost / spec.value : denseCost * spec.value;
  const budget = { spec, cost, dense: denseCost, limit, unit };
  const least = cost(space.shapes(space.smallest()));
  if (least > limit) {
    throw flagError(
      '--budget',
      `${budgetText(spec)} cannot be met in the ${space.kind} space: the smallest plan it can make ` +
        (spec.kind === 'speedup'
          ? `is predicted at ${(denseCost / least).toFixed(3)}x the dense speed`
          : `keeps ${(least / denseCost).toFixed(3)} of the dense model's ${unit}`),
    );
  }
  return budget;
}

/** A genome's cost under a budget. */
export function genomeCost(space: StructuredSpace, budget: Budget, g: Uint8Array): number {
  return budget.cost(space.shapes(g));
}
