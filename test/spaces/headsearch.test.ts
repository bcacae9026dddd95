/**
 * Whole head searches as a user runs them, on the real stories260K: determinism of the run log, a run killed
 * with SIGKILL and resumed ends exactly where an uninterrupted one does, and --resume refuses what is not a
 * resumable run without touching it.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { tempDir } from '../checkpoint/helpers.js';
import { assertOneLineError, assertUnchanged, runCli, snapshot, spawnCli } from '../helpers/cli.js';
import { gaHeadArgs, logWithoutTimes, maskKeep } from '../helpers/rundir.js';
import { CALIB, EVAL, MODEL, sharedPath, skipUnlessShared } from '../shared.js';

const tmp = tempDir('geneprune-heads-');
after(tmp.cleanup);

const skip = skipUnlessShared(MODEL, CALIB, EVAL);

/** The short GA head search these tests run (seed 7). */
const gaArgs = (out: string, generations: number) => gaHeadArgs(out, generations, 7);

/** Whole searches: more time than runCli's default. */
const run = (args: string[]) => runCli(args, { timeout: 300_000 });

/** Starts a run, kills it with SIGKILL once it has logged `generations` generations; returns how many it logged. */
async function killAfter(args: string[], dir: string, generations: number): Promise<number> {
  const child = spawnCli(args, { stdio: 'ignore' });
  const exited = new Promise<void>((res) => child.on('exit', () => res()));
  const gens = () => {
    const f = join(dir, 'generations.jsonl');
    return existsSync(f) ? readFileSync(f, 'utf8').split('\n').filter(Boolean).length : 0;
  };
  const deadline = Date.now() + 120_000;
  while (gens() < generations && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  child.kill('SIGKILL');
  await exited;
  return gens();
}

describe('GA runs', { skip }, () => {
  const a = join(tmp.dir, 'a');
  const b = join(tmp.dir, 'b');

  test('same seed gives an identical run log and mask', () => {
    const ra = run(gaArgs(a, 6));
    assert.equal(ra.code, 0, ra.stderr);
    const rb = run(gaArgs(b, 6));
    assert.equal(rb.code, 0, rb.stderr);
    const evals = logWithoutTimes(a, 'evals.jsonl');
    assert.equal(evals.length, 6 * 6);
    assert.deepEqual(logWithoutTimes(b, 'evals.jsonl'), evals);
    assert.deepEqual(logWithoutTimes(b, 'generations.jsonl'), logWithoutTimes(a, 'generations.jsonl'));
    const keep = maskKeep(a);
    assert.deepEqual(maskKeep(b), keep);
    assert.equal(keep.length, 40);
    assert.equal(keep.filter((k) => k === 0).length, 10, 'the budget holds: 25 % of 40 heads removed');
    for (const e of evals as Array<{ genome: string }>)
      assert.equal([...e.genome].filter((c) => c === '0').length, 10);
    const result = JSON.parse(readFileSync(join(a, 'result.json'), 'utf8'));
    assert.ok(result.eval.perplexity > result.eval.densePerplexity);
    assert.match(result.eval.data, /eval$/);
    const config = JSON.parse(readFileSync(join(a, 'config.json'), 'utf8'));
    assert.match(config.calibration.path, /calib$/);
    assert.match(config.evaluation.path, /eval$/);
  });

  test('a run killed with SIGKILL and resumed ends exactly like an uninterrupted one', async () => {
    const whole = join(tmp.dir, 'whole');
    const killed = join(tmp.dir, 'killed');
    const rw = run(gaArgs(whole, 12));
    assert.equal(rw.code, 0, rw.stderr);

    const done = await killAfter(gaArgs(killed, 12), killed, 3);
    assert.ok(done >= 3 && done < 12, `killed after ${done} generations`);
    assert.ok(!existsSync(join(killed, 'mask.json')), 'the killed run had not finished');

    const rr = run(['heads', '--resume', killed, '--quiet']);
    assert.equal(rr.code, 0, rr.stderr);
    assert.deepEqual(maskKeep(killed), maskKeep(whole));
    assert.deepEqual(logWithoutTimes(killed, 'evals.jsonl'), logWithoutTimes(whole, 'evals.jsonl'));
    assert.deepEqual(
      logWithoutTimes(killed, 'generations.jsonl'),
      logWithoutTimes(whole, 'generations.jsonl'),
    );
    assert.equal(JSON.parse(readFileSync(join(killed, 'result.json'), 'utf8')).resumed, true);
  });

  test('an NSGA-II run killed with SIGKILL and resumed ends exactly like an uninterrupted one', async () => {
    const nsgaArgs = (out: string) => [...gaArgs(out, 10), '--method', 'nsga'];
    const whole = join(tmp.dir, 'nsga-whole');
    const killed = join(tmp.dir, 'nsga-killed');
    const rw = run(nsgaArgs(whole));
    assert.equal(rw.code, 0, rw.stderr);
    const done = await killAfter(nsgaArgs(killed), killed, 3);
    assert.ok(done >= 3 && done < 11, `killed after ${done} generations`);
    const rr = run(['heads', '--resume', killed, '--quiet']);
    assert.equal(rr.code, 0, rr.stderr);
    assert.deepEqual(maskKeep(killed), maskKeep(whole));
    assert.deepEqual(
      readFileSync(join(killed, 'front.json'), 'utf8'),
      readFileSync(join(whole, 'front.json'), 'utf8'),
    );
    assert.deepEqual(logWithoutTimes(killed, 'evals.jsonl'), logWithoutTimes(whole, 'evals.jsonl'));
    assert.deepEqual(
      logWithoutTimes(killed, 'generations.jsonl'),
      logWithoutTimes(whole, 'generations.jsonl'),
    );
  });

  test('--resume refuses corrupt or foreign directories and changes nothing', () => {
    const cases: Array<[string, (dir: string) => void, string]> = [
      ['empty', () => {}, 'config.json'],
      ['garbage config', (d) => writeFileSync(join(d, 'config.json'), '{not json'), 'corrupt'],
      ['foreign config', (d) => writeFileSync(join(d, 'config.json'), '{"kind": "something-else"}'), 'kind'],
      [
        'corrupt state',
        (d) => {
          writeFileSync(join(d, 'config.json'), readFileSync(join(a, 'config.json')));
          writeFileSync(join(d, 'state.json'), '{"version": 1, "generation": "x"}');
          writeFileSync(join(d, 'evals.jsonl'), readFileSync(join(a, 'evals.jsonl')));
        },
        'state',
      ],
      [
        'state of another shape',
        (d) => {
          writeFileSync(join(d, 'config.json'), readFileSync(join(a, 'config.json')));
          const state = JSON.parse(readFileSync(join(a, 'state.json'), 'utf8'));
          state.population = state.population.map((g: string) => g.slice(1));
          writeFileSync(join(d, 'state.json'), JSON.stringify(state));
        },
        'state',
      ],
    ];
    for (const [name, make, mention] of cases) {
      const dir = join(tmp.dir, `resume-${name.replace(/ /g, '-')}`);
      mkdirSync(dir);
      make(dir);
      const before = snapshot(dir);
      assertOneLineError(run(['heads', '--resume', dir]), 'non-zero', dir, mention);
      assertUnchanged(dir, before, `${name}: the directory changed`);
    }
    const missing = join(tmp.dir, 'no-such-run');
    const r = run(['heads', '--resume', missing]);
    assert.notEqual(r.code, 0);
    assert.ok(!existsSync(missing));
  });

  test('a new run refuses a non-empty --out', () => {
    const before = snapshot(a);
    const r = run(gaArgs(a, 2));
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /not empty/);
    assertUnchanged(a, before);
  });

  test('eval --mask reproduces the reported evaluation perplexity', () => {
    const result = JSON.parse(readFileSync(join(a, 'result.json'), 'utf8'));
    const r = run([
      'eval',
      '--data',
      sharedPath(EVAL)!,
      '--max-tokens',
      '1024',
      '--mask',
      join(a, 'mask.json'),
      '--json',
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(Math.abs(JSON.parse(r.stdout).perplexity - result.eval.perplexity) < 1e-9);
  });
});
