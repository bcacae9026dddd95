import type { Command } from 'commander';
import { generate } from '../engine/generate.js';
import { createRunner } from '../engine/runner.js';
import { openModel } from '../model/open.js';
import { createRng } from '../util/rng.js';
import {
  deviceOption,
  headMaskFromFlags,
  modelOption,
  parseDevice,
  parseFloatFlag,
  parseHeadList,
  parseIntFlag,
  threadsOption,
  tokenizerOption,
} from './options.js';

interface GenerateFlags {
  model?: string;
  tokenizer?: string;
  prompt: string;
  n: string;
  temperature: string;
  seed: string;
  pruneHeads?: string;
  mask?: string;
  device: string;
  threads?: string;
}

export function registerGenerate(program: Command): void {
  program
    .command('generate')
    .description('Continue a prompt (greedy by default) so you can see what a model, or a pruned one, says.')
    .addOption(modelOption())
    .addOption(tokenizerOption())
    .option('--prompt <text>', 'text to continue (default: start from BOS alone)', '')
    .option('-n, --max-new-tokens <n>', 'tokens to generate at most', '200')
    .option('--temperature <t>', '0 = greedy; > 0 samples from softmax(logits / t)', '0')
    .option('--seed <s>', 'seed for sampling', '0')
    .option('--prune-heads <list>', 'mask these attention heads, LAYER:HEAD,... (0-based)')
    .option('--mask <file>', 'a head-mask file from `geneprune heads` (mask.json)')
    .addOption(deviceOption())
    .addOption(threadsOption())
    .addHelpText(
      'after',
      `
Generation stops after -n tokens or when the model emits BOS/EOS (a new document).

Example:
  geneprune generate -n 60
  geneprune generate --prompt "The cat" --temperature 0.8 --seed 7`,
    )
    .action(async (flags: GenerateFlags & { maxNewTokens: string }) => {
      const device = parseDevice(flags.device);
      const threads = flags.threads ? parseIntFlag('--threads', flags.threads) : undefined;
      const n = parseIntFlag('-n', flags.maxNewTokens, 0);
      const temperature = parseFloatFlag('--temperature', flags.temperature, 0);
      const seed = parseIntFlag('--seed', flags.seed, 0);
      const pairs = flags.pruneHeads ? parseHeadList(flags.pruneHeads) : [];
      const model = await openModel(flags.model, { tokenizer: flags.tokenizer });
      const headMask = await headMaskFromFlags(model.spec, pairs, flags.mask);
      const tok = model.tokenizer;
      const prompt = tok.encode(flags.prompt, { bos: true });
      if (prompt.length === 0) prompt.push(model.spec.config.bosTokenId ?? 1);
      const runner = await createRunner(model.spec, { output: 'last_logits', device, threads });
      const stopTokens = [tok.bosId, tok.eosId].filter((t): t is number => t !== undefined);
      let prev = prompt[prompt.length - 1];
      process.stdout.write(flags.prompt);
      await generate(runner, prompt, {
        maxNewTokens: n,
        temperature,
        rng: createRng(seed),
        masks: { headMask },
        stopTokens,
        onToken: (id) => {
          process.stdout.write(tok.decodeToken(prev, id));
          prev = id;
        },
      });
      process.stdout.write('\n');
      await runner.release();
    });
}
