import type { Command } from 'commander';
import { createRunner } from '../engine/runner.js';
import { flagError } from '../errors.js';
import { readDataset } from '../metrics/data.js';
import {
  computeKlReference,
  defaultBatchSize,
  evaluateKl,
  evaluatePerplexity,
  makeWindows,
  tokenizeDocuments,
  tokenizePrefix,
} from '../metrics/perplexity.js';
import { openModel } from '../model/open.js';
import {
  deviceOption,
  headMaskFromFlags,
  modelOption,
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
  threads?: string;
  json?: boolean;
  kl?: boolean;
  mask?: string;
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
    .addOption(deviceOption())
    .addOption(threadsOption())
    .option('--kl', 'also report the mean KL divergence from the unpruned model (with --prune-heads)')
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
      const device = parseDevice(flags.device);
      const threads = flags.threads ? parseIntFlag('--threads', flags.threads) : undefined;
      const maxTokens = flags.maxTokens ? parseIntFlag('--max-tokens', flags.maxTokens) : undefined;
      const pairs = flags.pruneHeads ? parseHeadList(flags.pruneHeads) : [];
      const model = await openModel(flags.model, { tokenizer: flags.tokenizer });
      const { config } = model.spec;
      const ctx = flags.ctx ? parseIntFlag('--ctx', flags.ctx) : config.maxPositions;
      if (ctx > config.maxPositions) {
        throw flagError('--ctx', `${ctx} exceeds the model's context length ${config.maxPositions}`);
      }
      const batchSize = flags.batchSize
        ? parseIntFlag('--batch-size', flags.batchSize)
        : defaultBatchSize(ctx);
      const headMask = await headMaskFromFlags(model.spec, pairs, flags.mask);
      // With --max-tokens only the first maxTokens + 1 tokens are read and tokenized, however large the data.
      const data =
        maxTokens === undefined
          ? await readDataset(flags.data).then((d) => ({
              documents: d.documents.length,
              tokens: tokenizeDocuments(d.documents, model.tokenizer),
            }))
          : await tokenizePrefix(flags.data, model.tokenizer, maxTokens + 1);
      const windows = makeWindows(data.tokens, ctx, maxTokens, flags.data);
      const runner = await createRunner(model.spec, { output: 'nll', device, threads });
      const progress = progressLine(process.stderr, flags.json);
      const result = await evaluatePerplexity(runner, windows, {
        masks: { headMask },
        batchSize,
        onProgress: (p) => progress.update(`eval ${p.done}/${p.total} tokens`),
      });
      progress.done();
      await runner.release();
      let meanKl: number | undefined;
      if (flags.kl) {
        // The dense model's log-probabilities once, then the masked model's KL from them.
        const dense = await createRunner(model.spec, { output: 'logprobs', device, threads });
        const reference = await computeKlReference(dense, windows, batchSize);
        await dense.release();
        const klRunner = await createRunner(model.spec, { output: 'kl', device, threads });
        meanKl = (await evaluateKl(klRunner, windows, reference, { masks: { headMask } })).meanKl;
        await klRunner.release();
      }
      const report = {
        model: model.modelPath,
        tokenizer: model.tokenizerPath,
        data: flags.data,
        documents: data.documents,
        context: ctx,
        prunedHeads: pairs.map(([l, h]) => `${l}:${h}`),
        mask: flags.mask,
        tokens: result.tokens,
        meanNll: result.meanNll,
        perplexity: result.perplexity,
        seconds: result.seconds,
        tokensPerSecond: result.tokensPerSecond,
        ...(meanKl === undefined ? {} : { meanKl }),
        device,
      };
      if (flags.json) {
        process.stdout.write(`${JSON.stringify(report)}\n`);
        return;
      }
      const lines = [
        `model        ${report.model}`,
        `data         ${report.data} (${report.documents} documents)`,
        `context      ${ctx}`,
        ...(pairs.length ? [`pruned heads ${report.prunedHeads.join(',')}`] : []),
        ...(flags.mask ? [`mask         ${flags.mask}`] : []),
        `tokens       ${result.tokens}`,
        `mean NLL     ${result.meanNll.toFixed(4)}`,
        `perplexity   ${result.perplexity.toFixed(4)}`,
        ...(meanKl === undefined ? [] : [`KL to dense  ${meanKl.toFixed(5)} nats/token`]),
        `tokens/s     ${Math.round(result.tokensPerSecond)} (${device})`,
      ];
      process.stdout.write(`${lines.join('\n')}\n`);
    });
}
