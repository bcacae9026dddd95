/**
 * `weights --method sparsegpt`: SparseGPT (Frantar & Alistarh, 2023) as a weight baseline. Layer by layer with
 * the layers before already pruned and updated (prune/sequential.ts, the walk Wanda and recovery use), each
 * prunable linear's mask is chosen inside recovery's column walk by the OBS saliency w²/[U]ᵢᵢ² and every pruned
 * weight's error is spread over the row's later inputs (prune/sparsegpt.ts, prune/recover.ts): the method's
 * output is a mask and updated weights.
 *
 * The updated weights take the path `--recover` gives every method: the method registers `recovers`, so the run
 * records `recover: true` and, once the mask is fixed, recovery walks the layers again with that mask and writes
 * recovered-weights.safetensors, scored for the run's reported perplexities, read by `eval --recovered` and
 * `export --recovered`. That second walk reproduces SparseGPT's update: with the mask given, the column walk
 * makes the same corrections it made while choosing it, on Gram matrices captured the same way (layers before
 * pruned and updated). `--recover` therefore adds nothing on top of SparseGPT (accepted, implied). The masked
 * model without the update is reported as recovery's "before".
 */

import { GenepruneError } from '../../errors.js';
import { RECOVERY_DAMPING, WALK_BLOCK } from '../../prune/recover.js';
import { pruneSequentially } from '../../prune/sequential.js';
import { sparseGptBlock, sparseGptChooser } from '../../prune/sparsegpt.js';
import { calibrationBatches, registerWeightBaseline, type WeightBaseline } from './baselines.js';

export const SPARSEGPT: WeightBaseline = {
  name: 'sparsegpt',
  summary:
    'SparseGPT: per block of 128 inputs each row prunes its lowest w²/[H⁻¹]ᵢᵢ (OBS saliency; N:M per group), and the error is spread over the later inputs; layer by layer (--recover implied: the update is the method)',
  recovers: true,
  description: {
    saliency: 'w_rj² / U_jj², U the upper Cholesky factor of (XᵀX + δI)⁻¹, δ = 0.01 · mean diag(XᵀX)',
    block: WALK_BLOCK,
    unstructured:
      'at the start of each block [j0, j1) of 128 columns, each row prunes its round(s·j1) − round(s·j0) lowest saliencies of the block, from the weights as the walk has updated them (every row ends at round(s·cols))',
    pattern:
      'N:M: when the walk reaches a group of M, the group keeps its N highest saliencies (blocks of a multiple of M)',
    update:
      "each pruned weight's error w_rj / U_jj is subtracted from the row's later inputs along U_j (prune/recover.ts's column walk)",
    order:
      'layer by layer: block l captured with blocks < l pruned and updated; all linears of a block see its input as it arrives',
  },
  async select(input) {
    const list = calibrationBatches(input);
    const L = input.spec.config.numLayers;
    const roles = new Set(input.matrices.map((m) => m.role));
    const choice = { sparsity: input.sparsity, ...(input.pattern ? { pattern: input.pattern } : {}) };
    const result = await pruneSequentially(input.spec, {
      batches: list,
      ...input.engine,
      recover: true,
      damping: input.recovery?.damping ?? RECOVERY_DAMPING,
      // Past the last block with a matrix to prune (--layers) nothing changes.
      until: Math.max(...input.matrices.map((m) => m.layer)) + 1,
      select: (lin) =>
        // Only the matrices asked for (--layers); the others pass through as they are.
        roles.has(lin.role)
          ? { choose: sparseGptChooser(lin.cols, choice), block: sparseGptBlock(choice) }
          : undefined,
      onLayer: (r) => input.onProgress?.(r.layer + 1, L, 'layers'),
    });
    const keeps = input.matrices.map((m) => {
      const keep = result.masks.get(m.role);
      if (!keep) throw new GenepruneError('internal', `sparsegpt chose no mask for ${m.role}`);
      return keep;
    });
    return {
      keeps,
      forwardPasses: result.forwardPasses,
      // Per layer: the calibration reconstruction error of the mask alone and with SparseGPT's update.
      report: {
        layers: result.layers.map((l) => ({
          layer: l.layer,
          maskedError: l.linears.reduce((a, x) => a + (x.maskedError ?? 0), 0),
          updatedError: l.linears.reduce((a, x) => a + (x.recoveredError ?? 0), 0),
        })),
      },
    };
  },
};

registerWeightBaseline(SPARSEGPT);
