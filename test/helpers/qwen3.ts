/** Small random Qwen3 checkpoints written as Hugging Face folders (Qwen3ForCausalLM names). */
import {
  addAttention,
  addGatedMlp,
  type DecoderShape,
  type HfTensors,
  layerWidths,
  perLayerHeadKeys,
  randomHfTensors,
  writeRandomHfFolder,
} from './hffolder.js';

/** `tied` defaults to true (Qwen3-0.6B ties its head); false writes lm_head.weight. */
export interface Qwen3Shape extends DecoderShape {
  /** Written explicitly: Qwen3's head_dim need not be hidden / heads. */
  headDim: number;
  attentionBias?: boolean;
}

export type Qwen3Tensors = HfTensors;

/** A random Qwen3 folder with HF names; returns its tensors and config. `extra` overrides config keys. */
export async function writeQwen3(
  dir: string,
  s: Qwen3Shape,
  seed: number,
  extra: Record<string, unknown> = {},
) {
  const { tensors, add } = randomHfTensors(seed);
  const D = s.hidden;
  const tied = s.tied !== false;
  add('model.embed_tokens.weight', [s.vocab, D], 0.5);
  for (let l = 0; l < s.layers; l++) {
    const p = `model.layers.${l}`;
    const { q, kv } = layerWidths(s, l, s.headDim);
    // Norm weights around 1 (plain RMSNorm scales by w), spread enough that a missing norm shows.
    add(`${p}.input_layernorm.weight`, [D], 0.3, 1);
    addAttention(add, p, q, kv, D, s.attentionBias === true);
    add(`${p}.self_attn.q_norm.weight`, [s.headDim], 0.5, 1);
    add(`${p}.self_attn.k_norm.weight`, [s.headDim], 0.5, 1);
    add(`${p}.post_attention_layernorm.weight`, [D], 0.3, 1);
    addGatedMlp(add, p, s.inter, D);
  }
  add('model.norm.weight', [D], 0.3, 1);
  if (!tied) add('lm_head.weight', [s.vocab, D], 0.5);
  const config: Record<string, unknown> = {
    architectures: ['Qwen3ForCausalLM'],
    model_type: 'qwen3',
    hidden_size: D,
    num_hidden_layers: s.layers,
    num_attention_heads: s.heads,
    num_key_value_heads: s.kvHeads,
    head_dim: s.headDim,
    intermediate_size: s.inter,
    vocab_size: s.vocab,
    max_position_embeddings: 32,
    rms_norm_eps: 1e-6,
    rope_theta: 10000,
    hidden_act: 'silu',
    attention_bias: s.attentionBias ?? false,
    tie_word_embeddings: tied,
    use_sliding_window: false,
    ...perLayerHeadKeys(s),
    ...extra,
  };
  await writeRandomHfFolder(dir, config, tensors);
  return { tensors, config };
}
