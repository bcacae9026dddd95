/**
 * Weight masks over the prunable linears of a model: the q/k/v/o projections (and an encoder-decoder's cross
 * q/k/v/o) and the MLP matrices (gate/up/down, or fc/down for a plain MLP) of every block, each `[out, in]` like its checkpoint tensor. Embeddings, norms,
 * biases and the output head are not pruned. The order is layer-major, q k v o gate up down within a layer: it
 * is the order of the mask file's tensors, of the weight genome and of every report.
 *
 * A mask is one bitset per matrix (`bitset.ts`: bit row·in + col, 1 keeps the weight). Sparsity is counted over
 * the prunable weights (what a target sparsity means, as in Wanda and SparseGPT) and over all parameters.
 */
import { GenepruneError } from '../errors.js';
import type { ModelSpec } from '../model/spec.js';
import { type Bitset, countOnes, packBits, unpackBits } from './bitset.js';

/** The prunable matrices of a block, in their order within the layer. */
export const PRUNABLE_KINDS = [
  'attn.q',
  'attn.k',
  'attn.v',
  'attn.o',
  // Encoder-decoders' decoder blocks: the cross-attention, between the self-attention and the MLP as they run.
  'cross.q',
  'cross.k',
  'cross.v',
  'cross.o',
  'mlp.gate',
  'mlp.up',
  'mlp.down',
] as const;

export interface PrunableMatrix {
  /** The spec role, e.g. `layers.0.attn.q.weight`. */
  role: string;
  layer: number;
  /** Output features (rows). */
  rows: number;
  /** Input features (columns). */
  cols: number;
}

/**
 * The prunable matrices a model holds, layer-major. A matrix with no weights (the q of a layer whose heads were
 * all removed) has nothing to prune and is left out.
 */
export function prunableMatrices(spec: ModelSpec): PrunableMatrix[] {
  const out: PrunableMatrix[] = [];
  for (let layer = 0; layer < spec.config.numLayers; layer++) {
    for (const kind of PRUNABLE_KINDS) {
      const role = `layers.${layer}.${kind}.weight`;
      const t = spec.tensors.get(role);
      if (!t) continue;
      if (t.shape.length !== 2) {
        throw new GenepruneError('model', `${role} has shape [${t.shape.join(', ')}], not [out, in]`);
      }
      const [rows, cols] = t.shape;
      if (rows * cols > 0) out.push({ role, layer, rows, cols });
    }
  }
  return out;
}

/** A whole model's weight mask: one bitset per prunable matrix, by role. */
export type WeightMasks = ReadonlyMap<string, Bitset>;

/** Packs one keep-array per matrix (in `matrices` order, 1 = kept) into a weight mask. */
export function weightMasksFromKeeps(
  matrices: readonly PrunableMatrix[],
  keeps: readonly Uint8Array[],
): Map<string, Bitset> {
  if (keeps.length !== matrices.length) {
    throw new GenepruneError('internal', `${keeps.length} keep arrays for ${matrices.length} matrices`);
  }
  return new Map(
    matrices.map((m, i) => {
      if (keeps[i].length !== m.rows * m.cols) {
        throw new GenepruneError(
          'internal',
          `${keeps[i].length} keep values for ${m.role} [${m.rows}, ${m.cols}]`,
        );
      }
      return [m.role, packBits(keeps[i])];
    }),
  );
}

/** The runner's feeds: role → one 0/1 byte per weight (`createRunner(spec, { weightMasks: roles })`). */
export function weightMaskFeeds(masks: WeightMasks): Map<string, Uint8Array> {
  return new Map([...masks].map(([role, bits]) => [role, unpackBits(bits)]));
}

export interface MatrixSparsity {
  role: string;
  layer: number;
  rows: number;
  cols: number;
  weights: number;
  pruned: number;
  sparsity: number;
}

export interface LayerSparsity {
  layer: number;
  /** Prunable weights of the layer. */
  weights: number;
  pruned: number;
  sparsity: number;
}

export interface SparsityReport {
  matrices: MatrixSparsity[];
  layers: LayerSparsity[];
  /** Over the prunable weights: what a target sparsity means. */
  prunable: { weights: number; pruned: number; sparsity: number };
  /** Over every parameter of the model (embeddings, norms and output head included, never pruned). */
  overall: { parameters: number; pruned: number; sparsity: number };
}

/** Sparsity per matrix, per layer, over the prunable weights and over all parameters, from pruned counts. */
export function sparsityReport(
  matrices: readonly PrunableMatrix[],
  prunedOf: (m: PrunableMatrix, index: number) => number,
  totalParameters: number,
): SparsityReport {
  const share = (pruned: number, n: number) => (n === 0 ? 0 : pruned / n);
  const rows = matrices.map((m, i) => {
    const weights = m.rows * m.cols;
    const pruned = prunedOf(m, i);
    return { ...m, weights, pruned, sparsity: share(pruned, weights) };
  });
  const layers = new Map<number, LayerSparsity>();
  for (const r of rows) {
    const l = layers.get(r.layer) ?? { layer: r.layer, weights: 0, pruned: 0, sparsity: 0 };
    l.weights += r.weights;
    l.pruned += r.pruned;
    l.sparsity = share(l.pruned, l.weights);
    layers.set(r.layer, l);
  }
  const weights = rows.reduce((a, r) => a + r.weights, 0);
  const pruned = rows.reduce((a, r) => a + r.pruned, 0);
  return {
    matrices: rows,
    layers: [...layers.values()],
    prunable: { weights, pruned, sparsity: share(pruned, weights) },
    overall: { parameters: totalParameters, pruned, sparsity: share(pruned, totalParameters) },
  };
}

/** The sparsity of a weight mask (pruned = bits set to 0). */
export function maskSparsityReport(
  matrices: readonly PrunableMatrix[],
  masks: WeightMasks,
  totalParameters: number,
): SparsityReport {
  return sparsityReport(matrices, (m) => m.rows * m.cols - countOnes(masks.get(m.role)!), totalParameters);
}
