/**
 * The metric registry: one entry per quality metric, holding everything the rest of the code needs to know about
 * it, so that the objective, the fitness, the runs, the report, the dashboard and the CLI look a metric up here
 * instead of branching on its name. A new metric is one `registerMetric` call with an entry; nothing else has to
 * learn its name. The generation metrics (data 'task': bleu, exact-match, pass@1) are all read from the same
 * greedy generations (metrics/generation.ts `scoreGeneration`), each entry saying which number of the score is
 * its value (`fromGeneration`).
 *
 * Conventions every entry keeps:
 * - the objective's *quality* is lower-is-better whatever the metric: the value itself for a 'lower' metric
 *   (perplexity, KL), the value negated for a 'higher' one (BLEU 9.1 → quality −9.1, accuracy 0.62 → −0.62), so
 *   every consumer that minimises (GA fitness, NSGA-II, baselines, archives) handles all of them unchanged;
 *   `reportedQuality` turns a quality back into the value people quote, `qualityOfValue` the other way;
 * - `normalise(quality, dense)` puts a quality on the fitness's scale (search/fitness.ts): lower is better, the
 *   dense model at 1 (perplexity, a ratio) or 0 (KL, and 1 − value / dense value for the 'higher' metrics);
 * - the objective factory builds the metric's calibration scorer (metrics/scorers.ts) for one model and search
 *   space; search/objective.ts wraps it in its cache and counters.
 */
import { flagError, GenepruneError } from '../errors.js';
import type { ModelSpec } from '../model/spec.js';
import type { ObjectiveOptions } from '../search/objective.js';
import type { GenerationScore } from './generation.js';
import type { CalibrationScorer, ScorerTarget } from './scorers.js';

// The scorers load the engine (onnxruntime-node) only when an objective is built: the report, the dashboard's
// worker thread and the CLI's settings read the registry without it.
const scorers = () => import('./scorers.js');
const classification = () => import('./classification.js');

/** The metrics geneprune ships. */
export type QualityMetric =
  | 'ppl'
  | 'kl'
  | 'bleu'
  | 'exact-match'
  | 'pass@1'
  | 'mc-accuracy'
  | 'accuracy'
  | 'macro-f1';
export const QUALITY_METRICS: readonly QualityMetric[] = [
  'ppl',
  'kl',
  'bleu',
  'exact-match',
  'pass@1',
  'mc-accuracy',
  'accuracy',
  'macro-f1',
];
/** Sequence-classification metrics: scored on labelled data by a model with a classification head. */
export type ClassificationMetric = 'accuracy' | 'macro-f1';

/**
 * What a metric is scored on: 'text' a token stream in context windows (--calib/--eval text, counted in tokens),
 * 'task' a generation task (prompt, reference), 'choices' a multiple-choice task, 'labels' labelled items for a
 * classifier (the last three counted in items).
 */
export type MetricDataKind = 'text' | 'task' | 'choices' | 'labels';

/** Builds a metric's calibration scorer: the runner it needs, once, and how a candidate's masks are scored. */
export type ObjectiveFactory = (
  spec: ModelSpec,
  target: ScorerTarget,
  opts: ObjectiveOptions,
) => Promise<CalibrationScorer>;

