/**
 * A whole head search as the CLI runs it: open model and data, build the calibration objective, run one
 * method (the GA, NSGA-II, or a baseline) in a run directory, then score the chosen mask on the evaluation data.
 * Calibration data (what the search sees) and evaluation data (what reports quote) are kept apart and both are
 * named in config.json and result.json.
 */
import { resolve } from 'node:path';
import { createRunner } from '../engine/runner.js';
import type { Device } from '../engine/session.js';
import { fileError, flagError, GenepruneError } from '../errors.js';
import type { ComputeDtype } from '../graph/weights.js';
import { readDataset } from '../metrics/data.js';
import {
  defaultBatchSize,
  evaluatePerplexity,
  makeWindows,
  tokenizeDocuments,
} from '../metrics/perplexity.js';
import { isModelShape, type ModelShape, shapeDifference } from '../model/identity.js';
import { checkMemoryBudget } from '../model/memory.js';
import { type OpenedModel, openModel } from '../model/open.js';
import {
  faultPoint,
  type HeldLock,
  realPathOf,
  sha256File,
  sha256Text,
  writeJsonAtomic,
} from '../util/fs.js';
import { createRng } from '../util/rng.js';
import { type BaselineName, runBaseline, singleHeadAblationScores } from './baselines.js';
import type { FitnessKind } from './fitness.js';
import { type GaOptions, type GaState, type GenerationSummary, initialState, runGa } from './ga.js';
import {
  type Genome,
  geneCount,
  genomeFromKey,
  genomeKey,
  headMaskOf,
  keptParameters,
  sparsity,
} from './genome.js';
import { makeMaskFile, modelIdentity } from './maskfile.js';
import { fastNonDominatedSort, type NsgaState, runNsga } from './nsga.js';
import { createHeadObjective, type HeadObjective, type QualityMetric, qualityFromLog } from './objective.js';
import {
  appendJsonl,
  createRunDir,
  lockRunDir,
  openRunForResume,
  type ResumableRun,
  RUN_KIND,
  type RunConfig,
  readRunConfig,
  rewriteLogs,
  saveState,
} from './rundir.js';

export type HeadMethod = 'ga' | 'nsga' | BaselineName;
export const HEAD_METHODS: readonly HeadMethod[] = [
  'ga',
  'nsga',
  'random',
  'norm',
  'ablation',
  'greedy',
  'regression',
];

export interface HeadSearchSettings {
  model?: string;
  tokenizer?: string;
  calib: string;
  eval: string;
  method: HeadMethod;
  metric: QualityMetric;
  /** Share of heads to remove (baselines, budget GA, and the NSGA-II pick). */
  targetSparsity?: number;
  context?: number;
  calibTokens: number;
  /** Multi-fidelity: tokens for the cheap first pass (GA); undefined = off. */
  lowTokens?: number;
  promote: number;
  evalTokens?: number;
  population: number;
  generations: number;
  tournament: number;
  crossoverRate: number;
  mutationRate: number;
  removalBias: number;
  sInitial: number;
  fitness: FitnessKind;
  lambda: number;
  elitism: number;
  fitnessThreshold?: number;
  maxSparsity?: number;
  seedAblation: boolean;
  regressionSamples?: number;
  seed: number;
  batchSize?: number;
  /** Compute precision (changes numerics, so it is part of the run). */
  dtype?: ComputeDtype;
}

export interface HeadSearchEnv {
  device?: Device;
  threads?: number;
  /** Refuse before loading when the estimated peak exceeds this many bytes (default: total memory). */
  memoryBudget?: number;
  onStatus?: (line: string) => void;
  /** Things the user should see even when quiet: a stale lock taken over, leftovers removed. */
  onNote?: (line: string) => void;
  onGeneration?: (s: GenerationSummary, total: number, elapsedS: number) => void;
  onProgress?: (done: number, total: number) => void;
}

export interface HeadSearchResult {
  runDir: string;
  method: HeadMethod;
  genome: Genome;
  removed: number;
  genes: number;
  calib: { quality: number; denseQuality: number; metric: QualityMetric; tokens: number };
  eval: { perplexity: number; densePerplexity: number; tokens: number; data: string };
  forwardPasses: number;
  evaluations: number;
  seconds: number;
}

