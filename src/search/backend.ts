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
import { GenepruneError } from '../errors.js';
import { metricEntry } from '../metrics/registry.js';
import type { CalibrationScorer, ScorerTarget } from '../metrics/scorers.js';
import { loadModelSpec } from '../model/load.js';
import type { ModelSpec } from '../model/spec.js';
import { createQueueBackend } from '../queue/backend.js';
import { runIdOf } from '../queue/jobs.js';
import type { ElementwiseRunner, ObjectiveOptions } from './objective.js';
import { createPoolBackend } from './pool.js';

/** A calibration objective's scorer (the metric registry's `objective` factory), rebuilt elsewhere. */
export interface CalibrationRecipe {
  kind: 'calibration';
  /** The model as the search opened it (a resolved folder or llama2.c .bin path, or an `hf:` reference). */
  model: string;
  /** The search's view of the model (its configuration as JSON), checked against what the evaluator opens. */
  config: string;
  target: { weightRoles?: string[] };
  /** The objective's options without the runner and backend: prepared data, metric, settings, engine. */
  options: Omit<ObjectiveOptions, 'elementwise' | 'remote'>;
}

/** Everything an evaluator can be asked to rebuild. */
export type Recipe = CalibrationRecipe;

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

/** The recipe of a calibration objective `createObjective` would build from these options. */
export function calibrationRecipe(
  spec: ModelSpec,
  target: ScorerTarget,
  opts: ObjectiveOptions,
  model: string,
): CalibrationRecipe {
  const { elementwise: _e, remote: _r, ...options } = opts;
  return {
    kind: 'calibration',
    model,
    config: JSON.stringify(spec.config),
    target: target.weightRoles ? { weightRoles: [...target.weightRoles] } : {},
    options,
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
  return {
    scorer: await metricEntry(recipe.options.metric).objective(spec, recipe.target, recipe.options),
    spec,
  };
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

/** The backend the flags choose, or undefined for the search's own thread. */
export function backendFor(choice: BackendChoice): EvaluationBackend | undefined {
  if (choice.workers !== undefined && choice.queue !== undefined)
    throw new GenepruneError(
      'flag',
      'give either --workers (threads here) or --queue (workers anywhere)',
      '--queue',
    );
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