export interface MetricEntry {
  /** The name `--metric` takes and run files record. */
  readonly name: string;
  /** The reported value's label in logs, progress lines and reports (ppl, KL, BLEU, accuracy, macro-F1). */
  readonly label: string;
  /** The value's name in a sentence (a refusal: "a non-finite perplexity"). */
  readonly noun: string;
  /** The value's name on the dashboard's plots (perplexity, KL divergence, …). */
  readonly title: string;
  /** Whether a lower or a higher reported value is better; 'higher' metrics have the negated value as quality. */
  readonly direction: 'lower' | 'higher';
  /** The value's full scale (BLEU 100, accuracies 1); undefined when unbounded (perplexity, KL). */
  readonly scale?: number;
  /** What one value is in, where a line names it (KL: nats/token); empty when the label says it all. */
  readonly unit: string;
  /** Decimals a value is quoted with (of the per cent, for metrics of scale 1, quoted in per cent). */
  readonly digits: number;
  readonly data: MetricDataKind;
  /**
   * Scored against the dense model's own outputs (KL): the run holds the dense log-probabilities of every
   * calibration token, and after recovery the comparison would be with the recovered model itself.
   */
  readonly denseReference: boolean;
  /** Whether `--fitness sos` (−value · (1 − sparsity), the paper's, meant for perplexity) applies. */
  readonly sos: boolean;
  /**
   * How the block-wise weight searches (spaces/weights/blockwise.ts: ga, ga-wanda, ga-magnitude) score a
   * candidate of block l on this metric: 'suffix' on the suffix graph of blocks [l, L) fed the hidden states
   * entering block l (so the hidden states are captured, and candidates can be scored after their own recovery);
   * 'generation' by whole-model generations with the fixed blocks' masks (no hidden states, no recovery inside
   * the walk). Undefined: those searches refuse the metric.
   */
  readonly blockSearch?: BlockScoring;
  /** result.json's fields for the reported value and its dense counterpart (calib and, for labels, eval). */
  readonly record?: { readonly value: string; readonly dense: string };
  /**
   * Generation metrics (data 'task'): the metric's reported value in a score of the greedy generations (BLEU of
   * the chosen kind, exact match, pass@1). Undefined for the others.
   */
  readonly fromGeneration?: (score: GenerationScore) => number;
  /**
   * Scoring runs the code the model generates (pass@1): refused unless the user allows code execution
   * (`--allow-code-execution`), and the task's items need their tests.
   */
  readonly executesCode?: boolean;
  /** The quality on the fitness's scale, given the dense model's quality (see the module comment). */
  normalise(quality: number, denseQuality: number, form: NormalForm): number;
  /** The calibration scorer a search's objective runs (what createObjective used to branch on). */
  readonly objective: ObjectiveFactory;
}

/** How a block-wise weight search scores a block's candidates on a metric (MetricEntry.blockSearch). */
export type BlockScoring = 'suffix' | 'generation';

/**
 * The two forms of normalisation (search/fitness.ts `normalisedQuality` says which search uses which): 'shifted'
 * puts the dense model of a 'higher' metric at 0, 'ratio' at −1; both agree for perplexity (a ratio) and KL.
 */
export type NormalForm = 'shifted' | 'ratio';

/**
 * The normalisation of a 'higher' metric of full scale `scale`: 'shifted' (quality − dense) / |dense| = 1 − value /
 * dense value, 0 for the dense model; 'ratio' quality / |dense| = −value / dense value, −1 for the dense model;
 * −value / scale in both forms when the dense model scores 0 (nothing to compare with).
 */
export function relativeToDense(scale: number): MetricEntry['normalise'] {
  return (quality, dense, form) => {
    if (dense === 0) return quality / scale;
    return form === 'ratio' ? quality / Math.abs(dense) : (quality - dense) / Math.abs(dense);
  };
}

/**
 * A generation metric that is a share of the task's items (0–1, higher is better: exact match, pass@1), scored from
 * the same greedy generations as BLEU; the entry's own fields complete it.
 */
function shareOfGenerations(
  e: Pick<MetricEntry, 'name' | 'label' | 'record' | 'fromGeneration' | 'executesCode'>,
): MetricEntry {
  return {
    noun: e.label,
    title: e.label,
    direction: 'higher',
    scale: 1,
    unit: '',
    digits: 1,
    data: 'task',
    denseReference: false,
    sos: false,
    blockSearch: 'generation',
    normalise: relativeToDense(1),
    objective: async (spec, target, opts) =>
      (await scorers()).createGenerationScorer(spec, target, opts, e.name as QualityMetric),
    ...e,
  };
}

