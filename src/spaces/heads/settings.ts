/**
 * The head search's settings: every option a run records, the defaults, the paper's preset, and the checks of
 * options against each other. The library and the CLI search alike because both come through here.
 */
import { flagError } from '../../errors.js';
import { COMPUTE_DTYPES } from '../../graph/weights.js';
import { metricEntry } from '../../metrics/registry.js';
import type { RunDataSettings } from '../../runs/data.js';
import { settingsFrom } from '../../runs/presets.js';
import type { FitnessKind } from '../../search/fitness.js';
import {
  BLEU_SEARCH_ITEMS,
  isClassificationMetric,
  QUALITY_METRICS,
  type QualityMetric,
} from '../../search/objective.js';
import type { BaselineName } from './baselines.js';

export type HeadMethod = 'ga' | 'nsga' | BaselineName;
export const HEAD_METHODS: readonly HeadMethod[] = [
  'ga',
  'nsga',
  'random',
  'norm',
  'ablation',
  'greedy',
  'regression',
];

export interface HeadSearchSettings extends RunDataSettings {
  method: HeadMethod;
  metric: QualityMetric;
  /** Share of heads to remove (baselines, budget GA, and the NSGA-II pick). */
  targetSparsity?: number;
  /** Multi-fidelity: tokens for the cheap first pass (GA); undefined = off. */
  lowTokens?: number;
  promote: number;
  population: number;
  generations: number;
  tournament: number;
  crossoverRate: number;
  mutationRate: number;
  removalBias: number;
  sInitial: number;
  fitness: FitnessKind;
  lambda: number;
  elitism: number;
  fitnessThreshold?: number;
  maxSparsity?: number;
  seedAblation: boolean;
  regressionSamples?: number;
  seed: number;
  /**
   * Once the mask is fixed, refit o of every layer to its dense outputs on the calibration activations, layer by
   * layer (prune/recover-heads.ts), and write the recovered weights to the run directory.
   */
  recover?: boolean;
}

export const HEAD_PRESETS = ['sos'] as const;
export type HeadPreset = (typeof HEAD_PRESETS)[number];

/** The defaults: a budget-repaired GA with elitism when a target size is given, else −ppl·(1−s). */
export const HEAD_SEARCH_DEFAULTS: Omit<HeadSearchSettings, 'calib' | 'eval'> = {
  method: 'ga',
  metric: 'ppl',
  calibTokens: 8192,
  promote: 2,
  population: 16,
  generations: 30,
  tournament: 3,
  crossoverRate: 0.9,
  mutationRate: 0.02,
  removalBias: 0,
  sInitial: 0.1,
  fitness: 'sos',
  lambda: 1,
  elitism: 2,
  seedAblation: false,
  seed: 0,
  dtype: 'fp32',
  recover: false,
};

/** The paper's settings (Survival of the Smallest): population 10, tournament 3, mutation 1 %, −ppl·(1−s). */
export const SOS_PRESET: Partial<HeadSearchSettings> = {
  population: 10,
  tournament: 3,
  mutationRate: 0.01,
  fitness: 'sos',
  metric: 'ppl',
  elitism: 0,
  removalBias: 0.5,
  crossoverRate: 1,
  sInitial: 0.1,
};

export type HeadSearchOptions = Partial<HeadSearchSettings> & {
  calib: string;
  eval: string;
  /** Start from the paper's settings; explicit options still win. */
  preset?: HeadPreset;
};

/** Fills defaults (and the preset) and checks the options against each other. Errors name the CLI flag. */
export function headSearchSettings(opts: HeadSearchOptions): HeadSearchSettings {
  const { preset, ...given } = opts;
  const s = settingsFrom<HeadSearchSettings>(HEAD_SEARCH_DEFAULTS, { sos: SOS_PRESET }, preset, given);
  s.calib = opts.calib;
  s.eval = opts.eval;
  if (!s.calib) throw flagError('--calib', 'required: the calibration data the search scores masks on');
  if (!s.eval) throw flagError('--eval', 'required: the evaluation data the final mask is reported on');
  if (!COMPUTE_DTYPES.includes(s.dtype ?? 'fp32')) {
    throw flagError('--dtype', `unknown compute dtype "${s.dtype}" (choose ${COMPUTE_DTYPES.join(', ')})`);
  }
  if (!HEAD_METHODS.includes(s.method)) {
    throw flagError('--method', `"${s.method}" is not one of ${HEAD_METHODS.join(', ')}`);
  }
  if (!QUALITY_METRICS.includes(s.metric)) {
    throw flagError('--metric', `"${s.metric}" is not one of ${QUALITY_METRICS.join(', ')}`);
  }
  if (!['sos', 'lambda', 'budget'].includes(s.fitness)) {
    throw flagError('--fitness', `"${s.fitness}" is not one of sos, lambda, budget`);
  }
  if (opts.fitness === undefined && preset === undefined && s.targetSparsity !== undefined)
    s.fitness = 'budget';
  if (s.fitness === 'sos' && !metricEntry(s.metric).sos) {
    throw flagError(
      '--fitness',
      `sos multiplies perplexity by (1 − sparsity); with --metric ${s.metric} use lambda or budget (or give --target-sparsity)`,
    );
  }
  if (s.elitism >= s.population) throw flagError('--elitism', `must be below --population (${s.population})`);
  if (s.lowTokens !== undefined && s.lowTokens >= s.calibTokens) {
    throw flagError('--low-tokens', `must be below --calib-tokens (${s.calibTokens})`);
  }
  if (isClassificationMetric(s.metric) && s.recover) {
    throw flagError(
      '--recover',
      `refits o on calibration text; not with --metric ${s.metric} (labelled items)`,
    );
  }
  // A metric scored on task items (not on a token stream) cuts items for its cheap first pass, not tokens.
  const data = metricEntry(s.metric).data;
  if (s.lowTokens !== undefined && data !== 'text') {
    throw flagError(
      '--low-tokens',
      `with --metric ${s.metric} the cheap first pass scores fewer task items: --low-items`,
    );
  }
  // A multiple-choice task scores all its items unless --calib-items says fewer; its size is known once read.
  const fullItems =
    data === 'choices' || data === 'labels' ? s.calibItems : (s.calibItems ?? BLEU_SEARCH_ITEMS);
  if (s.lowItems !== undefined && fullItems !== undefined && s.lowItems >= fullItems) {
    throw flagError('--low-items', `must be below --calib-items (${fullItems})`);
  }
  if ((s.lowTokens !== undefined || s.lowItems !== undefined) && s.promote < 1)
    throw flagError('--promote', 'multi-fidelity needs --promote ≥ 1');
  return s;
}