function removeCountOf(s: HeadSearchSettings, genes: number): number | undefined {
  return s.targetSparsity === undefined ? undefined : Math.round(s.targetSparsity * genes);
}

function gaOptions(
  s: HeadSearchSettings,
  genes: number,
  denseQuality: number,
  initWeights?: number[],
): GaOptions {
  return {
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
    multiFidelity: s.lowTokens !== undefined,
    promote: s.promote,
    initWeights,
    seed: s.seed,
  };
}

/** One data file as config.json records it, so a resumed run can tell the data has not changed. */
export interface DataFileIdentity {
  path: string;
  sha256: string;
}

interface Prepared {
  model: OpenedModel;
  objective: HeadObjective;
  calibTokens: number;
  calibFiles: DataFileIdentity[];
  evalFiles: DataFileIdentity[];
  evalStream: number[];
  context: number;
}

/** The same settings with data and model paths absolute, so a run resumes from any working directory. */
function absoluteSettings(s: HeadSearchSettings): HeadSearchSettings {
  const local = (p: string | undefined) => (p === undefined || p.startsWith('hf:') ? p : resolve(p));
  return {
    ...s,
    calib: resolve(s.calib),
    eval: resolve(s.eval),
    model: local(s.model),
    tokenizer: local(s.tokenizer),
  };
}

async function identify(files: string[]): Promise<DataFileIdentity[]> {
  return Promise.all(files.map(async (f) => ({ path: resolve(f), sha256: await sha256File(f) })));
}

/** The documents of one data file; an empty file (allowed inside a folder) has none. */
async function documentsOf(file: string): Promise<string[]> {
  try {
    return (await readDataset(file)).documents;
  } catch (e) {
    if (e instanceof GenepruneError && e.kind === 'data') return [];
    throw e;
  }
}

/**
 * Refuses evaluation data that shares anything with the calibration data: a file (by real path, so a symlink
 * or a single page given by name is caught) or a document (by content hash, so a copied page is caught).
 */
async function refuseOverlap(calibFiles: string[], evalFiles: string[]): Promise<void> {
  const both = (e: string, c: string) =>
    resolve(e) === resolve(c) ? resolve(e) : `${resolve(e)} (calibration: ${resolve(c)})`;
  const calibByReal = new Map<string, string>();
  for (const f of calibFiles) calibByReal.set(await realPathOf(f), f);
  for (const f of evalFiles) {
    const c = calibByReal.get(await realPathOf(f));
    if (c !== undefined) {
      throw flagError('--eval', `${both(f, c)} is also calibration data: reports must quote unseen text`);
    }
  }
  const calibByDoc = new Map<string, string>();
  for (const f of calibFiles) for (const d of await documentsOf(f)) calibByDoc.set(sha256Text(d), f);
  for (const f of evalFiles) {
    for (const d of await documentsOf(f)) {
      const c = calibByDoc.get(sha256Text(d));
      if (c !== undefined) {
        throw flagError(
          '--eval',
          `${both(f, c)} holds a document that is also in the calibration data: reports must quote unseen text`,
        );
      }
    }
  }
}

async function prepare(s: HeadSearchSettings, env: HeadSearchEnv): Promise<Prepared> {
  const calib = await readDataset(s.calib);
  const evalData = await readDataset(s.eval);
  await refuseOverlap(calib.files, evalData.files);
  const model = await openModel(s.model, { tokenizer: s.tokenizer });
  const context = s.context ?? Math.min(model.spec.config.maxPositions, 512);
  if (context > model.spec.config.maxPositions) {
    throw flagError(
      '--ctx',
      `${context} exceeds the model's context length ${model.spec.config.maxPositions}`,
    );
  }
  checkMemoryBudget(model.spec, {
    batch: s.batchSize ?? defaultBatchSize(context, model.spec.config.vocabSize),
    seq: context,
    budget: env.memoryBudget,
    what: 'heads',
    dtype: s.dtype,
  });
  const stream = tokenizeDocuments(calib.documents, model.tokenizer);
  const evalStream = tokenizeDocuments(evalData.documents, model.tokenizer);
  env.onStatus?.(
    `model ${model.modelPath}: ${geneCount(model.spec.config)} heads; calibration ${stream.length} tokens`,
  );
  const objective = await createHeadObjective(model.spec, {
    stream,
    context,
    metric: s.metric,
    tokens: s.calibTokens,
    lowTokens: s.lowTokens,
    batchSize: s.batchSize,
    device: env.device,
    threads: env.threads,
    dtype: s.dtype,
  });
  return {
    model,
    objective,
    calibTokens: Math.min(s.calibTokens, stream.length - 1),
    calibFiles: await identify(calib.files),
    evalFiles: await identify(evalData.files),
    evalStream,
    context,
  };
}

