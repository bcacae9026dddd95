/**
 * Sequential layer-wise pruning, as Wanda and SparseGPT do it, on decoders and encoders alike (an encoder's
 * batches carry attention_mask, and `valid` keeps padded positions out of every statistic): for l = 0 … L−1,
 * calibration tokens run through block l with layers < l already pruned (and recovered), the block's linear
 * inputs are measured (Σ_t X_tj² per input column for Wanda's scores; XᵀX for recovery), every prunable linear of
 * the layer gets its mask from `select`, optionally its kept weights are recovered against its own dense outputs
 * on those inputs (`recover.ts`), and the block, rebuilt on the new weights, hands its outputs to layer l+1. All
 * linears of a block see the block's input as it arrives (pruned prefix, dense block), as both papers do.
 *
 * `select` may leave a linear as it is (head recovery changes only o); a layer left whole is not run twice.
 *
 * Only one block's weights are in a session at a time; the hidden states at the current boundary are held
 * (tokens × hidden size × 4 bytes). The result is the model with its pruned weights in memory.
 */

import { archOf } from '../arch/registry.js';
import { enterBlock, runBlock, statOf } from '../engine/blocks.js';
import { createOrtGemm } from '../engine/gemm.js';
import { createRunner, type RunnerOutput, type TokenBatch } from '../engine/runner.js';
import type { Device } from '../engine/session.js';
import type { CapturePoint } from '../graph/capture.js';
import { type ModelSpec, memoryTensor, type TensorSource } from '../model/spec.js';
import {
  factorGramWith,
  type GramFactor,
  prunedColumnsFirst,
  recoverLinear,
  type WalkChooser,
} from './recover.js';

/**
 * A mask chosen inside recovery's column walk rather than before it (SparseGPT: prune/sparsegpt.ts), with the
 * walk's block size; needs `recover`.
 */
export interface MaskChosenInWalk {
  choose: WalkChooser;
  block: number;
}

/** A prunable linear's weight, its shape and its input statistics, handed to a mask chooser. */
export interface LinearToPrune {
  role: string;
  layer: number;
  rows: number;
  cols: number;
  /** The weight as it is now, [rows, cols]. */
  weight: Float32Array;
  /** Σ_t X_tj² of its input columns over the calibration tokens (Wanda's ‖X_j‖₂²). */
  inputSquaredNorms: Float64Array;
}

export interface SequentialOptions {
  /** Calibration batches (a decoder's with targets: its last block ends with the loss). */
  batches: readonly TokenBatch[];
  /**
   * The keep-mask (1 kept) of one linear, [rows, cols], or undefined to leave that linear as it is (neither
   * pruned nor recovered, and absent from the result's masks and reports); with `recover`, a MaskChosenInWalk
   * has the column walk choose it.
   */
  select: (linear: LinearToPrune) => Uint8Array | MaskChosenInWalk | undefined;
  /** Only the linears reading these inputs are offered to `select` and captured (default all four). */
  points?: readonly CapturePoint[];
  /**
   * Recovery walks the inputs pruned in every row of a linear first (prunedColumnsFirst): the exact damped
   * least-squares refit for masks of whole columns, as removed heads leave on o. Off by default: per-row masks
   * keep SparseGPT's order.
   */
  prunedColumnsFirst?: boolean;
  /** Recover each pruned linear's kept weights by least squares (default off). */
  recover?: boolean;
  /** Ridge damping of the recovery, as a fraction of mean(diag XᵀX) (default 0.01). */
  damping?: number;
  device?: Device;
  threads?: number;
  /** Called after each layer. */
  onLayer?: (report: LayerReport) => void;
  /**
   * Walk only blocks 0 … until−1 (default all): a caller whose `select` leaves every later linear as it is
   * (`--layers`) need not run them. The result's spec keeps the later blocks as they were.
   */
  until?: number;
}

export interface LinearReport {
  role: string;
  sparsity: number;
  /** Calibration reconstruction error Σ (w − ŵ)ᵀ XᵀX (w − ŵ) of the masked weights, and after recovery. */
  maskedError?: number;
  recoveredError?: number;
  /** False when recovery was not better than masking alone and the masked weights were kept. */
  recovered?: boolean;
}

export interface LayerReport {
  layer: number;
  linears: LinearReport[];
}

export interface SequentialResult {
  /** The model with every prunable linear replaced by its pruned (and recovered) weights. */
  spec: ModelSpec;
  /** Keep-masks by role. */
  masks: Map<string, Uint8Array>;
  layers: LayerReport[];
  /** Batch passes through a block (capture passes, and the passes that hand a changed block's output on). */
  forwardPasses: number;
}

