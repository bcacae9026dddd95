/**
 * The LLaMA family (Hugging Face model_type llama, mistral, qwen2; also llama2.c checkpoints) ↔ ModelSpec.
 * All share one shape: pre-RMSNorm, rotary attention with optional GQA, gated MLP. They differ in which
 * linears carry biases, in config defaults, in sliding attention windows (mistral, qwen2), and (llama2.c) in
 * the rotary pair layout.
 */
import { join } from 'node:path';
import type { HfFolder } from '../checkpoint/hf.js';
import { type Llama2cFile, type Llama2cParams, writeLlama2cLegacy } from '../checkpoint/llama2c.js';
import { fileError, GenepruneError } from '../errors.js';
import { bindHfTensors, sameShape, shapeText } from './bind.js';
import { type Provenance, provenanceProblem } from './identity.js';
import { ropeScalingText, ropeSettingsFromHf } from './rope.js';
import {
  type Activation,
  intermediateOf,
  kvGroupOf,
  type ModelConfig,
  type ModelSpec,
  type TensorSource,
} from './spec.js';

export const LLAMA_MODEL_TYPES = ['llama', 'mistral', 'qwen2'] as const;
export type LlamaModelType = (typeof LLAMA_MODEL_TYPES)[number];

/** transformers' defaults where a config.json leaves a field out. */
const DEFAULT_MAX_POSITIONS: Record<LlamaModelType, number> = {
  llama: 2048,
  mistral: 4096 * 32,
  qwen2: 32768,
};

const HF_ACTIVATIONS: Record<string, Activation> = {
  silu: 'silu',
  swish: 'silu',
  gelu: 'gelu',
  gelu_pytorch_tanh: 'gelu_tanh',
  gelu_new: 'gelu_tanh',
  relu: 'relu',
};
const ACTIVATION_TO_HF: Record<Activation, string> = {
  silu: 'silu',
  gelu: 'gelu',
  gelu_tanh: 'gelu_pytorch_tanh',
  relu: 'relu',
};

/** Which linears carry biases in each model type, given llama's `attention_bias` / `mlp_bias` flags. */
export function llamaBiasFlags(
  modelType: string,
  attentionBias: boolean,
  mlpBias: boolean,
): Pick<ModelConfig, 'attentionBias' | 'attentionOutBias' | 'mlpBias'> {
  if (modelType === 'qwen2') return { attentionBias: true, attentionOutBias: false, mlpBias: false };
  if (modelType === 'mistral' || modelType === 'llama2c') {
    return { attentionBias: false, attentionOutBias: false, mlpBias: false };
  }
  // HF LlamaAttention puts `attention_bias` on all four projections, LlamaMLP `mlp_bias` on all three.
  return { attentionBias, attentionOutBias: attentionBias, mlpBias };
}

// ---------------------------------------------------------------------------------------------------------
// config.json → ModelConfig

