/**
 * Small random Phi-3 checkpoints written as Hugging Face folders with transformers' names (Phi3ForCausalLM:
 * fused self_attn.qkv_proj and mlp.gate_up_proj), for the loader, graph, search and export tests.
 */
import { createRng } from '../../src/util/rng.js';
import {
  type DecoderShape,
  type HfTensors,
  layerWidths,
  perLayerHeadKeys,
  randomHfTensors,
  writeRandomHfFolder,
} from './hffolder.js';

/** `tied` defaults to false (Phi-3's default). */
export interface Phi3Shape extends DecoderShape {
  /** Written as head_dim when given (else hidden / heads, transformers' default). */
  headDim?: number;
  maxPositions: number;
}

export type Phi3Tensors = HfTensors;

/** head_dim of a shape. */
export const phi3HeadDim = (s: Phi3Shape): number => s.headDim ?? s.hidden / s.heads;

/** A random Phi-3 folder with HF names; `extra` is merged into config.json (undefined values drop the key). */
export async function writePhi3(
  dir: string,
  s: Phi3Shape,
  seed: number,
  extra: Record<string, unknown> = {},
) {
  const { tensors, add } = randomHfTensors(seed);
  const D = s.hidden;
  const hd = phi3HeadDim(s);
  add('model.embed_tokens.weight', [s.vocab, D], 0.5);
  for (let l = 0; l < s.layers; l++) {
    const p = `model.layers.${l}`;
    const { q, kv } = layerWidths(s, l, hd);
    // RMSNorm weights around 1, as trained ones are.
    add(`${p}.input_layernorm.weight`, [D], 0.3, 1);
    add(`${p}.self_attn.qkv_proj.weight`, [q + 2 * kv, D], 0.5);
    add(`${p}.self_attn.o_proj.weight`, [D, q], 0.4);
    add(`${p}.post_attention_layernorm.weight`, [D], 0.3, 1);
    add(`${p}.mlp.gate_up_proj.weight`, [2 * s.inter, D], 0.5);
    add(`${p}.mlp.down_proj.weight`, [D, s.inter], 0.4);
  }
  add('model.norm.weight', [D], 0.3, 1);
  if (!s.tied) add('lm_head.weight', [s.vocab, D], 0.5);
  const config: Record<string, unknown> = {
    architectures: ['Phi3ForCausalLM'],
    model_type: 'phi3',
    hidden_size: D,
    num_hidden_layers: s.layers,
    num_attention_heads: s.heads,
    num_key_value_heads: s.kvHeads,
    ...(s.headDim !== undefined ? { head_dim: s.headDim } : {}),
    intermediate_size: s.inter,
    vocab_size: s.vocab,
    max_position_embeddings: s.maxPositions,
    rms_norm_eps: 1e-5,
    rope_theta: 10000,
    hidden_act: 'silu',
    tie_word_embeddings: s.tied === true,
    bos_token_id: 1,
    eos_token_id: 2,
    pad_token_id: 0,
    ...perLayerHeadKeys(s),
    ...extra,
  };
  await writeRandomHfFolder(dir, config, tensors);
  return { tensors, config };
}

/** A longrope rope_scaling block for `rotaryDim` with distinct short and long factors (seeded). */
export function longropeScaling(
  rotaryDim: number,
  seed: number,
  fields: Record<string, unknown> = {},
): Record<string, unknown> {
  const rng = createRng(seed);
  const list = (lo: number, hi: number) =>
    Array.from({ length: rotaryDim / 2 }, () => lo + rng.nextFloat() * (hi - lo));
  return { type: 'longrope', short_factor: list(1, 1.5), long_factor: list(2, 6), ...fields };
}
