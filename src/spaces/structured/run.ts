/**
 * A whole structured search as `geneprune structured` runs it (issue #23), in a run directory like the head
 * search's:
 *   config.json           settings, model identity, data hashes, the space's gene layout
 *   scores.json           the structured scores measured on the calibration data (head and channel orders, block
 *                         influence): a genome means the plan these orders give, so a resumed run reads them back
 *                         rather than measuring again
 *   latency-profile.json  `speedup:` budgets (or --latency-profile): the latency model's table, measured once on
 *                         --device, the one every plan of the run is priced with
 *   evals.jsonl, generations.jsonl, state.json   the GA's log and state (runs/algorithms.ts): --resume continues
 *                         exactly as an uninterrupted run
 *   plan.json             the chosen plan in the structured plan file format (`geneprune export --structured`)
 *   result.json           calibration and evaluation quality, the plan's shapes, kept parameters, FLOP ratio,
 *                         the budget and its cost, the predicted speedup where a latency profile exists
 *   recovered-weights.safetensors   --recover: o and down refitted under the plan (recover.ts)
 *
 * One calibration objective scores plans (planobjective.ts): the GA's genomes through the level space, the
 * baselines' plans (uniform width, FLAP-like, ShortGPT: no search, the same budget) directly, with --metric (any
 * that metrics.ts allows), in this process or on --workers / --queue (evaluation.ts): the same result either way.
 */
import { join } from 'node:path';
import { type CandidateMasks, createRunner } from '../../engine/runner.js';
import { fileError, flagError } from '../../errors.js';
import { calibrateLatency } from '../../latency/calibrate.js';
import {
  type LatencyProfile,
  predictedSpeedup,
  predictSeconds,
  readLatencyProfile,
  writeLatencyProfile,
} from '../../latency/profile.js';
import { fullPlan, type LayerShapes, layerShapes, type StructuredPlan } from '../../masks/structured.js';
import { loadStructuredPlanFile, writeStructuredPlanFile } from '../../masks/structuredfile.js';
import { batches, defaultBatchSize, evaluatePerplexity, makeWindows } from '../../metrics/perplexity.js';
import { calibRecord } from '../../metrics/registry.js';
import { parameterCount } from '../../model/cost.js';
import { intermediateOf } from '../../model/spec.js';
import { runGaInDir } from '../../runs/algorithms.js';
import {
  absoluteSettings,
  prepareRunData,
  type RunData,
  type RunEnv,
  refuseChangedData,
  runModelAndData,
} from '../../runs/data.js';
import { RUN_FILES, readJsonIfPresent } from '../../runs/files.js';
import { type GivenSetting, refuseChangedSettings, refuseForeignModel } from '../../runs/resume.js';
import {
  createRunDir,
  lockRunDir,
  openRunForResume,
  type ResumableRun,
  type RunConfig,
  readRunConfig,
  refuseChangedConfig,
  rewriteLogs,
  STRUCTURED_RUN_KIND,
} from '../../runs/rundir.js';
import { scoreDenseAndPruned } from '../../runs/score.js';
import {
  decodeOrThrow,
  type GaOptions,
  type GaState,
  type GenerationSummary,
  initialState,
} from '../../search/ga.js';
import { createObjective, type Objective, qualityFromLog } from '../../search/objective.js';
import { type HeldLock, writeJsonAtomic } from '../../util/fs.js';
import {
  type AlgorithmOutcome,
  type EvoPressState,
  nsgaCounters,
  openEvoPressForResume,
  runEvoPressInDir,
  runNsgaStructuredInDir,
} from './algorithms.js';
import { flapLike, shortGpt, uniformWidth } from './baselines.js';
import { type Budget, budgetText, parseBudget, priceBudget } from './budget.js';
import { refuseBackendsFor, releasingWatchedBackend, structuredObjectiveOptions } from './evaluation.js';
import { multiFidelity } from './metrics.js';
import { genomeOfPlan, structuredGaOperators } from './operators.js';
import { createPlanSpace, levelObjective } from './planobjective.js';
import { recoverPlanInDir, refuseUnrecoverable, type StructuredRecoveryReport } from './recover.js';
import { orders as ordersOf, type StructuredScores, structuredScores } from './scores.js';
import type { StructuredSearchSettings } from './settings.js';
import {
  createStructuredSpace,
  levelCodec,
  planFlopsPerToken,
  type StructuredGenome,
  type StructuredSpace,
} from './space.js';

