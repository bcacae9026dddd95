/**
 * Run files that cannot lie, on the real stories260K: state.json records the config and the log bytes it was
 * computed under, so a hand-edited config.json or a truncated or edited evals.jsonl is refused on --resume (one
 * line, nothing changed) instead of being finished as if it applied throughout; SIGTERM and SIGINT remove
 * run.lock and leave a run that resumes to the mask an uninterrupted run chooses.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { tempDir } from '../checkpoint/helpers.js';
import { assertOneLineError, assertUnchanged, runCli, snapshot, spawnCli } from '../helpers/cli.js';
import { gaHeadArgs, maskKeep } from '../helpers/rundir.js';
import { CALIB, EVAL, MODEL, sharedPath, skipUnlessShared } from '../shared.js';

const tmp = tempDir('geneprune-integrity-');
after(tmp.cleanup);

const skip = skipUnlessShared(MODEL, CALIB, EVAL);
const GENERATIONS = 6;

/** The short GA head search these tests run (seed 5). */
const gaArgs = (out: string) => gaHeadArgs(out, GENERATIONS, 5);

const run = (args: string[]) => runCli(args, { timeout: 300_000 });
const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');
const lineCount = (path: string) =>
  existsSync(path) ? readFileSync(path, 'utf8').split('\n').filter(Boolean).length : 0;

/** Starts a run and sends `signal` once it has saved a state after `generations` generations. */
async function stopWith(signal: NodeJS.Signals, dir: string, generations: number) {
  const child = spawnCli(gaArgs(dir), { stdio: 'ignore' });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) =>
    child.on('exit', (code, sig) => res({ code, signal: sig })),
  );
  const deadline = Date.now() + 120_000;
  const saved = () => {
    try {
      const st = JSON.parse(readFileSync(join(dir, 'state.json'), 'utf8'));
      return st.generation >= generations;
    } catch {
      return false;
    }
  };
  while (!saved() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  assert.ok(existsSync(join(dir, 'run.lock')), 'the run holds its lock while it works');
  child.kill(signal);
  return exited;
}

describe('state.json vouches for config.json and the logs', { skip }, () => {
  const whole = join(tmp.dir, 'whole');
  const stopped = join(tmp.dir, 'stopped');

  test('an uninterrupted run: its state covers exactly the config and the logs it wrote', () => {
    const r = run(gaArgs(whole));
    assert.equal(r.code, 0, r.stderr);
    const state = JSON.parse(readFileSync(join(whole, 'state.json'), 'utf8'));
    assert.equal(state.done, true);
    const config = JSON.parse(readFileSync(join(whole, 'config.json'), 'utf8'));
    assert.equal(state.configSha256, sha256(Buffer.from(JSON.stringify(config))));
    for (const file of ['evals.jsonl', 'generations.jsonl']) {
      const bytes = readFileSync(join(whole, file));
      assert.deepEqual(state.logs[file], { bytes: bytes.length, sha256: sha256(bytes) }, file);
    }
  });

  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    test(`${signal} removes run.lock, and --resume ends with the uninterrupted run's mask`, async () => {
      const dir = join(tmp.dir, signal);
      const exit = await stopWith(signal, dir, 1);
      assert.equal(exit.signal, signal, 'the process ends by the signal');
      assert.ok(!existsSync(join(dir, 'run.lock')), 'no lock left behind');
      assert.ok(!existsSync(join(dir, 'mask.json')), 'the run had not finished');
      assert.ok(lineCount(join(dir, 'generations.jsonl')) < GENERATIONS);
      if (signal === 'SIGTERM') cpSync(dir, stopped, { recursive: true });
      const r = run(['heads', '--resume', dir, '--quiet']);
      assert.equal(r.code, 0, r.stderr);
      assert.doesNotMatch(r.stderr, /stale lock/);
      assert.deepEqual(maskKeep(dir), maskKeep(whole));
      assert.equal(JSON.parse(readFileSync(join(dir, 'result.json'), 'utf8')).resumed, true);
    });
  }

  test('--resume of a stopped run whose config.json was edited is refused, nothing changed', () => {
    const edits: Array<[string, (c: { settings: Record<string, unknown> }) => void]> = [
      ['sparsity', (c) => Object.assign(c.settings, { targetSparsity: 0.5 })],
      ['population', (c) => Object.assign(c.settings, { population: 12 })],
    ];
    for (const [name, edit] of edits) {
      const dir = join(tmp.dir, `config-${name}`);
      cpSync(stopped, dir, { recursive: true });
      const path = join(dir, 'config.json');
      const config = JSON.parse(readFileSync(path, 'utf8'));
      edit(config);
      writeFileSync(path, `${JSON.stringify(config, null, 2)}\n`);
      const before = snapshot(dir);
      assertOneLineError(
        run(['heads', '--resume', dir, '--quiet']),
        'non-zero',
        path,
        'was changed after state.json',
      );
      assertUnchanged(dir, before, `${name}: the directory changed`);
    }
    // Re-indenting the file changes no setting: accepted.
    const dir = join(tmp.dir, 'config-reindented');
    cpSync(stopped, dir, { recursive: true });
    const path = join(dir, 'config.json');
    writeFileSync(path, JSON.stringify(JSON.parse(readFileSync(path, 'utf8'))));
    const r = run(['heads', '--resume', dir, '--quiet']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(maskKeep(dir), maskKeep(whole));
  });

  test('--resume with evals.jsonl truncated or edited inside what the state covers is refused', () => {
    const cases: Array<[string, (text: string) => string, string]> = [
      ['truncated', (t) => t.split('\n').slice(0, 3).join('\n').concat('\n'), 'truncated'],
      ['emptied', () => '', 'truncated'],
      [
        'edited',
        (t) => t.replace(/"quality":(\d)/, (_m, d) => `"quality":${(Number(d) + 1) % 10}`),
        'edited',
      ],
    ];
    for (const [name, change, mention] of cases) {
      const dir = join(tmp.dir, `log-${name}`);
      cpSync(stopped, dir, { recursive: true });
      const path = join(dir, 'evals.jsonl');
      const text = readFileSync(path, 'utf8');
      assert.notEqual(change(text), text, name);
      writeFileSync(path, change(text));
      const before = snapshot(dir);
      assertOneLineError(run(['heads', '--resume', dir]), 'non-zero', path, mention);
      assertUnchanged(dir, before, `${name}: the directory changed`);
    }
  });
});

