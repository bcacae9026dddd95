/**
 * Where a search's evaluations run, measured (issue #21): candidate evaluations per second of a head objective
 * scored in the search's own thread, on `--workers 1` and `--workers 2` worker threads, and on 2 BullMQ workers
 * through a Redis queue; the queue's own cost per job (the round trip of an empty job) against one evaluation;
 * and, on paper from those numbers, the expected time of Survival of the Smallest's LLaMA-2-7B head search on 1,
 * 4 and 16 GPUs.
 *
 *   npm run bench -- --only workers          (the manual's table, docs/tables/workers.md)
 *   npm run bench:workers [-- --models stories,134m --repeats 5 --table-out FILE --json-out FILE]
 *
 * Models: the shared stories260K (llama2.c file) and the 134M LLaMA benchmark shape of the other benches
 * (bench/shapes.ts: random weights — speed does not depend on them — written as a bf16 Hugging Face folder in a
 * temporary directory and deleted at the end). Every mode scores the same batches of distinct random head masks
 * (a quarter of the heads removed) on the same token stream (a fixed pseudo-random sequence in the vocabulary:
 * speed does not depend on the text), after a warm-up batch that gives every worker one evaluation; batches are
 * interleaved across modes (repeat r of every mode before repeat r + 1), so a slow moment of a shared machine
 * does not land on one mode only, and each mode's number is its fastest batch (on a machine shared with other
 * work the least disturbed one is the closest to what the mode can do; the median is in the JSON too). The scores of every mode are
 * compared with the one-process scores (they must be identical: results do not depend on who computes them).
 *
 * Queue: a private redis-server on a free loopback port in a temporary directory (no persistence), stopped at
 * the end. The empty job's round trip is BullMQ's own (a worker that returns at once): one job at a time (add →
 * finished), and per job in a batch posted at once. The "2 BullMQ workers" mode is `--queue URL`'s backend
 * (`createQueueBackend`) with two `geneprune worker --threads 1` processes started from this checkout (its
 * polling wait and the workers' model load at their first job included); without redis-server the table says
 * those rows were not measured.
 *
 * Prints the tables and then the raw numbers as JSON on stdout; `--table-out FILE` writes the tables,
 * `--json-out FILE` the JSON.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { writeHfFolder } from '../src/checkpoint/hf.js';
import type { Genome } from '../src/masks/heads.js';
import { llamaSpecToHf } from '../src/model/llama.js';
import { loadModelSpec } from '../src/model/load.js';
import { randomLlamaSpec } from '../src/model/random.js';
import type { ModelSpec } from '../src/model/spec.js';
import { createQueueBackend } from '../src/queue/backend.js';
import type { EvaluationBackend } from '../src/search/backend.js';
import { randomGenome } from '../src/search/operators.js';
import { createPoolBackend } from '../src/search/pool.js';
import { createHeadObjective, type HeadObjective } from '../src/spaces/heads/objective.js';
import { createRng } from '../src/util/rng.js';
import { BENCH_LLAMA_SHAPE, TINY_LLAMA_SHAPE } from './shapes.js';

const { values } = parseArgs({
  options: {
    models: { type: 'string', default: 'stories,134m' },
    repeats: { type: 'string', default: '5' },
    shared: { type: 'string', default: resolve('..', 'shared') },
    'round-trips': { type: 'string', default: '200' },
    'bulk-jobs': { type: 'string', default: '500' },
    /** Smoke tests (npm run bench -- --quick): the tiny LLaMA shape instead of 134M, few candidates. */
    quick: { type: 'boolean', default: false },
    'table-out': { type: 'string' },
    'json-out': { type: 'string' },
  },
});

/** A model under test and how one candidate is scored on it. */
interface Subject {
  key: string;
  /** The table's name for it. */
  name: string;
  /** What one candidate evaluation is. */
  candidate: string;
  path: string;
  spec: ModelSpec;
  context: number;
  tokens: number;
  /** Distinct candidates per measured batch. */
  batch: number;
}

/** A mode's objective while it is measured: built, warm, released at the end. */
interface Running {
  objective: HeadObjective;
  startS: number;
  release(): Promise<void>;
}

