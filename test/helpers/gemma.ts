/** Small random Gemma / Gemma 2 checkpoints written as Hugging Face folders (transformers' names). */
import {
  addAttention,
  addGatedMlp,
  type DecoderShape,
  type HfTensors,
  writeDecoderFolder,
} from './hffolder.js';

/** `tied` defaults to true (Gemma's default). */
export interface GemmaShape extends DecoderShape {
  type: 'gemma' | 'gemma2';
  headDim: number;
  attentionBias?: boolean;
}

export type GemmaTensors = HfTensors;

/** A random Gemma / Gemma 2 folder with HF names; returns its tensors and config. */
export function writeGemma(dir: string, s: GemmaShape, seed: number, extra: Record<string, unknown> = {}) {
  const D = s.hidden;
  return writeDecoderFolder(
    dir,
    s,
    seed,
    {
      architecture: s.type === 'gemma2' ? 'Gemma2ForCausalLM' : 'GemmaForCausalLM',
      modelType: s.type,
      headDim: s.headDim,
      writeHeadDim: true,
      maxPositions: 32,
      rmsNormEps: 1e-6,
      tied: s.tied !== false,
      // Norm weights around 0: Gemma scales by 1 + w.
      normOffset: 0,
      layer(add, p, q, kv) {
        addAttention(add, p, q, kv, D, s.attentionBias === true);
        add(`${p}.post_attention_layernorm.weight`, [D], 0.3);
        if (s.type === 'gemma2') {
          add(`${p}.pre_feedforward_layernorm.weight`, [D], 0.3);
          add(`${p}.post_feedforward_layernorm.weight`, [D], 0.3);
        }
        addGatedMlp(add, p, s.inter, D);
      },
      keys: {
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
      },
    },
    extra,
  );
}
