/**
 * Random Hugging Face folders for the family tests (test/helpers/gemma.ts, qwen3.ts, phi3.ts, opt.ts, gpt2.ts):
 * tensors drawn from one seeded stream in the order a writer adds them, each value uniform in offset ± scale, and
 * the folder written with its config.json, where a key set to undefined (an `extra` that removes it) is dropped.
 * The LLaMA-shaped writers share one skeleton (writeDecoderFolder) and differ only in what a DecoderFamily says.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { writeHfFolder } from '../../src/checkpoint/hf.js';
import type { GenepruneError } from '../../src/errors.js';
import { loadModelSpec } from '../../src/model/load.js';
import type { ModelSpec, TensorSource } from '../../src/model/spec.js';
import { createRng } from '../../src/util/rng.js';

/** Tensors by Hugging Face name, as written. */
export type HfTensors = Map<string, { shape: number[]; data: Float32Array }>;

/** Adds one random tensor: values offset + scale · U(−1, 1). */
export type AddTensor = (name: string, shape: number[], scale: number, offset?: number) => void;

/** An empty tensor map and the `add` that fills it from the stream of `seed`. */
export function randomHfTensors(seed: number): { tensors: HfTensors; add: AddTensor } {
  const rng = createRng(seed);
  const tensors: HfTensors = new Map();
  const add: AddTensor = (name, shape, scale, offset = 0) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = Float32Array.from({ length: n }, () => offset + (rng.nextFloat() * 2 - 1) * scale);
    tensors.set(name, { shape, data });
  };
  return { tensors, add };
}

/** Writes `config` (its undefined keys deleted) and `tensors` as a Hugging Face folder. */
export async function writeRandomHfFolder(
  dir: string,
  config: Record<string, unknown>,
  tensors: HfTensors,
): Promise<void> {
  for (const [k, v] of Object.entries(config)) if (v === undefined) delete config[k];
  await writeHfFolder(dir, {
    config,
    tensors: [...tensors].map(([name, t]) => ({ name, shape: t.shape, data: t.data })),
  });
}

/** What the LLaMA-shaped writers (gemma.ts, qwen3.ts, phi3.ts) share of a random folder's shape. */
export interface DecoderShape {
  hidden: number;
  layers: number;
  heads: number;
  kvHeads: number;
  inter: number;
  vocab: number;
  /** Physically pruned layouts (written with the per-layer config keys). */
  headsPerLayer?: number[];
  kvHeadsPerLayer?: number[];
  kvHeadOfQuery?: number[][];
  /** A tied head (no lm_head.weight); each family's writer has its own default. */
  tied?: boolean;
}

/** Layer `l`'s query and key/value widths (heads × head_dim) in a shape. */
function layerWidths(s: DecoderShape, l: number, headDim: number): { q: number; kv: number } {
  return {
    q: (s.headsPerLayer?.[l] ?? s.heads) * headDim,
    kv: (s.kvHeadsPerLayer?.[l] ?? s.kvHeads) * headDim,
  };
}

/** The per-layer head keys of a physically pruned LLaMA-shaped folder (none when the shape gives none). */
function perLayerHeadKeys(s: DecoderShape): Record<string, unknown> {
  return {
    ...(s.headsPerLayer
      ? { num_attention_heads_per_layer: s.headsPerLayer, num_key_value_heads_per_layer: s.kvHeadsPerLayer }
      : {}),
    ...(s.kvHeadOfQuery ? { kv_head_of_query_per_layer: s.kvHeadOfQuery } : {}),
  };
}

/**
 * A LLaMA-shaped layer's separate attention projections under `p` (q, k, v [rows, D], o [D, q rows]) and, with
 * `bias`, a bias on each of the four.
 */
export function addAttention(
  add: AddTensor,
  p: string,
  q: number,
  kv: number,
  D: number,
  bias: boolean,
): void {
  add(`${p}.self_attn.q_proj.weight`, [q, D], 0.5);
  add(`${p}.self_attn.k_proj.weight`, [kv, D], 0.5);
  add(`${p}.self_attn.v_proj.weight`, [kv, D], 0.5);
  add(`${p}.self_attn.o_proj.weight`, [D, q], 0.4);
  if (bias) {
    add(`${p}.self_attn.q_proj.bias`, [q], 0.2);
    add(`${p}.self_attn.k_proj.bias`, [kv], 0.2);
    add(`${p}.self_attn.v_proj.bias`, [kv], 0.2);
    add(`${p}.self_attn.o_proj.bias`, [D], 0.2);
  }
}

/** How one LLaMA-shaped family (gemma.ts, qwen3.ts, phi3.ts) lays out its random folder, for writeDecoderFolder. */
export interface DecoderFamily {
  architecture: string;
  modelType: string;
  /** head_dim the layer widths use; written to config.json unless `writeHeadDim` is false. */
  headDim: number;
  writeHeadDim: boolean;
  maxPositions: number;
  rmsNormEps: number;
  /** No lm_head.weight: the head is the embedding. */
  tied: boolean;
  /** Norm weights are drawn around this: 0 where the family scales by 1 + w (Gemma), 1 where it scales by w. */
  normOffset: number;
  /** One layer's tensors after its input norm, under prefix `p`, with query and key/value widths q, kv. */
  layer(add: AddTensor, p: string, q: number, kv: number): void;
  /** The family's own config.json keys, written after rope_theta and before the per-layer head keys. */
  keys: Record<string, unknown>;
}