export function llamaConfigFromHf(json: Record<string, unknown>, configPath: string): ModelConfig {
  const fail = (msg: string) => fileError(configPath, msg);
  const modelType = json.model_type;
  if (typeof modelType !== 'string') throw fail('no "model_type" string');
  if (!(LLAMA_MODEL_TYPES as readonly string[]).includes(modelType)) {
    throw fail(`model_type "${modelType}" is not supported (supported: ${LLAMA_MODEL_TYPES.join(', ')})`);
  }
  const type = modelType as LlamaModelType;
  const present = (key: string) => json[key] !== undefined && json[key] !== null;
  const int = (key: string, fallback?: number, min = 1): number => {
    if (!present(key)) {
      if (fallback === undefined) throw fail(`"${key}" is missing`);
      return fallback;
    }
    const v = json[key];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) {
      throw fail(`"${key}" must be an integer ≥ ${min}, got ${JSON.stringify(v)}`);
    }
    return v;
  };
  const positive = (key: string, fallback: number): number => {
    if (!present(key)) return fallback;
    const v = json[key];
    if (typeof v !== 'number' || !(v > 0) || !Number.isFinite(v)) {
      throw fail(`"${key}" must be a positive number, got ${JSON.stringify(v)}`);
    }
    return v;
  };
  const bool = (key: string, fallback: boolean): boolean => {
    if (!present(key)) return fallback;
    if (typeof json[key] !== 'boolean')
      throw fail(`"${key}" must be true or false, got ${JSON.stringify(json[key])}`);
    return json[key] as boolean;
  };

  const hiddenSize = int('hidden_size');
  const numLayers = int('num_hidden_layers');
  const numHeads = int('num_attention_heads');
  const numKvHeads = int('num_key_value_heads', numHeads);
  if (numHeads % numKvHeads !== 0) {
    throw fail(`num_attention_heads ${numHeads} is not a multiple of num_key_value_heads ${numKvHeads}`);
  }
  if (!present('head_dim') && hiddenSize % numHeads !== 0) {
    throw fail(
      `hidden_size ${hiddenSize} is not a multiple of num_attention_heads ${numHeads} and head_dim is unset`,
    );
  }
  const headDim = int('head_dim', hiddenSize / numHeads);
  if (headDim % 2 !== 0) throw fail(`head_dim ${headDim} is odd (rotary embedding needs pairs)`);

  // Newer transformers nest rotary settings in rope_parameters; older ones use rope_theta + rope_scaling.
  const maxPositions = int('max_position_embeddings', DEFAULT_MAX_POSITIONS[type]);
  const rope = ropeSettingsFromHf(json, maxPositions, fail);

  const actName = present('hidden_act') ? json.hidden_act : 'silu';
  const activation = typeof actName === 'string' ? HF_ACTIVATIONS[actName] : undefined;
  if (!activation) {
    throw fail(
      `hidden_act ${JSON.stringify(actName)} is not supported (supported: ${Object.keys(HF_ACTIVATIONS).join(', ')})`,
    );
  }

  const headsPerLayer = perLayerCounts(json, 'num_attention_heads_per_layer', numLayers, numHeads, fail);
  const kvHeadsPerLayer = perLayerCounts(json, 'num_key_value_heads_per_layer', numLayers, numKvHeads, fail);
  if (present('num_attention_heads_per_layer') !== present('num_key_value_heads_per_layer')) {
    throw fail('num_attention_heads_per_layer and num_key_value_heads_per_layer must be given together');
  }
  const kvHeadOfQuery = kvMaps(json.kv_head_of_query_per_layer, headsPerLayer, kvHeadsPerLayer, fail);
  const intermediateSize = int('intermediate_size');
  const intermediatePerLayer = checkIntermediatePerLayer(json, numLayers, intermediateSize, fail);

  const config: ModelConfig = {
    family: 'llama',
    modelType: type,
    hiddenSize,
    numLayers,
    numHeads,
    numKvHeads,
    headDim,
    headsPerLayer,
    kvHeadsPerLayer,
    intermediateSize,
    ...(intermediatePerLayer ? { intermediatePerLayer } : {}),
    vocabSize: int('vocab_size'),
    maxPositions,
    normKind: 'rms',
    normPlacement: 'pre',
    normEps: positive('rms_norm_eps', 1e-6),
    activation,
    mlpKind: 'gated',
    positionKind: 'rope',
    ropeTheta: rope.theta,
    ...(rope.scaling ? { ropeScaling: rope.scaling } : {}),
    ...llamaBiasFlags(type, bool('attention_bias', false), bool('mlp_bias', false)),
    tieEmbeddings: bool('tie_word_embeddings', false),
  };
  if (kvHeadOfQuery) config.kvHeadOfQuery = kvHeadOfQuery;
  const windows = slidingWindows(type, json, numLayers, fail);
  // Only a window that exists is recorded: global layers keep the fused attention kernels.
  if (windows.some((w) => w > 0)) config.slidingWindow = windows;
  const bos = tokenId(json.bos_token_id);
  const eos = tokenId(json.eos_token_id);
  if (bos !== undefined) config.bosTokenId = bos;
  if (eos !== undefined) config.eosTokenId = eos;
  return config;
}

/** transformers' defaults for the sliding-window keys a config.json leaves out. */
const DEFAULT_SLIDING_WINDOW = 4096;
const DEFAULT_MAX_WINDOW_LAYERS = 28;
const SLIDING = 'sliding_attention';
const FULL = 'full_attention';

/**
 * Each layer's attention window (0 = global), as transformers applies config.json's keys. Mistral: every layer
 * slides by `sliding_window` (4096 when the key is absent, none when it is null). Qwen2: only with
 * `use_sliding_window` true, and then the layers `layer_types` names `sliding_attention`, or without that list
 * the layers from `max_window_layers` (default 28) on. LLaMA has no window.
 */
