/**
 * `--workers N`: an objective's evaluations on N worker threads of this process, each holding its own ONNX
 * session. ONNX Runtime's `session.run` holds the calling thread for the whole forward pass, so evaluations only
 * run side by side on threads of their own. Every worker builds the same calibration scorer the main thread would
 * have built (poolworker.ts): the same model file, the same prepared calibration data (sent, not re-read, so no
 * worker can score other data), the same settings; the main thread keeps the cache, the counters and the
 * non-finite rule (objective.ts), and `evaluateMany` hands the batch's distinct candidates out through
 * `poolRunner`, results committed in index order. So what a search logs and returns does not depend on the
 * number of workers; only the wall time does.
 *
 * A worker that fails (an evaluation throws, or the thread dies) fails the batch with a one-line error, never a
 * score; workers are terminated by the objective's release, and hold the process open only while they work.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { CandidateMasks } from '../engine/runner.js';
import { GenepruneError } from '../errors.js';
import type { CalibrationScorer, RawEvaluation, ScorerRecord } from '../metrics/scorers.js';
import type { BackendStats, EvaluationBackend, Recipe, WorkerStats } from './backend.js';
import type { ElementwiseRunner, Fidelity } from './objective.js';

/** What a worker is started with (structured-cloned): the recipe its scorer is built from. */
export interface PoolWorkerData {
  recipe: Recipe;
  /** Worker 0 sends the scorer's record back (the objective's identity); the others need not. */
  sendRecord: boolean;
}

export type ToPoolWorker = { kind: 'score'; id: number; masks: CandidateMasks; fidelity: Fidelity };

export type FromPoolWorker =
  | { kind: 'ready'; record?: ScorerRecord }
  | { kind: 'scored'; id: number; result: RawEvaluation }
  | { kind: 'failed'; id?: number; error: SentError };

/** An error as it crosses the thread boundary: a GenepruneError keeps its kind and what it names. */
export interface SentError {
  message: string;
  kind?: string;
  where?: string;
}

/** The metrics a pool scores today; the others are refused in one line before any worker starts. */
export const POOL_METRICS: readonly string[] = ['ppl', 'kl'];

/** Refuses, in one line, a metric whose scorer the workers cannot build yet (called before any data is read). */
export function refuseUnpooledMetric(metric: string, flag = '--workers'): void {
  if (POOL_METRICS.includes(metric)) return;
  throw new GenepruneError(
    'flag',
    `not with --metric ${metric} yet: worker threads score ${POOL_METRICS.join(', ')} only`,
    flag,
  );
}

/** Intra-op threads per worker when --threads is not given: the cores shared out, at least one each. */
export function threadsPerWorker(workers: number, cores = availableParallelism()): number {
  return Math.max(1, Math.floor(cores / workers));
}

/**
 * A worker running poolworker.js beside this module when built; from source (tsx: tests, bench), worker
 * threads do not inherit tsx's loader, so a bootstrap registers it first (as the dashboard's thread does).
 */
function newWorker(data: PoolWorkerData): Worker {
  if (!import.meta.url.endsWith('.ts'))
    return new Worker(new URL('./poolworker.js', import.meta.url), { workerData: data });
  const entry = new URL('./poolworker.ts', import.meta.url).href;
  const boot = `import('tsx/esm/api').then((t) => { t.register(); return import(${JSON.stringify(entry)}); });`;
  return new Worker(boot, { eval: true, workerData: data });
}

function errorOf(e: SentError, workerIndex: number): GenepruneError {
  const text = e.message.replace(/\s*\n\s*/g, ' ');
  if (e.kind) return new GenepruneError(e.kind as GenepruneError['kind'], text, e.where);
  return new GenepruneError('internal', `evaluation worker ${workerIndex + 1} failed: ${text}`, '--workers');
}

interface Task {
  id: number;
  masks: CandidateMasks;
  fidelity: Fidelity;
  resolve(r: RawEvaluation): void;
  reject(e: unknown): void;
  /** When it was posted to a worker (performance.now()), for the worker's busy time. */
  posted?: number;
}

/**
 * What a pool's scorers have done, kept by the backend for `stats()` across every recipe it opens (worker i of
 * each recipe counts as `thread i+1`) and after they are released.
 */
export interface PoolTally {
  waiting: number;
  active: number;
  done: number;
  failed: number;
  workers: WorkerStats[];
}

export function emptyTally(): PoolTally {
  return { waiting: 0, active: 0, done: 0, failed: 0, workers: [] };
}

/**
 * `--workers N`: a backend whose recipes are scored on N worker threads of this process, each with its own
 * session and `--threads` (default floor(cores / N)). Each `open` starts its own N workers for that recipe.
 */
export function createPoolBackend(workers: number): EvaluationBackend {
  if (!Number.isInteger(workers) || workers < 1)
    throw new GenepruneError('flag', `must be a whole number ≥ 1, got ${workers}`, '--workers');
  const open = new Set<CalibrationScorer>();
  const tally = emptyTally();
  const label = `${workers} worker thread${workers === 1 ? '' : 's'}`;
  return {
    flag: '--workers',
    label,
    elementwise: poolRunner,
    async stats(): Promise<BackendStats> {
      const { waiting, active, done, failed } = tally;
      return { label, waiting, active, done, failed, workers: tally.workers.map((w) => ({ ...w })) };
    },
    async open(recipe) {
      const scorer = await createPoolScorer(recipe, workers, tally);
      open.add(scorer);
      const release = scorer.runner.release;
      return {
        ...scorer,
        runner: {
          release: async () => {
            open.delete(scorer);
            await release();
          },
        },
      };
    },
    async release() {
      await Promise.all([...open].map((s) => s.runner.release()));
      open.clear();
    },
  };
}

