/**
 * What a run's result.json holds, for each space (the lifecycles that write them: spaces/heads/search.ts,
 * spaces/weights/run.ts), and the one writer of the calibration record both carry: the dense and the pruned
 * model's `--metric` quality on the calibration data, with the metric's own numbers (BLEU, accuracy, macro-F1)
 * and the data they were scored on.
 */
import { GenepruneError } from '../errors.js';
import type { Genome } from '../masks/heads.js';
import type { LayerSparsity } from '../masks/weights.js';
import { calibRecord, findMetric, type MetricDataKind } from '../metrics/registry.js';
import type { HeadRecoveryLayer } from '../prune/recover-heads.js';
import type { QualityMetric } from '../search/objective.js';
import type { HeadMethod } from '../spaces/heads/settings.js';
import { choicesRecord, type EvalChoices } from './choices.js';
import type { LabelledEval, RunData } from './data.js';
import { labelledRecord } from './labels.js';
import { type EvalBleu, taskRecord } from './tasks.js';

/** A perplexity of the dense and the pruned model on one data set. */
export interface PerplexityPair {
  data: string;
  tokens: number;
  perplexity: number;
  densePerplexity: number;
}

/**
 * The calibration scores: perplexity (language models; a classification run has none), and the run's `--metric`
 * (`metric`, `quality`, `denseQuality`; lower is better, so for 'bleu' they are −BLEU, with `bleu` and
 * `denseBleu` giving BLEU itself and `task` the calibration task; for 'mc-accuracy' −accuracy, with `accuracy`,
 * `denseAccuracy` and `choices`; for 'accuracy' / 'macro-f1' −accuracy or −macro-F1, with `accuracy`,
 * `denseAccuracy`, `macroF1`, `denseMacroF1` and `labelled`). `tokens` is the perplexity's token count, or the
 * labelled items scored.
 */
export interface CalibScore extends CalibrationMetricFields {
  data: string;
  tokens: number;
  perplexity?: number;
  densePerplexity?: number;
  metric: QualityMetric;
  quality: number;
  denseQuality: number;
}

export interface WeightPruneResult {
  runDir: string;
  method: string;
  /** 'unstructured' or 'N:M'. */
  pattern: string;
  sparsity: {
    /** What was asked for (1 − N/M with a pattern). */
    target: number;
    /** Share of the prunable weights pruned. */
    achieved: number;
    /** Share of all parameters pruned (embeddings, norms and output head are never pruned). */
    overall: number;
  };
  prunableWeights: number;
  parameters: number;
  /** `--layers`: the pattern, the prunable matrices it selected (what the sparsity counts over) and of how many. */
  layerPattern?: { pattern: string; matrices: number; of: number };
  layers: LayerSparsity[];
  /** Context length of every window scored, calibration and evaluation alike (pairs: the longest row). */
  context: number;
  /**
   * 'pairs': an encoder-decoder's run, whose perplexities are of task items' reference targets given their sources
   * (whole pairs, no windows); absent for token windows.
   */
  scored?: 'pairs';
  /** What the user should know about the result (e.g. a sparsity far below the target); absent when none. */
  warnings?: string[];
  calib: CalibScore;
  /** Perplexity on the evaluation text; for 'accuracy' / 'macro-f1' runs, both scores on the labelled --eval file. */
  eval: PerplexityPair | LabelledEval;
  /** `--eval-task`: dense and pruned BLEU on the evaluation task (after recovery with --recover). */
  evalBleu?: EvalBleu;
  /** `--eval-choices`: dense and pruned multiple-choice accuracy (after recovery with --recover). */
  evalChoices?: EvalChoices;
  /** Forward passes on calibration data: the method's own, plus scoring the dense and the pruned model. */
  forwardPasses: number;
  seconds: number;
  /** What choosing the mask alone cost (the method's batch passes and seconds), out of the totals above. */
  methodCost: { forwardPasses: number; seconds: number };
  /** The weight-mask file in the run directory, and the sha256 of its bytes. */
  mask: string;
  maskSha256: string;
  seed: number;
  /** The method's own log (`ga`: per block, the initial population's best and the fixed mask's fitness). */
  methodReport?: unknown;
  resumed?: boolean;
  /**
   * `--recover`: the perplexities before recovery (calib / eval above are after it), the recovered weights' file,
   * its cost, and per layer the calibration reconstruction error Σ (w − ŵ)ᵀXᵀX(w − ŵ) of masking alone and after.
   */
  recovery?: {
    before: {
      /** Language models only (a classification run has no perplexity). */
      calibPerplexity?: number;
      evalPerplexity?: number;
      /** The --metric calibration quality before recovery. */
      calibQuality: number;
      /** --eval-task: corpus BLEU on the evaluation task before recovery. */
      evalBleu?: number;
      /** --eval-choices, or a classification run: accuracy on the evaluation file before recovery. */
      evalAccuracy?: number;
      /** A classification run: macro-F1 on the evaluation file before recovery. */
      evalMacroF1?: number;
    };
    weights: string;
    forwardPasses: number;
    seconds: number;
    reconstruction: Array<{ layer: number; maskedError: number; recoveredError: number }>;
  };
}

