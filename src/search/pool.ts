/**
 * `--workers N`: an objective's evaluations in N worker processes the search starts, each holding its own ONNX
 * session. ONNX Runtime's `session.run` holds the calling thread for the whole forward pass, so evaluations only
 * run side by side on threads of their own; processes rather than worker threads, see `EvaluatorHandle`. Every worker builds the same calibration scorer the main thread would
 * have built (poolworker.ts): the same model file, the same prepared calibration data (sent, not re-read, so no
 * worker can score other data), the same settings; the main thread keeps the cache, the counters and the
 * non-finite rule (objective.ts), and `evaluateMany` hands the batch's distinct candidates out through
 * `poolRunner`, results committed in index order. So what a search logs and returns does not depend on the
 * number of workers; only the wall time does.
 *
 * A worker that fails (an evaluation throws, or the process dies) fails the batch with a one-line error, never a
 * score; workers end when the backend is released, and hold the search's process open only while they work.
 */

import { type ChildProcess, fork, type Serializable } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { availableParallelism, constants } from 'node:os';
import { fileURLToPath } from 'node:url';
import type { CandidateMasks } from '../engine/runner.js';
import { GenepruneError } from '../errors.js';
import { QUALITY_METRICS } from '../metrics/registry.js';
import type { CalibrationScorer, RawEvaluation, ScorerRecord } from '../metrics/scorers.js';
import {
  type BackendStats,
  type EvaluationBackend,
  type Recipe,
  recipeMetric,
  recipeThreads,
  type WorkerStats,
  withThreads,
} from './backend.js';
import type { ElementwiseRunner, Fidelity } from './objective.js';

/**
 * What a worker is told (structured-cloned), one message at a time: build the scorer of a recipe (replacing the
 * one it holds; worker 0 sends the scorer's record back, the objective's identity), drop the scorer it holds
 * (its sessions freed while the thread waits for the next recipe), or score masks.
 */
export type ToPoolWorker =
  | { kind: 'load'; recipe: Recipe; sendRecord: boolean }
  | { kind: 'unload' }
  /** Free the sessions and let the thread end by itself (see `endThreads`). */
  | { kind: 'end' }
  | { kind: 'score'; id: number; masks: CandidateMasks; fidelity: Fidelity };

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

/**
 * The metrics a pool scores: every calibration metric of the registry's list (their prepared data travels in
 * the recipe; a generation metric's tokenizer is loaded by each worker). A metric registered later is refused in
 * one line before any worker starts, until it is checked to travel.
 */
export const POOL_METRICS: readonly string[] = [...QUALITY_METRICS];

/** Refuses, in one line, a metric whose scorer the workers cannot build (called before any data is read). */
export function refuseUnpooledMetric(metric: string, flag = '--workers'): void {
  if (POOL_METRICS.includes(metric)) return;
  throw new GenepruneError(
    'flag',
    `not with --metric ${metric}: worker threads score ${POOL_METRICS.join(', ')} only`,
    flag,
  );
}

/**
 * The note for `--threads T --workers N` asking for more compute threads than the machine has cores (each worker
 * runs its own T intra-op threads at once): the run goes on — the user may know better, e.g. other work will
 * stop — but slower than with T = cores / N. Undefined when they fit or --threads is not given.
 */
export function oversubscriptionNote(
  workers: number | undefined,
  threads: number | undefined,
  cores = availableParallelism(),
): string | undefined {
  if (workers === undefined || threads === undefined || workers * threads <= cores) return undefined;
  return `--workers ${workers} × --threads ${threads} = ${workers * threads} compute threads on ${cores} cores: they will wait for each other (--threads ${threadsPerWorker(workers, cores)} fits)`;
}

/** Intra-op threads per worker when --threads is not given: the cores shared out, at least one each. */
export function threadsPerWorker(workers: number, cores = availableParallelism()): number {
  return Math.max(1, Math.floor(cores / workers));
}

