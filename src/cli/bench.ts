import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Command } from 'commander';
import { resolveModelRef } from '../checkpoint/hub.js';
import { flagError } from '../errors.js';
import { loadModelSpec } from '../model/load.js';
import type { ModelSpec } from '../model/spec.js';
import { benchModels, type ModelSpeed } from '../prune/bench.js';
import { pruneHeads } from '../prune/heads.js';
import { readMaskFile } from '../search/maskfile.js';
import { deviceOption, parseDevice, parseIntFlag, threadsOption } from './options.js';

interface BenchFlags {
  model: string[];
  mask?: string;
  batch: string;
  seq: string;
  prompt: string;
  generate: string;
  runs: string;
  warmup: string;
  device: string;
  threads?: string;
  json?: boolean;
}

/** Bytes of the weight files a model path holds (a .bin, or a folder's safetensors). */
async function bytesOnDisk(path: string): Promise<number> {
  const info = await stat(path);
  if (!info.isDirectory()) return info.size;
  let total = 0;
  for (const name of await readdir(path)) {
    if (name.endsWith('.safetensors')) total += (await stat(join(path, name))).size;
  }
  return total;
}

export function registerBench(program: Command): void {
  program
    .command('bench')
    .description(
      'Measure prefill and generation speed of a model against a pruned one, interleaved in one process.',
    )
    .option(
      '--model <path>',
      'model A; give it twice for A and B',
      (v: string, acc: string[]) => [...acc, v],
      [],
    )
    .option('--mask <file>', 'B = model A with the heads this mask removes physically removed')
    .option('--batch <n>', 'prefill batch size', '4')
    .option('--seq <n>', 'prefill sequence length', '256')
    .option('--prompt <n>', 'prompt tokens before generation', '16')
    .option('--generate <n>', 'tokens generated per run (KV cache)', '32')
    .option('--runs <n>', 'timed runs per model (median reported)', '5')
    .option('--warmup <n>', 'untimed runs first', '1')
    .addOption(deviceOption())
    .addOption(threadsOption())
    .option('--json', 'print the result as JSON')
    .addHelpText(
      'after',
      `
Speedup is A's time over B's; the FLOP ratio is A's forward FLOPs per token over B's, the speedup the
removed work predicts. Example:
  geneprune bench --mask runs/heads-25/mask.json
  geneprune bench --model big-folder --model exported/pruned`,
    )
    .action(async (flags: BenchFlags) => {
      const n = (flag: string, v: string, min = 1) => parseIntFlag(flag, v, min);
      const opts = {
        batch: n('--batch', flags.batch),
        seq: n('--seq', flags.seq),
        prompt: n('--prompt', flags.prompt),
        generate: n('--generate', flags.generate),
        runs: n('--runs', flags.runs),
        warmup: n('--warmup', flags.warmup, 0),
        device: parseDevice(flags.device),
        threads: flags.threads ? n('--threads', flags.threads) : undefined,
        seed: 0,
      };
      if (flags.model.length > 2) throw flagError('--model', 'give at most two models');
      if (flags.model.length === 2 && flags.mask)
        throw flagError('--mask', 'give a second --model or a --mask, not both');
      if (flags.model.length < 2 && !flags.mask)
        throw flagError('--mask', 'needs a second --model or a --mask');
      // Speed needs no tokenizer: models are opened without one.
      const open = async (ref: string | undefined) => {
        const { modelPath } = await resolveModelRef(ref);
        return { modelPath, spec: await loadModelSpec(modelPath) };
      };
      const a = await open(flags.model[0]);
      let b: ModelSpec;
      let bBytes: number;
      let bName: string;
      if (flags.mask) {
        b = pruneHeads(a.spec, await readMaskFile(flags.mask, a.spec));
        bName = `${flags.mask} (heads removed in memory)`;
        bBytes = Number.NaN;
      } else {
        const opened = await open(flags.model[1]);
        b = opened.spec;
        bName = opened.modelPath;
        bBytes = await bytesOnDisk(opened.modelPath);
      }
      const aBytes = await bytesOnDisk(a.modelPath);
      const [sa, sb] = await benchModels(a.spec, b, opts, (line) => process.stderr.write(`${line}\n`));
      // A mask-pruned model is not on disk: its exported fp32 safetensors would hold 4 bytes per parameter.
      if (Number.isNaN(bBytes)) bBytes = sb.parameters * 4;
      const prefillSpeedup =
        sa.prefillTokensPerSecond > 0 ? sb.prefillTokensPerSecond / sa.prefillTokensPerSecond : 0;
      const generateSpeedup = sb.generateTokensPerSecond / sa.generateTokensPerSecond;
      const flopRatio = sa.flopsPerToken / sb.flopsPerToken;
      const report = {
        a: { model: a.modelPath, bytes: aBytes, ...sa },
        b: { model: bName, bytes: bBytes, ...sb },
        settings: opts,
        prefillSpeedup,
        generateSpeedup,
        flopRatio,
        prefillSpeedupOverFlopRatio: prefillSpeedup / flopRatio,
      };
      if (flags.json) {
        process.stdout.write(`${JSON.stringify(report)}\n`);
        return;
      }
      const row = (name: string, s: ModelSpeed, bytes: number) =>
        `${name.padEnd(3)} ${String(s.parameters).padStart(12)} ${String(bytes).padStart(12)} ${s.prefillTokensPerSecond.toFixed(0).padStart(14)} ${s.generateTokensPerSecond.toFixed(1).padStart(12)} ${(s.flopsPerToken / 1e6).toFixed(1).padStart(14)}`;
      const lines = [
        `A: ${a.modelPath}`,
        `B: ${bName}`,
        `prefill B=${opts.batch} S=${opts.seq}; generation ${opts.generate} tokens after a ${opts.prompt}-token prompt; median of ${opts.runs} interleaved runs`,
        '    parameters        bytes   prefill tok/s  gen tok/s   MFLOP/token',
        row('A', sa, aBytes),
        row('B', sb, bBytes),
        `prefill speedup ${prefillSpeedup.toFixed(3)}x, generation speedup ${generateSpeedup.toFixed(3)}x, FLOP ratio ${flopRatio.toFixed(3)}x`,
        `prefill speedup / FLOP ratio = ${(prefillSpeedup / flopRatio).toFixed(3)}`,
      ];
      process.stdout.write(`${lines.join('\n')}\n`);
    });
}
