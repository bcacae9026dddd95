/**
 * The dashboard server over a run directory written by hand (the files a head search writes, see
 * runs/rundir.ts): what the snapshot holds, the events that follow appended lines (a line still being written
 * waits; a rewritten log starts the client over), replay after a reconnect, and who may connect.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { appendFileSync, mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { PAGE_SCRIPT } from '../../src/dashboard/page.js';
import { type Dashboard, startDashboard } from '../../src/dashboard/server.js';
import {
  dashboard,
  type GenepruneError,
  isLoopbackAddress,
  isLoopbackHostHeader,
  requestAllowed,
} from '../../src/index.js';

const HOSTILE = '<script>window.pwned=1</script>';
/** A directory name cannot hold '/': a script tag and an image whose error handler would run if parsed as HTML. */
const HOSTILE_NAME = '<script>x<img src=x onerror=window.pwned=1>';
const work = mkdtempSync(join(tmpdir(), 'geneprune-dashboard-'));
after(() => rmSync(work, { recursive: true, force: true }));

let runs = 0;
/** A GA head run of 2 layers × 2 heads with `evals` evaluations of generation 0 logged and one generation. */
function runDir(evals = 3): string {
  const dir = join(work, `run-${runs++}-${HOSTILE_NAME}`);
  mkdirSync(dir);
  writeFileSync(
    join(dir, 'config.json'),
    JSON.stringify({
      kind: 'geneprune-head-search',
      version: 1,
      method: `ga${HOSTILE}`,
      settings: { method: 'ga', metric: 'ppl', generations: 4, population: 3, targetSparsity: 0.25 },
      model: { path: `/models/${HOSTILE}.bin`, shape: { numLayers: 2, queryHeads: [2, 2], kvHeads: [1, 1] } },
    }),
  );
  writeFileSync(join(dir, 'evals.jsonl'), Array.from({ length: evals }, (_, i) => evalLine(0, i)).join(''));
  writeFileSync(join(dir, 'generations.jsonl'), generationLine(0));
  return dir;
}

function evalLine(generation: number, index: number, quality = 5 + index): string {
  return `${JSON.stringify({ generation, index, genome: '1011', sparsity: 0.25, quality, metric: 'ppl', fitness: -quality / 4, fidelity: 'full', tokens: 512, cached: false, ms: 100 })}\n`;
}

function generationLine(generation: number): string {
  return `${JSON.stringify({ generation, bestFitness: -1.25, bestQuality: 5, bestSparsity: 0.25, meanFitness: -1.5, evaluations: 3, best: { genome: '1101', fitness: -1.25, quality: 5, sparsity: 0.25 } })}\n`;
}

interface SseEvent {
  id: string;
  event: string;
  data: Record<string, unknown>;
}

/** A server-sent event stream read as a test does: events arrive in `events`; `next` waits for the n-th. */
function openEvents(url: string, lastEventId?: string) {
  const events: SseEvent[] = [];
  let buffer = '';
  let wake: (() => void) | undefined;
  const req = request(
    `${url}events`,
    { headers: lastEventId ? { 'last-event-id': lastEventId } : {} },
    (res) => {
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        buffer += chunk;
        let cut = buffer.indexOf('\n\n');
        while (cut >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          const field = (name: string) =>
            block
              .split('\n')
              .find((l) => l.startsWith(`${name}: `))
              ?.slice(name.length + 2);
          const data = field('data');
          if (data !== undefined)
            events.push({ id: field('id') ?? '', event: field('event') ?? '', data: JSON.parse(data) });
          cut = buffer.indexOf('\n\n');
        }
        wake?.();
      });
    },
  );
  req.on('error', () => {});
  req.end();
  return {
    events,
    async next(n: number, timeoutMs = 5000): Promise<SseEvent> {
      const until = Date.now() + timeoutMs;
      while (events.length < n) {
        if (Date.now() > until) throw new Error(`expected ${n} events, got ${events.length}`);
        await new Promise<void>((r) => {
          wake = r;
          setTimeout(r, 50);
        });
      }
      return events[n - 1];
    },
    close: () => req.destroy(),
  };
}

/** GET with a chosen Host header (fetch cannot set one). */
function get(
  url: string,
  host?: string,
): Promise<{ status: number; body: string; headers: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { headers: host ? { host } : {} }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => {
        body += c;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
    });
    req.on('error', reject);
    req.end();
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function withServer(dir: string, fn: (d: Dashboard) => Promise<void>): Promise<void> {
  const d = await startDashboard({ runDir: dir, pollMs: 20 });
  try {
    await fn(d);
  } finally {
    await d.close();
  }
}

