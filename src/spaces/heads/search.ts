/**
 * A whole head search as the CLI runs it: prepare the model and data (runs/data.ts), build the calibration
 * objective over the head space, run one method (the GA, NSGA-II, or a baseline) in a run directory
 * (runs/rundir.ts, runs/algorithms.ts), then score the chosen mask on the evaluation data and write the head
 * mask file; with `recover`, refit o after the mask's heads are removed (recovered-weights.safetensors) and
 * score that too. `resumeHeadSearch` continues such a run (runs/resume.ts refuses what would change it): a run
 * stopped after its search, before or after recovery, finishes from the saved state and recovers again, with
 * the same result.
 */
import { join } from 'node:path';
import { fileError, flagError } from '../../errors.js';
import { makeMaskFile } from '../../masks/headfile.js';
import { type Genome, geneCount, removedList } from '../../masks/heads.js';
import { writeRecoveredWeights } from '../../masks/recovered.js';
import type { ModelSpec } from '../../model/spec.js';
import { RECOVERY_DAMPING } from '../../prune/recover.js';
import { type HeadRecoveryLayer, recoverHeadRemoval } from '../../prune/recover-heads.js';
import { runGaInDir, runNsgaInDir } from '../../runs/algorithms.js';
import {
  choiceObjectiveOptions,
  choicesRecord,
  type EvalChoices,
  scoreChoicesOnEval,
} from '../../runs/choices.js';
import {
  absoluteSettings,
  type LabelledEval,
  prepareRunData,
  type RunData,
  type RunEnv,
  recoveryBatches,
  refuseChangedData,
  runModelAndData,
  scoreLabelledOnEval,
  scoreOnEval,
} from '../../runs/data.js';
import { offTargetText, targetRemovedOf } from '../../runs/front.js';
import { labelledRecord } from '../../runs/labels.js';
import { type GivenSetting, refuseChangedSettings, refuseForeignModel } from '../../runs/resume.js';
import {
  createRunDir,
  HEAD_RUN_KIND,
  lockRunDir,
  openRunForResume,
  type ResumableRun,
  type RunConfig,
  readRunConfig,
  refuseChangedConfig,
  rewriteLogs,
} from '../../runs/rundir.js';
import { bleuObjectiveOptions, type EvalBleu, scoreBleuOnEval, taskRecord } from '../../runs/tasks.js';
import { bitStringCodec } from '../../search/codec.js';
import {
  decodeOrThrow,
  type GaOptions,
  type GaState,
  type GenerationSummary,
  initialState,
} from '../../search/ga.js';
import type { NsgaState } from '../../search/nsga.js';
import {
  accuracyOfQuality,
  BLEU_SEARCH_ITEMS,
  bleuOfQuality,
  type QualityMetric,
  qualityFromLog,
} from '../../search/objective.js';
import { bitNsgaOperators } from '../../search/operators.js';
import { quotedBest, type SearchProgress } from '../../search/progress.js';
import { faultPoint, type HeldLock, sha256File, writeJsonAtomic } from '../../util/fs.js';
import { createRng } from '../../util/rng.js';
import { headGaOptions } from './algorithms.js';
import { runBaseline, singleHeadAblationScores } from './baselines.js';
import { createHeadObjective, type HeadObjective } from './objective.js';
import type { HeadMethod, HeadSearchSettings } from './settings.js';

export type HeadGivenSetting = GivenSetting<Extract<keyof HeadSearchSettings, string>>;

