/**
 * A whole weight-pruning run as the CLI does it: prepare the model and data (runs/data.ts), choose the mask with
 * a registered method (baselines.ts), fix it in the run directory's weight-mask file, score the dense and the
 * pruned model on the calibration tokens (the search objective, as a search would) and on the evaluation data
 * (scoring.ts), and write result.json (runs/results.ts). A classification run (`--metric accuracy|macro-f1`)
 * reads labelled files: its methods and recovery see the calibration items as padded batches, and it is scored
 * on the metric alone (no perplexity). `resumeWeightPrune` continues a run stopped after its mask was fixed (the
 * mask is read back, not chosen again), returns a finished run's result as it stands, and refuses what would
 * change the run (runs/resume.ts).
 *
 * Run directory (runs/files.ts): config.json (settings, model identity, data paths and hashes), state.json
 * (written atomically once the mask is fixed: the mask file's sha256, the method's cost),
 * weight-mask.safetensors, result.json, run.lock while a process works there; a block-wise search adds
 * evals.jsonl (every candidate it scored) and its checkpoint (search-state.json and the fixed blocks' bits,
 * runs/checkpoints.ts).
 */
import { join } from 'node:path';
import { fileError, flagError } from '../../errors.js';
import type { Bitset } from '../../masks/bitset.js';
import { selectLayerMatrices } from '../../masks/layers.js';
import { loadWeightMaskFile, patternText, writeWeightMaskFile } from '../../masks/weightfile.js';
import { prunableMatrices, weightMasksFromKeeps } from '../../masks/weights.js';
import { findMetric, orList, qualityOfValue } from '../../metrics/registry.js';
import { RECOVERY_DAMPING } from '../../prune/recover.js';
import {
  blockSearchCheckpoint,
  isMaskFixedState,
  type MaskFixedState,
  methodStateStore,
} from '../../runs/checkpoints.js';
import { absoluteSettings, prepareRunData, refuseChangedData, runModelAndData } from '../../runs/data.js';
import { appendJsonl, RUN_FILES, readJsonIfPresent, WEIGHT_MASK_FILE } from '../../runs/files.js';
import { sparsityWarnings, type WeightPruneResult } from '../../runs/results.js';
import { type GivenSetting, refuseChangedSettings, refuseForeignModel } from '../../runs/resume.js';
import {
  createRunDir,
  lockRunDir,
  type RunConfig,
  readRunConfig,
  refuseChangedSinceState,
  saveState,
  WEIGHT_RUN_KIND,
} from '../../runs/rundir.js';
import { bleuObjectiveOptions } from '../../runs/tasks.js';
import { watchBackend } from '../../runs/workersfile.js';
import { backendFor, refuseTwoBackends, runQueueId } from '../../search/backend.js';
import { oversubscriptionNote } from '../../search/pool.js';
import { quotedBest } from '../../search/progress.js';
import { faultPoint, sha256File, writeJsonAtomic } from '../../util/fs.js';
import { createRng } from '../../util/rng.js';
import { weightBaseline, weightBaselineNames } from './baselines.js';
import { GENEPRUNE_CODE_FITNESS } from './ga.js';
import { progressCallbacks, type WeightPruneEnv } from './runprogress.js';
import {
  calibrationItems,
  labelledCalibrationBatches,
  type Prepared,
  recoverMasked,
  scoreMasked,
} from './scoring.js';
import { patternOf, type WeightPruneSettings } from './settings.js';
import { createWeightSpace } from './space.js';

export { WEIGHT_MASK_FILE } from '../../runs/files.js';
export { type PerplexityRunResult, perplexityRun, type WeightPruneResult } from '../../runs/results.js';
export type { WeightPruneEnv } from './runprogress.js';

export type WeightGivenSetting = GivenSetting<Extract<keyof WeightPruneSettings, string>>;

/**
 * `--workers N`: refuses in one line, before any data is read or a run directory made, what an evaluation
 * backend cannot score: methods other than the block-wise searches (one-shot methods score nothing; alloc's
 * staged whole-model scoring has no recipe yet). Every metric a block search takes goes through, and `--recover`.
 * Notes (does not refuse) more compute threads than cores.
 */
