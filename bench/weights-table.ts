/**
 * Regenerates the manual's weight-pruning tables (the shape of the GenePrune paper's Tables 2 and 3): every method
 * at 20/30/40/50 % of the prunable weights and at 2:4, without and with recovery, on stories260K — evaluation
 * perplexity on tinystories/eval, corpus BLEU on the TinyStories continuation task built from the same evaluation
 * pages (`--eval-task auto`, 48 new tokens), forward passes and wall time. Every mask is chosen and scored on the
 * same tinystories/calib tokens.
 *
 * One run per (method, level), with `--recover`: its result holds the masked model's scores (recovery.before) and
 * the recovered model's, so the two rows of a method come from one mask — except for the seeded GAs, which with
 * `--recover` search each block on the recovered blocks before it and so choose another mask: their row without
 * recovery comes from a second run without `--recover`.
 *
 *   npm run table:weights [-- --out runs/weights-table --levels 0.2,0.3,0.4,0.5,2:4 --methods magnitude,... --reuse]
 *
 * `--reuse` takes a finished run's result.json from its directory instead of running it again (so several
 * processes can fill disjoint --methods and a last one assembles the tables). `--table-out FILE` also writes the
 * printed tables to FILE; `--points-out FILE` writes every row's cells as JSON (method, level, achieved sparsity,
 * eval perplexity and BLEU, and the dense model's) for `npm run bench`'s figure. Needs the shared model
 * (GENEPRUNE_MODELS, or ../shared/models) and data (../shared/data/tinystories).
 */
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { type PerplexityRunResult, perplexityRun, pruneWeights } from '../src/index.js';

