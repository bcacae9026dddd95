import type { Command } from 'commander';
import {
  AUTO_TASK,
  buildContinuationTask,
  checkPromptTemplate,
  DEFAULT_PROMPT_TEMPLATE,
  type EvaluateBleuResult,
  type EvaluateChoicesResult,
  type EvaluateLabelsResult,
  type EvaluateResult,
  evaluate,
  evaluateBleu,
  evaluateChoices,
  evaluateLabels,
  flagError,
  type GenerationTask,
} from '../index.js';
import {
  computeDtypeOption,
  deviceOption,
  maskReportLines,
  maskRuntimeOptions,
  memoryBudgetOption,
  modelOption,
  parseByteSize,
  parseIntFlag,
  threadsOption,
  tokenizerOption,
} from './options.js';
import { progressLine } from './progress.js';
import { allowCodeExecutionOption, execWorkersOption, promptTemplateOption } from './settings.js';

interface EvalFlags {
  model?: string;
  tokenizer?: string;
  data?: string;
  ctx?: string;
  maxTokens?: string;
  batchSize?: string;
  pruneHeads?: string;
  device: string;
  dtype: string;
  threads?: string;
  memoryBudget?: string;
  json?: boolean;
  kl?: boolean;
  mask?: string;
  weightMask?: string;
  recovered?: string;
  task?: string;
  maxNewTokens?: string;
  promptTemplate?: string;
  allowCodeExecution?: boolean;
  execWorkers?: string;
  choices?: string;
  labels?: string;
}

