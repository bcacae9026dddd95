/**
 * The structured search's settings: every option a run records, the defaults, and the checks of options against
 * each other. The library and `geneprune structured` search alike because both come through here.
 */
import { flagError } from '../../errors.js';
import { COMPUTE_DTYPES } from '../../graph/weights.js';
import type { RunDataSettings } from '../../runs/data.js';
import { settingsFrom } from '../../runs/presets.js';
import type { QualityMetric } from '../../search/objective.js';
import { parseBudget } from './budget.js';
import { checkStructuredMetric, STRUCTURED_SEARCH_METRICS } from './metrics.js';
import { STRUCTURED_SPACES, type StructuredSpaceKind } from './space.js';

/**
 * The GA over a space's levels, EvoPress's (1 + λ) or NSGA-II over the same genomes (algorithms.ts), or a baseline
 * that searches nothing, at the same budget.
 */
export const STRUCTURED_METHODS = ['ga', 'uniform', 'flap', 'shortgpt', 'evopress', 'nsga'] as const;
export type StructuredMethod = (typeof STRUCTURED_METHODS)[number];

/** Metrics a structured search scores with: every registry metric whose runner carries the structured masks. */
export const STRUCTURED_METRICS: readonly QualityMetric[] = STRUCTURED_SEARCH_METRICS;

export interface StructuredSearchSettings extends RunDataSettings {
  space: StructuredSpaceKind;
  method: StructuredMethod;
  /** `params:R`, `flops:R` or `speedup:S` (budget.ts). */
  budget: string;
  metric: QualityMetric;
  /** The MLP width grid's step (default: widthLevels' rule: max(64, width/32 rounded up to 64)). */
  widthStep?: number;
  /** Calibration tokens the structured scores (the head and channel orders, block influence) are measured on. */
  scoreTokens: number;
  /** Multi-fidelity: tokens for the cheap first pass; undefined = off. */
  lowTokens?: number;
  promote: number;
  population: number;
  generations: number;
  tournament: number;
  crossoverRate: number;
  /** Level switches per mutation at most. */
  switches: number;
  elitism: number;
  seed: number;
  /** A latency profile to use instead of measuring one (checked against the model and the run's settings). */
  latencyProfile?: string;
  /** Timed runs per level when the latency profile is measured. */
  latencyRuns: number;
  /**
   * Structured plan files (`plan.json` of other runs, e.g. the single-space searches at the same budget) whose
   * plans open the GA's initial population, re-encoded as this space's genomes and repaired to the budget.
   */
  seedPlans?: string[];
  /** EvoPress's λ: children of the parent per generation (recorded for --method evopress only; default 16). */
  offspring?: number;
  /** Once the plan is chosen, refit o and down by least squares on the calibration windows (recover.ts). */
  recover?: boolean;
  /**
   * `--method flap` only: FLAP's bias compensation once the plan is chosen (removed units' mean contribution added
   * to o's / down's bias), for models whose o and down carry biases (recover.ts).
   */
  flapBias?: boolean;
}

/** Methods that start from --seed-plan plans. */
const SEEDED_METHODS: readonly StructuredMethod[] = ['ga', 'evopress', 'nsga'];

export const STRUCTURED_SEARCH_DEFAULTS: Omit<StructuredSearchSettings, 'calib' | 'eval' | 'budget'> = {
  space: 'joint',
  method: 'ga',
  metric: 'kl',
  calibTokens: 8192,
  scoreTokens: 8192,
  promote: 2,
  population: 16,
  generations: 30,
  tournament: 3,
  crossoverRate: 0.5,
  switches: 3,
  elitism: 2,
  seed: 0,
  dtype: 'fp32',
  latencyRuns: 5,
};

export type StructuredSearchOptions = Partial<StructuredSearchSettings> & {
  calib: string;
  eval: string;
  budget: string;
};

/** Fills defaults and checks the options against each other. Errors name the CLI flag. */
export function structuredSearchSettings(opts: StructuredSearchOptions): StructuredSearchSettings {
  const s = settingsFrom<StructuredSearchSettings>(
    STRUCTURED_SEARCH_DEFAULTS as Omit<StructuredSearchSettings, 'calib' | 'eval'>,
    {},
    undefined,
    opts,
  );
  if (!s.calib) throw flagError('--calib', 'required: the calibration data the search scores plans on');
  if (!s.eval) throw flagError('--eval', 'required: the evaluation data the final plan is reported on');
  if (!s.budget) throw flagError('--budget', 'required: params:R, flops:R or speedup:S');
  parseBudget(s.budget);
  if (!COMPUTE_DTYPES.includes(s.dtype ?? 'fp32')) {
    throw flagError('--dtype', `unknown compute dtype "${s.dtype}" (choose ${COMPUTE_DTYPES.join(', ')})`);
  }
  if (!STRUCTURED_SPACES.includes(s.space))
    throw flagError('--space', `"${s.space}" is not one of ${STRUCTURED_SPACES.join(', ')}`);
  if (!STRUCTURED_METHODS.includes(s.method))
    throw flagError('--method', `"${s.method}" is not one of ${STRUCTURED_METHODS.join(', ')}`);
  checkStructuredMetric(s);
  if (s.elitism >= s.population) throw flagError('--elitism', `must be below --population (${s.population})`);
  if (s.lowTokens !== undefined && s.lowTokens >= s.calibTokens)
    throw flagError('--low-tokens', `must be below --calib-tokens (${s.calibTokens})`);
  if (s.lowTokens !== undefined && s.promote < 1)
    throw flagError('--promote', 'multi-fidelity needs --promote ≥ 1');
  if (s.seedPlans !== undefined && !SEEDED_METHODS.includes(s.method))
    throw flagError('--seed-plan', `seeds a GA's initial population; --method ${s.method} searches nothing`);
  if (s.offspring !== undefined && s.method !== 'evopress')
    throw flagError('--offspring', `is EvoPress's λ; --method ${s.method} has no offspring setting`);
  if (s.method === 'evopress') s.offspring ??= 16;
  if (s.offspring !== undefined && !(Number.isInteger(s.offspring) && s.offspring >= 1))
    throw flagError('--offspring', `must be a positive integer, got ${s.offspring}`);
  if (s.method === 'nsga' && s.lowTokens !== undefined)
    throw flagError(
      '--low-tokens',
      'NSGA-II scores every individual on all calibration tokens (no multi-fidelity)',
    );
  if (s.seedPlans !== undefined && s.method !== 'evopress' && s.seedPlans.length > s.population)
    throw flagError('--seed-plan', `${s.seedPlans.length} plans for a population of ${s.population}`);
  if (s.flapBias && s.method !== 'flap')
    throw flagError('--flap-bias', `is FLAP's bias compensation: only with --method flap, not ${s.method}`);
  if (s.flapBias && s.recover)
    throw flagError(
      '--flap-bias',
      'not with --recover, whose least squares refits the bias with the weights',
    );
  if (s.widthStep !== undefined && !(Number.isInteger(s.widthStep) && s.widthStep > 0))
    throw flagError('--width-step', `must be a positive integer, got ${s.widthStep}`);
  return s;
}
