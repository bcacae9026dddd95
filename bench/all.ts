/**
 * Regenerates the manual's measured tables and their figures into docs/tables/: each benchmark script runs as a
 * child process, in sequence, with the arguments the manual names for its numbers, writes its table with
 * `--table-out`, and the head and weight tables are drawn as quality-vs-sparsity figures (one line per method)
 * with the report module's Vega-Lite specs, rendered to SVG without a browser.
 *
 *   npm run bench [-- --only heads,weights --out docs/tables --quick --reuse]
 *
 * docs/tables/<name>.md holds the markdown table exactly as the script prints it, under a header comment with the
 * command and the date; docs/tables/heads.svg and weights.svg the figures. docs/measured.md quotes each table
 * (test/docs/manual.test.ts checks that the quote is the file's table). Every file is written atomically, and only after
 * its script succeeded. `--quick` runs every script with tiny settings (a smoke test: the numbers mean nothing) and
 * needs `--out`, so it never overwrites docs/tables/. `--reuse` (weights only) redraws the table and figure from the runs an
 * earlier full run left in runs/weights-table instead of running them again (the seconds in the cost table are
 * those runs' own). The full run takes hours (table:heads and table:weights about 25
 * minutes each, bench:scale much longer, table:structured about 15); the quick one well under a minute for heads
 * and weights.
 */
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { renderSvg } from '../src/report/html.js';
import { methodSweepSpec, type SweepPoint } from '../src/report/specs.js';
import { writeTextAtomic } from '../src/util/fs.js';

const REPO = resolve(import.meta.dirname, '..');

interface Bench {
  /** The npm script the manual names. */
  npm: string;
  script: string;
  /** The arguments behind the manual's numbers (none: the scripts' defaults are the manual's settings). */
  args: string[];
  /** Tiny settings for a smoke test; `RUNS` stands for a folder of scratch run directories. */
  quick: string[];
  /** With `--reuse`: the script's own flag to assemble its table from the finished runs it left (weights only). */
  reuse?: string;
  /** Writes `--points-out` JSON, drawn as a figure. */
  figure?: (points: PointsFile) => { spec: Parameters<typeof renderSvg>[0]; points: number };
}

interface PointsFile {
  densePerplexity?: number;
  points: Array<{ method: string; sparsity: number; evalPerplexity: number; level?: string }>;
}

/** Eval perplexity against sparsity, one colour per method (and a dash per variant), the dense model as a rule. */
function perplexityFigure(
  f: PointsFile,
  points: SweepPoint[],
  title: string,
  sparsityName: string,
  variantName?: string,
): ReturnType<NonNullable<Bench['figure']>> {
  return {
    points: points.filter((p) => Number.isFinite(p.quality)).length,
    spec: methodSweepSpec(points, {
      title,
      qualityName: 'eval perplexity',
      sparsityName,
      lowerIsBetter: true,
      ...(variantName ? { variantName } : {}),
      ...(f.densePerplexity === undefined ? {} : { dense: f.densePerplexity }),
    }),
  };
}

/** How weights-table names a method's row after recovery. */
const RECOVERED = ' + recovery';

const BENCHES: Record<string, Bench> = {
  seq2seq: {
    npm: 'table:seq2seq',
    script: 'bench/seq2seq-table.ts',
    args: [],
    quick: [
      '--out',
      'RUNS',
      '--methods',
      'magnitude',
      '--levels',
      '0.3',
      '--head-methods',
      'random',
      '--sparsities',
      '0.25',
    ],
  },
  heads: {
    npm: 'table:heads',
    script: 'bench/heads-table.ts',
    args: [],
    quick: ['--out', 'RUNS', '--methods', 'random,norm', '--sparsities', '0.25,0.5', '--calib-tokens', '512'],
    figure: (f) =>
      perplexityFigure(
        f,
        f.points.map((p) => ({ series: p.method, sparsity: p.sparsity, quality: p.evalPerplexity })),
        'Head pruning on stories260K: eval perplexity per method',
        'share of heads removed',
      ),
  },
  weights: {
    npm: 'table:weights',
    script: 'bench/weights-table.ts',
    args: [],
    reuse: '--reuse',
    quick: [
      '--out',
      'RUNS',
      '--methods',
      'magnitude',
      '--levels',
      '0.3,0.5',
      '--calib-tokens',
      '512',
      '--new-tokens',
      '2',
    ],
    figure: (f) => {
      // N:M patterns sit at the same sparsity as an unstructured level: the figure draws the unstructured ones.
      // A method's colour is shared by its two rows; the recovered row is dashed.
      const points: SweepPoint[] = f.points
        .filter((p) => !p.level?.includes(':'))
        .map((p) => {
          const recovered = p.method.endsWith(RECOVERED);
          return {
            series: recovered ? p.method.slice(0, -RECOVERED.length) : p.method,
            variant: recovered ? 'recovered' : 'masked',
            sparsity: p.sparsity,
            quality: p.evalPerplexity,
          };
        });
      return perplexityFigure(
        f,
        points,
        'Weight pruning on stories260K (unstructured): eval perplexity per method',
        'share of prunable weights removed',
        'weights',
      );
    },
  },
  structured: {
    npm: 'table:structured',
    script: 'bench/structured-table.ts',
    args: [],
    quick: [
      '--out',
      'RUNS',
      '--speedups',
      '1.5',
      '--rows',
      'heads,joint,uniform',
      '--population',
      '4',
      '--generations',
      '2',
      '--calib-tokens',
      '512',
      '--timing-runs',
      '2',
      '--speed-shape',
      'tiny',
      '--speed-timing-runs',
      '2',
    ],
  },
  engine: {
    npm: 'bench:engine',
    script: 'bench/engine.ts',
    args: [],
    quick: ['--shape', 'tiny', '--runs', '1', '--batch', '1', '--seq', '32'],
  },
  prune: {
    npm: 'bench:prune',
    script: 'bench/prune.ts',
    args: [],
    quick: ['--shape', 'tiny', '--runs', '1', '--dir', 'RUNS'],
  },
  workers: {
    npm: 'bench:workers',
    script: 'bench/workers.ts',
    args: [],
    quick: ['--quick', '--repeats', '1'],
  },
  latency: {
    npm: 'bench:latency',
    script: 'bench/latency-check.ts',
    args: [],
    quick: ['--shapes', 'tiny', '--runs', '1'],
  },
  scale: {
    npm: 'bench:scale',
    script: 'bench/scale.ts',
    args: [],
    quick: ['--shapes', 'tiny', '--skip-cli'],
  },
};