export function refuseUnpooledWeightRun(s: WeightPruneSettings, env: WeightPruneEnv): void {
  if (env.workers === undefined && env.queue === undefined) return;
  refuseTwoBackends(env);
  // The queue's workers rebuild the same recipes as worker threads do: the same runs are refused.
  const flag = env.workers === undefined ? '--queue' : '--workers';
  const method = weightBaseline(s.method);
  if (!method?.remoteSearch) {
    const pooled = weightBaselineNames().filter((n) => weightBaseline(n)?.remoteSearch);
    throw flagError(
      flag,
      `not with --method ${s.method}: worker threads score the block-wise searches (${orList(pooled)}) only`,
    );
  }
  const crowded = oversubscriptionNote(env.workers, env.threads);
  if (crowded) env.onNote?.(crowded);
}

/** The model and data, the weight space, and the checks that need the model: all before anything is written. */
async function prepare(s: WeightPruneSettings, env: WeightPruneEnv): Promise<Prepared> {
  const pattern = patternOf(s);
  const data = await prepareRunData(s, env, 'weights');
  const spec = data.model.spec;
  const space = createWeightSpace(
    spec,
    s.layers === undefined
      ? {}
      : { roles: selectLayerMatrices(s.layers, spec.config, prunableMatrices(spec)).map((m) => m.role) },
  );
  if (pattern) {
    const bad = space.matrices.find((m) => m.cols % pattern.m !== 0);
    if (bad) {
      throw flagError(
        '--pattern',
        `a row of ${bad.role} has ${bad.cols} weights, which do not divide into groups of ${pattern.m}`,
      );
    }
  }
  const calibration = data.calibLabelled
    ? `${calibrationItems(s, data)} labelled items of ${data.calibLabelled.source}`
    : data.calibPairs
      ? `${data.calibPairs.targets.length} source/target pairs (${data.calibTokens} target tokens used)`
      : `${data.stream.length} tokens`;
  env.onStatus?.(
    `model ${data.model.modelPath}: ${space.genes} prunable weights in ${space.matrices.length} matrices (${space.totalParameters} parameters); calibration ${calibration}`,
  );
  return { ...data, denseSpec: data.model.spec, space, ...(pattern ? { pattern } : {}) };
}

async function runConfig(s: WeightPruneSettings, p: Prepared): Promise<RunConfig> {
  const recorded = await runModelAndData(s, p);
  return {
    kind: WEIGHT_RUN_KIND,
    version: 1,
    method: s.method,
    ...(weightBaseline(s.method)?.description
      ? {
          methodDescription: {
            ...weightBaseline(s.method)!.description,
            // A preset's fitness form replaces the method's own description of it.
            ...(s.fitness === 'geneprune-code' ? { fitness: GENEPRUNE_CODE_FITNESS } : {}),
          },
        }
      : {}),
    settings: s,
    model: recorded.model,
    geneOrder: p.space.matrices.some((m) => m.role.includes('.cross.'))
      ? 'layer-major over the prunable matrices (q k v o, then cross q k v o in decoder blocks, gate up down of each layer; encoder blocks first), each [out, in] row-major; 1 keeps the weight'
      : 'layer-major over the prunable matrices (q k v o gate up down of each layer), each [out, in] row-major; 1 keeps the weight',
    matrices: p.space.matrices.map(({ role, rows, cols }) => ({ role, rows, cols })),
    calibration: recorded.calibration,
    evaluation: recorded.evaluation,
  };
}