export interface HeadSearchEnv extends RunEnv {
  onStatus?: (line: string) => void;
  /** Things the user should see even when quiet: a stale lock taken over, leftovers removed. */
  onNote?: (line: string) => void;
  onGeneration?: (s: GenerationSummary, total: number, elapsedS: number) => void;
  onProgress?: (done: number, total: number) => void;
  /** Every method's progress in one shape (search/progress.ts): what it does, the best so far, the work done. */
  onSearchUpdate?: (p: SearchProgress) => void;
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
  /** Context length of every window scored, calibration and evaluation alike. */
  context: number;
  /**
   * The objective's values on the calibration data: lower is better, so with metric 'bleu' quality and
   * denseQuality are −BLEU (and `bleu`, `denseBleu` give BLEU itself; `tokens` counts task items), with
   * 'mc-accuracy' −accuracy (`accuracy`, `denseAccuracy` give it, 0–1; `tokens` counts items). As in a weight
   * run's result, `perplexity` and `densePerplexity` name the perplexity itself (a 'ppl' run's quality).
   */
  calib: {
    quality: number;
    denseQuality: number;
    perplexity?: number;
    densePerplexity?: number;
    metric: QualityMetric;
    tokens: number;
    bleu?: number;
    denseBleu?: number;
    task?: ReturnType<typeof taskRecord>;
    accuracy?: number;
    denseAccuracy?: number;
    choices?: ReturnType<typeof choicesRecord>;
    /** 'macro-f1' runs: the macro-F1 (0–1) the quality negates. */
    macroF1?: number;
    denseMacroF1?: number;
    /** 'accuracy' / 'macro-f1' runs: the labelled calibration file. */
    labelled?: ReturnType<typeof labelledRecord>;
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

/** The recovered o of a `--recover` run, beside its mask.json. */
export const RECOVERED_WEIGHTS_FILE = 'recovered-weights.safetensors';

function removeCountOf(s: HeadSearchSettings, genes: number): number | undefined {
  return s.targetSparsity === undefined ? undefined : Math.round(s.targetSparsity * genes);
}

function gaOptions(
  s: HeadSearchSettings,
  genes: number,
  denseQuality: number,
  initWeights?: number[],
): GaOptions<Genome> {
  return headGaOptions(genes, {
    population: s.population,
    generations: s.generations,
    tournamentSize: s.tournament,
    crossoverRate: s.crossoverRate,
    mutationRate: s.mutationRate,
    removalBias: s.removalBias,
    sInitial: s.sInitial,
    fitness: { kind: s.fitness, metric: s.metric, lambda: s.lambda, denseQuality },
    fitnessThreshold: s.fitnessThreshold,
    maxSparsity: s.maxSparsity,
    removeCount: s.fitness === 'budget' ? removeCountOf(s, genes) : undefined,
    elitism: s.elitism,
    multiFidelity: s.lowTokens !== undefined || s.lowItems !== undefined,
    promote: s.promote,
    initWeights,
    seed: s.seed,
  });
}

interface Prepared extends RunData {
  objective: HeadObjective;
}

async function prepare(s: HeadSearchSettings, env: HeadSearchEnv): Promise<Prepared> {
  const data = await prepareRunData(s, env, 'heads');
  env.onStatus?.(
    `model ${data.model.modelPath}: ${geneCount(data.model.spec.config)} heads; calibration ${data.stream.length} tokens`,
  );
  if (data.calibTask) {
    env.onStatus?.(
      `BLEU fitness: ${Math.min(s.calibItems ?? BLEU_SEARCH_ITEMS, data.calibTask.prepared.prompts.length)} items of the calibration task ${data.calibTask.source}`,
    );
  }
  if (data.calibLabelled) {
    const items = data.calibLabelled.prepared.items.length;
    env.onStatus?.(
      `${s.metric} fitness: ${Math.min(s.calibItems ?? items, items)} labelled items of ${data.calibLabelled.source}`,
    );
  }
  if (data.calibChoices) {
    const items = data.calibChoices.prepared.task.items.length;
    env.onStatus?.(
      `accuracy fitness: ${Math.min(s.calibItems ?? items, items)} items of the multiple-choice file ${data.calibChoices.source}`,
    );
  }
  const objective = await createHeadObjective(data.model.spec, {
    stream: data.stream,
    context: data.context,
    metric: s.metric,
    bleu: bleuObjectiveOptions(s, data.calibTask),
    choices: choiceObjectiveOptions(s, data.calibChoices),
    ...(data.calibLabelled
      ? {
          labelled: {
            prepared: data.calibLabelled.prepared,
            ...(s.calibItems !== undefined ? { items: s.calibItems } : {}),
            ...(s.lowItems !== undefined ? { lowItems: s.lowItems } : {}),
          },
        }
      : {}),
    tokens: s.calibTokens,
    lowTokens: s.lowTokens,
    batchSize: s.batchSize,
    device: env.device,
    threads: env.threads,
    dtype: s.dtype,
  });
  return { ...data, objective };
}

async function runConfig(s: HeadSearchSettings, p: Prepared): Promise<RunConfig> {
  const recorded = await runModelAndData(s, p);
  return {
    kind: HEAD_RUN_KIND,
    version: 1,
    method: s.method,
    settings: s,
    model: recorded.model,
    geneOrder:
      'layer-major over the heads present: layer l starts at the sum of model.shape.queryHeads before it; 1 keeps the head',
    calibration: recorded.calibration,
    evaluation: recorded.evaluation,
  };
}

async function finish(
  dir: string,
  s: HeadSearchSettings,
  p: Prepared,
  genome: Genome,
  counters: { forwardPasses: number; evaluations: number; seconds: number },
  env: HeadSearchEnv,
  extra: Record<string, unknown> = {},
): Promise<HeadSearchResult> {
  const space = p.objective.space;
  const dense = await p.objective.evaluate(space.full());
  const calibScore = await p.objective.evaluate(genome);
  // One session at a time: a 1B model's second copy would double the peak.
  await p.objective.release();
  env.onStatus?.('scoring the chosen mask on the evaluation data');
  const evalScore = p.evalLabelled
    ? await scoreLabelledOnEval(p, s, space.masks(genome), env)
    : await scoreOnEval(p, s, space.masks(genome), env);
  if (p.evalTask)
    env.onStatus?.(`BLEU of the dense and the pruned model on the evaluation task ${p.evalTask.source}`);
  const evalBleu = p.evalTask
    ? await scoreBleuOnEval(p.evalTask, s, p.model.spec, p.model.spec, space.masks(genome), env)
    : undefined;
  if (p.evalChoices) env.onStatus?.(`accuracy of the dense and the pruned model on ${p.evalChoices.source}`);
  const evalChoices = p.evalChoices
    ? await scoreChoicesOnEval(p.evalChoices, s, p.model.spec, p.model.spec, space.masks(genome), env)
    : undefined;
  const result: HeadSearchResult = {
    runDir: dir,
    method: s.method,
    genome,
    removed: space.genes - genome.reduce((a, b) => a + b, 0),
    genes: space.genes,
    keptParameters: space.keptParameters(genome),
    totalParameters: space.totalParameters,
    context: p.context,
    calib: {
      quality: calibScore.quality,
      denseQuality: dense.quality,
      ...(s.metric === 'ppl' ? { perplexity: calibScore.quality, densePerplexity: dense.quality } : {}),
      metric: s.metric,
      tokens: calibScore.tokens,
      ...(s.metric === 'bleu'
        ? {
            bleu: bleuOfQuality(calibScore.quality),
            denseBleu: bleuOfQuality(dense.quality),
            ...(p.calibTask ? { task: taskRecord(p.calibTask, calibScore.tokens) } : {}),
          }
        : {}),
      ...(s.metric === 'mc-accuracy'
        ? {
            accuracy: accuracyOfQuality(calibScore.quality),
            denseAccuracy: accuracyOfQuality(dense.quality),
            ...(p.calibChoices ? { choices: choicesRecord(p.calibChoices, calibScore.tokens) } : {}),
          }
        : {}),
      ...(p.calibLabelled
        ? {
            ...(s.metric === 'macro-f1'
              ? { macroF1: -calibScore.quality, denseMacroF1: -dense.quality }
              : { accuracy: -calibScore.quality, denseAccuracy: -dense.quality }),
            labelled: labelledRecord(p.calibLabelled, calibScore.tokens),
          }
        : {}),
    },
    eval: evalScore,
    ...(evalBleu ? { evalBleu } : {}),
    ...(evalChoices ? { evalChoices } : {}),
    ...counters,
  };
  const mask = await makeMaskFile(p.model.spec, genome, {
    method: s.method,
    runDir: dir,
    // What `eval --mask` takes as its default --ctx, so it reproduces the evaluation below.
    context: p.context,
    calibration: { path: s.calib, metric: s.metric, quality: calibScore.quality },
    evaluation: { path: s.eval, ...evalScore },
  });
  await writeJsonAtomic(`${dir}/mask.json`, mask);
  if (s.recover) {
    faultPoint('heads:mask-written');
    if (!('perplexity' in evalScore)) throw flagError('--recover', `not with --metric ${s.metric}`);
    result.recovery = await recoverInDir(dir, s, p, genome, { calibScore, evalScore }, env);
    faultPoint('heads:recovered');
  }
  const { genome: _g, ...rest } = result;
  await writeJsonAtomic(`${dir}/result.json`, {
    ...rest,
    genome: space.encode(genome),
    removedHeads: mask.removed,
    keptQueryHeads: mask.keptQueryHeads,
    keptKvHeads: mask.keptKvHeads,
    ...extra,
  });
  return result;
}

/** Calibration perplexity of `spec` under the genome's head mask, in a session of its own. */
async function calibPerplexity(
  spec: ModelSpec,
  s: HeadSearchSettings,
  p: Prepared,
  genome: Genome,
  env: HeadSearchEnv,
): Promise<{ perplexity: number; forwardPasses: number }> {
  const objective = await createHeadObjective(spec, {
    stream: p.stream,
    context: p.context,
    metric: 'ppl',
    tokens: s.calibTokens,
    batchSize: s.batchSize,
    device: env.device,
    threads: env.threads,
    dtype: s.dtype,
  });
  try {
    const r = await objective.evaluate(genome);
    return { perplexity: r.quality, forwardPasses: objective.forwardPasses() };
  } finally {
    await objective.release();
  }
}

/**
 * `--recover`, once mask.json is written: o refitted layer by layer on the calibration windows
 * (prune/recover-heads.ts), written to RECOVERED_WEIGHTS_FILE with the model's fingerprint, the removed heads and
 * mask.json's sha256, and the recovered model scored under the mask on calibration and evaluation data.
 */
async function recoverInDir(
  dir: string,
  s: HeadSearchSettings,
  p: Prepared,
  genome: Genome,
  scored: { calibScore: { quality: number }; evalScore: { perplexity: number } },
  env: HeadSearchEnv,
): Promise<HeadRecoveryReport> {
  const t0 = performance.now();
  const spec = p.model.spec;
  let passes = 0;
  // The search's calibration score is the perplexity unless it searched on KL.
  let beforeCalib = scored.calibScore.quality;
  if (s.metric !== 'ppl') {
    const b = await calibPerplexity(spec, s, p, genome, env);
    beforeCalib = b.perplexity;
    passes += b.forwardPasses;
  }
  env.onStatus?.('recovery: refitting o on the calibration activations, layer by layer');
  const before = quotedBest('ppl', beforeCalib, p.objective.space.sparsity(genome), 'before recovery');
  const batches = recoveryBatches(p.stream, {
    context: p.context,
    tokens: s.calibTokens,
    label: s.calib,
    vocabSize: spec.config.vocabSize,
    batchSize: s.batchSize,
  });
  const rec = await recoverHeadRemoval(spec, genome, {
    batches,
    device: env.device,
    threads: env.threads,
    onLayer: (done, total) => {
      env.onProgress?.(done, total);
      env.onSearchUpdate?.({
        method: s.method,
        phase: 'recovery',
        step: `recovery, layer ${done}/${total}`,
        fraction: total > 0 ? done / total : 1,
        best: before,
        count: done,
        unit: 'layers',
      });
    },
  });
  passes += rec.forwardPasses;
  const weights = join(dir, RECOVERED_WEIGHTS_FILE);
  await writeRecoveredWeights(
    weights,
    spec,
    rec.spec,
    rec.roles,
    {
      kind: 'head',
      sha256: await sha256File(join(dir, 'mask.json')),
      removed: removedList(spec.config, genome),
    },
    RECOVERY_DAMPING,
  );
  env.onStatus?.('scoring the recovered model');
  const after = await calibPerplexity(rec.spec, s, p, genome, env);
  passes += after.forwardPasses;
  const space = p.objective.space;
  const evalAfter = await scoreOnEval(
    { ...p, model: { ...p.model, spec: rec.spec } },
    s,
    space.masks(genome),
    env,
    {
      dense: false,
    },
  );
  return {
    before: { calibPerplexity: beforeCalib, evalPerplexity: scored.evalScore.perplexity },
    after: { calibPerplexity: after.perplexity, evalPerplexity: evalAfter.perplexity },
    weights,
    tokens: batches.reduce((a, b) => a + b.valid!.reduce((x, y) => x + y, 0), 0),
    damping: RECOVERY_DAMPING,
    forwardPasses: passes,
    seconds: (performance.now() - t0) / 1000,
    reconstruction: rec.layers,
  };
}

function runGaIn(
  dir: string,
  s: HeadSearchSettings,
  p: Prepared,
  state: GaState,
  opts: GaOptions<Genome>,
  env: HeadSearchEnv,
  t0: number,
): Promise<GaState> {
  return runGaInDir(dir, p.objective, opts, state, (summary) => {
    env.onGeneration?.(summary, s.generations, (performance.now() - t0) / 1000);
    const done = summary.generation + 1;
    env.onSearchUpdate?.({
      method: 'ga',
      phase: 'search',
      step: `generation ${done}/${s.generations}`,
      fraction: summary.stop ? 1 : done / s.generations,
      // No best yet when multi-fidelity promoted no one to the full score.
      ...(summary.best
        ? {
            best: quotedBest(
              s.metric,
              summary.best.quality,
              summary.best.sparsity,
              `fitness ${summary.best.fitness.toFixed(4)}`,
            ),
          }
        : {}),
      count: summary.evaluations,
      unit: 'evals',
    });
  });
}

/**
 * Progress of a method that scores candidates one by one (ablation, greedy, regression, the GA's ablation
 * seeding): the `onProgress` it takes, reporting to both of the env's callbacks.
 */
function evaluationProgress(
  s: HeadSearchSettings,
  env: HeadSearchEnv,
  method: string,
  phase: string,
  what: string,
) {
  return (done: number, total: number, best?: { quality: number; sparsity: number }) => {
    env.onProgress?.(done, total);
    env.onSearchUpdate?.({
      method,
      phase,
      step: `${what} ${done}/${total}`,
      fraction: total > 0 ? done / total : 1,
      ...(best ? { best: quotedBest(s.metric, best.quality, best.sparsity) } : {}),
      count: done,
      unit: 'evals',
    });
  };
}

/** A fresh search in `dir`. Settings' data and model paths are stored absolute. */
export async function runHeadSearch(dir: string, settings: HeadSearchSettings, env: HeadSearchEnv = {}) {
  const s = absoluteSettings(settings);
  const p = await prepare(s, env);
  let lock: HeldLock | undefined;
  try {
    const removeCount = removeCountOf(s, p.objective.space.genes);
    if (s.method !== 'ga' && s.method !== 'nsga' && removeCount === undefined) {
      throw flagError(
        '--target-sparsity',
        `the ${s.method} baseline needs a target share of heads to remove`,
      );
    }
    if (s.method === 'ga' && s.fitness === 'budget' && removeCount === undefined) {
      throw flagError('--target-sparsity', 'the budget fitness needs a target share of heads to remove');
    }
    lock = await createRunDir(dir, await runConfig(s, p), env.onNote);
    return await searchFromScratch(dir, s, p, env);
  } finally {
    await p.objective.release();
    await lock?.release();
  }
}

/** The whole search in a run directory whose config.json is written and whose logs are empty. */
async function searchFromScratch(
  dir: string,
  s: HeadSearchSettings,
  p: Prepared,
  env: HeadSearchEnv,
): Promise<HeadSearchResult> {
  const t0 = performance.now();
  const space = p.objective.space;
  const genes = space.genes;
  const removeCount = removeCountOf(s, genes);
  const dense = await p.objective.evaluate(space.full());
  const rng = createRng(s.seed);
  const counters = () => ({
    forwardPasses: p.objective.forwardPasses(),
    evaluations: p.objective.evaluations(),
    seconds: (performance.now() - t0) / 1000,
  });
  if (s.method === 'ga') {
    let initWeights: number[] | undefined;
    if (s.seedAblation) {
      env.onStatus?.('single-head ablation to seed the initial population');
      const scores = await singleHeadAblationScores(
        p.objective,
        'full',
        evaluationProgress(s, env, 'ga', 'ablation', 'single-head ablation'),
      );
      // Removability: heads whose removal costs least get the largest weights.
      // Only finite scores set the scale; a head whose removal breaks the model (or is absent) gets weight 0.
      const worst = Math.max(...scores.filter(Number.isFinite));
      initWeights = Array.from(scores, (q) => (Number.isFinite(q) ? worst - q + 1e-6 * Math.abs(worst) : 0));
    }
    const opts = gaOptions(s, genes, dense.quality, initWeights);
    const spent = { evaluations: p.objective.evaluations(), forwardPasses: p.objective.forwardPasses() };
    const final = await runGaIn(dir, s, p, initialState(opts, space, spent), opts, env, t0);
    return finish(dir, s, p, decodeOrThrow(space, final.best!.genome), counters(), env, { stop: final.stop });
  }
  if (s.method === 'nsga') return runNsgaIn(dir, s, p, env, counters);
  const baseline = await runBaseline(s.method, {
    spec: p.model.spec,
    objective: p.objective,
    removeCount: removeCount!,
    rng,
    onProgress: evaluationProgress(s, env, s.method, 'search', 'evaluation'),
    samples: s.regressionSamples,
  });
  // Every baseline ends with its mask scored: one line even for those that search nothing (random, norm).
  env.onSearchUpdate?.({
    method: s.method,
    phase: 'search',
    step: `mask of ${removeCount}/${genes} heads chosen`,
    fraction: 1,
    best: quotedBest(s.metric, baseline.quality, removeCount! / genes),
    count: baseline.evaluations,
    unit: 'evals',
  });
  return finish(dir, s, p, baseline.genome, counters(), env);
}

/**
 * NSGA-II over the head space in a run directory (runs/algorithms.ts), then the pick from the front at the target
 * size (runs/front.ts); a pick off the target is said on the progress line, as a note, in the result and in
 * result.json.
 */
async function runNsgaIn(
  dir: string,
  s: HeadSearchSettings,
  p: Prepared,
  env: HeadSearchEnv,
  counters: () => { forwardPasses: number; evaluations: number; seconds: number },
  resume?: { state: NsgaState; logged: Array<Record<string, unknown>> },
): Promise<HeadSearchResult> {
  const genes = p.objective.space.genes;
  const r = await runNsgaInDir(
    dir,
    p.objective,
    {
      population: s.population,
      generations: s.generations,
      seed: s.seed,
      operators: bitNsgaOperators(genes, { mutationRate: s.mutationRate }),
      targetRemoved: targetRemovedOf(s.targetSparsity, genes),
    },
    (g) => {
      const done = g.generation + 1;
      const best = g.pick.point;
      env.onSearchUpdate?.({
        method: 'nsga',
        phase: 'search',
        step: `generation ${done}/${g.generations}, front of ${g.frontSize}`,
        fraction: g.generations > 0 ? Math.min(done / g.generations, 1) : 1,
        best: quotedBest(
          s.metric,
          best.quality,
          best.sparsity,
          g.pick.atTarget ? undefined : `no front point at the target ${g.pick.targetRemoved}/${genes} yet`,
        ),
        count: g.evaluations,
        unit: 'evals',
      });
    },
    resume,
  );
  const pick: NsgaPickReport = {
    atTarget: r.pickedAtTarget,
    removed: r.pickedRemoved,
    targetRemoved: r.targetRemoved,
    frontSize: r.front.length,
    archived: r.archived,
  };
  if (!r.pickedAtTarget) {
    pick.warning = offTargetText({ removed: r.pickedRemoved, targetRemoved: r.targetRemoved }, genes);
    env.onNote?.(`${dir}: ${pick.warning}`);
  }
  const result = await finish(dir, s, p, r.pick, counters(), env, {
    front: r.front,
    archived: r.archived,
    pickedAtTarget: r.pickedAtTarget,
    pick,
    ...(resume ? { resumed: true } : {}),
  });
  return { ...result, pick };
}

/** The head space's gene count and genome text, from a run's config.json alone. */
function headCodecOf(dir: string, c: RunConfig) {
  const heads = (c.model as { shape?: { queryHeads?: unknown } } | undefined)?.shape?.queryHeads;
  if (!Array.isArray(heads)) {
    throw fileError(
      `${dir}/config.json`,
      'the run records no per-layer model shape (made by an older geneprune, whose model fingerprint was weak); run it again',
    );
  }
  const genes = heads.reduce((a: number, b) => a + Number(b), 0);
  return { genes, ...bitStringCodec(genes) };
}

/**
 * Continues a GA or NSGA-II run from its last saved generation (a run stopped before its first one, or an
 * unfinished baseline, starts again from the beginning with its stored settings). `given` are the settings
 * the user typed with --resume: any that would change the run is refused.
 */
export async function resumeHeadSearch(
  dir: string,
  env: HeadSearchEnv = {},
  given: readonly HeadGivenSetting[] = [],
): Promise<HeadSearchResult> {
  const config = await readRunConfig(dir, HEAD_RUN_KIND);
  const s = config.settings as HeadSearchSettings;
  refuseChangedSettings(s, given);
  const checked =
    (await refuseChangedData('calibration', s.calib, config.calibration)) &&
    (await refuseChangedData('evaluation', s.eval, config.evaluation));
  if (!checked) env.onNote?.(`${dir}: the run predates data hashes in config.json; its data is not verified`);
  const lock = await lockRunDir(dir, env.onNote);
  try {
    const run = await openRunForResume(dir, config, (c) => headCodecOf(dir, c));
    if (!run.verified) {
      env.onNote?.(
        `${dir}: the run's state predates its record of config.json and the logs; their changes cannot be detected`,
      );
    }
    const p = await prepare(s, env);
    try {
      await refuseForeignModel(dir, config, p.model.spec, p.model.modelPath);
      await refuseChangedConfig(dir, run.configSha256, 'state.json');
      if (run.fresh) {
        env.onStatus?.('no generation was saved: starting the run again from the beginning');
        await rewriteLogs(dir, run);
        return await searchFromScratch(dir, s, p, env);
      }
      return await continueSearch(dir, s, p, run, env);
    } finally {
      await p.objective.release();
    }
  } finally {
    await lock.release();
  }
}

async function continueSearch(
  dir: string,
  s: HeadSearchSettings,
  p: Prepared,
  run: ResumableRun,
  env: HeadSearchEnv,
): Promise<HeadSearchResult> {
  const t0 = performance.now();
  const space = p.objective.space;
  if (run.nsga) {
    await rewriteLogs(dir, run);
    await p.objective.evaluate(space.full());
    const counters = () => ({
      forwardPasses: p.objective.forwardPasses(),
      evaluations: p.objective.evaluations(),
      seconds: (performance.now() - t0) / 1000,
    });
    return runNsgaIn(dir, s, p, env, counters, { state: run.nsga, logged: run.evaluations });
  }
  // What earlier sessions computed is primed into the cache, so nothing is evaluated twice.
  for (const r of run.evaluations) {
    const genome = space.decode(String(r.genome));
    if (r.cached || genome === undefined) continue;
    p.objective.prime(genome, r.fidelity as 'low' | 'full', {
      quality: qualityFromLog(r),
      tokens: Number(r.tokens),
      ms: Number(r.ms),
    });
  }
  const dense = await p.objective.evaluate(space.full());
  // The initial population is already in the state, so no initialisation weights are needed.
  const opts = gaOptions(s, space.genes, dense.quality);
  await rewriteLogs(dir, run);
  const state = run.state!;
  const final = state.done ? state : await runGaIn(dir, s, p, state, opts, env, t0);
  return finish(
    dir,
    s,
    p,
    decodeOrThrow(space, final.best!.genome),
    {
      forwardPasses: final.forwardPasses,
      evaluations: final.evaluations,
      seconds: (performance.now() - t0) / 1000,
    },
    env,
    { stop: final.stop, resumed: true },
  );
}