/** The files a structured run adds to the shared ones (runs/files.ts). */
export const STRUCTURED_FILES = {
  scores: 'scores.json',
  profile: 'latency-profile.json',
  plan: 'plan.json',
} as const;

export type StructuredGivenSetting = GivenSetting<Extract<keyof StructuredSearchSettings, string>>;

export interface StructuredSearchEnv extends RunEnv {
  onStatus?: (line: string) => void;
  onNote?: (line: string) => void;
  onGeneration?: (s: GenerationSummary, total: number, elapsedS: number) => void;
}

export interface StructuredSearchResult {
  runDir: string;
  space: string;
  method: string;
  budget: { text: string; unit: string; dense: number; limit: number; cost: number; ratio: number };
  /** The GA's genome in the space's text (absent for a baseline). */
  genome?: string;
  plan: StructuredPlan;
  kept: LayerShapes;
  keptParameters: number;
  totalParameters: number;
  parameterRatio: number;
  /** FLOPs per token at the run's context, pruned / dense. */
  flopRatio: number;
  /** The latency model's prediction (where the run has a latency profile). */
  predictedSpeedup?: number;
  latencyProfile?: string;
  context: number;
  /**
   * The --metric quality (lower is better) of the plan and the dense model, the tokens or task items scored, and
   * for a metric with a record (BLEU, accuracy) the reported values too (metrics/registry.ts calibRecord).
   */
  calib: { metric: string; quality: number; denseQuality: number; tokens: number; data: string } & Record<
    string,
    number | string
  >;
  eval: { perplexity: number; densePerplexity: number; tokens: number; data: string };
  planFile: string;
  forwardPasses: number;
  evaluations: number;
  seconds: number;
  stop?: string;
  resumed?: true;
  /** NSGA-II: the front's file and size (the plan is its best-quality member within the budget). */
  front?: { file: string; members: number };
  /** `--recover`: the refit's report (recover.ts). */
  recovery?: StructuredRecoveryReport;
}

/** What a run holds once its model, data, scores, latency profile and objective are ready. */
interface Prepared {
  data: RunData;
  scores: StoredScores;
  space: StructuredSpace;
  plans: Objective<StructuredPlan>;
  objective: Objective<StructuredGenome, StructuredSpace>;
  budget: Budget;
  profile?: LatencyProfile;
  /** --seed-plan files' plans as this space's genomes (not yet repaired: the GA's initial population does). */
  seeds: StructuredGenome[];
}

/** scores.json: the structured scores as plain arrays. */
interface StoredScores {
  channels: number[][];
  heads: number[][];
  influence: StructuredScores['influence'];
  tokens: number;
  /** FLAP's fluctuation metric per channel and head (what the flap baseline ranks by). */
  fluctuation?: { channels: number[][]; heads: number[][] };
}

