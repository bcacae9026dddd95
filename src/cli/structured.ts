/** `geneprune structured`: search heads, MLP channels and whole blocks at a parameter, FLOP or latency budget. */
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { flagError } from '../errors.js';
import {
  amountUnit,
  metricEntry,
  metricLabel,
  QUALITY_METRICS,
  quoteValue,
  reportedQuality,
} from '../metrics/registry.js';
import { parseQueueUrl } from '../queue/url.js';
import { BUDGET_HELP } from '../spaces/structured/budget.js';
import {
  resumeStructuredSearch,
  runStructuredSearch,
  type StructuredSearchEnv,
  type StructuredSearchResult,
} from '../spaces/structured/run.js';
import {
  STRUCTURED_METHODS,
  type StructuredSearchSettings,
  structuredSearchSettings,
} from '../spaces/structured/settings.js';
import { STRUCTURED_SPACES } from '../spaces/structured/space.js';
import {
  computeDtypeOption,
  deviceOption,
  memoryBudgetOption,
  modelOption,
  parseIntFlag,
  threadsOption,
  tokenizerOption,
} from './options.js';
import { progressLine } from './progress.js';
import {
  CHOICE_SETTING_FLAGS,
  choice,
  choiceOptions,
  DATA_SETTING_FLAGS,
  type Flags,
  GA_SETTING_FLAGS,
  int,
  parsedSettingFlags,
  runEnvFromFlags,
  type SettingFlag,
  TASK_SETTING_FLAGS,
  taskOptions,
  text,
  typedSettings,
} from './settings.js';

/** The calibration task flags of the generation and multiple-choice metrics (a structured run reports on --eval text). */
const CALIB_ONLY = ['evalTask', 'evalItems', 'evalNewTokens', 'evalChoices'];

const SETTING_FLAGS: ReadonlyArray<SettingFlag<Extract<keyof StructuredSearchSettings, string>>> = [
  ...DATA_SETTING_FLAGS,
  ['space', '--space', 'space', choice(STRUCTURED_SPACES)],
  ['method', '--method', 'method', choice(STRUCTURED_METHODS)],
  ['budget', '--budget', 'budget', text],
  // Every registry metric parses: the settings refuse those a structured search cannot serve, saying why.
  ['metric', '--metric', 'metric', choice(QUALITY_METRICS)],
  ...TASK_SETTING_FLAGS.filter(([key]) => !CALIB_ONLY.includes(key)),
  ...CHOICE_SETTING_FLAGS.filter(([key]) => !CALIB_ONLY.includes(key)),
  ['lowItems', '--low-items', 'lowItems', int()],
  ['widthStep', '--width-step', 'widthStep', int()],
  ...GA_SETTING_FLAGS,
  ['scoreTokens', '--score-tokens', 'scoreTokens', int()],
  ['switches', '--switches', 'switches', int()],
  ['offspring', '--offspring', 'offspring', int()],
  ['latencyProfile', '--latency-profile', 'latencyProfile', text],
  ['latencyRuns', '--latency-runs', 'latencyRuns', int()],
  ['recover', '--recover', 'recover', () => true],
  ['flapBias', '--flap-bias', 'flapBias', () => true],
];