function slidingWindows(
  type: LlamaModelType,
  json: Record<string, unknown>,
  numLayers: number,
  fail: (msg: string) => GenepruneError,
): number[] {
  const none = new Array<number>(numLayers).fill(0);
  if (type === 'llama') return none;
  const window = (): number => {
    if (!('sliding_window' in json)) return DEFAULT_SLIDING_WINDOW;
    const v = json.sliding_window;
    if (v === null) return 0;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1) {
      throw fail(`"sliding_window" must be an integer ≥ 1 or null, got ${JSON.stringify(v)}`);
    }
    return v;
  };
  if (type === 'mistral') return none.fill(window());
  const types = json.layer_types;
  if (types !== undefined && types !== null) {
    if (
      !Array.isArray(types) ||
      types.length !== numLayers ||
      types.some((t) => t !== SLIDING && t !== FULL)
    ) {
      throw fail(`"layer_types" must list ${numLayers} of "${SLIDING}" / "${FULL}", one per layer`);
    }
  }
  const use = json.use_sliding_window;
  if (use !== undefined && use !== null && typeof use !== 'boolean') {
    throw fail(`"use_sliding_window" must be true or false, got ${JSON.stringify(use)}`);
  }
  if (use !== true) {
    // transformers drops the window then, yet would still build a sliding mask for a layer marked sliding.
    if (Array.isArray(types) && types.includes(SLIDING)) {
      throw fail(`"layer_types" marks sliding layers but "use_sliding_window" is not true`);
    }
    return none;
  }
  const w = window();
  if (Array.isArray(types)) return types.map((t) => (t === SLIDING ? w : 0));
  const from = json.max_window_layers ?? DEFAULT_MAX_WINDOW_LAYERS;
  if (typeof from !== 'number' || !Number.isSafeInteger(from) || from < 0) {
    throw fail(`"max_window_layers" must be an integer ≥ 0, got ${JSON.stringify(from)}`);
  }
  return none.map((_, l) => (l >= from ? w : 0));
}

export function perLayerCounts(
  json: Record<string, unknown>,
  key: string,
  numLayers: number,
  max: number,
  fail: (msg: string) => Error,
): number[] {
  const v = json[key];
  if (v === undefined || v === null) return Array(numLayers).fill(max);
  if (!Array.isArray(v) || v.length !== numLayers)
    throw fail(`"${key}" must be an array of ${numLayers} counts`);
  for (const n of v) {
    if (!Number.isInteger(n) || n < 0 || n > max)
      throw fail(`"${key}" holds ${JSON.stringify(n)}, not in 0..${max}`);
  }
  return [...v];
}

/** The key a compact export names each layer's MLP width under (python/modeling_geneprune.py reads it). */
export const INTERMEDIATE_PER_LAYER = 'intermediate_size_per_layer';

/**
 * Reads config.json's `intermediate_size_per_layer` (what structured pruning's exports write): one MLP width per
 * layer, each an integer in 0 … `intermediate` (0 = the layer has no MLP). Returns the widths for
 * ModelConfig.intermediatePerLayer, or undefined when the key is absent or every layer has the full width (so a
 * config with uniform widths loads exactly as one without the key). Anything else is refused in one line.
 */
export function checkIntermediatePerLayer(
  json: Record<string, unknown>,
  numLayers: number,
  intermediate: number,
  fail: (msg: string) => Error,
): number[] | undefined {
  const key = INTERMEDIATE_PER_LAYER;
  const v = json[key];
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v) || v.length !== numLayers)
    throw fail(`"${key}" must be an array of ${numLayers} sizes, one per layer`);
  const bad = v.findIndex((n) => !Number.isInteger(n) || n < 0 || n > intermediate);
  if (bad >= 0) {
    throw fail(
      `"${key}" gives layer ${bad} ${JSON.stringify(v[bad])} MLP units: each must be an integer in 0..${intermediate} (intermediate_size)`,
    );
  }
  return v.every((n) => n === intermediate) ? undefined : [...(v as number[])];
}

/** Each layer's MLP width (what `intermediate_size_per_layer` holds). */
export function intermediateWidths(c: ModelConfig): number[] {
  return Array.from({ length: c.numLayers }, (_, l) => intermediateOf(c, l));
}

