/**
 * Layer-wise calibration over block graphs (runners built with `layers: [from, to]`): run calibration batches
 * through one block, keep the hidden states it hands to the next block, and sum the activation statistics it
 * captures in float64.
 *
 * A sequential walk (Wanda, SparseGPT, recovery) goes, for l = 0 … L−1:
 *   1. runBlock(capture runner of block [l, l+1), batches, { hidden: h_l }) → stats of layer l's linear inputs,
 *      seeing layers < l already pruned/recovered (h_l came from them);
 *   2. prune / recover layer l's weights from those statistics;
 *   3. rebuild only block l's runner on the new weights and runBlock it again for h_{l+1} (or skip this when
 *      layer l is left unchanged and step 1's hidden output already is h_{l+1}).
 * Each kept boundary costs tokens × D × 4 bytes.
 *
 * Encoder-decoders walk the encoder blocks, then the decoder blocks: the block ending the encoder hands on the
 * final encoder output, which `enterBlock` moves into the batches (`encoderHidden`, read by every decoder block);
 * the first decoder block starts from the decoder ids of the batches, with no hidden states of its own.
 */
import { archOf } from '../arch/registry.js';
import type { CaptureKind, CapturePoint } from '../graph/capture.js';
import type { ModelConfig } from '../model/spec.js';
import type { CandidateMasks, ModelRunner, TokenBatch } from './runner.js';

/** Statistics summed over batches: `stats.{layer}.{point}` → Σ over batches, float64. */
export interface ActivationStats {
  kind: CaptureKind;
  /** Σ of token weights over the batches (the real tokens counted, with 0/1 weights). */
  tokens: number;
  sums: Map<string, Float64Array>;
}

export interface BlockPass {
  /** Per batch, the block's output hidden states [batch * seq * D] (absent when the block ends with the head). */
  hidden?: Float32Array[];
  /** Captured statistics (empty sums when the runner captures nothing). */
  stats: ActivationStats;
}

/** The statistic of one layer's capture point, or undefined when it was not captured. */
export function statOf(stats: ActivationStats, layer: number, point: CapturePoint): Float64Array | undefined {
  return stats.sums.get(`stats.${layer}.${point}`);
}

function tokenWeightSum(batch: TokenBatch): number {
  const n = batch.batch * batch.seq;
  if (batch.tokenWeight) {
    let s = 0;
    for (let i = 0; i < n; i++) s += batch.tokenWeight[i];
    return s;
  }
  // A pair batch's valid marks decoder positions: its source counts by the attention mask.
  if (batch.decoderIds && batch.attentionMask) {
    let s = 0;
    for (let i = 0; i < n; i++) s += Number(batch.attentionMask[i]);
    return s;
  }
  if (batch.valid) {
    let s = 0;
    for (let i = 0; i < n; i++) s += batch.valid[i] ? 1 : 0;
    return s;
  }
  return n;
}

/**
 * Whether block `from` of a walk reads hidden states handed on by the block before it: every block past the
 * first, except the first block of a second stack (it starts from its own embedding, see enterBlock).
 */
export function readsHidden(config: ModelConfig, from: number): boolean {
  return from > 0 && archOf(config).secondStackStart?.(config) !== from;
}

/**
 * What block `next` of a walk reads, given the batches and the hidden states block next−1 handed on: the same,
 * except where a second stack starts (encoder-decoders' first decoder block): there the hidden states are the
 * first stack's final output, handed to every later block inside the batches as `encoderHidden`, and the block
 * itself has none.
 */
export function enterBlock(
  config: ModelConfig,
  next: number,
  batches: readonly TokenBatch[],
  hidden: Float32Array[] | undefined,
): { batches: readonly TokenBatch[]; hidden: Float32Array[] | undefined } {
  if (next === 0 || readsHidden(config, next)) return { batches, hidden };
  if (hidden?.length !== batches.length) {
    throw new Error(
      `block ${next} starts the second stack: it needs the first stack's output for each of the ${batches.length} batches`,
    );
  }
  return { batches: batches.map((b, i) => ({ ...b, encoderHidden: hidden[i] })), hidden: undefined };
}

/**
 * Runs every batch through a (block) runner. `hidden[b]` is batch b's input hidden states when the runner
 * starts past layer 0. Returns the output hidden states per batch (when the runner outputs 'hidden') and the
 * captured statistics summed in float64.
 */
export async function runBlock(
  runner: ModelRunner,
  batches: readonly TokenBatch[],
  opts: { hidden?: readonly Float32Array[]; masks?: CandidateMasks } = {},
): Promise<BlockPass> {
  const needsHidden = readsHidden(runner.spec.config, runner.layers[0]);
  if (needsHidden && opts.hidden?.length !== batches.length) {
    throw new Error(
      `block [${runner.layers[0]}, ${runner.layers[1]}) needs hidden states for each of the ${batches.length} batches, got ${opts.hidden?.length ?? 0}`,
    );
  }
  const keepHidden = runner.output === 'hidden';
  const hidden: Float32Array[] = [];
  const sums = new Map<string, Float64Array>();
  let kind: CaptureKind = 'sqnorm';
  let tokens = 0;
  for (const [b, batch] of batches.entries()) {
    const input = needsHidden ? { ...batch, hidden: opts.hidden![b] } : batch;
    const out = await runner.runAll(input, opts.masks);
    tokens += tokenWeightSum(batch);
    for (const [name, value] of Object.entries(out)) {
      if (!name.startsWith('stats.')) continue;
      if (value.dims.length === 2) kind = 'gram';
      let acc = sums.get(name);
      if (!acc) {
        acc = new Float64Array(value.data.length);
        sums.set(name, acc);
      }
      const d = value.data;
      for (let i = 0; i < d.length; i++) acc[i] += d[i];
    }
    // An encoder block ending at the last layer names its hidden output last_hidden_state.
    if (keepHidden) hidden.push((out.hidden ?? out.last_hidden_state).data);
  }
  return { hidden: keepHidden ? hidden : undefined, stats: { kind, tokens, sums } };
}

/** The captured statistics (Σ_t X_tj² or XᵀX, as the runner captures) summed over calibration batches. */
export async function accumulateStats(
  runner: ModelRunner,
  batches: readonly TokenBatch[],
  opts: { hidden?: readonly Float32Array[]; masks?: CandidateMasks } = {},
): Promise<ActivationStats> {
  return (await runBlock(runner, batches, opts)).stats;
}

/** The hidden states a block hands to the next one, per batch (runner with output 'hidden'). */
export async function blockHidden(
  runner: ModelRunner,
  batches: readonly TokenBatch[],
  opts: { hidden?: readonly Float32Array[]; masks?: CandidateMasks } = {},
): Promise<Float32Array[]> {
  if (runner.output !== 'hidden') {
    throw new Error(`blockHidden needs a runner with output 'hidden', not '${runner.output}'`);
  }
  return (await runBlock(runner, batches, opts)).hidden!;
}