/** Measures the structured scores on the first --score-tokens calibration tokens, or reads the run's. */
async function scoresOf(dir: string, s: StructuredSearchSettings, data: RunData, env: StructuredSearchEnv) {
  const path = join(dir, STRUCTURED_FILES.scores);
  const stored = (await readJsonIfPresent(path, 'structured scores')) as StoredScores | undefined;
  if (stored) {
    const c = data.model.spec.config;
    const fits = (v: unknown, n: (i: number) => number) =>
      Array.isArray(v) &&
      v.length === c.numLayers &&
      v.every((l, i) => Array.isArray(l) && l.length === n(i) && l.every(Number.isFinite));
    if (
      !fits(stored.heads, (i) => c.headsPerLayer[i]) ||
      !fits(stored.channels, (i) => intermediateOf(c, i)) ||
      typeof stored.influence !== 'object' ||
      stored.influence === null
    )
      throw fileError(path, 'structured scores are corrupt or do not fit the model');
    return stored;
  }
  env.onStatus?.(`measuring head, channel and block scores on ${s.scoreTokens} calibration tokens`);
  const windows = makeWindows(data.stream, data.context, s.scoreTokens, s.calib);
  const size = s.batchSize ?? defaultBatchSize(windows.context, data.model.spec.config.vocabSize);
  const measured = await structuredScores(data.model.spec, [...batches(windows, size)], {
    device: env.device,
    threads: env.threads,
  });
  const out: StoredScores = {
    channels: measured.channels.map((c) => Array.from(c)),
    heads: measured.heads.map((h) => Array.from(h)),
    influence: measured.influence,
    tokens: measured.tokens,
    ...(measured.fluctuation
      ? {
          fluctuation: {
            channels: measured.fluctuation.channels.map((c) => Array.from(c)),
            heads: measured.fluctuation.heads.map((h) => Array.from(h)),
          },
        }
      : {}),
  };
  await writeJsonAtomic(path, out);
  return out;
}

/** The run's latency profile: --latency-profile, the run's own, or measured now on --device (speedup budgets). */
async function profileOf(
  dir: string,
  s: StructuredSearchSettings,
  data: RunData,
  env: StructuredSearchEnv,
): Promise<LatencyProfile | undefined> {
  const path = join(dir, STRUCTURED_FILES.profile);
  const expect = { config: data.model.spec.config, seq: data.context, batch: 1 };
  const own = await readJsonIfPresent(path, 'latency profile');
  if (own !== undefined) return readLatencyProfile(path, expect);
  let profile: LatencyProfile | undefined;
  if (s.latencyProfile !== undefined) profile = await readLatencyProfile(s.latencyProfile, expect);
  else if (parseBudget(s.budget).kind === 'speedup') {
    env.onStatus?.(`measuring the latency model on ${env.device ?? 'cpu'} (batch 1, ${data.context} tokens)`);
    profile = await calibrateLatency(data.model.spec, {
      batch: 1,
      seq: data.context,
      device: env.device,
      threads: env.threads,
      dtype: s.dtype,
      runs: s.latencyRuns,
      // Load from other work only ever adds time: the fastest run is the steadier estimate of the device's speed.
      statistic: 'min',
      ...(s.widthStep !== undefined ? { widthStep: s.widthStep } : {}),
      onProgress: env.onStatus,
    });
  }
  if (profile) await writeLatencyProfile(path, profile);
  return profile;
}

async function prepare(
  dir: string,
  s: StructuredSearchSettings,
  data: RunData,
  env: StructuredSearchEnv,
): Promise<Prepared> {
  const spec = data.model.spec;
  const scores = await scoresOf(dir, s, data, env);
  const profile = await profileOf(dir, s, data, env);
  const total = parameterCount(spec);
  const space = createStructuredSpace(spec, total, {
    kind: s.space,
    orders: ordersOf({
      heads: scores.heads.map((h) => Float64Array.from(h)),
      channels: scores.channels.map((c) => Float64Array.from(c)),
    }),
    ...(s.widthStep !== undefined ? { widthStep: s.widthStep } : {}),
  });
  const budget = priceBudget(space, parseBudget(s.budget), {
    seq: data.context,
    ...(profile ? { seconds: (shapes: LayerShapes) => predictSeconds(profile, shapes) } : {}),
  });
  const { options, backend } = structuredObjectiveOptions(dir, s, data, env);
  const plans = releasingWatchedBackend(
    dir,
    await createObjective(spec, createPlanSpace(spec.config, total, space.keptParametersOf), options).catch(
      async (e) => {
        await backend?.release();
        throw e;
      },
    ),
    backend,
  );
  const seeds: StructuredGenome[] = [];
  for (const path of s.seedPlans ?? []) {
    seeds.push(genomeOfPlan(space, (await loadStructuredPlanFile(path, spec)).plan));
  }
  return { data, scores, space, plans, objective: levelObjective(plans, space), budget, profile, seeds };
}

