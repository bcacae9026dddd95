/**
 * Running untrusted generated Python against a problem's asserts, and pass@1 over a task.
 *
 * Model output is untrusted code. Each program runs only when the caller passes `allowCodeExecution: true`, as
 * `python3 -I` in a fresh temporary directory (removed afterwards), with an empty environment, no stdin, wall-clock,
 * CPU, address-space, file-size and process-count limits, in its own process group that is killed whole when the
 * program ends or times out, at most `workers` programs at once. Where this process is root it also drops each
 * program to an unprivileged uid of its own (setpriv: writes outside world-writable folders fail, the process-count
 * limit applies) and, where unshare works, into namespaces of its own: an empty network one (no network) and a
 * process-id one (it cannot see or signal other processes; its orphans die with it). What this does and does not isolate is written out in docs/code-generation.md; a container is the answer for more.
 *
 * A program passes only when it exits 0 AND prints, after its asserts, a sentinel made from a random token the
 * generated code was written without: `sys.exit(0)` before the asserts, or printing `True`, is a failure.
 */
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { accessSync, constants } from 'node:fs';
import { chown, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { flagError, GenepruneError } from '../errors.js';

/** How one program ended: its asserts passed, failed (any error or a missing sentinel), ran out of time, or could not run. */
export type ExecOutcome = 'passed' | 'failed' | 'timeout' | 'error';

export interface ExecResult {
  readonly outcome: ExecOutcome;
  /** A short reason: the last line of stderr (AssertionError, NameError: …), "wall-clock limit 10 s", … ; '' on a pass. */
  readonly reason: string;
  /** Wall time of the program in milliseconds. */
  readonly wallMs: number;
  /** The process group it ran in (killed whole when it ended); for checks that nothing of it is left. */
  readonly pgid: number;
}

export interface CodeExecOptions {
  /** Must be true: running generated code is refused otherwise (`--allow-code-execution`). */
  readonly allowCodeExecution: boolean;
  /** Programs run at once (`--exec-workers`); default min(4, available CPUs). */
  readonly workers?: number;
  /** Wall-clock limit per program in milliseconds; default 10 000. */
  readonly timeoutMs?: number;
  /** CPU-time limit per program in whole seconds (RLIMIT_CPU); default 10. */
  readonly cpuSeconds?: number;
  /** Address-space limit per program in MiB (RLIMIT_AS); default 1024. */
  readonly memoryMiB?: number;
  /** Largest file a program may write, in MiB (RLIMIT_FSIZE); default 16. */
  readonly fileMiB?: number;
  /** Processes a program may have at once when it runs under its own uid (RLIMIT_NPROC); default 32. */
  readonly maxProcesses?: number;
  /**
   * 'auto' (default): everything this machine allows (own uid when root, namespaces where unshare works);
   * 'limits-only': only the rlimits, temporary folder, empty environment and group kill, as for a user who is not
   * root on a machine without unshare (tests use it to check that floor).
   */
  readonly isolation?: 'auto' | 'limits-only';
  /** The interpreter to use instead of `python3` on PATH (a path or a command name). */
  readonly python?: string;
}

/** An MBPP-format problem: the asserts a completion is run against, and the setup code they need (tasks 367, 927). */
export interface CodeProblem {
  readonly task_id?: number | string;
  readonly test_list: readonly string[];
  readonly test_setup_code?: string;
}

export interface PassAtOneResult {
  /** Fraction of problems whose (single, greedy) completion passed, 0–1. */
  readonly passAt1: number;
  readonly passed: number;
  /** Per problem, in order. */
  readonly results: readonly ExecResult[];
}

/** What the sandbox uses on this machine, probed once. */
export interface Sandbox {
  /** Absolute path of the real interpreter (a pyenv shim resolved to the binary it runs). */
  readonly python: string;
  /** setpriv's path when this process is root and each program runs under its own unprivileged uid; else undefined. */
  readonly setpriv?: string;
  /** unshare's path when it works here (below); else undefined. */
  readonly unshare?: string;
  /**
   * The namespaces each program gets from unshare: a network namespace of its own (no network) and, where allowed,
   * a process-id namespace (it sees and signals only its own processes; orphans die with it).
   */
  readonly namespaces?: readonly string[];
}

/** A program's namespaces where unshare may make them: no network, its own pids (--kill-child: they die with unshare). */
const NAMESPACES_FULL = ['--net', '--pid', '--fork', '--kill-child'] as const;
const NAMESPACES_NET = ['--net'] as const;

const DEFAULTS = { timeoutMs: 10_000, cpuSeconds: 10, memoryMiB: 1024, fileMiB: 16, maxProcesses: 32 };
/** The uids programs run under when this process is root: one per pool slot, so a fork bomb's process count is its own. */
const SANDBOX_UID_BASE = 61_000;
const STDOUT_TAIL = 64 * 1024;
const STDERR_TAIL = 8 * 1024;

/** Refuses, in one line naming `--allow-code-execution`, unless the caller allowed running generated code. */
export function refuseUnlessAllowed(opts: Pick<CodeExecOptions, 'allowCodeExecution'>): void {
  if (opts.allowCodeExecution !== true)
    throw flagError(
      '--allow-code-execution',
      'pass@1 runs the code the model generates on this machine; pass --allow-code-execution to allow it ' +
        '(see the README on what is and is not isolated)',
    );
}

/** The first executable `name` on PATH (or `name` itself when it contains a slash and is executable). */
function which(name: string, path = process.env.PATH ?? ''): string | undefined {
  const candidates = name.includes('/')
    ? [name]
    : path
        .split(delimiter)
        .filter(Boolean)
        .map((d) => join(d, name));
  for (const c of candidates) {
    try {
      accessSync(c, constants.X_OK);
      return c;
    } catch {
      // not this one
    }
  }
  return undefined;
}

const sandboxes = new Map<string, Promise<Sandbox>>();

/**
 * Finds the interpreter and the isolation tools once per interpreter name. The interpreter is asked for
 * `sys.executable` with this process's environment, so a shim (pyenv) becomes the binary it runs, which then starts
 * with an empty environment. A missing interpreter is one GenepruneError line.
 */
export function probeSandbox(python = 'python3'): Promise<Sandbox> {
  let p = sandboxes.get(python);
  if (!p) {
    p = Promise.resolve().then(() => probe(python));
    p.catch(() => sandboxes.delete(python));
    sandboxes.set(python, p);
  }
  return p;
}

function probe(python: string): Sandbox {
  const missing = () =>
    new GenepruneError(
      'file',
      `${python} was not found or does not run; pass@1 runs generated code with it — install Python 3 or put it on PATH`,
      python,
    );
  const found = which(python);
  if (!found) throw missing();
  const asked = spawnSync(found, ['-I', '-c', 'import sys; print(sys.executable)'], {
    encoding: 'utf8',
    timeout: 30_000,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const real = asked.status === 0 ? asked.stdout.trim() : '';
  if (!real || !which(real)) throw missing();
  const root = process.getuid?.() === 0;
  const setpriv = root ? which('setpriv') : undefined;
  const unshare = which('unshare');
  const works = (flags: readonly string[]) =>
    unshare !== undefined &&
    spawnSync(unshare, [...flags, '--', real, '-I', '-c', 'pass'], { stdio: 'ignore', timeout: 30_000 })
      .status === 0;
  const namespaces = [NAMESPACES_FULL, NAMESPACES_NET].find(works);
  return { python: real, setpriv, unshare: namespaces && unshare, namespaces };
}

/** A fresh random token; the sentinel line is `geneprune-passed-<token>`. */
function newSentinel(): string {
  return `geneprune-passed-${randomBytes(16).toString('hex')}`;
}

/** The program run for a completion: the code, the problem's setup, its asserts, then the sentinel line. */
export function programOf(code: string, problem: CodeProblem, sentinel: string): string {
  return [
    code,
    problem.test_setup_code ?? '',
    ...problem.test_list,
    `print(${JSON.stringify(sentinel)}, flush=True)`,
    '',
  ].join('\n');
}

/** Keeps the last `max` characters of a growing stream's text. */
function tailCollector(max: number): { push: (b: Buffer) => void; text: () => string } {
  let text = '';
  return {
    push: (b) => {
      text += b.toString('utf8');
      if (text.length > 2 * max) text = text.slice(-max);
    },
    text: () => text.slice(-max),
  };
}

function killGroup(pgid: number): void {
  try {
    process.kill(-pgid, 'SIGKILL');
  } catch {
    // nothing left in the group
  }
}

function lastLine(text: string): string {
  const lines = text
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  const line = lines.at(-1) ?? '';
  return line.length > 200 ? `${line.slice(0, 197)}...` : line;
}

/**
 * Runs one program (`source`, which must print `sentinel` on a line of its own to pass) in the sandbox. `slot` picks
 * the uid it runs under when this process is root (one per concurrent program).
 */
export async function runProgram(
  source: string,
  sentinel: string,
  opts: CodeExecOptions,
  slot = 0,
): Promise<ExecResult> {
  refuseUnlessAllowed(opts);
  const probed = await probeSandbox(opts.python);
  const box: Sandbox = opts.isolation === 'limits-only' ? { python: probed.python } : probed;
  const timeoutMs = opts.timeoutMs ?? DEFAULTS.timeoutMs;
  const cpu = Math.max(1, Math.ceil(opts.cpuSeconds ?? DEFAULTS.cpuSeconds));
  const memKiB = Math.floor((opts.memoryMiB ?? DEFAULTS.memoryMiB) * 1024);
  const fileBlocks = Math.floor((opts.fileMiB ?? DEFAULTS.fileMiB) * 2048); // dash counts 512-byte blocks
  const nproc = opts.maxProcesses ?? DEFAULTS.maxProcesses;
  const dir = await mkdtemp(join(tmpdir(), 'geneprune-exec-'));
  const started = Date.now();
  try {
    await writeFile(join(dir, 'prog.py'), source, { mode: 0o644 });
    const uid = SANDBOX_UID_BASE + slot;
    if (box.setpriv) await chown(dir, uid, uid);
    const drop = box.setpriv
      ? [box.setpriv, `--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', '--inh-caps=-all']
      : [];
    // The CPU limit is soft (SIGXCPU, exit 152) under a hard one a second later (SIGKILL) for a program that
    // catches SIGXCPU. sh stays the program's parent (`; exit $?` keeps dash from exec-ing it), so os.kill(os.getppid(), 9) kills sh,
    // never this process. The process limit only holds under a uid of its own (root ignores it).
    const limits = `ulimit -v ${memKiB}; ulimit -H -t ${cpu + 1}; ulimit -S -t ${cpu}; ulimit -f ${fileBlocks}; ulimit -c 0; ulimit -n 256;${
      box.setpriv ? ` ulimit -p ${nproc};` : ''
    }`;
    const argv = [
      ...(box.unshare && box.namespaces ? [box.unshare, ...box.namespaces, '--'] : []),
      '/bin/sh',
      '-c',
      `${limits} "$@"; exit $?`,
      'sh',
      ...drop,
      box.python,
      '-I',
      'prog.py',
    ];
    const [cmd, ...args] = argv as [string, ...string[]];
    return await new Promise<ExecResult>((resolve) => {
      const child = spawn(cmd, args, {
        cwd: dir,
        env: {},
        stdio: ['ignore', 'pipe', 'pipe'],
        detached: true,
      });
      const pgid = child.pid ?? -1;
      const out = tailCollector(STDOUT_TAIL);
      const err = tailCollector(STDERR_TAIL);
      child.stdout?.on('data', out.push);
      child.stderr?.on('data', err.push);
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        killGroup(pgid);
      }, timeoutMs);
      // The group is swept as soon as its leader ends, so children left behind neither run on nor hold the pipes.
      child.on('exit', () => killGroup(pgid));
      child.on('error', (e) => {
        clearTimeout(timer);
        resolve({
          outcome: 'error',
          reason: `could not start: ${e.message}`,
          wallMs: Date.now() - started,
          pgid,
        });
      });
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        killGroup(pgid);
        const wallMs = Date.now() - started;
        const done = (outcome: ExecOutcome, reason: string) => resolve({ outcome, reason, wallMs, pgid });
        if (timedOut) return done('timeout', `wall-clock limit ${timeoutMs / 1000} s`);
        // sh reports a program killed by signal N as 128 + N: SIGXCPU (24) is the CPU limit.
        if (code === 128 + 24) return done('timeout', `CPU limit ${cpu} s`);
        if (code === 0) {
          const sentinelSeen = `\n${out.text()}`.includes(`\n${sentinel}\n`);
          return sentinelSeen ? done('passed', '') : done('failed', 'exited 0 before its asserts finished');
        }
        if (signal !== null) return done('failed', `killed by ${signal}`);
        if (code === 128 + 9) return done('failed', 'killed by SIGKILL (CPU hard limit or out of memory)');
        if (code !== null && code > 128) return done('failed', `killed by signal ${code - 128}`);
        return done('failed', lastLine(err.text()) || `exit code ${code}`);
      });
    });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * Runs programs with at most `workers` at once; `onResult` hears each as it ends. Results are in input order.
 * Each program is a source and the sentinel it must print.
 */
export async function runPrograms(
  programs: readonly { source: string; sentinel: string }[],
  opts: CodeExecOptions,
  onResult?: (index: number, result: ExecResult) => void,
): Promise<ExecResult[]> {
  refuseUnlessAllowed(opts);
  const workers = opts.workers ?? Math.min(4, availableParallelism());
  if (!Number.isInteger(workers) || workers < 1)
    throw flagError('--exec-workers', `must be a whole number ≥ 1, not ${workers}`);
  await probeSandbox(opts.python); // one error line before any program starts
  const results: ExecResult[] = new Array(programs.length);
  let next = 0;
  const worker = async (slot: number) => {
    for (let i = next++; i < programs.length; i = next++) {
      const p = programs[i] as { source: string; sentinel: string };
      const r = await runProgram(p.source, p.sentinel, opts, slot);
      results[i] = r;
      onResult?.(i, r);
    }
  };
  await Promise.all(Array.from({ length: Math.min(workers, programs.length) }, (_, slot) => worker(slot)));
  return results;
}

/**
 * pass@1 of one completion per problem: the fraction whose program (completion, setup, asserts, sentinel) passes.
 * Refused unless `opts.allowCodeExecution` is true.
 */
export async function passAtOne(
  problems: readonly CodeProblem[],
  completions: readonly string[],
  opts: CodeExecOptions,
  onResult?: (index: number, result: ExecResult) => void,
): Promise<PassAtOneResult> {
  refuseUnlessAllowed(opts);
  if (problems.length !== completions.length)
    throw new GenepruneError(
      'internal',
      `pass@1 got ${completions.length} completions for ${problems.length} problems`,
    );
  const programs = problems.map((problem, i) => {
    const sentinel = newSentinel();
    return { source: programOf(completions[i] as string, problem, sentinel), sentinel };
  });
  const results = await runPrograms(programs, opts, onResult);
  const passed = results.filter((r) => r.outcome === 'passed').length;
  return { passAt1: problems.length === 0 ? 0 : passed / problems.length, passed, results };
}

/** A new program around `code` for a test or a caller that builds its own: the source and the sentinel it must print. */
export function programFor(code: string, problem: CodeProblem): { source: string; sentinel: string } {
  const sentinel = newSentinel();
  return { source: programOf(code, problem, sentinel), sentinel };
}