/**
 * The result of a run on a language model (every run but a classification run's): perplexities on both data sets,
 * and before recovery.
 */
export type PerplexityRunResult = WeightPruneResult & {
  calib: { perplexity: number; densePerplexity: number };
  eval: PerplexityPair;
  recovery?: { before: { calibPerplexity: number; evalPerplexity: number } };
};

/** The result as a language model's run (refused, internally, for a classification run's). */
export function perplexityRun(r: WeightPruneResult): PerplexityRunResult {
  if (!('perplexity' in r.eval) || r.calib.perplexity === undefined) {
    throw new GenepruneError('internal', `${r.runDir} is a classification run: it has no perplexity`);
  }
  return r as PerplexityRunResult;
}

/**
 * A run whose achieved sparsity is below this share of its target is flagged: a method that takes --sparsity as
 * a threshold rather than a budget (the GenePrune GA) can stop far short of it, and "asked 50 %, got 5 %" must
 * not pass as a 50 % result. A budget method lands within rounding of the target and is never flagged.
 */
export const SPARSITY_SHORTFALL = 0.9;

/** The warnings a result carries about its sparsity (none, or one line). */
export function sparsityWarnings(method: string, target: number, achieved: number): string[] {
  if (!(target > 0) || achieved >= SPARSITY_SHORTFALL * target) return [];
  const pct = (x: number) => `${(100 * x).toFixed(1)} %`;
  const why = method === 'ga' ? ': the ga method takes --sparsity as its stop threshold, not a budget' : '';
  return [`achieved sparsity ${pct(achieved)} is far below the ${pct(target)} asked${why}`];
}

export interface HeadSearchResult {
  runDir: string;
  method: HeadMethod;
  genome: Genome;
  removed: number;
  genes: number;
  /** Parameters the model keeps with the mask's heads removed, of `totalParameters`. */
  keptParameters: number;
  totalParameters: number;
  /** Context length of every window scored, calibration and evaluation alike (pairs: the longest row). */
  context: number;
  /**
   * 'pairs': an encoder-decoder's run, whose perplexities are of task items' reference targets given their sources
   * (whole pairs, no windows); absent for token windows.
   */
  scored?: 'pairs';
  /**
   * The objective's values on the calibration data: lower is better, so with metric 'bleu' quality and
   * denseQuality are −BLEU (and `bleu`, `denseBleu` give BLEU itself; `tokens` counts task items), with
   * 'mc-accuracy' −accuracy (`accuracy`, `denseAccuracy` give it, 0–1; `tokens` counts items). As in a weight
   * run's result, `perplexity` and `densePerplexity` name the perplexity itself (a 'ppl' run's quality).
   */
  calib: CalibrationMetricFields & {
    quality: number;
    denseQuality: number;
    perplexity?: number;
    densePerplexity?: number;
    metric: QualityMetric;
    tokens: number;
  };
  /** Perplexity on the evaluation text; for 'accuracy'/'macro-f1' runs, both scores on the labelled --eval file. */
  eval: { perplexity: number; densePerplexity: number; tokens: number; data: string } | LabelledEval;
  /** `--eval-task`: dense and pruned BLEU on the evaluation task. */
  evalBleu?: EvalBleu;
  /** `--eval-choices`: dense and pruned multiple-choice accuracy on the evaluation file. */
  evalChoices?: EvalChoices;
  forwardPasses: number;
  evaluations: number;
  seconds: number;
  /** `--recover`: o refitted after the mask's heads are removed (forward passes and seconds its own). */
  recovery?: HeadRecoveryReport;
  /** NSGA-II: how the mask was picked from the front (runs/front.ts). */
  pick?: NsgaPickReport;
}

