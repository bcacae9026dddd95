/**
 * The `weights` command's settings: every option a run records, the defaults, and the checks of options against
 * each other (the library and the CLI prune alike because both come through here). The model-dependent check —
 * a pattern's group must divide every prunable row — runs once the model is open (run.ts), before anything is
 * written.
 */
import { flagError } from '../../errors.js';
import { COMPUTE_DTYPES } from '../../graph/weights.js';
import { parseLayerPattern } from '../../masks/layers.js';
import { type NmPattern, parsePattern } from '../../masks/select.js';
import { metricEntry, orList } from '../../metrics/registry.js';
import type { RunDataSettings } from '../../runs/data.js';
import { settingsFrom } from '../../runs/presets.js';
import { QUALITY_METRICS, type QualityMetric } from '../../search/objective.js';
import { weightBaseline, weightBaselineNames } from './baselines.js';
import { GA_FITNESS_FORMS, type GaFitness } from './ga.js';
// The searching methods register themselves as weights methods (ga.ts through the import above).
import './seeded.js';
import './alloc.js';
import './sparsegpt.js';
import './owl.js';

export interface WeightPruneSettings extends RunDataSettings {
  /** A registered method (spaces/weights/baselines.ts): magnitude, global-magnitude, random, wanda, ga, alloc. */
  method: string;
  /** Share of the prunable weights to prune, in [0, 1); with a pattern, 1 − N/M. */
  sparsity: number;
  /** `N:M` (every group of M consecutive weights of a row keeps N); undefined = unstructured. */
  pattern?: string;
  seed: number;
  /**
   * The calibration quality metric (RunDataSettings.metric, default 'ppl'): what result.json's calibration score
   * uses, and what a method that searches (the GA) may use as its objective — with 'bleu' the objective's quality
   * is −BLEU on the calibration task (search/objective.ts), lower is better as for ppl and kl.
   */
  metric: QualityMetric;
  /**
   * After the mask is fixed, reconstruct each pruned linear's kept weights by least squares on the calibration
   * activations (prune/recover.ts, sequential as prune/sequential.ts walks the layers).
   */
  recover?: boolean;
  /**
   * `--layers PATTERN` (masks/layers.ts): only the prunable matrices it selects are pruned, and --sparsity counts
   * over them; the others stay dense (all ones in the mask file). Absent: every prunable matrix.
   */
  layers?: string;
  /**
   * `ga`: the fitness form (ga.ts): 'normalized' (default) (1 − λ)·q + λ·s with q the quality relative to the dense
   * model's; 'geneprune-code' the GenePrune code's (1 − λ)·b + λ·s on the candidate's raw sentence-mean BLEU b
   * (0–1), times 0.1 when b < 0.09 — set by `--preset geneprune` on an encoder-decoder, with --metric bleu and
   * --bleu sentence-mean.
   */
  fitness?: GaFitness;
  /** Searching methods (`ga`, `ga-wanda`, `ga-magnitude`): population size (method default when absent). */
  population?: number;
  /** Searching methods: generations (steady-state iterations for `ga`) per block. */
  generations?: number;
  /** `ga`: λ of the fitness (1 − λ)·quality + λ·sparsity. */
  lambda?: number;
  /** `ga`: probability that mutation turns a kept weight off; seeded GAs: share of pruned weights swapped. */
  mutationRate?: number;
}

/** The search settings and their flags (each refused for a method that does not take it). */
export const SEARCH_SETTING_FLAGS = [
  ['population', '--population'],
  ['generations', '--generations'],
  ['lambda', '--lambda'],
  ['mutationRate', '--mutation-rate'],
] as const;

export const WEIGHT_PRUNE_DEFAULTS = {
  method: 'magnitude',
  metric: 'ppl',
  calibTokens: 8192,
  seed: 0,
  dtype: 'fp32',
  recover: false,
} as const satisfies Partial<WeightPruneSettings>;

/**
 * Presets: `geneprune`, the GenePrune paper's GA with its printed settings (spaces/weights/ga.ts, GA_PRESET). On an
 * encoder-decoder (the paper's own experiment: CodeT5 on MBPP) it is the paper's public code's setup instead,
 * SEQ2SEQ_PRESET_SETTINGS.
 */
export const WEIGHT_PRESETS = ['geneprune'] as const;
export type WeightPreset = (typeof WEIGHT_PRESETS)[number];
const PRESET_SETTINGS: Record<WeightPreset, Partial<WeightPruneSettings>> = { geneprune: { method: 'ga' } };

