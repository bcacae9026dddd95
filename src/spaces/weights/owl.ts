/**
 * OWL, outlier-weighted layerwise sparsity (Yin et al., ICML 2024; `geneprune weights --method owl`): Wanda with a
 * sparsity of its own for every transformer block, lower where the block holds more outlier scores.
 *
 * Definitions (S = --sparsity, blocks l with prunable matrices, n_l = the block's prunable weights, N = Σ n_l):
 *   - *Outlier share* (the paper's layerwise outlier distribution, LOD): D_l = the share of block l's Wanda scores
 *     A_ij = |W_ij| · ‖X_j‖₂, over all its prunable linears together, that are strictly greater than M times their
 *     mean (M = 5, the paper's and its code's LLaMA setting). The input norms are measured on the DENSE model, block
 *     by block (the reference code's first walk prunes nothing), with the sequential walk (prune/sequential.ts)
 *     offered no mask, so each block runs once.
 *   - *Map* (the paper's, as its code computes it): a_l = 2λ · (D_l − min D) / (max D − min D) (all a_l = 0 when every
 *     D_l is equal), then s_l = S − (a_l − ā): the kept shares 1 − s_l span [1 − S − λ', 1 − S + λ''] with width
 *     exactly 2λ (λ = 0.08, the code's LLaMA setting) and more outliers mean less pruning.
 *   - *Mean* — what "the target sparsity" means: geneprune's sparsity is the share of the prunable weights removed,
 *     so ā = Σ n_l a_l / N, the mean weighted by the blocks' sizes, and Σ n_l s_l = S · N. The paper's code takes the
 *     plain mean over layers (its decoders' blocks are all alike), which agrees whenever the blocks have the same
 *     prunable size; an encoder-decoder's decoder blocks are larger (cross-attention), and `--layers` may select
 *     different matrices in different blocks, and there the plain mean would miss S.
 *   - *Bounds*: a block cannot go below 0 % or above 100 %; if the map leaves [0, 1] (S within λ of either end) the
 *     sparsities are clamped and the shift ā is replaced by the t with Σ n_l clamp(S + t − a_l, 0, 1) = S · N
 *     (bisection), so the budget still holds. The paper never meets this (its S ≥ 0.5 and λ ≤ 0.2).
 *   - *Exact budget*: matrix i of block l is given c_i pruned weights, floor(s_l · n_i) plus one for the matrices
 *     with the largest fractional parts (ties: the earlier matrix) until Σ c_i = round(S · N); within a matrix,
 *     every output row loses its floor(c_i / rows) lowest Wanda scores and the c_i mod rows rows whose next score is
 *     lowest lose one more (allocation.ts `allocatedMask`, as alloc does), so each row is at its block's rate
 *     within one weight and the reported sparsity is exactly round(S · N) / N. The reference code prunes
 *     int(cols · s_l) per row instead, which misses S by up to one weight a row.
 *   - *Pruning*: sequential Wanda (prune/sequential.ts), as the reference's second walk: block l's norms are
 *     measured with blocks < l already pruned, its matrices get the masks above. `--recover` works on the mask
 *     afterwards, as for every method. N:M patterns are refused: a pattern fixes every block at 1 − N/M.
 *
 * Cost: L block passes for the outlier shares, 2L − 1 for sequential Wanda (about three forward passes).
 */

import type { TokenBatch } from '../../engine/runner.js';
import { GenepruneError } from '../../errors.js';
import { wandaScores } from '../../masks/select.js';
import { type LinearToPrune, pruneSequentially, type SequentialResult } from '../../prune/sequential.js';
import { allocatedMask, rowOrder } from './allocation.js';
import {
  calibrationBatches,
  registerWeightBaseline,
  type WeightBaseline,
  type WeightBaselineInput,
} from './baselines.js';

/** The paper's outlier threshold M and limit λ in its LLaMA runs (also its code's scripts' defaults). */
export const OWL_DEFAULTS = { outlierThreshold: 5, lambda: 0.08 };

/** D_l: the share of `scores` (one block's, all its linears) strictly greater than threshold × their mean. */
export function outlierShare(scores: ReadonlyArray<ArrayLike<number>>, threshold: number): number {
  let sum = 0;
  let n = 0;
  for (const s of scores) {
    for (let i = 0; i < s.length; i++) sum += s[i];
    n += s.length;
  }
  if (n === 0) throw new GenepruneError('internal', 'owl: a block with no scores');
  const cut = (sum / n) * threshold;
  let above = 0;
  for (const s of scores) for (let i = 0; i < s.length; i++) if (s[i] > cut) above++;
  return above / n;
}