const BUILT_IN: readonly MetricEntry[] = [
  {
    name: 'ppl',
    label: 'ppl',
    noun: 'perplexity',
    title: 'perplexity',
    direction: 'lower',
    unit: '',
    digits: 4,
    data: 'text',
    denseReference: false,
    sos: true,
    blockSearch: 'suffix',
    record: { value: 'perplexity', dense: 'densePerplexity' },
    normalise: (quality, dense) => quality / dense,
    objective: async (spec, target, opts) => (await scorers()).createTextScorer(spec, target, opts, 'ppl'),
  },
  {
    name: 'kl',
    label: 'KL',
    noun: 'KL',
    title: 'KL divergence',
    direction: 'lower',
    unit: 'nats/token',
    digits: 4,
    data: 'text',
    denseReference: true,
    sos: false,
    normalise: (quality) => quality,
    objective: async (spec, target, opts) => (await scorers()).createTextScorer(spec, target, opts, 'kl'),
  },
  {
    name: 'bleu',
    label: 'BLEU',
    noun: 'BLEU',
    title: 'BLEU',
    direction: 'higher',
    scale: 100,
    unit: '',
    digits: 2,
    data: 'task',
    denseReference: false,
    sos: false,
    blockSearch: 'generation',
    record: { value: 'bleu', dense: 'denseBleu' },
    fromGeneration: (s) => s.bleu,
    normalise: relativeToDense(100),
    objective: async (spec, target, opts) =>
      (await scorers()).createGenerationScorer(spec, target, opts, 'bleu'),
  },
  shareOfGenerations({
    name: 'exact-match',
    label: 'exact match',
    record: { value: 'exactMatch', dense: 'denseExactMatch' },
    fromGeneration: (s) => s.exactMatch,
  }),
  shareOfGenerations({
    name: 'pass@1',
    label: 'pass@1',
    record: { value: 'passAt1', dense: 'densePassAt1' },
    // scoreGeneration gives passAt1 whenever it was asked to run the code, as this metric's scorer always asks.
    fromGeneration: (s) => s.passAt1 ?? Number.NaN,
    executesCode: true,
  }),
  {
    name: 'mc-accuracy',
    label: 'accuracy',
    noun: 'accuracy',
    title: 'accuracy',
    direction: 'higher',
    scale: 1,
    unit: '',
    digits: 1,
    data: 'choices',
    denseReference: false,
    sos: false,
    record: { value: 'accuracy', dense: 'denseAccuracy' },
    normalise: relativeToDense(1),
    objective: async (spec, target, opts) => (await scorers()).createChoiceScorer(spec, target, opts),
  },
  {
    name: 'accuracy',
    label: 'accuracy',
    noun: 'accuracy',
    title: 'accuracy',
    direction: 'higher',
    scale: 1,
    unit: '',
    digits: 1,
    data: 'labels',
    denseReference: false,
    sos: false,
    record: { value: 'accuracy', dense: 'denseAccuracy' },
    normalise: relativeToDense(1),
    objective: async (spec, target, opts) =>
      (await scorers()).createLabelledScorer(
        spec,
        target,
        opts,
        'accuracy',
        (await classification()).accuracy,
      ),
  },
  {
    name: 'macro-f1',
    label: 'macro-F1',
    noun: 'macro-F1',
    title: 'macro-F1',
    direction: 'higher',
    scale: 1,
    unit: '',
    digits: 1,
    data: 'labels',
    denseReference: false,
    sos: false,
    record: { value: 'macroF1', dense: 'denseMacroF1' },
    normalise: relativeToDense(1),
    objective: async (spec, target, opts) =>
      (await scorers()).createLabelledScorer(
        spec,
        target,
        opts,
        'macro-f1',
        (await classification()).macroF1,
      ),
  },
];

const registry = new Map<string, MetricEntry>(BUILT_IN.map((e) => [e.name, e]));

/**
 * Adds a metric (a name not yet taken); returns a function that removes it again (tests register toy metrics).
 * Its name is then accepted wherever a registered metric is looked up; `--metric` still offers QUALITY_METRICS.
 */
export function registerMetric(entry: MetricEntry): () => void {
  if (registry.has(entry.name))
    throw new GenepruneError('internal', `metric "${entry.name}" is already registered`);
  registry.set(entry.name, entry);
  return () => {
    if (registry.get(entry.name) === entry) registry.delete(entry.name);
  };
}

/** The entry of a registered metric, or undefined (a run file's metric is not trusted to be one). */
export function findMetric(name: unknown): MetricEntry | undefined {
  return typeof name === 'string' ? registry.get(name) : undefined;
}

/**
 * The entry of a registered metric. Settings refuse other names first, in these words; a name that reaches this
 * unchecked (a hand-edited config.json resumed) is refused the same way rather than scored as something else.
 */
export function metricEntry(name: string): MetricEntry {
  const e = registry.get(name);
  if (!e) throw flagError('--metric', `"${name}" is not one of ${metricNames().join(', ')}`);
  return e;
}

/** The names of every registered metric, built-in ones first. */
export function metricNames(): string[] {
  return [...registry.keys()];
}

