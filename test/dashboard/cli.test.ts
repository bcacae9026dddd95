/**
 * `geneprune dashboard RUN_DIR` and the search commands' dashboard flags as a user meets them: refusals in one
 * line, the URL on stderr, a clean stop on SIGTERM and SIGINT.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { assertOneLineError, runCli, spawnCli } from '../helpers/cli.js';

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