describe('dashboard server', () => {
  test('the snapshot holds the run as its files say, run text unchanged (the page sets it as text)', async () => {
    const dir = runDir(3);
    await withServer(dir, async (d) => {
      assert.match(d.url, /^http:\/\/127\.0\.0\.1:\d+\/$/);
      const r = await fetch(`${d.url}api/state`);
      assert.equal(r.headers.get('content-type'), 'application/json; charset=utf-8');
      const s = (await r.json()) as {
        meta: Record<string, unknown>;
        evals: Array<Record<string, unknown>>;
        generations: unknown[];
      };
      assert.equal(s.meta.name, `run-0-${HOSTILE_NAME}`);
      assert.equal(s.meta.method, `ga${HOSTILE}`);
      assert.equal(s.meta.model, `/models/${HOSTILE}.bin`);
      assert.equal(s.meta.status, 'stopped', 'no lock, no result: a run that stopped');
      assert.equal(s.meta.kind, 'heads');
      assert.deepEqual(s.meta.layers, [2, 2]);
      assert.equal(s.meta.done, 1);
      assert.equal(s.meta.total, 4);
      assert.equal(s.evals.length, 3);
      assert.deepEqual(
        s.evals.map((e) => e.score),
        [5, 6, 7],
      );
      assert.equal(s.generations.length, 1);
      // 3 evaluations of 100 ms made 1 generation: 0.3 s per generation, 3 to go.
      assert.equal(s.meta.searchSeconds, 0.3);
      assert.ok(Math.abs((s.meta.etaSeconds as number) - 0.9) < 1e-9);
      assert.deepEqual(s.meta.best, {
        genome: '1101',
        score: 5,
        sparsity: 0.25,
        fitness: -1.25,
        from: 'search',
      });
      const page = await get(d.url);
      assert.equal(page.status, 200);
      assert.ok(!page.body.includes('pwned'), 'the page itself carries no run data');
      assert.match(String(page.headers['content-security-policy']), /script-src 'self' 'unsafe-eval';/);
      for (const asset of ['vega.min.js', 'vega-lite.min.js']) {
        const a = await get(`${d.url}assets/${asset}`);
        assert.equal(a.status, 200);
        assert.ok(a.body.length > 100_000, `${asset} is served from node_modules`);
      }
      assert.equal((await get(`${d.url}assets/..%2Fpackage.json`)).status, 404);
    });
  });

  test("the page's script never parses run data as HTML", () => {
    for (const sink of ['innerHTML', 'outerHTML', 'insertAdjacentHTML', 'document.write', 'eval('])
      assert.ok(!PAGE_SCRIPT.includes(sink), `page script uses ${sink}`);
  });

  test('appended lines arrive as appends; a line still being written waits for its newline', async () => {
    const dir = runDir(2);
    await withServer(dir, async (d) => {
      const sse = openEvents(d.url);
      try {
        const first = await sse.next(1);
        assert.equal(first.event, 'snapshot');
        assert.equal((first.data.evals as unknown[]).length, 2);
        assert.ok(first.data.specs, 'a snapshot carries the plot specs');
        appendFileSync(join(dir, 'evals.jsonl'), evalLine(1, 0, 4.5));
        const second = await sse.next(2);
        assert.equal(second.event, 'append');
        assert.deepEqual(
          (second.data.evals as Array<Record<string, unknown>>).map((e) => [e.n, e.generation, e.score]),
          [[2, 1, 4.5]],
        );
        // Half a line: nothing is sent for it, however long it waits.
        const line = evalLine(1, 1, 4.25);
        appendFileSync(join(dir, 'evals.jsonl'), line.slice(0, 40));
        await sleep(200);
        assert.equal(sse.events.length, 2, 'a partial line sent nothing');
        appendFileSync(join(dir, 'evals.jsonl'), line.slice(40));
        const third = await sse.next(3);
        assert.deepEqual(
          (third.data.evals as Array<Record<string, unknown>>).map((e) => e.score),
          [4.25],
        );
        appendFileSync(join(dir, 'generations.jsonl'), generationLine(1));
        const fourth = await sse.next(4);
        assert.equal((fourth.data.generations as unknown[]).length, 1);
        assert.equal((fourth.data.meta as Record<string, unknown>).done, 2);
        // A finished run: result.json and mask.json replace the best so far.
        writeFileSync(
          join(dir, 'mask.json'),
          JSON.stringify({ keep: [0, 1, 1, 1], info: { calibration: { quality: 4 } } }),
        );
        writeFileSync(
          join(dir, 'result.json'),
          JSON.stringify({
            removed: 1,
            genes: 4,
            calib: { metric: 'ppl', quality: 4, denseQuality: 3 },
            eval: { perplexity: 4.5, densePerplexity: 3.5 },
          }),
        );
        const fifth = await sse.next(5);
        const meta = fifth.data.meta as Record<string, unknown>;
        assert.equal(meta.status, 'finished');
        assert.deepEqual(meta.best, {
          genome: '0111',
          score: 4,
          sparsity: 0.25,
          fitness: null,
          from: 'mask',
        });
        assert.deepEqual((meta.result as string[][])[0], ['removed', '1/4 heads (25.0 %)']);
      } finally {
        sse.close();
      }
    });
  });

  test('a rewritten log (a resumed run) starts every client over; a reconnect replays what it missed', async () => {
    const dir = runDir(3);
    await withServer(dir, async (d) => {
      const sse = openEvents(d.url);
      try {
        const snap = await sse.next(1);
        appendFileSync(join(dir, 'evals.jsonl'), evalLine(1, 0));
        const added = await sse.next(2);
        assert.equal(added.event, 'append');
        // Reconnecting with the snapshot's id replays the append, not a new snapshot.
        const again = openEvents(d.url, snap.id);
        try {
          const replayed = await again.next(1);
          assert.equal(replayed.event, 'append');
          assert.equal(replayed.id, added.id);
        } finally {
          again.close();
        }
        // An id from another server (a restarted run's) gets a fresh snapshot.
        const foreign = openEvents(d.url, 'abcdef:3');
        try {
          assert.equal((await foreign.next(1)).event, 'snapshot');
        } finally {
          foreign.close();
        }
        // --resume rewrites the logs atomically, keeping only finished generations.
        writeFileSync(join(dir, 'evals.tmp'), evalLine(0, 0) + evalLine(0, 1));
        renameSync(join(dir, 'evals.tmp'), join(dir, 'evals.jsonl'));
        const reset = await sse.next(3);
        assert.equal(reset.event, 'snapshot');
        assert.equal((reset.data.evals as unknown[]).length, 2);
        assert.equal((reset.data.generations as unknown[]).length, 1);
      } finally {
        sse.close();
      }
    });
  });

  test("a weight run: each finished block's best is a point, from search-state.json, then state.json", async () => {
    const dir = join(work, 'weights-run');
    mkdirSync(dir);
    const block = (layer: number) => ({
      layer,
      best: { fitness: -1, perplexity: 4 + layer, sparsity: 0.05 },
    });
    writeFileSync(
      join(dir, 'config.json'),
      JSON.stringify({
        kind: 'geneprune-weight-prune',
        version: 1,
        method: 'ga',
        settings: { method: 'ga', metric: 'ppl' },
        model: { shape: { numLayers: 3 } },
      }),
    );
    writeFileSync(
      join(dir, 'search-state.json'),
      JSON.stringify({ done: 2, seconds: 4, reports: [block(0), block(1)] }),
    );
    await withServer(dir, async (d) => {
      const sse = openEvents(d.url);
      try {
        const first = await sse.next(1);
        const meta = first.data.meta as Record<string, unknown>;
        assert.deepEqual([meta.unit, meta.done, meta.total, meta.etaSeconds], ['block', 2, 3, 2]);
        assert.deepEqual(
          (first.data.evals as Array<Record<string, unknown>>).map((e) => [e.generation, e.score]),
          [
            [0, 4],
            [1, 5],
          ],
        );
        writeFileSync(
          join(dir, 'state.json'),
          JSON.stringify({
            stage: 'mask-fixed',
            seconds: 6,
            methodReport: { layers: [block(0), block(1), block(2)] },
          }),
        );
        const next = await sse.next(2);
        assert.equal(next.event, 'append');
        assert.deepEqual(
          (next.data.evals as Array<Record<string, unknown>>).map((e) => [e.generation, e.score]),
          [[2, 6]],
        );
        assert.equal((next.data.meta as Record<string, unknown>).done, 3);
      } finally {
        sse.close();
      }
    });
  });

  test('a directory that is not a run yet waits for one', async () => {
    const dir = join(work, 'later');
    await withServer(dir, async (d) => {
      const sse = openEvents(d.url);
      try {
        const first = await sse.next(1);
        assert.equal((first.data.meta as Record<string, unknown>).status, 'waiting');
        const made = runDir(1);
        renameSync(made, dir);
        const next = await sse.next(2);
        assert.equal(next.event, 'snapshot');
        assert.equal((next.data.evals as unknown[]).length, 1);
      } finally {
        sse.close();
      }
    });
  });
});

