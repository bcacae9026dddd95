/**
 * `geneprune dashboard RUN_DIR` and the search commands' dashboard flags as a user meets them: refusals in one
 * line, the URL on stderr, a clean stop on SIGTERM and SIGINT, and a weight search followed block by block.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { formatSeconds } from '../../src/cli/settings.js';
import { assertOneLineError, runCli, spawnCli } from '../helpers/cli.js';
import { CALIB, EVAL, sharedPath, skipUnlessShared } from '../shared.js';

const work = mkdtempSync(join(tmpdir(), 'geneprune-dashboard-cli-'));
after(() => rmSync(work, { recursive: true, force: true }));

test('a run directory that does not exist, or holds no run, is refused in one line', () => {
  const missing = join(work, 'missing');
  assertOneLineError(runCli(['dashboard', missing]), 1, missing, 'does not exist');
  const empty = join(work, 'empty');
  mkdirSync(empty);
  writeFileSync(join(empty, 'config.json'), '{"kind":"something else"}');
  assertOneLineError(runCli(['dashboard', empty]), 1, empty, 'not a geneprune run directory');
});

test('bad ports and --host without --dashboard are refused in one line', () => {
  assertOneLineError(runCli(['dashboard', work, '--port', '70000']), 2, '--port');
  assertOneLineError(
    runCli(['heads', '--calib', 'x', '--eval', 'y', '--out', join(work, 'h'), '--host', '0.0.0.0']),
    2,
    '--host',
  );
  assertOneLineError(
    runCli(['weights', '--calib', 'x', '--eval', 'y', '--out', join(work, 'w'), '--dashboard', 'http']),
    2,
    '--dashboard',
  );
});

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  test(`dashboard serves a run until ${signal}, then exits 0`, async () => {
    const dir = join(work, `run-${signal}`);
    mkdirSync(dir);
    writeFileSync(
      join(dir, 'config.json'),
      JSON.stringify({
        kind: 'geneprune-head-search',
        version: 1,
        method: 'ga',
        settings: { generations: 2 },
      }),
    );
    const child = spawnCli(['dashboard', dir], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr!.setEncoding('utf8');
    const url = await new Promise<string>((resolve, reject) => {
      child.stderr!.on('data', (d: string) => {
        stderr += d;
        const m = /^dashboard: (http:\/\/127\.0\.0\.1:\d+\/) \(Ctrl-C to stop\)$/m.exec(stderr);
        if (m) resolve(m[1]);
      });
      child.on('exit', () => reject(new Error(stderr)));
    });
    const state = (await (await fetch(`${url}api/state`)).json()) as {
      meta: { status: string; name: string };
    };
    assert.equal(state.meta.name, `run-${signal}`);
    assert.equal(state.meta.status, 'stopped');
    const exited = new Promise<[number | null, string | null]>((r) => child.on('exit', (c, s) => r([c, s])));
    child.kill(signal);
    assert.deepEqual(await exited, [0, null], stderr);
  });
}

test('dashboard --host 127.0.0.1 still refuses a request naming another host (DNS rebinding)', async () => {
  const dir = join(work, 'run-host');
  mkdirSync(dir);
  writeFileSync(
    join(dir, 'config.json'),
    JSON.stringify({ kind: 'geneprune-head-search', version: 1, method: 'ga', settings: { generations: 2 } }),
  );
  const child = spawnCli(['dashboard', dir, '--host', '127.0.0.1'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.setEncoding('utf8');
  const exited = new Promise<[number | null, string | null]>((r) => child.on('exit', (c, s) => r([c, s])));
  try {
    const url = await new Promise<string>((resolve, reject) => {
      child.stderr!.on('data', (d: string) => {
        stderr += d;
        const m = /^dashboard: (http:\/\/127\.0\.0\.1:\d+\/) \(Ctrl-C to stop\)$/m.exec(stderr);
        if (m) resolve(m[1]);
      });
      child.on('exit', () => reject(new Error(stderr)));
    });
    // What `curl -H 'Host: attacker.example'` sends; fetch cannot set Host, so a raw request.
    const ask = (host: string) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = request(`${url}api/state`, { headers: { host } }, (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => {
            body += c;
          });
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        });
        req.on('error', reject);
        req.end();
      });
    const evil = await ask('attacker.example');
    assert.equal(evil.status, 403);
    assert.ok(!evil.body.includes('run-host'), 'no run state to a rebound name');
    assert.equal((await ask(new URL(url).host)).status, 200);
    child.kill('SIGTERM');
    assert.deepEqual(await exited, [0, null], stderr);
  } finally {
    child.kill('SIGKILL');
  }
});

test('weights --dashboard follows a block-wise search: the block counter advances, every candidate a point', {
  skip: skipUnlessShared(CALIB, EVAL),
  timeout: 300_000,
}, async () => {
  const out = join(work, 'weights-run');
  const child = spawnCli(
    [
      'weights',
      ...['--calib', sharedPath(CALIB)!, '--eval', sharedPath(EVAL)!],
      ...['--method', 'ga-magnitude', '--sparsity', '0.3', '--population', '4', '--generations', '3'],
      ...['--calib-tokens', '2048', '--eval-tokens', '512', '--out', out, '--dashboard', '0'],
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stderr = '';
  child.stderr!.setEncoding('utf8');
  const exited = new Promise<[number | null, string | null]>((r) => child.on('exit', (c, s) => r([c, s])));
  try {
    const url = await new Promise<string>((resolve, reject) => {
      child.stderr!.on('data', (d: string) => {
        stderr += d;
        const m = /dashboard: (http:\/\/127\.0\.0\.1:\d+\/)/.exec(stderr);
        if (m) resolve(m[1]);
      });
      child.on('exit', () => reject(new Error(stderr)));
    });
    type State = {
      meta: { status: string; done: number; total: number; unit: string };
      evals: Array<{ generation: number; sparsity: number; score: number }>;
    };
    const seen: Array<{ done: number; points: number }> = [];
    let state: State;
    const until = Date.now() + 240_000;
    for (;;) {
      state = (await (await fetch(`${url}api/state`)).json()) as State;
      if (state.meta.status === 'running') seen.push({ done: state.meta.done, points: state.evals.length });
      if (state.meta.status === 'finished') break;
      assert.ok(Date.now() < until, `the run did not finish: ${stderr}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    // stories260K has 5 blocks; the page saw some finish while the run was going.
    assert.equal(state.meta.unit, 'block');
    assert.equal(state.meta.total, 5);
    assert.equal(state.meta.done, 5);
    // Every candidate the search scored is a point, coloured by its block: 4 initial + 3 generations × 4
    // children per block, as evals.jsonl logs them.
    const logged = readFileSync(join(out, 'evals.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    assert.equal(logged.length, 5 * (4 + 3 * 4));
    assert.equal(state.evals.length, logged.length);
    for (let b = 0; b < 5; b++)
      assert.equal(state.evals.filter((p) => p.generation === b).length, 16, `block ${b}`);
    assert.deepEqual(
      state.evals.map((p) => p.score),
      logged.map((l) => l.quality),
    );
    const dones = new Set(seen.map((s) => s.done));
    assert.ok(dones.size >= 2, `the block counter advanced while running: ${[...dones].join(', ')}`);
    assert.ok(seen[0].points < logged.length, 'the page saw the run before every candidate was scored');
    assert.match(stderr, /the run has finished; still serving/);
    child.kill('SIGINT');
    assert.deepEqual(await exited, [0, null], stderr);
  } finally {
    child.kill('SIGKILL');
  }
});

test('weights --method ga-wanda --dashboard: block, generation, search time, ETA and best so far agree with the progress line', {
  skip: skipUnlessShared(CALIB, EVAL),
  timeout: 300_000,
}, async () => {
  const out = join(work, 'ga-wanda-run');
  const generations = 6;
  const child = spawnCli(
    [
      'weights',
      ...['--calib', sharedPath(CALIB)!, '--eval', sharedPath(EVAL)!],
      ...[
        '--method',
        'ga-wanda',
        '--sparsity',
        '0.5',
        '--population',
        '4',
        '--generations',
        `${generations}`,
      ],
      ...['--calib-tokens', '4096', '--eval-tokens', '512', '--out', out, '--dashboard', '0'],
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stderr = '';
  child.stderr!.setEncoding('utf8');
  const exited = new Promise<[number | null, string | null]>((r) => child.on('exit', (c, s) => r([c, s])));
  try {
    const url = await new Promise<string>((resolve, reject) => {
      child.stderr!.on('data', (d: string) => {
        stderr += d;
        const m = /dashboard: (http:\/\/127\.0\.0\.1:\d+\/)/.exec(stderr);
        if (m) resolve(m[1]);
      });
      child.on('exit', () => reject(new Error(stderr)));
    });
    type Search = {
      block: number;
      generation: number;
      generations: number | null;
      seconds: number;
      bestScore: number | null;
      bestSparsity: number | null;
      from: string;
    };
    type State = {
      meta: {
        status: string;
        done: number;
        total: number;
        searchSeconds: number;
        etaSeconds: number | null;
        live: string | null;
        search: Search | null;
        fixedSparsity: boolean;
      };
      evals: Array<{ generation: number; step: number; sparsity: number; score: number }>;
      specs: { scatterField: string };
    };
    // The CLI's own line: ga-wanda · block b/L, generation g/G · best ppl X at S % · R evals/s · ETA T (or ?).
    const LINE =
      /^ga-wanda · block (\d+)\/(\d+), generation (\d+)\/(\d+) · best ppl (\d+\.\d{4}) at (\d+\.\d) % · [\d.]+ evals\/s · ETA (\S+)$/;
    let state: State;
    let compared = 0;
    let firstBlockTimed = 0;
    const blocksSeen = new Set<number>();
    const until = Date.now() + 240_000;
    for (;;) {
      state = (await (await fetch(`${url}api/state`)).json()) as State;
      const { meta } = state;
      const m = meta.live ? LINE.exec(meta.live) : null;
      if (meta.status === 'running' && meta.search?.from === 'process' && m) {
        const [b, L, g, G] = [1, 2, 3, 4].map((i) => Number(m[i]));
        const s = meta.search;
        // The page's counters: the block being searched (1-based, as the line), its generation, the blocks.
        assert.deepEqual([s.block + 1, meta.total, s.generation, s.generations], [b, L, g, G], meta.live!);
        assert.equal(s.bestScore?.toFixed(4), m[5], 'best so far');
        assert.equal((100 * s.bestSparsity!).toFixed(1), m[6]);
        // ETA: the line's rounded seconds, and by hand from the page's own search time and position.
        const share = (b - 1 + g / G) / L;
        if (m[7] === '?') assert.equal(meta.etaSeconds, null);
        else {
          assert.equal(formatSeconds(meta.etaSeconds!), m[7]);
          assert.ok(Math.abs(meta.etaSeconds! - (meta.searchSeconds / share) * (1 - share)) < 1e-6);
        }
        assert.ok(meta.searchSeconds > 0, 'search time');
        if (b === 1 && g > 0) firstBlockTimed++;
        blocksSeen.add(b);
        compared++;
      }
      if (meta.status === 'finished') break;
      assert.ok(Date.now() < until, `the run did not finish: ${stderr}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(compared >= 3, `compared the page with the line ${compared} times`);
    // The case the page got wrong: inside the first block (no block finished yet) it showed block 0, 0.0 s, no ETA.
    assert.ok(firstBlockTimed > 0, 'seen inside the first block with a search time and an ETA');
    assert.ok(blocksSeen.size >= 2, `followed blocks ${[...blocksSeen].join(', ')}`);
    // ga-wanda keeps the seed's budget: every candidate at one sparsity, so the plot's x axis is the generation.
    assert.equal(state.meta.fixedSparsity, true);
    assert.equal(state.specs.scatterField, 'step');
    assert.equal(new Set(state.evals.map((p) => p.sparsity)).size, 1);
    const steps = new Set(state.evals.map((p) => p.step));
    assert.deepEqual(
      [...steps].sort((a, b) => a - b),
      Array.from({ length: generations + 1 }, (_, i) => i),
    );
    assert.equal(state.meta.search, null, 'a finished run has no search under way');
    child.kill('SIGINT');
    assert.deepEqual(await exited, [0, null], stderr);
  } finally {
    child.kill('SIGKILL');
  }
});