/** Validates per-layer query→KV maps, or checks the uniform grouping is possible when there are none. */
export function kvMaps(
  v: unknown,
  heads: number[],
  kvHeads: number[],
  fail: (msg: string) => Error,
): number[][] | undefined {
  const key = 'kv_head_of_query_per_layer';
  if (v === undefined || v === null) {
    heads.forEach((h, l) => {
      if ((h === 0) !== (kvHeads[l] === 0) || (kvHeads[l] > 0 && h % kvHeads[l] !== 0)) {
        throw fail(`layer ${l} has ${h} query heads and ${kvHeads[l]} KV heads: uneven groups need "${key}"`);
      }
    });
    return undefined;
  }
  if (!Array.isArray(v) || v.length !== heads.length) throw fail(`"${key}" must hold one array per layer`);
  return v.map((m, l) => {
    if (!Array.isArray(m) || m.length !== heads[l])
      throw fail(`"${key}"[${l}] must list ${heads[l]} KV head indices`);
    for (const k of m) {
      if (!Number.isInteger(k) || k < 0 || k >= kvHeads[l]) {
        throw fail(
          `"${key}"[${l}] holds ${JSON.stringify(k)}, not a KV head of layer ${l} (0..${kvHeads[l] - 1})`,
        );
      }
    }
    return [...m];
  });
}

function tokenId(v: unknown): number | undefined {
  // eos_token_id may be a list (several stop tokens); the first is the canonical one.
  const id = Array.isArray(v) ? v[0] : v;
  return Number.isInteger(id) && (id as number) >= 0 ? (id as number) : undefined;
}

// ---------------------------------------------------------------------------------------------------------
// roles, shapes and Hugging Face names

/** Every role a LLaMA-family model with `config` has, in a stable order, with its shape. */
export function llamaRoleShapes(config: ModelConfig): Array<[string, number[]]> {
  const { hiddenSize: D, vocabSize: V, headDim: hd } = config;
  const out: Array<[string, number[]]> = [['embed.tokens', [V, D]]];
  for (let l = 0; l < config.numLayers; l++) {
    const p = `layers.${l}`;
    // The layer's own MLP width (0: zero-row gate/up, zero-column down, like a head-less layer's q/k/v/o).
    const I = intermediateOf(config, l);
    const q = config.headsPerLayer[l] * hd;
    const kv = config.kvHeadsPerLayer[l] * hd;
    out.push([`${p}.attn_norm.weight`, [D]]);
    for (const [name, rows] of [
      ['q', q],
      ['k', kv],
      ['v', kv],
    ] as const) {
      out.push([`${p}.attn.${name}.weight`, [rows, D]]);
      if (config.attentionBias) out.push([`${p}.attn.${name}.bias`, [rows]]);
    }
    out.push([`${p}.attn.o.weight`, [D, q]]);
    if (config.attentionOutBias) out.push([`${p}.attn.o.bias`, [D]]);
    out.push([`${p}.mlp_norm.weight`, [D]]);
    for (const [name, shape, bias] of [
      ['gate', [I, D], I],
      ['up', [I, D], I],
      ['down', [D, I], D],
    ] as const) {
      out.push([`${p}.mlp.${name}.weight`, [...shape]]);
      if (config.mlpBias) out.push([`${p}.mlp.${name}.bias`, [bias]]);
    }
  }
  out.push(['final_norm.weight', [D]]);
  if (!config.tieEmbeddings) out.push(['lm_head.weight', [V, D]]);
  return out;
}

const ROLE_TO_HF: Array<[RegExp, string]> = [
  [/^embed\.tokens$/, 'model.embed_tokens.weight'],
  [/^layers\.(\d+)\.attn_norm\.weight$/, 'model.layers.$1.input_layernorm.weight'],
  [/^layers\.(\d+)\.attn\.([qkvo])\.(weight|bias)$/, 'model.layers.$1.self_attn.$2_proj.$3'],
  [/^layers\.(\d+)\.mlp_norm\.weight$/, 'model.layers.$1.post_attention_layernorm.weight'],
  [/^layers\.(\d+)\.mlp\.(gate|up|down)\.(weight|bias)$/, 'model.layers.$1.mlp.$2_proj.$3'],
  [/^final_norm\.weight$/, 'model.norm.weight'],
  [/^lm_head\.weight$/, 'lm_head.weight'],
];

/** The Hugging Face tensor name of a LLaMA-family role. */
export function hfNameOfRole(role: string): string {
  for (const [re, name] of ROLE_TO_HF) if (re.test(role)) return role.replace(re, name);
  throw new GenepruneError('internal', `no Hugging Face name for role ${role}`);
}

