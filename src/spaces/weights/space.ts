/**
 * The weight search space: one gene per weight of the prunable linears (masks/weights.ts: q/k/v/o and the MLP
 * matrices of every block, layer-major), 1 keeps the weight, in each matrix's `[out, in]` layout. A genome is one
 * packed bitset over all of them, matrix after matrix (the genes of matrix i start at `offsets[i]`), written in
 * logs as base64 and cached under a sha256 key (search/codec.ts), since a model has millions of genes. Sparsity
 * is the share of prunable weights pruned; the cost is the parameters kept (pruned weights count as removed).
 * The engine feeds are the runner's boolean weight-mask inputs, so every candidate runs in one session.
 *
 * A space over a subset of the matrices (`roles`) is the building block of searches that work on part of the
 * model at a time (one layer, one matrix); this task needs only the whole model.
 */
import { type Bitset, copyBits, countOnes, createBitset, unpackRange } from '../../masks/bitset.js';
import {
  maskSparsityReport,
  type PrunableMatrix,
  prunableMatrices,
  type SparsityReport,
  type WeightMasks,
} from '../../masks/weights.js';
import { parameterCount } from '../../model/cost.js';
import type { ModelSpec } from '../../model/spec.js';
import { packedCodec } from '../../search/codec.js';
import type { SearchSpace } from '../../search/space.js';

export interface WeightSpace extends SearchSpace<Bitset> {
  readonly matrices: readonly PrunableMatrix[];
  /** First gene of each matrix, plus the gene count at the end. */
  readonly offsets: readonly number[];
  readonly weightRoles: readonly string[];
  /** The genome of per-matrix masks (every matrix of the space needed). */
  join(masks: WeightMasks): Bitset;
  /** Per-matrix masks of a genome. */
  split(g: Bitset): Map<string, Bitset>;
  /** Sparsity per matrix, per layer, over the prunable weights and over all parameters. */
  report(g: Bitset): SparsityReport;
}

export function createWeightSpace(spec: ModelSpec, opts: { roles?: readonly string[] } = {}): WeightSpace {
  const all = prunableMatrices(spec);
  const matrices = opts.roles ? all.filter((m) => opts.roles!.includes(m.role)) : all;
  const offsets = [0];
  for (const m of matrices) offsets.push(offsets[offsets.length - 1] + m.rows * m.cols);
  const genes = offsets[matrices.length];
  const totalParameters = parameterCount(spec);
  const at = new Map(matrices.map((m, i) => [m.role, i]));
  const sparsity = (g: Bitset) => (genes === 0 ? 0 : 1 - countOnes(g) / genes);
  const split = (g: Bitset) =>
    new Map(
      matrices.map((m, i) => {
        const bits = createBitset(m.rows * m.cols);
        copyBits(g, offsets[i], bits, 0, bits.length);
        return [m.role, bits];
      }),
    );
  return {
    ...packedCodec(genes),
    unit: 'weights',
    genes,
    totalParameters,
    matrices,
    offsets,
    weightRoles: matrices.map((m) => m.role),
    full: () => createBitset(genes, 1),
    isFull: (g) => countOnes(g) === genes,
    sparsity,
    keptParameters: (g) => totalParameters - (genes - countOnes(g)),
    masks: (g) => ({
      weightMasks: new Map(matrices.map((m, i) => [m.role, unpackRange(g, offsets[i], m.rows * m.cols)])),
    }),
    join(masks) {
      const g = createBitset(genes);
      for (const [role, bits] of masks) {
        const i = at.get(role);
        if (i === undefined) continue;
        copyBits(bits, 0, g, offsets[i], matrices[i].rows * matrices[i].cols);
      }
      for (const m of matrices)
        if (!masks.has(m.role)) throw new Error(`weight space: no mask for ${m.role}`);
      return g;
    },
    split,
    report: (g) => maskSparsityReport(matrices, split(g), totalParameters),
  };
}
