/**
 * Run directories under the mishaps an audit found, on the real stories260K: a run killed before its first
 * generation, two processes in one directory, data changed between start and --resume, --resume from another
 * working directory, flags given with --resume, leftovers of dead processes, and evaluation data that
 * overlaps the calibration data. Every refusal is one line and changes no file.
 */
import assert from 'node:assert/strict';
import {
  appendFileSync,
  copyFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { tempDir } from '../checkpoint/helpers.js';
import {
  assertOneLineError,
  assertUnchanged,
  type CliOptions,
  runCli,
  snapshot,
  spawnCli,
} from '../helpers/cli.js';
import { gaHeadArgs, logWithoutTimes, maskKeep } from '../helpers/rundir.js';
import { CALIB, EVAL, MODEL, sharedPath, skipUnlessShared } from '../shared.js';

const tmp = tempDir('geneprune-rundir-');
after(tmp.cleanup);

const skip = skipUnlessShared(MODEL, CALIB, EVAL);

/** A process id no process has (above Linux's largest pid_max). */
const DEAD_PID = 2147483600;

/** Whole searches: more time than runCli's default. */
const run = (args: string[], opts: CliOptions = {}) => runCli(args, { timeout: 300_000, ...opts });

/** A short budget GA; `calib` and `eval` may be relative to the working directory. */
function gaArgs(out: string, calib: string, evalData: string, generations = 3): string[] {
  return gaHeadArgs(out, generations, 3, { calib, eval: evalData });
}

/** A run killed (SIGKILL, by fault injection) right after its first evaluation: config.json, no state.json. */
function killedBeforeGeneration0(out: string, calib: string, evalData: string, cwd?: string) {
  const r = run(gaArgs(out, calib, evalData), { cwd, fault: 'heads:after-evaluation' });
  assert.equal(r.signal, 'SIGKILL', r.stderr);
  const dir = cwd ? join(cwd, out) : out;
  assert.ok(existsSync(join(dir, 'config.json')));
  assert.ok(!existsSync(join(dir, 'state.json')));
  assert.equal(readFileSync(join(dir, 'evals.jsonl'), 'utf8').split('\n').filter(Boolean).length, 1);
  return dir;
}

describe('run directories', { skip }, () => {
  const calib = sharedPath(CALIB) ?? '';
  const evalData = sharedPath(EVAL) ?? '';
  const whole = join(tmp.dir, 'whole');

  test('an uninterrupted run to compare with', () => {
    const r = run(gaArgs(whole, calib, evalData));
    assert.equal(r.code, 0, r.stderr);
    assert.ok(!existsSync(join(whole, 'run.lock')), 'the lock is released at the end');
  });

  test('why: a run stopped before generation 0 finishes: --out says to resume it, --resume restarts it (from another working directory, with relative data paths)', () => {
    // Data given relative to a working directory that the resume does not share.
    const work = join(tmp.dir, 'work');
    mkdirSync(work);
    symlinkSync(calib, join(work, 'calib'));
    symlinkSync(evalData, join(work, 'eval'));
    const dir = killedBeforeGeneration0('early', 'calib', 'eval', work);
    const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
    assert.equal(config.calibration.path, join(work, 'calib'), 'stored absolute');
    assert.equal(config.calibration.files.length, 5);
    assert.match(config.calibration.files[0].sha256, /^[0-9a-f]{64}$/);

    const before = snapshot(dir);
    const again = run(gaArgs(dir, calib, evalData));
    assertOneLineError(again, 1, dir, `--resume ${dir}`);
    assertUnchanged(dir, before);

    const resumed = run(['heads', '--resume', dir, '--quiet']);
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.match(resumed.stderr, /taking over a stale lock of pid \d+/);
    assert.deepEqual(logWithoutTimes(dir, 'evals.jsonl'), logWithoutTimes(whole, 'evals.jsonl'));
    assert.deepEqual(logWithoutTimes(dir, 'generations.jsonl'), logWithoutTimes(whole, 'generations.jsonl'));
    assert.deepEqual(maskKeep(dir), maskKeep(whole));
    assert.ok(!existsSync(join(dir, 'run.lock')));
  });

  test('why: two concurrent --resume of one directory: the second is refused naming the lock and its owner', async () => {
    const dir = killedBeforeGeneration0(join(tmp.dir, 'twice'), calib, evalData);
    // A longer run, so the first process is surely still inside when it is frozen below.
    const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
    const first = spawnCli(['heads', '--resume', dir, '--quiet'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let firstErr = '';
    first.stderr?.on('data', (d) => {
      firstErr += d;
    });
    const exited = new Promise<number | null>((res) => first.on('exit', (code) => res(code)));
    const lock = join(dir, 'run.lock');
    const ownedByFirst = () => existsSync(lock) && readFileSync(lock, 'utf8').includes(`"pid":${first.pid}`);
    while (!ownedByFirst()) await new Promise((r) => setTimeout(r, 5));
    // Frozen while it holds the lock, so the second attempt meets it whatever the machine's speed.
    first.kill('SIGSTOP');
    try {
      const before = snapshot(dir);
      const second = run(['heads', '--resume', dir, '--quiet']);
      assertOneLineError(second, 1, lock, `pid ${first.pid}`);
      const newRun = run(gaArgs(dir, calib, evalData));
      assertOneLineError(newRun, 1, dir, '--resume');
      assertUnchanged(dir, before);
    } finally {
      first.kill('SIGCONT');
    }
    assert.equal(await exited, 0, firstErr);
    assert.equal(config.settings.generations, 3);
    const generations = logWithoutTimes(dir, 'generations.jsonl') as Array<{ generation: number }>;
    assert.deepEqual(
      generations.map((g) => g.generation),
      [0, 1, 2],
      'every generation logged once',
    );
    assert.deepEqual(logWithoutTimes(dir, 'evals.jsonl'), logWithoutTimes(whole, 'evals.jsonl'));
  });

  test('why: --resume after the calibration files changed is refused naming the changed, missing or added file', () => {
    const data = join(tmp.dir, 'data');
    cpSync(calib, join(data, 'calib'), { recursive: true });
    cpSync(evalData, join(data, 'eval'), { recursive: true });
    const dir = killedBeforeGeneration0(join(tmp.dir, 'changed'), join(data, 'calib'), join(data, 'eval'));
    const page = (n: string) => join(data, 'calib', `page-0${n}.txt`);
    const cases: Array<[string, () => void, () => void, string, string]> = [
      [
        'changed',
        () => appendFileSync(page('1'), '\nOne more line.\n'),
        () => copyFileSync(join(calib, 'page-01.txt'), page('1')),
        page('1'),
        'changed',
      ],
      [
        'missing',
        () => rmSync(page('2')),
        () => copyFileSync(join(calib, 'page-02.txt'), page('2')),
        page('2'),
        'missing',
      ],
      [
        'added',
        () => writeFileSync(page('9'), 'A new story.\n'),
        () => rmSync(page('9')),
        page('9'),
        'added',
      ],
    ];
    for (const [name, change, undo, file, word] of cases) {
      change();
      const before = snapshot(dir);
      const r = run(['heads', '--resume', dir, '--quiet']);
      assertOneLineError(r, 1, file, word);
      assertUnchanged(dir, before, `${name}: the run changed`);
      undo();
    }
    const r = run(['heads', '--resume', dir, '--quiet']);
    assert.equal(r.code, 0, r.stderr);
  });

  test('why: flags given with --resume are refused unless they cannot change the result', () => {
    const dir = killedBeforeGeneration0(join(tmp.dir, 'flags'), calib, evalData);
    const before = snapshot(dir);
    const cases: Array<[string[], string, string]> = [
      [['--population', '8'], '--population', 'the run was made with 6'],
      [['--generations', '10'], '--generations', 'the run was made with 3'],
      [['--seed', '4'], '--seed', 'the run was made with 3'],
      [['--batch-size', '2'], '--batch-size', 'the run was made with no --batch-size'],
      [['--calib', evalData], '--calib', `the run was made with ${calib}`],
      [['--preset', 'sos'], '--preset', 'cannot change on --resume'],
      [['--method', 'nsga'], '--method', 'the run was made with ga'],
      [['--dtype', 'fp16'], '--dtype', 'the run was made with fp32'],
    ];
    for (const [flags, flag, why] of cases) {
      const r = run(['heads', '--resume', dir, ...flags]);
      assertOneLineError(r, 2, `geneprune: ${flag}: cannot change on --resume`, why);
      assert.deepEqual(snapshot(dir), before, flags.join(' '));
    }
    // Where and how visibly it runs may change; the same value given again is no change.
    const r = run([
      'heads',
      '--resume',
      dir,
      '--threads',
      '1',
      '--device',
      'cpu',
      '--quiet',
      '--population',
      '6',
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(logWithoutTimes(dir, 'evals.jsonl'), logWithoutTimes(whole, 'evals.jsonl'));
  });

  test("why: temporary files of dead processes are removed on the next start, a live process's are kept", () => {
    const dir = killedBeforeGeneration0(join(tmp.dir, 'temps'), calib, evalData);
    const dead = [`.state.json.${DEAD_PID}.0badf00d.tmp`, `.evals.jsonl.${DEAD_PID}.12ab.tmp`];
    for (const n of dead) writeFileSync(join(dir, n), '{"torn');
    mkdirSync(join(dir, `.out.partial-${DEAD_PID}-abc123`));
    const live = `.state.json.${process.pid}.feed.tmp`;
    writeFileSync(join(dir, live), 'in progress');
    const r = run(['heads', '--resume', dir, '--quiet']);
    assert.equal(r.code, 0, r.stderr);
    const left = readdirSync(dir).filter((n) => n.startsWith('.'));
    assert.deepEqual(left, [live]);
  });
});

describe('calibration and evaluation data must not overlap', { skip }, () => {
  const calib = sharedPath(CALIB) ?? '';
  const evalData = sharedPath(EVAL) ?? '';

  test('why: --eval as a symlink to the calibration folder, a page of it, a folder sharing a page, or a copy of a page is refused', () => {
    const d = join(tmp.dir, 'overlap');
    mkdirSync(d);
    symlinkSync(calib, join(d, 'calib-link'));
    mkdirSync(join(d, 'mixed'));
    copyFileSync(join(evalData, 'page-05.txt'), join(d, 'mixed', 'page-05.txt'));
    symlinkSync(join(calib, 'page-03.txt'), join(d, 'mixed', 'page-06.txt'));
    copyFileSync(join(calib, 'page-04.txt'), join(d, 'renamed-copy.txt'));
    const cases: Array<[string, string[]]> = [
      [join(d, 'calib-link'), [join(d, 'calib-link', 'page-00.txt'), join(calib, 'page-00.txt')]],
      [join(calib, 'page-01.txt'), [join(calib, 'page-01.txt')]],
      [join(d, 'mixed'), [join(d, 'mixed', 'page-06.txt'), join(calib, 'page-03.txt')]],
      [join(d, 'renamed-copy.txt'), [join(d, 'renamed-copy.txt'), join(calib, 'page-04.txt')]],
    ];
    for (const [evalPath, names] of cases) {
      const out = join(d, 'run');
      const r = run(gaArgs(out, calib, evalPath));
      assertOneLineError(r, 2, 'geneprune: --eval: ', ...names);
      assert.ok(!existsSync(out), 'no run directory was created');
    }
  });
});
