/** Small random Gemma / Gemma 2 checkpoints written as Hugging Face folders (transformers' names). */
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

/** `tied` defaults to true (Gemma's default). */
export interface GemmaShape extends DecoderShape {
  type: 'gemma' | 'gemma2';
  headDim: number;
  attentionBias?: boolean;
}

export type GemmaTensors = HfTensors;

/** A random Gemma / Gemma 2 folder with HF names; returns its tensors and config. */
export async function writeGemma(
  dir: string,
  s: GemmaShape,
  seed: number,
  extra: Record<string, unknown> = {},
) {
  const { tensors, add } = randomHfTensors(seed);
  const D = s.hidden;
  add('model.embed_tokens.weight', [s.vocab, D], 0.5);
  for (let l = 0; l < s.layers; l++) {
    const p = `model.layers.${l}`;
    const { q, kv } = layerWidths(s, l, s.headDim);
    // Norm weights around 0: Gemma scales by 1 + w.
    add(`${p}.input_layernorm.weight`, [D], 0.3);
    addAttention(add, p, q, kv, D, s.attentionBias === true);
    add(`${p}.post_attention_layernorm.weight`, [D], 0.3);
    if (s.type === 'gemma2') {
      add(`${p}.pre_feedforward_layernorm.weight`, [D], 0.3);
      add(`${p}.post_feedforward_layernorm.weight`, [D], 0.3);
    }
    addGatedMlp(add, p, s.inter, D);
  }
  add('model.norm.weight', [D], 0.3);
  if (s.tied === false) add('lm_head.weight', [s.vocab, D], 0.5);
  const config: Record<string, unknown> = {
    architectures: [s.type === 'gemma2' ? 'Gemma2ForCausalLM' : 'GemmaForCausalLM'],
    model_type: s.type,
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
    attention_bias: s.attentionBias ?? false,
    ...(s.tied === false ? { tie_word_embeddings: false } : {}),
    ...(s.type === 'gemma'
      ? { hidden_act: 'gelu_pytorch_tanh' }
      : {
          hidden_activation: 'gelu_pytorch_tanh',
          query_pre_attn_scalar: 12,
          sliding_window: 3,
          attn_logit_softcapping: 1.5,
          final_logit_softcapping: 2.5,
        }),
    ...perLayerHeadKeys(s),
    ...extra,
  };
  await writeRandomHfFolder(dir, config, tensors);
  return { tensors, config };
}
