import type { Command } from 'commander';
import {
  flagError,
  type GivenSetting,
  HEAD_METHODS,
  HEAD_PRESETS,
  type HeadPreset,
  type HeadSearchEnv,
  type HeadSearchOptions,
  type HeadSearchResult,
  type HeadSearchSettings,
  resumeHeadSearch,
  SOS_PRESET,
  searchHeads,
} from '../index.js';
import {
  computeDtypeOption,
  deviceOption,
  memoryBudgetOption,
  modelOption,
  parseByteSize,
  parseComputeDtype,
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

type Parse = (flag: string, v: string) => unknown;
const int =
  (min = 1): Parse =>
  (flag, v) =>
    parseIntFlag(flag, v, min);
const float: Parse = (flag, v) => parseFloatFlag(flag, v);
const text: Parse = (_flag, v) => v;
const choice =
  (options: readonly string[]): Parse =>
  (flag, v) =>
    oneOf(flag, v, options);

/** Every flag that sets a search setting: commander's attribute name, the flag, the setting, its parser. */
const SETTING_FLAGS: Array<[string, string, keyof HeadSearchSettings, Parse]> = [
  ['model', '--model', 'model', text],
  ['tokenizer', '--tokenizer', 'tokenizer', text],
  ['calib', '--calib', 'calib', text],
  ['eval', '--eval', 'eval', text],
  ['method', '--method', 'method', choice(HEAD_METHODS)],
  ['metric', '--metric', 'metric', choice(['ppl', 'kl'])],
  ['fitness', '--fitness', 'fitness', choice(['sos', 'lambda', 'budget'])],
  ['targetSparsity', '--target-sparsity', 'targetSparsity', share],
  ['ctx', '--ctx', 'context', int()],
  ['calibTokens', '--calib-tokens', 'calibTokens', int()],
  ['lowTokens', '--low-tokens', 'lowTokens', int()],
  ['promote', '--promote', 'promote', int(0)],
  ['evalTokens', '--eval-tokens', 'evalTokens', int()],
  ['population', '--population', 'population', int(2)],
  ['generations', '--generations', 'generations', int()],
  ['tournament', '--tournament', 'tournament', int()],
  ['crossoverRate', '--crossover-rate', 'crossoverRate', share],
  ['mutationRate', '--mutation-rate', 'mutationRate', share],
  ['removalBias', '--removal-bias', 'removalBias', share],
  ['sInitial', '--s-initial', 'sInitial', share],
  ['lambda', '--lambda', 'lambda', float],
  ['elitism', '--elitism', 'elitism', int(0)],
  ['fitnessThreshold', '--fitness-threshold', 'fitnessThreshold', float],
  ['maxSparsity', '--max-sparsity', 'maxSparsity', share],
  ['samples', '--samples', 'regressionSamples', int()],
  ['seed', '--seed', 'seed', int(0)],
  ['batchSize', '--batch-size', 'batchSize', int()],
  ['seedAblation', '--seed-ablation', 'seedAblation', () => true],
  ['dtype', '--dtype', 'dtype', (_flag, v) => parseComputeDtype(v)],
];

/** The flags' own values, parsed, for the flags present in `f` (no defaults, no cross-checks). */
function parsedSettingFlags(f: Flags): Partial<HeadSearchSettings> {
  const out: Record<string, unknown> = {};
  for (const [attr, flag, key, parse] of SETTING_FLAGS) {
    const v = f[attr];
    if (v === true) out[key] = true;
    else if (typeof v === 'string') out[key] = parse(flag, v);
  }
  return out as Partial<HeadSearchSettings>;
}

/** Flags → search options: values parsed and range-checked here; defaults and cross-checks in the library. */
export function optionsFromFlags(f: Flags): HeadSearchOptions {
  const preset =
    typeof f.preset === 'string' ? oneOf<HeadPreset>('--preset', f.preset, HEAD_PRESETS) : undefined;
  return { calib: '', eval: '', ...parsedSettingFlags(f), ...(preset ? { preset } : {}) };
}

/**
 * The flags the user typed (not defaults), parsed, as the library's given settings: --resume compares them
 * with the run's own. --preset stands for each setting it sets.
 */
export function givenSettings(f: Flags, cmd: Command): GivenSetting[] {
  const typed = (attr: string) => cmd.getOptionValueSource(attr) === 'cli';
  const given: GivenSetting[] = [];
  const parsed = parsedSettingFlags(f);
  for (const [attr, flag, key] of SETTING_FLAGS)
    if (typed(attr)) given.push({ flag, key, value: parsed[key] });
  if (typed('preset')) {
    if (f.preset !== 'sos') throw flagError('--preset', `unknown preset "${String(f.preset)}" (known: sos)`);
    for (const [key, value] of Object.entries(SOS_PRESET))
      given.push({ flag: '--preset', key: key as keyof HeadSearchSettings, value });
  }
  for (const attr of ['device', 'threads', 'quiet', 'json', 'out'])
    if (typed(attr)) given.push({ flag: `--${attr}`, value: f[attr] });
  return given;
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
    .addOption(computeDtypeOption())
    .addOption(threadsOption())
    .addOption(memoryBudgetOption())
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
    .action(async (f: Flags, cmd: Command) => {
      const quiet = f.quiet === true || f.json === true;
      const device = parseDevice(String(f.device));
      const threads = typeof f.threads === 'string' ? parseIntFlag('--threads', f.threads) : undefined;
      const progress = progressLine(process.stderr, quiet);
      const memoryBudget =
        typeof f.memoryBudget === 'string' ? parseByteSize('--memory-budget', f.memoryBudget) : undefined;
      const env: HeadSearchEnv = {
        device,
        threads,
        memoryBudget,
        onNote: (line) => {
          progress.done();
          process.stderr.write(`note: ${line}\n`);
        },
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
        result = await resumeHeadSearch(f.resume, env, givenSettings(f, cmd));
      } else {
        if (typeof f.out !== 'string') throw flagError('--out', 'required: the run directory to create');
        result = await searchHeads({ ...optionsFromFlags(f), ...env, out: f.out });
      }
      progress.done();
      if (f.json) process.stdout.write(`${resultJson(result)}\n`);
      else printResult(result);
    });
}
