/**
 * Running the CLI as a user does, for the guard tests: real processes, real files. (The same helpers as
 * cli.test.ts's, shared here so new CLI test files need not copy them.)
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { REPO_ROOT, SHARED_DIR } from '../shared.js';

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

const CLI = ['--import', 'tsx', join(REPO_ROOT, 'src/cli/main.ts')];

function cliEnv(cacheDir: string, env: Record<string, string>): NodeJS.ProcessEnv {
  return {
    ...process.env,
    GENEPRUNE_MODELS: join(SHARED_DIR, 'models'),
    GENEPRUNE_CACHE: cacheDir,
    HF_ENDPOINT: 'http://127.0.0.1:9',
    ...env,
  };
}

export function runCli(args: string[], cacheDir: string, env: Record<string, string> = {}): CliResult {
  const r = spawnSync(process.execPath, [...CLI, ...args], {
    cwd: REPO_ROOT,
    encoding: 'utf8',
    env: cliEnv(cacheDir, env),
    timeout: 120_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/**
 * Runs the CLI with stdout on a pipe whose read end is closed after `readBytes` bytes arrived (0: at once,
 * before the CLI writes anything), as `geneprune ... | head -c N` does. Resolves with the exit code and stderr.
 */
export function runCliClosingStdout(
  args: string[],
  cacheDir: string,
  readBytes: number,
): Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string; read: number }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...CLI, ...args], {
      cwd: REPO_ROOT,
      env: cliEnv(cacheDir, {}),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    let read = 0;
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d: string) => {
      stderr += d;
    });
    if (readBytes === 0) child.stdout.destroy();
    else {
      child.stdout.on('data', (d: Buffer) => {
        read += d.length;
        if (read >= readBytes) child.stdout.destroy();
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

/** Exactly one stderr line, starting `geneprune: `, containing every `mentions`; exit `code`; no stdout. */
export function assertOneLineError(r: CliResult, code: number, ...mentions: string[]): string {
  assert.equal(r.code, code, `expected exit ${code}, got ${r.code}; stdout ${r.stdout}; stderr ${r.stderr}`);
  const lines = r.stderr.split('\n').filter((l) => l.trim() !== '');
  assert.equal(lines.length, 1, `expected one error line, got:\n${r.stderr}`);
  assert.match(lines[0], /^geneprune: /);
  for (const m of mentions) assert.ok(lines[0].includes(m), `"${lines[0]}" should mention "${m}"`);
  assert.equal(r.stdout, '');
  return lines[0];
}
