/**
 * Small random OPT checkpoints written as Hugging Face folders (OPTForCausalLM names: `model.decoder.*`, or the
 * older uploads' bare `decoder.*`), with embed_positions holding OPT's two extra leading rows.
 */
import { type AddTensor, type HfTensors, randomHfTensors, writeRandomHfFolder } from './hffolder.js';

export interface OptShape {
  hidden: number;
  heads: number;
  layers: number;
  ffn: number;
  vocab: number;
  /** max_position_embeddings (the table has two rows more). */
  positions: number;
  /** Heads kept per layer (num_attention_heads_per_layer), for physically pruned folders. */
  kept?: number[];
  /** enable_bias (default true). */
  bias?: boolean;
  /** Name the base model's modules `decoder.*` (facebook/opt-125m's files) instead of `model.decoder.*`. */
  barePrefix?: boolean;
  /** Untied: write lm_head.weight and tie_word_embeddings false. */
  untied?: boolean;
}

/** A random OPTForCausalLM folder; returns the tensors by the HF name written. */
export async function writeOpt(
  dir: string,
  s: OptShape,
  seed: number,
  extra: Record<string, unknown> = {},
): Promise<HfTensors> {
  const hd = s.hidden / s.heads;
  const bias = s.bias ?? true;
  const prefix = s.barePrefix ? 'decoder.' : 'model.decoder.';
  const { tensors, add: addNamed } = randomHfTensors(seed);
  const add: AddTensor = (name, ...rest) =>
    addNamed(name.startsWith('lm_head') ? name : prefix + name, ...rest);
  add('embed_tokens.weight', [s.vocab, s.hidden], 1);
  add('embed_positions.weight', [s.positions + 2, s.hidden], 0.5);
  for (let l = 0; l < s.layers; l++) {
    const W = (s.kept?.[l] ?? s.heads) * hd;
    const p = `layers.${l}`;
    add(`${p}.self_attn_layer_norm.weight`, [s.hidden], 0.3, 1);
    add(`${p}.self_attn_layer_norm.bias`, [s.hidden], 0.2);
    for (const x of ['q', 'k', 'v']) {
      add(`${p}.self_attn.${x}_proj.weight`, [W, s.hidden], 0.6);
      if (bias) add(`${p}.self_attn.${x}_proj.bias`, [W], 0.3);
    }
    add(`${p}.self_attn.out_proj.weight`, [s.hidden, W], 0.4);
    if (bias) add(`${p}.self_attn.out_proj.bias`, [s.hidden], 0.2);
    add(`${p}.final_layer_norm.weight`, [s.hidden], 0.3, 1);
    add(`${p}.final_layer_norm.bias`, [s.hidden], 0.2);
    add(`${p}.fc1.weight`, [s.ffn, s.hidden], 0.5);
    if (bias) add(`${p}.fc1.bias`, [s.ffn], 0.2);
    add(`${p}.fc2.weight`, [s.hidden, s.ffn], 0.4);
    if (bias) add(`${p}.fc2.bias`, [s.hidden], 0.2);
  }
  add('final_layer_norm.weight', [s.hidden], 0.3, 1);
  add('final_layer_norm.bias', [s.hidden], 0.2);
  if (s.untied) add('lm_head.weight', [s.vocab, s.hidden], 0.8);
  const pruned = s.kept?.some((k) => k !== s.heads) === true;
  const config = {
    architectures: ['OPTForCausalLM'],
    model_type: 'opt',
    hidden_size: s.hidden,
    word_embed_proj_dim: s.hidden,
    num_hidden_layers: s.layers,
    num_attention_heads: s.heads,
    ffn_dim: s.ffn,
    max_position_embeddings: s.positions,
    vocab_size: s.vocab,
    activation_function: 'relu',
    do_layer_norm_before: true,
    enable_bias: bias,
    layer_norm_elementwise_affine: true,
    tie_word_embeddings: !s.untied,
    pad_token_id: 1,
    bos_token_id: 2,
    eos_token_id: 2,
    ...(pruned ? { num_attention_heads_per_layer: s.kept, num_key_value_heads_per_layer: s.kept } : {}),
    ...extra,
  };
  await writeRandomHfFolder(dir, config, tensors);
  return tensors;
}
