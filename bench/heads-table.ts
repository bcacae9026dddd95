/**
 * Regenerates the manual's head-pruning comparison: every method at 25 % and 50 % of stories260K's heads
 * removed, all scored on the same calibration tokens (tinystories/calib) and reported on tinystories/eval.
 *
 *   npm run table:heads [-- --out runs/table --sparsities 0.25,0.5 --methods ga,random,...]
 *
 * `--table-out FILE` also writes the printed table to FILE; `--points-out FILE` writes each row as JSON (method,
 * share of heads removed, eval and calib perplexity, and the dense model's) for `npm run bench`'s figure.
 *
 * Needs the shared model (GENEPRUNE_MODELS, or ../shared/models) and data (../shared/data/tinystories).
 */
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { type HeadSearchOptions, type HeadSearchResult, searchHeads } from '../src/index.js';

const { values } = parseArgs({
  options: {
    out: { type: 'string', default: 'runs/table' },
    sparsities: { type: 'string', default: '0.25,0.5' },
    methods: { type: 'string', default: 'random,norm,ablation,regression,greedy,ga,ga-seeded,nsga' },
    shared: { type: 'string', default: resolve('..', 'shared') },
    'calib-tokens': { type: 'string', default: '8192' },
    seed: { type: 'string', default: '0' },
    'table-out': { type: 'string' },
    'points-out': { type: 'string' },
  },
});
process.env.GENEPRUNE_MODELS ??= join(values.shared, 'models');
const calib = join(values.shared, 'data/tinystories/calib');
const evalData = join(values.shared, 'data/tinystories/eval');
for (const p of [calib, evalData]) {
  if (!existsSync(p)) {
    console.error(`heads-table: ${p} is missing (the shared TinyStories data)`);
    process.exit(1);
  }
}

/** Method rows: name in the table → search options. */
const METHODS: Record<string, Partial<HeadSearchOptions>> = {
  random: { method: 'random' },
  norm: { method: 'norm' },
  ablation: { method: 'ablation' },
  regression: { method: 'regression' },
  greedy: { method: 'greedy' },
  ga: { method: 'ga', population: 16, generations: 30 },
  'ga-seeded': {
    method: 'ga',
    population: 16,
    generations: 30,
    seedAblation: true,
    lowTokens: 2048,
    promote: 3,
  },
  nsga: { method: 'nsga', population: 16, generations: 30 },
};

const rows: string[] = [];
const header =
  '| removed | method | eval ppl | calib ppl | forward passes | evaluations | wall time (s) |\n|---|---|---|---|---|---|---|';
let dense = '';
const points: Array<{ method: string; sparsity: number; evalPerplexity: number; calibPerplexity: number }> =
  [];
let densePerplexity = Number.NaN;
for (const share of values.sparsities.split(',').map(Number)) {
  for (const name of values.methods.split(',')) {
    const flags = METHODS[name];
    if (!flags) throw new Error(`unknown method row ${name}`);
    const dir = join(values.out, `${name}-${Math.round(share * 100)}`);
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(values.out, { recursive: true });
    process.stderr.write(`${name} at ${share * 100} % ... `);
    const r: HeadSearchResult = await searchHeads({
      out: dir,
      calib,
      eval: evalData,
      targetSparsity: share,
      calibTokens: Number(values['calib-tokens']),
      seed: Number(values.seed),
      ...flags,
    });
    if (!('perplexity' in r.eval)) throw new Error('table:heads reads perplexity runs only');
    process.stderr.write(`eval ppl ${r.eval.perplexity.toFixed(3)} in ${r.seconds.toFixed(0)} s\n`);
    dense = `dense model: eval ppl ${r.eval.densePerplexity.toFixed(3)} (${r.eval.tokens} tokens), calib ppl ${r.calib.denseQuality.toFixed(3)} (${r.calib.tokens} tokens)`;
    densePerplexity = r.eval.densePerplexity;
    points.push({
      method: name,
      sparsity: r.removed / r.genes,
      evalPerplexity: r.eval.perplexity,
      calibPerplexity: r.calib.quality,
    });
    rows.push(
      `| ${r.removed}/${r.genes} | ${name} | ${r.eval.perplexity.toFixed(3)} | ${r.calib.quality.toFixed(3)} | ${r.forwardPasses} | ${r.evaluations} | ${r.seconds.toFixed(1)} |`,
    );
  }
}
const table = `${header}\n${rows.join('\n')}\n\n${dense}\n`;
writeFileSync(join(values.out, 'table.md'), table);
if (values['table-out']) writeFileSync(values['table-out'], table);
if (values['points-out'])
  writeFileSync(values['points-out'], `${JSON.stringify({ densePerplexity, points }, null, 2)}\n`);
process.stdout.write(table);
