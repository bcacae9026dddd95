/**
 * The structured comparison (issue #23): at each target prefill speedup, every structured method at that budget on
 * stories260K — the GA over heads only (Survival of the Smallest's space, at the same latency), MLP channels only,
 * whole blocks only (EvoPress depth) and the joint space, and the no-search baselines uniform width, FLAP-like and
 * ShortGPT — scored on the same calibration tokens (tinystories/calib, KL to the dense model) and reported on
 * tinystories/eval. Each row gives the plan's eval perplexity, the latency model's predicted speedup, and the
 * *measured* prefill speedup of the physically pruned model against the dense one (timed round-robin on this
 * machine, batch 1 at the run's context), with the share of parameters kept.
 *
 *   npm run table:structured [-- --out runs/structured-table --speedups 1.25,1.5,2 --rows joint,heads,...]
 *
 * One latency profile is measured (by the first run) and every later run prices its plans with it, so all rows
 * share one latency model. A speedup the model predicts no plan of a row's family reaches is printed as such.
 * `--table-out FILE` also writes the printed table to FILE.
 */
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { GenepruneError } from '../src/errors.js';
import { timePair } from '../src/latency/calibrate.js';
import { openModel } from '../src/model/open.js';
import { pruneStructured } from '../src/prune/structured.js';
import { runStructuredSearch, type StructuredSearchResult } from '../src/spaces/structured/run.js';
import {
  type StructuredSearchSettings,
  structuredSearchSettings,
} from '../src/spaces/structured/settings.js';

const { values } = parseArgs({
  options: {
    out: { type: 'string', default: 'runs/structured-table' },
    speedups: { type: 'string', default: '1.25,1.5,2' },
    rows: { type: 'string', default: 'heads,channels,blocks,joint,uniform,flap,shortgpt' },
    shared: { type: 'string', default: resolve('..', 'shared') },
    'calib-tokens': { type: 'string', default: '4096' },
    ctx: { type: 'string', default: '256' },
    'width-step': { type: 'string', default: '16' },
    population: { type: 'string', default: '16' },
    generations: { type: 'string', default: '30' },
    threads: { type: 'string', default: '1' },
    'timing-runs': { type: 'string', default: '20' },
    seed: { type: 'string', default: '0' },
    'table-out': { type: 'string' },
  },
});
process.env.GENEPRUNE_MODELS ??= join(values.shared, 'models');
const model = join(values.shared, 'models/stories260K/stories260K.bin');
const calib = join(values.shared, 'data/tinystories/calib');
const evalData = join(values.shared, 'data/tinystories/eval');
for (const p of [model, calib, evalData]) {
  if (!existsSync(p)) {
    console.error(`structured-table: ${p} is missing (the shared model and TinyStories data)`);
    process.exit(1);
  }
}

/** Table rows: name → the run's space and method. */
const ROWS: Record<
  string,
  { label: string; space: StructuredSearchSettings['space']; method: StructuredSearchSettings['method'] }
> = {
  heads: { label: 'heads only, GA (SoS space)', space: 'heads', method: 'ga' },
  channels: { label: 'MLP channels only, GA', space: 'channels', method: 'ga' },
  blocks: { label: 'blocks only, GA (EvoPress depth)', space: 'blocks', method: 'ga' },
  joint: { label: 'joint, GA', space: 'joint', method: 'ga' },
  uniform: { label: 'uniform width (heads and channels)', space: 'joint', method: 'uniform' },
  flap: { label: 'FLAP-like (heads and channels)', space: 'joint', method: 'flap' },
  shortgpt: { label: 'ShortGPT (whole layers)', space: 'joint', method: 'shortgpt' },
};
const rows = values.rows.split(',').filter((r) => r !== '');
for (const r of rows) {
  if (!ROWS[r]) {
    console.error(`structured-table: --rows: unknown row ${r} (known: ${Object.keys(ROWS).join(', ')})`);
    process.exit(2);
  }
}
const speedups = values.speedups.split(',').map(Number);
const threads = Number(values.threads);
const context = Number(values.ctx);
const out = resolve(values.out);
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });

const { spec } = await openModel(model);
const lines = [
  '| target speedup | method | eval ppl | calib KL | predicted speedup | measured speedup | parameters kept |',
  '|---|---|---|---|---|---|---|',
];
let profile: string | undefined;
let dense: number | undefined;
for (const target of speedups) {
  for (const row of rows) {
    const { label, space, method } = ROWS[row];
    const dir = join(out, `${row}-${target}`);
    let r: StructuredSearchResult;
    try {
      r = await runStructuredSearch(
        dir,
        structuredSearchSettings({
          model,
          calib,
          eval: evalData,
          budget: `speedup:${target}`,
          space,
          method,
          context,
          widthStep: Number(values['width-step']),
          calibTokens: Number(values['calib-tokens']),
          scoreTokens: Number(values['calib-tokens']),
          population: Number(values.population),
          generations: Number(values.generations),
          seed: Number(values.seed),
          ...(profile ? { latencyProfile: profile } : {}),
        }),
        { threads },
      );
    } catch (e) {
      if (!(e instanceof GenepruneError)) throw e;
      console.error(`${label} at ${target}x: ${e.message}`);
      lines.push(`| ${target}x | ${label} | — | — | unreachable | — | — |`);
      continue;
    }
    profile ??= r.latencyProfile;
    // Measured: the physically pruned model against the dense one, timed round-robin (one pair per row).
    const timing = {
      threads,
      dtype: 'fp32' as const,
      batch: 1,
      seq: context,
      runs: Number(values['timing-runs']),
      warmup: 2,
      statistic: 'min' as const,
    };
    const [d, q] = await timePair(spec, pruneStructured(spec, r.plan), timing, 5);
    dense = d;
    const line = `| ${target}x | ${label} | ${r.eval.perplexity.toFixed(3)} | ${r.calib.quality.toFixed(4)} | ${r.predictedSpeedup!.toFixed(3)}x | ${(d / q).toFixed(3)}x | ${(100 * r.parameterRatio).toFixed(1)} % |`;
    console.error(line);
    lines.push(line);
  }
}
const table = `${lines.join('\n')}\n`;
process.stdout.write(
  `\nstories260K, ctx ${context}, dense prefill ${dense === undefined ? '?' : (dense * 1000).toFixed(2)} ms (batch 1, ${threads} thread(s)); eval perplexity on tinystories/eval\n\n${table}`,
);
if (values['table-out']) writeFileSync(values['table-out'], table);