const { values } = parseArgs({
  options: {
    only: { type: 'string' },
    out: { type: 'string' },
    quick: { type: 'boolean', default: false },
    reuse: { type: 'boolean', default: false },
  },
});

function fail(line: string): never {
  process.stderr.write(`bench: ${line}\n`);
  process.exit(2);
}

const names = values.only ? values.only.split(',').filter((n) => n !== '') : Object.keys(BENCHES);
for (const n of names)
  if (!BENCHES[n]) fail(`--only: unknown benchmark ${n} (known: ${Object.keys(BENCHES).join(', ')})`);
if (values.reuse && values.quick) fail('--reuse: not with --quick');
for (const n of names)
  if (values.reuse && !BENCHES[n].reuse)
    fail(
      `--reuse: ${n} cannot reuse finished runs (only ${Object.keys(BENCHES)
        .filter((k) => BENCHES[k].reuse)
        .join(', ')} can)`,
    );
if (values.quick && !values.out)
  fail('--quick: give --out DIR (quick numbers mean nothing and must not replace docs/tables/)');
const out = resolve(values.out ?? join(REPO, 'docs', 'tables'));

/** Runs one script as a child process, its stdout and stderr passed through; resolves with its exit code. */
function runScript(args: string[]): Promise<number | null> {
  return new Promise((done, failed) => {
    const p = spawn(process.execPath, ['--import', 'tsx', ...args], {
      cwd: REPO,
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    p.on('error', failed);
    p.on('close', done);
  });
}

await mkdir(out, { recursive: true });
const scratch = await mkdtemp(join(tmpdir(), 'geneprune-bench-all-'));
const failed: string[] = [];
try {
  for (const name of names) {
    const b = BENCHES[name];
    const runs = join(scratch, `${name}-runs`);
    const tableFile = join(scratch, `${name}.md`);
    const pointsFile = join(scratch, `${name}.points.json`);
    const own = [
      ...(values.quick ? b.quick : b.args).map((a) => (a === 'RUNS' ? runs : a)),
      ...(values.reuse && b.reuse ? [b.reuse] : []),
    ];
    const args = [
      b.script,
      ...own,
      '--table-out',
      tableFile,
      ...(b.figure ? ['--points-out', pointsFile] : []),
    ];
    const date = new Date().toISOString();
    const t0 = performance.now();
    process.stderr.write(`bench: ${name}: node --import tsx ${args.join(' ')}\n`);
    const code = await runScript(args);
    if (code !== 0) {
      process.stderr.write(`bench: ${name}: exit ${code}; ${join(out, `${name}.md`)} left as it was\n`);
      failed.push(name);
      continue;
    }
    const seconds = (performance.now() - t0) / 1000;
    const table = await readFile(tableFile, 'utf8');
    const shownArgs = values.quick ? own : own.filter((a) => a !== runs);
    const shown = [`npm run ${b.npm}`, ...(shownArgs.length > 0 ? ['--', ...shownArgs] : [])].join(' ');
    const header = [
      '<!--',
      `  regenerated by: npm run bench -- --only ${name}${values.quick ? ' --quick' : ''}${values.reuse ? ' --reuse' : ''}`,
      `  command: ${values.quick ? shown.replace(runs, '<scratch>') : shown}`,
      `  date: ${date} (${seconds.toFixed(0)} s)`,
      ...(values.quick ? ['  --quick: smoke-test settings, these numbers mean nothing'] : []),
      '-->',
    ].join('\n');
    await writeTextAtomic(join(out, `${name}.md`), `${header}\n\n${table}`);
    if (b.figure) {
      const { spec, points } = b.figure(JSON.parse(await readFile(pointsFile, 'utf8')) as PointsFile);
      await writeTextAtomic(join(out, `${name}.svg`), await renderSvg(spec));
      process.stderr.write(`bench: ${name}: ${join(out, `${name}.svg`)} (${points} points)\n`);
    }
    process.stderr.write(`bench: ${name}: ${join(out, `${name}.md`)} in ${seconds.toFixed(0)} s\n`);
  }
} finally {
  await rm(scratch, { recursive: true, force: true });
}
if (failed.length > 0) {
  process.stderr.write(`bench: failed: ${failed.join(', ')}\n`);
  process.exitCode = 1;
}
