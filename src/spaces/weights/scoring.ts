/**
 * How a weight run scores and recovers its fixed mask (the lifecycle around it: run.ts): the dense and the pruned
 * model's calibration quality, each objective in a session of its own (runs/score.ts), the evaluation data, the
 * evaluation task and multiple-choice file (runs/data.ts, tasks.ts, choices.ts), and `--recover`'s refit.
 */
import { join } from 'node:path';
import type { TokenBatch } from '../../engine/runner.js';
import { GenepruneError } from '../../errors.js';
import type { Bitset } from '../../masks/bitset.js';
import { unpackBits } from '../../masks/bitset.js';
import { writeRecoveredWeights } from '../../masks/recovered.js';
import type { NmPattern } from '../../masks/select.js';
import { classificationBatches, sliceClassification } from '../../metrics/classify.js';
import { batches, defaultBatchSize } from '../../metrics/perplexity.js';
import { isPerplexity } from '../../metrics/registry.js';
import { pairWindows, type Seq2seqPairs } from '../../metrics/seq2seq.js';
import type { ModelSpec } from '../../model/spec.js';
import { RECOVERY_DAMPING } from '../../prune/recover.js';
import { pruneSequentially } from '../../prune/sequential.js';
import { choiceObjectiveOptions, type EvalChoices, scoreChoicesOnEval } from '../../runs/choices.js';
import {
  type LabelledEval,
  type RunData,
  recoveryBatches,
  scoreLabelledOnEval,
  scoreOnEval,
} from '../../runs/data.js';
import { RECOVERED_WEIGHTS_FILE } from '../../runs/files.js';
import { type CalibScore, calibrationRecord, type PerplexityPair } from '../../runs/results.js';
import { withSession } from '../../runs/score.js';
import { bleuObjectiveOptions, type EvalBleu, scoreBleuOnEval } from '../../runs/tasks.js';
import { createObjective, isClassificationMetric, type QualityMetric } from '../../search/objective.js';
import type { QuotedBest } from '../../search/progress.js';
import { progressCallbacks, type WeightPruneEnv } from './runprogress.js';
import type { WeightPruneSettings } from './settings.js';
import type { WeightSpace } from './space.js';

export interface Prepared extends RunData {
  /** The unpruned model (the dense side of every comparison, also after recovery). */
  denseSpec: ModelSpec;
  space: WeightSpace;
  pattern?: NmPattern;
}

/** A classification run's calibration items: the first --calib-items (default all) of the labelled file. */
export function calibrationItems(s: WeightPruneSettings, d: RunData): number {
  const n = d.calibLabelled?.prepared.items.length ?? 0;
  return Math.min(s.calibItems ?? n, n);
}

/**
 * What methods and recovery that run the model read on a classification run: its calibration items, right-padded
 * in batches of about 4096 tokens (or --batch-size rows), `valid` on real tokens only.
 */
export function labelledCalibrationBatches(s: WeightPruneSettings, d: RunData): TokenBatch[] {
  const l = d.calibLabelled;
  if (!l) throw new GenepruneError('internal', 'labelledCalibrationBatches: not a classification run');
  const items = sliceClassification(l.prepared, calibrationItems(s, d));
  return [...classificationBatches(items, s.batchSize)].map((b) => b.batch);
}

/**
 * An encoder-decoder run's calibration batches, as its methods cut them (baselines.ts calibrationBatches): whole
 * pairs up to --calib-tokens target tokens, in batches sized for the longest row (or --batch-size rows).
 */
export function pairCalibrationBatches(
  s: WeightPruneSettings,
  d: RunData,
  pairs: Seq2seqPairs,
): TokenBatch[] {
  const windows = pairWindows(pairs, d.calibTokens, s.calib);
  return [
    ...batches(windows, s.batchSize ?? defaultBatchSize(windows.context, d.model.spec.config.vocabSize)),
  ];
}

/** One objective's dense (with `dense`) and pruned quality on the calibration data, and its forward passes. */
async function calibQuality(
  spec: ModelSpec,
  metric: QualityMetric,
  s: WeightPruneSettings,
  p: Prepared,
  genome: Bitset,
  env: WeightPruneEnv,
  dense: boolean,
) {
  const space = p.space;
  const open = () =>
    createObjective(spec, space, {
      stream: p.stream,
      ...(p.calibPairs ? { pairs: p.calibPairs } : {}),
      context: p.context,
      metric,
      bleu: bleuObjectiveOptions(s, p.calibTask),
      choices: choiceObjectiveOptions(s, p.calibChoices),
      ...(p.calibLabelled
        ? {
            labelled: {
              prepared: p.calibLabelled.prepared,
              items: calibrationItems(s, p),
              ...(s.batchSize !== undefined ? { batchSize: s.batchSize } : {}),
            },
          }
        : {}),
      tokens: s.calibTokens,
      batchSize: s.batchSize,
      device: env.device,
      threads: env.threads,
      dtype: s.dtype,
    });
  return withSession(open, async (objective) => {
    const denseQuality = dense ? (await objective.evaluate(space.full())).quality : Number.NaN;
    const pruned = await objective.evaluate(genome);
    return {
      denseQuality,
      quality: pruned.quality,
      tokens: pruned.tokens,
      forwardPasses: objective.forwardPasses(),
    };
  });
}

/**
 * Calibration perplexity and `--metric` quality, evaluation perplexity (and `--eval-task` BLEU) of `spec` under
 * the genome's masks; with `dense`, the unmasked model's too (a recovered spec has no dense model of its own: the
 * caller keeps the original's). A classification run scores its metric on the labelled calibration items and
 * accuracy and macro-F1 on the labelled evaluation file instead (no perplexity: an encoder has no language head).
 */