interface ModeResult {
  mode: string;
  startS?: number;
  /** Evaluations per second of each measured batch. */
  batches: number[];
  /** The fastest batch's evaluations per second (what the table shows) and the median batch's. */
  perSecond?: number;
  medianPerSecond?: number;
  msPerEvaluation?: number;
  /** Every score equals the one-process score of the same candidate. */
  sameScores?: boolean;
  /** Why it was not measured. */
  missing?: string;
}

interface QueueOverhead {
  roundTripMs: { median: number; p90: number; n: number };
  bulkPerJobMs: { perJob: number; n: number };
}

const REPO = resolve(import.meta.dirname, '..');
const repeats = Number(values.repeats);
const tmp = mkdtempSync(join(tmpdir(), 'geneprune-bench-workers-'));

/** A fixed pseudo-random token stream in [1, vocab) (a linear congruential sequence). */
function tokenStream(n: number, vocab: number): number[] {
  const out: number[] = [];
  let x = 20261207;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) % 2147483648;
    out.push(1 + (x % (vocab - 1)));
  }
  return out;
}

/** `count` distinct genomes with a quarter of the heads removed, none of them in `seen` (which they join). */
function distinctGenomes(genes: number, count: number, seed: number, seen: Set<string>): Genome[] {
  const rng = createRng(seed);
  const out: Genome[] = [];
  while (out.length < count) {
    const g = randomGenome(genes, Math.round(genes / 4), rng);
    const key = g.join('');
    if (seen.has(key)) continue;
    seen.add(key);
    out.push(g);
  }
  return out;
}

async function subjects(): Promise<Subject[]> {
  const out: Subject[] = [];
  for (const key of values.models.split(',').filter(Boolean)) {
    if (key === 'stories') {
      const path = join(values.shared, 'models/stories260K/stories260K.bin');
      out.push({
        key,
        name: 'stories260K',
        candidate: values.quick ? '1024 tokens (2 windows of 512)' : '4096 tokens (8 windows of 512)',
        path,
        spec: await loadModelSpec(path),
        context: 512,
        tokens: values.quick ? 1024 : 4096,
        batch: values.quick ? 4 : 48,
      });
    } else if (key === '134m') {
      const shape = values.quick ? TINY_LLAMA_SHAPE : BENCH_LLAMA_SHAPE;
      const path = join(tmp, 'llama-134m');
      const t0 = performance.now();
      const hf = llamaSpecToHf(randomLlamaSpec({ ...shape, maxPositions: 512, seed: 1 }));
      await writeHfFolder(path, { config: hf.config, tensors: hf.tensors, dtype: 'BF16' });
      const spec = await loadModelSpec(path);
      const params = hf.config as { num_hidden_layers?: number };
      process.stderr.write(
        `workers: wrote the ${params.num_hidden_layers}-layer random LLaMA (bf16) in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`,
      );
      out.push({
        key,
        name: values.quick ? 'tiny LLaMA shape (random)' : '134M LLaMA shape (random, bf16 file)',
        candidate: '512 tokens (2 windows of 256)',
        path,
        spec,
        context: 256,
        tokens: 512,
        batch: values.quick ? 2 : 6,
      });
    } else throw new Error(`--models: unknown model ${key} (stories, 134m)`);
  }
  return out;
}

function objectiveOptions(s: Subject) {
  return {
    stream: tokenStream(s.tokens + s.context, s.spec.config.vocabSize),
    context: s.context,
    metric: 'ppl' as const,
    tokens: s.tokens,
  };
}

async function onBackend(
  s: Subject,
  backend: EvaluationBackend,
  extra?: () => Promise<void>,
): Promise<Running> {
  const t0 = performance.now();
  const objective = await createHeadObjective(s.spec, {
    ...objectiveOptions(s),
    remote: { backend, model: s.path },
  }).catch(async (e) => {
    await backend.release();
    throw e;
  });
  const startS = (performance.now() - t0) / 1000;
  return {
    objective,
    startS,
    release: async () => {
      await objective.release();
      await backend.release();
      await extra?.();
    },
  };
}

async function oneProcess(s: Subject): Promise<Running> {
  const t0 = performance.now();
  const objective = await createHeadObjective(s.spec, objectiveOptions(s));
  return { objective, startS: (performance.now() - t0) / 1000, release: () => objective.release() };
}