export async function pruneSequentially(spec: ModelSpec, opts: SequentialOptions): Promise<SequentialResult> {
  const L = spec.config.numLayers;
  const tensors = new Map<string, TensorSource>(spec.tensors);
  const current = (): ModelSpec => ({ ...spec, tensors });
  const masks = new Map<string, Uint8Array>();
  const layers: LayerReport[] = [];
  const engine = { device: opts.device, threads: opts.threads };
  const arch = archOf(spec.config);
  const points = opts.points ?? arch.capturePoints;
  // The last block ends with the model's own head: the loss of a language model (the batches carry targets), the
  // classifier of a sequence-classification encoder (the logits are not read), or a bare encoder's hidden states.
  const lastOutput: RunnerOutput = arch.lastBlockOutput(spec.config);
  let forwardPasses = 0;
  let hidden: Float32Array[] | undefined;
  let batches = opts.batches;
  // Recovery's products (reconstruction errors, blocked updates) on ONNX Runtime's MatMul, in float32.
  const products = opts.recover ? await createOrtGemm(engine) : undefined;
  try {
    const end = Math.min(L, opts.until ?? L);
    for (let l = 0; l < end; l++) {
      const last = l === L - 1;
      // An encoder-decoder's first decoder block reads the final encoder output from the batches.
      ({ batches, hidden } = enterBlock(spec.config, l, batches, hidden));
      const capture = await createRunner(current(), {
        ...engine,
        layers: [l, l + 1],
        output: last ? lastOutput : 'hidden',
        capture: { layers: [l], kind: opts.recover ? 'gram' : 'sqnorm', points },
      });
      const pass = await runBlock(capture, batches, { hidden }).finally(() => capture.release());
      forwardPasses += batches.length;
      const report: LayerReport = { layer: l, linears: [] };
      let changed = false;
      for (const point of points) {
        const stat = statOf(pass.stats, l, point);
        if (!stat) continue; // a layer without heads has no attention inputs
        const gram = opts.recover ? stat : undefined;
        // The linears reading this input share its Gram matrix, and so its factorization.
        let factor: GramFactor | undefined;
        for (const role of arch.rolesOfCapturePoint(l, point)) {
          const src = tensors.get(role);
          if (!src) continue;
          const [rows, cols] = src.shape;
          const sq = gram ? Float64Array.from({ length: cols }, (_, j) => gram[j * cols + j]) : stat;
          const weight = Float32Array.from(await src.load());
          const chosen = opts.select({ role, layer: l, rows, cols, weight, inputSquaredNorms: sq });
          if (chosen === undefined) continue;
          changed = true;
          const inWalk = chosen instanceof Uint8Array ? undefined : chosen;
          if (inWalk && (!gram || opts.prunedColumnsFirst))
            throw new Error(`${role}: a mask chosen in the column walk needs recovery in the input order`);
          // A mask chosen in the walk is written there.
          const keep = inWalk ? new Uint8Array(rows * cols) : (chosen as Uint8Array);
          if (keep.length !== rows * cols)
            throw new Error(`${role}: mask of ${keep.length} for ${rows}×${cols}`);
          let pruned: Float32Array;
          const entry: LinearReport = { role, sparsity: 0 };
          if (gram) {
            // A walk order of its own needs the reordered Gram matrix's factor; otherwise the input's is shared.
            if (!opts.prunedColumnsFirst)
              factor ??= await factorGramWith(gram, cols, opts.damping ?? 0.01, products!.gemm);
            const r = await recoverLinear(
              weight,
              keep,
              gram,
              rows,
              cols,
              opts.prunedColumnsFirst
                ? { damping: opts.damping, order: prunedColumnsFirst(keep, rows, cols), gemm: products!.gemm }
                : {
                    factor,
                    gemm: products!.gemm,
                    ...(inWalk ? { choose: inWalk.choose, block: inWalk.block } : {}),
                  },
            );
            pruned = r.weight;
            entry.maskedError = r.maskedError;
            entry.recoveredError = r.error;
            entry.recovered = r.recovered;
          } else pruned = weight.map((v, i) => (keep[i] ? v : 0));
          entry.sparsity = 1 - keep.reduce((a, b) => a + b, 0) / keep.length;
          tensors.set(role, memoryTensor(src.shape, pruned));
          masks.set(role, keep);
          report.linears.push(entry);
        }
      }
      layers.push(report);
      opts.onLayer?.(report);
      if (l < end - 1) {
        if (changed) {
          const block = await createRunner(current(), { ...engine, layers: [l, l + 1], output: 'hidden' });
          hidden = (await runBlock(block, batches, { hidden }).finally(() => block.release())).hidden;
          forwardPasses += batches.length;
        } else hidden = pass.hidden; // the block is as it was captured: its output is the next input
      }
    }
  } finally {
    await products?.release();
  }
  return { spec: current(), masks, layers, forwardPasses };
}