function printResult(r: StructuredSearchResult): void {
  const pct = (x: number) => `${(100 * x).toFixed(1)} %`;
  const c = r.calib;
  const lines = [
    `run          ${r.runDir}`,
    `search       ${r.method} over ${r.space}`,
    `budget       ${r.budget.text}: ${r.budget.unit} ${fmt(r.budget.cost)} of at most ${fmt(r.budget.limit)} (dense ${fmt(r.budget.dense)})`,
    `kept         heads ${r.kept.heads.join(',')}; MLP widths ${r.kept.widths.join(',')}`,
    `parameters   ${r.totalParameters} → ${r.keptParameters} kept (${pct(r.parameterRatio)}), FLOPs ${pct(r.flopRatio)} of dense`,
    ...(r.predictedSpeedup !== undefined
      ? [`speed        predicted ${r.predictedSpeedup.toFixed(3)}× (${r.latencyProfile})`]
      : []),
    `calibration  ${calibLine(c)}`,
    `evaluation   ppl ${r.eval.perplexity.toFixed(4)} (dense ${r.eval.densePerplexity.toFixed(4)}, ${r.eval.tokens} tokens of ${r.eval.data})`,
    `cost         ${r.forwardPasses} forward passes, ${r.evaluations} evaluations, ${r.seconds.toFixed(1)} s`,
    ...(r.front ? [`front        ${r.front.members} plans at or under the budget (${r.front.file})`] : []),
    `plan         ${r.planFile} (geneprune export --structured)`,
    ...recoveryLines(r),
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}

function recoveryLines(r: StructuredSearchResult): string[] {
  const rec = r.recovery;
  if (!rec) return [];
  if ('skipped' in rec) return [`recovery     none: ${rec.skipped}`];
  return [
    `recovery     ${rec.refit === 'flap-bias' ? "FLAP's bias compensation of o and down" : 'o and down refitted'} on ${rec.tokens} calibration tokens: calibration ppl ${rec.before.calibPerplexity.toFixed(4)} → ${rec.after.calibPerplexity.toFixed(4)}, evaluation ppl ${rec.before.evalPerplexity.toFixed(4)} → ${rec.after.evalPerplexity.toFixed(4)}`,
    `recovered    ${rec.weights} (geneprune export --structured ${r.planFile} --recovered …)`,
  ];
}

/** The calibration score as people quote the metric (accuracy in per cent, BLEU, KL), dense beside it. */
function calibLine(c: StructuredSearchResult['calib']): string {
  const metric = c.metric as StructuredSearchSettings['metric'];
  const e = metricEntry(metric);
  const v = (q: number) => quoteValue(e, reportedQuality(metric, q));
  return `${metricLabel(metric)} ${v(c.quality)} (dense ${v(c.denseQuality)}, ${c.tokens} ${amountUnit(e)})`;
}

const fmt = (x: number) => (Number.isInteger(x) ? String(x) : x.toPrecision(4));

export function registerStructured(program: Command): void {
  program
    .command('structured')
    .description(
      'Structured search: heads, MLP channels and whole blocks at a parameter, FLOP or measured-latency budget; the plan exports as a smaller model.',
    )
    .addOption(modelOption())
    .addOption(tokenizerOption())
    .option('--calib <path>', 'calibration data: what the search scores plans on (required)')
    .option('--eval <path>', 'evaluation data: what the final plan is reported on (required, must differ)')
    .option('--budget <kind:value>', `what the pruned model may cost (required): ${BUDGET_HELP}`)
    .option(
      '--space <name>',
      'channels (MLP width per layer), heads (heads kept per layer, best first), blocks (skip attention / MLP blocks: EvoPress depth), joint (all three; default)',
    )
    .option(
      '--method <name>',
      "ga (default), evopress (EvoPress's (1+λ) from the uniform plan), nsga (NSGA-II: front of quality against the budget's cost, at or under the budget), or a baseline at the same budget that searches nothing: uniform (the same width share in every layer), flap (FLAP-like standardised scores, removed globally), shortgpt (whole layers by block influence)",
    )
    .option(
      '--metric <name>',
      "kl (KL divergence from the dense model, default: EvoPress's choice), ppl, bleu, exact-match or pass@1 (greedy continuations of the calibration task), mc-accuracy (the --calib-choices file); not accuracy / macro-f1 (the scores need calibration text)",
    )
    .addOption(taskOptions.calibTask())
    .addOption(taskOptions.calibItems())
    .addOption(taskOptions.calibNewTokens())
    .addOption(taskOptions.bleu())
    .addOption(taskOptions.promptTemplate())
    .addOption(taskOptions.allowCodeExecution())
    .addOption(taskOptions.execWorkers())
    .addOption(choiceOptions.calibChoices())
    .addOption(choiceOptions.choiceNorm())
    .option('--low-items <n>', 'multi-fidelity with a task metric: score everyone on this many items first')
    .option(
      '--width-step <n>',
      'MLP width grid step (default: max(64, width/32) rounded up to 64; smaller for tiny models)',
    )
    .option('--out <dir>', 'run directory to create (config, scores, logs, state, plan.json, result.json)')
    .option('--resume <dir>', 'continue a run directory from its last finished generation')
    .option('--population <n>', 'individuals per generation (default 16)')
    .option('--generations <n>', 'generations (default 30)')
    .option('--tournament <n>', 'tournament size (default 3)')
    .option('--crossover-rate <p>', 'probability a pair is crossed over, layer by layer (default 0.5)')
    .option(
      '--switches <n>',
      'level switches per mutation at most: one level down somewhere, one up elsewhere (default 3)',
    )
    .option('--offspring <n>', 'evopress: children of the parent per generation (default 16)')
    .option('--elitism <n>', 'best individuals kept unchanged each generation (default 2)')
    .option('--calib-tokens <n>', 'calibration tokens per full evaluation (default 8192)')
    .option(
      '--score-tokens <n>',
      'calibration tokens the head / channel / block scores are measured on (default 8192)',
    )
    .option('--low-tokens <n>', 'multi-fidelity: score everyone on this many tokens first')
    .option('--promote <n>', 'multi-fidelity: re-score this many best on all calibration tokens (default 2)')
    .option('--eval-tokens <n>', 'evaluation tokens for the final report (default: all)')
    .option(
      '--latency-profile <file>',
      'a latency profile measured before (latency-profile.json of a run) instead of measuring one',
    )
    .option(
      '--seed-plan <file>',
      "a structured plan file (another run's plan.json) to start the search from (ga, nsga: the initial population; evopress: a candidate first parent), repaired to the budget; repeatable",
      (v: string, prev: string[] = []) => [...prev, v],
    )
    .option(
      '--recover',
      'once the plan is chosen, refit o and down of the kept heads and channels by least squares on the calibration activations (recovered-weights.safetensors)',
    )
    .option(
      '--flap-bias',
      "with --method flap: FLAP's bias compensation, the removed units' mean contribution added to o's and down's bias (models whose o and down have biases: GPT-2, OPT)",
    )
    .option('--latency-runs <n>', 'timed runs per level when the latency model is measured (default 5)')
    .option('--ctx <n>', "context length per window (default: the model's, at most 512)")
    .option('--batch-size <n>', 'windows per forward pass (default: about 2048 tokens)')
    .option('--seed <s>', 'seed for every random choice (default 0)')
    .addOption(deviceOption())
    .addOption(computeDtypeOption())
    .addOption(threadsOption())
    .option(
      '--workers <n>',
      'score plans in n worker processes, each with its own session and --threads (default: cores / n); same logs, plan and result as one process',
    )
    .option(
      '--queue <url>',
      'post plans as jobs on Redis (redis://[user:password@]HOST:PORT[/DB] or rediss://) for `geneprune worker` processes anywhere; same logs, plan and result as one process (not --metric pass@1)',
    )
    .addOption(memoryBudgetOption())
    .option('--quiet', 'no progress display')
    .option('--json', 'print the result as one JSON object (no progress display)')
    .addHelpText(
      'after',
      `
Genes: per layer, in this order, the levels the space uses: heads kept (0 … H, the best by the head scores),
an MLP width level (an index into the width grid; the best channels by ‖X_j‖·‖W_down[:,j]‖), attention runs
(1/0), MLP runs (1/0). Every individual costs at most the budget and no single level more would fit (a level
switch, then a repair after every variation; NSGA-II only lowers to the budget, so its front spans plans at and
under it). The scores are measured once on the calibration data.

Budgets:
  params:R    keep at most R of all parameters (0 < R ≤ 1)
  flops:R     at most R of the FLOPs per token at the run's context (0 < R ≤ 1)
  speedup:S   the latency model, measured on --device at batch 1 and the run's context and stored in the run
              (latency-profile.json), predicts at least S× the dense prefill speed (S ≥ 1)

Examples:
  geneprune structured --calib ../shared/data/tinystories/calib --eval ../shared/data/tinystories/eval \\
      --budget params:0.6 --width-step 16 --out runs/joint60
  geneprune structured --space heads --budget speedup:1.25 --calib CALIB --eval EVAL --out runs/sos125
  geneprune structured --method shortgpt --budget flops:0.75 --calib CALIB --eval EVAL --out runs/short75
  geneprune structured --method evopress --seed-plan runs/joint60/plan.json --budget params:0.6 \\
      --calib CALIB --eval EVAL --out runs/evo60
  geneprune structured --resume runs/joint60
  geneprune export --structured runs/joint60/plan.json --out pruned/`,
    )
    .action(async (f: Flags, cmd: Command) => {
      const quiet = f.quiet === true || f.json === true;
      const progress = progressLine(process.stderr, quiet);
      const env: StructuredSearchEnv = {
        ...runEnvFromFlags(f, progress, quiet),
        ...(typeof f.workers === 'string' ? { workers: parseIntFlag('--workers', f.workers) } : {}),
        ...(typeof f.queue === 'string' ? { queue: parseQueueUrl(f.queue) && f.queue } : {}),
        onGeneration: (s, total, elapsed) =>
          progress.update(
            `generation ${s.generation + 1}/${total}: best ${s.bestQuality.toFixed(4)} (${elapsed.toFixed(0)} s, ${s.evaluations} evals)`,
          ),
      };
      let result: StructuredSearchResult;
      if (typeof f.resume === 'string') {
        if (f.out) throw flagError('--out', 'give either --out (a new run) or --resume (an existing one)');
        result = await resumeStructuredSearch(f.resume, env, typedSettings(SETTING_FLAGS, f, cmd));
      } else {
        if (typeof f.out !== 'string') throw flagError('--out', 'required: the run directory to create');
        const parsed = parsedSettingFlags(SETTING_FLAGS, f) as Partial<StructuredSearchSettings>;
        const seedPlans = f.seedPlan as string[] | undefined;
        const s = structuredSearchSettings({
          calib: '',
          eval: '',
          budget: '',
          ...parsed,
          ...(seedPlans ? { seedPlans: seedPlans.map((x) => resolve(x)) } : {}),
        });
        result = await runStructuredSearch(f.out, s, env);
      }
      progress.done();
      if (f.json) process.stdout.write(`${JSON.stringify(result)}\n`);
      else printResult(result);
    });
}