function gaOptions(
  s: StructuredSearchSettings,
  p: Prepared,
  denseQuality: number,
): GaOptions<StructuredGenome> {
  return {
    population: s.population,
    generations: s.generations,
    tournamentSize: s.tournament,
    operators: structuredGaOperators(
      p.space,
      p.budget,
      { crossoverRate: s.crossoverRate, switches: s.switches },
      p.seeds,
    ),
    // Every individual sits at the budget (operators.ts), so fitness is the quality alone.
    fitness: { kind: 'budget', metric: s.metric, lambda: 0, denseQuality },
    elitism: s.elitism,
    multiFidelity: multiFidelity(s),
    promote: s.promote,
    seed: s.seed,
  };
}

async function runConfig(
  s: StructuredSearchSettings,
  data: RunData,
  config: RunData['model']['spec']['config'],
): Promise<RunConfig> {
  const recorded = await runModelAndData(s, data);
  // The gene layout, so --resume can read genomes before the model is loaded.
  const probe = createStructuredSpace(data.model.spec, 0, {
    kind: s.space,
    ...(s.widthStep !== undefined ? { widthStep: s.widthStep } : {}),
  });
  return {
    kind: STRUCTURED_RUN_KIND,
    version: 1,
    method: s.method,
    settings: s,
    model: recorded.model,
    space: {
      kind: s.space,
      layers: config.numLayers,
      slots: probe.slots,
      widths: probe.widths,
      genome:
        "levels layer by layer ('/' between layers, '.' within): heads kept, width index, attention runs, MLP runs — the genes the space uses",
    },
    calibration: recorded.calibration,
    evaluation: recorded.evaluation,
  };
}

/** The plan scored on the evaluation data (perplexity), the dense model in the same session. */
async function scoreOnEval(data: RunData, s: StructuredSearchSettings, masks: CandidateMasks, env: RunEnv) {
  const windows = makeWindows(data.evalStream, data.context, s.evalTokens, s.eval);
  const batchSize = s.batchSize ?? defaultBatchSize(windows.context, data.model.spec.config.vocabSize);
  const { pruned, dense } = await scoreDenseAndPruned({
    open: (spec) =>
      createRunner(spec, {
        output: 'nll',
        device: env.device,
        threads: env.threads,
        dtype: s.dtype,
        structuredMasks: true,
      }),
    score: (runner, m) => evaluatePerplexity(runner, windows, m ? { masks: m, batchSize } : { batchSize }),
    spec: data.model.spec,
    masks,
    dense: 'same-session',
  });
  return {
    perplexity: pruned.perplexity,
    densePerplexity: dense!.perplexity,
    tokens: pruned.tokens,
    data: s.eval,
  };
}

