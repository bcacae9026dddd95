/**
 * Small searches on the shared stories260K and reading their run directories, to compare two runs: the one
 * home of the argument lists the worker/queue tests start (`smallRunArgs`) and of the short GA head search the
 * run tests start (`gaHeadArgs`), of running one in a folder of its
 * own (`runInOwnFolder`), and of dropping what may differ between two equal runs (timings, the run's name).
 */
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CALIB, EVAL, MODEL, sharedPath } from '../shared.js';
import { spawnCli } from './cli.js';

/** A run log (`evals.jsonl`, `generations.jsonl`) without wall-clock fields, the only thing allowed to differ. */
export function logWithoutTimes(dir: string, file: string): unknown[] {
  return readFileSync(join(dir, file), 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      const { ms: _ms, ...rest } = JSON.parse(l);
      return rest;
    });
}

/** The keep bits of the run's mask.json. */
export function maskKeep(dir: string): number[] {
  return JSON.parse(readFileSync(join(dir, 'mask.json'), 'utf8')).keep;
}

/** A JSON file of a run directory, parsed. */
// biome-ignore lint/suspicious/noExplicitAny: run files are read field by field by the tests that assert on them.
export function readRunJson(dir: string, file: string): any {
  return JSON.parse(readFileSync(join(dir, file), 'utf8'));
}

/** `v` without the named keys at any depth (inside arrays too). */
function withoutKeys(v: unknown, keys: readonly string[]): unknown {
  if (Array.isArray(v)) return v.map((x) => withoutKeys(x, keys));
  if (!v || typeof v !== 'object') return v;
  return Object.fromEntries(
    Object.entries(v)
      .filter(([k]) => !keys.includes(k))
      .map(([k, x]) => [k, withoutKeys(x, keys)]),
  );
}

/** result.json / mask.json without what times the run (every `seconds`, at any depth). */
export function untimed(v: unknown): Record<string, unknown> {
  return withoutKeys(v, ['seconds']) as Record<string, unknown>;
}

/**
 * result.json / mask.json without what names the run or times it (every `seconds` and `runDir`): for two runs
 * written to different directories.
 */
export function withoutRunFields(v: unknown): Record<string, unknown> {
  return withoutKeys(v, ['seconds', 'runDir']) as Record<string, unknown>;
}

/** A flag's value; `true` is a flag without a value, `false` leaves a default flag out. */
type Flags = Record<string, string | number | boolean>;

/**
 * The small searches of the worker and queue tests: a few generations of a small population on the shared
 * model and data, seeded, quiet. A test overrides what it varies.
 */
const SMALL: Record<'heads' | 'weights', Flags> = {
  heads: {
    'target-sparsity': 0.25,
    population: 6,
    generations: 3,
    'low-tokens': 256,
    'calib-tokens': 1024,
    'eval-tokens': 1024,
    seed: 3,
    quiet: true,
  },
  weights: {
    method: 'ga-magnitude',
    sparsity: 0.5,
    population: 4,
    generations: 3,
    'calib-tokens': 512,
    'eval-tokens': 512,
    seed: 2,
    quiet: true,
  },
};

/**
 * `heads`/`weights` on the shared stories260K and TinyStories with the small defaults above, `flags` laid over
 * them (`model`, `calib`, `eval` too, for another model), `--out out` when given, then `extra` as is.
 */
export function smallRunArgs(
  command: 'heads' | 'weights',
  out: string | undefined,
  flags: Flags = {},
  extra: string[] = [],
): string[] {
  const args: string[] = [command];
  const shared: Flags = {
    model: sharedPath(MODEL) ?? '',
    calib: sharedPath(CALIB) ?? '',
    eval: sharedPath(EVAL) ?? '',
  };
  for (const [name, value] of Object.entries({ ...shared, ...SMALL[command], ...flags })) {
    if (value === false) continue;
    args.push(`--${name}`);
    if (value !== true) args.push(String(value));
  }
  if (out !== undefined) args.push('--out', out);
  return [...args, ...extra];
}

/**
 * A short GA head search into `out`: `heads` at target sparsity 0.25, population 6, `generations` generations,
 * 1,024 calibration and evaluation tokens, `seed`, quiet; on ../shared's splits unless `data` names others (a
 * path relative to the working directory included). The order of the flags is the one the run tests have always
 * used, so their run directories record the same command line.
 */
export function gaHeadArgs(
  out: string,
  generations: number,
  seed: number,
  data: { calib?: string; eval?: string } = {},
): string[] {
  return [
    'heads',
    '--calib',
    data.calib ?? sharedPath(CALIB) ?? '',
    '--eval',
    data.eval ?? sharedPath(EVAL) ?? '',
    '--target-sparsity',
    '0.25',
    '--population',
    '6',
    '--generations',
    String(generations),
    '--calib-tokens',
    '1024',
    '--eval-tokens',
    '1024',
    '--seed',
    String(seed),
    '--quiet',
    '--out',
    out,
  ];
}

/**
 * Runs `geneprune ...args --out run` in a fresh folder `parent/name` and returns the run directory: the mask file
 * and result record the run directory as given, so two runs in folders of their own compare byte for byte. Runs
 * without blocking the event loop, so a test may watch worker processes meanwhile; a failure fails with stderr.
 */
export async function runInOwnFolder(parent: string, name: string, args: string[]): Promise<string> {
  const cwd = join(parent, name);
  mkdirSync(cwd, { recursive: true });
  const child = spawnCli([...args, '--out', 'run'], { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (d) => {
    stderr += d.toString();
  });
  const code = await new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
  assert.equal(code, 0, stderr);
  return join(cwd, 'run');
}