// ---------------------------------------------------------------------------------------------------------
// Hugging Face folder → spec

export function llamaSpecFromHf(folder: HfFolder): ModelSpec {
  const configPath = join(folder.dir, 'config.json');
  const config = llamaConfigFromHf(folder.config, configPath);
  const why =
    folder.config.tie_word_embeddings === false
      ? 'config.json sets tie_word_embeddings false'
      : 'config.json does not set tie_word_embeddings (default false)';
  const tensors = bindHfTensors(
    folder,
    llamaRoleShapes(config).map(([role, shape]) => ({ role, name: hfNameOfRole(role), hfShape: shape })),
    {
      // Old checkpoints store the rotary frequencies (recomputed here); tied models may still carry lm_head.
      ignorable: (name) =>
        /\.rotary_emb\.inv_freq$/.test(name) || (name === 'lm_head.weight' && config.tieEmbeddings),
      what: `${config.modelType} model`,
      missingHead: `tensor lm_head.weight is missing and ${why}`,
    },
  );
  const provenance = provenanceOfFolder(folder, configPath);
  return { config, tensors, source: folder.dir, ...(provenance ? { provenance } : {}) };
}

/** The safetensors metadata key and config.json key a pruned export's provenance is written under. */
export const PROVENANCE_METADATA_KEY = 'geneprune.provenance';
export const PROVENANCE_CONFIG_KEY = 'geneprune';

/**
 * A pruned export's provenance: the weights' own record first (it travels with model.safetensors), else
 * config.json's (a transformers.js-only export has no safetensors).
 */
export function provenanceOfFolder(folder: HfFolder, configPath: string): Provenance | undefined {
  const fromWeights = folder.metadata[PROVENANCE_METADATA_KEY];
  let where = folder.weightsPath;
  let value: unknown;
  if (fromWeights !== undefined) {
    try {
      value = JSON.parse(fromWeights);
    } catch {
      throw fileError(where, `__metadata__ "${PROVENANCE_METADATA_KEY}" is not valid JSON`);
    }
  } else {
    value = folder.config[PROVENANCE_CONFIG_KEY];
    where = configPath;
    if (value === undefined || value === null) return undefined;
  }
  const problem = provenanceProblem(value);
  if (problem) throw fileError(where, problem);
  // Every export carries a record; one with no pruning step says only that geneprune wrote the folder.
  return (value as Provenance).lineage.length > 0 ? (value as Provenance) : undefined;
}

// ---------------------------------------------------------------------------------------------------------
// rotary layout: llama2.c interleaves pairs (2i, 2i+1); the spec (HF) splits halves (i, i + headDim/2)

/** Reorders the rows of each head from interleaved to half-split: new row j ← 2j, headDim/2 + j ← 2j + 1. */
export function interleavedToHalfSplit(data: Float32Array, cols: number, headDim: number): Float32Array {
  return permuteHeadRows(data, cols, headDim, false);
}

/** The inverse of interleavedToHalfSplit. */
export function halfSplitToInterleaved(data: Float32Array, cols: number, headDim: number): Float32Array {
  return permuteHeadRows(data, cols, headDim, true);
}

function permuteHeadRows(data: Float32Array, cols: number, headDim: number, inverse: boolean): Float32Array {
  const rows = data.length / cols;
  if (!Number.isInteger(rows) || rows % headDim !== 0 || headDim % 2 !== 0) {
    throw new GenepruneError(
      'internal',
      `cannot permute ${data.length} values as rows of ${cols} in heads of ${headDim}`,
    );
  }
  const out = new Float32Array(data.length);
  const half = headDim / 2;
  for (let base = 0; base < rows; base += headDim) {
    for (let j = 0; j < half; j++) {
      for (const [halfSplit, interleaved] of [
        [j, 2 * j],
        [half + j, 2 * j + 1],
      ]) {
        const [to, from] = inverse ? [interleaved, halfSplit] : [halfSplit, interleaved];
        out.set(data.subarray((base + from) * cols, (base + from + 1) * cols), (base + to) * cols);
      }
    }
  }
  return out;
}

function permutedSource(src: TensorSource, headDim: number, inverse: boolean): TensorSource {
  const cols = src.shape[1];
  return {
    shape: src.shape,
    dtype: src.dtype,
    load: async () => permuteHeadRows(await src.load(), cols, headDim, inverse),
  };
}

