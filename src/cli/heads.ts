import type { Command } from 'commander';
import {
  amountUnit,
  flagError,
  type GivenSetting,
  HEAD_METHODS,
  HEAD_PRESETS,
  type HeadPreset,
  type HeadSearchEnv,
  type HeadSearchOptions,
  type HeadSearchResult,
  type HeadSearchSettings,
  metricEntry,
  QUALITY_METRICS,
  quoteValue,
  reportedQuality,
  resumeHeadSearch,
  SOS_PRESET,
  searchHeads,
} from '../index.js';
import { parseQueueUrl } from '../queue/url.js';
import {
  dashboardOption,
  endSearchDashboard,
  hostOption,
  searchDashboard,
  withDashboard,
} from './dashboard.js';
import {
  computeDtypeOption,
  deviceOption,
  memoryBudgetOption,
  modelOption,
  parseIntFlag,
  threadsOption,
  tokenizerOption,
} from './options.js';
import { progressLine, searchProgressText, windowsText } from './progress.js';
import { evalBleuLine, evalChoicesLine, evalGenerationLines } from './report.js';
import {
  CHOICE_SETTING_FLAGS,
  choice,
  choiceOptions,
  DATA_SETTING_FLAGS,
  type Flags,
  float,
  GA_SETTING_FLAGS,
  int,
  oneOf,
  parsedSettingFlags,
  runEnvFromFlags,
  type SettingFlag,
  share,
  TASK_SETTING_FLAGS,
  taskOptions,
  typedSettings,
} from './settings.js';

/** Every flag that sets a search setting: commander's attribute name, the flag, the setting, its parser. */
const SETTING_FLAGS: ReadonlyArray<SettingFlag<Extract<keyof HeadSearchSettings, string>>> = [
  ...DATA_SETTING_FLAGS,
  ['method', '--method', 'method', choice(HEAD_METHODS)],
  ['metric', '--metric', 'metric', choice(QUALITY_METRICS)],
  ...TASK_SETTING_FLAGS,
  ...CHOICE_SETTING_FLAGS,
  ['fitness', '--fitness', 'fitness', choice(['sos', 'lambda', 'budget'])],
  ['targetSparsity', '--target-sparsity', 'targetSparsity', share],
  ...GA_SETTING_FLAGS,
  ['lowItems', '--low-items', 'lowItems', int()],
  ['mutationRate', '--mutation-rate', 'mutationRate', share],
  ['removalBias', '--removal-bias', 'removalBias', share],
  ['sInitial', '--s-initial', 'sInitial', share],
  ['lambda', '--lambda', 'lambda', float],
  ['fitnessThreshold', '--fitness-threshold', 'fitnessThreshold', float],
  ['maxSparsity', '--max-sparsity', 'maxSparsity', share],
  ['samples', '--samples', 'regressionSamples', int()],
  ['seedAblation', '--seed-ablation', 'seedAblation', () => true],
  ['recover', '--recover', 'recover', () => true],
];

/** Flags → search options: values parsed and range-checked here; defaults and cross-checks in the library. */
export function optionsFromFlags(f: Flags): HeadSearchOptions {
  const preset =
    typeof f.preset === 'string' ? oneOf<HeadPreset>('--preset', f.preset, HEAD_PRESETS) : undefined;
  const parsed = parsedSettingFlags(SETTING_FLAGS, f) as Partial<HeadSearchSettings>;
  return { calib: '', eval: '', ...parsed, ...(preset ? { preset } : {}) };
}

/**
 * The flags the user typed (not defaults), parsed, as the library's given settings: --resume compares them
 * with the run's own. --preset stands for each setting it sets.
 */
export function givenSettings(f: Flags, cmd: Command): GivenSetting[] {
  const preset: GivenSetting[] = [];
  if (cmd.getOptionValueSource('preset') === 'cli') {
    if (f.preset !== 'sos') throw flagError('--preset', `unknown preset "${String(f.preset)}" (known: sos)`);
    for (const [key, value] of Object.entries(SOS_PRESET))
      preset.push({ flag: '--preset', key: key as keyof HeadSearchSettings, value });
  }
  return typedSettings(SETTING_FLAGS, f, cmd, preset);
}