const { values } = parseArgs({
  options: {
    out: { type: 'string', default: 'runs/weights-table' },
    levels: { type: 'string', default: '0.2,0.3,0.4,0.5,2:4' },
    methods: {
      type: 'string',
      default: 'magnitude,global-magnitude,random,wanda,ga,ga-magnitude,ga-wanda,alloc,sparsegpt,owl',
    },
    shared: { type: 'string', default: resolve('..', 'shared') },
    'calib-tokens': { type: 'string', default: '8192' },
    'new-tokens': { type: 'string', default: '48' },
    seed: { type: 'string', default: '0' },
    threads: { type: 'string' },
    reuse: { type: 'boolean', default: false },
    'table-out': { type: 'string' },
    'points-out': { type: 'string' },
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
const levels = values.levels.split(',');
/** Methods that cannot take a pattern (an N:M pattern fixes every matrix at 1 − N/M: nothing to allocate). */
const NO_PATTERN = new Set(['alloc', 'owl']);
/** Methods whose mask depends on --recover (they recover each fixed block before searching the next). */
const RECOVER_IN_LOOP = new Set(['ga-wanda', 'ga-magnitude']);
mkdirSync(values.out, { recursive: true });

const results = new Map<string, PerplexityRunResult>();
for (const method of methods) {
  for (const level of levels) {
    for (const recover of RECOVER_IN_LOOP.has(method) ? [false, true] : [true]) {
      const pattern = level.includes(':') ? level : undefined;
      if (pattern && NO_PATTERN.has(method)) continue;
      const suffix = RECOVER_IN_LOOP.has(method) && !recover ? '-norecover' : '';
      const dir = join(values.out, `${method}-${level.replace(':', 'of')}${suffix}`);
      const key = `${method}@${level}${suffix}`;
      if (values.reuse && existsSync(join(dir, 'result.json'))) {
        results.set(key, JSON.parse(readFileSync(join(dir, 'result.json'), 'utf8')));
        continue;
      }
      rmSync(dir, { recursive: true, force: true });
      process.stderr.write(`${method} at ${level} ... `);
      const r = perplexityRun(
        await pruneWeights({
          out: dir,
          calib,
          eval: evalData,
          method,
          ...(pattern ? { pattern } : { sparsity: Number(level) }),
          calibTokens: Number(values['calib-tokens']),
          seed: Number(values.seed),
          recover,
          evalTask: 'auto',
          evalNewTokens: Number(values['new-tokens']),
          ...(values.threads ? { threads: Number(values.threads) } : {}),
        }),
      );
      results.set(key, r);
      process.stderr.write(
        r.recovery
          ? `eval ppl ${r.recovery.before.evalPerplexity.toFixed(3)} → ${r.eval.perplexity.toFixed(3)} recovered, ${r.seconds.toFixed(1)} s\n`
          : `eval ppl ${r.eval.perplexity.toFixed(3)}, ${r.seconds.toFixed(1)} s\n`,
      );
    }
  }
}

/** The run a row reads: the seeded GAs' row without recovery has a run of its own. */
function runOf(method: string, level: string, recovered: boolean): PerplexityRunResult | undefined {
  const own =
    !recovered && RECOVER_IN_LOOP.has(method) ? results.get(`${method}@${level}-norecover`) : undefined;
  return own ?? results.get(`${method}@${level}`);
}
/** Eval perplexity and BLEU of a row's model: the recovered one, or the masked one. */
function scores(r: PerplexityRunResult, recovered: boolean): { ppl: number; bleu: number } {
  if (recovered || !r.recovery) return { ppl: r.eval.perplexity, bleu: r.evalBleu!.corpus };
  return { ppl: r.recovery.before.evalPerplexity, bleu: r.recovery.before.evalBleu! };
}

const pct = (x: number) => `${(100 * x).toFixed(1)} %`;
const header = (first: string) =>
  `| ${first} | ${levels.map((l) => (l.includes(':') ? l : pct(Number(l)))).join(' | ')} |\n|---|${levels.map(() => '---:|').join('')}`;
/** A method's cell at a level, or n/a; the paper's GA names the sparsity it reached when it stopped short. */
function cell(
  method: string,
  level: string,
  value: (r: PerplexityRunResult) => string,
  recovered = true,
): string {
  const r = runOf(method, level, recovered);
  if (!r) return 'n/a';
  const short = Math.abs(r.sparsity.achieved - r.sparsity.target) > 0.01;
  return short ? `${value(r)} (at ${pct(r.sparsity.achieved)})` : value(r);
}
function table(first: string, value: (r: PerplexityRunResult, recovered: boolean) => string): string {
  const rows: string[] = [];
  for (const method of methods) {
    for (const recovered of [false, true]) {
      const name = recovered ? `${method} + recovery` : method;
      rows.push(
        `| ${name} | ${levels.map((l) => cell(method, l, (r) => value(r, recovered), recovered)).join(' | ')} |`,
      );
    }
  }
  return `${header(first)}\n${rows.join('\n')}`;
}

const any = [...results.values()][0];
const ppl = table('eval perplexity', (r, rec) => scores(r, rec).ppl.toFixed(3));
const bleu = table('eval BLEU', (r, rec) => scores(r, rec).bleu.toFixed(2));
const costRows = methods.map(
  (m) =>
    `| ${m} | ${levels
      .map((l) =>
        cell(
          m,
          l,
          (r) =>
            `${r.methodCost.forwardPasses} · ${r.methodCost.seconds.toFixed(1)} s (+${r.recovery!.seconds.toFixed(1)} s)`,
        ),
      )
      .join(' | ')} |`,
);
const cost = `${header('method: batch passes · seconds (+ recovery)')}\n${costRows.join('\n')}`;
const dense = any
  ? `dense stories260K: eval ppl ${any.eval.densePerplexity.toFixed(3)} (${any.eval.tokens} tokens of tinystories/eval), eval BLEU ${any.evalBleu!.denseCorpus.toFixed(2)} (${any.evalBleu!.items} continuations of tinystories/eval, ${any.evalBleu!.maxNewTokens} new tokens), calib ppl ${any.calib.densePerplexity.toFixed(3)} (${any.calib.tokens} tokens of tinystories/calib)`
  : '';
const text = `${ppl}\n\n${bleu}\n\n${cost}\n\n${dense}\n`;
writeFileSync(join(values.out, 'table.md'), text);
if (values['table-out']) writeFileSync(values['table-out'], text);
if (values['points-out']) {
  const points = methods.flatMap((method) =>
    levels.flatMap((level) =>
      [false, true].flatMap((recovered) => {
        const r = runOf(method, level, recovered);
        if (!r) return [];
        const s = scores(r, recovered);
        return [
          {
            method: recovered ? `${method} + recovery` : method,
            level,
            sparsity: r.sparsity.achieved,
            evalPerplexity: s.ppl,
            evalBleu: s.bleu,
          },
        ];
      }),
    ),
  );
  const denseScores = any
    ? { densePerplexity: any.eval.densePerplexity, denseBleu: any.evalBleu!.denseCorpus }
    : {};
  writeFileSync(values['points-out'], `${JSON.stringify({ ...denseScores, points }, null, 2)}\n`);
}
process.stdout.write(text);