/** A `geneprune worker` process (the CLI from source), resolved once it says it takes jobs. */
async function startQueueWorker(url: string, threads: number): Promise<ChildProcess> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', 'src/cli/main.ts', 'worker', '--queue', url, '--threads', String(threads)],
    { cwd: REPO, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let said = '';
  await new Promise<void>((res, rej) => {
    child.stderr!.setEncoding('utf8');
    const onData = (d: string) => {
      said += d;
      if (/taking evaluation jobs/.test(said)) {
        child.stderr!.off('data', onData);
        // Drained, so a chatty worker (a line per job) never blocks on a full pipe.
        child.stderr!.resume();
        res();
      }
    };
    child.stderr!.on('data', onData);
    child.on('exit', (code) =>
      rej(new Error(`geneprune worker exited (${code}) before taking jobs: ${said}`)),
    );
  });
  return child;
}

async function stopQueueWorker(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise<void>((res) => child.on('exit', () => res()));
  child.kill('SIGTERM');
  await exited;
}

/**
 * 2 BullMQ workers: the head objective on the queue backend (`createQueueBackend`, as `--queue URL` builds it),
 * scored by two `geneprune worker --queue URL --threads 1` processes started here and stopped in `release`. Its
 * start counts the worker processes' start and the objective's; each worker loads the model at its first job
 * (the warm-up batch).
 */
async function queueMode(s: Subject, redis: RedisServer): Promise<Running | undefined> {
  const t0 = performance.now();
  const workers: ChildProcess[] = [];
  try {
    for (let i = 0; i < 2; i++) workers.push(await startQueueWorker(redis.url, 1));
  } catch (e) {
    await Promise.all(workers.map(stopQueueWorker));
    throw e;
  }
  const backend = createQueueBackend(redis.url, { runId: `bench-workers-${s.key}` });
  const r = await onBackend(s, backend, async () => {
    await Promise.all(workers.map(stopQueueWorker));
  }).catch(async (e) => {
    await Promise.all(workers.map(stopQueueWorker));
    throw e;
  });
  return { ...r, startS: (performance.now() - t0) / 1000 };
}

const MODES: Array<{
  mode: string;
  start(s: Subject, redis: RedisServer | undefined): Promise<Running | undefined>;
  /** Why there is no number when `start` gives none. */
  why?: string;
}> = [
  { mode: 'one process', start: (s) => oneProcess(s) },
  { mode: '`--workers 1`', start: (s) => onBackend(s, createPoolBackend(1)) },
  { mode: '`--workers 2`', start: (s) => onBackend(s, createPoolBackend(2)) },
  {
    mode: '2 BullMQ workers',
    start: (s, redis) => (redis ? queueMode(s, redis) : Promise.resolve(undefined)),
    why: 'no redis-server here',
  },
];

const median = (xs: number[]) => {
  const a = [...xs].sort((x, y) => x - y);
  return a.length % 2 ? a[(a.length - 1) / 2] : (a[a.length / 2 - 1] + a[a.length / 2]) / 2;
};

async function measure(s: Subject, redis: RedisServer | undefined): Promise<ModeResult[]> {
  const genes = s.spec.config.headsPerLayer.reduce((a, b) => a + b, 0);
  const seen = new Set<string>();
  const warm = distinctGenomes(genes, 2, 1, seen);
  const batches = Array.from({ length: repeats }, (_, r) => distinctGenomes(genes, s.batch, 100 + r, seen));
  const results: ModeResult[] = [];
  const running: Array<Running | undefined> = [];
  try {
    for (const m of MODES) {
      process.stderr.write(`workers: ${s.name}: starting ${m.mode}\n`);
      const r = await m.start(s, redis);
      running.push(r);
      results.push({
        mode: m.mode,
        batches: [],
        ...(r ? { startS: r.startS } : { missing: m.why ?? 'not measured' }),
      });
      // Every worker of the mode scores once before anything is timed (sessions warm, arenas grown).
      if (r) await r.objective.evaluateMany(warm, 'full');
    }
    const reference: number[][] = [];
    for (let b = 0; b < repeats; b++) {
      for (let i = 0; i < MODES.length; i++) {
        const r = running[i];
        if (!r) continue;
        const t0 = performance.now();
        const scored = await r.objective.evaluateMany(batches[b], 'full');
        const seconds = (performance.now() - t0) / 1000;
        if (scored.some((x) => x.cached))
          throw new Error(`${MODES[i].mode}: a measured candidate was cached`);
        const q = scored.map((x) => x.evaluation.quality);
        if (i === 0) reference[b] = q;
        const same = q.every((v, k) => v === reference[b][k]);
        results[i].sameScores = (results[i].sameScores ?? true) && same;
        results[i].batches.push(batches[b].length / seconds);
        process.stderr.write(
          `workers: ${s.name}: ${MODES[i].mode}, batch ${b + 1}/${repeats}: ${(batches[b].length / seconds).toFixed(2)} evaluations/s${same ? '' : ' (SCORES DIFFER)'}\n`,
        );
      }
    }
  } finally {
    for (const r of running) await r?.release();
  }
  for (const r of results) {
    if (r.batches.length === 0) continue;
    r.perSecond = Math.max(...r.batches);
    r.medianPerSecond = median(r.batches);
    r.msPerEvaluation = 1000 / r.perSecond;
  }
  return results;
}

