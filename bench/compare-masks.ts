/**
 * Proves a refactor changed no behaviour: runs every head and weight method of a checkout's CLI on stories260K at
 * one seed with small settings and writes a manifest of what each run wrote — the sha256 of every mask file, of the
 * evaluation log and of every other file of its run directory, and the reported values of its result.json — so that
 * two checkouts (the commit before a change and the change) can be compared file by file.
 *
 *   node --import tsx bench/compare-masks.ts --repo CHECKOUT --out FOLDER [--shared ../shared] [--only a,b]
 *       [--work /tmp/geneprune-compare-masks]
 *   node --import tsx bench/compare-masks.ts --compare MANIFEST_A MANIFEST_B
 *   npm run compare:masks -- --repo /work/base --out /tmp/masks-base
 *
 * It drives only the checkout's CLI (`node --import tsx CHECKOUT/src/cli/main.ts`, run from CHECKOUT so its own
 * node_modules resolve) and imports nothing from it, so it runs on an older commit too. FOLDER/runs/<method>/ holds
 * the run directories and FOLDER/manifest.json the manifest; an existing FOLDER/runs is removed first.
 *
 * What is compared, and why it is byte-exact yet free of run-to-run noise: a run records its own directory in its
 * files (the provenance inside mask files, and through it every hash of them), so every checkout runs each method
 * in the same directory, WORK/<method> (`--work`, one folder that this script holds for the length of a run and
 * refuses to share), and moves it to FOLDER/runs afterwards. Mask files (mask.json, weight-mask.safetensors),
 * recovered weights and other binary files are hashed as written. JSON and JSONL files are hashed after one
 * rewrite that removes only what differs between two runs of the same code: keys that hold wall time (`ms`,
 * `seconds`, listed in the manifest as `droppedKeys`). Key order and every other value, to the last digit, count.
 * The manifest therefore holds no time. One thread (`--threads 1`) keeps ONNX Runtime's sums in one order.
 *
 * `--compare A B` prints one row per method (exit code, masks, recovered weights, evals.jsonl, result, other
 * files: equal or different, with the first differing result value) and exits 1 when anything differs or a method
 * is missing from either manifest.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    repo: { type: 'string' },
    out: { type: 'string' },
    shared: { type: 'string', default: resolve('..', 'shared') },
    only: { type: 'string' },
    work: { type: 'string', default: join(tmpdir(), 'geneprune-compare-masks') },
    compare: { type: 'boolean', default: false },
  },
});

/** Keys whose values are wall-clock times or rates: they differ between two runs of the same code. */
const TIME_KEYS = new Set(['ms', 'seconds', 'wallSeconds', 'elapsedSeconds', 'evalsPerSecond', 'etaSeconds']);

interface MethodRun {
  name: string;
  command: 'heads' | 'weights';
  args: string[];
}

/** Shared small settings: a few seconds per run on stories260K. */
const HEADS = ['--calib-tokens', '1024', '--eval-tokens', '2048', '--population', '6', '--generations', '3'];
const WEIGHTS = ['--calib-tokens', '1024', '--eval-tokens', '2048'];
const SMALL_GA = ['--population', '4', '--generations', '2'];
/** A tiny generation task, so BLEU scoring (search metric and report) is covered without minutes of decoding. */
const TASK_EVAL = ['--eval-task', 'auto', '--eval-items', '4', '--eval-new-tokens', '8'];
const TASK_CALIB = ['--calib-items', '4', '--calib-new-tokens', '8'];

