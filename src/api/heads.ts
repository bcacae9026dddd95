/**
 * `searchHeads`: which attention heads to remove — the Survival of the Smallest GA (with our fixes), NSGA-II,
 * or a baseline — in a run directory; `resumeHeadSearch` continues one. Defaults and the paper's preset live
 * here, so the library and the CLI search alike.
 */
import { flagError } from '../errors.js';
import { COMPUTE_DTYPES } from '../graph/weights.js';
import {
  type GivenSetting,
  HEAD_METHODS,
  type HeadMethod,
  type HeadSearchEnv,
  type HeadSearchResult,
  type HeadSearchSettings,
  RESUME_CHANGEABLE_FLAGS,
  resumeHeadSearch,
  runHeadSearch,
} from '../search/headsearch.js';

export type { GivenSetting, HeadMethod, HeadSearchEnv, HeadSearchResult, HeadSearchSettings };
export { HEAD_METHODS, RESUME_CHANGEABLE_FLAGS, resumeHeadSearch };

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
  if (preset !== undefined && !HEAD_PRESETS.includes(preset)) {
    throw flagError('--preset', `unknown preset "${preset}" (known: ${HEAD_PRESETS.join(', ')})`);
  }
  const defined = Object.fromEntries(Object.entries(given).filter(([, v]) => v !== undefined));
  const s: HeadSearchSettings = {
    ...HEAD_SEARCH_DEFAULTS,
    ...(preset === 'sos' ? SOS_PRESET : {}),
    ...(defined as Partial<HeadSearchSettings>),
    calib: opts.calib,
    eval: opts.eval,
  };
  if (!s.calib) throw flagError('--calib', 'required: the calibration data the search scores masks on');
  if (!s.eval) throw flagError('--eval', 'required: the evaluation data the final mask is reported on');
  if (!HEAD_METHODS.includes(s.method)) {
    throw flagError('--method', `"${s.method}" is not one of ${HEAD_METHODS.join(', ')}`);
  }
  if (!COMPUTE_DTYPES.includes(s.dtype ?? 'fp32')) {
    throw flagError('--dtype', `unknown compute dtype "${s.dtype}" (choose ${COMPUTE_DTYPES.join(', ')})`);
  }
  if (!['ppl', 'kl'].includes(s.metric)) throw flagError('--metric', `"${s.metric}" is not one of ppl, kl`);
  if (!['sos', 'lambda', 'budget'].includes(s.fitness)) {
    throw flagError('--fitness', `"${s.fitness}" is not one of sos, lambda, budget`);
  }
  if (opts.fitness === undefined && preset === undefined && s.targetSparsity !== undefined)
    s.fitness = 'budget';
  if (s.fitness === 'sos' && s.metric === 'kl') {
    throw flagError(
      '--fitness',
      'sos multiplies perplexity by (1 − sparsity); with --metric kl use lambda or budget',
    );
  }
  if (s.elitism >= s.population) throw flagError('--elitism', `must be below --population (${s.population})`);
  if (s.lowTokens !== undefined && s.lowTokens >= s.calibTokens) {
    throw flagError('--low-tokens', `must be below --calib-tokens (${s.calibTokens})`);
  }
  if (s.lowTokens !== undefined && s.promote < 1)
    throw flagError('--promote', 'multi-fidelity needs --promote ≥ 1');
  return s;
}

/** A fresh head search in the run directory `out` (created; refused when it holds anything). */
export async function searchHeads(
  opts: HeadSearchOptions & HeadSearchEnv & { out: string },
): Promise<HeadSearchResult> {
  const { out, device, threads, memoryBudget, onStatus, onGeneration, onProgress, onNote, ...settings } =
    opts;
  return runHeadSearch(out, headSearchSettings(settings), {
    device,
    threads,
    memoryBudget,
    onStatus,
    onGeneration,
    onProgress,
    onNote,
  });
}
