/**
 * The neutral model description every architecture family maps to. The graph builder, the reference forward
 * and the pruning code read only this, never a checkpoint format.
 *
 * Conventions:
 * - Linear weights keep the PyTorch / Hugging Face layout [out_features, in_features], row-major.
 * - Attention projections are laid out head-major: q rows are [head0 (headDim rows), head1, ...]; k and v rows
 *   likewise over KV heads. Query head h (within a layer) reads KV head `kvGroupOf(h)`.
 * - Rotary embedding uses the Hugging Face half-split layout (pairs (i, i + headDim/2)). Checkpoints in the
 *   interleaved layout (llama2.c: pairs (2i, 2i+1)) are converted on load by permuting q and k rows, exactly
 *   as Hugging Face's own LLaMA conversion does.
 * - Per-layer head counts allow physically pruned models: layer i has `headsPerLayer[i]` query heads and
 *   `kvHeadsPerLayer[i]` KV heads; headDim is shared.
 */
import type { TensorSource } from '../checkpoint/tensor.js';
import type { Provenance } from './identity.js';
import type { RopeScaling } from './rope.js';

/**
 * llama: LLaMA/Mistral/Qwen2/llama2.c; gpt2; gemma: Gemma and Gemma 2; bert: BERT, RoBERTa, DistilBERT;
 * t5: T5 v1.0, T5 v1.1 / Flan-T5, CodeT5 (encoder-decoders); qwen3: Qwen3 (dense); phi3: Phi-3 / Phi-3.5 /
 * Phi-4-mini; opt: OPT.
 */
export type Family = 'llama' | 'gpt2' | 'gemma' | 'bert' | 't5' | 'qwen3' | 'phi3' | 'opt';
/**
 * decoder: causal language model (lm head); encoder: bidirectional with a padding mask (features, classifier);
 * encdec: an encoder and a decoder with cross-attention (T5; see EncDecConfig); or any other kind a descriptor
 * registered in arch/registry.ts serves (what each kind means lives there).
 */
export type ArchKind = 'decoder' | 'encoder' | (string & Record<never, never>);

/** How residual blocks place normalisation: LLaMA/GPT-2 normalise before each block, BERT after. */
export type NormPlacement = 'pre' | 'post';
export type NormKind = 'rms' | 'layer';
export type Activation = 'silu' | 'gelu' | 'gelu_tanh' | 'relu';
/** gated = SwiGLU-style (gate, up, down); plain = fc then proj. */
export type MlpKind = 'gated' | 'plain';
export type PositionKind = 'rope' | 'learned';
/** The pooling activation of a sequence-classification head (BERT/RoBERTa: tanh; DistilBERT: ReLU). */
export type PoolActivation = 'tanh' | 'relu';

/**
 * A sequence-classification head on the first token's final hidden state: h = pool(cls.pool · x + b), then
 * logits = cls.out · h + b (BERT's pooler + classifier, RoBERTa's classifier.dense + out_proj, DistilBERT's
 * pre_classifier + classifier).
 */
export interface ClassifierConfig {
  /** Label names by index (config.json id2label). */
  labels: string[];
  poolActivation: PoolActivation;
}

/**
 * What an encoder-decoder (arch 'encdec', T5) adds. Its blocks are numbered over both stacks: layers
 * 0 … encoderLayers−1 are the encoder's, encoderLayers … numLayers−1 the decoder's (decoder block d is layer
 * encoderLayers + d). `headsPerLayer` / `kvHeadsPerLayer` give every block's self-attention heads (no GQA: equal);
 * cross-attention heads are `crossHeadsPerLayer`, one entry per decoder block. Every block is pre-norm (RMS, no
 * mean, no bias): self-attention, then (decoder) cross-attention over the final encoder output, then the MLP.
 *
 * Attention scores are q·k plus a learned relative-position bias and are NOT divided by √headDim (T5 folds the
 * scale into its initialisation). The bias table of each stack lives in its first block: bucket(j − i) → one value
 * per table column, bidirectional buckets in the encoder, causal in the decoder (T5's `_relative_position_bucket`),
 * and every layer of the stack reads the same table; self-attention query head h of layer l reads column
 * `relColumnOfQuery[l][h]` (absent = column h: a physically pruned stack keeps a table column while any of its
 * layers keeps that head). Cross-attention has no position bias.
 */
export interface EncDecConfig {
  /** Blocks of the encoder (the first of numLayers); the rest are decoder blocks. */
  encoderLayers: number;
  /** Cross-attention query (= KV) heads present in each decoder block (length numLayers − encoderLayers). */
  crossHeadsPerLayer: number[];
  /** relative_attention_num_buckets. */
  relativeBuckets: number;
  /** relative_attention_max_distance. */
  relativeMaxDistance: number;
  /** Columns of each stack's bias table (= heads of the unpruned stack, less columns no layer reads). */
  encoderBiasColumns: number;
  decoderBiasColumns: number;
  /** Per layer (all numLayers), the bias table column of each self-attention query head; absent = identity. */
  relColumnOfQuery?: number[][];
  /** The decoder's first input token (config decoder_start_token_id; T5: the pad id 0). */
  decoderStartTokenId: number;
  /**
   * The final decoder hidden state is multiplied by this before the output head (T5 with tied embeddings:
   * d_model^−½; untied v1.1: 1).
   */
  outputScale: number;
}

