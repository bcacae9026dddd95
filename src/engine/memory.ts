/**
 * Peak memory a command will need, from the model's header alone (shapes, not values), so a model that cannot
 * fit is refused in one line before anything is loaded, instead of the process dying out of memory.
 *
 * The factors are measured (docs/scale-and-precision.md): with weights in an external file, ONNX Runtime holds one copy of
 * them (plus packed copies of a few matrices), this process none; activations are dominated by the logits
 * (fp32 [tokens, width], kept as logits, softmax and loss buffers: the width is one vocabulary chunk for
 * perplexity, the whole vocabulary for KL, whose reference log-probabilities are inputs) and the S×S attention
 * scores.
 *
 * It lives in engine/ because what it models is ONNX Runtime's memory (its copies of the weights, its activation
 * buffers), measured on the engine's graphs.
 */
import { freemem, totalmem } from 'node:os';
import { flagError } from '../errors.js';
import { VOCAB_CHUNK } from '../graph/lmhead.js';
import { COMPUTE_DTYPE_BYTES, type ComputeDtype, storageTypeOf } from '../graph/weights.js';
import type { ModelSpec } from '../model/spec.js';
import { maxOf } from '../util/arrays.js';

/**
 * Process memory a session holds per byte of weights in the compute dtype (measured 1.0–1.2 for fp32 on the 134M
 * and 1B shapes: ORT's copy plus packed matrices; fp16/bf16 have no packed copies but cast one block's matrices
 * to fp32 at a time while it runs).
 */
export const WEIGHT_FACTOR = 1.25;
/** Node, V8 and ONNX Runtime's own code and arenas with nothing loaded. */
export const BASE_BYTES = 200 << 20;

export interface MemoryEstimateOptions {
  /** Rows and tokens per row of one forward pass. */
  batch: number;
  seq: number;
  /** Sessions alive at once on the same weights (bench: prefill + KV-cache graph). */
  sessions?: number;
  /** The forward pass's metric: 'ppl' (default) holds logits a vocabulary chunk at a time, 'kl' whole. */
  metric?: 'ppl' | 'kl';
  /** Bytes held besides the sessions (a KL search's reference log-probabilities). */
  heldBytes?: number;
  /** Compute dtype the weights are held in (default fp32). */
  dtype?: ComputeDtype;
  /**
   * `--workers N`: evaluations at once on N worker threads, each with its own session (weights, tables),
   * activations and held data; the estimate is N of them.
   */
  workers?: number;
}

export interface MemoryEstimate {
  weightBytes: number;
  activationBytes: number;
  /** Rotary cos/sin tables, which the graph holds for every position the config allows (0 without rotary). */
  positionTableBytes: number;
  totalBytes: number;
}

/**
 * The forward-pass shape of scoring `windows` in batches of `batchSize` rows: the longest window's predicted
 * tokens (not the model's context, which a short evaluation never fills) and no more rows than there are.
 */
export function evaluatedShape(
  windows: { rows: readonly { length: number }[] },
  batchSize: number,
): { batch: number; seq: number } {
  let longest = 1;
  for (const r of windows.rows) longest = Math.max(longest, r.length - 1);
  return { batch: Math.max(1, Math.min(batchSize, windows.rows.length)), seq: longest };
}

/** Bytes of the model's weights as a session holds them: matrices in the compute dtype, vectors in fp32. */
export function weightBytesOf(spec: ModelSpec, dtype: ComputeDtype = 'fp32'): number {
  let n = 0;
  for (const t of spec.tensors.values()) {
    const bytes = storageTypeOf(t, dtype) === 'float32' ? 4 : COMPUTE_DTYPE_BYTES[dtype];
    n += bytes * t.shape.reduce((a, b) => a * b, 1);
  }
  return n;
}

