/**
 * Running the CLI as a user does: real processes, real files. The one home of the helpers every CLI test uses:
 * `runCli` (and `spawnCli`, `runCliClosingStdout` for processes a test watches, kills or cuts off),
 * `assertOneLineError` for refusals, and `snapshot` / `assertUnchanged` to prove a refusal changed no file.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, type StdioOptions, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { lstatSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO_ROOT, SHARED_DIR } from '../shared.js';

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface CliOptions {
  /** GENEPRUNE_CACHE; default: a folder of this test process's own, removed when it exits. */
  cache?: string;
  /** More environment variables, set last (they override the defaults above). */
  env?: Record<string, string>;
  /** The working directory; default: the repository root. */
  cwd?: string;
  /** Milliseconds before the process is killed; default 120 s. */
  timeout?: number;
  /** GENEPRUNE_FAULT: the fault point at which the CLI kills itself (e.g. `heads:after-evaluation`). */
  fault?: string;
}

// tsx by its resolved URL, so the CLI also starts from working directories outside the repository.
const CLI = ['--import', import.meta.resolve('tsx'), join(REPO_ROOT, 'src/cli/main.ts')];

let ownCache: string | undefined;
/** This process's cache folder, made on first use and removed at exit (node --test runs each file apart). */
function defaultCache(): string {
  if (!ownCache) {
    const dir = mkdtempSync(join(tmpdir(), 'geneprune-test-cache-'));
    process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
    ownCache = join(dir, 'cache');
  }
  return ownCache;
}

/** The environment the CLI runs in: the shared models, a private cache, and a hub that cannot be reached. */
function cliEnv(opts: CliOptions): NodeJS.ProcessEnv {
  return {
    ...process.env,
    GENEPRUNE_MODELS: join(SHARED_DIR, 'models'),
    GENEPRUNE_CACHE: opts.cache ?? defaultCache(),
    HF_ENDPOINT: 'http://127.0.0.1:9',
    GENEPRUNE_FAULT: opts.fault ?? '',
    ...opts.env,
  };
}

/** Runs `geneprune ...args` to its end. */
export function runCli(args: string[], opts: CliOptions = {}): CliResult {
  const r = spawnSync(process.execPath, [...CLI, ...args], {
    cwd: opts.cwd ?? REPO_ROOT,
    encoding: 'utf8',
    env: cliEnv(opts),
    timeout: opts.timeout ?? 120_000,
  });
  return { code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

/** Starts `geneprune ...args` without waiting, for a test that watches, freezes or kills it. */
export function spawnCli(
  args: string[],
  opts: Omit<CliOptions, 'timeout'> & { stdio: StdioOptions },
): ChildProcess {
  return spawn(process.execPath, [...CLI, ...args], {
    cwd: opts.cwd ?? REPO_ROOT,
    env: cliEnv(opts),
    stdio: opts.stdio,
  });
}

/**
 * Runs the CLI with stdout on a pipe whose read end is closed after `readBytes` bytes arrived (0: at once,
 * before the CLI writes anything), as `geneprune ... | head -c N` does. Resolves with the exit code and stderr.
 */
export function runCliClosingStdout(
  args: string[],
  readBytes: number,
  opts: Omit<CliOptions, 'timeout'> = {},
): Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string; read: number }> {
  return new Promise((resolve, reject) => {
    const child = spawnCli(args, { ...opts, stdio: ['ignore', 'pipe', 'pipe'] });
    const stdout = child.stdout!;
    const stderrStream = child.stderr!;
    let stderr = '';
    let read = 0;
    stderrStream.setEncoding('utf8');
    stderrStream.on('data', (d: string) => {
      stderr += d;
    });
    if (readBytes === 0) stdout.destroy();
    else {
      stdout.on('data', (d: Buffer) => {
        read += d.length;
        if (read >= readBytes) stdout.destroy();
      });
    }
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stderr, read });
    });
  });
}

/**
 * A refusal as the CLI must give it: exit `exit` (a code, or `'non-zero'` for any failure), exactly one stderr
 * line, starting `geneprune: ` and containing every `mentions`, and nothing on stdout. Returns the line.
 */
export function assertOneLineError(
  r: Pick<CliResult, 'code' | 'stdout' | 'stderr'>,
  exit: number | 'non-zero',
  ...mentions: string[]
): string {
  if (exit === 'non-zero') assert.notEqual(r.code, 0, `expected a failure, got exit 0 with ${r.stdout}`);
  else
    assert.equal(
      r.code,
      exit,
      `expected exit ${exit}, got ${r.code}; stdout ${r.stdout}; stderr ${r.stderr}`,
    );
  const lines = r.stderr.split('\n').filter((l) => l !== '');
  assert.equal(lines.length, 1, `expected one error line, got:\n${r.stderr}`);
  assert.match(lines[0], /^geneprune: /);
  for (const m of mentions) assert.ok(lines[0].includes(m), `"${lines[0]}" should mention "${m}"`);
  assert.equal(r.stdout, '');
  return lines[0];
}

/**
 * Every entry under `path` (or the file itself, as `.`), recursively and hidden ones included: a file as the
 * sha256 of its bytes, a folder as `dir` (so an empty one counts too), a symlink as its target (not followed).
 */
export function snapshot(path: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (p: string, rel: string, root: boolean) => {
    const st = root ? statSync(p) : lstatSync(p);
    if (st.isSymbolicLink()) out[rel] = `symlink -> ${readlinkSync(p)}`;
    else if (st.isDirectory()) {
      if (!root) out[`${rel}/`] = 'dir';
      for (const name of readdirSync(p).sort()) walk(join(p, name), rel ? `${rel}/${name}` : name, false);
    } else out[rel || '.'] = createHash('sha256').update(readFileSync(p)).digest('hex');
  };
  walk(path, '', true);
  return out;
}

/** Asserts nothing under `path` changed since `before` (a `snapshot(path)`). */
export function assertUnchanged(
  path: string,
  before: Record<string, string>,
  message = `${path} changed`,
): void {
  assert.deepEqual(snapshot(path), before, message);
}