// ---------------------------------------------------------------------------------------------------------
// llama2.c ↔ spec

/** llama2.c's fixed settings (run.c hard-codes them). */
const LLAMA2C_EPS = 1e-5;
const LLAMA2C_THETA = 10000;

export function llamaSpecFromLlama2c(file: Llama2cFile): ModelSpec {
  const p = file.params;
  const headDim = p.dim / p.nHeads;
  const config: ModelConfig = {
    family: 'llama',
    modelType: 'llama2c',
    hiddenSize: p.dim,
    numLayers: p.nLayers,
    numHeads: p.nHeads,
    numKvHeads: p.nKvHeads,
    headDim,
    headsPerLayer: Array(p.nLayers).fill(p.nHeads),
    kvHeadsPerLayer: Array(p.nLayers).fill(p.nKvHeads),
    intermediateSize: p.hiddenDim,
    vocabSize: p.vocabSize,
    maxPositions: p.seqLen,
    normKind: 'rms',
    normPlacement: 'pre',
    normEps: LLAMA2C_EPS,
    activation: 'silu',
    mlpKind: 'gated',
    positionKind: 'rope',
    ropeTheta: LLAMA2C_THETA,
    attentionBias: false,
    attentionOutBias: false,
    mlpBias: false,
    tieEmbeddings: p.sharedClassifier,
    bosTokenId: 1,
    eosTokenId: 2,
  };
  const t = (name: string): TensorSource => file.tensors.get(name)!;
  const tensors = new Map<string, TensorSource>([['embed.tokens', t('token_embedding_table')]]);
  for (let l = 0; l < p.nLayers; l++) {
    const r = `layers.${l}`;
    tensors.set(`${r}.attn_norm.weight`, t(`rms_att_weight.${l}`));
    tensors.set(`${r}.attn.q.weight`, permutedSource(t(`wq.${l}`), headDim, false));
    tensors.set(`${r}.attn.k.weight`, permutedSource(t(`wk.${l}`), headDim, false));
    tensors.set(`${r}.attn.v.weight`, t(`wv.${l}`));
    tensors.set(`${r}.attn.o.weight`, t(`wo.${l}`));
    tensors.set(`${r}.mlp_norm.weight`, t(`rms_ffn_weight.${l}`));
    // llama2.c: w2(silu(w1 x) * w3 x)
    tensors.set(`${r}.mlp.gate.weight`, t(`w1.${l}`));
    tensors.set(`${r}.mlp.up.weight`, t(`w3.${l}`));
    tensors.set(`${r}.mlp.down.weight`, t(`w2.${l}`));
  }
  tensors.set('final_norm.weight', t('rms_final_weight'));
  if (!p.sharedClassifier) tensors.set('lm_head.weight', t('wcls'));
  return { config, tensors, source: file.path };
}

function modelError(spec: ModelSpec, message: string): GenepruneError {
  return new GenepruneError('model', message, spec.source);
}

/** The spec's tensors checked against the shapes its config implies. */
function checkedTensors(spec: ModelSpec): Array<[string, TensorSource]> {
  if (spec.config.family !== 'llama')
    throw modelError(spec, `not a LLaMA-family model (family ${spec.config.family})`);
  return llamaRoleShapes(spec.config).map(([role, shape]) => {
    const t = spec.tensors.get(role);
    if (!t) throw modelError(spec, `tensor ${role} is missing from the model`);
    if (!sameShape(t.shape, shape)) {
      throw modelError(
        spec,
        `tensor ${role} has shape ${shapeText(t.shape)}, the config implies ${shapeText(shape)}`,
      );
    }
    return [role, t];
  });
}

