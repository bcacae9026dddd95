/**
 * The dashboard server over a run directory written by hand (the files a head search writes, see
 * runs/rundir.ts): what the snapshot holds, the events that follow appended lines (a line still being written
 * waits; a rewritten log starts the client over), replay after a reconnect, and who may connect.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { appendFileSync, mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { hostname, networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { PAGE_SCRIPT } from '../../src/dashboard/page.js';
import { type Dashboard, startDashboard } from '../../src/dashboard/server.js';
import {
  accessPolicy,
  dashboard,
  type GenepruneError,
  hostHeaderName,
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
  /** Each event's data line as it came, to compare what two clients were sent. */
  const raw: string[] = [];
  let buffer = '';
  let wake: (() => void) | undefined;
  let answer: ((r: { status: number; body: string }) => void) | undefined;
  const answered = new Promise<{ status: number; body: string }>((r) => {
    answer = r;
  });
  const req = request(
    `${url}events`,
    { headers: lastEventId ? { 'last-event-id': lastEventId } : {} },
    (res) => {
      res.setEncoding('utf8');
      if (res.statusCode !== 200) {
        let body = '';
        res.on('data', (c: string) => {
          body += c;
        });
        res.on('end', () => answer?.({ status: res.statusCode ?? 0, body }));
        return;
      }
      answer?.({ status: 200, body: '' });
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
          if (data !== undefined) {
            events.push({ id: field('id') ?? '', event: field('event') ?? '', data: JSON.parse(data) });
            raw.push(data);
          }
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
    raw,
    /** The response's status (and its body when it is not the event stream). */
    answered,
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

  test("a block search under way: its position from the log, or from the search's own report when given", async () => {
    const dir = join(work, 'ga-wanda-run');
    mkdirSync(dir);
    writeFileSync(
      join(dir, 'config.json'),
      JSON.stringify({
        kind: 'geneprune-weight-prune',
        version: 1,
        method: 'ga-wanda',
        methodDescription: { population: 8, generations: 10 },
        settings: { method: 'ga-wanda', metric: 'ppl', generations: 4, population: 2 },
        model: { shape: { numLayers: 3 } },
      }),
    );
    const line = (block: number, generation: number, quality: number, ms: number) =>
      `${JSON.stringify({ block, generation, quality, sparsity: 0.5, ms })}\n`;
    writeFileSync(
      join(dir, 'search-state.json'),
      // A seeded GA's block report, as it writes it: the best as bestQuality (the metric's value), its sparsity.
      JSON.stringify({
        done: 1,
        seconds: 10,
        reports: [{ layer: 0, sparsity: 0.5, seedQuality: 4.2, bestQuality: 4, generations: 4 }],
      }),
    );
    writeFileSync(
      join(dir, 'evals.jsonl'),
      [
        line(0, 0, 4.2, 900),
        line(0, 4, 4, 900),
        // Block 1: the initial population, generation 1, and the first child of generation 2.
        line(1, 0, 6, 500),
        line(1, 0, 5.5, 700),
        line(1, 1, 5.8, 400),
        line(1, 1, 5.2, 400),
        line(1, 2, 5, 1000),
      ].join(''),
    );
    const d = await startDashboard({ runDir: dir, pollMs: 20 });
    try {
      const state = async () =>
        (await (await fetch(`${d.url}api/state`)).json()) as {
          meta: Record<string, unknown> & { search: Record<string, unknown> | null };
          evals: Array<Record<string, unknown>>;
          generations: Array<Record<string, unknown>>;
          specs: Record<string, unknown>;
        };
      let s = await state();
      // Block 1 (0-based) has reported generation 1 of 4: 1.25 of 3 blocks; 10 s checkpointed + 3.0 s scoring.
      assert.deepEqual(s.meta.search, {
        block: 1,
        generation: 1,
        generations: 4,
        seconds: 13,
        share: 1.25 / 3,
        eta: (13 / (1.25 / 3)) * (1 - 1.25 / 3),
        bestScore: 5,
        bestSparsity: 0.5,
        from: 'log',
      });
      assert.equal(s.meta.searchSeconds, 13);
      assert.equal(s.meta.etaSeconds, s.meta.search!.eta);
      assert.equal(s.meta.done, 1, 'finished blocks');
      assert.deepEqual(
        s.generations.map((g) => [g.generation, g.bestScore, g.bestSparsity]),
        [[0, 4, 0.5]],
        "the finished block's best, the point of the best-per-block plot",
      );
      assert.equal(s.meta.fixedSparsity, true);
      assert.equal(s.specs.scatterField, 'step');
      assert.deepEqual(
        s.evals.map((p) => [p.generation, p.step]),
        [
          [0, 0],
          [0, 4],
          [1, 0],
          [1, 0],
          [1, 1],
          [1, 1],
          [1, 2],
        ],
      );
      // The search's own report (a dashboard inside the searching process) is what the page shows.
      const report = {
        layer: 1,
        layers: 3,
        generation: 2,
        generations: 4,
        metric: 'ppl' as const,
        best: 4.9,
        bestSparsity: 0.5,
        evaluations: 12,
        seconds: 15,
      };
      d.setLive('block 2/3 · generation 2/4', report);
      await d.refresh();
      s = await state();
      assert.deepEqual(s.meta.search, {
        block: 1,
        generation: 2,
        generations: 4,
        seconds: 15,
        share: 0.5,
        eta: 15,
        bestScore: 4.9,
        bestSparsity: 0.5,
        from: 'process',
      });
      assert.equal(s.meta.live, 'block 2/3 · generation 2/4');
      // A line without a report keeps the last report; a report older than the checkpoint gives way to the files,
      // except the fixed block's final generation.
      d.setLive('1/3 blocks');
      await d.refresh();
      assert.equal((await state()).meta.search!.from, 'process');
      d.setLive('block 1/3 · generation 3/4', { ...report, layer: 0, generation: 3 });
      await d.refresh();
      assert.equal((await state()).meta.search!.from, 'log');
      // The block just fixed, at its final generation, is still where the search stands (the line says so too).
      d.setLive('block 1/3 · generation 4/4', { ...report, layer: 0, generation: 4 });
      await d.refresh();
      assert.deepEqual(
        [(await state()).meta.search!.from, (await state()).meta.search!.block],
        ['process', 0],
      );
    } finally {
      await d.close();
    }
  });

  test('the paper GA: its points by sparsity, no best from the log (its fitness weighs sparsity); with N:M fixed', async () => {
    for (const [settings, fixed] of [
      [{ method: 'ga', metric: 'ppl' }, false],
      [{ method: 'ga', metric: 'ppl', pattern: '2:4' }, true],
    ] as const) {
      const dir = join(work, `ga-run-${fixed}`);
      mkdirSync(dir);
      writeFileSync(
        join(dir, 'config.json'),
        JSON.stringify({
          kind: 'geneprune-weight-prune',
          version: 1,
          method: 'ga',
          methodDescription: { generations: 5 },
          settings,
          model: { shape: { numLayers: 2 } },
        }),
      );
      writeFileSync(
        join(dir, 'evals.jsonl'),
        `${JSON.stringify({ block: 0, generation: 0, quality: 4, sparsity: 0.05, ms: 100 })}\n`,
      );
      const d = await startDashboard({ runDir: dir, pollMs: 20 });
      try {
        const s = (await (await fetch(`${d.url}api/state`)).json()) as {
          meta: { fixedSparsity: boolean; search: Record<string, unknown> };
          specs: { scatterField: string };
        };
        assert.equal(s.meta.fixedSparsity, fixed);
        assert.equal(s.specs.scatterField, fixed ? 'step' : 'sparsity');
        assert.equal(s.meta.search.bestScore, fixed ? 4 : null);
        assert.deepEqual(
          [s.meta.search.block, s.meta.search.generation, s.meta.search.generations],
          [0, 0, 5],
        );
      } finally {
        await d.close();
      }
    }
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
    for (const h of ['127.0.0.1:8080', 'localhost:1', 'LOCALHOST', '[::1]:9000', '[::1]', '::1'])
      assert.ok(isLoopbackHostHeader(h), h);
    for (const h of [
      'evil.example',
      'evil.example:8080',
      '127.0.0.1.evil.example',
      '10.0.0.2:80',
      '[::1',
      undefined,
    ])
      assert.ok(!isLoopbackHostHeader(h), String(h));
    assert.deepEqual(['Box.Example:80', '[FE80::1]:8080', 'fe80::1', '10.0.0.2', ''].map(hostHeaderName), [
      'box.example',
      'fe80::1',
      'fe80::1',
      '10.0.0.2',
      undefined,
    ]);
    // The default and every loopback --host: this machine only, under a loopback name, whatever the address.
    for (const listen of [undefined, '127.0.0.1', 'localhost', '::1', '[::1]', '127.0.0.2']) {
      const p = accessPolicy(listen);
      assert.equal(p.remote, false, String(listen));
      assert.equal(requestAllowed(p, '127.0.0.1', '127.0.0.1:1'), true);
      assert.equal(requestAllowed(p, '::1', 'localhost'), true);
      assert.equal(requestAllowed(p, '::1', '[::1]:8080'), true);
      assert.equal(requestAllowed(p, '10.1.2.3', '127.0.0.1:1'), false);
      for (const evil of [
        'attacker.example',
        'attacker.example:8080',
        'localhost.attacker.example',
        '',
        undefined,
      ])
        assert.equal(requestAllowed(p, '127.0.0.1', evil), false, `${listen} ${evil}`);
    }
    // A host name that resolved to a loopback address is this machine only too, and answers to its own name.
    const named = accessPolicy('dev.box', '127.0.0.1');
    assert.equal(named.remote, false);
    assert.equal(requestAllowed(named, '127.0.0.1', 'dev.box:5000'), true);
    assert.equal(requestAllowed(named, '127.0.0.1', 'attacker.example'), false);
    // Another name or address: others may connect, naming it (or the address it resolved to), with any port.
    const lan = accessPolicy('Box.Example', '10.0.0.5');
    assert.equal(lan.remote, true);
    for (const h of ['box.example', 'BOX.EXAMPLE:8080', '10.0.0.5', '10.0.0.5:80'])
      assert.equal(requestAllowed(lan, '10.1.2.3', h), true, h);
    for (const h of ['attacker.example', 'localhost', '127.0.0.1', '10.0.0.6', undefined])
      assert.equal(requestAllowed(lan, '10.1.2.3', h), false, String(h));
    // Every interface: this machine's addresses, its host name and the loopback names; never any Host.
    for (const listen of ['0.0.0.0', '::']) {
      const all = accessPolicy(listen);
      assert.equal(all.remote, true);
      const own = Object.values(networkInterfaces())
        .flat()
        .map((i) => i!.address);
      for (const h of [
        ...own.map((a) => (a.includes(':') ? `[${a}]:80` : `${a}:80`)),
        hostname(),
        'localhost',
      ])
        assert.equal(requestAllowed(all, '10.1.2.3', h), true, h);
      for (const h of ['attacker.example', '0.0.0.0', '203.0.113.9', undefined])
        assert.equal(requestAllowed(all, '10.1.2.3', h), false, String(h));
    }
    // allowRemote only widens who may connect, never the Host names.
    assert.equal(
      requestAllowed({ ...accessPolicy(undefined), remote: true }, '10.1.2.3', 'evil.example'),
      false,
    );
  });

  test('a request naming another host is refused (DNS rebinding)', async () => {
    await withServer(runDir(1), async (d) => {
      const r = await get(`${d.url}api/state`, 'evil.example');
      assert.equal(r.status, 403);
      assert.match(r.body, /^geneprune dashboard: only this machine may connect, naming it localhost/);
      assert.ok(!r.body.includes(HOSTILE));
      assert.equal((await get(`${d.url}api/state`)).status, 200);
    });
  });

  test('an explicit loopback --host keeps the Host check: 127.0.0.1, localhost, ::1', async () => {
    const dir = runDir(1);
    for (const host of ['127.0.0.1', 'localhost', '::1']) {
      // As the CLI starts it when --host is given: no allowRemote, the policy follows from the address
      // (localhost on a thread of its own, as heads|weights --dashboard --host start it).
      const d = await dashboard({ runDir: dir, host, thread: host === 'localhost' });
      try {
        const origin = d.url.includes('[::1]')
          ? 'http://[::1]'
          : host === 'localhost'
            ? 'http://localhost'
            : `http://${host}`;
        const at = `${origin}:${d.port}/api/state`;
        const evil = await get(at, 'attacker.example');
        assert.equal(evil.status, 403, `${host}: a rebound name was answered`);
        assert.ok(!evil.body.includes('geneprune-head-search') && !evil.body.includes('"meta"'));
        assert.equal((await get(at, `attacker.example:${d.port}`)).status, 403);
        for (const ok of [`localhost:${d.port}`, `127.0.0.1:${d.port}`, `[::1]:${d.port}`, 'localhost'])
          assert.equal((await get(at, ok)).status, 200, `${host}: Host ${ok}`);
      } finally {
        await d.close();
      }
    }
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

describe('who may connect to an address of the network', () => {
  const external = Object.values(networkInterfaces())
    .flat()
    .find((i) => i && i.family === 'IPv4' && !i.internal)?.address;
  test("--host ADDRESS answers others naming that address, never another Host; 0.0.0.0 adds this machine's names", {
    skip: external ? false : 'this machine has no non-loopback IPv4 address',
  }, async () => {
    const dir = runDir(1);
    const named = await dashboard({ runDir: dir, host: external! });
    try {
      const at = `http://${external}:${named.port}/api/state`;
      assert.equal((await get(at)).status, 200);
      assert.equal((await get(at, `${external}`)).status, 200);
      for (const evil of ['attacker.example', `attacker.example:${named.port}`, 'localhost'])
        assert.equal((await get(at, evil)).status, 403, evil);
    } finally {
      await named.close();
    }
    const all = await dashboard({ runDir: dir, host: '0.0.0.0' });
    try {
      for (const [at, host] of [
        [external, undefined],
        [external, hostname()],
        ['127.0.0.1', 'localhost'],
        ['127.0.0.1', external],
      ])
        assert.equal((await get(`http://${at}:${all.port}/api/state`, host)).status, 200, `${at} ${host}`);
      for (const evil of ['attacker.example', '0.0.0.0', `attacker.example:${all.port}`]) {
        const r = await get(`http://${external}:${all.port}/api/state`, evil);
        assert.equal(r.status, 403, evil);
        assert.match(r.body, /^geneprune dashboard: the request named a host this server was not started as/);
      }
    } finally {
      await all.close();
    }
  });
});

describe('many clients', () => {
  test('the whole view is serialised once per change, however many clients ask for it', async () => {
    const dir = runDir(50);
    const d = await startDashboard({ runDir: dir, pollMs: 20 });
    const clients: Array<ReturnType<typeof openEvents>> = [];
    try {
      const before = d.stats().snapshotSerializations;
      for (let i = 0; i < 8; i++) clients.push(openEvents(d.url));
      const states = await Promise.all(Array.from({ length: 4 }, () => get(`${d.url}api/state`)));
      for (const c of clients) await c.next(1);
      assert.equal(d.stats().clients, 8);
      // The first read of the run was published as a snapshot: that JSON is the one every client is given.
      assert.equal(before, 1);
      assert.equal(d.stats().snapshotSerializations, 1, '8 clients and 4 requests, one run: one JSON');
      // Every one of them was given the same bytes.
      for (const c of clients) assert.equal(c.raw[0], states[0].body);
      for (const r of states) assert.equal(r.body, states[0].body);
      // A change is sent to the connected clients as an append (no whole view); the next who asks gets the
      // view made once more, and the one after shares it.
      appendFileSync(join(dir, 'evals.jsonl'), evalLine(1, 0, 4.5));
      for (const c of clients) assert.equal((await c.next(2)).event, 'append');
      const mid = d.stats().snapshotSerializations;
      const later = await get(`${d.url}api/state`);
      const latest = openEvents(d.url);
      clients.push(latest);
      await latest.next(1);
      assert.equal(d.stats().snapshotSerializations - mid, 1);
      assert.equal(latest.raw[0], later.body);
      assert.equal((JSON.parse(later.body) as { evals: unknown[] }).evals.length, 51);
      // The view kept up to date by appends reads as the one a fresh server makes of the same files.
      const fresh = await startDashboard({ runDir: dir });
      try {
        assert.deepEqual(JSON.parse(later.body), JSON.parse((await get(`${fresh.url}api/state`)).body));
      } finally {
        await fresh.close();
      }
    } finally {
      for (const c of clients) c.close();
      await d.close();
    }
  });

  test('a live client past the bound is refused with a 503; a freed place is taken again', async () => {
    const d = await startDashboard({ runDir: runDir(1), pollMs: 20, maxClients: 2 });
    const clients: Array<ReturnType<typeof openEvents>> = [];
    try {
      for (let i = 0; i < 2; i++) {
        clients.push(openEvents(d.url));
        await clients[i].next(1);
      }
      const third = openEvents(d.url);
      clients.push(third);
      const refused = await third.answered;
      assert.equal(refused.status, 503);
      assert.equal(
        refused.body,
        'geneprune dashboard: 2 live pages are open already; close one and load this page again\n',
      );
      assert.equal(d.stats().clients, 2);
      // The rest of the dashboard still answers.
      assert.equal((await get(`${d.url}api/state`)).status, 200);
      clients[0].close();
      const until = Date.now() + 5000;
      while (d.stats().clients > 1) {
        assert.ok(Date.now() < until, 'a closed client kept its place');
        await sleep(20);
      }
      const fourth = openEvents(d.url);
      clients.push(fourth);
      assert.equal((await fourth.answered).status, 200);
      assert.equal((await fourth.next(1)).event, 'snapshot');
    } finally {
      for (const c of clients) c.close();
      await d.close();
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
