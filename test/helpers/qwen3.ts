/** Small random Qwen3 checkpoints written as Hugging Face folders (Qwen3ForCausalLM names). */
import {
  addAttention,
  addGatedMlp,
  type DecoderShape,
  type HfTensors,
  writeDecoderFolder,
} from './hffolder.js';

/** `tied` defaults to true (Qwen3-0.6B ties its head); false writes lm_head.weight. */
export interface Qwen3Shape extends DecoderShape {
  /** Written explicitly: Qwen3's head_dim need not be hidden / heads. */
  headDim: number;
  attentionBias?: boolean;
}

export type Qwen3Tensors = HfTensors;

/** A random Qwen3 folder with HF names; returns its tensors and config. `extra` overrides config keys. */
export function writeQwen3(dir: string, s: Qwen3Shape, seed: number, extra: Record<string, unknown> = {}) {
  const D = s.hidden;
  const tied = s.tied !== false;
  return writeDecoderFolder(
    dir,
    s,
    seed,
    {
      architecture: 'Qwen3ForCausalLM',
      modelType: 'qwen3',
      headDim: s.headDim,
      writeHeadDim: true,
      maxPositions: 32,
      rmsNormEps: 1e-6,
      tied,
      // Norm weights around 1 (plain RMSNorm scales by w), spread enough that a missing norm shows.
      normOffset: 1,
      layer(add, p, q, kv) {
        addAttention(add, p, q, kv, D, s.attentionBias === true);
        add(`${p}.self_attn.q_norm.weight`, [s.headDim], 0.5, 1);
        add(`${p}.self_attn.k_norm.weight`, [s.headDim], 0.5, 1);
        add(`${p}.post_attention_layernorm.weight`, [D], 0.3, 1);
        addGatedMlp(add, p, s.inter, D);
      },
      keys: {
        hidden_act: 'silu',
        attention_bias: s.attentionBias ?? false,
        tie_word_embeddings: tied,
        use_sliding_window: false,
      },
    },
    extra,
  );
}