/** Writes a spec as a legacy llama2.c checkpoint (undoing the rotary permutation); fails if it cannot say it. */
export async function writeLlama2cFromSpec(path: string, spec: ModelSpec): Promise<void> {
  const c = spec.config;
  const problems: string[] = [];
  if (c.normKind !== 'rms' || c.normPlacement !== 'pre') problems.push('norms are not pre-RMSNorm');
  if (c.activation !== 'silu' || c.mlpKind !== 'gated') problems.push('the MLP is not SwiGLU');
  if (c.positionKind !== 'rope') problems.push('positions are not rotary');
  if (c.attentionBias || c.attentionOutBias || c.mlpBias) problems.push('linears carry biases');
  if (c.normEps !== LLAMA2C_EPS) problems.push(`norm eps is ${c.normEps}, llama2.c fixes 1e-5`);
  if (c.ropeTheta !== LLAMA2C_THETA) problems.push(`rope theta is ${c.ropeTheta}, llama2.c fixes 10000`);
  if (c.ropeScaling) problems.push(`rotary scaling ${ropeScalingText(c.ropeScaling)}, llama2.c has none`);
  if (c.numHeads * c.headDim !== c.hiddenSize) problems.push('heads × head_dim differs from the hidden size');
  if (c.headsPerLayer.some((h) => h !== c.numHeads) || c.kvHeadsPerLayer.some((k) => k !== c.numKvHeads)) {
    problems.push('layers have different head counts');
  }
  if (c.intermediatePerLayer?.some((w) => w !== c.intermediateSize))
    problems.push('layers have different MLP widths');
  const uniformMaps = c.kvHeadOfQuery?.every((m) =>
    m.every((k, h) => k === kvGroupOf(h, c.numHeads, c.numKvHeads)),
  );
  if (c.kvHeadOfQuery && !uniformMaps) problems.push('query heads share KV heads unevenly');
  if (problems.length > 0) {
    throw fileError(path, `cannot write as llama2.c: ${problems.join('; ')}`);
  }
  const roles = new Map(checkedTensors(spec));
  const r = (role: string) => roles.get(role)!;
  const out = new Map<string, TensorSource>([['token_embedding_table', r('embed.tokens')]]);
  for (let l = 0; l < c.numLayers; l++) {
    const p = `layers.${l}`;
    out.set(`rms_att_weight.${l}`, r(`${p}.attn_norm.weight`));
    out.set(`wq.${l}`, permutedSource(r(`${p}.attn.q.weight`), c.headDim, true));
    out.set(`wk.${l}`, permutedSource(r(`${p}.attn.k.weight`), c.headDim, true));
    out.set(`wv.${l}`, r(`${p}.attn.v.weight`));
    out.set(`wo.${l}`, r(`${p}.attn.o.weight`));
    out.set(`rms_ffn_weight.${l}`, r(`${p}.mlp_norm.weight`));
    out.set(`w1.${l}`, r(`${p}.mlp.gate.weight`));
    out.set(`w2.${l}`, r(`${p}.mlp.down.weight`));
    out.set(`w3.${l}`, r(`${p}.mlp.up.weight`));
  }
  out.set('rms_final_weight', r('final_norm.weight'));
  if (!c.tieEmbeddings) out.set('wcls', r('lm_head.weight'));
  const params: Llama2cParams = {
    dim: c.hiddenSize,
    hiddenDim: c.intermediateSize,
    nLayers: c.numLayers,
    nHeads: c.numHeads,
    nKvHeads: c.numKvHeads,
    vocabSize: c.vocabSize,
    seqLen: c.maxPositions,
    sharedClassifier: c.tieEmbeddings,
  };
  await writeLlama2cLegacy(path, params, out);
}

// ---------------------------------------------------------------------------------------------------------
// spec → Hugging Face

/**
 * The config.json keys every rotary decoder written here shares (LLaMA family, Gemma): sizes, head counts, rotary
 * and norm settings, the tied head, BOS/EOS, and for physically pruned models our per-layer head keys
 * (`num_attention_heads_per_layer`, `num_key_value_heads_per_layer`, `kv_head_of_query_per_layer`, and with them
 * `intermediate_size_per_layer`), which the loaders read back, stock transformers ignores, and the classes of
 * python/modeling_geneprune.py build each layer from.
 */
