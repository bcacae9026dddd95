/**
 * Running `npm run bench` (bench/all.ts) as the bench tests do, and reading the markdown tables it writes: the
 * one home of what test/bench/all.test.ts and workers.test.ts both need.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { REPO_ROOT } from '../shared.js';

/** `bench/all.ts ...args` from the repository root, to its end; `env` is laid over this process's environment. */
export function runBench(args: string[], env: Record<string, string> = {}) {
  return spawnSync(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'bench', 'all.ts'), ...args], {
    cwd: REPO_ROOT,
    encoding: 'utf8',
    env: { ...process.env, ...env },
  });
}

/** The markdown tables of a file: each as its header cells and body rows' cells. */
export function markdownTables(md: string): Array<{ header: string[]; rows: string[][] }> {
  const cells = (line: string) =>
    line
      .slice(1, -1)
      .split('|')
      .map((c) => c.trim());
  const out: Array<{ header: string[]; rows: string[][] }> = [];
  const lines = md.split('\n');
  for (let i = 0; i < lines.length; i++) {
    if (!lines[i].startsWith('|') || !lines[i + 1]?.startsWith('|---')) continue;
    const header = cells(lines[i]);
    const rows: string[][] = [];
    for (i += 2; i < lines.length && lines[i].startsWith('|'); i++) rows.push(cells(lines[i]));
    out.push({ header, rows });
  }
  return out;
}