async function runConfig(s: HeadSearchSettings, p: Prepared): Promise<RunConfig> {
  return {
    kind: RUN_KIND,
    version: 1,
    method: s.method,
    settings: s,
    model: {
      path: p.model.modelPath,
      tokenizer: p.model.tokenizerPath,
      ...(await modelIdentity(p.model.spec)),
    },
    geneOrder:
      'layer-major over the heads present: layer l starts at the sum of model.shape.queryHeads before it; 1 keeps the head',
    calibration: { path: s.calib, files: p.calibFiles, tokens: p.calibTokens, context: p.context },
    evaluation: { path: s.eval, files: p.evalFiles },
  };
}

/** Scores a mask (and the dense model) on the evaluation data. */
async function scoreOnEval(p: Prepared, s: HeadSearchSettings, genome: Genome, env: HeadSearchEnv) {
  const windows = makeWindows(p.evalStream, p.context, s.evalTokens, s.eval);
  const runner = await createRunner(p.model.spec, {
    output: 'nll',
    device: env.device,
    threads: env.threads,
    dtype: s.dtype,
  });
  const batchSize = s.batchSize ?? defaultBatchSize(p.context, p.model.spec.config.vocabSize);
  const pruned = await evaluatePerplexity(runner, windows, {
    masks: { headMask: headMaskOf(p.model.spec.config, genome) },
    batchSize,
  });
  const dense = await evaluatePerplexity(runner, windows, { batchSize });
  await runner.release();
  return {
    perplexity: pruned.perplexity,
    densePerplexity: dense.perplexity,
    tokens: pruned.tokens,
    data: s.eval,
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
  const genes = geneCount(p.model.spec.config);
  const dense = await p.objective.evaluate(new Uint8Array(genes).fill(1));
  const calibScore = await p.objective.evaluate(genome);
  // One session at a time: a 1B model's second copy would double the peak.
  await p.objective.release();
  env.onStatus?.('scoring the chosen mask on the evaluation data');
  const evalScore = await scoreOnEval(p, s, genome, env);
  const result: HeadSearchResult = {
    runDir: dir,
    method: s.method,
    genome,
    removed: genes - genome.reduce((a, b) => a + b, 0),
    genes,
    calib: {
      quality: calibScore.quality,
      denseQuality: dense.quality,
      metric: s.metric,
      tokens: calibScore.tokens,
    },
    eval: evalScore,
    ...counters,
  };
  const mask = await makeMaskFile(p.model.spec, genome, {
    method: s.method,
    runDir: dir,
    calibration: { path: s.calib, metric: s.metric, quality: calibScore.quality },
    evaluation: {
      path: s.eval,
      perplexity: evalScore.perplexity,
      densePerplexity: evalScore.densePerplexity,
    },
  });
  await writeJsonAtomic(`${dir}/mask.json`, mask);
  const { genome: _g, ...rest } = result;
  await writeJsonAtomic(`${dir}/result.json`, {
    ...rest,
    genome: genomeKey(genome),
    removedHeads: mask.removed,
    keptQueryHeads: mask.keptQueryHeads,
    keptKvHeads: mask.keptKvHeads,
    keptParameters: keptParameters(p.model.spec.config, genome, p.objective.totalParameters),
    totalParameters: p.objective.totalParameters,
    ...extra,
  });
  return result;
}

async function runGaIn(
  dir: string,
  s: HeadSearchSettings,
  p: Prepared,
  state: GaState,
  opts: GaOptions,
  env: HeadSearchEnv,
  t0: number,
): Promise<GaState> {
  return runGa(p.objective, opts, state, {
    onEvaluation: async (r) => {
      await appendJsonl(dir, 'evals.jsonl', r);
      faultPoint('heads:after-evaluation');
    },
    onGeneration: async (summary, next) => {
      await appendJsonl(dir, 'generations.jsonl', summary);
      await saveState(dir, next);
      env.onGeneration?.(summary, s.generations, (performance.now() - t0) / 1000);
    },
  });
}

/** A fresh search in `dir`. Settings' data and model paths are stored absolute. */
export async function runHeadSearch(dir: string, settings: HeadSearchSettings, env: HeadSearchEnv = {}) {
  const s = absoluteSettings(settings);
  const p = await prepare(s, env);
  let lock: HeldLock | undefined;
  try {
    const removeCount = removeCountOf(s, geneCount(p.model.spec.config));
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
  const genes = geneCount(p.model.spec.config);
  const removeCount = removeCountOf(s, genes);
  const dense = await p.objective.evaluate(new Uint8Array(genes).fill(1));
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
      const scores = await singleHeadAblationScores(p.objective, 'full', env.onProgress);
      // Removability: heads whose removal costs least get the largest weights.
      // Only finite scores set the scale; a head whose removal breaks the model (or is absent) gets weight 0.
      const worst = Math.max(...scores.filter(Number.isFinite));
      initWeights = Array.from(scores, (q) => (Number.isFinite(q) ? worst - q + 1e-6 * Math.abs(worst) : 0));
    }
    const opts = gaOptions(s, genes, dense.quality, initWeights);
    const spent = { evaluations: p.objective.evaluations(), forwardPasses: p.objective.forwardPasses() };
    const final = await runGaIn(dir, s, p, initialState(opts, genes, spent), opts, env, t0);
    return finish(dir, s, p, genomeFromKey(final.best!.genome), counters(), env, { stop: final.stop });
  }
  if (s.method === 'nsga') return runNsgaIn(dir, s, p, env, counters);
  const baseline = await runBaseline(s.method, {
    spec: p.model.spec,
    objective: p.objective,
    removeCount: removeCount!,
    rng,
    onProgress: env.onProgress,
    samples: s.regressionSamples,
  });
  return finish(dir, s, p, baseline.genome, counters(), env);
}

