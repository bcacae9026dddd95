/**
 * `--queue redis://…`: a search's evaluations as BullMQ jobs on Redis, scored by `geneprune worker` processes on
 * any machine (queue/worker.ts). `open(recipe)` stores the recipe once under its identity (queue/jobs.ts) and
 * returns a scorer whose `score(masks, fidelity)` posts a job `{ identity, fidelity, masks }` with a
 * deterministic id and resolves with the job's result. The search keeps its cache, counters and index-order
 * commits (search/objective.ts), so its logs, masks and results are those of a one-process run.
 *
 * Waiting does not rely on BullMQ's event stream: the jobs' states are polled (10 ms, growing to 1 s while
 * nothing finishes), the events of finished jobs only wake the poll early, so a Redis restart (which may lose
 * events) costs nothing but time. While the connection is down the search prints
 * one line ("waiting for Redis at HOST:PORT: <reason>") per outage and keeps waiting; a job that vanished (a
 * Redis without its append-only file) is posted again. A failed job — a worker's refusal, or its attempts
 * exhausted — fails the search with one line naming the job and the worker's reason. A job failed by an earlier
 * search process (before --resume) is retried once, so a resumed search is not stopped by an old refusal.
 *
 * Completed jobs and recipes are kept `keepSeconds` (default 7 days), so `--resume` within that time finds
 * every score its killed predecessor's jobs computed; posting a job whose id exists is a no-op.
 *
 * `stats()` (the run's workers.json) counts this backend's own jobs, never BullMQ's queue-wide numbers (other
 * searches may share the queue), from what the poll already reads: posted and not taken is waiting, taken and
 * not finished active, completed done, failed (or given up when another job failed, or at release) failed. A
 * completed job is credited to the worker its result names (`host:pid`) with the result's own scoring time —
 * unless it had finished before this process posted it (a resumed search answered from Redis): that is done,
 * but no worker's evaluation here. Held in memory, so it answers after release without Redis.
 */
import { hostname } from 'node:os';
// Loaded on first use: every other command starts without them.
import type { Job, Queue, QueueEvents } from 'bullmq';
import type { Redis } from 'ioredis';
import { GenepruneError } from '../errors.js';
import type { CalibrationScorer, RawEvaluation } from '../metrics/scorers.js';
import { type ModelIdentity, modelIdentity } from '../model/identity.js';
import { loadModelSpec } from '../model/load.js';
import type { ModelSpec } from '../model/spec.js';
import {
  type BackendStats,
  type EvaluationBackend,
  type Recipe,
  recipeMetric,
  type WorkerStats,
} from '../search/backend.js';
import type { ElementwiseRunner, Fidelity } from '../search/objective.js';
import { poolRunner } from '../search/pool.js';
import {
  encodeMasks,
  identityOf,
  type JobData,
  type JobResult,
  jobId,
  QUEUE_NAME,
  QUEUE_PREFIX,
  rawEvaluation,
  recipeKey,
  recipeManifest,
  travellingRecipe,
  unqueuedMetric,
} from './jobs.js';
import { toJson } from './recipejson.js';
import { hostPort, parseQueueUrl, type QueueUrl, redisOptions, withoutPassword } from './url.js';

export interface QueueBackendOptions {
  /** The run's id (stable across --resume): part of every job id. */
  runId: string;
  /** Progress lines: the waiting line while Redis is unreachable. */
  onStatus?: (line: string) => void;
  /** How long completed jobs and recipes are kept, in seconds (default 7 days). */
  keepSeconds?: number;
  /** How long `open` waits for a first connection before it fails (default 30 s). */
  connectTimeoutMs?: number;
  /** Attempts per job when a worker's evaluation throws (refusals are never retried; default 3). */
  attempts?: number;
  /** After this long with jobs waiting and none taken or finished, say so once (default 30 s). */
  idleNoteMs?: number;
}

export const DEFAULT_KEEP_SECONDS = 7 * 24 * 3600;

/**
 * A connection that reports its outages: `onDown` once per outage (after it was ready once) with the reason.
 */
