/**
 * What a model costs, counted from its config and tensor shapes alone (nothing is loaded): parameters, the
 * parameters a head removal leaves, and FLOPs per token. The one place these are counted, so the search's
 * cost, export's summary and the benchmarks agree.
 */
import { intermediateOf, type ModelConfig, type ModelSpec, type TensorSource } from './spec.js';

const numel = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

/** Parameters in a set of tensors. */
export function countParameters(tensors: Map<string, TensorSource>): number {
  let n = 0;
  for (const t of tensors.values()) n += numel(t.shape);
  return n;
}

/** Parameters of a model: every tensor it holds. */
export function parameterCount(spec: ModelSpec): number {
  return countParameters(spec.tensors);
}

/**
 * Query and KV heads present in each head layer, in gene order: every layer's self-attention, then (encoder-
 * decoders) each decoder block's cross-attention, whose KV heads are its query heads.
 */
export function headLayerCounts(config: ModelConfig): { query: number[]; kv: number[] } {
  const cross = config.encdec?.crossHeadsPerLayer ?? [];
  return { query: [...config.headsPerLayer, ...cross], kv: [...config.kvHeadsPerLayer, ...cross] };
}

/**
 * Parameters that removing heads takes away: per removed query head its q rows and o columns, per removed KV
 * head its k and v rows (biases included where present). `query` and `kv` are the heads kept per head layer
 * (headLayerCounts' order).
 */
export function removedHeadParameters(config: ModelConfig, query: number[], kv: number[]): number {
  const D = config.hiddenSize;
  const hd = config.headDim;
  const qBias = config.attentionBias ? 1 : 0;
  const present = headLayerCounts(config);
  let removed = 0;
  for (let l = 0; l < present.query.length; l++) {
    const dq = present.query[l] - query[l];
    const dkv = present.kv[l] - kv[l];
    removed += dq * hd * (2 * D + qBias) + dkv * 2 * hd * (D + qBias);
  }
  return removed;
}

/** Per-token attention FLOPs of a config at context length T (multiply-adds; ratios are all that matter). */
export function attentionFlops(c: ModelConfig, T: number): number {
  let f = 0;
  for (let l = 0; l < c.numLayers; l++) {
    const H = c.headsPerLayer[l];
    const KV = c.kvHeadsPerLayer[l];
    f += c.hiddenSize * c.headDim * (2 * H + 2 * KV) + 2 * H * c.headDim * T;
  }
  // Encoder-decoders: each decoder block's cross-attention too (its K/V read the source; T positions counted).
  for (const H of c.encdec?.crossHeadsPerLayer ?? [])
    f += c.hiddenSize * c.headDim * 4 * H + 2 * H * c.headDim * T;
  return f;
}

/**
 * FLOPs per token of a forward over `seq` tokens: 2 per multiply-add in every linear (each layer's MLP at its own
 * width: gate, up and down, or up and down for a plain MLP), plus QKᵀ and PV.
 */
export function forwardFlopsPerToken(spec: ModelSpec, seq: number): number {
  const c = spec.config;
  let flops = 0;
  for (let l = 0; l < c.numLayers; l++) {
    const q = c.headsPerLayer[l] * c.headDim;
    const kv = c.kvHeadsPerLayer[l] * c.headDim;
    const mlpMatrices = c.mlpKind === 'plain' ? 2 : 3;
    flops += 2 * c.hiddenSize * (2 * q + 2 * kv) + 2 * mlpMatrices * c.hiddenSize * intermediateOf(c, l);
    flops += 2 * 2 * seq * q;
  }
  return flops + 2 * c.hiddenSize * c.vocabSize;
}
