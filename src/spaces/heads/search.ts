/**
 * A whole head search as the CLI runs it: prepare the model and data with the calibration objective over the
 * head space (prepare.ts), run one method (the GA, NSGA-II, or a baseline) in a run directory (runs/rundir.ts,
 * runs/algorithms.ts), then score the chosen mask on the evaluation data and write the head mask file and
 * result.json (runs/results.ts); with `recover`, refit o after the mask's heads are removed (recover.ts) and
 * score that too. `resumeHeadSearch` continues such a run (runs/resume.ts refuses what would change it): a run
 * stopped after its search, before or after recovery, finishes from the saved state and recovers again, with
 * the same result.
 */
import { fileError, flagError } from '../../errors.js';
import { makeMaskFile } from '../../masks/headfile.js';
import type { Genome } from '../../masks/heads.js';
import { isPerplexity } from '../../metrics/registry.js';
import { runGaInDir, runNsgaInDir } from '../../runs/algorithms.js';
import { scoreChoicesOnEval } from '../../runs/choices.js';
import { absoluteSettings, refuseChangedData, scoreLabelledOnEval, scoreOnEval } from '../../runs/data.js';
import { RUN_FILES } from '../../runs/files.js';
import { offTargetText, targetRemovedOf } from '../../runs/front.js';
import { calibrationRecord, type HeadSearchResult, type NsgaPickReport } from '../../runs/results.js';
import { refuseChangedSettings, refuseForeignModel } from '../../runs/resume.js';
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
import { scoreBleuOnEval } from '../../runs/tasks.js';
import { type BackendWatch, watchBackend } from '../../runs/workersfile.js';
import { bitStringCodec } from '../../search/codec.js';
import { decodeOrThrow, type GaOptions, type GaState, initialState } from '../../search/ga.js';
import type { NsgaState } from '../../search/nsga.js';
import { qualityFromLog } from '../../search/objective.js';
import { bitNsgaOperators } from '../../search/operators.js';
import { quotedBest } from '../../search/progress.js';
import { faultPoint, type HeldLock, writeJsonAtomic } from '../../util/fs.js';
import { createRng } from '../../util/rng.js';
import { runBaseline, singleHeadAblationScores } from './baselines.js';
import {
  gaOptions,
  type HeadGivenSetting,
  type HeadSearchEnv,
  type Prepared,
  prepare,
  removeCountOf,
  runConfig,
} from './prepare.js';
import { recoverInDir } from './recover.js';
import type { HeadSearchSettings } from './settings.js';

// What a run takes and gives, for the API (the result types live with the run files, runs/results.ts).
export type { HeadRecoveryReport, HeadSearchResult, NsgaPickReport } from '../../runs/results.js';
export type { HeadGivenSetting, HeadSearchEnv } from './prepare.js';

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
    ...(p.calibPairs ? { scored: 'pairs' as const } : {}),
    calib: calibrationRecord(
      {
        quality: calibScore.quality,
        denseQuality: dense.quality,
        ...(isPerplexity(s.metric) ? { perplexity: calibScore.quality, densePerplexity: dense.quality } : {}),
        metric: s.metric,
        tokens: calibScore.tokens,
      },
      s.metric,
      { quality: calibScore.quality, denseQuality: dense.quality, tokens: calibScore.tokens },
      p,
    ),
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
  await writeJsonAtomic(`${dir}/${RUN_FILES.mask}`, mask);
  if (s.recover) {
    faultPoint('heads:mask-written');
    if (!('perplexity' in evalScore)) throw flagError('--recover', `not with --metric ${s.metric}`);
    result.recovery = await recoverInDir(dir, s, p, genome, { calibScore, evalScore }, env);
    faultPoint('heads:recovered');
  }
  const { genome: _g, ...rest } = result;
  await writeJsonAtomic(`${dir}/${RUN_FILES.result}`, {
    ...rest,
    genome: space.encode(genome),
    removedHeads: mask.removed,
    keptQueryHeads: mask.keptQueryHeads,
    keptKvHeads: mask.keptKvHeads,
    ...extra,
  });
  return result;
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
  const p = await prepare(s, env, dir);
  let lock: HeldLock | undefined;
  let watch: BackendWatch | undefined;
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
    watch = watchBackend(dir, p.backend);
    const result = await searchFromScratch(dir, s, p, env);
    await p.objective.release();
    await watch.stop();
    return result;
  } finally {
    await p.objective.release();
    // Already stopped after a finished search; after a failure the file is brought up to date, quietly.
    await watch?.stop().catch(() => {});
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
      `${dir}/${RUN_FILES.config}`,
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
    const p = await prepare(s, env, dir);
    let watch: BackendWatch | undefined;
    try {
      await refuseForeignModel(dir, config, p.model.spec, p.model.modelPath);
      await refuseChangedConfig(dir, run.configSha256, 'state.json');
      watch = watchBackend(dir, p.backend);
      let result: HeadSearchResult;
      if (run.fresh) {
        env.onStatus?.('no generation was saved: starting the run again from the beginning');
        await rewriteLogs(dir, run);
        result = await searchFromScratch(dir, s, p, env);
      } else result = await continueSearch(dir, s, p, run, env);
      await p.objective.release();
      await watch.stop();
      return result;
    } finally {
      await p.objective.release();
      await watch?.stop().catch(() => {});
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