async function finish(
  dir: string,
  s: StructuredSearchSettings,
  p: Prepared,
  plan: StructuredPlan,
  genome: StructuredGenome | undefined,
  counters: { forwardPasses: number; evaluations: number; seconds: number },
  env: StructuredSearchEnv,
  extra: Pick<StructuredSearchResult, 'stop' | 'resumed' | 'front'> = {},
): Promise<StructuredSearchResult> {
  const spec = p.data.model.spec;
  const config = spec.config;
  const dense = await p.plans.evaluate(fullPlan(config));
  const calib = await p.plans.evaluate(plan);
  await p.plans.release();
  env.onStatus?.('scoring the chosen plan on the evaluation data');
  const evalScore = await scoreOnEval(p.data, s, p.plans.space.masks(plan), env);
  const kept = layerShapes(config, plan);
  const denseShapes = layerShapes(config, fullPlan(config));
  const keptParameters = p.space.keptParametersOf(kept);
  const cost = p.budget.cost(kept);
  const flopRatio =
    planFlopsPerToken(config, kept, p.data.context) / planFlopsPerToken(config, denseShapes, p.data.context);
  const planFile = join(dir, STRUCTURED_FILES.plan);
  const result: StructuredSearchResult = {
    runDir: dir,
    space: s.space,
    method: s.method,
    budget: {
      text: budgetText(p.budget.spec),
      unit: p.budget.unit,
      dense: p.budget.dense,
      limit: p.budget.limit,
      cost,
      ratio: p.budget.spec.kind === 'speedup' ? p.budget.dense / cost : cost / p.budget.dense,
    },
    ...(genome ? { genome: p.space.encode(genome) } : {}),
    plan,
    kept,
    keptParameters,
    totalParameters: p.space.totalParameters,
    parameterRatio: keptParameters / p.space.totalParameters,
    flopRatio,
    ...(p.profile
      ? {
          predictedSpeedup: predictedSpeedup(p.profile, denseShapes, kept),
          latencyProfile: join(dir, STRUCTURED_FILES.profile),
        }
      : {}),
    context: p.data.context,
    calib: {
      metric: s.metric,
      quality: calib.quality,
      denseQuality: dense.quality,
      tokens: calib.tokens,
      data: s.calib,
      ...calibRecord(s.metric, calib.quality, dense.quality),
    },
    eval: evalScore,
    planFile,
    ...counters,
    ...extra,
  };
  await writeStructuredPlanFile(planFile, spec, plan, {
    method: s.method,
    space: s.space,
    budget: result.budget.text,
    runDir: dir,
    context: p.data.context,
    calibration: result.calib,
    evaluation: evalScore,
  });
  if (s.recover || s.flapBias)
    result.recovery = await recoverPlanInDir(dir, s, p.data, plan, evalScore.perplexity, env);
  await writeJsonAtomic(join(dir, RUN_FILES.result), result);
  return result;
}

function runGaIn(
  dir: string,
  s: StructuredSearchSettings,
  p: Prepared,
  state: GaState,
  opts: GaOptions<StructuredGenome>,
  env: StructuredSearchEnv,
  t0: number,
): Promise<GaState> {
  return runGaInDir(dir, p.objective, opts, state, (summary) =>
    env.onGeneration?.(summary, s.generations, (performance.now() - t0) / 1000),
  );
}

/** A baseline's plan at the run's budget (sbase's baselines, priced by the run's budget). */
function baselinePlan(s: StructuredSearchSettings, p: Prepared): StructuredPlan {
  const config = p.data.model.spec.config;
  const budget = {
    cost: (plan: StructuredPlan) => p.budget.cost(layerShapes(config, plan)),
    limit: p.budget.limit,
  };
  const f64 = (v: number[][]) => v.map((x) => Float64Array.from(x));
  const stored = p.scores;
  const scores: StructuredScores = {
    channels: f64(stored.channels),
    heads: f64(stored.heads),
    influence: stored.influence,
    tokens: stored.tokens,
    ...(stored.fluctuation
      ? { fluctuation: { channels: f64(stored.fluctuation.channels), heads: f64(stored.fluctuation.heads) } }
      : {}),
  };
  // Heads go too where the run's space has them (heads, joint); the width baselines always set channels.
  const opts = {
    heads: s.space === 'heads' || s.space === 'joint',
    ...(s.widthStep !== undefined ? { widthStep: s.widthStep } : {}),
  };
  if (s.method === 'uniform') return uniformWidth(config, scores, budget, opts);
  // FLAP ranks by its fluctuation metric (var(X_j)·‖W[:,j]‖²), which the scores carry.
  if (s.method === 'flap')
    return flapLike(config, scores, budget, {
      ...opts,
      ...(scores.fluctuation ? { metric: 'fluctuation' as const } : {}),
    });
  return shortGpt(config, scores, budget);
}

