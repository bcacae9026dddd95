import type { Command } from 'commander';
import {
  type FitnessKind,
  flagError,
  HEAD_METHODS,
  type HeadMethod,
  type HeadPreset,
  type HeadSearchEnv,
  type HeadSearchOptions,
  type HeadSearchResult,
  type QualityMetric,
  resumeHeadSearch,
  searchHeads,
} from '../index.js';
import {
  deviceOption,
  modelOption,
  parseDevice,
  parseFloatFlag,
  parseIntFlag,
  threadsOption,
  tokenizerOption,
} from './options.js';
import { progressLine } from './progress.js';

type Flags = Record<string, string | boolean | undefined>;

function share(flag: string, v: string): number {
  const x = parseFloatFlag(flag, v, 0);
  if (x > 1) throw flagError(flag, `must be a share between 0 and 1, got ${v}`);
  return x;
}

function oneOf<T extends string>(flag: string, v: string, options: readonly T[]): T {
  if (!(options as readonly string[]).includes(v))
    throw flagError(flag, `"${v}" is not one of ${options.join(', ')}`);
  return v as T;
}

/** Flags → search options: values parsed and range-checked here; defaults and cross-checks in the library. */
export function optionsFromFlags(f: Flags): HeadSearchOptions {
  const str = (k: string) => (typeof f[k] === 'string' ? (f[k] as string) : undefined);
  const n = (k: string, flag: string, min = 1) => {
    const v = str(k);
    return v === undefined ? undefined : parseIntFlag(flag, v, min);
  };
  const x = (k: string, flag: string) => {
    const v = str(k);
    return v === undefined ? undefined : parseFloatFlag(flag, v);
  };
  const sh = (k: string, flag: string) => {
    const v = str(k);
    return v === undefined ? undefined : share(flag, v);
  };
  const pick = <T extends string>(k: string, flag: string, options: readonly T[]) => {
    const v = str(k);
    return v === undefined ? undefined : oneOf(flag, v, options);
  };
  return {
    model: str('model'),
    tokenizer: str('tokenizer'),
    calib: str('calib') ?? '',
    eval: str('eval') ?? '',
    preset: pick<HeadPreset>('preset', '--preset', ['sos']),
    method: pick<HeadMethod>('method', '--method', HEAD_METHODS),
    metric: pick<QualityMetric>('metric', '--metric', ['ppl', 'kl']),
    fitness: pick<FitnessKind>('fitness', '--fitness', ['sos', 'lambda', 'budget']),
    targetSparsity: sh('targetSparsity', '--target-sparsity'),
    context: n('ctx', '--ctx'),
    calibTokens: n('calibTokens', '--calib-tokens'),
    lowTokens: n('lowTokens', '--low-tokens'),
    promote: n('promote', '--promote', 0),
    evalTokens: n('evalTokens', '--eval-tokens'),
    population: n('population', '--population', 2),
    generations: n('generations', '--generations'),
    tournament: n('tournament', '--tournament'),
    crossoverRate: sh('crossoverRate', '--crossover-rate'),
    mutationRate: sh('mutationRate', '--mutation-rate'),
    removalBias: sh('removalBias', '--removal-bias'),
    sInitial: sh('sInitial', '--s-initial'),
    lambda: x('lambda', '--lambda'),
    elitism: n('elitism', '--elitism', 0),
    fitnessThreshold: x('fitnessThreshold', '--fitness-threshold'),
    maxSparsity: sh('maxSparsity', '--max-sparsity'),
    regressionSamples: n('samples', '--samples'),
    seed: n('seed', '--seed', 0),
    batchSize: n('batchSize', '--batch-size'),
    seedAblation: f.seedAblation === true ? true : undefined,
  };
}

function formatSeconds(sec: number): string {
  if (!Number.isFinite(sec)) return '?';
  if (sec < 90) return `${Math.round(sec)}s`;
  if (sec < 5400) return `${Math.floor(sec / 60)}m${String(Math.round(sec % 60)).padStart(2, '0')}s`;
  return `${(sec / 3600).toFixed(1)}h`;
}