export function rotaryDecoderConfig(c: ModelConfig): Record<string, unknown> {
  const config: Record<string, unknown> = {
    hidden_size: c.hiddenSize,
    intermediate_size: c.intermediateSize,
    num_hidden_layers: c.numLayers,
    num_attention_heads: c.numHeads,
    num_key_value_heads: c.numKvHeads,
    head_dim: c.headDim,
    max_position_embeddings: c.maxPositions,
    vocab_size: c.vocabSize,
    rms_norm_eps: c.normEps,
    rope_theta: c.ropeTheta,
    // The scaling goes back under the key it came from, exactly as read.
    rope_scaling: c.ropeScaling?.source.key === 'rope_scaling' ? c.ropeScaling.source.value : null,
    ...(c.ropeScaling?.source.key === 'rope_parameters'
      ? { rope_parameters: c.ropeScaling.source.value }
      : {}),
    tie_word_embeddings: c.tieEmbeddings,
    torch_dtype: 'float32',
  };
  if (c.bosTokenId !== undefined) config.bos_token_id = c.bosTokenId;
  if (c.eosTokenId !== undefined) config.eos_token_id = c.eosTokenId;
  if (c.headsPerLayer.some((h) => h !== c.numHeads) || c.kvHeadsPerLayer.some((k) => k !== c.numKvHeads)) {
    config.num_attention_heads_per_layer = [...c.headsPerLayer];
    config.num_key_value_heads_per_layer = [...c.kvHeadsPerLayer];
  }
  if (config.num_attention_heads_per_layer || c.intermediatePerLayer) {
    config[INTERMEDIATE_PER_LAYER] = intermediateWidths(c);
  }
  if (c.kvHeadOfQuery) config.kv_head_of_query_per_layer = c.kvHeadOfQuery.map((m) => [...m]);
  return config;
}

/** config.json and tensors by Hugging Face name for a spec (the inverse of llamaSpecFromHf). */
export function llamaSpecToHf(spec: ModelSpec): {
  config: Record<string, unknown>;
  tensors: Map<string, TensorSource>;
} {
  const c = spec.config;
  const type: LlamaModelType = (LLAMA_MODEL_TYPES as readonly string[]).includes(c.modelType)
    ? (c.modelType as LlamaModelType)
    : 'llama';
  const flags = llamaBiasFlags(type, c.attentionBias, c.mlpBias);
  if (
    flags.attentionBias !== c.attentionBias ||
    flags.attentionOutBias !== c.attentionOutBias ||
    flags.mlpBias !== c.mlpBias
  ) {
    throw modelError(
      spec,
      `a ${type} config.json cannot express these biases (q/k/v ${c.attentionBias}, o ${c.attentionOutBias}, mlp ${c.mlpBias})`,
    );
  }
  if (
    c.normKind !== 'rms' ||
    c.normPlacement !== 'pre' ||
    c.mlpKind !== 'gated' ||
    c.positionKind !== 'rope'
  ) {
    throw modelError(spec, 'not a LLaMA-shaped model (needs pre-RMSNorm, gated MLP, rotary positions)');
  }
  const arch = { llama: 'LlamaForCausalLM', mistral: 'MistralForCausalLM', qwen2: 'Qwen2ForCausalLM' }[type];
  const config: Record<string, unknown> = {
    architectures: [arch],
    model_type: type,
    ...rotaryDecoderConfig(c),
    hidden_act: ACTIVATION_TO_HF[c.activation],
  };
  if (type === 'llama') {
    config.attention_bias = c.attentionBias;
    config.mlp_bias = c.mlpBias;
  }
  Object.assign(config, slidingWindowKeys(spec, type));
  const tensors = new Map<string, TensorSource>();
  for (const [role, t] of checkedTensors(spec)) tensors.set(hfNameOfRole(role), t);
  return { config, tensors };
}

/**
 * The config.json keys that give back a spec's sliding windows (the inverse of slidingWindows). Mistral's is
 * always written, null for none: an absent key means transformers' default window of 4096.
 */
function slidingWindowKeys(spec: ModelSpec, type: LlamaModelType): Record<string, unknown> {
  const windows = spec.config.slidingWindow ?? [];
  const sizes = [...new Set(windows.filter((w) => w > 0))];
  if (sizes.length > 1) {
    throw modelError(spec, `config.json has one sliding_window, the layers have ${sizes.join(', ')}`);
  }
  const w = sizes[0];
  if (type === 'llama') {
    if (w !== undefined) throw modelError(spec, 'a llama config.json cannot express sliding windows');
    return {};
  }
  if (type === 'mistral') {
    if (w !== undefined && windows.some((x) => x !== w)) {
      throw modelError(spec, 'a mistral config.json slides every layer or none');
    }
    return { sliding_window: w ?? null };
  }
  if (w === undefined) return {}; // qwen2's default: use_sliding_window false
  const sliding = windows.map((x) => x > 0);
  const first = sliding.indexOf(true);
  return {
    use_sliding_window: true,
    sliding_window: w,
    // Older readers know only max_window_layers (the layers from it on slide): written when it says the same.
    ...(sliding.every((x, l) => x === l >= first) ? { max_window_layers: first } : {}),
    layer_types: sliding.map((x) => (x ? SLIDING : FULL)),
  };
}
