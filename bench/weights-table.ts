/**
 * Regenerates the README's weight-pruning table: magnitude, global-magnitude, Wanda, random and the GA on stories260K at
 * 20/30/40/50 % of the prunable weights and at 2:4, without and with recovery (a method named `NAME+recover` runs
 * with `recover: true`), all reported on tinystories/eval (and scored on the same tinystories/calib tokens), one
 * row per sparsity, one column per method.
 *
 *   npm run table:weights [-- --out runs/weights-table --sparsities 0.2,0.3,0.4,0.5,2:4 --methods magnitude,...]
 *
 * Needs the shared model (GENEPRUNE_MODELS, or ../shared/models) and data (../shared/data/tinystories).
 */
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { pruneWeights, type WeightPruneResult } from '../src/index.js';

const { values } = parseArgs({
  options: {
    out: { type: 'string', default: 'runs/weights-table' },
    sparsities: { type: 'string', default: '0.2,0.3,0.4,0.5,2:4' },
    methods: {
      type: 'string',
      default: 'magnitude,magnitude+recover,global-magnitude,wanda,wanda+recover,random,ga',
    },
    shared: { type: 'string', default: resolve('..', 'shared') },
    'calib-tokens': { type: 'string', default: '8192' },
    seed: { type: 'string', default: '0' },
  },
});
process.env.GENEPRUNE_MODELS ??= join(values.shared, 'models');
const calib = join(values.shared, 'data/tinystories/calib');
const evalData = join(values.shared, 'data/tinystories/eval');
for (const p of [calib, evalData]) {
  if (!existsSync(p)) {
    console.error(`weights-table: ${p} is missing (the shared TinyStories data)`);
    process.exit(1);
  }
}

const methods = values.methods.split(',');
const rows: string[] = [];
let dense = '';
const costs: string[] = [];
mkdirSync(values.out, { recursive: true });
for (const level of values.sparsities.split(',')) {
  const pattern = level.includes(':') ? level : undefined;
  const cells: string[] = [];
  let label = '';
  for (const column of methods) {
    const [method, recover] = column.endsWith('+recover') ? [column.slice(0, -8), true] : [column, false];
    if (pattern && method === 'ga') {
      cells.push('n/a'); // the GA takes no pattern yet
      continue;
    }
    const dir = join(values.out, `${column}-${level.replace(':', 'of')}`);
    rmSync(dir, { recursive: true, force: true });
    process.stderr.write(`${column} at ${level} ... `);
    const r: WeightPruneResult = await pruneWeights({
      out: dir,
      calib,
      eval: evalData,
      method,
      ...(pattern ? { pattern } : { sparsity: Number(level) }),
      calibTokens: Number(values['calib-tokens']),
      seed: Number(values.seed),
      recover,
    });
    process.stderr.write(`eval ppl ${r.eval.perplexity.toFixed(3)} in ${r.seconds.toFixed(1)} s\n`);
    const pct = (x: number) => `${(100 * x).toFixed(1)} %`;
    // The GA's --sparsity is a stop threshold: its cell names the sparsity it reached when that differs.
    const exact = Math.abs(r.sparsity.achieved - r.sparsity.target) < 0.01;
    if (exact || !label) label = `${pattern ?? pct(Number(level))} (${pct(r.sparsity.overall)} of all)`;
    cells.push(
      exact
        ? r.eval.perplexity.toFixed(3)
        : `${r.eval.perplexity.toFixed(3)} (at ${pct(r.sparsity.achieved)})`,
    );
    costs.push(`${column} ${level}: ${r.forwardPasses} passes, ${r.seconds.toFixed(1)} s`);
    dense = `dense stories260K: eval ppl ${r.eval.densePerplexity.toFixed(3)} (${r.eval.tokens} tokens of tinystories/eval), calib ppl ${r.calib.densePerplexity.toFixed(3)} (${r.calib.tokens} tokens)`;
  }
  rows.push(`| ${label} | ${cells.join(' | ')} |`);
}
const header = `| prunable weights pruned | ${methods.join(' | ')} |\n|---|${methods.map(() => '---|').join('')}`;
const table = `${header}\n${rows.join('\n')}\n\n${dense}\n`;
writeFileSync(join(values.out, 'table.md'), `${table}\n${costs.join('\n')}\n`);
process.stdout.write(table);