/** Chooses the mask, writes it into the run directory and records the fixed state. */
async function fixMask(dir: string, s: WeightPruneSettings, p: Prepared, env: WeightPruneEnv) {
  const method = weightBaseline(s.method);
  if (!method) throw flagError('--method', `unknown method "${s.method}"`);
  const t0 = performance.now();
  const progress = progressCallbacks(s.method, env);
  env.onStatus?.(`${s.method}: choosing ${patternText(p.pattern)} masks at sparsity ${s.sparsity}`);
  // `--workers N` or `--queue URL`: the search's candidates scored on the backend, which lives as long as the
  // method; the queue's job ids name the run by its directory (runQueueId).
  const backend = backendFor({ ...env, ...(env.queue !== undefined ? { runId: runQueueId(dir) } : {}) });
  // What the backend does goes to workers.json for the dashboard (a backend with stats only).
  const watch = watchBackend(dir, backend);
  const out = await method
    .select({
      spec: p.model.spec,
      matrices: p.space.matrices,
      sparsity: s.sparsity,
      ...(p.pattern ? { pattern: p.pattern } : {}),
      rng: createRng(s.seed),
      calibration: {
        stream: p.stream,
        context: p.context,
        tokens: p.calibTokens,
        ...(p.calibLabelled ? { batches: labelledCalibrationBatches(s, p) } : {}),
        // Encoder-decoders: the calibration items as source/target pairs (no stream).
        ...(p.calibPairs ? { pairs: p.calibPairs } : {}),
      },
      engine: { device: env.device, threads: env.threads },
      metric: s.metric ?? 'ppl',
      ...(p.calibTask ? { bleu: bleuObjectiveOptions(s, p.calibTask) } : {}),
      onProgress: progress.onProgress,
      search: {
        ...(s.population !== undefined ? { population: s.population } : {}),
        ...(s.generations !== undefined ? { generations: s.generations } : {}),
        ...(s.lambda !== undefined ? { lambda: s.lambda } : {}),
        ...(s.mutationRate !== undefined ? { mutationRate: s.mutationRate } : {}),
        ...(s.fitness !== undefined ? { fitness: s.fitness } : {}),
      },
      checkpoint: blockSearchCheckpoint(dir, s.method, p.space.matrices),
      state: methodStateStore(dir, s.method),
      ...(s.recover ? { recovery: { damping: RECOVERY_DAMPING } } : {}),
      ...(backend ? { remote: { backend, model: p.model.modelPath } } : {}),
      ...(env.onSearchProgress || env.onSearchUpdate ? { onSearchProgress: progress.onSearchProgress } : {}),
      onSearchEvaluation: (e) =>
        appendJsonl(dir, RUN_FILES.evals, {
          block: e.layer,
          generation: e.generation,
          // As every run log holds it: lower is better, so BLEU is negated (the dashboard and report turn it back).
          quality: Number.isFinite(e.value) ? qualityOfValue(e.metric, e.value) : null,
          sparsity: e.sparsity,
          ms: Math.round(e.ms),
        }),
    })
    .finally(() => backend?.release())
    .catch(async (e) => {
      await watch.stop().catch(() => {});
      throw e;
    });
  await watch.stop();
  const masks = weightMasksFromKeeps(p.space.matrices, out.keeps);
  // The file holds every prunable matrix: those --layers left out are kept whole.
  const all = prunableMatrices(p.model.spec);
  const fileMasks = weightMasksFromKeeps(
    all,
    all.map((m) => {
      const i = p.space.weightRoles.indexOf(m.role);
      return i >= 0 ? out.keeps[i] : new Uint8Array(m.rows * m.cols).fill(1);
    }),
  );
  const { sha256 } = await writeWeightMaskFile(join(dir, WEIGHT_MASK_FILE), p.model.spec, fileMasks, {
    ...(p.pattern ? { pattern: p.pattern } : {}),
    info: {
      method: s.method,
      sparsity: s.sparsity,
      seed: s.seed,
      runDir: dir,
      // What `eval --weight-mask` takes as its default --ctx, so it reproduces the run's evaluation.
      context: p.context,
      calibration: s.calib,
      evaluation: s.eval,
    },
  });
  const state: MaskFixedState = {
    version: 1,
    stage: 'mask-fixed',
    maskSha256: sha256,
    forwardPasses: out.forwardPasses,
    seconds: (performance.now() - t0) / 1000,
    ...(out.report !== undefined ? { methodReport: out.report } : {}),
  };
  await saveState(dir, state, [RUN_FILES.evals]);
  faultPoint('weights:mask-fixed');
  return { masks, state };
}

