/**
 * `geneprune worker --queue URL`: takes evaluation jobs a search posted (queue/backend.ts) and scores them. For
 * each objective identity it meets it reads the stored recipe, checks it (the recipe's data and settings against
 * its manifest, the manifest against the identity, its own model's fingerprint against the search's:
 * `recipeRefusal`) and refuses the job — BullMQ's UnrecoverableError, the reason naming what differs — rather
 * than score with another model or other data. A recipe that passes is built into a scorer on a worker thread
 * (`createPoolScorer(recipe, 1)`): ONNX Runtime's `session.run` holds its thread for the whole forward pass, and
 * on the BullMQ worker's own thread it would stop the lock renewal, so a long evaluation would look stalled and
 * be scored twice. The last few scorers stay loaded (one per identity), older ones are released.
 *
 * One job at a time (concurrency 1: a worker is one session's worth of compute; start more workers for more).
 * A worker killed mid-job loses nothing: its lock expires after `lockMs` and another worker's stalled check puts
 * the job back. `close()` lets the active job finish (or leaves it to be retried) and returns a summary.
 */
import type { Job, Worker } from 'bullmq';
import type { Device } from '../engine/session.js';
import { GenepruneError } from '../errors.js';
import type { CalibrationScorer } from '../metrics/scorers.js';
import type { ModelIdentity } from '../model/identity.js';
import { createPoolScorer } from '../search/pool.js';
import { faultPoint } from '../util/fs.js';
import { fileIdentities, watchedConnection, workerName } from './backend.js';
import {
  decodeMasks,
  type JobData,
  type JobResult,
  jobResult,
  localRecipe,
  QUEUE_NAME,
  QUEUE_PREFIX,
  recipeKey,
  recipeRefusal,
  type StoredRecipe,
} from './jobs.js';
import { fromJson, recipeFromJson, toJson } from './recipejson.js';
import { parseQueueUrl, redisOptions } from './url.js';

export interface QueueWorkerOptions {
  /** `redis://…` or `rediss://…`. */
  url: string;
  /** The worker's own copy of the model (default: the path the search's recipe names). */
  model?: string;
  device?: Device;
  threads?: number;
  /** BullMQ's job lock in ms (default 30 000): a killed worker's job is taken again after about this long. */
  lockMs?: number;
  /** Scorers kept loaded, one per objective identity (default 2). */
  keepScorers?: number;
  /** How long to wait for Redis at start before giving up (default 10 s). */
  connectTimeoutMs?: number;
  /** One event per job (and the start, outages): the CLI prints them. */
  onEvent?: (e: WorkerEvent) => void;
}

export type WorkerEvent =
  | { event: 'start'; worker: string; queue: string; lockMs: number }
  | {
      event: 'scored';
      worker: string;
      job: string;
      fidelity: string;
      quality: number | null;
      tokens: number;
      ms: number;
    }
  | { event: 'refused'; worker: string; job: string; reason: string }
  | { event: 'failed'; worker: string; job: string; reason: string }
  | { event: 'waiting'; worker: string; line: string };

export interface WorkerSummary {
  worker: string;
  scored: number;
  refused: number;
  failed: number;
  seconds: number;
  /** Scored jobs per second of the worker's life. */
  perSecond: number;
}

export interface QueueWorker {
  readonly name: string;
  /** Stops taking jobs, lets the active one finish, releases every scorer and the connections. */
  close(): Promise<WorkerSummary>;
}

export const DEFAULT_LOCK_MS = 30_000;

type Loaded = { scorer: CalibrationScorer } | { refusal: string };