interface RedisServer {
  url: string;
  port: number;
  stop(): Promise<void>;
}

function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.on('error', rej);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => res(port));
    });
  });
}

/** A private redis-server (loopback, free port, no persistence) in the bench's temporary directory. */
async function startRedis(): Promise<RedisServer> {
  const port = await freePort();
  const dir = join(tmp, 'redis');
  rmSync(dir, { recursive: true, force: true });
  const { mkdirSync } = await import('node:fs');
  mkdirSync(dir);
  const child: ChildProcess = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no'],
    { stdio: 'ignore' },
  );
  const exited = new Promise<void>((res) => child.on('exit', () => res()));
  const failed = new Promise<never>((_, rej) => child.on('error', rej));
  const { Redis } = await import('ioredis');
  const deadline = Date.now() + 10_000;
  for (;;) {
    const probe = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0 });
    probe.on('error', () => {});
    try {
      await Promise.race([probe.connect().then(() => probe.ping()), failed]);
      probe.disconnect();
      break;
    } catch (e) {
      probe.disconnect();
      if (Date.now() > deadline) throw new Error(`redis-server did not answer on port ${port}: ${e}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    stop: async () => {
      child.kill('SIGTERM');
      await exited;
    },
  };
}

/**
 * BullMQ's own cost of a job: a worker that returns at once (concurrency 1); `n` jobs one at a time (add →
 * finished, the last after 20 unmeasured ones), then `bulk` jobs posted at once until all finished.
 */
async function queueOverhead(redis: RedisServer, n: number, bulk: number): Promise<QueueOverhead> {
  const { Queue, QueueEvents, Worker } = await import('bullmq');
  const connection = { host: '127.0.0.1', port: redis.port, maxRetriesPerRequest: null };
  const name = 'wbench-empty';
  const queue = new Queue(name, { connection });
  const events = new QueueEvents(name, { connection });
  const worker = new Worker(name, async () => ({ ok: 1 }), { connection, concurrency: 1 });
  try {
    await Promise.all([queue.waitUntilReady(), events.waitUntilReady(), worker.waitUntilReady()]);
    // Every job waited on at once adds its listeners: not a leak here.
    events.setMaxListeners(0);
    queue.setMaxListeners(0);
    const trips: number[] = [];
    for (let i = 0; i < n + 20; i++) {
      const t0 = performance.now();
      const job = await queue.add('empty', { i });
      await job.waitUntilFinished(events);
      if (i >= 20) trips.push(performance.now() - t0);
    }
    const sorted = [...trips].sort((a, b) => a - b);
    const t0 = performance.now();
    const jobs = await queue.addBulk(
      Array.from({ length: bulk }, (_, i) => ({ name: 'empty', data: { i } })),
    );
    await Promise.all(jobs.map((j) => j.waitUntilFinished(events)));
    const perJob = (performance.now() - t0) / bulk;
    return {
      roundTripMs: { median: median(trips), p90: sorted[Math.floor(sorted.length * 0.9)], n },
      bulkPerJobMs: { perJob, n: bulk },
    };
  } finally {
    await worker.close();
    await events.close();
    await queue.close();
  }
}

// ---- the projection (on paper) ----

/** Survival of the Smallest's LLaMA-2-7B search (the paper's §IV): population 10, 100 generations, ~2 h. */
const SOS = { population: 10, generations: 100, hours: 2 };

interface Projection {
  gpus: number;
  /** Evaluations that run side by side in one generation: min(GPUs, population). */
  busy: number;
  /** Rounds of evaluations per generation: ceil(population / GPUs). */
  rounds: number;
  seconds: number;
}

function project(evalS: number, overheadS: number, gpus: number): Projection {
  const busy = Math.min(gpus, SOS.population);
  const rounds = Math.ceil(SOS.population / gpus);
  // One generation: its rounds of evaluations, each round also paying the queue's round trip once (the jobs
  // of a round are posted together and wait for each other).
  return { gpus, busy, rounds, seconds: SOS.generations * rounds * (evalS + overheadS) };
}

const f = (x: number | undefined, digits = 1) => (x === undefined ? '—' : x.toFixed(digits));
const hms = (s: number) => (s >= 3600 ? `${(s / 3600).toFixed(2)} h` : `${(s / 60).toFixed(0)} min`);

async function main() {
  const load0 = loadavg()[0];
  const all = await subjects();
  let redis: RedisServer | undefined;
  let overhead: QueueOverhead | undefined;
  let redisError: string | undefined;
  try {
    redis = await startRedis();
  } catch (e) {
    redisError = e instanceof Error ? e.message : String(e);
    process.stderr.write(`workers: no Redis (${redisError}): the queue rows stay empty\n`);
  }
  const measured: Array<{ subject: Subject; modes: ModeResult[] }> = [];
  try {
    for (const s of all) measured.push({ subject: s, modes: await measure(s, redis) });
    if (redis) {
      process.stderr.write('workers: BullMQ round trips of an empty job\n');
      overhead = await queueOverhead(
        redis,
        values.quick ? 20 : Number(values['round-trips']),
        values.quick ? 50 : Number(values['bulk-jobs']),
      );
    }
  } finally {
    await redis?.stop();
  }
  const load1 = loadavg()[0];
  const machine = `${cpus().length} cores (${cpus()[0]?.model.trim()}), shared with other sessions; load average ${load0.toFixed(1)} at the start, ${load1.toFixed(1)} at the end; Node ${process.version}, CPU`;

  const t1: string[] = [
    `| model (this machine: ${machine}) | one candidate | how | evaluations/s (fastest of ${repeats} batches) | median batch | ms per evaluation (fastest) | start (s) | vs one process | scores equal one process |`,
    '|---|---|---|---|---|---|---|---|---|',
  ];
  for (const { subject: s, modes } of measured) {
    const base = modes[0].perSecond;
    for (const m of modes) {
      if (m.missing) {
        t1.push(`| ${s.name} | ${s.candidate} | ${m.mode} | — (${m.missing}) | | | | | |`);
        continue;
      }
      t1.push(
        `| ${s.name} | ${s.candidate} | ${m.mode} | ${f(m.perSecond, m.perSecond! < 10 ? 2 : 1)} | ${f(m.medianPerSecond, m.medianPerSecond! < 10 ? 2 : 1)} | ${f(m.msPerEvaluation, 1)} | ${f(m.startS, 2)} | ${base && m.perSecond ? `${(m.perSecond / base).toFixed(2)}×` : '—'} | ${m.sameScores ? 'yes' : 'NO'} |`,
      );
    }
  }

  const evalMs = (key: string) => measured.find((m) => m.subject.key === key)?.modes[0].msPerEvaluation;
  const t2: string[] = [
    `| BullMQ on a local Redis, a worker that returns at once | ms per job |${measured.map(({ subject: s }) => ` against one ${s.name} evaluation |`).join('')}`,
    `|---|---|${measured.map(() => '---|').join('')}`,
  ];
  const share = (ms: number, key: string) => {
    const e = evalMs(key);
    if (e === undefined) return '—';
    const pc = (100 * ms) / e;
    return `${pc.toFixed(pc < 1 ? 2 : pc < 10 ? 1 : 0)} %`;
  };
  if (overhead) {
    const o = overhead;
    t2.push(
      `| round trip of an empty job, one at a time (add → finished; median of ${o.roundTripMs.n}, p90 ${f(o.roundTripMs.p90, 2)} ms) | ${f(o.roundTripMs.median, 2)} |${measured.map(({ subject: s }) => ` ${share(o.roundTripMs.median, s.key)} |`).join('')}`,
      `| per job of ${o.bulkPerJobMs.n} empty jobs posted at once (all finished) | ${f(o.bulkPerJobMs.perJob, 2)} |${measured.map(({ subject: s }) => ` ${share(o.bulkPerJobMs.perJob, s.key)} |`).join('')}`,
    );
  } else t2.push(`| not measured: ${redisError ?? 'no Redis'} | — |${measured.map(() => ' — |').join('')}`);
  for (const { subject: s } of measured) {
    const e = evalMs(s.key);
    t2.push(
      `| one evaluation, ${s.name}, one process: ${s.candidate} | ${f(e, 1)} |${measured.map(() => ' |').join('')}`,
    );
  }

  // The paper's own rate: ~2 h for 100 generations × 10 candidates on one RTX 3090.
  const evalS = (SOS.hours * 3600) / (SOS.population * SOS.generations);
  const overheadS = (overhead?.roundTripMs.median ?? 0) / 1000;
  const projections = [1, 4, 16].map((g) => project(evalS, overheadS, g));
  const ideal = (g: number) => (SOS.population * SOS.generations * evalS) / g + SOS.generations * overheadS;
  const t3: string[] = [
    `| Survival of the Smallest, LLaMA-2-7B: ${SOS.generations} generations × ${SOS.population} candidates, ${evalS.toFixed(1)} s per evaluation (the paper's ~${SOS.hours} h on one RTX 3090) | evaluations side by side | rounds per generation | expected time | vs 1 GPU | if every generation had ≥ that many candidates |`,
    '|---|---|---|---|---|---|',
  ];
  for (const p of projections) {
    t3.push(
      `| ${p.gpus} GPU${p.gpus === 1 ? '' : 's'}, one worker each | ${p.busy}${p.gpus > p.busy ? ` (${p.gpus - p.busy} idle)` : ''} | ${p.rounds} | ${hms(p.seconds)} | ${(projections[0].seconds / p.seconds).toFixed(1)}× | ${hms(ideal(p.gpus))} |`,
    );
  }
  const assumes = [
    `Projection: expected time = generations × ⌈population / GPUs⌉ × (one evaluation + one queue round trip), with one evaluation = the paper's ${SOS.hours} h / ${SOS.population * SOS.generations} candidates = ${evalS.toFixed(1)} s and the round trip the median measured above (${f(overhead?.roundTripMs.median, 2)} ms; ${overhead ? 'measured' : 'not measured, taken as 0'}).`,
    "It assumes: one `geneprune worker` per GPU, each holding the whole fp16 model (13.5 GB fits a 24 GB card) and scoring one candidate at a time at the paper's speed;",
    'every candidate of a generation is posted at once and the next generation waits for the slowest (a generational GA: with 10 candidates, GPUs beyond 10 stay idle);',
    "all candidates are distinct (the cache only lowers the count); the GA's own work and the one-time model load on each worker (in parallel) are left out;",
    'evaluation time does not vary between candidates (a masked candidate costs a dense forward pass here).',
    "The last column is the bound a larger population would reach (e.g. EvoPress's 64 offspring per generation): candidates / GPUs × one evaluation.",
  ].join('\n');

  const tables = `${t1.join('\n')}\n\n${t2.join('\n')}\n\n${t3.join('\n')}\n\n${assumes}\n`;
  const raw = {
    machine: {
      cores: cpus().length,
      cpu: cpus()[0]?.model.trim(),
      node: process.version,
      load: [load0, load1],
    },
    repeats,
    models: measured.map(({ subject: s, modes }) => ({
      model: s.name,
      candidate: s.candidate,
      context: s.context,
      tokens: s.tokens,
      batch: s.batch,
      modes,
    })),
    queueOverhead: overhead ?? null,
    projection: {
      paper: SOS,
      secondsPerEvaluation: evalS,
      queueRoundTripS: overheadS,
      rows: projections,
    },
  };
  console.log(tables);
  console.log(JSON.stringify(raw, null, 2));
  if (values['table-out']) writeFileSync(values['table-out'], tables);
  if (values['json-out']) writeFileSync(values['json-out'], `${JSON.stringify(raw, null, 2)}\n`);
}

try {
  await main();
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