/**
 * What the pool needs of an evaluation worker: the subset of `node:worker_threads`' Worker that a child process
 * is adapted to (`EvaluatorProcess`). Workers are child processes, not threads: ending a thread whose ONNX Runtime
 * session objects are alive could abort the whole process from the native binding ("terminate called after
 * throwing an instance of 'Napi::Error'", seen about once in a few hundred pool ends), while a child process that
 * fails at its end takes only itself down — after it has answered everything.
 */
export interface EvaluatorHandle {
  postMessage(m: unknown): void;
  on(event: 'message', f: (m: FromPoolWorker) => void): unknown;
  on(event: 'error', f: (e: Error) => void): unknown;
  on(event: 'exit', f: (code: number) => void): unknown;
  once(event: 'exit', f: (code: number) => void): unknown;
  ref(): void;
  unref(): void;
  terminate(): Promise<unknown>;
}

/** A child process running poolworker.{js,ts}, messages in the V8 serialisation (typed arrays, Maps, bigints). */
export class EvaluatorProcess extends EventEmitter implements EvaluatorHandle {
  readonly child: ChildProcess;
  constructor(entry: string, execArgv: string[]) {
    super();
    this.child = fork(entry, [], {
      execArgv,
      serialization: 'advanced',
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    this.child.on('message', (m) => this.emit('message', m));
    this.child.on('error', (e) => this.emit('error', e));
    // A signal's end is reported as its number above 128, as a shell would.
    this.child.on('exit', (code, signal) =>
      this.emit('exit', code ?? (signal ? 128 + (constants.signals[signal] ?? 0) : 1)),
    );
  }
  postMessage(m: unknown): void {
    if (this.child.connected) this.child.send(m as Serializable);
  }
  ref(): void {
    this.child.ref();
    this.child.channel?.ref();
  }
  unref(): void {
    this.child.unref();
    this.child.channel?.unref();
  }
  async terminate(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const gone = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    this.child.kill('SIGKILL');
    await gone;
  }
}

/**
 * A worker process running poolworker.js beside this module when built; from source (tsx: tests, bench), the
 * child is started with tsx's loader, found by its resolved URL (a run may start outside the repository).
 */
function newWorker(): EvaluatorHandle {
  if (!import.meta.url.endsWith('.ts'))
    return new EvaluatorProcess(fileURLToPath(new URL('./poolworker.js', import.meta.url)), []);
  return new EvaluatorProcess(fileURLToPath(new URL('./poolworker.ts', import.meta.url)), [
    '--import',
    import.meta.resolve('tsx'),
  ]);
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
 * What a pool's scorers have done, kept by the backend for `stats()` across every recipe it opens (the i-th
 * thread of each scorer counts as `thread i+1`, as a block search's threads are lent again in the same order)
 * and after they are released.
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
 * A live worker thread of a pool, lent to one scorer at a time (`owner`): the pool backend keeps its threads
 * between recipes, so a block search's next block costs a `load` message, not N new threads (≈ 0.45 s for two
 * on stories260K, measured: docs/distributed.md).
 */
export interface PoolThread {
  readonly worker: EvaluatorHandle;
  /** Settles when the thread has exited, however. */
  readonly exited: Promise<void>;
  /** Set once the thread died or exited unasked: it is not lent again. */
  dead?: GenepruneError;
  owner?: {
    message(m: FromPoolWorker): void;
    died(e: GenepruneError): void;
  };
}

function startThread(): PoolThread {
  return poolThread(newWorker());
}

/**
 * A worker thread as a pool holds it: its death or an exit nobody asked for (an uncaught error, process.exit in
 * the thread, an out-of-memory end) fails whatever its scorer has pending, in one line, and it is not lent again.
 */
export function poolThread(worker: EvaluatorHandle): PoolThread {
  const thread: PoolThread = {
    worker,
    exited: new Promise<void>((resolve) => worker.once('exit', () => resolve())),
  };
  let ending = false;
  const died = (e: GenepruneError) => {
    thread.dead ??= e;
    thread.owner?.died(thread.dead);
  };
  thread.worker.on('message', (m: FromPoolWorker) => thread.owner?.message(m));
  thread.worker.on('error', (err) => {
    ending = true;
    died(
      new GenepruneError(
        'internal',
        `an evaluation worker died: ${err.message.replace(/\s*\n\s*/g, ' ')}`,
        '--workers',
      ),
    );
  });
  thread.worker.on('exit', (code) => {
    if (ending) return;
    died(
      new GenepruneError(
        'internal',
        `an evaluation worker exited (code ${code}) before the search released it`,
        '--workers',
      ),
    );
  });
  return thread;
}

/** How long a thread asked to end may take before it is terminated (it finishes the evaluation it is in first). */
const END_GRACE_MS = 30_000;

/**
 * Ends threads on purpose (not a failure: their exit is expected). Each is asked to free its sessions and end by
 * itself; `terminate()` only for one that has not within END_GRACE_MS. Terminating a thread whose ONNX Runtime
 * sessions are alive can abort the whole process from the native binding (seen as "terminate called after
 * throwing an instance of 'Napi::Error'" in about one run in a few dozen), so it is the fallback, not the way.
 */
async function endThreads(threads: readonly PoolThread[]): Promise<void> {
  for (const t of threads) {
    t.dead ??= new GenepruneError('internal', 'the evaluation workers were released', '--workers');
    t.owner = undefined;
  }
  await Promise.all(
    threads.map(async (t) => {
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<'late'>((resolve) => {
        timer = setTimeout(() => resolve('late'), END_GRACE_MS);
      });
      try {
        t.worker.postMessage({ kind: 'end' } satisfies ToPoolWorker);
        t.worker.ref();
        if ((await Promise.race([t.exited, late])) === 'late') await t.worker.terminate();
      } catch {
        // Already gone: posting to an exited thread throws, and it has nothing left to free.
      } finally {
        clearTimeout(timer);
      }
    }),
  );
}

/**
 * `--workers N`: a backend whose recipes are scored on N worker threads of this process, each with its own
 * session and `--threads` (default floor(cores / N)). Threads outlive the scorers: a released scorer's threads
 * drop its sessions and wait, unref'd, for the next `open` (a block search opens one recipe per block), and the
 * backend's release ends them.
 */
export function createPoolBackend(workers: number): EvaluationBackend {
  if (!Number.isInteger(workers) || workers < 1)
    throw new GenepruneError('flag', `must be a whole number ≥ 1, got ${workers}`, '--workers');
  const open = new Set<CalibrationScorer>();
  const idle: PoolThread[] = [];
  let released = false;
  const tally = emptyTally();
  const label = `${workers} worker process${workers === 1 ? '' : 'es'}`;
  return {
    flag: '--workers',
    label,
    elementwise: poolRunner,
    async stats(): Promise<BackendStats> {
      const { waiting, active, done, failed } = tally;
      return { label, waiting, active, done, failed, workers: tally.workers.map((w) => ({ ...w })) };
    },
    async open(recipe) {
      if (released) throw new GenepruneError('internal', 'the evaluation workers were released', '--workers');
      const lent = idle.splice(0, workers).filter((t) => !t.dead);
      const scorer = await createPoolScorer(recipe, workers, {
        threads: lent,
        tally,
        // Threads still alive go back to the pool; the backend's release ends them.
        giveBack: async (threads) => {
          const live = threads.filter((t) => !t.dead);
          if (released) await endThreads(live);
          else idle.push(...live);
        },
      });
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
      released = true;
      await Promise.all([...open].map((s) => s.runner.release()));
      open.clear();
      await endThreads(idle.splice(0));
    },
  };
}

/** Where a pooled scorer's threads come from and go to (default: started for it, ended with it). */
export interface PoolLease {
  /** Live threads to load the recipe on; more are started up to the count. */
  threads?: readonly PoolThread[];
  /** Takes the threads back at release (instead of ending them). */
  giveBack?(threads: readonly PoolThread[]): Promise<void>;
  /** Counts the scorer's evaluations (waiting, active, done, failed; per thread) for the backend's stats. */
  tally?: PoolTally;
}

/**
 * A calibration scorer whose `score` runs on `count` worker threads, each holding the recipe's scorer: ready
 * when every worker has built it (a worker that cannot is the returned promise's one-line error; every thread
 * is then ended).
 */
export async function createPoolScorer(
  recipe: Recipe,
  count: number,
  lease: PoolLease = {},
): Promise<CalibrationScorer> {
  if (!Number.isInteger(count) || count < 1)
    throw new GenepruneError('flag', `must be a whole number ≥ 1, got ${count}`, '--workers');
  refuseUnpooledMetric(recipeMetric(recipe));
  const threads = recipeThreads(recipe) ?? threadsPerWorker(count);
  const loaded = withThreads(recipe, threads);
  const pool: PoolThread[] = [...(lease.threads ?? []).slice(0, count)];
  while (pool.length < count) pool.push(startThread());
  const busy: Array<Task | undefined> = pool.map(() => undefined);
  const queue: Task[] = [];
  let failure: GenepruneError | undefined;
  let closed = false;
  let nextId = 0;
  let record: ScorerRecord | undefined;
  const tally = lease.tally ?? emptyTally();
  for (let i = 0; i < count; i++) tally.workers[i] ??= { id: `worker ${i + 1}`, evaluations: 0, busyMs: 0 };

  /** Thread i's task ended (scored or failed): the tally counts it, the thread is free again. */
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
    for (let i = 0; i < pool.length && queue.length > 0; i++) {
      if (busy[i]) continue;
      const t = queue.shift()!;
      tally.waiting--;
      tally.active++;
      t.posted = performance.now();
      busy[i] = t;
      // Held open only while working, so a forgotten pool cannot keep the process alive.
      pool[i].worker.ref();
      pool[i].worker.postMessage({
        kind: 'score',
        id: t.id,
        masks: t.masks,
        fidelity: t.fidelity,
      } satisfies ToPoolWorker);
    }
  };
  const close = async (end: boolean) => {
    if (closed) return;
    closed = true;
    fail(new GenepruneError('internal', 'the evaluation workers were released', '--workers'));
    for (const t of pool) t.owner = undefined;
    if (end || !lease.giveBack) {
      await endThreads(pool);
      return;
    }
    // The sessions go; the threads wait for the next recipe.
    for (const t of pool) {
      if (t.dead) continue;
      t.worker.postMessage({ kind: 'unload' } satisfies ToPoolWorker);
      t.worker.unref();
    }
    await lease.giveBack(pool);
  };

  const ready = pool.map(
    (thread, i) =>
      new Promise<void>((resolve, reject) => {
        let started = false;
        const named = (e: GenepruneError) =>
          new GenepruneError(
            e.kind,
            e.message.replace('an evaluation worker', `evaluation worker ${i + 1}`),
            e.where,
          );
        thread.owner = {
          message(m) {
            if (m.kind === 'ready') {
              started = true;
              if (m.record) record = m.record;
              thread.worker.unref();
              resolve();
            } else if (m.kind === 'scored') {
              if (busy[i]?.id !== m.id) return;
              const t = settle(i, true)!;
              thread.worker.unref();
              t.resolve(m.result);
              dispatch();
            } else {
              const e = errorOf(m.error, i);
              if (!started) reject(e);
              else {
                const t = settle(i, false);
                // One evaluation failed: the batch fails with its error; the worker stays usable.
                thread.worker.unref();
                t?.reject(e);
                dispatch();
              }
            }
          },
          died(e) {
            if (!started) reject(named(e));
            fail(named(e));
          },
        };
        if (thread.dead) {
          thread.owner.died(thread.dead);
          return;
        }
        // Held open while it builds the scorer: the caller is waiting for it.
        thread.worker.ref();
        thread.worker.postMessage({
          kind: 'load',
          recipe: loaded,
          sendRecord: i === 0,
        } satisfies ToPoolWorker);
      }),
  );
  try {
    await Promise.all(ready);
  } catch (e) {
    await close(true);
    throw e;
  }
  return {
    runner: { release: () => close(false) },
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