/** The GenePrune code's prompt: its fixed prefix before each MBPP problem's text. */
export const GENEPRUNE_PROMPT_TEMPLATE = 'Generate code from natural language: (from Mbpp) {text}';

/**
 * `--preset geneprune` on an encoder-decoder: what the GenePrune code runs — its prompt prefix, fitness on the
 * mean NLTK sentence BLEU (method1, 0–1) with the 0.1 penalty below 0.09, λ 0.02, population 10, 5 generations,
 * stop at 20 % sparsity, greedy generation of at most 128 new tokens. Every value is recorded in config.json as a
 * setting, and any flag given beside the preset overrides it.
 */
export const SEQ2SEQ_PRESET_SETTINGS: Record<WeightPreset, Partial<WeightPruneSettings>> = {
  geneprune: {
    method: 'ga',
    metric: 'bleu',
    bleu: 'sentence-mean',
    fitness: 'geneprune-code',
    promptTemplate: GENEPRUNE_PROMPT_TEMPLATE,
    sparsity: 0.2,
    lambda: 0.02,
    population: 10,
    generations: 5,
    calibNewTokens: 128,
    evalNewTokens: 128,
  },
};

export type WeightPruneOptions = Partial<WeightPruneSettings> & {
  calib: string;
  eval: string;
  /** Start from a preset's settings (`geneprune`: the paper's GA). */
  preset?: WeightPreset;
};

/** The pattern a run's settings name, parsed (undefined: unstructured). */
export function patternOf(s: Pick<WeightPruneSettings, 'pattern'>): NmPattern | undefined {
  if (s.pattern === undefined) return undefined;
  const p = parsePattern(s.pattern);
  if (!p) throw flagError('--pattern', `expected N:M with 0 < N < M (e.g. 2:4), got "${s.pattern}"`);
  return p;
}

/**
 * Fills defaults and checks the options against each other. Errors name the CLI flag. `model.seq2seq`: the model
 * is an encoder-decoder (its kind scores source/target pairs), whose `geneprune` preset is the paper code's setup.
 */