function printBleuReport(r: EvaluateBleuResult, from: string): void {
  const c = r.corpus;
  const pct = (x: number) => `${(100 * x).toFixed(2)} %`;
  const lines = [
    `model        ${r.model}`,
    `task         ${from} (${r.items} items, at most ${r.maxNewTokens} new tokens each)`,
    ...(r.promptTemplate !== DEFAULT_PROMPT_TEMPLATE
      ? [`prompts      ${JSON.stringify(r.promptTemplate)}`]
      : []),
    ...maskReportLines(r),
    `BLEU         ${c.score.toFixed(2)} (sacreBLEU corpus; precisions ${c.precisions.map((x) => x.toFixed(1)).join('/')}, BP ${c.bp.toFixed(3)}, hyp/ref ${c.sysLen}/${c.refLen})`,
    `sent. BLEU   ${r.sentenceMean.toFixed(2)} (mean NLTK sentence BLEU, the GenePrune code's; ${r.sentenceMeanUnit.toFixed(4)} on its 0–1 scale)`,
    `exact match  ${pct(r.exactMatch)} (${Math.round(r.exactMatch * r.items)} of ${r.items} items generated exactly as a reference)`,
    ...(r.passAt1 !== undefined
      ? [`pass@1       ${pct(r.passAt1)} (${r.passed} of ${r.items} greedy programs passed their tests)`]
      : []),
    `generated    ${r.newTokens} tokens, ${r.stopped} prompts stopped early, ${r.forwards} forward passes, ${r.seconds.toFixed(1)} s (${r.device})`,
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}

/** `eval --task`: BLEU of the (masked) model on a generation task file, or on the --data pages' story continuations. */
async function evalBleu(flags: EvalFlags, json: boolean | undefined): Promise<void> {
  for (const [key, flag] of [
    ['kl', '--kl'],
    ['maxTokens', '--max-tokens'],
    ['ctx', '--ctx'],
  ] as const) {
    if (flags[key] !== undefined)
      throw flagError(flag, 'scores perplexity; it does not combine with --task (BLEU)');
  }
  let task: GenerationTask | string;
  let from: string;
  if (flags.task === AUTO_TASK) {
    if (!flags.data)
      throw flagError('--task', 'auto builds story continuations from the --data pages: give --data');
    task = await buildContinuationTask(flags.data);
    from = `story continuations of ${flags.data}`;
  } else {
    if (flags.data) {
      throw flagError(
        '--data',
        'with --task FILE eval scores BLEU on the task; leave --data out (or use --task auto)',
      );
    }
    task = String(flags.task);
    from = task;
  }
  if (flags.promptTemplate !== undefined) checkPromptTemplate(flags.promptTemplate);
  if (flags.execWorkers !== undefined && !flags.allowCodeExecution)
    throw flagError(
      '--exec-workers',
      'only with --allow-code-execution (it sizes the pool running generated code)',
    );
  const progress = progressLine(process.stderr, json);
  let rows = 0;
  let programs = 0;
  const report = await evaluateBleu({
    model: flags.model,
    tokenizer: flags.tokenizer,
    task,
    maxNewTokens: flags.maxNewTokens ? parseIntFlag('--max-new-tokens', flags.maxNewTokens, 0) : undefined,
    batchSize: flags.batchSize ? parseIntFlag('--batch-size', flags.batchSize) : undefined,
    ...(flags.promptTemplate !== undefined ? { promptTemplate: flags.promptTemplate } : {}),
    ...(flags.allowCodeExecution
      ? {
          exec: {
            allowCodeExecution: true,
            ...(flags.execWorkers !== undefined
              ? { workers: parseIntFlag('--exec-workers', flags.execWorkers) }
              : {}),
          },
        }
      : {}),
    ...maskRuntimeOptions(flags),
    onStep: (n) => {
      rows += n;
      progress.update(`bleu: ${rows} rows decoded`);
    },
    onExec: () => {
      programs += 1;
      progress.update(`pass@1: ${programs} programs run`);
    },
    onNote: (line) => process.stderr.write(`warning: ${line}\n`),
  });
  progress.done();
  if (json) process.stdout.write(`${JSON.stringify({ ...report, taskFrom: from })}\n`);
  else printBleuReport(report, from);
}

function printChoicesReport(r: EvaluateChoicesResult): void {
  const pct = (x: number) => `${(100 * x).toFixed(2)} %`;
  const lines = [
    `model        ${r.model}`,
    `task         ${r.task} (${r.items} items, multiple choice)`,
    ...maskReportLines(r),
    `accuracy     ${pct(r.accuracy)} (summed log-likelihood of each choice, acc)`,
    `acc_norm     ${pct(r.accuracyNorm)} (log-likelihood per character of the choice)`,
    `scored       ${r.forwards} forward passes, ${r.seconds.toFixed(1)} s (${r.device})${r.truncated > 0 ? `; ${r.truncated} rows cut on the left to fit the context` : ''}`,
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}

function printLabelsReport(r: EvaluateLabelsResult): void {
  const pct = (x: number) => `${(100 * x).toFixed(2)} %`;
  const lines = [
    `model        ${r.model}`,
    `data         ${r.data} (${r.items} labelled items; labels ${r.labels.join(', ')})`,
    ...maskReportLines(r),
    `accuracy     ${pct(r.accuracy)}`,
    `macro-F1     ${pct(r.macroF1)}`,
    `scored       ${r.forwards} forward passes, ${r.seconds.toFixed(1)} s (${r.device})${r.truncated > 0 ? `; ${r.truncated} items truncated to the model's positions` : ''}`,
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}

/** `eval --labels`: classification accuracy and macro-F1 of the (masked) model. */
async function evalLabels(flags: EvalFlags, json: boolean | undefined): Promise<void> {
  for (const [key, flag] of [
    ['kl', '--kl'],
    ['maxTokens', '--max-tokens'],
    ['ctx', '--ctx'],
    ['data', '--data'],
    ['task', '--task'],
    ['choices', '--choices'],
    ['maxNewTokens', '--max-new-tokens'],
  ] as const) {
    if (flags[key] !== undefined)
      throw flagError(flag, 'does not combine with --labels (classification accuracy)');
  }
  const report = await evaluateLabels({
    model: flags.model,
    tokenizer: flags.tokenizer,
    data: String(flags.labels),
    batchSize: flags.batchSize ? parseIntFlag('--batch-size', flags.batchSize) : undefined,
    ...maskRuntimeOptions(flags),
  });
  if (report.truncated > 0 && !json) {
    process.stderr.write(
      `warning: ${report.truncated} of ${report.items} items are longer than the model's positions and were truncated\n`,
    );
  }
  if (json) process.stdout.write(`${JSON.stringify(report)}\n`);
  else printLabelsReport(report);
}

/** `eval --choices`: multiple-choice accuracy of the (masked) model. */
async function evalChoices(flags: EvalFlags, json: boolean | undefined): Promise<void> {
  for (const [key, flag] of [
    ['kl', '--kl'],
    ['maxTokens', '--max-tokens'],
    ['ctx', '--ctx'],
    ['data', '--data'],
    ['task', '--task'],
    ['maxNewTokens', '--max-new-tokens'],
  ] as const) {
    if (flags[key] !== undefined)
      throw flagError(flag, 'does not combine with --choices (multiple-choice accuracy)');
  }
  const progress = progressLine(process.stderr, json);
  const report = await evaluateChoices({
    model: flags.model,
    tokenizer: flags.tokenizer,
    task: String(flags.choices),
    batchSize: flags.batchSize ? parseIntFlag('--batch-size', flags.batchSize) : undefined,
    ...maskRuntimeOptions(flags),
    onProgress: (done, total) => progress.update(`choices: ${done}/${total} rows scored`),
  });
  progress.done();
  if (json) process.stdout.write(`${JSON.stringify(report)}\n`);
  else printChoicesReport(report);
}

function printReport(r: EvaluateResult): void {
  // An encoder-decoder scores whole source/target pairs: no context windows, and NLLs near 0 need more digits.
  const pairs = r.scored === 'pairs';
  const lines = [
    `model        ${r.model}`,
    pairs
      ? `data         ${r.data} (${r.documents} items: each reference target given its source)`
      : `data         ${r.data} (${r.documents} documents)`,
    ...(pairs
      ? []
      : [`context      ${r.context}${r.contextFrom === 'run' ? ' (as the mask’s run scored it)' : ''}`]),
    ...maskReportLines(r),
    `tokens       ${r.tokens}${pairs ? ' (target tokens)' : ''}`,
    `mean NLL     ${pairs ? r.meanNll.toPrecision(4) : r.meanNll.toFixed(4)}`,
    `perplexity   ${r.perplexity.toFixed(pairs ? 6 : 4)}${pairs ? '' : ` (ctx ${r.context})`}`,
    ...(r.meanKl === undefined ? [] : [`KL to dense  ${r.meanKl.toFixed(5)} nats/token`]),
    `tokens/s     ${Math.round(r.tokensPerSecond)} (${r.device}, ${r.dtype})`,
    `peak memory  ${(r.peakRssBytes / 2 ** 30).toFixed(2)} GiB`,
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}

export function registerEval(program: Command): void {
  program
    .command('eval')
    .description(
      'Perplexity of a model on text data (forward passes on ONNX Runtime, NLL computed in-graph), with --task its BLEU on a generation task, with --choices its multiple-choice accuracy, or with --labels the accuracy and macro-F1 of a classifier.',
    )
    .addOption(modelOption())
    .addOption(tokenizerOption())
    .option(
      '--data <path>',
      'text file, folder of .txt/.jsonl files, or JSONL with a "text" field (required)',
    )
    .option(
      '--ctx <n>',
      "context length per window (default: with --mask or --weight-mask from a run, the context that run scored it at; else the model's)",
    )
    .option('--max-tokens <n>', 'score at most this many tokens')
    .option(
      '--batch-size <n>',
      'windows per forward pass (default: about 2048 tokens; with --task: prompts, 16; with --choices: item×choice rows)',
    )
    .option(
      '--task <file|auto>',
      'report generation metrics instead: greedy continuations of a generation task, JSONL {"prompt","reference"}, {"source","target"} or MBPP {"text","code","test_list"}, scored by BLEU (corpus and sentence-mean), exact match and, with --allow-code-execution, pass@1 (auto: story continuations built from the --data pages)',
    )
    .option('--max-new-tokens <n>', 'with --task: new tokens per prompt at most (default 64)')
    .addOption(promptTemplateOption())
    .addOption(allowCodeExecutionOption())
    .addOption(execWorkersOption())
    .option(
      '--choices <file>',
      'report multiple-choice accuracy instead: JSONL {"context","choices","label"}, each choice scored by the log-likelihood of its tokens after the context (acc, and acc_norm per character)',
    )
    .option(
      '--labels <file>',
      'report classification accuracy and macro-F1 of a sequence-classification model instead: JSONL {"text"[, "text_pair"], "label"} (label by name or index)',
    )
    .option('--prune-heads <list>', 'mask these attention heads, LAYER:HEAD,... (0-based)')
    .option(
      '--mask <file>',
      'a head-mask file from `geneprune heads` (mask.json); combines with --prune-heads',
    )
    .option(
      '--weight-mask <file>',
      'a weight-mask file from `geneprune weights` (weight-mask.safetensors); combines with --mask',
    )
    .option(
      '--recovered <file>',
      'recovered weights (recovered-weights.safetensors) of a `weights --recover` run with its --weight-mask, or of a `heads --recover` run with its --mask',
    )
    .addOption(deviceOption())
    .addOption(computeDtypeOption())
    .addOption(threadsOption())
    .addOption(memoryBudgetOption())
    .option(
      '--kl',
      'also report the mean KL divergence from the unpruned model (with --prune-heads, --mask or --weight-mask)',
    )
    .option('--json', 'print the result as one JSON object')
    .addHelpText(
      'after',
      `
Protocol: each document is BOS + tokens; documents are concatenated; window i covers tokens
[i*ctx, i*ctx+ctx]; the mean NLL is over every predicted token; perplexity = exp(mean NLL).

Example:
  geneprune eval --data ../shared/data/tinystories/eval
  geneprune eval --model ./my-hf-folder --data eval.jsonl --ctx 1024 --max-tokens 50000 --prune-heads 0:3,4:1
  geneprune eval --task auto --data ../shared/data/tinystories/eval --weight-mask runs/mag50/weight-mask.safetensors
  geneprune eval --model ./my-hf-folder --choices eval-mc.jsonl --mask runs/mc25/mask.json
  geneprune eval --model ./my-classifier --labels data/sentiment/eval.jsonl --mask runs/sst25/mask.json`,
    )
    .action(async (flags: EvalFlags) => {
      if (flags.labels !== undefined) return evalLabels(flags, flags.json);
      if (flags.choices !== undefined) return evalChoices(flags, flags.json);
      if (flags.task !== undefined) return evalBleu(flags, flags.json);
      if (flags.maxNewTokens !== undefined) throw flagError('--max-new-tokens', 'only with --task (BLEU)');
      for (const [key, flag] of [
        ['allowCodeExecution', '--allow-code-execution'],
        ['execWorkers', '--exec-workers'],
      ] as const) {
        if (flags[key] !== undefined) throw flagError(flag, 'only with --task (a generation task)');
      }
      if (!flags.data) throw flagError('--data', 'required: the text to evaluate on');
      const progress = progressLine(process.stderr, flags.json);
      const report = await evaluate({
        model: flags.model,
        tokenizer: flags.tokenizer,
        data: flags.data,
        context: flags.ctx ? parseIntFlag('--ctx', flags.ctx) : undefined,
        maxTokens: flags.maxTokens ? parseIntFlag('--max-tokens', flags.maxTokens) : undefined,
        batchSize: flags.batchSize ? parseIntFlag('--batch-size', flags.batchSize) : undefined,
        ...maskRuntimeOptions(flags),
        kl: flags.kl,
        // An encoder-decoder's --data is a task file: its sources are built with the template.
        ...(flags.promptTemplate !== undefined ? { promptTemplate: flags.promptTemplate } : {}),
        memoryBudget: flags.memoryBudget ? parseByteSize('--memory-budget', flags.memoryBudget) : undefined,
        onProgress: (done, total) => progress.update(`eval ${done}/${total} tokens`),
        onNote: (line) => {
          progress.done();
          process.stderr.write(`note: ${line}\n`);
        },
      });
      progress.done();
      if (flags.json) process.stdout.write(`${JSON.stringify(report)}\n`);
      else printReport(report);
    });
}
