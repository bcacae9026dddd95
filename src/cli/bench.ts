import type { Command } from 'commander';
import { type BenchModelReport, bench } from '../index.js';
import {
  computeDtypeOption,
  deviceOption,
  memoryBudgetOption,
  parseByteSize,
  parseComputeDtype,
  parseDevice,
  parseIntFlag,
  parseThreadsFlag,
  threadsOption,
} from './options.js';

interface BenchFlags {
  model?: string[];
  mask?: string;
  batch: string;
  seq: string;
  prompt: string;
  generate: string;
  runs: string;
  warmup: string;
  sessions: string;
  device: string;
  dtype: string;
  threads?: string;
  memoryBudget?: string;
  latencyProfile?: string;
  saveLatencyProfile?: string;
  latencyModel: boolean;
  json?: boolean;
}

export function registerBench(program: Command): void {
  program
    .command('bench')
    .description(
      'Measure prefill and generation speed of a model against a pruned one, interleaved in one process.',
    )
    .option(
      '--model <path>',
      'model A (default: stories260K); give it twice for A and B',
      // No default value: commander would print it as "(default: [])".
      (v: string, acc: string[] | undefined) => [...(acc ?? []), v],
    )
    .option('--mask <file>', 'B = model A with the heads this mask removes physically removed')
    .option('--batch <n>', 'prefill batch size', '4')
    .option('--seq <n>', 'prefill sequence length', '256')
    .option('--prompt <n>', 'prompt tokens before generation', '16')
    .option('--generate <n>', 'tokens generated per run (KV cache)', '32')
    .option('--runs <n>', 'timed runs per model (median reported)', '5')
    .option('--warmup <n>', 'untimed runs first', '1')
    .option(
      '--sessions <n>',
      "fresh sessions per model, each timed; each model's fastest reported (a session can stay slow)",
      '3',
    )
    .addOption(deviceOption())
    .addOption(computeDtypeOption())
    .addOption(threadsOption())
    .addOption(memoryBudgetOption())
    .option(
      '--latency-profile <file>',
      "the latency model's profile to predict from (default: calibrate on A here)",
    )
    .option('--save-latency-profile <file>', 'write the latency profile calibrated here to this file')
    .option('--no-latency-model', "no latency model prediction (skips the calibration's time)")
    .option('--json', 'print the result as one JSON object')
    .addHelpText(
      'after',
      `
Speedup is A's time over B's; the FLOP ratio is A's forward FLOPs per token over B's, the speedup the
removed work predicts; the latency model's predicted speedup is priced from per-layer attention and MLP times
measured on this device (a stored profile must match A's shape and these settings). Example:
  geneprune bench --mask runs/heads-25/mask.json
  geneprune bench --model big-folder --model exported/pruned`,
    )
    .action(async (flags: BenchFlags) => {
      const n = (flag: string, v: string, min = 1) => parseIntFlag(flag, v, min);
      const r = await bench({
        models: flags.model ?? [],
        mask: flags.mask,
        batch: n('--batch', flags.batch),
        seq: n('--seq', flags.seq),
        prompt: n('--prompt', flags.prompt),
        generate: n('--generate', flags.generate),
        runs: n('--runs', flags.runs),
        warmup: n('--warmup', flags.warmup, 0),
        sessions: n('--sessions', flags.sessions),
        device: parseDevice(flags.device),
        dtype: parseComputeDtype(flags.dtype),
        threads: flags.threads ? parseThreadsFlag(flags.threads) : undefined,
        memoryBudget: flags.memoryBudget ? parseByteSize('--memory-budget', flags.memoryBudget) : undefined,
        latencyProfile: flags.latencyModel === false ? false : flags.latencyProfile,
        saveLatencyProfile: flags.saveLatencyProfile,
        onStatus: flags.json ? undefined : (line) => process.stderr.write(`${line}\n`),
      });
      if (flags.json) {
        process.stdout.write(`${JSON.stringify(r)}\n`);
        return;
      }
      const row = (name: string, s: BenchModelReport) =>
        `${name.padEnd(3)} ${String(s.parameters).padStart(12)} ${String(s.bytes).padStart(12)} ${s.prefillTokensPerSecond.toFixed(0).padStart(14)} ${s.generateTokensPerSecond.toFixed(1).padStart(12)} ${(s.flopsPerToken / 1e6).toFixed(1).padStart(14)}`;
      const o = r.settings;
      const lines = [
        `A: ${r.a.model}`,
        `B: ${r.b.model}`,
        `prefill B=${o.batch} S=${o.seq} (${o.device}, ${o.dtype}); generation ${o.generate} tokens after a ${o.prompt}-token prompt; median of ${o.runs} interleaved runs, fastest of ${o.sessions} session(s)`,
        '    parameters        bytes   prefill tok/s  gen tok/s   MFLOP/token',
        row('A', r.a),
        row('B', r.b),
        `prefill speedup ${r.prefillSpeedup.toFixed(3)}x, generation speedup ${r.generateSpeedup.toFixed(3)}x, FLOP ratio ${r.flopRatio.toFixed(3)}x`,
        `prefill speedup / FLOP ratio = ${r.prefillSpeedupOverFlopRatio.toFixed(3)}`,
        r.latency
          ? `latency model (${r.latency.profile === 'calibrated' ? 'calibrated here' : r.latency.profile}): predicted prefill speedup ${r.latency.predictedSpeedup.toFixed(3)}x (${r.latency.relativeError >= 0 ? '+' : ''}${(100 * r.latency.relativeError).toFixed(1)} % against the measured)`
          : `latency model: no prediction (${r.latencySkipped})`,
        `peak memory ${(r.peakRssBytes / 2 ** 30).toFixed(2)} GiB`,
      ];
      process.stdout.write(`${lines.join('\n')}\n`);
    });
}