function methods(): MethodRun[] {
  const runs: MethodRun[] = [];
  const heads = (name: string, ...args: string[]) =>
    runs.push({ name, command: 'heads', args: [...HEADS, ...args] });
  const weights = (name: string, ...args: string[]) =>
    runs.push({ name, command: 'weights', args: [...WEIGHTS, ...args] });

  // Head methods (`heads --help`): the GA with each fitness and fidelity path, NSGA-II, greedy, every baseline.
  heads('heads-ga', '--method', 'ga', '--target-sparsity', '0.25');
  heads('heads-ga-recover', '--method', 'ga', '--target-sparsity', '0.25', '--recover');
  heads('heads-ga-sos', '--preset', 'sos');
  heads('heads-ga-lambda', '--method', 'ga', '--fitness', 'lambda', '--lambda', '1');
  heads(
    'heads-ga-lowfi',
    '--method',
    'ga',
    '--target-sparsity',
    '0.25',
    '--low-tokens',
    '256',
    '--promote',
    '2',
  );
  heads('heads-ga-kl', '--method', 'ga', '--target-sparsity', '0.25', '--metric', 'kl');
  heads(
    'heads-ga-bleu',
    '--method',
    'ga',
    '--target-sparsity',
    '0.25',
    '--metric',
    'bleu',
    ...TASK_CALIB,
    ...TASK_EVAL,
  );
  heads('heads-ga-seed-ablation', '--method', 'ga', '--target-sparsity', '0.25', '--seed-ablation');
  heads('heads-nsga', '--method', 'nsga', '--target-sparsity', '0.25');
  heads('heads-nsga-recover', '--method', 'nsga', '--target-sparsity', '0.25', '--recover');
  for (const m of ['random', 'norm', 'ablation', 'greedy', 'regression']) {
    heads(`heads-${m}`, '--method', m, '--target-sparsity', '0.25');
  }
  heads('heads-greedy-recover', '--method', 'greedy', '--target-sparsity', '0.25', '--recover');

  // Weight methods (`weights --help`): each at 30 %, with and without recovery (recovery writes
  // recovered-weights.safetensors and, for the seeded GAs, changes the mask), and at 2:4 where a pattern applies.
  const search: Record<string, string[]> = {
    ga: SMALL_GA,
    'ga-wanda': SMALL_GA,
    'ga-magnitude': SMALL_GA,
    alloc: ['--generations', '4'],
  };
  for (const m of [
    'magnitude',
    'global-magnitude',
    'random',
    'wanda',
    'ga',
    'ga-wanda',
    'ga-magnitude',
    'alloc',
  ]) {
    const extra = search[m] ?? [];
    const task = m === 'magnitude' ? TASK_EVAL : [];
    weights(`weights-${m}-30`, '--method', m, '--sparsity', '0.3', ...extra, ...task);
    weights(`weights-${m}-30-recover`, '--method', m, '--sparsity', '0.3', ...extra, ...task, '--recover');
    if (m !== 'alloc') weights(`weights-${m}-2of4`, '--method', m, '--pattern', '2:4', ...extra);
  }
  weights(
    'weights-ga-bleu-30',
    '--method',
    'ga',
    '--sparsity',
    '0.3',
    ...SMALL_GA,
    '--metric',
    'bleu',
    ...TASK_CALIB,
  );
  return runs;
}

function sha256(bytes: Buffer | string): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/**
 * A JSON value without its time keys; `dropped` collects the keys it removed. `timed` names the run's files that
 * held times: a record of such a file (the `{bytes, sha256}` a state file keeps of its logs) loses those two
 * values too, since they change with the times (the file itself is compared without them).
 */
function canonical(value: unknown, dropped: Set<string>, timed: ReadonlySet<string> = new Set()): unknown {
  if (Array.isArray(value)) return value.map((v) => canonical(v, dropped, timed));
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      if (TIME_KEYS.has(k)) {
        dropped.add(k);
        continue;
      }
      if (timed.has(k) && v !== null && typeof v === 'object' && !Array.isArray(v)) {
        const { bytes, sha256, ...rest } = v as Record<string, unknown>;
        if (bytes !== undefined) dropped.add(`${k}.bytes`);
        if (sha256 !== undefined) dropped.add(`${k}.sha256`);
        out[k] = canonical(rest, dropped, timed);
        continue;
      }
      out[k] = canonical(v, dropped, timed);
    }
    return out;
  }
  return value;
}

/** Flattens a JSON value to `path → leaf`, so two results can name the first value that differs. */
function flatten(value: unknown, path: string, out: Record<string, unknown>): Record<string, unknown> {
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) flatten(value[i], `${path}[${i}]`, out);
  } else if (value !== null && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) flatten(v, path ? `${path}.${k}` : k, out);
  } else out[path] = value;
  return out;
}

interface MethodEntry {
  command: string;
  args: string[];
  exitCode: number | null;
  /** The CLI's stderr when it failed (a refusal is behaviour too). */
  stderr?: string;
  masks: Record<string, string>;
  weights: Record<string, string>;
  evals?: { sha256: string; lines: number };
  result?: { sha256: string; values: Record<string, unknown> };
  other: Record<string, string>;
}

