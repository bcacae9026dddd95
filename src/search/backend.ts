/**
 * Where a search's candidate evaluations run when not in the search's own thread: an `EvaluationBackend`
 * (`--workers N`: worker threads of this process, search/pool.ts; `--queue URL`: BullMQ jobs on Redis scored by
 * `geneprune worker` processes anywhere). A backend is handed a `Recipe` — everything an evaluator needs to
 * rebuild, on its own session, the exact scorer the search would have built itself (the model's reference and
 * configuration, the prepared calibration data, the metric and its settings) — and returns a scorer whose
 * `score(masks, fidelity)` runs there. The search keeps its cache, counters and in-order commits
 * (objective.ts), so what it logs and returns does not depend on the backend; only the wall time does.
 *
 * Recipes are plain data (structured-cloned to a thread, JSON on a queue: search/recipejson.ts); they carry
 * genomes' masks and data, never code. `buildRecipeScorer` is the one place a recipe becomes a scorer, whoever
 * runs it.
 */

import { resolve } from 'node:path';
import type { TokenBatch } from '../engine/runner.js';
import type { Device } from '../engine/session.js';
import { GenepruneError } from '../errors.js';
import type { PreparedGenerationTask } from '../metrics/generation.js';
import { metricEntry, type QualityMetric } from '../metrics/registry.js';
import type { CalibrationScorer, ScorerTarget } from '../metrics/scorers.js';
import { loadModelSpec, tokenizerPathFor } from '../model/load.js';
import type { ModelSpec } from '../model/spec.js';
import { createQueueBackend } from '../queue/backend.js';
import { runIdOf } from '../queue/jobs.js';
import { blockRecipeScorer } from '../spaces/weights/blockrecipe.js';
import { loadTokenizer } from '../tokenizer/load.js';
import type { BleuObjectiveOptions, ElementwiseRunner, ObjectiveOptions } from './objective.js';
import { createPoolBackend } from './pool.js';

/** A calibration objective's scorer (the metric registry's `objective` factory), rebuilt elsewhere. */
export interface CalibrationRecipe {
  kind: 'calibration';
  /** The model as the search opened it (a resolved folder or llama2.c .bin path, or an `hf:` reference). */
  model: string;
  /** The search's view of the model (its configuration as JSON), checked against what the evaluator opens. */
  config: string;
  /** Where the masks go: weight roles, and the structured spaces' channel_mask / block_mask inputs. */
  target: { weightRoles?: string[]; structuredMasks?: boolean };
  /** The objective's options without the runner and backend: prepared data, metric, settings, engine. */
  options: RecipeOptions;
  /** The generation metrics: the tokenizer to load (see TokenizerRef). */
  tokenizer?: TokenizerRef;
}

/**
 * The generation metrics (bleu, exact-match, pass@1) decode what the model writes: the tokenizer file the search
 * read (a tokenizer holds code, so it does not travel) and the text it decodes the first prompt to, which the
 * evaluator checks its own load against.
 */
export interface TokenizerRef {
  path: string;
  probe: string;
}

/** A generation task's options as plain data: the task without its tokenizer. */
export type RecipeGeneration = Omit<BleuObjectiveOptions, 'task'> & {
  task: Omit<PreparedGenerationTask, 'tokenizer'>;
};

/**
 * Objective options as plain data: without the batch runner and backend, and a generation task without its
 * tokenizer (recipe.tokenizer says which to load).
 */
export type RecipeOptions = Omit<ObjectiveOptions, 'elementwise' | 'remote' | 'bleu'> & {
  bleu?: RecipeGeneration;
};

/**
 * A block objective's scorer (spaces/weights/blockobjective.ts: block `layer`'s candidates of a block-wise weight
 * search, blocks before it at their fixed masks, blocks after it dense), rebuilt elsewhere. The evaluator does
 * not receive the hidden states entering the block: it replays the walk from block 0 with the fixed masks
 * (spaces/weights/blockrecipe.ts), as a resumed block search does — a few block passes instead of shipping
 * batch × seq × d floats per block (docs/distributed.md has the measurements).
 */
export interface BlockRecipe {
  kind: 'block';
  /** The model as the search opened it (a resolved folder or llama2.c .bin path, or an `hf:` reference). */
  model: string;
  /** The search's view of the model (its configuration as JSON), checked against what the evaluator opens. */
  config: string;
  /**
   * The block search's metric: the perplexity (scored from the replayed hidden states), or a generation metric
   * (whole-model generations of `bleu`'s task with the fixed masks and the candidate's; no replay).
   */
  metric: QualityMetric;
  /** The block searched. */
  layer: number;
  /** Every matrix the walk searches (`--layers` applied), in layer order: the blocks' layouts follow. */
  matrices: Array<{ role: string; layer: number; rows: number; cols: number }>;
  /** The calibration batches entering block 0 (typed arrays: structured-clonable, JSON through recipejson). */
  batches: TokenBatch[];
  /**
   * Keep masks of the fixed blocks' matrices (every searched matrix of blocks < layer), packed 8 to a byte
   * (masks/bitset.ts bitsetBytes: weight 8k + j in bit j of byte k; 1 keeps).
   */
  fixed: Array<[string, Uint8Array]>;
  engine: { device?: Device; threads?: number };
  /**
   * `--recover` inside the walk (the seeded GAs): the replay recovers each fixed block, and every candidate is
   * scored after its own recovery, with this ridge damping.
   */
  recover?: { damping: number };
  /** The block objective scores the dense model too (the first block searched), which recovery needs a session for. */
  scoresDense?: boolean;
  /** A generation metric's calibration task and scoring (plain data), and the tokenizer to load. */
  bleu?: RecipeGeneration;
  tokenizer?: TokenizerRef;
}

