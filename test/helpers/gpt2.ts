/** Small random GPT-2 checkpoints written as Hugging Face folders (GPT2LMHeadModel names and layouts). */
import { type AddTensor, randomHfTensors, writeRandomHfFolder } from './hffolder.js';

export interface Gpt2Shape {
  embd: number;
  heads: number;
  layers: number;
  inner: number;
  vocab: number;
  positions: number;
  /** Heads kept per layer (pruned_heads removes the rest, the last ones). */
  kept?: number[];
}

/** A random GPT2LMHeadModel folder; returns the tensors by HF name. */
export async function writeGpt2(
  dir: string,
  s: Gpt2Shape,
  seed: number,
  extra: Record<string, unknown> = {},
) {
  const hd = s.embd / s.heads;
  const { tensors, add: addNamed } = randomHfTensors(seed);
  const add: AddTensor = (name, ...rest) => addNamed(`transformer.${name}`, ...rest);
  add('wte.weight', [s.vocab, s.embd], 1);
  add('wpe.weight', [s.positions, s.embd], 0.5);
  const pruned: Record<string, number[]> = {};
  for (let l = 0; l < s.layers; l++) {
    const H = s.kept?.[l] ?? s.heads;
    if (H < s.heads) pruned[String(l)] = Array.from({ length: s.heads - H }, (_, i) => H + i);
    const W = H * hd;
    add(`h.${l}.ln_1.weight`, [s.embd], 0.3, 1);
    add(`h.${l}.ln_1.bias`, [s.embd], 0.2);
    add(`h.${l}.attn.c_attn.weight`, [s.embd, 3 * W], 0.6);
    add(`h.${l}.attn.c_attn.bias`, [3 * W], 0.2);
    add(`h.${l}.attn.c_proj.weight`, [W, s.embd], 0.4);
    add(`h.${l}.attn.c_proj.bias`, [s.embd], 0.2);
    add(`h.${l}.ln_2.weight`, [s.embd], 0.3, 1);
    add(`h.${l}.ln_2.bias`, [s.embd], 0.2);
    add(`h.${l}.mlp.c_fc.weight`, [s.embd, s.inner], 0.5);
    add(`h.${l}.mlp.c_fc.bias`, [s.inner], 0.2);
    add(`h.${l}.mlp.c_proj.weight`, [s.inner, s.embd], 0.4);
    add(`h.${l}.mlp.c_proj.bias`, [s.embd], 0.2);
  }
  add('ln_f.weight', [s.embd], 0.3, 1);
  add('ln_f.bias', [s.embd], 0.2);
  const config = {
    architectures: ['GPT2LMHeadModel'],
    model_type: 'gpt2',
    n_embd: s.embd,
    n_head: s.heads,
    n_layer: s.layers,
    n_inner: s.inner,
    n_positions: s.positions,
    vocab_size: s.vocab,
    layer_norm_epsilon: 1e-5,
    activation_function: 'gelu_new',
    ...(Object.keys(pruned).length ? { pruned_heads: pruned } : {}),
    ...extra,
  };
  await writeRandomHfFolder(dir, config, tensors);
  return tensors;
}

/**
 * A byte-level BPE tokenizer.json with no merges: one token per byte (GPT-2's byte → printable character map:
 * bytes 33–126, 161–172 and 174–255 are themselves, the other 68 take U+0100 onwards in byte order), plus
 * <|endoftext|> as id 256. Any text encodes, one id per UTF-8 byte; 257 ids in all.
 */
export function byteLevelTokenizerJson(): Record<string, unknown> {
  const printable = (b: number) => (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
  const vocab: Record<string, number> = {};
  let next = 0;
  for (let b = 0; b < 256; b++) {
    const ch = printable(b) ? String.fromCharCode(b) : String.fromCharCode(256 + next++);
    vocab[ch] = b;
  }
  vocab['<|endoftext|>'] = 256;
  return {
    version: '1.0',
    added_tokens: [
      {
        id: 256,
        content: '<|endoftext|>',
        single_word: false,
        lstrip: false,
        rstrip: false,
        normalized: false,
        special: true,
      },
    ],
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: null,
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: '',
      end_of_word_suffix: '',
      fuse_unk: false,
      byte_fallback: false,
      vocab,
      merges: [],
    },
  };
}
