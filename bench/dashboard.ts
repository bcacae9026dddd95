/**
 * The live dashboard under load: a head-search run folder whose evals.jsonl holds --lines evaluations (default
 * 300,000: stories260K's 40-head genome on every line), served by `geneprune dashboard` in a process of its own,
 * with --clients SSE clients (default 50) connected at once. Prints how long the clients took to get their first
 * snapshot and how long one `/api/state` asked meanwhile waited, the server's resident memory (now and at its
 * peak, from /proc), and the latency of `/api/state` (median and max over --requests requests made while the
 * clients stay connected, each after one more line was appended, so that every request sees a changed run).
 * Linux only (/proc). Not a test: it times things.
 *
 *   npm run bench:dashboard [-- --lines 300000 --clients 50 --requests 7]
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { appendFileSync, createWriteStream, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { median } from '../src/prune/bench.js';

const { values } = parseArgs({
  options: {
    lines: { type: 'string', default: '300000' },
    clients: { type: 'string', default: '50' },
    requests: { type: 'string', default: '7' },
  },
});
const LINES = Number(values.lines);
const CLIENTS = Number(values.clients);
const REQUESTS = Number(values.requests);
const GENES = 40;

function evalLine(i: number, rng: () => number): string {
  const genome = Array.from({ length: GENES }, () => (rng() < 0.75 ? '1' : '0')).join('');
  const quality = 3.4 + 2 * rng();
  return `${JSON.stringify({ generation: Math.floor(i / 100), index: i % 100, genome, sparsity: (genome.split('0').length - 1) / GENES, quality, metric: 'ppl', fitness: -quality / 3.4, fidelity: 'full', tokens: 4096, cached: false, ms: 40 })}\n`;
}

/** A small fixed generator: the folder is the same on every run of the bench. */
function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

async function writeRun(dir: string): Promise<void> {
  mkdirSync(dir);
  const config = {
    kind: 'geneprune-head-search',
    version: 1,
    method: 'ga',
    settings: { method: 'ga', metric: 'ppl', generations: Math.ceil(LINES / 100) + 10, population: 100 },
    model: {
      path: 'stories260K.bin',
      shape: { numLayers: 5, queryHeads: [8, 8, 8, 8, 8], kvHeads: [4, 4, 4, 4, 4] },
    },
  };
  appendFileSync(join(dir, 'config.json'), JSON.stringify(config));
  const rng = lcg(1);
  const out = createWriteStream(join(dir, 'evals.jsonl'));
  for (let i = 0; i < LINES; i++) {
    if (!out.write(evalLine(i, rng))) await new Promise<void>((r) => out.once('drain', () => r()));
  }
  await new Promise<void>((r) => out.end(r));
}

/** The server process's resident memory now and at its peak, in MiB. */
function memoryOf(pid: number): { rss: number; peak: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = (name: string) =>
    Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? Number.NaN);
  return { rss: kib('VmRSS') / 1024, peak: kib('VmHWM') / 1024 };
}

/** An SSE client that resolves `snapshot` once its first event has fully arrived; the bytes are dropped. */
function sseClient(url: string) {
  let tail = '';
  let bytes = 0;
  let status = 0;
  const req = request(`${url}events`);
  const snapshot = new Promise<number>((resolve, reject) => {
    req.on('response', (res) => {
      status = res.statusCode ?? 0;
      if (status !== 200) {
        res.resume();
        resolve(status);
        return;
      }
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        bytes += chunk.length;
        // The first event ends at the first blank line after its data (the retry line comes before it).
        tail = (tail + chunk).slice(-4096);
        if (bytes > 1000 && tail.includes('\n\n', tail.length - chunk.length - 2)) resolve(status);
      });
    });
    req.on('error', reject);
  });
  req.end();
  return { snapshot, close: () => req.destroy(), status: () => status };
}

function timedGet(url: string): Promise<{ ms: number; bytes: number; status: number }> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const req = request(url, (res) => {
      let bytes = 0;
      res.on('data', (c: Buffer) => {
        bytes += c.length;
      });
      res.on('end', () => resolve({ ms: performance.now() - t0, bytes, status: res.statusCode ?? 0 }));
    });
    req.on('error', reject);
    req.end();
  });
}

async function startServer(dir: string): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', join(import.meta.dirname, '..', 'src', 'cli', 'main.ts'), 'dashboard', dir],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr!.setEncoding('utf8');
  const url = await new Promise<string>((resolve, reject) => {
    child.stderr!.on('data', (d: string) => {
      stderr += d;
      const m = /dashboard: (http:\/\/\S+\/)/.exec(stderr);
      if (m) resolve(m[1]);
    });
    child.on('exit', () => reject(new Error(`the dashboard exited: ${stderr}`)));
  });
  return { child, url };
}

const work = mkdtempSync(join(tmpdir(), 'geneprune-bench-dashboard-'));
const dir = join(work, 'run');
let server: ChildProcess | undefined;
try {
  const t0 = performance.now();
  await writeRun(dir);
  console.log(
    `run folder: ${LINES} evaluations in evals.jsonl (${((performance.now() - t0) / 1000).toFixed(1)} s to write)`,
  );
  const started = performance.now();
  const s = await startServer(dir);
  server = s.child;
  const first = await timedGet(`${s.url}api/state`);
  console.log(
    `server up and first /api/state: ${((performance.now() - started) / 1000).toFixed(1)} s, ${(first.bytes / 2 ** 20).toFixed(1)} MiB; RSS ${memoryOf(server.pid!).rss.toFixed(0)} MiB`,
  );
  const c0 = performance.now();
  const clients = Array.from({ length: CLIENTS }, () => sseClient(s.url));
  // One request made while the clients connect: the wait a page reload sees while many pages open at once.
  const during = timedGet(`${s.url}api/state`);
  const statuses = await Promise.all(clients.map((c) => c.snapshot));
  const refused = statuses.filter((x) => x !== 200).length;
  console.log(
    `${CLIENTS} SSE clients: all had their snapshot after ${((performance.now() - c0) / 1000).toFixed(1)} s${refused ? ` (${refused} refused)` : ''}`,
  );
  console.log(`/api/state asked while they connected: ${(await during).ms.toFixed(0)} ms`);
  const latencies: number[] = [];
  const rng = lcg(2);
  for (let i = 0; i < REQUESTS; i++) {
    // A growing run: a few more evaluations before each request, so no request is served from an unchanged run.
    appendFileSync(join(dir, 'evals.jsonl'), evalLine(LINES + i, rng));
    await new Promise((r) => setTimeout(r, 600));
    const r = await timedGet(`${s.url}api/state`);
    if (r.status !== 200) throw new Error(`/api/state answered ${r.status}`);
    latencies.push(r.ms);
  }
  const mem = memoryOf(server.pid!);
  console.log(
    `/api/state with ${CLIENTS} clients connected: median ${median(latencies).toFixed(0)} ms, max ${Math.max(...latencies).toFixed(0)} ms over ${REQUESTS} requests`,
  );
  console.log(`server RSS: ${mem.rss.toFixed(0)} MiB now, ${mem.peak.toFixed(0)} MiB at its peak`);
  for (const c of clients) c.close();
} finally {
  if (server && server.exitCode === null) {
    const exited = new Promise((r) => server!.once('exit', r));
    server.kill('SIGTERM');
    await exited;
  }
  rmSync(work, { recursive: true, force: true });
}