/**
 * NSGA-II in a run directory. Every distinct mask it scores goes into an archive (and into evals.jsonl): the
 * reported front is the non-dominated set of all of them, not only the last population, and the pick at the
 * target size is the best archived mask there. The NSGA-II state is saved after every generation; a resumed
 * run primes the archive and the cache from evals.jsonl and continues from that state.
 */
async function runNsgaIn(
  dir: string,
  s: HeadSearchSettings,
  p: Prepared,
  env: HeadSearchEnv,
  counters: () => { forwardPasses: number; evaluations: number; seconds: number },
  resume?: { state: NsgaState; logged: Array<Record<string, unknown>> },
): Promise<HeadSearchResult> {
  const genes = geneCount(p.model.spec.config);
  const archive = new Map<string, number>();
  for (const r of resume?.logged ?? []) {
    const key = String(r.genome);
    const e = { quality: qualityFromLog(r), tokens: Number(r.tokens), ms: Number(r.ms) };
    archive.set(key, e.quality);
    p.objective.prime(genomeFromKey(key), r.fidelity === 'low' ? 'low' : 'full', e);
  }
  const objective: HeadObjective = {
    ...p.objective,
    evaluate: async (g, fidelity = 'full') => {
      const e = await p.objective.evaluate(g, fidelity);
      const key = genomeKey(g);
      if (!archive.has(key)) {
        archive.set(key, e.quality);
        await appendJsonl(dir, 'evals.jsonl', {
          genome: key,
          quality: e.quality,
          tokens: e.tokens,
          fidelity,
          ms: Math.round(e.ms),
          ...(Number.isFinite(e.quality) ? {} : { nonFinite: true }),
        });
      }
      return e;
    },
  };
  await runNsga(objective, {
    population: s.population,
    generations: s.generations,
    mutationRate: s.mutationRate,
    rng: createRng(s.seed),
    state: resume?.state,
    onGeneration: async (info) => {
      await appendJsonl(dir, 'generations.jsonl', {
        generation: info.generation,
        front: info.front.map((f) => ({
          genome: genomeKey(f.genome),
          quality: f.quality,
          sparsity: f.sparsity,
        })),
      });
      await writeJsonAtomic(`${dir}/state.json`, { version: 1, method: 'nsga', nsga: info.state });
      env.onStatus?.(`generation ${info.generation}/${s.generations}: front of ${info.front.length}`);
    },
  });
  const points = [...archive].map(([key, quality]) => {
    const genome = genomeFromKey(key);
    return {
      genome: key,
      quality,
      sparsity: sparsity(genome),
      keptParameters: keptParameters(p.model.spec.config, genome, p.objective.totalParameters),
    };
  });
  const [first] = fastNonDominatedSort(points.map((q) => [q.quality, q.keptParameters]));
  const front = first.map((i) => points[i]).sort((x, y) => x.keptParameters - y.keptParameters);
  const target = removeCountOf(s, genes) ?? Math.round(0.25 * genes);
  const atTarget = points.filter((q) => Math.round(q.sparsity * genes) === target);
  const pool = atTarget.length > 0 ? atTarget : front;
  const distance = (q: { sparsity: number }) => Math.abs(Math.round(q.sparsity * genes) - target);
  const byQuality = (x: { quality: number }, y: { quality: number }) =>
    x.quality < y.quality ? -1 : x.quality > y.quality ? 1 : 0;
  const pick = [...pool].sort((x, y) => distance(x) - distance(y) || byQuality(x, y))[0];
  await writeJsonAtomic(`${dir}/front.json`, front);
  return finish(dir, s, p, genomeFromKey(pick.genome), counters(), env, {
    front,
    archived: points.length,
    pickedAtTarget: atTarget.length > 0,
    ...(resume ? { resumed: true } : {}),
  });
}