/** The recovered prunable matrices of a `--recover` run, beside its mask. */
/** From a fixed (or to-be-fixed) mask to result.json. */
async function pruneInDir(
  dir: string,
  s: WeightPruneSettings,
  p: Prepared,
  env: WeightPruneEnv,
  fixed?: MaskFixedState,
): Promise<WeightPruneResult> {
  const maskPath = join(dir, WEIGHT_MASK_FILE);
  let masks: ReadonlyMap<string, Bitset>;
  let state: MaskFixedState;
  if (fixed) {
    const loaded = await loadWeightMaskFile(maskPath, p.model.spec);
    if (loaded.sha256 !== fixed.maskSha256) {
      throw fileError(maskPath, 'is not the mask this run fixed (state.json records another sha256)');
    }
    env.onStatus?.('the mask was fixed before the run stopped: scoring it');
    masks = loaded.masks;
    state = fixed;
  } else {
    ({ masks, state } = await fixMask(dir, s, p, env));
  }
  // state.seconds already holds the method's time: count only what follows it.
  const tScore = performance.now();
  const space = p.space;
  const genome = space.join(masks);
  env.onStatus?.('scoring the dense and the pruned model on the calibration data');
  const scored = await scoreMasked(p.model.spec, s, p, genome, env, true);
  let calib = scored.calib;
  let evalScore = scored.eval;
  let evalBleu = scored.evalBleu;
  let evalChoices = scored.evalChoices;
  let passes = scored.forwardPasses;
  let recovery: WeightPruneResult['recovery'];
  if (s.recover) {
    env.onStatus?.('recovery: refitting the kept weights on the calibration activations, layer by layer');
    const before = quotedBest(s.metric ?? 'ppl', calib.quality, space.sparsity(genome), 'before recovery');
    const rec = await recoverMasked(dir, p, s, masks, state.maskSha256, env, before);
    env.onStatus?.('scoring the recovered model');
    const after = await scoreMasked(
      rec.spec,
      s,
      { ...p, model: { ...p.model, spec: rec.spec } },
      genome,
      env,
      false,
      { bleu: evalBleu, choices: evalChoices, ...('accuracy' in evalScore ? { labelled: evalScore } : {}) },
    );
    recovery = {
      before: {
        ...(calib.perplexity !== undefined ? { calibPerplexity: calib.perplexity } : {}),
        ...('perplexity' in evalScore ? { evalPerplexity: evalScore.perplexity } : {}),
        calibQuality: calib.quality,
        ...(evalBleu ? { evalBleu: evalBleu.corpus } : {}),
        ...(evalChoices ? { evalAccuracy: evalChoices.accuracy } : {}),
        ...('accuracy' in evalScore
          ? { evalAccuracy: evalScore.accuracy, evalMacroF1: evalScore.macroF1 }
          : {}),
      },
      weights: rec.path,
      forwardPasses: rec.forwardPasses,
      seconds: rec.seconds,
      reconstruction: rec.reconstruction,
    };
    calib = {
      ...after.calib,
      ...(calib.densePerplexity !== undefined ? { densePerplexity: calib.densePerplexity } : {}),
      denseQuality: calib.denseQuality,
      ...(calib.denseBleu !== undefined ? { denseBleu: calib.denseBleu } : {}),
      ...(calib.denseAccuracy !== undefined ? { denseAccuracy: calib.denseAccuracy } : {}),
      ...(calib.denseMacroF1 !== undefined ? { denseMacroF1: calib.denseMacroF1 } : {}),
      // Any other metric's dense value, by its registry record (exact match, pass@1).
      ...denseRecordOf(s.metric, calib),
    };
    // A labelled evaluation took its dense scores from the masked model's already (scoreLabelledOnEval).
    evalScore =
      'perplexity' in after.eval && 'perplexity' in evalScore
        ? { ...after.eval, densePerplexity: evalScore.densePerplexity }
        : after.eval;
    evalBleu = after.evalBleu;
    evalChoices = after.evalChoices;
    passes += after.forwardPasses + rec.forwardPasses;
  }
  const report = space.report(genome);
  const warnings = sparsityWarnings(s.method, s.sparsity, report.prunable.sparsity);
  const result: WeightPruneResult = {
    runDir: dir,
    method: s.method,
    pattern: patternText(p.pattern),
    sparsity: { target: s.sparsity, achieved: report.prunable.sparsity, overall: report.overall.sparsity },
    prunableWeights: report.prunable.weights,
    parameters: report.overall.parameters,
    layers: report.layers,
    context: p.context,
    ...(p.calibPairs ? { scored: 'pairs' as const } : {}),
    ...(warnings.length > 0 ? { warnings } : {}),
    ...(s.layers !== undefined
      ? {
          layerPattern: {
            pattern: s.layers,
            matrices: space.matrices.length,
            of: prunableMatrices(p.model.spec).length,
          },
        }
      : {}),
    calib,
    eval:
      'perplexity' in evalScore
        ? {
            data: evalScore.data,
            tokens: evalScore.tokens,
            perplexity: evalScore.perplexity,
            densePerplexity: evalScore.densePerplexity,
          }
        : evalScore,
    ...(evalBleu ? { evalBleu } : {}),
    ...(evalChoices ? { evalChoices } : {}),
    forwardPasses: state.forwardPasses + passes,
    seconds: state.seconds + (performance.now() - tScore) / 1000,
    methodCost: { forwardPasses: state.forwardPasses, seconds: state.seconds },
    mask: maskPath,
    maskSha256: state.maskSha256,
    seed: s.seed,
    ...(state.methodReport !== undefined ? { methodReport: state.methodReport } : {}),
    ...(recovery ? { recovery } : {}),
  };
  faultPoint('weights:before-result');
  await writeJsonAtomic(join(dir, RUN_FILES.result), { ...result, matrices: report.matrices });
  return result;
}