/** How an NSGA-II run picked its mask: at the target size, or (with `warning`) the nearest size there was. */
export interface NsgaPickReport {
  atTarget: boolean;
  removed: number;
  targetRemoved: number;
  frontSize: number;
  archived: number;
  warning?: string;
}

/**
 * What `--recover` reports: calibration and evaluation perplexity of the head mask before recovery and after it
 * (the run's `calib` and `eval` stay the mask's own), the recovered weights' file, and per layer the calibration
 * reconstruction error of o, Σ (w − ŵ)ᵀXᵀX(w − ŵ), with the removed heads' columns zeroed and after the refit.
 */
export interface HeadRecoveryReport {
  before: { calibPerplexity: number; evalPerplexity: number };
  after: { calibPerplexity: number; evalPerplexity: number };
  /** recovered-weights.safetensors in the run directory, and the calibration tokens it was fitted on. */
  weights: string;
  tokens: number;
  damping: number;
  forwardPasses: number;
  seconds: number;
  reconstruction: HeadRecoveryLayer[];
}

/** The calibration fields every space's record shares, after those it leads with. */
export interface CalibrationMetricFields {
  bleu?: number;
  denseBleu?: number;
  /** 'exact-match' runs: the share of calibration items generated exactly as a reference (0–1) the quality negates. */
  exactMatch?: number;
  denseExactMatch?: number;
  /** 'pass@1' runs: the share of calibration items whose greedy program passed its tests (0–1). */
  passAt1?: number;
  densePassAt1?: number;
  task?: ReturnType<typeof taskRecord>;
  accuracy?: number;
  denseAccuracy?: number;
  choices?: ReturnType<typeof choicesRecord>;
  /** 'macro-f1' runs: the macro-F1 (0–1) the quality negates. */
  macroF1?: number;
  denseMacroF1?: number;
  /** 'accuracy' / 'macro-f1' runs: the labelled calibration file. */
  labelled?: ReturnType<typeof labelledRecord>;
}

/** The data a metric's calibration score was read from, as the record names it, by the metric's data kind. */
type CalibrationData = Pick<RunData, 'calibTask' | 'calibChoices' | 'calibLabelled'>;

/**
 * Per data kind, the record of the calibration data scored, or undefined where the record carries none of the
 * metric's numbers: text metrics have theirs (the perplexity) among the leading fields, and only a classification
 * run reads labelled calibration data (a run without it has no labelled numbers to quote).
 */
const SCORED_ON: Record<
  MetricDataKind,
  (data: CalibrationData, items: number) => Partial<CalibrationMetricFields> | undefined
> = {
  text: () => undefined,
  task: (d, n) => (d.calibTask ? { task: taskRecord(d.calibTask, n) } : {}),
  choices: (d, n) => (d.calibChoices ? { choices: choicesRecord(d.calibChoices, n) } : {}),
  labels: (d, n) => (d.calibLabelled ? { labelled: labelledRecord(d.calibLabelled, n) } : undefined),
};

/**
 * The calibration record of a result: `leading` (the fields each space's result.json has always begun with, in
 * its order, so the file's bytes stay what they were), then the metric's own numbers from `scored` (the pruned
 * and dense quality, lower is better, as the reported values of its registry record: BLEU, accuracy, macro-F1)
 * and the data they were scored on (the calibration task, the multiple-choice file, the labelled file), with the
 * tokens or items scored.
 */
export function calibrationRecord<T extends object>(
  leading: T,
  metric: QualityMetric,
  scored: { quality: number; denseQuality: number; tokens: number },
  data: CalibrationData,
): T & CalibrationMetricFields {
  const { quality, denseQuality, tokens } = scored;
  // A name the registry does not know (never reached: the run's objective refuses it first) adds nothing.
  const kind = findMetric(metric)?.data;
  const source = kind ? SCORED_ON[kind](data, tokens) : undefined;
  return {
    ...leading,
    ...(source ? { ...calibRecord(metric, quality, denseQuality), ...source } : {}),
  };
}