async function searchFromScratch(
  dir: string,
  s: StructuredSearchSettings,
  p: Prepared,
  env: StructuredSearchEnv,
): Promise<StructuredSearchResult> {
  const t0 = performance.now();
  const counters = () => ({
    forwardPasses: p.plans.forwardPasses(),
    evaluations: p.plans.evaluations(),
    seconds: (performance.now() - t0) / 1000,
  });
  const dense = await p.objective.evaluate(p.space.full());
  if (s.method === 'evopress' || s.method === 'nsga') {
    const spent = { evaluations: p.plans.evaluations(), forwardPasses: p.plans.forwardPasses() };
    return finishAlgorithm(dir, s, p, await runAlgorithm(dir, s, p, env, t0, spent), env, t0);
  }
  if (s.method !== 'ga') {
    env.onStatus?.(`${s.method} baseline at ${s.budget}`);
    return finish(dir, s, p, baselinePlan(s, p), undefined, counters(), env);
  }
  const opts = gaOptions(s, p, dense.quality);
  const spent = { evaluations: p.plans.evaluations(), forwardPasses: p.plans.forwardPasses() };
  const final = await runGaIn(dir, s, p, initialState(opts, p.space, spent), opts, env, t0);
  const best = decodeOrThrow(p.space, final.best!.genome);
  return finish(dir, s, p, p.space.plan(best), best, counters(), env, {
    ...(final.stop ? { stop: final.stop } : {}),
  });
}

/** EvoPress's (1 + λ) or NSGA-II over the space's genomes (algorithms.ts), fresh or from a resumed run's state. */
async function runAlgorithm(
  dir: string,
  s: StructuredSearchSettings,
  p: Prepared,
  env: StructuredSearchEnv,
  t0: number,
  spent: { evaluations: number; forwardPasses: number },
  run?: ResumableRun & { evopress?: EvoPressState },
): Promise<AlgorithmOutcome> {
  const input = {
    dir,
    space: p.space,
    budget: p.budget,
    objective: p.objective,
    planKey: (g: StructuredGenome) => p.plans.space.key(p.space.plan(g)),
    metric: s.metric,
    generations: s.generations,
    seed: s.seed,
    switches: s.switches,
    seeds: p.seeds,
    spent,
    onGeneration: (summary: GenerationSummary) =>
      env.onGeneration?.(summary, s.generations, (performance.now() - t0) / 1000),
  };
  if (s.method === 'evopress') {
    const settings = {
      offspring: s.offspring ?? 16,
      multiFidelity: s.lowTokens !== undefined,
      promote: s.promote,
      uniformPlan: baselinePlan({ ...s, method: 'uniform' }, p),
    };
    return runEvoPressInDir(
      input,
      settings,
      run?.evopress ? { state: run.evopress, logged: run.evaluations } : undefined,
    );
  }
  const resume = run?.nsga
    ? { state: run.nsga, counters: await nsgaCounters(dir), logged: run.evaluations }
    : undefined;
  return runNsgaStructuredInDir(input, { population: s.population, crossoverRate: s.crossoverRate }, resume);
}

function finishAlgorithm(
  dir: string,
  s: StructuredSearchSettings,
  p: Prepared,
  out: AlgorithmOutcome,
  env: StructuredSearchEnv,
  t0: number,
  extra: { resumed?: true } = {},
): Promise<StructuredSearchResult> {
  const counters = {
    forwardPasses: out.forwardPasses,
    evaluations: out.evaluations,
    seconds: (performance.now() - t0) / 1000,
  };
  const stop = out.stop ? { stop: out.stop } : {};
  const front = out.front ? { front: { file: join(dir, RUN_FILES.front), members: out.front.length } } : {};
  return finish(dir, s, p, p.space.plan(out.genome), out.genome, counters, env, {
    ...stop,
    ...front,
    ...extra,
  });
}

/** A fresh structured search in `dir`. Settings' data and model paths are stored absolute. */
export async function runStructuredSearch(
  dir: string,
  settings: StructuredSearchSettings,
  env: StructuredSearchEnv = {},
): Promise<StructuredSearchResult> {
  refuseBackendsFor(settings, env);
  const s = absoluteSettings(settings);
  const data = await prepareRunData(s, env, 'structured');
  refuseUnsupportedData(data);
  refuseUnrecoverable(s, data);
  // A seed plan that cannot be read, or was made for another model, is refused before the run directory exists.
  for (const path of s.seedPlans ?? []) await loadStructuredPlanFile(path, data.model.spec);
  let lock: HeldLock | undefined;
  let p: Prepared | undefined;
  try {
    lock = await createRunDir(dir, await runConfig(s, data, data.model.spec.config), env.onNote);
    p = await prepare(dir, s, data, env);
    return await searchFromScratch(dir, s, p, env);
  } finally {
    await p?.plans.release();
    await lock?.release();
  }
}