export interface ModelConfig {
  family: Family;
  /** Absent = 'decoder'. */
  arch?: ArchKind;
  /** The `model_type` the checkpoint declared (llama, mistral, qwen2, ... or 'llama2c'). */
  modelType: string;
  hiddenSize: number;
  numLayers: number;
  /** Query heads per layer in the unpruned architecture. */
  numHeads: number;
  /** KV heads per layer in the unpruned architecture (== numHeads without GQA). */
  numKvHeads: number;
  headDim: number;
  /** Query heads actually present in each layer (after physical pruning may differ per layer). */
  headsPerLayer: number[];
  /** KV heads actually present in each layer. */
  kvHeadsPerLayer: number[];
  /**
   * For each layer, the KV head each query head reads. Absent = uniform groups (query head h reads
   * kvGroupOf(h)). Physically pruned GQA models may keep query heads unevenly across groups.
   */
  kvHeadOfQuery?: number[][];
  /** MLP width of the unpruned architecture (intermediate neurons per layer). */
  intermediateSize: number;
  /**
   * MLP width actually present in each layer (after structured pruning it may differ per layer; 0 = the layer
   * has no MLP: its block adds nothing to the residual stream, biases included). Absent = intermediateSize in
   * every layer. Read it through `intermediateOf`.
   */
  intermediatePerLayer?: number[];
  vocabSize: number;
  /** Longest context the model was trained for. */
  maxPositions: number;
  normKind: NormKind;
  normPlacement: NormPlacement;
  normEps: number;
  activation: Activation;
  mlpKind: MlpKind;
  positionKind: PositionKind;
  ropeTheta: number;
  /**
   * Partial rotary (Phi-4-mini): only the first rotaryDim dimensions of each head rotate (half-split pairs
   * (j, j + rotaryDim/2) over them, frequencies over rotaryDim); the rest pass through. Absent = headDim.
   */
  rotaryDim?: number;
  /** Rotary scaling from config.json (rope_scaling / rope_parameters); absent = unscaled. See rope.ts. */
  ropeScaling?: RopeScaling;
  /** q, k, v projections carry biases (qwen2, gpt2, bert). */
  attentionBias: boolean;
  /** o projection carries a bias (gpt2, bert). */
  attentionOutBias: boolean;
  /** MLP linears carry biases (gpt2, bert). */
  mlpBias: boolean;
  /** The classifier shares the token embedding matrix. */
  tieEmbeddings: boolean;
  /** Added to every norm weight before it scales (Gemma stores the scale as 1 + w). Absent = 0. */
  normWeightOffset?: number;
  /** Token embeddings are multiplied by this (Gemma: √hidden). Absent = 1. */
  embedScale?: number;
  /** Learned positions: the row of embed.positions that position 0 reads (RoBERTa: pad id + 1 = 2). Absent = 0. */
  positionOffset?: number;
  /** Attention scores are multiplied by this instead of 1/√headDim (Gemma 2: query_pre_attn_scalar^−½). */
  attnScale?: number;
  /** Gemma 2: attention scores soft-capped as cap·tanh(s/cap) before masking and softmax. */
  attnSoftcap?: number;
  /** Gemma 2: output logits soft-capped the same way. */
  finalSoftcap?: number;
  /**
   * Per layer, a sliding attention window: query i sees keys j with i − w < j ≤ i; 0 = global attention.
   * Absent = every layer global.
   */
  slidingWindow?: number[];
  /**
   * Qwen3: each query and key head is RMS-normed over headDim (eps = normEps, weight × normalised; roles
   * layers.{i}.attn.q_norm.weight / k_norm.weight [headDim], shared by the layer's heads) after its projection and
   * before rotary. Absent = no such norm.
   */
  qkNorm?: boolean;
  /** Gemma 2: norms after attention and after the MLP too, before each residual add (post_attn_norm, post_mlp_norm). */
  sandwichNorms?: boolean;
  /** Encoders: token type (segment) embeddings, 0 when the model has none (DistilBERT). */
  typeVocabSize?: number;
  /** Encoders: the padding token id. */
  padTokenId?: number;
  /** A sequence-classification head (encoders). */
  classifier?: ClassifierConfig;
  /** Encoder-decoders (arch 'encdec'): what they add, see EncDecConfig. */
  encdec?: EncDecConfig;
  /** Token ids, where known. */
  bosTokenId?: number;
  eosTokenId?: number;
}

