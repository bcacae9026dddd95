import type { Command } from 'commander';
import {
  type BlockSearchProgress,
  flagError,
  metricEntry,
  perplexityRun,
  pruneWeights,
  QUALITY_METRICS,
  quoteValue,
  reportedQuality,
  resumeWeightPrune,
  WEIGHT_MASK_FILE,
  WEIGHT_PRESETS,
  type WeightPreset,
  type WeightPruneEnv,
  type WeightPruneResult,
  type WeightPruneSettings,
  weightBaselineNames,
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
  parseComputeDtype,
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
  type Flags,
  float,
  int,
  parsedSettingFlags,
  runEnvFromFlags,
  type SettingFlag,
  TASK_SETTING_FLAGS,
  taskOptions,
  text,
  typedSettings,
} from './settings.js';

/** Every flag that sets a setting of a weights run. */
const SETTING_FLAGS: ReadonlyArray<SettingFlag<Extract<keyof WeightPruneSettings, string>>> = [
  ['model', '--model', 'model', text],
  ['tokenizer', '--tokenizer', 'tokenizer', text],
  ['calib', '--calib', 'calib', text],
  ['eval', '--eval', 'eval', text],
  ['method', '--method', 'method', choice(weightBaselineNames())],
  ['metric', '--metric', 'metric', choice(QUALITY_METRICS)],
  ...TASK_SETTING_FLAGS,
  ...CHOICE_SETTING_FLAGS,
  ['sparsity', '--sparsity', 'sparsity', float],
  ['pattern', '--pattern', 'pattern', text],
  ['layers', '--layers', 'layers', text],
  ['ctx', '--ctx', 'context', int()],
  ['calibTokens', '--calib-tokens', 'calibTokens', int()],
  ['evalTokens', '--eval-tokens', 'evalTokens', int()],
  ['seed', '--seed', 'seed', int(0)],
  ['batchSize', '--batch-size', 'batchSize', int()],
  ['dtype', '--dtype', 'dtype', (_flag, v) => parseComputeDtype(v)],
  ['recover', '--recover', 'recover', () => true],
  ['population', '--population', 'population', int()],
  ['generations', '--generations', 'generations', int(0)],
  ['lambda', '--lambda', 'lambda', float],
  ['mutationRate', '--mutation-rate', 'mutationRate', float],
];

const PRESET_METHOD: Record<WeightPreset, string> = { geneprune: 'ga' };

function presetOf(value: unknown): WeightPreset {
  if (!WEIGHT_PRESETS.includes(value as WeightPreset)) {
    throw flagError('--preset', `unknown preset "${String(value)}" (known: ${WEIGHT_PRESETS.join(', ')})`);
  }
  return value as WeightPreset;
}

const pct = (x: number) => `${(100 * x).toFixed(2)} %`;

/** The calibration and evaluation lines of a classification run (accuracy and macro-F1 on labelled files). */
function labelledLines(r: WeightPruneResult): string[] {
  const c = r.calib;
  const e = r.eval;
  const score = (x: number) => `${(100 * x).toFixed(1)} %`;
  const quoted = (q: number) => score(-q);
  const lines = [
    `calibration  ${metricEntry(c.metric).label} ${quoted(c.quality)} (dense ${quoted(c.denseQuality)}, ${c.tokens} items of ${c.labelled?.source ?? c.data})`,
  ];
  if ('accuracy' in e) {
    lines.push(
      `evaluation   accuracy ${score(e.accuracy)} (dense ${score(e.denseAccuracy)}), macro-F1 ${score(e.macroF1)} (dense ${score(e.denseMacroF1)}), ${e.items} items of ${e.data}`,
    );
  }
  const before = r.recovery?.before;
  if (before?.evalAccuracy !== undefined && before.evalMacroF1 !== undefined) {
    lines.push(
      `recovery     before it: evaluation accuracy ${score(before.evalAccuracy)}, macro-F1 ${score(before.evalMacroF1)}; weights in ${r.recovery!.weights}`,
    );
  }
  return lines;
}

/**
 * A perplexity run's line for its --metric when that is not the perplexity the calibration line already quotes:
 * KL in nats per token, or BLEU or multiple-choice accuracy with the task it was scored on.
 */