/**
 * Per-block sparsities s_l from the outlier shares D_l (see the module comment): the paper's map into a range of
 * width 2λ, shifted so the size-weighted mean is exactly `sparsity`, clamped to [0, 1] with the shift re-solved.
 */
export function owlSparsities(
  shares: readonly number[],
  sizes: readonly number[],
  sparsity: number,
  lambda: number,
): number[] {
  if (shares.length !== sizes.length || shares.length === 0)
    throw new GenepruneError('internal', `owl: ${shares.length} outlier shares for ${sizes.length} blocks`);
  const lo = Math.min(...shares);
  const hi = Math.max(...shares);
  const a = shares.map((d) => (hi > lo ? ((d - lo) / (hi - lo)) * 2 * lambda : 0));
  const N = sizes.reduce((x, y) => x + y, 0);
  const at = (t: number) => a.map((al) => Math.min(1, Math.max(0, sparsity + t - al)));
  const mean = a.reduce((acc, al, l) => acc + al * sizes[l], 0) / N;
  const direct = a.map((al) => sparsity - (al - mean));
  if (direct.every((s) => s >= 0 && s <= 1)) return direct;
  // Clamped: Σ n_l clamp(S + t − a_l, 0, 1) grows with t; bisect for the t that meets S · N.
  const excess = (t: number) => at(t).reduce((acc, s, l) => acc + s * sizes[l], 0) - sparsity * N;
  let tLo = Math.min(...a) - sparsity - 1;
  let tHi = Math.max(...a) - sparsity + 1;
  for (let k = 0; k < 200; k++) {
    const mid = (tLo + tHi) / 2;
    if (excess(mid) < 0) tLo = mid;
    else tHi = mid;
  }
  return at((tLo + tHi) / 2);
}

/**
 * Whole pruned counts c_i with Σ c_i = budget exactly, each within one of its target x_i (0 ≤ c_i ≤ n_i):
 * floor(x_i), then one more for the largest fractional parts (or one fewer for the smallest, if the floors
 * overshoot), ties: the earlier matrix.
 */
export function countsAtBudget(
  targets: readonly number[],
  sizes: readonly number[],
  budget: number,
): number[] {
  const counts = targets.map((x, i) => Math.min(sizes[i], Math.max(0, Math.floor(x))));
  const frac = targets.map((x, i) => x - counts[i]);
  let missing = budget - counts.reduce((x, y) => x + y, 0);
  const up = targets.map((_, i) => i).sort((i, j) => frac[j] - frac[i] || i - j);
  for (let k = 0; missing > 0 && k < up.length; k++) {
    if (counts[up[k]] < sizes[up[k]]) {
      counts[up[k]]++;
      missing--;
    }
  }
  for (let k = up.length - 1; missing < 0 && k >= 0; k--) {
    if (counts[up[k]] > 0) {
      counts[up[k]]--;
      missing++;
    }
  }
  if (missing !== 0) throw new GenepruneError('internal', `owl: the counts miss their budget by ${missing}`);
  return counts;
}

/** What result.json's methodReport holds: the settings and, per block, its outlier share and sparsity. */
export interface OwlReport {
  outlierThreshold: number;
  lambda: number;
  blocks: Array<{ layer: number; outlierShare: number; sparsity: number; pruned: number; weights: number }>;
}

/**
 * One sequential walk over blocks 0 … until−1 (each of OWL's two walks is one): every linear among the input's
 * matrices is scored by Wanda on its inputs as the walk meets them, and `choose` gets its index in input.matrices
 * with those scores; a keep-mask from it prunes the linear, undefined leaves it as it is.
 */
function wandaWalk(
  input: WeightBaselineInput,
  batches: readonly TokenBatch[],
  until: number,
  choose: (matrix: number, scores: Float32Array, linear: LinearToPrune) => Uint8Array | undefined,
  onLayer: () => void,
): Promise<SequentialResult> {
  const index = new Map(input.matrices.map((m, i) => [m.role, i]));
  return pruneSequentially(input.spec, {
    batches,
    ...input.engine,
    until,
    select: (lin) => {
      const i = index.get(lin.role);
      if (i === undefined) return undefined;
      return choose(i, wandaScores(lin.weight, lin.rows, lin.cols, lin.inputSquaredNorms), lin);
    },
    onLayer,
  });
}