interface Manifest {
  kind: 'geneprune-mask-manifest';
  version: 1;
  repo: string;
  /** The folder every method ran in (runs record their directory, so both checkouts must share it). */
  work: string;
  commit: string;
  seed: number;
  threads: number;
  droppedKeys: string[];
  methods: Record<string, MethodEntry>;
}

function record(dir: string, entry: MethodEntry, dropped: Set<string>): void {
  // Logs first, so the JSON files that record a log's hash know which logs held times.
  const names = readdirSync(dir).sort(
    (a, b) => Number(!a.endsWith('.jsonl')) - Number(!b.endsWith('.jsonl')),
  );
  const timed = new Set<string>();
  for (const name of names) {
    const bytes = readFileSync(join(dir, name));
    let hash: string;
    if (name.endsWith('.jsonl')) {
      const lines = bytes.toString('utf8').split('\n');
      const own = new Set<string>();
      const rewritten = lines.map((l) => (l === '' ? l : JSON.stringify(canonical(JSON.parse(l), own))));
      if (own.size > 0) timed.add(name);
      for (const k of own) dropped.add(k);
      hash = sha256(rewritten.join('\n'));
      if (name === 'evals.jsonl') {
        entry.evals = { sha256: hash, lines: lines.filter((l) => l !== '').length };
        continue;
      }
    } else if (name.endsWith('.json') && !/mask/.test(name)) {
      const value = canonical(JSON.parse(bytes.toString('utf8')), dropped, timed);
      hash = sha256(JSON.stringify(value));
      if (name === 'result.json') {
        entry.result = { sha256: hash, values: flatten(value, '', {}) };
        continue;
      }
    } else hash = sha256(bytes);
    if (/mask/.test(name)) entry.masks[name] = hash;
    else if (name.endsWith('.safetensors')) entry.weights[name] = hash;
    else entry.other[name] = hash;
  }
}