/** A setting the user typed alongside --resume: the flag, the setting it sets (if any) and the parsed value. */
export interface GivenSetting {
  flag: string;
  key?: keyof HeadSearchSettings;
  value: unknown;
}

/**
 * Flags that may differ on --resume: they choose where and how visibly the work runs, never what is computed.
 * Everything else is part of the run's identity. --generations in particular: config.json must describe the
 * run it holds, and a finished run's stop reason and best were decided under the old limit. --batch-size too:
 * it changes the order of float sums, so the resumed run would no longer equal an uninterrupted one.
 */
export const RESUME_CHANGEABLE_FLAGS: readonly string[] = ['--device', '--threads', '--quiet', '--json'];

const PATH_SETTINGS = new Set<keyof HeadSearchSettings>(['calib', 'eval', 'model', 'tokenizer']);

/** Refuses every given setting that differs from the run's; the same value given again is accepted. */
function refuseChangedSettings(stored: HeadSearchSettings, given: readonly GivenSetting[]): void {
  for (const g of given) {
    if (RESUME_CHANGEABLE_FLAGS.includes(g.flag)) continue;
    if (g.key === undefined) {
      throw flagError(g.flag, "cannot be given with --resume (the run's settings are in its config.json)");
    }
    const was = stored[g.key];
    const now =
      PATH_SETTINGS.has(g.key) && typeof g.value === 'string' && !g.value.startsWith('hf:')
        ? resolve(g.value)
        : g.value;
    if (now !== was) {
      const shown = was === undefined ? `no ${g.flag}` : String(was);
      throw flagError(g.flag, `cannot change on --resume (the run was made with ${shown})`);
    }
  }
}