/**
 * A calibration scorer whose `score` runs on `count` worker threads, each holding the recipe's scorer: started
 * here, ready when every worker has built it (a worker that cannot is the returned promise's one-line error, the
 * others terminated). `tally` counts its evaluations (waiting, active, done, failed; per worker).
 */
export async function createPoolScorer(
  recipe: Recipe,
  count: number,
  tally: PoolTally = emptyTally(),
): Promise<CalibrationScorer> {
  if (!Number.isInteger(count) || count < 1)
    throw new GenepruneError('flag', `must be a whole number ≥ 1, got ${count}`, '--workers');
  refuseUnpooledMetric(recipe.options.metric);
  const threads = recipe.options.threads ?? threadsPerWorker(count);
  const data = (i: number): PoolWorkerData => ({
    recipe: { ...recipe, options: { ...recipe.options, threads } },
    sendRecord: i === 0,
  });
  const workers: Worker[] = [];
  const busy: Array<Task | undefined> = [];
  const queue: Task[] = [];
  let failure: GenepruneError | undefined;
  let closed = false;
  let nextId = 0;
  let record: ScorerRecord | undefined;

  for (let i = 0; i < count; i++) tally.workers[i] ??= { id: `thread ${i + 1}`, evaluations: 0, busyMs: 0 };
  /** Worker i's task ended (scored or failed): the tally counts it, the worker is free again. */
  const settle = (i: number, scored: boolean): Task | undefined => {
    const t = busy[i];
    busy[i] = undefined;
    if (!t) return undefined;
    tally.active--;
    if (scored) {
      tally.done++;
      tally.workers[i].evaluations++;
    } else tally.failed++;
    tally.workers[i].busyMs += performance.now() - (t.posted ?? performance.now());
    return t;
  };
  const fail = (e: GenepruneError) => {
    failure ??= e;
    for (let i = 0; i < busy.length; i++) settle(i, false)?.reject(failure);
    const dropped = queue.splice(0);
    tally.waiting -= dropped.length;
    tally.failed += dropped.length;
    for (const t of dropped) t.reject(failure);
  };
  const dispatch = () => {
    for (let i = 0; i < workers.length && queue.length > 0; i++) {
      if (busy[i]) continue;
      const t = queue.shift()!;
      tally.waiting--;
      tally.active++;
      t.posted = performance.now();
      busy[i] = t;
      // Held open only while working, so a forgotten pool cannot keep the process alive.
      workers[i].ref();
      workers[i].postMessage({
        kind: 'score',
        id: t.id,
        masks: t.masks,
        fidelity: t.fidelity,
      } satisfies ToPoolWorker);
    }
  };
  const close = async () => {
    if (closed) return;
    closed = true;
    fail(new GenepruneError('internal', 'the evaluation workers were released', '--workers'));
    await Promise.all(workers.map((w) => w.terminate()));
  };

  const ready = Array.from({ length: count }, (_, i) => {
    const w = newWorker(data(i));
    workers.push(w);
    busy.push(undefined);
    return new Promise<void>((resolve, reject) => {
      let started = false;
      w.on('message', (m: FromPoolWorker) => {
        if (m.kind === 'ready') {
          started = true;
          if (m.record) record = m.record;
          w.unref();
          resolve();
        } else if (m.kind === 'scored') {
          if (busy[i]?.id !== m.id) return;
          const t = settle(i, true)!;
          w.unref();
          t.resolve(m.result);
          dispatch();
        } else {
          const e = errorOf(m.error, i);
          if (!started) reject(e);
          else {
            const t = settle(i, false);
            // One evaluation failed: the batch fails with its error; the worker stays usable.
            w.unref();
            t?.reject(e);
            dispatch();
          }
        }
      });
      w.on('error', (err) => {
        const e = new GenepruneError(
          'internal',
          `evaluation worker ${i + 1} died: ${err.message.replace(/\s*\n\s*/g, ' ')}`,
          '--workers',
        );
        if (!started) reject(e);
        fail(e);
      });
      w.on('exit', (code) => {
        if (closed) return;
        const e = new GenepruneError(
          'internal',
          `evaluation worker ${i + 1} exited (code ${code}) before the search released it`,
          '--workers',
        );
        if (!started) reject(e);
        fail(e);
      });
    });
  });
  try {
    await Promise.all(ready);
  } catch (e) {
    await close();
    throw e;
  }
  return {
    runner: { release: close },
    record,
    score(masks, fidelity) {
      if (failure) return Promise.reject(failure);
      return new Promise<RawEvaluation>((resolve, reject) => {
        queue.push({ id: ++nextId, masks, fidelity, resolve, reject });
        tally.waiting++;
        dispatch();
      });
    },
  };
}

/**
 * The batch runner of a pooled objective: every task started at once (the pool queues them for its workers),
 * each value given to `onSettled` as it finishes. It waits for all of them, then fails with the lowest-index
 * failure, so which error is reported does not depend on timing either.
 */
export const poolRunner: ElementwiseRunner = async <T>(
  tasks: ReadonlyArray<() => Promise<T>>,
  onSettled?: (index: number, value: T) => void,
): Promise<T[]> => {
  const settled = await Promise.allSettled(
    tasks.map(async (task, i) => {
      const v = await task();
      onSettled?.(i, v);
      return v;
    }),
  );
  const failed = settled.find((s) => s.status === 'rejected');
  if (failed) throw (failed as PromiseRejectedResult).reason;
  return settled.map((s) => (s as PromiseFulfilledResult<T>).value);
};
