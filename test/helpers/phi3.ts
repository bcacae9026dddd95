/**
 * Small random Phi-3 checkpoints written as Hugging Face folders with transformers' names (Phi3ForCausalLM:
 * fused self_attn.qkv_proj and mlp.gate_up_proj), for the loader, graph, search and export tests.
 */
import { createRng } from '../../src/util/rng.js';
import { type DecoderShape, type HfTensors, writeDecoderFolder } from './hffolder.js';

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
export function writePhi3(dir: string, s: Phi3Shape, seed: number, extra: Record<string, unknown> = {}) {
  const D = s.hidden;
  return writeDecoderFolder(
    dir,
    s,
    seed,
    {
      architecture: 'Phi3ForCausalLM',
      modelType: 'phi3',
      headDim: phi3HeadDim(s),
      writeHeadDim: s.headDim !== undefined,
      maxPositions: s.maxPositions,
      rmsNormEps: 1e-5,
      tied: s.tied === true,
      // RMSNorm weights around 1, as trained ones are.
      normOffset: 1,
      layer(add, p, q, kv) {
        add(`${p}.self_attn.qkv_proj.weight`, [q + 2 * kv, D], 0.5);
        add(`${p}.self_attn.o_proj.weight`, [D, q], 0.4);
        add(`${p}.post_attention_layernorm.weight`, [D], 0.3, 1);
        add(`${p}.mlp.gate_up_proj.weight`, [2 * s.inter, D], 0.5);
        add(`${p}.mlp.down_proj.weight`, [D, s.inter], 0.4);
      },
      keys: {
        hidden_act: 'silu',
        tie_word_embeddings: s.tied === true,
        bos_token_id: 1,
        eos_token_id: 2,
        pad_token_id: 0,
      },
    },
    extra,
  );
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
