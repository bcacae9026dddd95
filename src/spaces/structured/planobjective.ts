/**
 * The calibration objective of a structured run, over plans rather than genomes: the GA scores level genomes,
 * the baselines (uniform width, FLAP-like, ShortGPT) produce plans no genome of the run's space may spell, and
 * the final report scores whichever plan won. So the objective (the metric's scorer, its cache and counters:
 * search/objective.ts) is built once over a *plan space* — a plan is its own genome, keyed by the sha256 of
 * its canonical JSON — and the GA sees it through `levelObjective`, which turns each genome into its plan.
 * Canonical: a skipped block's heads or channels count as removed whatever the plan lists (masks/structured.ts),
 * so the key lists none for it, and joint genomes that differ only in the levels of a skipped block (the same
 * function) share one evaluation.
 */
import { createHash } from 'node:crypto';
import {
  checkPlan,
  fullPlan,
  layerShapes,
  type StructuredPlan,
  structuredMasksOf,
} from '../../masks/structured.js';
import type { ModelConfig } from '../../model/spec.js';
import type { Objective } from '../../search/objective.js';
import type { SearchSpace } from '../../search/space.js';
import type { StructuredGenome, StructuredSpace } from './space.js';

export interface PlanSpace extends SearchSpace<StructuredPlan> {
  readonly config: ModelConfig;
}

/** Plans as genomes: a plan's JSON is its text, its sha256 the cache key. */
export function createPlanSpace(
  config: ModelConfig,
  totalParameters: number,
  keptParametersOf: StructuredSpace['keptParametersOf'],
): PlanSpace {
  const encode = (p: StructuredPlan) => JSON.stringify(p);
  const full = fullPlan(config);
  const fullKey = encode(full);
  const kept = (p: StructuredPlan) => keptParametersOf(layerShapes(config, p));
  return {
    unit: 'structured plan',
    config,
    genes: config.numLayers,
    totalParameters,
    structuredMasks: true,
    encode,
    decode: (text) => {
      try {
        const p = JSON.parse(text) as StructuredPlan;
        checkPlan(config, p);
        return p;
      } catch {
        return undefined;
      }
    },
    key: (p) =>
      createHash('sha256')
        .update(encode(canonical(p)))
        .digest('hex'),
    full: () => fullPlan(config),
    isFull: (p) => encode(p) === fullKey,
    sparsity: (p) => 1 - kept(p) / totalParameters,
    keptParameters: kept,
    masks: (p) => structuredMasksOf(config, p),
  };
}

/** The plan with a skipped block's units listed as removed: equal for plans that compute one function this way. */
export function canonical(p: StructuredPlan): StructuredPlan {
  return {
    heads: p.heads.map((h, i) => (p.skipAttention[i] ? [] : h)),
    channels: p.channels.map((c, i) => (p.skipMlp[i] ? [] : c)),
    skipAttention: p.skipAttention,
    skipMlp: p.skipMlp,
  };
}

/** The plan objective seen through a level space: each genome is scored as its plan. */
export function levelObjective(
  base: Objective<StructuredPlan>,
  space: StructuredSpace,
): Objective<StructuredGenome, StructuredSpace> {
  const objective: Objective<StructuredGenome, StructuredSpace> = {
    space,
    metric: base.metric,
    evaluateMany: (genomes, fidelity, onResult) =>
      base.evaluateMany(
        genomes.map((g) => space.plan(g)),
        fidelity,
        onResult,
      ),
    evaluate: (g, fidelity) => base.evaluate(space.plan(g), fidelity),
    prime: (g, fidelity, result) => base.prime(space.plan(g), fidelity, result),
    forwardPasses: () => base.forwardPasses(),
    evaluations: () => base.evaluations(),
    release: () => base.release(),
  };
  return objective;
}