const PATTERN_REFUSAL =
  'OWL sets a sparsity per block, and an N:M pattern fixes every block at 1 − N/M (owl is unstructured only)';

export const OWL: WeightBaseline = {
  name: 'owl',
  summary:
    'Wanda at a sparsity per block from its share of outlier scores (OWL: M 5, λ 0.08; unstructured only)',
  supportsPattern: false,
  patternRefusal: PATTERN_REFUSAL,
  description: {
    ...OWL_DEFAULTS,
    outlierShare:
      'D_l = share of block l’s Wanda scores |W|·‖X_j‖₂ (all its prunable linears) > outlierThreshold × their mean; norms on the dense model',
    sparsity:
      's_l = S − (a_l − ā), a_l = 2λ·(D_l − min D)/(max D − min D), ā weighted by the blocks’ prunable weights; clamped to [0, 1] with the shift re-solved',
    budget:
      'matrix counts floor(s_l·n_i) plus largest remainders to round(S·N); per row floor(c/rows), the rows with the lowest next score one more',
    pruning: 'sequential Wanda: block l’s norms with blocks < l pruned',
  },
  async select(input) {
    if (input.pattern) throw new GenepruneError('flag', PATTERN_REFUSAL, '--pattern');
    const { outlierThreshold, lambda } = OWL_DEFAULTS;
    const list = calibrationBatches(input);
    const blocks = [...new Set(input.matrices.map((m) => m.layer))].sort((x, y) => x - y);
    const until = Math.max(...blocks) + 1;
    // Progress counts both walks' blocks.
    const walked = 2 * until;
    let done = 0;

    // Walk 1, nothing pruned: each block's Wanda scores on the dense model's inputs, reduced to D_l.
    const scoresOf = new Map<number, Float32Array[]>();
    const shareOf = new Map<number, number>();
    const dense = await wandaWalk(
      input,
      list,
      until,
      (i, scores) => {
        const layer = input.matrices[i].layer;
        const own = scoresOf.get(layer) ?? [];
        own.push(scores);
        scoresOf.set(layer, own);
        return undefined;
      },
      () => {
        // Blocks are walked in order; a block's scores are complete once its walk step ends.
        for (const [layer, scores] of scoresOf) shareOf.set(layer, outlierShare(scores, outlierThreshold));
        scoresOf.clear();
        input.onProgress?.(++done, walked, 'layers');
      },
    );

    const sizeOf = (layer: number) =>
      input.matrices.reduce((acc, m) => acc + (m.layer === layer ? m.rows * m.cols : 0), 0);
    const shares = blocks.map((l) => {
      const d = shareOf.get(l);
      if (d === undefined) throw new GenepruneError('internal', `owl: no outlier share for block ${l}`);
      return d;
    });
    const sparsities = owlSparsities(
      shares,
      blocks.map((l) => sizeOf(l)),
      input.sparsity,
      lambda,
    );
    const sparsityOf = new Map(blocks.map((l, k) => [l, sparsities[k]]));
    const sizes = input.matrices.map((m) => m.rows * m.cols);
    const counts = countsAtBudget(
      input.matrices.map((m, i) => sparsityOf.get(m.layer)! * sizes[i]),
      sizes,
      Math.round(input.sparsity * sizes.reduce((x, y) => x + y, 0)),
    );

    // Walk 2: sequential Wanda, each matrix at its count.
    const pruned = await wandaWalk(
      input,
      list,
      until,
      (i, scores, lin) => allocatedMask(rowOrder(scores, lin.rows, lin.cols), counts[i]),
      () => input.onProgress?.(++done, walked, 'layers'),
    );
    const keeps = input.matrices.map((m) => {
      const keep = pruned.masks.get(m.role);
      if (!keep) throw new GenepruneError('internal', `owl chose no mask for ${m.role}`);
      return keep;
    });
    const report: OwlReport = {
      outlierThreshold,
      lambda,
      blocks: blocks.map((l, k) => ({
        layer: l,
        outlierShare: shares[k],
        sparsity: sparsities[k],
        pruned: input.matrices.reduce((acc, m, i) => acc + (m.layer === l ? counts[i] : 0), 0),
        weights: sizeOf(l),
      })),
    };
    return { keeps, forwardPasses: dense.forwardPasses + pruned.forwardPasses, report };
  },
};

registerWeightBaseline(OWL);