function produce(repoArg: string, outArg: string): void {
  const repo = resolve(repoArg);
  const out = resolve(outArg);
  const main = join(repo, 'src/cli/main.ts');
  const model = join(resolve(values.shared), 'models/stories260K/stories260K.bin');
  const calib = join(resolve(values.shared), 'data/tinystories/calib');
  const evalData = join(resolve(values.shared), 'data/tinystories/eval');
  for (const p of [main, model, calib, evalData]) {
    if (!existsSync(p)) {
      console.error(`compare-masks: ${p} is missing`);
      process.exit(2);
    }
  }
  const only = values.only ? new Set(values.only.split(',')) : undefined;
  const unknown = [...(only ?? [])].filter((name) => !methods().some((m) => m.name === name));
  if (unknown.length > 0) {
    console.error(
      `compare-masks: --only: no method ${unknown.join(', ')} (methods: ${methods()
        .map((m) => m.name)
        .join(', ')})`,
    );
    process.exit(2);
  }
  const runsDir = join(out, 'runs');
  rmSync(runsDir, { recursive: true, force: true });
  mkdirSync(runsDir, { recursive: true });
  const work = resolve(values.work);
  try {
    mkdirSync(work);
  } catch {
    console.error(
      `compare-masks: ${work} exists: another compare-masks run holds it (remove it if none does)`,
    );
    process.exit(2);
  }
  const git = spawnSync('git', ['-C', repo, 'rev-parse', 'HEAD'], { encoding: 'utf8' });
  const dropped = new Set<string>();
  const manifest: Manifest = {
    kind: 'geneprune-mask-manifest',
    version: 1,
    repo,
    work,
    commit: git.status === 0 ? git.stdout.trim() : 'unknown',
    seed: 0,
    threads: 1,
    droppedKeys: [],
    methods: {},
  };
  // A private model cache and no fault injection: nothing outside the checkout and the shared files steers a run.
  const env: NodeJS.ProcessEnv = { ...process.env, GENEPRUNE_CACHE: join(work, '.cache') };
  delete env.GENEPRUNE_FAULT;
  delete env.GENEPRUNE_MODELS;
  try {
    for (const run of methods()) {
      if (only && !only.has(run.name)) continue;
      manifest.methods[run.name] = runMethod(run, main, repo, join(work, run.name), env, dropped);
      if (existsSync(join(work, run.name))) {
        cpSync(join(work, run.name), join(runsDir, run.name), { recursive: true });
      }
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  manifest.droppedKeys = [...dropped].sort();
  writeFileSync(join(out, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  console.log(`manifest ${join(out, 'manifest.json')} (${Object.keys(manifest.methods).length} methods)`);

  function runMethod(
    run: MethodRun,
    main: string,
    repo: string,
    dir: string,
    env: NodeJS.ProcessEnv,
    dropped: Set<string>,
  ): MethodEntry {
    const common = ['--model', model, '--calib', calib, '--eval', evalData, '--seed', '0', '--threads', '1'];
    const args = [run.command, ...common, ...run.args, '--quiet', '--out', dir];
    process.stderr.write(`${run.name} ... `);
    const child = spawnSync(process.execPath, ['--import', 'tsx', main, ...args], {
      cwd: repo,
      env,
      encoding: 'utf8',
    });
    const entry: MethodEntry = {
      command: run.command,
      args: run.args,
      exitCode: child.status,
      masks: {},
      weights: {},
      other: {},
    };
    if (child.status !== 0) entry.stderr = child.stderr.trim();
    if (existsSync(dir)) record(dir, entry, dropped);
    process.stderr.write(child.status === 0 ? 'ok\n' : `exit ${child.status}: ${child.stderr.trim()}\n`);
    return entry;
  }
}

function sameRecord(a: Record<string, string> | undefined, b: Record<string, string> | undefined): boolean {
  return JSON.stringify(a ?? {}) === JSON.stringify(b ?? {});
}

function compare(fileA: string, fileB: string): number {
  const a = JSON.parse(readFileSync(fileA, 'utf8')) as Manifest;
  const b = JSON.parse(readFileSync(fileB, 'utf8')) as Manifest;
  const names = [...new Set([...Object.keys(a.methods), ...Object.keys(b.methods)])];
  const cell = (equal: boolean) => (equal ? 'equal' : 'DIFFERENT');
  const rows: string[][] = [
    ['method', 'exit', 'masks', 'weights', 'evals', 'result', 'other', 'first difference'],
  ];
  let differences = 0;
  for (const name of names) {
    const x = a.methods[name];
    const y = b.methods[name];
    if (!x || !y) {
      rows.push([name, `missing in ${x ? 'B' : 'A'}`, '', '', '', '', '', '']);
      differences++;
      continue;
    }
    const exit = x.exitCode === y.exitCode && x.stderr === y.stderr;
    const masks = sameRecord(x.masks, y.masks);
    const weights = sameRecord(x.weights, y.weights);
    const evals = x.evals?.sha256 === y.evals?.sha256 && x.evals?.lines === y.evals?.lines;
    const result = x.result?.sha256 === y.result?.sha256;
    const other = sameRecord(x.other, y.other);
    let first = '';
    if (!result) {
      const va = x.result?.values ?? {};
      const vb = y.result?.values ?? {};
      const key = [...new Set([...Object.keys(va), ...Object.keys(vb)])].find((k) => va[k] !== vb[k]);
      first =
        key === undefined ? 'key order' : `${key}: ${JSON.stringify(va[key])} → ${JSON.stringify(vb[key])}`;
    }
    const all = [exit, masks, weights, evals, result, other];
    if (all.some((e) => !e)) differences++;
    rows.push([name, cell(exit), ...all.slice(1).map(cell), first]);
  }
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  for (const r of rows)
    console.log(
      r
        .map((c, i) => c.padEnd(widths[i]))
        .join('  ')
        .trimEnd(),
    );
  console.log(
    differences === 0
      ? `all ${names.length} methods equal (${a.commit.slice(0, 7)} vs ${b.commit.slice(0, 7)})`
      : `${differences} of ${names.length} methods differ (${a.commit.slice(0, 7)} vs ${b.commit.slice(0, 7)})`,
  );
  return differences === 0 ? 0 : 1;
}

if (values.compare) {
  if (positionals.length !== 2) {
    console.error('compare-masks: --compare takes two manifest files');
    process.exit(2);
  }
  process.exit(compare(positionals[0], positionals[1]));
} else {
  if (!values.repo || !values.out) {
    console.error('compare-masks: --repo CHECKOUT and --out FOLDER are required (or --compare A B)');
    process.exit(2);
  }
  produce(values.repo, values.out);
}
