import type { Command } from 'commander';
import { generate } from '../index.js';
import {
  computeDtypeOption,
  deviceOption,
  maskRuntimeOptions,
  modelOption,
  parseFloatFlag,
  parseIntFlag,
  threadsOption,
  tokenizerOption,
} from './options.js';

interface GenerateFlags {
  model?: string;
  tokenizer?: string;
  prompt?: string;
  maxNewTokens: string;
  temperature: string;
  seed: string;
  pruneHeads?: string;
  mask?: string;
  weightMask?: string;
  recovered?: string;
  device: string;
  dtype: string;
  threads?: string;
  json?: boolean;
}

export function registerGenerate(program: Command): void {
  program
    .command('generate')
    .description('Continue a prompt (greedy by default) so you can see what a model, or a pruned one, says.')
    .addOption(modelOption())
    .addOption(tokenizerOption())
    .option('--prompt <text>', 'text to continue (default: start from BOS alone)')
    .option('-n, --max-new-tokens <n>', 'tokens to generate at most', '200')
    .option('--temperature <t>', '0 = greedy; > 0 samples from softmax(logits / t)', '0')
    .option('--seed <s>', 'seed for sampling', '0')
    .option('--prune-heads <list>', 'mask these attention heads, LAYER:HEAD,... (0-based)')
    .option('--mask <file>', 'a head-mask file from `geneprune heads` (mask.json)')
    .option(
      '--weight-mask <file>',
      'a weight-mask file from `geneprune weights` (weight-mask.safetensors); combines with --mask',
    )
    .option(
      '--recovered <file>',
      'recovered weights of a `weights --recover` run with its --weight-mask, or of a `heads --recover` run with its --mask',
    )
    .addOption(deviceOption())
    .addOption(computeDtypeOption())
    .addOption(threadsOption())
    .option('--json', 'print one JSON object (text, token ids, finish reason) instead of streaming the text')
    .addHelpText(
      'after',
      `
Generation stops after -n tokens or when the model emits BOS/EOS (a new document).

Example:
  geneprune generate -n 60
  geneprune generate --prompt "The cat" --temperature 0.8 --seed 7`,
    )
    .action(async (flags: GenerateFlags) => {
      const options = {
        model: flags.model,
        tokenizer: flags.tokenizer,
        prompt: flags.prompt ?? '',
        maxNewTokens: parseIntFlag('-n', flags.maxNewTokens, 0),
        temperature: parseFloatFlag('--temperature', flags.temperature, 0),
        seed: parseIntFlag('--seed', flags.seed, 0),
        ...maskRuntimeOptions(flags),
        onNote: (line: string) => process.stderr.write(`warning: ${line}\n`),
      };
      if (flags.json) {
        process.stdout.write(`${JSON.stringify(await generate(options))}\n`);
        return;
      }
      await generate({
        ...options,
        // What the output continues (a decoder's prompt; nothing for an encoder-decoder) is echoed once the model
        // is loaded, so a failure prints nothing on stdout.
        onStart: (continued) => process.stdout.write(continued),
        onText: (piece) => process.stdout.write(piece),
      });
      process.stdout.write('\n');
    });
}
