import type { Command } from 'commander';
import { type EvaluateResult, evaluate, flagError } from '../index.js';
import {
  computeDtypeOption,
  deviceOption,
  memoryBudgetOption,
  modelOption,
  parseByteSize,
  parseComputeDtype,
  parseDevice,
  parseHeadList,
  parseIntFlag,
  threadsOption,
  tokenizerOption,
} from './options.js';
import { progressLine } from './progress.js';

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
}

function printReport(r: EvaluateResult): void {
  const lines = [
    `model        ${r.model}`,
    `data         ${r.data} (${r.documents} documents)`,
    `context      ${r.context}`,
    ...(r.prunedHeads.length ? [`pruned heads ${r.prunedHeads.join(',')}`] : []),
    ...(r.mask ? [`mask         ${r.mask}`] : []),
    ...(r.weightMask
      ? [
          `weight mask  ${r.weightMask} (${(100 * (r.weightSparsity ?? 0)).toFixed(2)} % of the prunable weights pruned)`,
        ]
      : []),
    ...(r.recovered ? [`recovered    ${r.recovered}`] : []),
    `tokens       ${r.tokens}`,
    `mean NLL     ${r.meanNll.toFixed(4)}`,
    `perplexity   ${r.perplexity.toFixed(4)}`,
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
      'Perplexity of a model on text data (forward passes on ONNX Runtime, NLL computed in-graph).',
    )
    .addOption(modelOption())
    .addOption(tokenizerOption())
    .option(
      '--data <path>',
      'text file, folder of .txt/.jsonl files, or JSONL with a "text" field (required)',
    )
    .option('--ctx <n>', "context length per window (default: the model's)")
    .option('--max-tokens <n>', 'score at most this many tokens')
    .option('--batch-size <n>', 'windows per forward pass (default: about 2048 tokens)')
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
  geneprune eval --model ./my-hf-folder --data eval.jsonl --ctx 1024 --max-tokens 50000 --prune-heads 0:3,4:1`,
    )
    .action(async (flags: EvalFlags) => {
      if (!flags.data) throw flagError('--data', 'required: the text to evaluate on');
      const progress = progressLine(process.stderr, flags.json);
      const report = await evaluate({
        model: flags.model,
        tokenizer: flags.tokenizer,
        data: flags.data,
        context: flags.ctx ? parseIntFlag('--ctx', flags.ctx) : undefined,
        maxTokens: flags.maxTokens ? parseIntFlag('--max-tokens', flags.maxTokens) : undefined,
        batchSize: flags.batchSize ? parseIntFlag('--batch-size', flags.batchSize) : undefined,
        pruneHeads: flags.pruneHeads ? parseHeadList(flags.pruneHeads) : [],
        mask: flags.mask,
        weightMask: flags.weightMask,
        recovered: flags.recovered,
        kl: flags.kl,
        device: parseDevice(flags.device),
        dtype: parseComputeDtype(flags.dtype),
        threads: flags.threads ? parseIntFlag('--threads', flags.threads) : undefined,
        memoryBudget: flags.memoryBudget ? parseByteSize('--memory-budget', flags.memoryBudget) : undefined,
        onProgress: (done, total) => progress.update(`eval ${done}/${total} tokens`),
      });
      progress.done();
      if (flags.json) process.stdout.write(`${JSON.stringify(report)}\n`);
      else printReport(report);
    });
}
