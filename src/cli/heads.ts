import type { Command } from 'commander';
import { flagError } from '../errors.js';
import type { FitnessKind } from '../search/fitness.js';
import {
  HEAD_METHODS,
  type HeadMethod,
  type HeadSearchEnv,
  type HeadSearchResult,
  type HeadSearchSettings,
  resumeHeadSearch,
  runHeadSearch,
} from '../search/headsearch.js';
import type { QualityMetric } from '../search/objective.js';
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

/** The paper's settings (Survival of the Smallest): population 10, tournament 3, mutation 1 %, −ppl·(1−s). */
const SOS_PRESET: Partial<HeadSearchSettings> = {
  population: 10,
  tournament: 3,
  mutationRate: 0.01,
  fitness: 'sos',
  metric: 'ppl',
  elitism: 0,
  removalBias: 0.5,
  crossoverRate: 1,
  sInitial: 0.1,
};

export function settingsFromFlags(f: Flags): HeadSearchSettings {
  const str = (k: string) => (typeof f[k] === 'string' ? (f[k] as string) : undefined);
  const preset = str('preset');
  if (preset !== undefined && preset !== 'sos')
    throw flagError('--preset', `unknown preset "${preset}" (known: sos)`);
  const base: HeadSearchSettings = {
    model: str('model'),
    tokenizer: str('tokenizer'),
    calib: str('calib') ?? '',
    eval: str('eval') ?? '',
    method: oneOf<HeadMethod>('--method', str('method') ?? 'ga', HEAD_METHODS),
    metric: 'ppl',
    calibTokens: 8192,
    promote: 2,
    population: 16,
    generations: 30,
    tournament: 3,
    crossoverRate: 0.9,
    mutationRate: 0.02,
    removalBias: 0,
    sInitial: 0.1,
    fitness: 'sos',
    lambda: 1,
    elitism: 2,
    seedAblation: false,
    seed: 0,
    ...(preset === 'sos' ? SOS_PRESET : {}),
  };
  if (!base.calib) throw flagError('--calib', 'required: the calibration data the search scores masks on');
  if (!base.eval) throw flagError('--eval', 'required: the evaluation data the final mask is reported on');
  const s: HeadSearchSettings = { ...base };
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
  const set = <K extends keyof HeadSearchSettings>(key: K, v: HeadSearchSettings[K] | undefined) => {
    if (v !== undefined) s[key] = v;
  };
  set(
    'metric',
    str('metric') === undefined ? undefined : oneOf<QualityMetric>('--metric', str('metric')!, ['ppl', 'kl']),
  );
  set('targetSparsity', sh('targetSparsity', '--target-sparsity'));
  set('context', n('ctx', '--ctx'));
  set('calibTokens', n('calibTokens', '--calib-tokens'));
  set('lowTokens', n('lowTokens', '--low-tokens'));
  set('promote', n('promote', '--promote', 0));
  set('evalTokens', n('evalTokens', '--eval-tokens'));
  set('population', n('population', '--population', 2));
  set('generations', n('generations', '--generations'));
  set('tournament', n('tournament', '--tournament'));
  set('crossoverRate', sh('crossoverRate', '--crossover-rate'));
  set('mutationRate', sh('mutationRate', '--mutation-rate'));
  set('removalBias', sh('removalBias', '--removal-bias'));
  set('sInitial', sh('sInitial', '--s-initial'));
  set('lambda', x('lambda', '--lambda'));
  set('elitism', n('elitism', '--elitism', 0));
  set('fitnessThreshold', x('fitnessThreshold', '--fitness-threshold'));
  set('maxSparsity', sh('maxSparsity', '--max-sparsity'));
  set('regressionSamples', n('samples', '--samples'));
  set('seed', n('seed', '--seed', 0));
  set('batchSize', n('batchSize', '--batch-size'));
  if (f.seedAblation) s.seedAblation = true;
  const fitness = str('fitness');
  if (fitness !== undefined)
    s.fitness = oneOf<FitnessKind>('--fitness', fitness, ['sos', 'lambda', 'budget']);
  else if (preset === undefined && s.targetSparsity !== undefined) s.fitness = 'budget';
  if (s.fitness === 'sos' && s.metric === 'kl') {
    throw flagError(
      '--fitness',
      'sos multiplies perplexity by (1 − sparsity); with --metric kl use lambda or budget',
    );
  }
  if (s.elitism >= s.population) throw flagError('--elitism', `must be below --population (${s.population})`);
  if (s.lowTokens !== undefined && s.lowTokens >= s.calibTokens) {
    throw flagError('--low-tokens', `must be below --calib-tokens (${s.calibTokens})`);
  }
  if (s.lowTokens !== undefined && s.promote < 1)
    throw flagError('--promote', 'multi-fidelity needs --promote ≥ 1');
  return s;
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
    .option('--resume <dir>', 'continue a GA run directory from its last finished generation')
    .option(
      '--preset <name>',
      'sos = the paper: population 10, tournament 3, mutation 1 %, fitness −ppl·(1−s)',
    )
    .option('--metric <name>', 'ppl (perplexity) or kl (KL divergence from the unpruned model)', undefined)
    .option('--fitness <kind>', 'sos: −ppl·(1−s); lambda: −quality + λ·s; budget: −quality at a fixed size')
    .option('--lambda <x>', 'price of sparsity in the lambda fitness (quality is ppl/dense ppl, or KL)')
    .option('--population <n>', 'individuals per generation (default 16)')
    .option('--generations <n>', 'generations at most (G, default 30)')
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
    .option('--batch-size <n>', 'windows per forward pass')
    .option('--seed <s>', 'seed for every random choice (default 0)')
    .addOption(deviceOption())
    .addOption(threadsOption())
    .option('--quiet', 'no progress display')
    .addHelpText(
      'after',
      `
Genes: one per query head present, layer-major (gene = layer * heads + head for an unpruned model; a
pruned one has as many genes per layer as heads left), 1 = kept. With grouped-query
attention a KV head goes only when every query head reading it goes. Every method removes the same
number of heads when --target-sparsity is given, and all score on the same calibration tokens.

Examples:
  geneprune heads --calib ../shared/data/tinystories/calib --eval ../shared/data/tinystories/eval \\
      --target-sparsity 0.25 --out runs/ga25
  geneprune heads --preset sos --calib CALIB --eval EVAL --generations 100 --out runs/sos
  geneprune heads --method ablation --target-sparsity 0.5 --calib CALIB --eval EVAL --out runs/abl50
  geneprune heads --resume runs/ga25`,
    )
    .action(async (f: Flags) => {
      const device = parseDevice(String(f.device));
      const threads = typeof f.threads === 'string' ? parseIntFlag('--threads', f.threads) : undefined;
      const progress = progressLine(process.stderr, f.quiet === true);
      const env: HeadSearchEnv = {
        device,
        threads,
        onStatus: (line) => {
          if (!f.quiet) {
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
        result = await runHeadSearch(f.out, settingsFromFlags(f), env);
      }
      progress.done();
      printResult(result);
    });
}
