/**
 * `heads --queue` and `geneprune worker` on a real Redis (test/helpers/redis.ts) with the real stories260K: the
 * same GA with one process and with two workers writes the same logs, mask and result; a worker killed holding a
 * job, a Redis restart mid-run and a search killed and resumed all end in that same result (the restart with the
 * waiting line printed, the resume without any job scored twice); a worker with another model, or a recipe whose
 * data were altered in Redis, is refused in one line, never scored; the password never reaches the run's files
 * or the output. The run's workers.json names the two workers by host:pid with this search's jobs only (a job
 * answered from Redis for a resumed search is done, but no worker's evaluation).
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { GenepruneError } from '../../src/errors.js';
import { loadModelSpec } from '../../src/model/load.js';
import { createQueueBackend } from '../../src/queue/backend.js';
import { recipeKey } from '../../src/queue/jobs.js';
import { fromJson, toJson } from '../../src/queue/recipejson.js';
import { runQueueWorker } from '../../src/queue/worker.js';
import { readWorkersFile } from '../../src/runs/workersfile.js';
import { createHeadObjective } from '../../src/spaces/heads/objective.js';
import { tempDir } from '../checkpoint/helpers.js';
import { assertOneLineError, runCli, spawnCli } from '../helpers/cli.js';
import { type RedisServer, redisSkip, startRedis } from '../helpers/redis.js';
import {
  logWithoutTimes,
  readRunJson,
  runInOwnFolder,
  smallRunArgs,
  untimed,
  withoutRunFields,
} from '../helpers/rundir.js';
import { CALIB, EVAL, MODEL, sharedPath, skipUnlessShared } from '../shared.js';

const tmp = tempDir('geneprune-queue-');
after(tmp.cleanup);
const skip = skipUnlessShared(MODEL, CALIB, EVAL) || redisSkip();
const LOCK_MS = '1000';

/** The small head search at the queue's sizes (a population and calibration large enough to keep two workers busy). */
const headArgs = (out: string, extra: string[] = []) =>
  smallRunArgs('heads', out, { population: 8, 'low-tokens': 512, 'calib-tokens': 2048, quiet: false }, extra);

/** The same run: logs (timings aside), mask and result (a resumed run's result also says `resumed`). */
function assertSameRun(dir: string, reference: string, resumed = false): void {
  assert.deepEqual(logWithoutTimes(dir, 'evals.jsonl'), logWithoutTimes(reference, 'evals.jsonl'));
  assert.deepEqual(
    logWithoutTimes(dir, 'generations.jsonl'),
    logWithoutTimes(reference, 'generations.jsonl'),
  );
  assert.deepEqual(
    withoutRunFields(readRunJson(dir, 'mask.json')),
    withoutRunFields(readRunJson(reference, 'mask.json')),
  );
  const result = withoutRunFields(readRunJson(dir, 'result.json'));
  if (resumed) {
    assert.equal(result.resumed, true);
    delete result.resumed;
  }
  assert.deepEqual(result, withoutRunFields(readRunJson(reference, 'result.json')));
}

/** A `geneprune worker` process and what it printed so far. */
interface WorkerProc {
  child: ChildProcess;
  output(): string;
  /** The ids of the jobs it scored (one line each). */
  scored(): string[];
  /** Resolves when `predicate(output)` holds (fails after 60 s). */
  until(predicate: (out: string) => boolean, what: string): Promise<void>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGTERM, then its exit. */
  stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function startWorker(url: string, extra: string[] = [], fault?: string): WorkerProc {
  const child = spawnCli(['worker', '--queue', url, '--lock-ms', LOCK_MS, ...extra], {
    stdio: ['ignore', 'pipe', 'pipe'],
    ...(fault ? { fault } : {}),
  });
  let out = '';
  child.stdout?.on('data', (d) => {
    out += d.toString();
  });
  child.stderr?.on('data', (d) => {
    out += d.toString();
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) =>
    child.on('exit', (code, signal) => r({ code, signal })),
  );
  const w: WorkerProc = {
    child,
    output: () => out,
    scored: () => [...out.matchAll(/^job (\S+): (?:low|full) quality/gm)].map((m) => m[1]),
    async until(predicate, what) {
      const deadline = Date.now() + 60_000;
      while (!predicate(out)) {
        if (Date.now() > deadline) throw new Error(`worker: no ${what} within 60 s:\n${out}`);
        if (child.exitCode !== null || child.signalCode !== null) {
          if (predicate(out)) return;
          throw new Error(`worker exited before ${what}:\n${out}`);
        }
        await new Promise((r) => setTimeout(r, 10));
      }
    },
    exited,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      return exited;
    },
  };
  return w;
}