describe('a block-wise weight search checkpoint vouches for config.json and its log', { skip }, () => {
  const args = (out: string) => [
    'weights',
    '--calib',
    sharedPath(CALIB) ?? '',
    '--eval',
    sharedPath(EVAL) ?? '',
    '--calib-tokens',
    '512',
    '--eval-tokens',
    '512',
    '--method',
    'ga-magnitude',
    '--sparsity',
    '0.4',
    '--population',
    '4',
    '--generations',
    '2',
    '--quiet',
    '--out',
    out,
  ];
  const stopped = join(tmp.dir, 'weights-stopped');

  test('a run killed after its second block: search-state.json covers the log of blocks 0 and 1', () => {
    const r = runCli(args(stopped), { timeout: 300_000, fault: 'weights:block-fixed:2' });
    assert.equal(r.signal, 'SIGKILL', r.stderr);
    // SIGKILL cannot remove the lock (the next start takes it over); gone here so each refusal is one line.
    assert.ok(existsSync(join(stopped, 'run.lock')));
    rmSync(join(stopped, 'run.lock'));
    const st = JSON.parse(readFileSync(join(stopped, 'search-state.json'), 'utf8'));
    assert.equal(st.done, 2);
    const log = readFileSync(join(stopped, 'evals.jsonl'));
    assert.deepEqual(st.logs['evals.jsonl'], { bytes: log.length, sha256: sha256(log) });
    // 2 blocks × (4 initial + 2 generations × 4 children), logged before the checkpoint.
    assert.equal(lineCount(join(stopped, 'evals.jsonl')), 2 * 12);
  });

  test('--resume refuses an edited config.json and a truncated log; the intact copy finishes', () => {
    const cases: Array<[string, (dir: string) => string, string]> = [
      [
        'config',
        (dir) => {
          const path = join(dir, 'config.json');
          const config = JSON.parse(readFileSync(path, 'utf8'));
          config.settings.sparsity = 0.2;
          writeFileSync(path, JSON.stringify(config, null, 2));
          return path;
        },
        'was changed after search-state.json',
      ],
      [
        'log',
        (dir) => {
          const path = join(dir, 'evals.jsonl');
          const lines = readFileSync(path, 'utf8').split('\n').filter(Boolean);
          writeFileSync(path, `${lines.slice(0, 12).join('\n')}\n`);
          return path;
        },
        'truncated',
      ],
    ];
    for (const [name, change, mention] of cases) {
      const dir = join(tmp.dir, `weights-${name}`);
      cpSync(stopped, dir, { recursive: true });
      const path = change(dir);
      const before = snapshot(dir);
      assertOneLineError(run(['weights', '--resume', dir, '--quiet']), 'non-zero', path, mention);
      assertUnchanged(dir, before, `${name}: the directory changed`);
    }
    const r = run(['weights', '--resume', stopped, '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).resumed, true);
    // Finished: its state.json covers the whole log; an edited config.json is refused when it is given back.
    const finished = join(tmp.dir, 'weights-finished-edited');
    cpSync(stopped, finished, { recursive: true });
    const path = join(finished, 'config.json');
    const config = JSON.parse(readFileSync(path, 'utf8'));
    config.settings.population = 8;
    writeFileSync(path, JSON.stringify(config, null, 2));
    const before = snapshot(finished);
    assertOneLineError(
      run(['weights', '--resume', finished, '--quiet']),
      'non-zero',
      path,
      'was changed after state.json',
    );
    assertUnchanged(finished, before);
  });
});