export async function scoreMasked(
  spec: ModelSpec,
  s: WeightPruneSettings,
  p: Prepared,
  genome: Bitset,
  env: WeightPruneEnv,
  dense: boolean,
  /** The masked model's evaluation scores, whose dense scores a recovered model's reuses. */
  denseOf: { bleu?: EvalBleu; choices?: EvalChoices; labelled?: LabelledEval } = {},
): Promise<{
  calib: CalibScore;
  eval: PerplexityPair | LabelledEval;
  evalBleu?: EvalBleu;
  evalChoices?: EvalChoices;
  forwardPasses: number;
}> {
  const space = p.space;
  const metric = s.metric ?? 'ppl';
  const labelled = isClassificationMetric(metric);
  const ppl = labelled ? undefined : await calibQuality(spec, 'ppl', s, p, genome, env, dense);
  // A run searching on the perplexity itself has just scored it.
  const chosen =
    ppl && isPerplexity(metric) ? ppl : await calibQuality(spec, metric, s, p, genome, env, dense);
  const calib: CalibScore = calibrationRecord(
    {
      data: s.calib,
      tokens: ppl ? ppl.tokens : chosen.tokens,
      ...(ppl ? { perplexity: ppl.quality, densePerplexity: ppl.denseQuality } : {}),
      metric,
      quality: chosen.quality,
      denseQuality: chosen.denseQuality,
    },
    metric,
    chosen,
    p,
  );
  const forwardPasses = (ppl?.forwardPasses ?? 0) + (chosen === ppl ? 0 : chosen.forwardPasses);
  env.onStatus?.('scoring on the evaluation data');
  const masks = space.masks(genome);
  if (labelled) {
    const e = await scoreLabelledOnEval(p, s, masks, env, denseOf.labelled);
    return { calib, eval: e, forwardPasses };
  }
  const e = await scoreOnEval(p, s, masks, env, { dense });
  if (p.evalTask)
    env.onStatus?.(`BLEU of the dense and the pruned model on the evaluation task ${p.evalTask.source}`);
  const evalBleu = p.evalTask
    ? await scoreBleuOnEval(p.evalTask, s, p.denseSpec, spec, masks, env, denseOf.bleu)
    : undefined;
  if (p.evalChoices) env.onStatus?.(`accuracy of the dense and the pruned model on ${p.evalChoices.source}`);
  const evalChoices = p.evalChoices
    ? await scoreChoicesOnEval(p.evalChoices, s, p.denseSpec, spec, masks, env, denseOf.choices)
    : undefined;
  return {
    calib,
    eval: { data: e.data, tokens: e.tokens, perplexity: e.perplexity, densePerplexity: e.densePerplexity },
    ...(evalBleu ? { evalBleu } : {}),
    ...(evalChoices ? { evalChoices } : {}),
    forwardPasses,
  };
}

/**
 * `--recover`: the fixed mask's kept weights refitted, layer by layer, to each linear's dense outputs on the
 * calibration windows (prune/sequential.ts with prune/recover.ts), written to RECOVERED_WEIGHTS_FILE.
 */
export async function recoverMasked(
  dir: string,
  p: Prepared,
  s: WeightPruneSettings,
  masks: ReadonlyMap<string, Bitset>,
  maskSha256: string,
  env: WeightPruneEnv,
  before?: QuotedBest,
) {
  const t0 = performance.now();
  const list = p.calibLabelled
    ? labelledCalibrationBatches(s, p)
    : p.calibPairs
      ? pairCalibrationBatches(s, p, p.calibPairs)
      : recoveryBatches(p.stream, {
          context: p.context,
          tokens: s.calibTokens,
          label: s.calib,
          vocabSize: p.model.spec.config.vocabSize,
          batchSize: s.batchSize,
        });
  const L = p.model.spec.config.numLayers;
  const result = await pruneSequentially(p.model.spec, {
    batches: list,
    recover: true,
    damping: RECOVERY_DAMPING,
    device: env.device,
    threads: env.threads,
    // Past the last block --layers selected nothing is refitted.
    until: Math.max(...p.space.matrices.map((m) => m.layer)) + 1,
    select: (lin) => {
      // Matrices --layers left out are neither pruned nor refitted.
      if (!p.space.weightRoles.includes(lin.role)) return undefined;
      const m = masks.get(lin.role);
      if (!m) throw new GenepruneError('internal', `no mask for ${lin.role}`);
      return unpackBits(m);
    },
    onLayer: (r) => progressCallbacks(s.method, env, before).onProgress(r.layer + 1, L, 'layers recovered'),
  });
  const path = join(dir, RECOVERED_WEIGHTS_FILE);
  await writeRecoveredWeights(
    path,
    p.model.spec,
    result.spec,
    [...masks.keys()].filter((role) => p.space.weightRoles.includes(role)),
    { kind: 'weight', sha256: maskSha256 },
    RECOVERY_DAMPING,
  );
  const reconstruction = result.layers.map((l) => ({
    layer: l.layer,
    maskedError: l.linears.reduce((a, x) => a + (x.maskedError ?? 0), 0),
    recoveredError: l.linears.reduce((a, x) => a + (x.recoveredError ?? 0), 0),
  }));
  return {
    spec: result.spec,
    path,
    forwardPasses: result.forwardPasses,
    seconds: (performance.now() - t0) / 1000,
    reconstruction,
  };
}