/** Starts a worker; resolves once it is connected (a one-line error when Redis cannot be reached in time). */
export async function runQueueWorker(opts: QueueWorkerOptions): Promise<QueueWorker> {
  const u = parseQueueUrl(opts.url);
  const name = workerName();
  const lockMs = opts.lockMs ?? DEFAULT_LOCK_MS;
  const keep = Math.max(1, opts.keepScorers ?? 2);
  const emit = (e: WorkerEvent) => opts.onEvent?.(e);
  const t0 = performance.now();
  const counts = { scored: 0, refused: 0, failed: 0 };

  const link = await watchedConnection(u, (line) => emit({ event: 'waiting', worker: name, line }));
  try {
    await link.ready(opts.connectTimeoutMs ?? 10_000, 'the worker');
  } catch (e) {
    link.close();
    throw e;
  }
  const bullmq = await import('bullmq');

  // Insertion order is use order: a hit is moved to the end, the oldest released first.
  const loaded = new Map<string, Promise<Loaded>>();
  const modelIdentityOf = fileIdentities();
  const release = async (p: Promise<Loaded>) => {
    const l = await p.catch(() => undefined);
    if (l && 'scorer' in l) await l.scorer.runner.release();
  };

  const load = async (identity: string): Promise<Loaded> => {
    const key = recipeKey(identity);
    const text = await link.conn.get(key);
    if (text === null)
      return {
        refusal: `no recipe stored under ${key} (expired, or another Redis database than the search's)`,
      };
    let stored: StoredRecipe;
    try {
      const raw = fromJson(text, key) as { manifest?: unknown; recipe?: unknown };
      if (!raw || typeof raw.manifest !== 'object' || raw.manifest === null) throw new Error('no manifest');
      stored = {
        manifest: raw.manifest as StoredRecipe['manifest'],
        recipe: recipeFromJson(toJson(raw.recipe), key),
      };
    } catch (e) {
      return {
        refusal: `the recipe under ${key} is not readable: ${e instanceof Error ? e.message : String(e)}`,
      };
    }
    const modelPath = opts.model ?? stored.recipe.model;
    let model: ModelIdentity;
    try {
      model = await modelIdentityOf(modelPath);
    } catch (e) {
      return { refusal: `cannot open the model ${modelPath}: ${oneLine(e)}` };
    }
    const refusal = recipeRefusal(identity, stored, model, modelPath);
    if (refusal) return { refusal };
    const recipe = localRecipe(stored.recipe, modelPath, opts.device, opts.threads);
    try {
      return { scorer: await createPoolScorer(recipe, 1) };
    } catch (e) {
      return { refusal: `cannot build the scorer: ${oneLine(e)}` };
    }
  };

  const scorerFor = async (identity: string): Promise<Loaded> => {
    let p = loaded.get(identity);
    if (p) loaded.delete(identity);
    else p = load(identity);
    loaded.set(identity, p);
    while (loaded.size > keep) {
      const [oldest, q] = loaded.entries().next().value as [string, Promise<Loaded>];
      loaded.delete(oldest);
      await release(q);
    }
    return p;
  };

  const process_ = async (job: Job<JobData, JobResult>): Promise<JobResult> => {
    const id = String(job.id);
    const data = job.data;
    const refuse = (reason: string) => {
      counts.refused++;
      emit({ event: 'refused', worker: name, job: id, reason });
      return new bullmq.UnrecoverableError(`refused by worker ${name}: ${reason}`);
    };
    if (!data || typeof data.identity !== 'string' || (data.fidelity !== 'low' && data.fidelity !== 'full'))
      throw refuse('not a geneprune evaluation job');
    const l = await scorerFor(data.identity);
    if ('refusal' in l) throw refuse(l.refusal);
    let masks: ReturnType<typeof decodeMasks>;
    try {
      masks = decodeMasks(data.masks, `job ${id}`);
    } catch (e) {
      throw refuse(oneLine(e));
    }
    // The kill tests' fault point: this worker dies holding the job's lock.
    faultPoint('worker:mid-job');
    try {
      const r = await l.scorer.score(masks, data.fidelity);
      counts.scored++;
      const result = jobResult(r, name);
      emit({
        event: 'scored',
        worker: name,
        job: id,
        fidelity: data.fidelity,
        quality: result.quality,
        tokens: r.tokens,
        ms: r.ms ?? 0,
      });
      return result;
    } catch (e) {
      counts.failed++;
      const reason = oneLine(e);
      emit({ event: 'failed', worker: name, job: id, reason });
      throw new Error(`failed on worker ${name}: ${reason}`);
    }
  };

  const worker: Worker = new bullmq.Worker(QUEUE_NAME, process_, {
    connection: redisOptions(u) as never,
    prefix: QUEUE_PREFIX,
    concurrency: 1,
    lockDuration: lockMs,
    // Another worker's dead job is found within one lock duration of its lock expiring.
    stalledInterval: lockMs,
    maxStalledCount: 2,
    name,
  });
  // Outages are reported once each by the watched connection above (BullMQ's own 'ready' comes only once, at
  // start); BullMQ's connection errors, which repeat while Redis is down, are not printed again.
  worker.on('error', () => {});
  emit({ event: 'start', worker: name, queue: u.redacted, lockMs });

  let closing: Promise<WorkerSummary> | undefined;
  return {
    name,
    close() {
      closing ??= (async () => {
        await worker.close().catch(() => {});
        for (const p of loaded.values()) await release(p);
        loaded.clear();
        link.close();
        const seconds = (performance.now() - t0) / 1000;
        return { worker: name, ...counts, seconds, perSecond: seconds > 0 ? counts.scored / seconds : 0 };
      })();
      return closing;
    },
  };
}

function oneLine(e: unknown): string {
  const text = e instanceof GenepruneError ? e.oneLine() : e instanceof Error ? e.message : String(e);
  return text.replace(/\s*\n\s*/g, ' ');
}