function refuseUnsupportedData(data: RunData): void {
  if (data.calibPairs)
    throw flagError('--model', 'structured search covers decoders and encoders, not encoder-decoders');
}

/**
 * Continues a GA run from its last saved generation (a run stopped before its first one, or a baseline, starts
 * again from the beginning with its stored settings). `given` are the settings typed with --resume: any that
 * would change the run is refused.
 */
export async function resumeStructuredSearch(
  dir: string,
  env: StructuredSearchEnv = {},
  given: readonly StructuredGivenSetting[] = [],
): Promise<StructuredSearchResult> {
  const config = await readRunConfig(dir, STRUCTURED_RUN_KIND);
  const s = config.settings as StructuredSearchSettings;
  refuseBackendsFor(s, env);
  refuseChangedSettings(s, given);
  await refuseChangedData('calibration', s.calib, config.calibration);
  await refuseChangedData('evaluation', s.eval, config.evaluation);
  const lock = await lockRunDir(dir, env.onNote);
  let p: Prepared | undefined;
  try {
    const run: ResumableRun & { evopress?: EvoPressState } =
      config.method === 'evopress'
        ? await openEvoPressForResume(dir, config, (t) => codecOfConfig(dir, config).decode(t))
        : await openRunForResume(dir, config, (c) => codecOfConfig(dir, c));
    const data = await prepareRunData(s, env, 'structured');
    await refuseForeignModel(dir, config, data.model.spec, data.model.modelPath);
    await refuseChangedConfig(dir, run.configSha256, 'state.json');
    p = await prepare(dir, s, data, env);
    if (!run.fresh && (run.nsga || run.evopress)) {
      const t0 = performance.now();
      await rewriteLogs(dir, run);
      const none = { evaluations: 0, forwardPasses: 0 };
      const out = await runAlgorithm(dir, s, p, env, t0, none, run);
      return await finishAlgorithm(dir, s, p, out, env, t0, { resumed: true });
    }
    if (run.fresh || !run.state) {
      env.onStatus?.('no generation was saved: starting the run again from the beginning');
      await rewriteLogs(dir, run);
      return await searchFromScratch(dir, s, p, env);
    }
    const t0 = performance.now();
    // What earlier sessions computed is primed into the cache, so nothing is evaluated twice.
    for (const r of run.evaluations) {
      const genome = p.space.decode(String(r.genome));
      if (r.cached || genome === undefined) continue;
      p.objective.prime(genome, r.fidelity as 'low' | 'full', {
        quality: qualityFromLog(r),
        tokens: Number(r.tokens),
        ms: Number(r.ms),
      });
    }
    const dense = await p.objective.evaluate(p.space.full());
    const opts = gaOptions(s, p, dense.quality);
    await rewriteLogs(dir, run);
    const state = run.state;
    const final = state.done ? state : await runGaIn(dir, s, p, state, opts, env, t0);
    const best = decodeOrThrow(p.space, final.best!.genome);
    return await finish(
      dir,
      s,
      p,
      p.space.plan(best),
      best,
      {
        forwardPasses: final.forwardPasses,
        evaluations: final.evaluations,
        seconds: (performance.now() - t0) / 1000,
      },
      env,
      { ...(final.stop ? { stop: final.stop } : {}), resumed: true },
    );
  } finally {
    await p?.plans.release();
    await lock.release();
  }
}

/** The space's genome text from a run's config.json alone. */
function codecOfConfig(dir: string, c: RunConfig) {
  const space = c.space as { layers?: unknown; slots?: unknown } | undefined;
  const codec = levelCodec(Number(space?.layers), space?.slots);
  if (!codec)
    throw fileError(join(dir, RUN_FILES.config), 'the run records no valid gene layout (space.slots)');
  return codec;
}