/** Everything an evaluator can be asked to rebuild. */
export type Recipe = CalibrationRecipe | BlockRecipe;

/** A place where candidate evaluations run: scorers opened per recipe, all released with the backend. */
export interface EvaluationBackend {
  /** The flag that chose it, for messages (`--workers`, `--queue`). */
  readonly flag: string;
  /** What it is, for progress lines and run files (never a password). */
  readonly label: string;
  /**
   * A scorer for the recipe whose `score` runs on the backend; ready when it can score (a thread pool: every
   * worker has built it). Its `runner.release()` frees what the recipe holds there. `spec` is the search's own
   * open model when it has one (the queue hashes its identity from it rather than opening the file again).
   */
  open(recipe: Recipe, spec?: ModelSpec): Promise<CalibrationScorer>;
  /** How a batch's evaluations are handed out: every task started at once, failures chosen by index. */
  readonly elementwise: ElementwiseRunner;
  release(): Promise<void>;
  /**
   * What the backend has done so far, for the run's workers.json and the dashboard's workers panel (optional: a
   * backend without it writes no file). Still answers after `release()`, with what it did before, so the search
   * can write the file once more at the end.
   */
  stats?(): Promise<BackendStats>;
}

/**
 * A backend's work at one moment. The counts are this backend's evaluations since it was created (its jobs on a
 * shared queue, not other searches'): `waiting` handed to the backend but not started, `active` being scored,
 * `done` scored, `failed` ended in an error. `workers` has one entry per evaluator that has worked for it (a
 * worker thread, a `geneprune worker` process), `busyMs` the wall time it spent on this backend's evaluations.
 * No password, host secret or path beyond what `label` already shows.
 */
export interface BackendStats {
  /** The backend's label (`2 worker threads`, a queue's redacted URL). */
  label: string;
  waiting: number;
  active: number;
  done: number;
  failed: number;
  workers: WorkerStats[];
}

export interface WorkerStats {
  /** Stable for the evaluator's life, unique within the backend (`thread 1`, a worker's host and pid). */
  id: string;
  /** Evaluations it finished for this backend (scored, not failed). */
  evaluations: number;
  busyMs: number;
}

/** `ObjectiveOptions.remote`: the backend and the model reference its recipes name. */
export interface RemoteEvaluation {
  backend: EvaluationBackend;
  /** The model's resolved path or `hf:` reference, as an evaluator elsewhere opens it. */
  model: string;
}

/** The metric a recipe scores (for refusals and messages). */
export function recipeMetric(recipe: Recipe): QualityMetric {
  return recipe.kind === 'block' ? recipe.metric : recipe.options.metric;
}

/** The intra-op threads a recipe asks for (undefined: the evaluator's default). */
export function recipeThreads(recipe: Recipe): number | undefined {
  return recipe.kind === 'block' ? recipe.engine.threads : recipe.options.threads;
}

/** The recipe with its evaluator's intra-op threads set. */
export function withThreads(recipe: Recipe, threads: number): Recipe {
  return recipe.kind === 'block'
    ? { ...recipe, engine: { ...recipe.engine, threads } }
    : { ...recipe, options: { ...recipe.options, threads } };
}

/** The recipe of a calibration objective `createObjective` would build from these options. */
export function calibrationRecipe(
  spec: ModelSpec,
  target: ScorerTarget,
  opts: ObjectiveOptions,
  model: string,
): CalibrationRecipe {
  const { elementwise: _e, remote: _r, bleu, ...rest } = opts;
  const options: RecipeOptions = rest;
  let tokenizer: TokenizerRef | undefined;
  if (bleu) ({ bleu: options.bleu, tokenizer } = plainGenerationOptions(bleu));
  return {
    kind: 'calibration',
    model,
    config: JSON.stringify(spec.config),
    target: {
      ...(target.weightRoles ? { weightRoles: [...target.weightRoles] } : {}),
      // A structured space's candidates feed channel_mask / block_mask: the evaluator's runner needs those inputs.
      ...(target.structuredMasks ? { structuredMasks: true } : {}),
    },
    options,
    ...(tokenizer ? { tokenizer } : {}),
  };
}

/**
 * The scorer a recipe stands for, built here: the model opened (from `modelOverride` when given, e.g. a worker's
 * local copy), its configuration checked against the recipe's, then the metric's own factory — the same code a
 * one-process search runs. The spec comes back too: an evaluator elsewhere checks the model's identity with it.
 */
