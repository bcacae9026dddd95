/**
 * The queue's cost per job (issue #21): the round trip of an empty BullMQ job (post → a no-op worker → result
 * read back) against one stories260K evaluation, in process and through `--queue` (queue/backend.ts with an
 * in-process `runQueueWorker`, whose scorer runs on a worker thread as in `geneprune worker`). Needs
 * redis-server; starts its own on a free loopback port.
 *
 *   node --import tsx bench/queue-roundtrip.ts [--jobs 40]
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { Queue, Worker } from 'bullmq';
import { loadModelSpec } from '../src/model/load.js';
import { createQueueBackend } from '../src/queue/backend.js';
import { runQueueWorker } from '../src/queue/worker.js';
import { createHeadObjective } from '../src/spaces/heads/objective.js';

const { values } = parseArgs({ options: { jobs: { type: 'string', default: '40' } } });
const jobs = Number(values.jobs);
const shared = resolve(import.meta.dirname, '..', '..', 'shared');
const modelPath = join(shared, 'models/stories260K/stories260K.bin');

const port = await new Promise<number>((r) => {
  const s = createServer().listen(0, '127.0.0.1', () => {
    const p = (s.address() as { port: number }).port;
    s.close(() => r(p));
  });
});
const dir = mkdtempSync(join(tmpdir(), 'geneprune-bench-redis-'));
const server = spawn(
  'redis-server',
  ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', ''],
  {
    stdio: 'ignore',
  },
);
await new Promise((r) => setTimeout(r, 300));
const url = `redis://127.0.0.1:${port}`;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

try {
  // 1. An empty job: a no-op processor, the result read back by polling the job (as the search does) every 1 ms.
  const connection = { host: '127.0.0.1', port, maxRetriesPerRequest: null };
  const q = new Queue('empty', { connection });
  const w = new Worker('empty', async () => ({ ok: 1 }), { connection, concurrency: 1 });
  await w.waitUntilReady();
  const empty: number[] = [];
  for (let i = 0; i < jobs + 5; i++) {
    const t0 = performance.now();
    const job = await q.add('e', { i }, { jobId: `e-${i}` });
    for (;;) {
      const j = await q.getJob(job.id!);
      if (j?.finishedOn) break;
      await new Promise((r) => setTimeout(r, 1));
    }
    if (i >= 5) empty.push(performance.now() - t0);
  }
  await w.close();
  await q.close();

  // 2. One stories260K evaluation (2048 calibration tokens, ctx 512), in process and through the queue.
  const spec = await loadModelSpec(modelPath);
  // A fixed token stream of the 512-token vocabulary: the time of a forward pass does not depend on the text.
  let x = 12345;
  const stream = Array.from({ length: 4096 }, () => {
    x = (x * 1103515245 + 12345) % 2147483648;
    return 1 + (x % 500);
  });
  const opts = { stream, context: 512, metric: 'ppl' as const, tokens: 2048 };
  const local = await createHeadObjective(spec, opts);
  const backend = createQueueBackend(url, { runId: `bench${process.pid}` });
  const queued = await createHeadObjective(spec, { ...opts, remote: { backend, model: modelPath } });
  const worker = await runQueueWorker({ url, lockMs: 30_000 });
  const genes = local.space.genes;
  // A distinct genome per k (about a quarter of the heads removed), so nothing comes from the cache.
  const genome = (k: number) => {
    let h = (k + 1) * 2654435761;
    return Uint8Array.from({ length: genes }, () => {
      h = (Math.imul(h ^ (h >>> 15), 2246822507) + 0x9e3779b9) >>> 0;
      return h % 4 === 0 ? 0 : 1;
    });
  };
  const time = async (o: typeof local, k: number) => {
    const t0 = performance.now();
    await o.evaluate(genome(k));
    return performance.now() - t0;
  };
  const inProcess: number[] = [];
  const viaQueue: number[] = [];
  for (let k = 0; k < 5; k++) {
    await time(local, 10_000 + k);
    await time(queued, 10_000 + k);
  }
  for (let k = 0; k < jobs; k++) {
    inProcess.push(await time(local, k));
    viaQueue.push(await time(queued, k));
  }
  // 3. A batch of distinct candidates at once (a generation), one worker.
  const batch = Array.from({ length: jobs }, (_, k) => genome(20_000 + k));
  let t0 = performance.now();
  await local.evaluateMany(batch);
  const batchLocal = performance.now() - t0;
  t0 = performance.now();
  await queued.evaluateMany(Array.from({ length: jobs }, (_, k) => genome(30_000 + k)));
  const batchQueue = performance.now() - t0;
  await local.release();
  await queued.release();
  await worker.close();
  console.log(
    `empty BullMQ job, post → no-op worker → result polled (median of ${jobs}): ${median(empty).toFixed(2)} ms`,
  );
  console.log(
    `one stories260K evaluation (2048 tokens, ctx 512), in process: ${median(inProcess).toFixed(1)} ms`,
  );
  console.log(`the same through --queue (1 worker, worker thread): ${median(viaQueue).toFixed(1)} ms`);
  console.log(
    `${jobs} distinct candidates in one batch: in process ${batchLocal.toFixed(0)} ms (${((jobs / batchLocal) * 1000).toFixed(1)}/s), through --queue with 1 worker ${batchQueue.toFixed(0)} ms (${((jobs / batchQueue) * 1000).toFixed(1)}/s)`,
  );
} finally {
  server.kill('SIGTERM');
  rmSync(dir, { recursive: true, force: true });
}