const ready = (w: WorkerProc) => w.until((o) => o.includes('taking evaluation jobs'), 'start line');

/** Runs a search to its end as a child process, with its output. */
function spawnSearch(args: string[]): {
  child: ChildProcess;
  done: Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>;
} {
  const child = spawnCli(args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (d) => {
    stdout += d.toString();
  });
  child.stderr?.on('data', (d) => {
    stderr += d.toString();
  });
  const done = new Promise<{
    code: number | null;
    signal: NodeJS.Signals | null;
    stdout: string;
    stderr: string;
  }>((r) => child.on('exit', (code, signal) => r({ code, signal, stdout, stderr })));
  return { child, done };
}

describe('heads --queue with geneprune workers', { skip }, () => {
  let redis: RedisServer;
  const one = join(tmp.dir, 'one');
  const workers: WorkerProc[] = [];
  const worker = (...a: Parameters<typeof startWorker>) => {
    const w = startWorker(...a);
    workers.push(w);
    return w;
  };
  before(async () => {
    redis = await startRedis();
    const r = runCli([...headArgs(one), '--quiet'], { timeout: 300_000 });
    assert.equal(r.code, 0, r.stderr);
  });
  after(async () => {
    for (const w of workers) await w.stop();
    await redis?.cleanup();
  });

  test('one process and two workers write the same evaluations, generations, mask and result', async () => {
    const a = worker(redis.url);
    const b = worker(redis.url);
    await Promise.all([ready(a), ready(b)]);
    const two = join(tmp.dir, 'two');
    const r = await spawnSearch([...headArgs(two), '--queue', redis.url, '--quiet']).done;
    assert.equal(r.code, 0, r.stderr);
    const evals = logWithoutTimes(one, 'evals.jsonl');
    assert.ok(evals.length > 20 && evals.some((e) => (e as { cached: boolean }).cached));
    assertSameRun(two, one);
    // The mask file differs from the one-process run's only in the run directory it names.
    const text = (d: string) =>
      readFileSync(join(d, 'mask.json'), 'utf8').replace(JSON.stringify(d), '"RUN"');
    assert.equal(text(two), text(one));
    // Both workers took jobs, and each distinct evaluation the search logged ran once.
    await a.stop();
    await b.stop();
    assert.ok(
      a.scored().length > 0 && b.scored().length > 0,
      `${a.scored().length} + ${b.scored().length} jobs`,
    );
    const ran = logWithoutTimes(two, 'evals.jsonl').filter((e) => !(e as { cached: boolean }).cached).length;
    const ids = [...a.scored(), ...b.scored()];
    assert.equal(new Set(ids).size, ids.length, 'a job scored twice');
    assert.ok(ids.length >= ran, `${ids.length} jobs for ${ran} evaluations`);
    assert.match(a.output(), /jobs scored, 0 refused, 0 failed/);
    // workers.json: this search's jobs, credited to the two worker processes by their host:pid; the search's
    // evaluations (the log's uncached lines and the dense model) are exactly the jobs they finished for it.
    const result = readRunJson(two, 'result.json');
    assert.equal(ran + 1, result.evaluations);
    const w = await readWorkersFile(two);
    assert.ok(w, 'workers.json written');
    assert.equal(w.label, redis.url.replace('redis://', 'queue redis://'));
    assert.deepEqual(
      w.workers.map((x) => x.id).sort(),
      [a, b].map((p) => `${hostname()}:${p.child.pid}`).sort(),
    );
    for (const x of w.workers) {
      assert.ok(x.evaluations > 0 && x.busyMs > 0, JSON.stringify(x));
      // Each worker served this search only: its own count of the jobs it scored is its count here.
      const mine = x.id.endsWith(`:${a.child.pid}`) ? a : b;
      assert.equal(x.evaluations, mine.scored().length);
    }
    assert.equal(
      w.workers.reduce((n, x) => n + x.evaluations, 0),
      result.evaluations,
    );
    assert.equal(w.done, result.evaluations);
    assert.deepEqual([w.waiting, w.active, w.failed], [0, 0, 0]);
  });

  test('a worker killed holding a job: the job is taken again and the run ends the same', async () => {
    // The first worker dies (SIGKILL, by its fault point) right after taking its first job, lock held.
    const doomed = worker(redis.url, [], 'worker:mid-job');
    await ready(doomed);
    const dir = join(tmp.dir, 'killed-worker');
    const search = spawnSearch([...headArgs(dir), '--queue', redis.url, '--quiet']);
    const died = await doomed.exited;
    assert.equal(died.signal, 'SIGKILL');
    assert.equal(doomed.scored().length, 0);
    const rescuer = worker(redis.url);
    const r = await search.done;
    assert.equal(r.code, 0, r.stderr);
    assertSameRun(dir, one);
    await rescuer.stop();
    assert.ok(rescuer.scored().length > 0);
  });

  test('Redis stopped and restarted mid-run (AOF): the search waits, says so once, and ends the same', async () => {
    const w = worker(redis.url);
    await ready(w);
    const dir = join(tmp.dir, 'restart');
    // Not quiet: the waiting line is a progress line.
    const search = spawnSearch([...headArgs(dir), '--queue', redis.url]);
    await w.until((o) => /^job /m.test(o), 'first job');
    await redis.stop();
    await new Promise((r) => setTimeout(r, 1500));
    await redis.restart();
    const r = await search.done;
    assert.equal(r.code, 0, r.stderr);
    const waiting = r.stderr
      .split('\n')
      .filter((l) => l.includes(`waiting for Redis at 127.0.0.1:${redis.port}`));
    assert.equal(waiting.length, 1, r.stderr);
    assertSameRun(dir, one);
    await w.stop();
    // The worker too said it once, and went on scoring after the restart.
    const workerWaiting = w
      .output()
      .split('\n')
      .filter((l) => l.startsWith('waiting for Redis at 127.0.0.1'));
    assert.equal(workerWaiting.length, 1, w.output());
    const after = w.output().slice(w.output().indexOf(workerWaiting[0]));
    assert.match(after, /^job \S+: (?:low|full) quality/m);
  });

  test('the search SIGKILLed mid-run and resumed on the queue: no job that had finished is scored again', async () => {
    const w = worker(redis.url);
    await ready(w);
    const dir = join(tmp.dir, 'resumed');
    const search = spawnSearch([...headArgs(dir), '--queue', redis.url, '--quiet']);
    await w.until((o) => (o.match(/^job \S+: (?:low|full) quality/gm) ?? []).length >= 12, '12 jobs');
    search.child.kill('SIGKILL');
    await search.done;
    assert.ok(!existsSync(join(dir, 'mask.json')), 'the search finished before it was killed');
    const before = w.scored();
    const r = await spawnSearch(['heads', '--resume', dir, '--queue', redis.url, '--quiet']).done;
    assert.equal(r.code, 0, r.stderr);
    await w.stop();
    assertSameRun(dir, one, true);
    const all = w.scored();
    assert.ok(all.length > before.length, 'the resumed search posted new jobs');
    // The worker's own count: every job it scored, before the kill and after the resume, once.
    assert.equal(new Set(all).size, all.length, `a job scored twice:\n${w.output()}`);
  });

  test('weights --queue (a seeded block-wise GA) with two workers: the same evaluations, mask bytes and result', async () => {
    // Each run in a folder of its own (helpers/rundir.ts): the mask file records the run directory as given.
    const runIn = (name: string, extra: string[]) =>
      runInOwnFolder(tmp.dir, name, smallRunArgs('weights', undefined, {}, extra));
    const a = worker(redis.url);
    const b = worker(redis.url);
    await Promise.all([ready(a), ready(b)]);
    const local = await runIn('w-one', []);
    const queued = await runIn('w-queue', ['--queue', redis.url]);
    const evals = logWithoutTimes(local, 'evals.jsonl');
    assert.ok(evals.length >= 20, `only ${evals.length} evaluations logged`);
    assert.deepEqual(logWithoutTimes(queued, 'evals.jsonl'), evals);
    assert.ok(
      readFileSync(join(queued, 'weight-mask.safetensors')).equals(
        readFileSync(join(local, 'weight-mask.safetensors')),
      ),
      'the weight-mask files differ',
    );
    assert.deepEqual(untimed(readRunJson(queued, 'result.json')), untimed(readRunJson(local, 'result.json')));
    await a.stop();
    await b.stop();
    const ids = [...a.scored(), ...b.scored()];
    assert.ok(ids.length > 0);
    assert.equal(new Set(ids).size, ids.length, 'a job scored twice');
  });

  test('heads --metric bleu (a generation task and its tokenizer) and weights --recover through the queue equal one process', async () => {
    const a = worker(redis.url);
    await ready(a);
    const bleuArgs = (out: string, extra: string[]) =>
      smallRunArgs(
        'heads',
        out,
        {
          'calib-items': 4,
          'calib-new-tokens': 8,
          metric: 'bleu',
          population: 4,
          generations: 2,
          seed: 1,
          'low-tokens': false,
          'calib-tokens': false,
          'eval-tokens': 512,
        },
        extra,
      );
    const local = join(tmp.dir, 'bleu-one');
    const queued = join(tmp.dir, 'bleu-queue');
    for (const [dir, extra] of [
      [local, []],
      [queued, ['--queue', redis.url]],
    ] as const) {
      const r = await spawnSearch(bleuArgs(dir, [...extra])).done;
      assert.equal(r.code, 0, r.stderr);
    }
    const evals = logWithoutTimes(local, 'evals.jsonl') as Array<{ cached: boolean }>;
    assert.ok(evals.filter((e) => !e.cached).length >= 4);
    assert.deepEqual(logWithoutTimes(queued, 'evals.jsonl'), evals);
    assert.deepEqual(
      withoutRunFields(readRunJson(queued, 'result.json')),
      withoutRunFields(readRunJson(local, 'result.json')),
    );

    const runIn = (name: string, extra: string[]) =>
      runInOwnFolder(
        tmp.dir,
        name,
        smallRunArgs('weights', undefined, { method: 'ga-wanda', recover: true, generations: 2 }, extra),
      );
    const wLocal = await runIn('recover-one', []);
    const wQueued = await runIn('recover-queue', ['--queue', redis.url]);
    assert.deepEqual(logWithoutTimes(wQueued, 'evals.jsonl'), logWithoutTimes(wLocal, 'evals.jsonl'));
    assert.ok(
      readFileSync(join(wQueued, 'weight-mask.safetensors')).equals(
        readFileSync(join(wLocal, 'weight-mask.safetensors')),
      ),
      'the weight-mask files differ',
    );
    assert.deepEqual(
      withoutRunFields(readRunJson(wQueued, 'result.json')),
      withoutRunFields(readRunJson(wLocal, 'result.json')),
    );
    await a.stop();
    assert.ok(a.scored().length > 0);
  });

  test('a worker with another model refuses the job and the search fails in one line', async (t) => {
    const other = sharedPath('models/codet5-tiny');
    if (!other) return t.skip('codet5-tiny absent');
    const w = worker(redis.url, ['--model', other]);
    await ready(w);
    const dir = join(tmp.dir, 'refused');
    const r = await spawnSearch([...headArgs(dir), '--queue', redis.url, '--quiet']).done;
    assertOneLineError(
      r,
      'non-zero',
      '--queue: job ',
      'refused by worker',
      'model fingerprint differs',
      other,
    );
    await w.stop();
    assert.equal(w.scored().length, 0);
    assert.match(w.output(), /refused: model fingerprint differs/);
  });
});