export function estimatePeakMemory(spec: ModelSpec, opts: MemoryEstimateOptions): MemoryEstimate {
  const c = spec.config;
  const tokens = opts.batch * opts.seq;
  const maxHeads = maxOf(c.headsPerLayer);
  const width = opts.metric === 'kl' ? c.vocabSize : Math.min(c.vocabSize, VOCAB_CHUNK);
  const logits = 4 * tokens * width * 4;
  const scores = 4 * opts.batch * maxHeads * opts.seq * opts.seq * 3;
  const hidden = 4 * tokens * (c.intermediateSize * 3 + c.hiddenSize * 8);
  const weightBytes = weightBytesOf(spec, opts.dtype) * WEIGHT_FACTOR * (opts.sessions ?? 1);
  const activationBytes = logits + scores + hidden + (opts.heldBytes ?? 0);
  // fp32 cos and sin, [maxPositions, headDim] each, in every session's graph (LongRoPE holds a short and a long pair).
  const tablePairs = c.ropeScaling?.kind === 'longrope' ? 2 : 1;
  const positionTableBytes =
    c.positionKind === 'rope' ? tablePairs * 2 * 4 * c.maxPositions * c.headDim * (opts.sessions ?? 1) : 0;
  const n = opts.workers ?? 1;
  return {
    weightBytes: weightBytes * n,
    activationBytes: activationBytes * n,
    positionTableBytes: positionTableBytes * n,
    totalBytes: BASE_BYTES + (weightBytes + activationBytes + positionTableBytes) * n,
  };
}

/**
 * Export holds one tensor at a time (its storage bytes, its fp32 values, and a sliced copy when pruned): a few
 * times the largest tensor, never the model.
 */
export function estimateExportMemory(spec: ModelSpec): MemoryEstimate {
  let largest = 0;
  for (const t of spec.tensors.values()) largest = Math.max(largest, 4 * t.shape.reduce((a, b) => a * b, 1));
  const weightBytes = 3 * largest;
  return { weightBytes, activationBytes: 0, positionTableBytes: 0, totalBytes: BASE_BYTES + weightBytes };
}

/** The default budget: the machine's memory. */
export function defaultMemoryBudget(): number {
  return totalmem();
}

const gib = (n: number) => `${(n / 2 ** 30).toFixed(1)} GiB`;

/** Refuses, naming the estimate and the budget, work whose estimated peak exceeds the budget. */
export function checkMemoryBudget(
  spec: ModelSpec,
  opts: MemoryEstimateOptions & { budget?: number; what: string },
): MemoryEstimate {
  const estimate = opts.what === 'export' ? estimateExportMemory(spec) : estimatePeakMemory(spec, opts);
  const budget = opts.budget ?? defaultMemoryBudget();
  if (estimate.totalBytes > budget) {
    // Named only when they matter: a config allowing absurdly many positions makes the tables the whole cost.
    const tables =
      estimate.positionTableBytes >= 2 ** 30 / 10
        ? ` + rotary tables ${gib(estimate.positionTableBytes)} for the config's ${spec.config.maxPositions} positions`
        : '';
    throw flagError(
      '--memory-budget',
      `${opts.what} would need about ${gib(estimate.totalBytes)} (weights ${gib(estimate.weightBytes)}${opts.dtype && opts.dtype !== 'fp32' ? ` in ${opts.dtype}` : ''}${opts.what === 'export' ? '' : ` + activations ${gib(estimate.activationBytes)} for ${opts.batch}×${opts.seq} tokens`}${tables}${(opts.workers ?? 1) > 1 ? `, for ${opts.workers} worker sessions of --workers` : ''}), over the budget of ${gib(budget)}${opts.budget === undefined ? ` (this machine's memory; ${gib(freemem())} free now)` : ''}`,
    );
  }
  return estimate;
}

/** Parses a size like 20G, 512M, 1.5GiB or a byte count. */
export function parseByteSize(flag: string, text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$/i.exec(text);
  if (!m) throw flagError(flag, `"${text}" is not a size (e.g. 20G, 512M, 1073741824)`);
  const scale = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 }[m[2].toLowerCase()]!;
  const bytes = Math.floor(Number(m[1]) * scale);
  if (!(bytes > 0)) throw flagError(flag, `"${text}" must be more than 0 bytes`);
  return bytes;
}

/** Peak resident memory of this process so far. */
export function peakRssBytes(): number {
  return process.resourceUsage().maxRSS * 1024;
}
