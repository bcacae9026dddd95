/**
 * `pruneWeights`: choose a weight mask for the prunable linears with a registered method (magnitude,
 * global-magnitude, random, wanda) at a sparsity or an N:M pattern, in a run directory, and report the dense and
 * pruned perplexity on calibration and evaluation data (a sequence classifier's accuracy and macro-F1 on labelled
 * files with `metric: 'accuracy' | 'macro-f1'`); `resumeWeightPrune` continues or re-reads such a run.
 * Settings and their checks live in spaces/weights/settings.ts, so the library and the CLI prune alike.
 */
import { archOf } from '../arch/registry.js';
import { openModel } from '../model/open.js';
import {
  registerWeightBaseline,
  type WeightBaseline,
  type WeightBaselineInput,
  type WeightBaselineOutput,
  weightBaselineNames,
} from '../spaces/weights/baselines.js';
import {
  type PerplexityRunResult,
  perplexityRun,
  resumeWeightPrune,
  runWeightPrune,
  WEIGHT_MASK_FILE,
  type WeightGivenSetting,
  type WeightPruneEnv,
  type WeightPruneResult,
} from '../spaces/weights/run.js';
import {
  WEIGHT_PRESETS,
  WEIGHT_PRUNE_DEFAULTS,
  type WeightPreset,
  type WeightPruneOptions,
  type WeightPruneSettings,
  weightPruneSettings,
} from '../spaces/weights/settings.js';

export type {
  PerplexityRunResult,
  WeightBaseline,
  WeightBaselineInput,
  WeightBaselineOutput,
  WeightGivenSetting,
  WeightPreset,
  WeightPruneEnv,
  WeightPruneOptions,
  WeightPruneResult,
  WeightPruneSettings,
};
export {
  perplexityRun,
  registerWeightBaseline,
  resumeWeightPrune,
  WEIGHT_MASK_FILE,
  WEIGHT_PRESETS,
  WEIGHT_PRUNE_DEFAULTS,
  weightBaselineNames,
  weightPruneSettings,
};

/** A fresh weight-pruning run in the run directory `out` (created; refused when it holds anything). */
export async function pruneWeights(
  opts: WeightPruneOptions & WeightPruneEnv & { out: string },
): Promise<WeightPruneResult> {
  const {
    out,
    device,
    threads,
    workers,
    queue,
    memoryBudget,
    onStatus,
    onProgress,
    onSearchProgress,
    onSearchUpdate,
    onNote,
    ...settings
  } = opts;
  // A preset may depend on the model's kind (`geneprune` on an encoder-decoder is the paper code's setup).
  const seq2seq =
    settings.preset !== undefined &&
    archOf((await openModel(settings.model, { tokenizer: settings.tokenizer })).spec.config).lmData ===
      'pairs';
  return runWeightPrune(out, weightPruneSettings(settings, { seq2seq }), {
    device,
    threads,
    workers,
    queue,
    memoryBudget,
    onStatus,
    onProgress,
    onSearchProgress,
    onSearchUpdate,
    onNote,
  });
}
