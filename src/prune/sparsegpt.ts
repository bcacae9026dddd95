/**
 * SparseGPT's mask selection (Frantar & Alistarh, 2023) for one linear: the mask is not chosen before recovery's
 * column walk (recover.ts) but inside it, from the weights as the walk has already corrected them. The update
 * is the walk itself — each pruned weight's error w_rj / U_jj pushed onto the row's later inputs along U_j, with U
 * the upper Cholesky factor of (H + δI)⁻¹ — so this module only says which weights the walk prunes, by the
 * optimal-brain-surgeon saliency w_rj² / U_jj² (the error that zeroing w_rj alone adds, given the inputs not yet
 * walked):
 * - unstructured: at the start of each block of `block` columns (128, the paper's B_s), each row prunes its
 *   lowest-saliency weights of the block; the count is round(s·j1) − round(s·j0) for block [j0, j1), so every
 *   row ends at exactly round(s·cols) pruned, the per-row budget Wanda's rows have (masks/select.ts). The
 *   paper's code ranks a block's saliencies over all rows together; per row is decided here, so that every row
 *   of every method sits at the same sparsity.
 * - N:M: when the walk reaches the first column of each group of M, the group keeps its N highest saliencies,
 *   read from the weights with the corrections of the row's earlier columns (as the paper's code does); blocks
 *   are then a multiple of M so that no group straddles two.
 * Ties: the earlier column is pruned first (as masks/select.ts breaks them).
 */

import type { Gemm } from '../engine/gemm.js';
import type { NmPattern } from '../masks/select.js';
import {
  type GramFactor,
  type RecoverResult,
  recoverLinear,
  WALK_BLOCK,
  type WalkChooser,
} from './recover.js';

export interface SparseGptChoice {
  /** Share of each row to prune, in [0, 1) (ignored with a pattern). */
  sparsity: number;
  pattern?: NmPattern;
  /** Columns per block of the walk (default 128, the paper's); rounded down to a multiple of M with a pattern. */
  block?: number;
}

/** The walk's block for a choice: `block` (default 128), a multiple of M with a pattern (at least M). */
export function sparseGptBlock(choice: SparseGptChoice): number {
  const block = choice.block ?? WALK_BLOCK;
  if (!(Number.isSafeInteger(block) && block >= 1)) throw new Error(`SparseGPT block ${block}`);
  const m = choice.pattern?.m;
  return m ? Math.max(m, Math.floor(block / m) * m) : block;
}

/** The chooser the column walk calls (recover.ts WalkChooser) for a [rows, cols] linear. */
export function sparseGptChooser(cols: number, choice: SparseGptChoice): WalkChooser {
  const pattern = choice.pattern;
  if (pattern && cols % pattern.m !== 0)
    throw new Error(`a row of ${cols} weights does not divide into groups of ${pattern.m}`);
  const s = choice.sparsity;
  if (!pattern && !(s >= 0 && s < 1)) throw new Error(`sparsity ${s} is outside [0, 1)`);
  const every = pattern ? pattern.m : sparseGptBlock(choice);
  // Scratch reused across calls: the walk calls this rows · cols / every times.
  const saliencyOf = new Float64Array(every);
  const order = new Int32Array(every);
  return {
    every,
    choose(r, j, end, w, uDiag, keep) {
      const row = r * cols;
      const n = end - j;
      const drop = pattern ? pattern.m - pattern.n : Math.round(s * end) - Math.round(s * j);
      const saliency = saliencyOf.subarray(0, n);
      const idx = order.subarray(0, n);
      for (let k = 0; k < n; k++) {
        const v = w[row + j + k];
        const d = uDiag[j + k];
        saliency[k] = (v * v) / (d * d);
        idx[k] = k;
      }
      idx.sort((a, b) => saliency[a] - saliency[b] || a - b);
      for (let k = 0; k < n; k++) keep[row + j + idx[k]] = k < drop ? 0 : 1;
    },
  };
}

export interface SparseGptResult extends RecoverResult {
  /** The chosen mask, [rows, cols] (1 kept). */
  keep: Uint8Array;
}

/**
 * SparseGPT on one linear [rows, cols] from its inputs' Gram matrix XᵀX: the mask and the updated weights (zero
 * where pruned). Recovery's safeguard applies: if the update would not beat plain masking on the calibration
 * reconstruction error, the masked weights come back (`recovered: false`; the mask is the walk's all the same).
 */
export async function sparseGptLinear(
  weight: Float32Array,
  gram: Float64Array,
  rows: number,
  cols: number,
  choice: SparseGptChoice,
  opts: { damping?: number; factor?: GramFactor; gemm?: Gemm } = {},
): Promise<SparseGptResult> {
  const keep = new Uint8Array(rows * cols);
  const r = await recoverLinear(weight, keep, gram, rows, cols, {
    ...opts,
    block: sparseGptBlock(choice),
    choose: sparseGptChooser(cols, choice),
  });
  return { ...r, keep };
}