function calibMetricLines(r: WeightPruneResult): string[] {
  const c = r.calib;
  const m = metricEntry(c.metric);
  const quoted = (q: number) => quoteValue(m, reportedQuality(c.metric, q));
  switch (m.data) {
    case 'text':
      // The perplexity itself is the calibration line; a metric scored against the dense model has no dense value.
      return m.denseReference ? [`calib ${m.label.padEnd(7)}${c.quality.toFixed(5)} ${m.unit}`] : [];
    case 'task':
      return [
        // Padded as before for labels that fit the column (BLEU); a longer one (exact match) keeps a space.
        `${`calib ${m.label}`.padEnd(12)} ${quoted(c.quality)} (dense ${quoted(c.denseQuality)}, ${c.task?.items ?? '?'} items of ${c.task?.source ?? 'the calibration task'})`,
      ];
    case 'choices':
      return [
        `calib acc    ${quoted(c.quality)} (dense ${quoted(c.denseQuality)}, ${c.choices?.items ?? '?'} items of ${c.choices?.source ?? 'the calibration file'})`,
      ];
    case 'labels':
      return [];
  }
}

function printResult(r: WeightPruneResult): void {
  const head = [
    `run          ${r.runDir}`,
    `method       ${r.method} (${r.pattern})`,
    `sparsity     ${pct(r.sparsity.achieved)} of ${r.prunableWeights} prunable weights (asked ${pct(r.sparsity.target)}); ${pct(r.sparsity.overall)} of all ${r.parameters} parameters`,
    `per layer    ${r.layers.map((l) => pct(l.sparsity)).join('  ')}`,
    ...(r.layerPattern
      ? [
          `layers       ${r.layerPattern.pattern}: ${r.layerPattern.matrices} of ${r.layerPattern.of} prunable matrices (the others dense)`,
        ]
      : []),
  ];
  const tail = [
    `cost         ${r.forwardPasses} forward passes, ${r.seconds.toFixed(1)} s`,
    `mask         ${r.mask}`,
    ...(r.warnings ?? []).map((w) => `warning      ${w}`),
  ];
  if (!('perplexity' in r.eval)) {
    process.stdout.write(`${[...head, ...labelledLines(r), ...tail].join('\n')}\n`);
    return;
  }
  const t = perplexityRun(r);
  const lines = [
    ...head,
    `calibration  ppl ${t.calib.perplexity.toFixed(4)} (dense ${t.calib.densePerplexity.toFixed(4)}, ${t.calib.tokens} tokens of ${t.calib.data}, ${windowsText(r)})`,
    ...calibMetricLines(r),
    `evaluation   ppl ${t.eval.perplexity.toFixed(4)} (dense ${t.eval.densePerplexity.toFixed(4)}, ${t.eval.tokens} tokens of ${t.eval.data}, ${windowsText(r)})`,
    ...(r.evalBleu ? [evalBleuLine(r.evalBleu), ...evalGenerationLines(r.evalBleu)] : []),
    ...(r.evalChoices ? [evalChoicesLine(r.evalChoices)] : []),
    ...(t.recovery
      ? [
          `recovery     before it (ctx ${r.context}): calibration ppl ${t.recovery.before.calibPerplexity.toFixed(4)}, evaluation ppl ${t.recovery.before.evalPerplexity.toFixed(4)}; weights in ${t.recovery.weights}`,
        ]
      : []),
    ...tail,
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}

export function registerWeights(program: Command): void {
  const methods = weightBaselineNames();
  program
    .command('weights')
    .description(
      'Prune individual weights of every linear (q/k/v/o, MLP) to a sparsity or an N:M pattern, and write the mask.',
    )
    .addOption(modelOption())
    .addOption(tokenizerOption())
    .option('--calib <path>', 'calibration data: what the mask is scored on first (required)')
    .option('--eval <path>', 'evaluation data: what the pruned model is reported on (required, must differ)')
    // No commander default: a default would read as a --method the user gave, and --preset refuse it.
    .option('--method <name>', `${methods.join(' | ')} (default magnitude)`)
    .option(
      '--sparsity <share>',
      'share of the prunable weights to prune, in [0, 1) (required unless --pattern gives it)',
    )
    .option(
      '--preset <name>',
      "geneprune: the GenePrune paper's GA with its printed settings (= --method ga: λ 0.02, population 10, 5 generations, 5 % initial sparsity, 5 % mutation, --sparsity as the stop threshold); on an encoder-decoder (T5, CodeT5) the paper code's setup: its prompt prefix, --metric bleu --bleu sentence-mean with the code's fitness 0.98·b + 0.02·s (×0.1 when b < 0.09, b the 0–1 BLEU), stop at --sparsity 0.2, 128 new tokens",
    )
    .option(
      '--metric <name>',
      'calibration quality: ppl (default), kl, bleu (BLEU of greedy continuations of the calibration task), exact-match, pass@1 (from the same generations; pass@1 needs --allow-code-execution), mc-accuracy (accuracy on the --calib-choices file), or accuracy / macro-f1 for a sequence classifier (--calib and --eval are then labelled JSONL files; magnitude, global-magnitude, random, wanda); a searching method may use it (ga, ga-wanda, ga-magnitude: ppl, bleu, exact-match or pass@1; alloc: ppl)',
    )
    .option('--pattern <N:M>', 'keep N of every M consecutive weights of a row, e.g. 2:4 (sparsity 1 − N/M)')
    .option(
      '--layers <pattern>',
      'prune only these blocks/modules (comma-separated STACK.N or STACK.*, optionally .attn|.cross|.mlp or one matrix like .attn.q; stacks: layers, or encoder and decoder for T5), e.g. encoder.0, decoder.*.mlp, layers.0,layers.1',
    )
    .option(
      '--out <dir>',
      `run directory to create (config.json, state.json, ${WEIGHT_MASK_FILE}, result.json)`,
    )
    .option('--resume <dir>', 'continue a run stopped after its mask was fixed, or give back a finished one')
    .option('--seed <s>', 'seed for random choices (default 0)')
    .option(
      '--recover',
      "after the mask is fixed, refit each pruned linear's kept weights to its dense outputs on the calibration data (least squares, layer by layer); reports both (implied by --method sparsegpt, whose update is this refit)",
    )
    .option('--population <n>', 'searching methods: individuals per block (ga 10, ga-wanda/ga-magnitude 8)')
    .option(
      '--generations <n>',
      'searching methods: generations per block (ga: steady-state iterations, 5; seeded GAs 10); alloc: generations (100)',
    )
    .option('--lambda <x>', 'ga: weight of sparsity in the fitness (1 − λ)·quality + λ·sparsity (0.02)')
    .option(
      '--mutation-rate <x>',
      'ga: chance a kept weight is turned off (0.05); seeded GAs: share of pruned weights swapped per child (0.002)',
    )
    .option('--calib-tokens <n>', 'calibration tokens the mask is scored on (default 8192)')
    .option('--eval-tokens <n>', 'evaluation tokens for the report (default: all)')
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
    .option('--ctx <n>', "context length per window (default: the model's, at most 512)")
    .option('--batch-size <n>', 'windows per forward pass (default: about 2048 tokens)')
    .addOption(deviceOption())
    .addOption(computeDtypeOption())
    .addOption(threadsOption())
    .option(
      '--workers <n>',
      'block-wise searches (ga, ga-wanda, ga-magnitude, --preset geneprune): score each population in n worker processes, each with its own session and --threads (default: cores / n), replaying the walk to the block searched; same logs, mask and result as one process; may change on --resume',
    )
    .option(
      '--queue <url>',
      'block-wise searches, as for --workers: post each population as jobs on Redis (redis://[user:password@]HOST:PORT[/DB] or rediss://) for `geneprune worker` processes anywhere; same results; may change on --resume',
    )
    .addOption(memoryBudgetOption())
    .option('--quiet', 'no progress display')
    .option('--json', 'print the result as one JSON object (no progress display)')
    .addOption(dashboardOption())
    .addOption(hostOption())
    .addHelpText(
      'after',
      `
Prunable weights: the q, k, v, o projections and the MLP matrices (gate, up, down) of every layer (and
the cross-attention's q, k, v, o in an encoder-decoder's decoder blocks), each [out, in] as in the
checkpoint; embeddings, norms, biases, relative-position tables and the output head are never pruned.
--sparsity counts over the prunable weights (the report also gives the share of all parameters).
An encoder-decoder (T5, CodeT5) takes task files as --calib and --eval (source/target pairs): its
layer-wise methods walk the encoder blocks, then the decoder blocks fed the final encoder output.

--layers restricts the prunable weights: entries STACK.N or STACK.* (N counts inside the stack), each
optionally .MODULE (attn = self-attention q/k/v/o, cross = cross-attention q/k/v/o, mlp, or one matrix
such as attn.q or mlp.down), comma-separated. Stacks: layers (decoders, encoders); encoder and decoder
(encoder-decoders). --sparsity then counts over the selected matrices; the others stay dense.
  --layers encoder.0            the GenePrune code's block (T5: encoder block 0, attention and MLP)
  --layers decoder.*.cross      every decoder block's cross-attention
  --layers layers.0,layers.1.mlp

Methods:
  magnitude         each matrix loses its round(s·n) smallest |W|
  global-magnitude  one |W| threshold over all prunable matrices: matrices end at different sparsities
  random            each matrix loses round(s·n) weights drawn with --seed
  wanda             each output row loses its lowest |W|·‖X_j‖₂ (input norms on the calibration data, layer
                    by layer with earlier layers already pruned)
  ga                the GenePrune paper's GA, block by block 0…L−1 (population 10, 5 steady-state
                    iterations, λ 0.02, fitness 0.98·(−ppl/ppl_dense) + 0.02·block sparsity); --sparsity is
                    its stop threshold, not a budget; with --pattern N:M individuals are random N:M
                    masks, crossover cuts between groups and mutation swaps inside a group
  ga-wanda          a GA seeded with Wanda's mask, block by block: every candidate keeps the seed's count
                    in every row (swaps of a kept and a pruned weight inside a row, row-wise crossover),
                    fitness −calibration ppl; never worse on calibration than its seed
  ga-magnitude      the same, seeded with the magnitude mask
  alloc             EvoPress-style (1+λ) search of each matrix's pruned count at an exact global budget
                    (100 generations, λ 12, scored on 1/8, 1/2, then all calibration tokens), Wanda masks
                    per row within each matrix (input norms once, on the dense model; no --pattern)
  sparsegpt         SparseGPT, layer by layer: per block of 128 inputs each row prunes its lowest OBS
                    saliency w²/[H⁻¹]ᵢᵢ (N:M: per group), each error spread over the later inputs (the
                    update is recovery's column walk: --recover implied, recovered-weights.safetensors)
  owl               Wanda at a sparsity per block (OWL): blocks with a larger share of scores above 5× their
                    mean are pruned less, within ±0.08 of --sparsity, the budget exact (no --pattern)
With --pattern N:M every method keeps the N best of each group of M consecutive weights of a row instead
(random: N at random), so global-magnitude equals magnitude there.

The mask goes to RUN_DIR/${WEIGHT_MASK_FILE}; use it with eval, generate and export --weight-mask.

Examples:
  geneprune weights --calib ../shared/data/tinystories/calib --eval ../shared/data/tinystories/eval \\
      --method magnitude --sparsity 0.5 --out runs/mag50
  geneprune weights --calib CALIB --eval EVAL --method random --pattern 2:4 --seed 1 --out runs/rand24
  geneprune eval --data EVAL --weight-mask runs/mag50/${WEIGHT_MASK_FILE}
  geneprune export --weight-mask runs/mag50/${WEIGHT_MASK_FILE} --out exported/mag50`,
    )
    .action(async (f: Flags, cmd: Command) => {
      const quiet = f.quiet === true || f.json === true;
      const runDir = typeof f.resume === 'string' ? f.resume : typeof f.out === 'string' ? f.out : undefined;
      const board = await searchDashboard(f, runDir);
      const stderrLine = progressLine(process.stderr, quiet);
      const progress = withDashboard(stderrLine, board);
      const line = searchProgressText(performance.now(), typeof f.resume === 'string');
      let block: BlockSearchProgress | undefined;
      const env: WeightPruneEnv = {
        ...runEnvFromFlags(f, progress, quiet),
        ...(typeof f.workers === 'string' ? { workers: parseIntFlag('--workers', f.workers) } : {}),
        ...(typeof f.queue === 'string' ? { queue: parseQueueUrl(f.queue) && f.queue } : {}),
        // A block search reports its own position first, then the line made of it: the dashboard takes both at
        // once, so its block, generation, search time and ETA are the line's.
        onSearchProgress: (p) => {
          block = p;
        },
        onSearchUpdate: (p) => {
          const text = line(p);
          board?.setLive(text, block);
          stderrLine.update(text);
        },
      };
      let result: WeightPruneResult;
      try {
        if (typeof f.resume === 'string') {
          if (f.out) throw flagError('--out', 'give either --out (a new run) or --resume (an existing one)');
          // --preset stands for the settings it sets, checked against the run's like any given flag.
          const fromPreset =
            f.preset === undefined
              ? []
              : [{ flag: '--preset', key: 'method' as const, value: PRESET_METHOD[presetOf(f.preset)] }];
          result = await resumeWeightPrune(f.resume, env, typedSettings(SETTING_FLAGS, f, cmd, fromPreset));
        } else {
          if (typeof f.out !== 'string') throw flagError('--out', 'required: the run directory to create');
          const settings = parsedSettingFlags(SETTING_FLAGS, f) as Partial<WeightPruneSettings>;
          const preset = f.preset === undefined ? undefined : presetOf(f.preset);
          result = await pruneWeights({
            calib: '',
            eval: '',
            ...settings,
            ...(preset ? { preset } : {}),
            ...env,
            out: f.out,
          });
        }
      } catch (e) {
        await endSearchDashboard(board, false);
        throw e;
      }
      progress.done();
      for (const w of result.warnings ?? []) process.stderr.write(`warning: ${w}\n`);
      if (f.json) process.stdout.write(`${JSON.stringify(result)}\n`);
      else printResult(result);
      await endSearchDashboard(board, true);
    });
}