/** A fresh run in `dir` (created; refused when it holds anything). Data and model paths are stored absolute. */
export async function runWeightPrune(
  dir: string,
  settings: WeightPruneSettings,
  env: WeightPruneEnv = {},
): Promise<WeightPruneResult> {
  const s = absoluteSettings(settings);
  refuseUnpooledWeightRun(s, env);
  const p = await prepare(s, env);
  const lock = await createRunDir(dir, await runConfig(s, p), env.onNote);
  try {
    return await pruneInDir(dir, s, p, env);
  } finally {
    await lock.release();
  }
}

/**
 * Continues a run: a finished one gives back its result (after checking that its settings, data, model and
 * mask file are the run's), one stopped after its mask was fixed scores that mask, and one stopped before
 * starts again. `given` are the settings typed with --resume: any that would change the run is refused.
 */
export async function resumeWeightPrune(
  dir: string,
  env: WeightPruneEnv = {},
  given: readonly WeightGivenSetting[] = [],
): Promise<WeightPruneResult> {
  const config = await readRunConfig(dir, WEIGHT_RUN_KIND);
  const s = config.settings as WeightPruneSettings;
  refuseChangedSettings(s, given);
  refuseUnpooledWeightRun(s, env);
  await refuseChangedData('calibration', s.calib, config.calibration);
  await refuseChangedData('evaluation', s.eval, config.evaluation);
  const lock = await lockRunDir(dir, env.onNote);
  try {
    const p = await prepare(s, env);
    await refuseForeignModel(dir, config, p.model.spec, p.model.modelPath);
    const resultPath = join(dir, RUN_FILES.result);
    const done = (await readJsonIfPresent(resultPath, 'result.json')) as
      | (WeightPruneResult & { matrices?: unknown })
      | undefined;
    const statePath = join(dir, RUN_FILES.state);
    const state = await readJsonIfPresent(statePath, 'state.json');
    if (state !== undefined && !(await refuseChangedSinceState(dir, state, statePath, { exact: !!done }))) {
      env.onNote?.(
        `${dir}: the run's state predates its record of config.json and the logs; their changes cannot be detected`,
      );
    }
    if (done) {
      const maskPath = join(dir, WEIGHT_MASK_FILE);
      if (typeof done.maskSha256 !== 'string' || (await sha256File(maskPath)) !== done.maskSha256) {
        throw fileError(
          maskPath,
          'is not the mask this finished run wrote (result.json records another sha256)',
        );
      }
      env.onStatus?.('the run has finished: its result stands');
      const { matrices: _m, ...result } = done;
      // Runs finished before result.json recorded the context scored at p.context all the same.
      return { ...result, context: result.context ?? p.context, runDir: dir, resumed: true };
    }
    if (state !== undefined && !isMaskFixedState(state)) {
      throw fileError(join(dir, RUN_FILES.state), 'weight-pruning state is corrupt or does not fit the run');
    }
    const result = await pruneInDir(dir, s, p, env, state);
    return { ...result, resumed: true };
  } finally {
    await lock.release();
  }
}

/** The dense value of the run's metric as its registry record names it (denseExactMatch …), when the record has it. */
function denseRecordOf(metric: string | undefined, calib: object): Record<string, number> {
  const field = findMetric(metric ?? 'ppl')?.record?.dense;
  const v = field ? (calib as Record<string, unknown>)[field] : undefined;
  return field && typeof v === 'number' ? { [field]: v } : {};
}