/**
 * A random LLaMA-shaped folder: embeddings, per layer the input norm then the family's `layer`, the final norm,
 * lm_head unless tied — drawn in that order from `seed`'s stream — and config.json with the keys every family
 * writes, the family's own, the per-layer head keys and `extra` (undefined values drop a key), in that order.
 */
export async function writeDecoderFolder(
  dir: string,
  s: DecoderShape,
  seed: number,
  f: DecoderFamily,
  extra: Record<string, unknown>,
): Promise<{ tensors: HfTensors; config: Record<string, unknown> }> {
  const { tensors, add } = randomHfTensors(seed);
  const D = s.hidden;
  add('model.embed_tokens.weight', [s.vocab, D], 0.5);
  for (let l = 0; l < s.layers; l++) {
    const p = `model.layers.${l}`;
    const { q, kv } = layerWidths(s, l, f.headDim);
    add(`${p}.input_layernorm.weight`, [D], 0.3, f.normOffset);
    f.layer(add, p, q, kv);
  }
  add('model.norm.weight', [D], 0.3, f.normOffset);
  if (!f.tied) add('lm_head.weight', [s.vocab, D], 0.5);
  const config: Record<string, unknown> = {
    architectures: [f.architecture],
    model_type: f.modelType,
    hidden_size: D,
    num_hidden_layers: s.layers,
    num_attention_heads: s.heads,
    num_key_value_heads: s.kvHeads,
    ...(f.writeHeadDim ? { head_dim: f.headDim } : {}),
    intermediate_size: s.inter,
    vocab_size: s.vocab,
    max_position_embeddings: f.maxPositions,
    rms_norm_eps: f.rmsNormEps,
    rope_theta: 10000,
    ...f.keys,
    ...perLayerHeadKeys(s),
    ...extra,
  };
  await writeRandomHfFolder(dir, config, tensors);
  return { tensors, config };
}

/**
 * What the plain references of Gemma and Qwen3 (test/reference/gemma.ts, qwen3.ts) read of a folder their writer
 * wrote from `s`: its sizes, eps 1e-6 and θ 10000 as written, a tied head unless `s.tied` is false, and every tensor
 * by its Hugging Face name.
 */
export function writtenReferenceShape(s: DecoderShape & { headDim: number }, tensors: HfTensors) {
  return {
    hiddenSize: s.hidden,
    numLayers: s.layers,
    headDim: s.headDim,
    headsPerLayer: s.headsPerLayer ?? new Array<number>(s.layers).fill(s.heads),
    kvHeadsPerLayer: s.kvHeadsPerLayer ?? new Array<number>(s.layers).fill(s.kvHeads),
    kvHeadOfQuery: s.kvHeadOfQuery,
    intermediateSize: s.inter,
    vocabSize: s.vocab,
    eps: 1e-6,
    ropeTheta: 10000,
    tieEmbeddings: s.tied !== false,
    get: (name: string) => tensors.get(name)?.data,
  };
}

/** A gated MLP's gate, up [inter, D] and down [D, inter] projections under `p`. */
export function addGatedMlp(add: AddTensor, p: string, inter: number, D: number): void {
  add(`${p}.mlp.gate_proj.weight`, [inter, D], 0.5);
  add(`${p}.mlp.up_proj.weight`, [inter, D], 0.5);
  add(`${p}.mlp.down_proj.weight`, [D, inter], 0.4);
}

/**
 * Asserts that loading the folder `dir` is refused in one line that names its config.json and says `words` (a
 * substring, or a pattern the line matches).
 */
export async function assertConfigRefused(dir: string, words: string | RegExp): Promise<void> {
  await assert.rejects(loadModelSpec(dir), (e: GenepruneError) => {
    const line = e.oneLine();
    if (typeof words === 'string') assert.ok(line.includes(words), line);
    else assert.match(line, words);
    assert.ok(line.startsWith(`${join(dir, 'config.json')}: `) && !line.includes('\n'), line);
    return true;
  });
}

/** A spec → Hugging Face mapping's tensors are exactly the ones the folder was written with: names, shapes, values. */
export async function assertWrittenTensors(
  hfTensors: ReadonlyMap<string, TensorSource>,
  written: HfTensors,
): Promise<void> {
  assert.deepEqual([...hfTensors.keys()].sort(), [...written.keys()].sort());
  for (const [name, t] of written) {
    const out = hfTensors.get(name);
    assert.deepEqual([...(out?.shape ?? [])], t.shape, name);
    assert.deepEqual(await out?.load(), t.data, name);
  }
}

/** The mapping `hf` of `spec`, written to `dir`, loads back to the same config and tensors. */
export async function assertReloadsAs(
  spec: ModelSpec,
  hf: { config: Record<string, unknown>; tensors: Map<string, TensorSource> },
  dir: string,
): Promise<void> {
  await writeHfFolder(dir, hf);
  const again = await loadModelSpec(dir);
  assert.deepEqual(again.config, spec.config);
  for (const [role, t] of spec.tensors) {
    assert.deepEqual(await again.tensors.get(role)?.load(), await t.load(), role);
  }
}