export async function watchedConnection(
  u: QueueUrl,
  onDown: (line: string) => void,
): Promise<{
  conn: Redis;
  ready(ms: number, what: string): Promise<void>;
  lastError(): string;
  /** Disconnects, saying nothing more. */
  close(): void;
}> {
  const { Redis } = await import('ioredis');
  const conn = new Redis(redisOptions(u) as never);
  let wasReady = false;
  let announced = false;
  let last = 'not connected yet';
  let closed = false;
  const down = (reason: string) => {
    last = withoutPassword(reason, u);
    if (wasReady && !announced && !closed) {
      announced = true;
      onDown(`waiting for Redis at ${hostPort(u)}: ${last}`);
    }
  };
  conn.on('error', (e: Error) => down(e.message || String(e)));
  conn.on('close', () => down('connection closed'));
  conn.on('ready', () => {
    wasReady = true;
    announced = false;
  });
  return {
    conn,
    lastError: () => last,
    close() {
      closed = true;
      conn.disconnect();
    },
    ready(ms, what) {
      if (conn.status === 'ready') return Promise.resolve();
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          conn.off('ready', ok);
          reject(
            new GenepruneError(
              'network',
              `cannot reach Redis at ${u.redacted} within ${Math.round(ms / 1000)} s (${what}): ${last}`,
              '--queue',
            ),
          );
        }, ms);
        const ok = () => {
          clearTimeout(timer);
          resolve();
        };
        conn.once('ready', ok);
      });
    },
  };
}

interface Waiter {
  id: string;
  /** When this process sent it (Date.now() just before the add): a job finished earlier is a predecessor's. */
  postedAt: number;
  retried: boolean;
  add: { name: string; data: JobData; opts: Record<string, unknown> };
  resolve(r: RawEvaluation): void;
  reject(e: unknown): void;
}

/**
 * A model file's identity (its fingerprint hashes every tensor), computed once per path for the life of a backend
 * or worker; a failed read is forgotten, so the next job retries it.
 */
export function fileIdentities(): (path: string) => Promise<ModelIdentity> {
  const known = new Map<string, Promise<ModelIdentity>>();
  return (path) => {
    let m = known.get(path);
    if (!m) {
      m = loadModelSpec(path).then(modelIdentity);
      m.catch(() => known.delete(path));
      known.set(path, m);
    }
    return m;
  };
}