export function weightPruneSettings(
  opts: WeightPruneOptions,
  model: { seq2seq?: boolean } = {},
): WeightPruneSettings {
  const { preset, ...given } = opts;
  const s = settingsFrom<WeightPruneSettings>(
    WEIGHT_PRUNE_DEFAULTS as unknown as Omit<WeightPruneSettings, 'calib' | 'eval'>,
    model.seq2seq ? SEQ2SEQ_PRESET_SETTINGS : PRESET_SETTINGS,
    preset,
    given as Partial<WeightPruneSettings>,
  );
  if (preset === 'geneprune' && s.method !== 'ga') {
    throw flagError(
      '--preset',
      `geneprune is the paper's GA (method ga); it does not combine with --method ${s.method}`,
    );
  }
  if (!s.calib)
    throw flagError(
      '--calib',
      'required: the calibration data (what methods that look at activations see, and what the mask is first scored on)',
    );
  if (!s.eval) throw flagError('--eval', 'required: the evaluation data the pruned model is reported on');
  if (!COMPUTE_DTYPES.includes(s.dtype ?? 'fp32')) {
    throw flagError('--dtype', `unknown compute dtype "${s.dtype}" (choose ${COMPUTE_DTYPES.join(', ')})`);
  }
  if (!QUALITY_METRICS.includes(s.metric)) {
    throw flagError('--metric', `"${s.metric}" is not one of ${QUALITY_METRICS.join(', ')}`);
  }
  // A method that updates the weights itself (SparseGPT) goes through recovery: --recover is implied.
  if (weightBaseline(s.method)?.recovers) s.recover = true;
  // A metric scored against the dense model's own outputs (KL) would take the recovered model's as its reference.
  if (metricEntry(s.metric).denseReference && s.recover) {
    throw flagError(
      '--metric',
      `kl after --recover${weightBaseline(s.method)?.recovers ? ` (implied by ${s.method})` : ''} would compare the recovered model with itself unpruned, not with the dense model; use ppl or bleu`,
    );
  }
  if (s.lowItems !== undefined)
    throw flagError('--low-items', 'only the head search has low-fidelity scoring');
  const methods = weightBaselineNames();
  if (!methods.includes(s.method))
    throw flagError('--method', `"${s.method}" is not one of ${methods.join(', ')}`);
  const searching = weightBaseline(s.method);
  if ((searching?.searchSettings?.length ?? 0) > 0) {
    const can = searching?.searchMetrics?.() ?? ['ppl'];
    if (!can.includes(s.metric)) {
      throw flagError('--metric', `the ${s.method} method searches on ${orList(can)}, not ${s.metric}`);
    }
  }
  if (s.fitness !== undefined) {
    if (!GA_FITNESS_FORMS.includes(s.fitness)) {
      throw flagError('--preset', `unknown GA fitness form "${s.fitness}" (${GA_FITNESS_FORMS.join(', ')})`);
    }
    if (s.method !== 'ga') {
      throw flagError('--method', `the GenePrune code's fitness is the ga method's, not ${s.method}'s`);
    }
    if (s.fitness === 'geneprune-code' && (s.metric !== 'bleu' || s.bleu !== 'sentence-mean')) {
      throw flagError(
        '--metric',
        `the GenePrune code's fitness reads sentence-mean BLEU (--metric bleu --bleu sentence-mean), not ${s.metric}${s.metric === 'bleu' ? ` ${s.bleu ?? 'corpus'}` : ''}`,
      );
    }
  }
  // The syntax now; the stacks and blocks once the model is open (run.ts).
  if (s.layers !== undefined) parseLayerPattern(s.layers);
  const pattern = patternOf(s);
  const chosen = weightBaseline(s.method);
  if (pattern && chosen?.supportsPattern === false) {
    throw flagError(
      '--pattern',
      chosen.patternRefusal ?? `the ${s.method} method does not support patterns yet`,
    );
  }
  if (pattern) {
    const implied = 1 - pattern.n / pattern.m;
    // The pattern fixes the sparsity: a preset's stop threshold (the encoder-decoder preset's 20 %) gives way to it;
    // only a --sparsity the user gave must agree.
    if ((given as Partial<WeightPruneSettings>).sparsity === undefined) s.sparsity = implied;
    else if (Math.abs(s.sparsity - implied) > 1e-12) {
      throw flagError(
        '--sparsity',
        `the ${s.pattern} pattern prunes ${implied} of the weights; leave --sparsity out or give ${implied}`,
      );
    }
  }
  if (s.sparsity === undefined) {
    throw flagError(
      '--sparsity',
      'required: the share of the prunable weights to prune, in [0, 1) (or give --pattern N:M)',
    );
  }
  if (!(typeof s.sparsity === 'number' && s.sparsity >= 0 && s.sparsity < 1)) {
    throw flagError('--sparsity', `must lie in [0, 1), got ${s.sparsity}`);
  }
  for (const [key, flag] of [
    ['calibTokens', '--calib-tokens'],
    ['evalTokens', '--eval-tokens'],
    ['context', '--ctx'],
    ['batchSize', '--batch-size'],
    ['calibItems', '--calib-items'],
    ['calibNewTokens', '--calib-new-tokens'],
    ['evalItems', '--eval-items'],
    ['evalNewTokens', '--eval-new-tokens'],
  ] as const) {
    const v = s[key];
    if (v !== undefined && !(Number.isSafeInteger(v) && v >= 1))
      throw flagError(flag, `must be an integer ≥ 1, got ${v}`);
  }
  if (!Number.isSafeInteger(s.seed)) throw flagError('--seed', `must be an integer, got ${s.seed}`);
  const takes = weightBaseline(s.method)?.searchSettings ?? [];
  for (const [key, flag] of SEARCH_SETTING_FLAGS) {
    const v = s[key];
    if (v === undefined) continue;
    if (!takes.includes(key)) {
      throw flagError(
        flag,
        takes.length === 0
          ? `the ${s.method} method does not search (it takes no ${flag})`
          : `the ${s.method} method does not take ${flag} (it takes ${takes.map((k) => SEARCH_SETTING_FLAGS.find(([x]) => x === k)![1]).join(', ')})`,
      );
    }
    const integer = key === 'population' || key === 'generations';
    const ok = integer
      ? Number.isSafeInteger(v) && v >= (key === 'population' ? 4 : 0)
      : typeof v === 'number' && v >= 0 && v <= 1;
    if (!ok) {
      throw flagError(
        flag,
        integer
          ? `must be an integer ≥ ${key === 'population' ? 4 : 0}, got ${v}`
          : `must lie in [0, 1], got ${v}`,
      );
    }
  }
  return s;
}