function printResult(r: HeadSearchResult): void {
  const metric = r.calib.metric === 'ppl' ? 'ppl' : 'KL';
  const lines = [
    `run          ${r.runDir}`,
    `method       ${r.method}`,
    `removed      ${r.removed}/${r.genes} heads (${((100 * r.removed) / r.genes).toFixed(1)} %)`,
    `calibration  ${metric} ${r.calib.quality.toFixed(4)} (dense ${r.calib.denseQuality.toFixed(4)}, ${r.calib.tokens} tokens)`,
    `evaluation   ppl ${r.eval.perplexity.toFixed(4)} (dense ${r.eval.densePerplexity.toFixed(4)}, ${r.eval.tokens} tokens of ${r.eval.data})`,
    `cost         ${r.forwardPasses} forward passes, ${r.evaluations} evaluations, ${r.seconds.toFixed(1)} s`,
    `mask         ${r.runDir}/mask.json`,
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}

/** The result for --json: the genome as a 0/1 string, like result.json. */
function resultJson(r: HeadSearchResult): string {
  const { genome, ...rest } = r;
  return JSON.stringify({ ...rest, genome: Array.from(genome).join(''), mask: `${r.runDir}/mask.json` });
}

export function registerHeads(program: Command): void {
  program
    .command('heads')
    .description(
      'Search which attention heads to remove: the Survival of the Smallest GA, NSGA-II, or baselines.',
    )
    .addOption(modelOption())
    .addOption(tokenizerOption())
    .option('--calib <path>', 'calibration data: what the search scores masks on (required)')
    .option('--eval <path>', 'evaluation data: what the final mask is reported on (required, must differ)')
    .option('--method <name>', `${HEAD_METHODS.join(' | ')}`, 'ga')
    .option(
      '--target-sparsity <share>',
      'share of heads to remove (baselines; makes the GA hold this exact budget)',
    )
    .option('--out <dir>', 'run directory to create (config, logs, state, mask.json, result.json)')
    .option('--resume <dir>', 'continue a GA or NSGA-II run directory from its last finished generation')
    .option(
      '--preset <name>',
      'sos = the paper: population 10, tournament 3, mutation 1 %, fitness −ppl·(1−s)',
    )
    .option('--metric <name>', 'ppl (perplexity, default) or kl (KL divergence from the unpruned model)')
    .option(
      '--fitness <kind>',
      'sos: −ppl·(1−s); lambda: −quality + λ·s; budget: −quality at a fixed size (default: budget with --target-sparsity, else sos)',
    )
    .option(
      '--lambda <x>',
      'price of sparsity in the lambda fitness, quality being ppl/dense ppl or KL (default 1)',
    )
    .option('--population <n>', 'individuals per generation (default 16)')
    .option('--generations <n>', 'generations at most, G (default 30)')
    .option('--tournament <n>', 'tournament size (default 3)')
    .option('--crossover-rate <p>', 'probability a pair is crossed over (default 0.9)')
    .option('--mutation-rate <p>', 'flip-bit probability per gene (default 0.02)')
    .option('--removal-bias <p>', 'share of mutations that may only remove heads (default 0)')
    .option('--s-initial <share>', 'share of heads removed in the initial population (default 0.1)')
    .option('--elitism <n>', 'best individuals kept unchanged each generation (default 2)')
    .option('--fitness-threshold <x>', 'stop when the best fitness reaches this (τ)')
    .option('--max-sparsity <share>', 'stop when an individual removes this share of heads (S)')
    .option('--seed-ablation', 'seed the initial population from single-head ablation scores')
    .option('--calib-tokens <n>', 'calibration tokens per full evaluation (default 8192)')
    .option('--low-tokens <n>', 'multi-fidelity: score everyone on this many tokens first')
    .option('--promote <n>', 'multi-fidelity: re-score this many best on all calibration tokens (default 2)')
    .option('--eval-tokens <n>', 'evaluation tokens for the final report (default: all)')
    .option('--samples <n>', 'regression baseline: random sub-models to sample (default 2 × heads)')
    .option('--ctx <n>', "context length per window (default: the model's, at most 512)")
    .option('--batch-size <n>', 'windows per forward pass (default: about 2048 tokens)')
    .option('--seed <s>', 'seed for every random choice (default 0)')
    .addOption(deviceOption())
    .addOption(threadsOption())
    .option('--quiet', 'no progress display')
    .option('--json', 'print the result as one JSON object (no progress display)')
    .addHelpText(
      'after',
      `
Genes: one per query head present in the model, layer-major (layer by layer, heads in order), 1 = kept.
With grouped-query attention a KV head goes only when every query head reading it goes. Every method
removes the same number of heads when --target-sparsity is given, and all score on the same calibration
tokens.

Examples:
  geneprune heads --calib ../shared/data/tinystories/calib --eval ../shared/data/tinystories/eval \\
      --target-sparsity 0.25 --out runs/ga25
  geneprune heads --preset sos --calib CALIB --eval EVAL --generations 100 --out runs/sos
  geneprune heads --method ablation --target-sparsity 0.5 --calib CALIB --eval EVAL --out runs/abl50
  geneprune heads --resume runs/ga25`,
    )
    .action(async (f: Flags) => {
      const quiet = f.quiet === true || f.json === true;
      const device = parseDevice(String(f.device));
      const threads = typeof f.threads === 'string' ? parseIntFlag('--threads', f.threads) : undefined;
      const progress = progressLine(process.stderr, quiet);
      const env: HeadSearchEnv = {
        device,
        threads,
        onStatus: (line) => {
          if (!quiet) {
            progress.done();
            process.stderr.write(`${line}\n`);
          }
        },
        onProgress: (done, total) => progress.update(`${done}/${total} evaluations`),
        onGeneration: (g, total, elapsed) => {
          const done = g.generation + 1;
          const eta = g.stop ? 0 : (elapsed / done) * (total - done);
          const rate = g.evaluations / Math.max(elapsed, 1e-9);
          progress.update(
            `gen ${done}/${total}  best fitness ${g.best.fitness.toFixed(4)}  best quality ${g.best.quality.toFixed(4)}  ` +
              `sparsity ${(100 * g.best.sparsity).toFixed(1)} %  ${rate.toFixed(1)} evals/s  ETA ${formatSeconds(eta)}`,
          );
        },
      };
      let result: HeadSearchResult;
      if (typeof f.resume === 'string') {
        if (f.out) throw flagError('--out', 'give either --out (a new run) or --resume (an existing one)');
        result = await resumeHeadSearch(f.resume, env);
      } else {
        if (typeof f.out !== 'string') throw flagError('--out', 'required: the run directory to create');
        result = await searchHeads({ ...optionsFromFlags(f), ...env, out: f.out });
      }
      progress.done();
      if (f.json) process.stdout.write(`${resultJson(result)}\n`);
      else printResult(result);
    });
}