/** Refuses data that changed since the run began: a file missing, added or with other bytes. */
async function refuseChangedData(label: string, path: string, stored: unknown): Promise<boolean> {
  const recorded = (stored as { files?: unknown } | undefined)?.files;
  if (!Array.isArray(recorded) || !recorded.every((f) => typeof f?.sha256 === 'string')) return false;
  const now = await identify((await readDataset(path)).files);
  const before = new Map((recorded as DataFileIdentity[]).map((f) => [f.path, f.sha256]));
  const after = new Map(now.map((f) => [f.path, f.sha256]));
  const why = 'since the run began (config.json records its sha256); resume needs the same data';
  for (const [f, hash] of before) {
    if (!after.has(f)) throw fileError(f, `${label} file is missing ${why}`);
    if (after.get(f) !== hash) throw fileError(f, `${label} file changed ${why}`);
  }
  for (const f of after.keys()) {
    if (!before.has(f)) throw fileError(f, `${label} file was added ${why}`);
  }
  return true;
}

/**
 * Continues a GA or NSGA-II run from its last saved generation (a run stopped before its first one, or an
 * unfinished baseline, starts again from the beginning with its stored settings). `given` are the settings
 * the user typed with --resume: any that would change the run is refused.
 */
export async function resumeHeadSearch(
  dir: string,
  env: HeadSearchEnv = {},
  given: readonly GivenSetting[] = [],
): Promise<HeadSearchResult> {
  const config = await readRunConfig(dir);
  const s = config.settings as HeadSearchSettings;
  refuseChangedSettings(s, given);
  const checked =
    (await refuseChangedData('calibration', s.calib, config.calibration)) &&
    (await refuseChangedData('evaluation', s.eval, config.evaluation));
  if (!checked) env.onNote?.(`${dir}: the run predates data hashes in config.json; its data is not verified`);
  const lock = await lockRunDir(dir, env.onNote);
  try {
    const run = await openRunForResume(dir, config, (c) => {
      const heads = (c.model as { shape?: { queryHeads?: unknown } } | undefined)?.shape?.queryHeads;
      if (!Array.isArray(heads)) {
        throw fileError(
          `${dir}/config.json`,
          'the run records no per-layer model shape (made by an older geneprune, whose model fingerprint was weak); run it again',
        );
      }
      return heads.reduce((a: number, b) => a + Number(b), 0);
    });
    const p = await prepare(s, env);
    try {
      const id = await modelIdentity(p.model.spec);
      const recorded = config.model as { fingerprint?: string; shape?: ModelShape } | undefined;
      if (id.fingerprint !== recorded?.fingerprint) {
        const shape = isModelShape(recorded?.shape)
          ? shapeDifference(recorded.shape, id.shape, 'the run')
          : undefined;
        throw fileError(
          `${dir}/config.json`,
          `the run was made with another model than ${p.model.modelPath}${shape ? ` (${shape})` : ': same shape, different weights'}`,
        );
      }
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
  if (run.nsga) {
    await rewriteLogs(dir, run);
    await p.objective.evaluate(new Uint8Array(geneCount(p.model.spec.config)).fill(1));
    const counters = () => ({
      forwardPasses: p.objective.forwardPasses(),
      evaluations: p.objective.evaluations(),
      seconds: (performance.now() - t0) / 1000,
    });
    return runNsgaIn(dir, s, p, env, counters, { state: run.nsga, logged: run.evaluations });
  }
  const genes = geneCount(p.model.spec.config);
  // What earlier sessions computed is primed into the cache, so nothing is evaluated twice.
  for (const r of run.evaluations) {
    if (r.cached) continue;
    p.objective.prime(genomeFromKey(String(r.genome)), r.fidelity as 'low' | 'full', {
      quality: qualityFromLog(r),
      tokens: Number(r.tokens),
      ms: Number(r.ms),
    });
  }
  const dense = await p.objective.evaluate(new Uint8Array(genes).fill(1));
  // The initial population is already in the state, so no initialisation weights are needed.
  const opts = gaOptions(s, genes, dense.quality);
  await rewriteLogs(dir, run);
  const state = run.state!;
  const final = state.done ? state : await runGaIn(dir, s, p, state, opts, env, t0);
  return finish(
    dir,
    s,
    p,
    genomeFromKey(final.best!.genome),
    {
      forwardPasses: final.forwardPasses,
      evaluations: final.evaluations,
      seconds: (performance.now() - t0) / 1000,
    },
    env,
    { stop: final.stop, resumed: true },
  );
}
