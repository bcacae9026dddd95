/**
 * A run directory's workers.json: what the evaluation backend of a `--workers N` or `--queue URL` search has done
 * (search/backend.ts, `EvaluationBackend.stats`), for the dashboard's workers panel. The search writes it while it
 * scores — atomically, at most once a second and only when something changed — and once more at the end; a
 * one-process search writes none (nothing to show). The counts are this process's: a resumed run's file starts
 * again from zero.
 *
 *   { "version": 1, "label": "2 worker threads", "started": ISO, "updated": ISO, "seconds": wall since started,
 *     "waiting": n, "active": n, "done": n, "failed": n,
 *     "workers": [{ "id": "thread 1", "evaluations": n, "busyMs": ms }, ...] }
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileError } from '../errors.js';
import type { BackendStats, EvaluationBackend, WorkerStats } from '../search/backend.js';
import { describeFsError, writeJsonAtomic } from '../util/fs.js';
import { RUN_FILES } from './files.js';

export const WORKERS_FILE_VERSION = 1;

export interface WorkersFile extends BackendStats {
  version: number;
  /** When the search started watching the backend (ISO 8601). */
  started: string;
  /** When these numbers were read (ISO 8601). */
  updated: string;
  /** Wall seconds from `started` to `updated`: a worker's evaluations/s is evaluations / seconds. */
  seconds: number;
}

export interface BackendWatch {
  /** Stops the timer and writes the file a last time (its failure is this promise's error); once. */
  stop(): Promise<void>;
}

/**
 * Writes `dir`/workers.json from `backend.stats()` now, then every `intervalMs` (default 1 s) while the numbers
 * change, until `stop()` writes it a last time. A backend without stats writes nothing. The timer never keeps
 * the process alive, and writes never overlap (one at a time, in order).
 */
export function watchBackend(
  dir: string,
  backend: EvaluationBackend | undefined,
  intervalMs = 1000,
): BackendWatch {
  const stats = backend?.stats?.bind(backend);
  if (!stats) return { stop: async () => {} };
  const path = join(dir, RUN_FILES.workers);
  const t0 = performance.now();
  const started = new Date();
  let last = '';
  let chain: Promise<void> = Promise.resolve();
  let error: unknown;
  const write = (force: boolean) => {
    chain = chain.then(async () => {
      const s = await stats();
      const key = JSON.stringify(s);
      if (!force && key === last) return;
      last = key;
      const file: WorkersFile = {
        version: WORKERS_FILE_VERSION,
        started: started.toISOString(),
        updated: new Date().toISOString(),
        seconds: (performance.now() - t0) / 1000,
        ...s,
      };
      await writeJsonAtomic(path, file);
    });
    // A failed write in between must not stop the search; the last one reports.
    chain = chain.catch((e) => {
      error = e;
    });
  };
  write(true);
  const timer = setInterval(() => write(false), intervalMs);
  timer.unref();
  let stopped: Promise<void> | undefined;
  const stop = async () => {
    clearInterval(timer);
    await chain;
    error = undefined;
    write(true);
    await chain;
    if (error) throw error;
  };
  return {
    stop() {
      stopped ??= stop();
      return stopped;
    },
  };
}

const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v) && v >= 0;

/**
 * A run's workers.json, checked (a file another version or a hand wrote wrongly is a one-line error naming
 * it); undefined when the run has none.
 */
export async function readWorkersFile(dir: string): Promise<WorkersFile | undefined> {
  const path = join(dir, RUN_FILES.workers);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw fileError(path, `cannot read: ${describeFsError(e)}`, e);
  }
  let v: Record<string, unknown>;
  try {
    v = JSON.parse(text);
  } catch {
    throw fileError(path, 'is not JSON');
  }
  if (v === null || typeof v !== 'object') throw fileError(path, 'is not a JSON object');
  if (v.version !== WORKERS_FILE_VERSION)
    throw fileError(path, `version ${String(v.version)} is not ${WORKERS_FILE_VERSION}`);
  for (const k of ['waiting', 'active', 'done', 'failed', 'seconds'] as const)
    if (!isCount(v[k])) throw fileError(path, `"${k}" is not a count`);
  for (const k of ['label', 'started', 'updated'] as const)
    if (typeof v[k] !== 'string') throw fileError(path, `"${k}" is not a string`);
  if (!Array.isArray(v.workers)) throw fileError(path, '"workers" is not a list');
  v.workers.forEach((w: Partial<WorkerStats>, i: number) => {
    if (!w || typeof w.id !== 'string' || !isCount(w.evaluations) || !isCount(w.busyMs))
      throw fileError(path, `workers[${i}] is not { id, evaluations, busyMs }`);
  });
  return v as unknown as WorkersFile;
}