describe('who may connect', () => {
  test('the check: loopback addresses and Host names only, unless remote clients are allowed', () => {
    for (const a of ['127.0.0.1', '127.8.9.10', '::1', '::ffff:127.0.0.1'])
      assert.ok(isLoopbackAddress(a), a);
    for (const a of ['10.0.0.2', '192.168.1.4', '::ffff:10.0.0.2', 'fe80::1', '0.0.0.0', '', undefined])
      assert.ok(!isLoopbackAddress(a), String(a));
    for (const h of ['127.0.0.1:8080', 'localhost:1', 'LOCALHOST', '[::1]:9000'])
      assert.ok(isLoopbackHostHeader(h), h);
    for (const h of ['evil.example', 'evil.example:8080', '127.0.0.1.evil.example', '10.0.0.2:80', undefined])
      assert.ok(!isLoopbackHostHeader(h), String(h));
    assert.equal(requestAllowed(false, '127.0.0.1', '127.0.0.1:1'), true);
    assert.equal(requestAllowed(false, '10.1.2.3', '127.0.0.1:1'), false);
    assert.equal(requestAllowed(false, '127.0.0.1', 'evil.example'), false);
    assert.equal(requestAllowed(true, '10.1.2.3', 'evil.example'), true);
  });

  test('a request naming another host is refused (DNS rebinding)', async () => {
    await withServer(runDir(1), async (d) => {
      const r = await get(`${d.url}api/state`, 'evil.example');
      assert.equal(r.status, 403);
      assert.match(r.body, /only this machine/);
      assert.ok(!r.body.includes(HOSTILE));
      assert.equal((await get(`${d.url}api/state`)).status, 200);
    });
  });

  const external = Object.values(networkInterfaces())
    .flat()
    .find((i) => i && i.family === 'IPv4' && !i.internal)?.address;
  test('a client on a non-loopback address is refused unless remote clients are allowed', {
    skip: external ? false : 'this machine has no non-loopback IPv4 address',
  }, async () => {
    const dir = runDir(1);
    for (const allowRemote of [false, true]) {
      const d = await startDashboard({ runDir: dir, host: '0.0.0.0', allowRemote });
      try {
        const r = await get(`http://${external}:${d.port}/api/state`);
        assert.equal(r.status, allowRemote ? 200 : 403, `allowRemote ${allowRemote}`);
        assert.equal((await get(`http://127.0.0.1:${d.port}/api/state`)).status, 200);
      } finally {
        await d.close();
      }
    }
  });
});

