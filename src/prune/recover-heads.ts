/**
 * Recovery of the output projection after attention heads are removed. Removing query head h of layer l zeroes
 * o's input columns [h·hd, (h+1)·hd); the remaining columns of o are refitted, row by row, to o's dense outputs
 * on the calibration activations: Ŵ_o minimises Σ_rows (w − ŵ)ᵀ (XᵀX + δI) (w − ŵ) with ŵ zero on the removed
 * heads' columns, X being the merged heads of every head (o's input before the head mask) — the kept heads
 * take over what the removed ones contributed, as far as a linear map of theirs can.
 *
 * It is the weights' recovery (recover.ts) walked layer by layer (sequential.ts), with the mask on o alone and its
 * removed columns walked first, which makes the column walk the exact damped least-squares solution (not an
 * approximation, as for per-row masks). Layer l's Gram matrix of o's input is captured with layers < l already
 * head-pruned and recovered. q/k/v are untouched: the removed heads' rows go when the heads are removed
 * (export), or are silenced by the head mask (eval, generate). The recovered o has zeros on the removed heads'
 * columns, so the recovered model computes the same with or without the head mask.
 */
import type { TokenBatch } from '../engine/runner.js';
import type { Device } from '../engine/session.js';
import { type Genome, geneOffsets } from '../masks/heads.js';
import type { ModelSpec } from '../model/spec.js';
import { pruneLayerPlans } from './heads.js';
import { RECOVERY_DAMPING } from './recover.js';
import { pruneSequentially } from './sequential.js';

export { RECOVERY_DAMPING };

export interface HeadRecoveryOptions {
  /** Calibration batches with targets (batches() of makeWindows). */
  batches: readonly TokenBatch[];
  damping?: number;
  device?: Device;
  threads?: number;
  /** Called after each layer. */
  onLayer?: (layer: number, layers: number) => void;
}

/** One layer's calibration reconstruction error of o: Σ (w − ŵ)ᵀXᵀX(w − ŵ), the columns zeroed, and refitted. */
export interface HeadRecoveryLayer {
  layer: number;
  /** Query heads removed in this layer (none: o is left as it is and both errors are 0). */
  removedHeads: number;
  maskedError: number;
  recoveredError: number;
  /** False when the refit was not better than zeroing alone and o keeps the zeroed columns only. */
  recovered: boolean;
}

export interface HeadRecoveryResult {
  /** The model with each layer's o replaced (zero on removed heads' columns); every other tensor its own. */
  spec: ModelSpec;
  /** The roles replaced: o of each layer that removes a head. */
  roles: string[];
  layers: HeadRecoveryLayer[];
  /** Batch passes through a block. */
  forwardPasses: number;
}

/** Keep-mask of layer `layer`'s o [D, heads·hd] under a genome: the removed heads' columns off in every row. */
export function oKeepOfGenome(spec: ModelSpec, genome: Genome, layer: number): Uint8Array {
  const c = spec.config;
  const heads = c.headsPerLayer[layer];
  const hd = c.headDim;
  const cols = heads * hd;
  const offset = geneOffsets(c)[layer];
  const row = new Uint8Array(cols);
  for (let h = 0; h < heads; h++) if (genome[offset + h]) row.fill(1, h * hd, (h + 1) * hd);
  const keep = new Uint8Array(c.hiddenSize * cols);
  for (let r = 0; r < c.hiddenSize; r++) keep.set(row, r * cols);
  return keep;
}

/** The head genome's o refitted layer by layer (see the module comment). */
export async function recoverHeadRemoval(
  spec: ModelSpec,
  genome: Genome,
  opts: HeadRecoveryOptions,
): Promise<HeadRecoveryResult> {
  // Checks the genome against the model (length, 0/1) as physical removal would.
  const plans = pruneLayerPlans(spec, genome);
  const L = spec.config.numLayers;
  const removed = plans.map((p, l) => spec.config.headsPerLayer[l] - p.query.length);
  const result = await pruneSequentially(spec, {
    batches: opts.batches,
    points: ['o_in'],
    recover: true,
    prunedColumnsFirst: true,
    damping: opts.damping ?? RECOVERY_DAMPING,
    device: opts.device,
    threads: opts.threads,
    select: (lin) => (removed[lin.layer] > 0 ? oKeepOfGenome(spec, genome, lin.layer) : undefined),
    onLayer: (r) => opts.onLayer?.(r.layer + 1, L),
  });
  const layers = result.layers.map((r): HeadRecoveryLayer => {
    const o = r.linears[0];
    return {
      layer: r.layer,
      removedHeads: removed[r.layer],
      maskedError: o?.maskedError ?? 0,
      recoveredError: o?.recoveredError ?? 0,
      recovered: o?.recovered === true,
    };
  });
  return { spec: result.spec, roles: [...result.masks.keys()], layers, forwardPasses: result.forwardPasses };
}