function printResult(r: HeadSearchResult): void {
  const c = r.calib;
  const m = metricEntry(c.metric);
  const quoted = (q: number) => quoteValue(m, reportedQuality(c.metric, q));
  // Where a task metric's items came from, by the kind of data it scores.
  const items = {
    task: c.task?.source ?? 'the calibration task',
    choices: c.choices?.source,
    labels: c.labelled?.source,
  };
  const calibration =
    m.data === 'text'
      ? `${m.label} ${quoted(c.quality)} (dense ${quoted(c.denseQuality)}, ${c.tokens} ${amountUnit(m)}, ${windowsText(r)})`
      : `${m.label} ${quoted(c.quality)} (dense ${quoted(c.denseQuality)}, ${c.tokens} ${amountUnit(m)} of ${items[m.data] ?? 'the calibration file'})`;
  const e = r.eval;
  const pct = (x: number) => `${(100 * x).toFixed(1)} %`;
  const evaluation =
    'accuracy' in e
      ? `accuracy ${pct(e.accuracy)} (dense ${pct(e.denseAccuracy)}), macro-F1 ${pct(e.macroF1)} (dense ${pct(e.denseMacroF1)}), ${e.items} items of ${e.data}`
      : `ppl ${e.perplexity.toFixed(4)} (dense ${e.densePerplexity.toFixed(4)}, ${e.tokens} tokens of ${e.data}, ${windowsText(r)})`;
  const lines = [
    `run          ${r.runDir}`,
    `method       ${r.method}`,
    `removed      ${r.removed}/${r.genes} heads (${((100 * r.removed) / r.genes).toFixed(1)} %)`,
    `parameters   ${r.totalParameters} → ${r.keptParameters} kept (${((100 * r.keptParameters) / r.totalParameters).toFixed(1)} %)`,
    `calibration  ${calibration}`,
    `evaluation   ${evaluation}`,
    ...(r.evalBleu ? [evalBleuLine(r.evalBleu), ...evalGenerationLines(r.evalBleu)] : []),
    ...(r.evalChoices ? [evalChoicesLine(r.evalChoices)] : []),
    `cost         ${r.forwardPasses} forward passes, ${r.evaluations} evaluations, ${r.seconds.toFixed(1)} s`,
    ...(r.pick
      ? [
          r.pick.warning
            ? `pick         WARNING: ${r.pick.warning} (${r.pick.frontSize} front points, ${r.pick.archived} masks scored)`
            : `pick         the best front point at the target size (${r.pick.frontSize} front points, ${r.pick.archived} masks scored; front.json, geneprune pick)`,
        ]
      : []),
    `mask         ${r.runDir}/mask.json`,
    ...(r.recovery
      ? [
          `recovery     o refitted on ${r.recovery.tokens} calibration tokens (ctx ${r.context}): calibration ppl ${r.recovery.before.calibPerplexity.toFixed(4)} → ${r.recovery.after.calibPerplexity.toFixed(4)}, evaluation ppl ${r.recovery.before.evalPerplexity.toFixed(4)} → ${r.recovery.after.evalPerplexity.toFixed(4)}`,
          `recovered    ${r.recovery.weights}`,
        ]
      : []),
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
    .option(
      '--calib <path>',
      'calibration data: what the search scores masks on (required); text, or with --metric accuracy|macro-f1 a labelled JSONL file {"text"[, "text_pair"], "label"}',
    )
    .option(
      '--eval <path>',
      'evaluation data: what the final mask is reported on (required, must differ; labelled JSONL with accuracy|macro-f1)',
    )
    .option('--method <name>', `${HEAD_METHODS.join(' | ')}`, 'ga')
    .option(
      '--target-sparsity <share>',
      'share of heads to remove (baselines; makes the GA hold this exact budget; the size NSGA-II picks its mask at, default 0.25)',
    )
    .option('--out <dir>', 'run directory to create (config, logs, state, mask.json, result.json)')
    .option('--resume <dir>', 'continue a GA or NSGA-II run directory from its last finished generation')
    .option(
      '--preset <name>',
      'sos = the paper: population 10, tournament 3, mutation 1 %, fitness −ppl·(1−s)',
    )
    .option(
      '--metric <name>',
      'ppl (perplexity, default), kl (KL divergence from the unpruned model), bleu (BLEU of greedy continuations of the calibration task; quality = −BLEU), exact-match (share generated exactly as the reference), pass@1 (share whose generated program passes the item’s tests; needs --allow-code-execution), mc-accuracy (accuracy on the --calib-choices multiple-choice file; quality = −accuracy), or for sequence-classification models accuracy or macro-f1 on the labelled --calib file (quality = −accuracy or −macro-F1)',
    )
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
    .option(
      '--recover',
      'once the mask is fixed, refit o of every layer by least squares on the calibration activations (recovered-weights.safetensors)',
    )
    .option('--calib-tokens <n>', 'calibration tokens per full evaluation (default 8192)')
    .option('--low-tokens <n>', 'multi-fidelity: score everyone on this many tokens first')
    .option(
      '--low-items <n>',
      'multi-fidelity with --metric bleu or mc-accuracy: score everyone on this many task items first',
    )
    .option('--promote <n>', 'multi-fidelity: re-score this many best on all calibration tokens (default 2)')
    .option('--eval-tokens <n>', 'evaluation tokens for the final report (default: all)')
    .addOption(taskOptions.calibTask())
    .addOption(taskOptions.calibItems())
    .addOption(taskOptions.calibNewTokens())
    .addOption(taskOptions.bleu())
    .addOption(taskOptions.evalTask())
    .addOption(taskOptions.evalItems())
    .addOption(taskOptions.evalNewTokens())
    .addOption(taskOptions.promptTemplate())
    .addOption(taskOptions.allowCodeExecution())
    .addOption(taskOptions.execWorkers())
    .addOption(choiceOptions.calibChoices())
    .addOption(choiceOptions.choiceNorm())
    .addOption(choiceOptions.evalChoices())
    .option('--samples <n>', 'regression baseline: random sub-models to sample (default 2 × heads)')
    .option('--ctx <n>', "context length per window (default: the model's, at most 512)")
    .option('--batch-size <n>', 'windows per forward pass (default: about 2048 tokens)')
    .option('--seed <s>', 'seed for every random choice (default 0)')
    .addOption(deviceOption())
    .addOption(computeDtypeOption())
    .addOption(threadsOption())
    .option(
      '--workers <n>',
      'score candidates in n worker processes, each with its own session and --threads (default: cores / n); same logs, mask and result as one process, with every --metric; may change on --resume',
    )
    .option(
      '--queue <url>',
      'post candidates as jobs on Redis (redis://[user:password@]HOST:PORT[/DB] or rediss://) for `geneprune worker` processes anywhere; same logs, mask and result as one process (not --metric pass@1); may change on --resume',
    )
    .addOption(memoryBudgetOption())
    .option('--quiet', 'no progress display')
    .option('--json', 'print the result as one JSON object (no progress display)')
    .addOption(dashboardOption())
    .addOption(hostOption())
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
  geneprune heads --target-sparsity 0.25 --recover --calib CALIB --eval EVAL --out runs/ga25r
  geneprune heads --target-sparsity 0.25 --metric mc-accuracy --calib-choices calib-mc.jsonl \\
      --eval-choices eval-mc.jsonl --calib CALIB --eval EVAL --out runs/mc25
  geneprune heads --model hf:distilbert/distilbert-base-uncased-finetuned-sst-2-english --metric accuracy \\
      --calib data/sentiment/calib.jsonl --eval data/sentiment/eval.jsonl --target-sparsity 0.25 --out runs/sst25
  geneprune heads --resume runs/ga25`,
    )
    .action(async (f: Flags, cmd: Command) => {
      const quiet = f.quiet === true || f.json === true;
      const runDir = typeof f.resume === 'string' ? f.resume : typeof f.out === 'string' ? f.out : undefined;
      const board = await searchDashboard(f, runDir);
      const progress = withDashboard(progressLine(process.stderr, quiet), board);
      const line = searchProgressText(performance.now(), typeof f.resume === 'string');
      const env: HeadSearchEnv = {
        ...runEnvFromFlags(f, progress, quiet),
        ...(typeof f.workers === 'string' ? { workers: parseIntFlag('--workers', f.workers) } : {}),
        ...(typeof f.queue === 'string' ? { queue: parseQueueUrl(f.queue) && f.queue } : {}),
        onSearchUpdate: (p) => progress.update(line(p)),
      };
      let result: HeadSearchResult;
      try {
        if (typeof f.resume === 'string') {
          if (f.out) throw flagError('--out', 'give either --out (a new run) or --resume (an existing one)');
          result = await resumeHeadSearch(f.resume, env, givenSettings(f, cmd));
        } else {
          if (typeof f.out !== 'string') throw flagError('--out', 'required: the run directory to create');
          result = await searchHeads({ ...optionsFromFlags(f), ...env, out: f.out });
        }
      } catch (e) {
        await endSearchDashboard(board, false);
        throw e;
      }
      progress.done();
      if (f.json) process.stdout.write(`${resultJson(result)}\n`);
      else printResult(result);
      await endSearchDashboard(board, true);
    });
}
