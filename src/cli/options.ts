/** Flags shared by the commands. Each parser throws a flagError naming the flag. */
import { availableParallelism } from 'node:os';
import { Option } from 'commander';
import { COMPUTE_DTYPES, type ComputeDtype, DEVICES, type Device, flagError } from '../index.js';

export function parseIntFlag(flag: string, value: string, min = 1): number {
  if (!/^-?\d+$/.test(value.trim())) throw flagError(flag, `expected an integer, got "${value}"`);
  const n = Number(value);
  // Beyond 2^53 a double cannot hold every integer: 9007199254740993 would silently become …992.
  if (!Number.isSafeInteger(n)) {
    throw flagError(flag, `${value.trim()} is outside the exact integer range (±${Number.MAX_SAFE_INTEGER})`);
  }
  if (n < min) throw flagError(flag, `must be ≥ ${min}, got ${n}`);
  return n;
}

export function parseFloatFlag(flag: string, value: string, min = Number.NEGATIVE_INFINITY): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n)) throw flagError(flag, `expected a number, got "${value}"`);
  if (n < min) throw flagError(flag, `must be ≥ ${min}, got ${n}`);
  return n;
}

/**
 * `--threads`: more intra-op threads than the machine has cores only makes ONNX Runtime's spinning threads fight
 * over them (100000 ran for hours), so a larger count is capped at the cores, with a note on stderr.
 */
export function parseThreadsFlag(
  value: string,
  note: (line: string) => void = (line) => {
    process.stderr.write(`${line}\n`);
  },
): number {
  const n = parseIntFlag('--threads', value);
  const cores = availableParallelism();
  if (n <= cores) return n;
  note(`note: --threads ${n} exceeds the ${cores} CPU cores this machine offers: using ${cores}`);
  return cores;
}

export function parseDevice(value: string): Device {
  if (!(DEVICES as readonly string[]).includes(value)) {
    throw flagError('--device', `unknown device "${value}" (choose ${DEVICES.join(', ')})`);
  }
  return value as Device;
}

export function parseComputeDtype(value: string): ComputeDtype {
  if (!(COMPUTE_DTYPES as readonly string[]).includes(value)) {
    throw flagError('--dtype', `unknown compute dtype "${value}" (choose ${COMPUTE_DTYPES.join(', ')})`);
  }
  return value as ComputeDtype;
}

/** `L:H,L:H,...` → list of [layer, head] pairs (0-based). */
export function parseHeadList(value: string): Array<[number, number]> {
  const pairs: Array<[number, number]> = [];
  for (const part of value.split(',')) {
    const m = /^\s*(\d+):(\d+)\s*$/.exec(part);
    if (!m) throw flagError('--prune-heads', `expected LAYER:HEAD[,LAYER:HEAD...], got "${part}"`);
    pairs.push([Number(m[1]), Number(m[2])]);
  }
  return pairs;
}

/** The mask and runtime flags `eval`, `eval --task` and `generate` share, as they reach the library. */
export interface MaskRuntimeFlags {
  pruneHeads?: string;
  mask?: string;
  weightMask?: string;
  recovered?: string;
  device: string;
  dtype: string;
  threads?: string;
}

export function maskRuntimeOptions(flags: MaskRuntimeFlags) {
  return {
    pruneHeads: flags.pruneHeads ? parseHeadList(flags.pruneHeads) : [],
    mask: flags.mask,
    weightMask: flags.weightMask,
    recovered: flags.recovered,
    device: parseDevice(flags.device),
    dtype: parseComputeDtype(flags.dtype),
    threads: flags.threads ? parseThreadsFlag(flags.threads) : undefined,
  };
}

/** The report lines naming the masks a model was scored with. */
export function maskReportLines(r: {
  prunedHeads: string[];
  mask?: string;
  weightMask?: string;
  weightSparsity?: number;
  recovered?: string;
}): string[] {
  return [
    ...(r.prunedHeads.length ? [`pruned heads ${r.prunedHeads.join(',')}`] : []),
    ...(r.mask ? [`mask         ${r.mask}`] : []),
    ...(r.weightMask
      ? [
          `weight mask  ${r.weightMask} (${(100 * (r.weightSparsity ?? 0)).toFixed(2)} % of the prunable weights pruned)`,
        ]
      : []),
    ...(r.recovered ? [`recovered    ${r.recovered}`] : []),
  ];
}

/** The options every model-reading command takes, defined once so their help reads the same everywhere. */
export const modelOption = () =>
  new Option(
    '--model <path>',
    'llama2.c .bin, Hugging Face folder, or hf:OWNER/REPO[/PATH] (default: stories260K)',
  );
export const tokenizerOption = () =>
  new Option(
    '--tokenizer <file>',
    'tokenizer.json or llama2.c tokenizer.bin (default: found beside the model)',
  );
export const deviceOption = () =>
  new Option('--device <name>', 'cpu, cuda or webgpu (passed to ONNX Runtime)').default('cpu');
export { parseByteSize } from '../index.js';

/** Compute precision (eval, heads, generate, bench); export's --dtype is another thing: the files' storage dtype. */
export const computeDtypeOption = () =>
  new Option(
    '--dtype <dtype>',
    'compute precision: fp32, fp16 or bf16 weights held by ONNX Runtime (fp16/bf16: half the memory; on CPU the arithmetic stays fp32, see docs/scale-and-precision.md)',
  ).default('fp32');

export const memoryBudgetOption = () =>
  new Option(
    '--memory-budget <size>',
    "refuse, before loading, work whose estimated peak memory exceeds this (e.g. 20G; default: the machine's memory)",
  );
export const threadsOption = () =>
  new Option('--threads <n>', 'intra-op threads (default: all physical cores)');