/** The queue backend (`--queue URL`): see the module comment. */
export function createQueueBackend(url: string, opts: QueueBackendOptions): EvaluationBackend {
  const u = parseQueueUrl(url);
  const keep = opts.keepSeconds ?? DEFAULT_KEEP_SECONDS;
  const attempts = opts.attempts ?? 3;
  let link: Awaited<ReturnType<typeof watchedConnection>> | undefined;
  let queue: Queue | undefined;
  let failure: GenepruneError | undefined;
  let closed = false;
  const identities = new Set<string>();
  const waiting = new Map<string, Waiter[]>();
  let toPost: Waiter[] = [];
  let postScheduled = false;
  let polling = false;
  let wake: (() => void) | undefined;
  let nudged = false;
  let events: QueueEvents | undefined;
  // stats(): finished jobs, the workers that finished them, and the ids the last poll saw taken.
  let done = 0;
  let failed = 0;
  const workerStats = new Map<string, WorkerStats>();
  let taken = new Set<string>();

  let connecting: Promise<void> | undefined;
  const connect = () => {
    connecting ??= (async () => {
      link = await watchedConnection(u, (line) => opts.onStatus?.(line));
      const { Queue, QueueEvents } = await import('bullmq');
      queue = new Queue(QUEUE_NAME, { connection: link.conn, prefix: QUEUE_PREFIX });
      // BullMQ re-emits connection errors on the queue; the connection's own listener reports them.
      queue.on('error', () => {});
      // Finished jobs' events only wake the poller early (a result is read from the job itself): events lost
      // in an outage cost a poll interval, never a result.
      const ev = new QueueEvents(QUEUE_NAME, { connection: redisOptions(u) as never, prefix: QUEUE_PREFIX });
      events = ev;
      ev.on('error', () => {});
      const finished = ({ jobId }: { jobId: string }) => {
        if (waiting.has(jobId)) nudge();
      };
      ev.on('completed', finished);
      ev.on('failed', finished);
      await link.ready(opts.connectTimeoutMs ?? 30_000, 'the search');
    })();
    // A failed first connection may be tried again by the next open.
    connecting.catch(() => disconnect());
    return connecting;
  };
  /** Closes the connection; the next `open` connects again. */
  const disconnect = async () => {
    const [q, l, ev] = [queue, link, events];
    queue = undefined;
    link = undefined;
    events = undefined;
    connecting = undefined;
    await ev?.close().catch(() => {});
    await q?.close().catch(() => {});
    // BullMQ leaves a connection it was given open: closed here.
    l?.close();
  };
  let openScorers = 0;
  // A block search opens one recipe per block, all naming the model file (its spec in memory may hold earlier
  // blocks' recovered weights, which the workers replay): the file is hashed once.
  const fileIdentity = fileIdentities();

  const failAll = (e: GenepruneError) => {
    failure ??= e;
    // Every job still awaited is given up (the failed job among them), as a pool's dropped tasks are.
    failed += new Set([...waiting.keys(), ...toPost.map((w) => w.id)]).size;
    for (const ws of waiting.values()) for (const w of ws) w.reject(failure);
    waiting.clear();
    for (const w of toPost) w.reject(failure);
    toPost = [];
  };

  const post = async () => {
    postScheduled = false;
    const batch = toPost;
    toPost = [];
    if (batch.length === 0 || closed) return;
    const sent = Date.now();
    try {
      // The recipes live as long as the jobs that name them; refreshed with every batch.
      for (const identity of identities) await link!.conn.expire(recipeKey(identity), keep);
      await queue!.addBulk(batch.map((w) => w.add) as never);
      for (const w of batch) {
        w.postedAt = sent;
        const list = waiting.get(w.id);
        if (list) list.push(w);
        else waiting.set(w.id, [w]);
      }
      void poll();
    } catch (e) {
      for (const w of batch) w.reject(asError(e));
    }
  };

  const asError = (e: unknown) =>
    e instanceof GenepruneError
      ? e
      : new GenepruneError(
          'network',
          withoutPassword(e instanceof Error ? e.message : String(e), u),
          '--queue',
        );

  const settle = async (id: string, job: Job | undefined): Promise<boolean> => {
    const ws = waiting.get(id)!;
    if (!job) {
      // Gone: removed by hand, or Redis restarted without its append-only file. Posted again.
      await queue!.add(ws[0].add.name, ws[0].add.data, ws[0].add.opts as never);
      return false;
    }
    if (!job.finishedOn) return false;
    const state = await job.getState();
    if (state === 'completed') {
      waiting.delete(id);
      const result = job.returnvalue as JobResult;
      const r = rawEvaluation(result, `job ${id}`);
      done++;
      // A job this process created (its timestamp is this clock's) was scored for it; one an earlier process
      // created counts only if it finished after this post (the workers' clocks: as close as the retry rule's).
      const ours = job.timestamp >= ws[0].postedAt || job.finishedOn >= ws[0].postedAt;
      if (ours && typeof result.worker === 'string') {
        const name = withoutPassword(result.worker, u);
        const w = workerStats.get(name) ?? { id: name, evaluations: 0, busyMs: 0 };
        workerStats.set(name, w);
        w.evaluations++;
        w.busyMs += r.ms ?? 0;
      }
      for (const w of ws) w.resolve(r);
      return true;
    }
    if (state === 'failed') {
      if (!ws[0].retried && job.finishedOn < ws[0].postedAt) {
        // Failed before this process posted it (a search killed and resumed): one more chance.
        ws[0].retried = true;
        await job.retry('failed');
        return false;
      }
      const reason = withoutPassword(job.failedReason || 'no reason given', u).replace(/\s*\n\s*/g, ' ');
      const tries = job.attemptsMade > 1 ? ` (after ${job.attemptsMade} attempts)` : '';
      // Every waiter fails with this job's reason, its own included.
      failAll(new GenepruneError('network', `job ${id} ${reason}${tries}`, '--queue'));
      return true;
    }
    return false;
  };

  /** Polls again now (a job finished, or new jobs were posted); remembered when a poll is under way. */
  const nudge = () => {
    if (wake) wake();
    else nudged = true;
  };
  const poll = async () => {
    if (polling) {
      nudge();
      return;
    }
    polling = true;
    let delay = 10;
    let progressAt = Date.now();
    let idleNoted = false;
    try {
      while (waiting.size > 0 && !closed && !failure) {
        const ids = [...waiting.keys()];
        let finished = false;
        nudged = false;
        const jobs = await Promise.all(ids.map((id) => queue!.getJob(id)));
        taken = new Set(ids.filter((_, i) => jobs[i]?.processedOn !== undefined && !jobs[i]?.finishedOn));
        for (let i = 0; i < ids.length && !failure; i++) if (await settle(ids[i], jobs[i])) finished = true;
        if (waiting.size === 0 || failure) break;
        delay = finished ? 10 : Math.min(1000, Math.round(delay * 1.5));
        if (finished || jobs.some((j) => j?.processedOn !== undefined && !j.finishedOn)) {
          progressAt = Date.now();
          idleNoted = false;
        } else if (!idleNoted && Date.now() - progressAt > (opts.idleNoteMs ?? 30_000)) {
          // Nothing taken, nothing finished: most likely no worker is running (or none can reach Redis).
          idleNoted = true;
          const s = Math.round((Date.now() - progressAt) / 1000);
          opts.onStatus?.(
            `${waiting.size} jobs waiting on ${u.redacted} and no worker has taken one for ${s} s: start \`geneprune worker --queue URL\` where the model is`,
          );
        }
        if (nudged) continue;
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, delay);
          wake = () => {
            clearTimeout(t);
            resolve();
          };
        });
        wake = undefined;
      }
    } catch (e) {
      if (!closed) failAll(asError(e));
    } finally {
      polling = false;
    }
  };

  const backend: EvaluationBackend = {
    flag: '--queue',
    label: `queue ${u.redacted}`,
    // Every task is posted at once (gathered into one addBulk); results come back as jobs finish.
    elementwise: poolRunner as ElementwiseRunner,
    async open(recipe: Recipe, spec?: ModelSpec): Promise<CalibrationScorer> {
      const code = unqueuedMetric(recipeMetric(recipe));
      if (code) throw new GenepruneError('flag', code, '--queue');
      await connect();
      const travelling = travellingRecipe(recipe);
      const model = await (spec ? modelIdentity(spec) : fileIdentity(recipe.model));
      const manifest = recipeManifest(travelling, model);
      const identity = identityOf(manifest);
      await link!.conn.set(recipeKey(identity), toJson({ manifest, recipe: travelling }), 'EX', keep);
      identities.add(identity);
      openScorers++;
      let released = false;
      return {
        runner: {
          // The last scorer released lets the connection go, as a pool's last scorer lets its threads go.
          release: async () => {
            if (released) return;
            released = true;
            identities.delete(identity);
            if (--openScorers === 0) await disconnect();
          },
        },
        score(masks, fidelity: Fidelity) {
          if (failure) return Promise.reject(failure);
          if (released || closed)
            return Promise.reject(
              new GenepruneError('internal', 'the queue backend was released', '--queue'),
            );
          const encoded = encodeMasks(masks);
          const id = jobId(opts.runId, identity, fidelity, encoded);
          return new Promise<RawEvaluation>((resolve, reject) => {
            toPost.push({
              id,
              postedAt: 0,
              retried: false,
              add: {
                name: 'evaluate',
                data: { identity, fidelity, masks: encoded },
                opts: {
                  jobId: id,
                  attempts,
                  backoff: { type: 'fixed', delay: 1000 },
                  removeOnComplete: { age: keep },
                  removeOnFail: { age: keep },
                },
              },
              resolve,
              reject,
            });
            if (!postScheduled) {
              postScheduled = true;
              setImmediate(() => void post());
            }
          });
        },
      };
    },
    async stats(): Promise<BackendStats> {
      const pending = new Set([...waiting.keys(), ...toPost.map((w) => w.id)]);
      let active = 0;
      for (const id of taken) if (waiting.has(id)) active++;
      return {
        label: backend.label,
        waiting: pending.size - active,
        active,
        done,
        failed,
        workers: [...workerStats.values()].map((w) => ({ ...w })),
      };
    },
    async release() {
      if (closed) return;
      closed = true;
      failAll(new GenepruneError('internal', 'the queue backend was released', '--queue'));
      nudge();
      await disconnect();
    },
  };
  return backend;
}

/** `host:pid`, how a worker names itself in results and refusals. */
export function workerName(): string {
  return `${hostname()}:${process.pid}`;
}