/** Whether the metric's reported value is higher-is-better, its quality the value negated (BLEU, accuracy, F1). */
export function isNegatedMetric(
  metric: QualityMetric,
): metric is 'bleu' | 'exact-match' | 'pass@1' | 'mc-accuracy' | ClassificationMetric {
  return findMetric(metric)?.direction === 'higher';
}

/** Whether the metric is scored on labelled items by a classifier (accuracy, macro-F1). */
export function isClassificationMetric(metric: QualityMetric | undefined): metric is ClassificationMetric {
  return findMetric(metric)?.data === 'labels';
}

/** The metric's value as people quote it: perplexity, KL, BLEU or accuracy (negated qualities negated back). */
export function reportedQuality(metric: QualityMetric, quality: number): number {
  return isNegatedMetric(metric) ? -quality : quality;
}

/** The objective's quality for a reported value: the value, negated for a higher-is-better metric. */
export function qualityOfValue(metric: QualityMetric, value: number): number {
  return isNegatedMetric(metric) ? -value : value;
}

/** Label of a metric's reported value in logs and reports. */
export function metricLabel(metric: QualityMetric): string {
  return metricEntry(metric).label;
}

/** What a metric's calibration amounts count: tokens for text metrics, items for task-scored ones. */
export function amountUnit(entry: MetricEntry): 'tokens' | 'items' {
  return entry.data === 'text' ? 'tokens' : 'items';
}

/**
 * A reported value as lines quote it: per cent with `digits` decimals for metrics of scale 1, else `digits`
 * decimals (ppl 12.3457, BLEU 9.12, accuracy 61.9 %).
 */
export function quoteValue(entry: MetricEntry, value: number): string {
  return entry.scale === 1 ? `${(100 * value).toFixed(entry.digits)} %` : value.toFixed(entry.digits);
}

/**
 * Whether the metric is the perplexity itself: what every language-model run scores on its calibration text
 * anyway (a weight run beside its metric, head recovery before and after), so a run that searched on it reuses
 * that score instead of scoring it twice. Undefined stands for the default metric, the perplexity.
 */
export function isPerplexity(metric: string | undefined): boolean {
  return (metric ?? 'ppl') === 'ppl';
}

/** The registered metrics the block-wise weight searches can score (for "block-wise searches score …"). */
export function blockSearchMetrics(): string[] {
  return [...registry.values()].filter((e) => e.blockSearch !== undefined).map((e) => e.name);
}

/** The registered generation metrics (scored on a generation task's greedy generations), in registry order. */
export function generationMetrics(): string[] {
  return [...registry.values()].filter((e) => e.fromGeneration !== undefined).map((e) => e.name);
}

/** The registered metrics scored on one of these kinds of data, in registry order (for "only with --metric …"). */
export function metricsScoredOn(kinds: readonly MetricDataKind[]): string[] {
  return [...registry.values()].filter((e) => kinds.includes(e.data)).map((e) => e.name);
}

/** Names as a refusal lists them: "a", "a or b", "a, b or c". */
export function orList(names: readonly string[]): string {
  return names.length <= 1 ? names.join('') : `${names.slice(0, -1).join(', ')} or ${names.at(-1)}`;
}

/** The entry whose label a quoted best carries (search/progress.ts), or undefined. */
export function metricOfLabel(label: string): MetricEntry | undefined {
  for (const e of registry.values()) if (e.label === label) return e;
  return undefined;
}

/**
 * The metric of a classification run's labelled evaluation score: its own when it is a labels metric, else
 * accuracy (what a record without one means).
 */
export function labelledMetric(name: unknown): ClassificationMetric {
  const e = findMetric(name);
  return (e?.data === 'labels' ? e.name : 'accuracy') as ClassificationMetric;
}

/**
 * The result.json fields that quote a calibration quality and its dense counterpart as reported values, e.g.
 * { bleu: 9.1, denseBleu: 12.3 }; none for a metric without a record (KL: the quality is the value).
 */
export function calibRecord(
  metric: QualityMetric,
  quality: number,
  denseQuality: number,
): Record<string, number> {
  const e = metricEntry(metric);
  if (!e.record) return {};
  return {
    [e.record.value]: reportedQuality(metric, quality),
    [e.record.dense]: reportedQuality(metric, denseQuality),
  };
}