/**
 * Canonical tensor roles. `{i}` is a layer index.
 *  embed.tokens            [vocab, hidden]
 *  embed.positions         [positionOffset + maxPositions, hidden]   (learned positions only)
 *  embed.token_types       [types, hidden]                (bert)
 *  embed.norm.weight/bias  [hidden]                       (bert)
 *  layers.{i}.post_attn_norm.weight, layers.{i}.post_mlp_norm.weight   (sandwichNorms: Gemma 2)
 *  cls.pool.weight [hidden, hidden] .bias, cls.out.weight [labels, hidden] .bias   (classifier)
 *  layers.{i}.attn_norm.weight / .bias                    (pre-norm: before attention; post-norm: after it)
 *  layers.{i}.attn.q.weight [heads*headDim, hidden]   .bias [heads*headDim]
 *  layers.{i}.attn.k.weight [kvHeads*headDim, hidden] .bias
 *  layers.{i}.attn.v.weight [kvHeads*headDim, hidden] .bias
 *  layers.{i}.attn.o.weight [hidden, heads*headDim]   .bias [hidden]
 *  layers.{i}.attn.q_norm.weight, layers.{i}.attn.k_norm.weight  [headDim]   (qkNorm: Qwen3)
 *  layers.{i}.mlp_norm.weight / .bias
 *  layers.{i}.mlp.gate.weight [inter, hidden]             (gated)
 *  layers.{i}.mlp.up.weight   [inter, hidden]   .bias     (gated: up; plain: fc)
 *  layers.{i}.mlp.down.weight [hidden, inter]   .bias
 *  final_norm.weight / .bias  [hidden]
 *  lm_head.weight             [vocab, hidden]             (absent when tieEmbeddings)
 * Encoder-decoders (EncDecConfig; T5 has no biases): every layer i has attn_norm, attn.q/k/v/o, mlp_norm and
 * mlp.up/down (gated: mlp.gate too) as above; decoder layers add
 *  layers.{i}.cross_norm.weight  [hidden]                 (before cross-attention)
 *  layers.{i}.cross.q.weight [crossHeads*headDim, hidden], .k, .v (same shape: they read the encoder output),
 *  layers.{i}.cross.o.weight [hidden, crossHeads*headDim]
 *  rel_bias.encoder.weight    [relativeBuckets, encoderBiasColumns]   (T5's block.0 relative_attention_bias)
 *  rel_bias.decoder.weight    [relativeBuckets, decoderBiasColumns]
 *  encoder_norm.weight        [hidden]                    (the encoder's final norm; final_norm is the decoder's)
 *  embed.tokens is shared by both stacks (T5's shared.weight); lm_head.weight when untied.
 */
// Tensors are the checkpoint's (read lazily from their files); the spec names them by role.
export { loadTensorInto, memoryTensor, type TensorSource } from '../checkpoint/tensor.js';

export type TensorRole = string;

export interface ModelSpec {
  config: ModelConfig;
  /** Role → tensor. */
  tensors: Map<TensorRole, TensorSource>;
  /** Where the model came from (a path), for reports and error messages. */
  source: string;
  /** For a pruned export read back: which model it was pruned from and with which mask. */
  provenance?: Provenance;
}

/** Which KV head query head `h` of a layer reads, for a layer with `heads` query and `kvHeads` KV heads. */
export function kvGroupOf(h: number, heads: number, kvHeads: number): number {
  return Math.floor(h / (heads / kvHeads));
}

/** The KV head each query head of layer `layer` reads. */
export function kvMapOfLayer(config: ModelConfig, layer: number): number[] {
  const explicit = config.kvHeadOfQuery?.[layer];
  if (explicit) return explicit;
  const heads = config.headsPerLayer[layer];
  const kvHeads = config.kvHeadsPerLayer[layer];
  return Array.from({ length: heads }, (_, h) => kvGroupOf(h, heads, kvHeads));
}

/** An encoder-decoder's own fields; any other model is refused (an internal error: callers check the kind). */
export function encdecOf(config: ModelConfig): EncDecConfig {
  if (!config.encdec) {
    throw new Error(`a ${config.modelType} model is not an encoder-decoder (it has no encdec fields)`);
  }
  return config.encdec;
}

/** The relative-bias table column each self-attention query head of layer `layer` reads (encoder-decoders). */
export function relColumnsOfLayer(config: ModelConfig, layer: number): number[] {
  const explicit = encdecOf(config).relColumnOfQuery?.[layer];
  if (explicit) return explicit;
  return Array.from({ length: config.headsPerLayer[layer] }, (_, h) => h);
}

/** The MLP width present in layer `layer` (intermediatePerLayer when given, else intermediateSize). */
export function intermediateOf(config: ModelConfig, layer: number): number {
  return config.intermediatePerLayer?.[layer] ?? config.intermediateSize;
}