describe('on a thread of its own (beside a search)', () => {
  test('answers while the main thread is blocked, shows the live line, and reports a busy port', async () => {
    const dir = runDir(2);
    const d = await dashboard({ runDir: dir, thread: true });
    try {
      d.setLive('gen 3/9  best fitness -4.2');
      await d.refresh();
      const s = (await (await fetch(`${d.url}api/state`)).json()) as { meta: Record<string, unknown> };
      assert.equal(s.meta.live, 'gen 3/9  best fitness -4.2');
      assert.equal(s.meta.name, `run-${runs - 1}-${HOSTILE_NAME}`);
      // A client in another process asks while this thread is held the way a forward pass holds it; it prints
      // the wall clock when its answer came. The server on the main thread could only answer after the hold.
      const child = spawn(
        process.execPath,
        [
          '-e',
          `fetch(${JSON.stringify(`${d.url}api/state`)}).then(async (r) => { await r.text(); console.log(r.status, Date.now()); })`,
        ],
        { stdio: ['ignore', 'pipe', 'inherit'] },
      );
      let out = '';
      child.stdout.on('data', (b) => {
        out += b;
      });
      const closed = new Promise((r) => child.on('close', r));
      const HOLD_MS = 6000;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, HOLD_MS);
      const released = Date.now();
      await closed;
      const [status, at] = out.trim().split(' ').map(Number);
      assert.equal(status, 200);
      assert.ok(at < released, `answered ${at - released} ms after the main thread was free again`);
      // A server that cannot listen leaves nothing running (its polling loop and heartbeat were once left behind,
      // keeping the process up), on this thread or its own.
      const timers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
      const before = timers();
      await assert.rejects(dashboard({ runDir: dir, port: d.port }), /in use/);
      assert.equal(timers(), before, 'timers left by a server that never listened');
      // A second server on the same port fails the way an in-process one does.
      await assert.rejects(
        dashboard({ runDir: dir, thread: true, port: d.port, portFlag: '--dashboard' }),
        (e: GenepruneError) => e.where === '--dashboard' && e.message === `port ${d.port} is in use`,
      );
    } finally {
      await d.close();
    }
    // Closed: the port is free again.
    const again = await dashboard({ runDir: dir, thread: true, port: d.port });
    await again.close();
  });
});