export async function buildRecipeScorer(
  recipe: Recipe,
  modelOverride?: string,
): Promise<{ scorer: CalibrationScorer; spec: ModelSpec }> {
  const where = modelOverride ?? recipe.model;
  const spec = await loadModelSpec(where);
  // The model file could differ from the one the search holds (replaced, or another machine's copy): scoring
  // it would give wrong numbers, so the evaluator refuses.
  if (JSON.stringify(spec.config) !== recipe.config) {
    throw new GenepruneError(
      'model',
      'an evaluator opened a different model configuration than the search holds (another model, or was the file replaced?)',
      where,
    );
  }
  if (recipe.kind === 'block') {
    const bleu = recipe.bleu
      ? await generationOptions(recipe.bleu, recipe.tokenizer, spec, where, modelOverride)
      : undefined;
    return { scorer: await blockRecipeScorer(spec, recipe, bleu), spec };
  }
  const { bleu, ...rest } = recipe.options;
  const options: ObjectiveOptions = rest;
  if (bleu) options.bleu = await generationOptions(bleu, recipe.tokenizer, spec, where, modelOverride);
  return { scorer: await metricEntry(options.metric).objective(spec, recipe.target, options), spec };
}

/** A generation task's options as plain data (without the tokenizer), and which tokenizer it needs. */
export function plainGenerationOptions(bleu: BleuObjectiveOptions): {
  bleu: RecipeGeneration;
  tokenizer: TokenizerRef;
} {
  const { tokenizer, ...task } = bleu.task;
  return {
    bleu: { ...bleu, task },
    tokenizer: { path: tokenizer.source, probe: tokenizer.decode(task.prompts[0] ?? []) },
  };
}

/**
 * A generation task's options with the tokenizer loaded here: the search's file, or the one beside a worker's own
 * copy of the model (as openModel finds it); one that decodes the first prompt differently is refused.
 */
async function generationOptions(
  bleu: RecipeGeneration,
  ref: TokenizerRef | undefined,
  spec: ModelSpec,
  where: string,
  modelOverride: string | undefined,
): Promise<BleuObjectiveOptions> {
  if (!ref) throw new GenepruneError('internal', 'a generation recipe names no tokenizer', where);
  const path = (modelOverride && tokenizerPathFor(modelOverride)) || ref.path;
  const tokenizer = await loadTokenizer(path, { vocabSize: spec.config.vocabSize });
  // Another tokenizer would decode other texts, and score them: refused, as another model is.
  if (tokenizer.decode(bleu.task.prompts[0] ?? []) !== ref.probe) {
    throw new GenepruneError(
      'model',
      'an evaluator loaded a tokenizer that decodes the calibration prompts differently than the search’s',
      path,
    );
  }
  return { ...bleu, task: { ...bleu.task, tokenizer } };
}

/** The evaluation flags of a run (`--workers N`, `--queue URL`), as the run's environment holds them. */
export interface BackendChoice {
  workers?: number;
  /** `--queue redis://…`: evaluations as BullMQ jobs (queue/backend.ts). */
  queue?: string;
  /** The run's id for the queue's job ids (stable across --resume: see runQueueId). */
  runId?: string;
  /** Progress lines (the queue's waiting line). */
  onStatus?: (line: string) => void;
}

/** Refuses `--workers` with `--queue` in one line (called before any data is read). */
export function refuseTwoBackends(choice: BackendChoice): void {
  if (choice.workers !== undefined && choice.queue !== undefined)
    throw new GenepruneError(
      'flag',
      'give either --workers (threads here) or --queue (workers anywhere), not both',
      '--queue',
    );
}

/** The backend the flags choose, or undefined for the search's own thread. */
export function backendFor(choice: BackendChoice): EvaluationBackend | undefined {
  refuseTwoBackends(choice);
  if (choice.workers !== undefined) return createPoolBackend(choice.workers);
  if (choice.queue !== undefined) {
    if (choice.runId === undefined)
      throw new GenepruneError('internal', 'a queue backend needs the run id its job ids are made from');
    return createQueueBackend(choice.queue, {
      runId: choice.runId,
      ...(choice.onStatus ? { onStatus: choice.onStatus } : {}),
    });
  }
  return undefined;
}

/**
 * The run id of a run directory for the queue's job ids: a hash of its absolute path. The path is what names
 * a run for --resume, and it is known before config.json is written (the objective is made first); a run
 * resumed from the same directory posts the same ids and reuses every finished job. Two runs can only share
 * a job if they also share the objective's identity (model, data, settings) and the masks, and then the score
 * is the same number anyway.
 */
export function runQueueId(runDir: string): string {
  return runIdOf(resolve(runDir));
}

/** Makes `objective.release()` release the backend too (a run's backend lives as long as its objective). */
export function releasingBackend<T extends { release(): Promise<void> }>(
  objective: T,
  backend: EvaluationBackend | undefined,
): T {
  if (!backend) return objective;
  const inner = objective.release.bind(objective);
  objective.release = async () => {
    try {
      await inner();
    } finally {
      await backend.release();
    }
  };
  return objective;
}