describe('the queue library', { skip }, () => {
  let redis: RedisServer;
  before(async () => {
    redis = await startRedis();
  });
  after(async () => {
    await redis?.cleanup();
  });

  test('a recipe whose data were altered in Redis is refused by the worker, never scored', async () => {
    const spec = await loadModelSpec(sharedPath(MODEL)!);
    const stream = Array.from({ length: 700 }, (_, i) => 1 + ((i * 37) % 400));
    const backend = createQueueBackend(redis.url, { runId: 'altered' });
    const objective = await createHeadObjective(spec, {
      stream,
      context: 128,
      metric: 'ppl',
      tokens: 512,
      remote: { backend, model: sharedPath(MODEL)! },
    });
    const conn = new Redis(redis.port, '127.0.0.1');
    const worker = await runQueueWorker({ url: redis.url, lockMs: 1000 });
    try {
      const keys = await conn.keys(recipeKey('*'));
      assert.equal(keys.length, 1);
      const stored = fromJson((await conn.get(keys[0]))!, keys[0]) as {
        recipe: { options: { stream: number[] } };
      };
      stored.recipe.options.stream[100] += 1;
      await conn.set(keys[0], toJson(stored));
      await assert.rejects(objective.evaluate(objective.space.full()), (e: unknown) => {
        assert.ok(e instanceof GenepruneError);
        assert.match(e.oneLine(), /^--queue: job \S+ refused by worker \S+:\d+: data sha256 differs/);
        return true;
      });
      assert.equal(objective.evaluations(), 0);
    } finally {
      await objective.release();
      const s = await worker.close();
      conn.disconnect();
      assert.deepEqual([s.scored, s.refused], [0, 1]);
    }
  });

  test('with no worker the search says so once, and scores the same number as in process when one starts', async () => {
    const spec = await loadModelSpec(sharedPath(MODEL)!);
    const stream = Array.from({ length: 700 }, (_, i) => 1 + ((i * 53) % 450));
    const opts = { stream, context: 128, metric: 'ppl' as const, tokens: 512 };
    const lines: string[] = [];
    const backend = createQueueBackend(redis.url, {
      runId: 'idle',
      idleNoteMs: 300,
      onStatus: (l) => lines.push(l),
    });
    const queued = await createHeadObjective(spec, {
      ...opts,
      remote: { backend, model: sharedPath(MODEL)! },
    });
    const local = await createHeadObjective(spec, opts);
    let worker: Awaited<ReturnType<typeof runQueueWorker>> | undefined;
    try {
      const genome = Uint8Array.from({ length: queued.space.genes }, (_, j) => (j % 3 === 0 ? 0 : 1));
      const pending = queued.evaluate(genome);
      const deadline = Date.now() + 20_000;
      while (lines.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      assert.equal(lines.length, 1, 'no line said that no worker takes the jobs');
      assert.match(
        lines[0],
        /^1 jobs waiting on redis:\/\/127\.0\.0\.1:\d+ and no worker has taken one for \d+ s/,
      );
      // The backend's stats (workers.json): its one job posted and not taken, no worker yet.
      const label = `queue ${redis.url}`;
      const nobody = { label, waiting: 1, active: 0, done: 0, failed: 0, workers: [] };
      assert.deepEqual(await backend.stats!(), nobody);
      worker = await runQueueWorker({ url: redis.url, lockMs: 1000 });
      const got = await pending;
      assert.equal(got.quality, (await local.evaluate(genome)).quality);
      assert.equal(lines.length, 1);
      // Done, and credited to the worker (this process: host:pid) with its own scoring time; still there once
      // the search's scorer has let the connection go.
      const scored = await backend.stats!();
      assert.deepEqual({ ...scored, workers: [] }, { ...nobody, waiting: 0, done: 1 });
      assert.equal(scored.workers.length, 1);
      assert.equal(scored.workers[0].id, `${hostname()}:${process.pid}`);
      assert.equal(scored.workers[0].evaluations, 1);
      assert.ok(scored.workers[0].busyMs > 0, JSON.stringify(scored.workers[0]));
      await queued.release();
      assert.deepEqual(await backend.stats!(), scored);
      // The same job asked again under the same run id (a resumed search) is answered from Redis: done, but no
      // evaluation of any worker for this backend.
      const again = createQueueBackend(redis.url, { runId: 'idle' });
      const resumed = await createHeadObjective(spec, {
        ...opts,
        remote: { backend: again, model: sharedPath(MODEL)! },
      });
      try {
        assert.equal((await resumed.evaluate(genome)).quality, got.quality);
        assert.deepEqual(await again.stats!(), { ...nobody, waiting: 0, done: 1 });
      } finally {
        await resumed.release();
      }
    } finally {
      await queued.release();
      await local.release();
      await worker?.close();
    }
  });

  test('a worker that cannot reach Redis at start fails in one line, without the password', async () => {
    const dead = `redis://:Pw-${process.pid}@127.0.0.1:${redis.port + 1}`;
    await assert.rejects(runQueueWorker({ url: dead, connectTimeoutMs: 400 }), (e: unknown) => {
      assert.ok(e instanceof GenepruneError);
      const line = e.oneLine();
      assert.match(line, /^--queue: cannot reach Redis at redis:\/\/:\*\*\*@127\.0\.0\.1:\d+ within 0 s/);
      assert.ok(!line.includes(`Pw-${process.pid}`) && !line.includes('\n'));
      return true;
    });
  });
});

describe('a password-protected Redis', { skip }, () => {
  const password = `Sx-${process.pid}-secret`;
  let redis: RedisServer;
  before(async () => {
    redis = await startRedis({ password });
  });
  after(async () => {
    await redis?.cleanup();
  });

  test('the password is never in the run directory or in anything printed', async () => {
    const w = startWorker(redis.url, ['--json']);
    await w.until((o) => o.includes('"event":"start"'), 'start event');
    const dir = join(tmp.dir, 'auth');
    const r = await spawnSearch([...headArgs(dir), '--queue', redis.url]).done;
    assert.equal(r.code, 0, r.stderr);
    const stopped = await w.stop();
    assert.equal(stopped.code, 0);
    assert.match(w.output(), /"event":"summary"/);
    assert.match(w.output(), /redis:\/\/:\*\*\*@127\.0\.0\.1/);
    const printed = [r.stdout, r.stderr, w.output()].join('\n');
    assert.ok(!printed.includes(password), 'the password was printed');
    const walk = (d: string): string[] =>
      readdirSync(d).flatMap((f) => (statSync(join(d, f)).isDirectory() ? walk(join(d, f)) : [join(d, f)]));
    const files = walk(dir);
    assert.ok(files.length >= 5);
    // workers.json is among them, its label the redacted URL.
    const stats = await readWorkersFile(dir);
    assert.ok(files.includes(join(dir, 'workers.json')) && stats);
    assert.match(stats.label, /^queue redis:\/\/:\*\*\*@127\.0\.0\.1:\d+$/);
    for (const f of files) assert.ok(!readFileSync(f, 'utf8').includes(password), `the password is in ${f}`);
    // A wrong password is refused by Redis; the worker says so without repeating either password.
    const wrong = redis.url.replace(encodeURIComponent(password), 'not-it-at-all');
    const bad = await runQueueWorker({ url: wrong, connectTimeoutMs: 800 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(bad instanceof GenepruneError);
    assert.ok(!bad.oneLine().includes('not-it-at-all') && !bad.oneLine().includes(password), bad.oneLine());
  });
});
