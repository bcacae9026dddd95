/**
 * Gemma and Gemma 2 (Hugging Face model_type gemma, gemma2) ↔ ModelSpec: config mapping and weight layout only.
 *
 * Both are LLaMA-shaped decoders (pre-RMSNorm, rotary attention with GQA/MQA and an explicit head_dim, gated MLP)
 * with Gemma's own touches: norms scale by 1 + w (normWeightOffset 1), token embeddings are multiplied by
 * √hidden_size, the MLP gate uses the tanh GELU, and the head is tied by default. Gemma 2 adds a score scale of
 * query_pre_attn_scalar^−½, tanh soft-capping of attention scores and of the final logits, sliding-window
 * attention on alternate layers, and "sandwich" norms after attention and after the MLP.
 *
 * Hugging Face names (GemmaForCausalLM / Gemma2ForCausalLM, modules under `model.`):
 *   input_layernorm → attn_norm; gemma: post_attention_layernorm → mlp_norm;
 *   gemma2: post_attention_layernorm → post_attn_norm, pre_feedforward_layernorm → mlp_norm,
 *           post_feedforward_layernorm → post_mlp_norm.
 *
 * Physically pruned models use the LLaMA loader's convention (num_attention_heads_per_layer,
 * num_key_value_heads_per_layer, kv_head_of_query_per_layer), which stock transformers ignores.
 */
import { join } from 'node:path';
import type { HfFolder } from '../checkpoint/hf.js';
import { fileError, GenepruneError } from '../errors.js';
import { bindHfTensors, sameShape, shapeText } from './bind.js';
import { type ConfigReader, configReader } from './hfconfig.js';
import {
  checkIntermediatePerLayer,
  kvMaps,
  llamaRoleShapes,
  perLayerCounts,
  provenanceOfFolder,
  rotaryDecoderConfig,
} from './llama.js';
import type { Activation, ModelConfig, ModelSpec, TensorSource } from './spec.js';

export const GEMMA_MODEL_TYPES = ['gemma', 'gemma2'] as const;
export type GemmaModelType = (typeof GEMMA_MODEL_TYPES)[number];

const ACTIVATION_TO_HF: Record<Activation, string> = {
  silu: 'silu',
  gelu: 'gelu',
  gelu_tanh: 'gelu_pytorch_tanh',
  relu: 'relu',
};

/** transformers' Gemma2Config defaults, used where config.json leaves the key out (an explicit null = none). */
const GEMMA2_DEFAULTS = {
  numKvHeads: 4,
  queryPreAttnScalar: 256,
  slidingWindow: 4096,
  attnSoftcap: 50,
  finalSoftcap: 30,
} as const;

const SLIDING = 'sliding_attention';
const FULL = 'full_attention';

// ---------------------------------------------------------------------------------------------------------
// config.json → ModelConfig

/**
 * The MLP activation. Gemma 2 reads `hidden_activation` (transformers' Gemma2MLP always has). Gemma 1's history is
 * messier: its first configs said `hidden_act: "gelu"` although the model was trained with the tanh GELU;
 * transformers 4.38–4.47 therefore read `hidden_activation` and, when that was absent, ran gelu_pytorch_tanh
 * whatever hidden_act said; from 4.48 on (and in 5.x, where GemmaConfig no longer has hidden_activation) GemmaMLP
 * runs `hidden_act`. We follow transformers as it is now for a config with only hidden_act, so an old
 * `hidden_act: "gelu"` config runs the exact (erf) GELU, as transformers computes it today; where a config also
 * states `hidden_activation` (written for exactly this ambiguity), that explicit value wins, as it did in the
 * versions that knew the field.
 */
function gemmaActivation(r: ConfigReader, type: GemmaModelType): Activation {
  if (type === 'gemma2' || r.present('hidden_activation')) {
    return r.activation('hidden_activation', 'gelu_pytorch_tanh');
  }
  return r.activation('hidden_act', 'gelu_pytorch_tanh');
}

/** rope_theta, refusing any rotary scaling (rope_scaling, or rope_parameters of a non-default type). */
function ropeTheta(r: ConfigReader): number {
  let theta = r.positive('rope_theta', 10000);
  for (const key of ['rope_scaling', 'rope_parameters']) {
    if (!r.present(key)) continue;
    const value = r.json[key];
    if (typeof value !== 'object' || Array.isArray(value)) throw r.fail(`"${key}" must be an object or null`);
    const p = value as Record<string, unknown>;
    const kind = p.rope_type ?? p.type ?? 'default';
    if (kind !== 'default') {
      throw r.fail(
        `${key} type ${JSON.stringify(kind)} is not supported (only unscaled rotary embeddings are)`,
      );
    }
    if (key === 'rope_parameters' && p.rope_theta !== undefined) {
      if (typeof p.rope_theta !== 'number' || !(p.rope_theta > 0) || !Number.isFinite(p.rope_theta)) {
        throw r.fail(
          `rope_parameters.rope_theta must be a positive number, got ${JSON.stringify(p.rope_theta)}`,
        );
      }
      theta = p.rope_theta;
    }
  }
  return theta;
}

/** A positive number, transformers' default when the key is absent, undefined when config.json says null. */
function nullablePositive(r: ConfigReader, key: string, fallback: number): number | undefined {
  if (!(key in r.json)) return fallback;
  if (r.json[key] === null) return undefined;
  return r.positive(key, fallback);
}

/**
 * Gemma 2's per-layer windows: `layer_types` when config.json has it (newer transformers write it), else
 * transformers' rule — layers 0, 2, 4, … slide, odd layers are global. A null sliding_window leaves every layer
 * global (older transformers then gave no layer a window).
 */
function gemma2Windows(r: ConfigReader, numLayers: number): number[] {
  const window = nullablePositive(r, 'sliding_window', GEMMA2_DEFAULTS.slidingWindow);
  if (window !== undefined && !Number.isInteger(window)) {
    throw r.fail(`"sliding_window" must be an integer, got ${JSON.stringify(r.json.sliding_window)}`);
  }
  let sliding: boolean[];
  if (r.present('layer_types')) {
    const types = r.json.layer_types;
    if (!Array.isArray(types) || types.length !== numLayers) {
      throw r.fail(`"layer_types" must list ${numLayers} layer types, one per layer`);
    }
    sliding = types.map((t, l) => {
      if (t !== SLIDING && t !== FULL) {
        throw r.fail(
          `"layer_types"[${l}] ${JSON.stringify(t)} is not supported (supported: ${SLIDING}, ${FULL})`,
        );
      }
      return t === SLIDING;
    });
  } else {
    sliding = Array.from({ length: numLayers }, (_, l) => l % 2 === 0);
  }
  return sliding.map((s) => (s && window !== undefined ? window : 0));
}

export function gemmaConfigFromHf(json: Record<string, unknown>, configPath: string): ModelConfig {
  const r = configReader(json, configPath);
  const modelType = json.model_type;
  if (typeof modelType !== 'string') throw r.fail('no "model_type" string');
  if (!(GEMMA_MODEL_TYPES as readonly string[]).includes(modelType)) {
    throw r.fail(`model_type "${modelType}" is not supported (supported: ${GEMMA_MODEL_TYPES.join(', ')})`);
  }
  const type = modelType as GemmaModelType;
  const gemma2 = type === 'gemma2';
  if (r.bool('use_bidirectional_attention', false)) {
    throw r.fail('use_bidirectional_attention true is not supported (the decoder graph is causal)');
  }

  const hiddenSize = r.int('hidden_size');
  const numLayers = r.int('num_hidden_layers');
  const numHeads = r.int('num_attention_heads');
  // transformers' defaults when absent: GemmaConfig 16 KV heads, Gemma2Config 4; head_dim 256 for both.
  const numKvHeads = r.int('num_key_value_heads', gemma2 ? GEMMA2_DEFAULTS.numKvHeads : 16);
  if (numHeads % numKvHeads !== 0) {
    throw r.fail(`num_attention_heads ${numHeads} is not a multiple of num_key_value_heads ${numKvHeads}`);
  }
  const headDim = r.int('head_dim', 256);
  if (headDim % 2 !== 0) throw r.fail(`head_dim ${headDim} is odd (rotary embedding needs pairs)`);

  const headsPerLayer = perLayerCounts(json, 'num_attention_heads_per_layer', numLayers, numHeads, r.fail);
  const kvHeadsPerLayer = perLayerCounts(
    json,
    'num_key_value_heads_per_layer',
    numLayers,
    numKvHeads,
    r.fail,
  );
  if (r.present('num_attention_heads_per_layer') !== r.present('num_key_value_heads_per_layer')) {
    throw r.fail('num_attention_heads_per_layer and num_key_value_heads_per_layer must be given together');
  }
  const kvHeadOfQuery = kvMaps(json.kv_head_of_query_per_layer, headsPerLayer, kvHeadsPerLayer, r.fail);
  const intermediateSize = r.int('intermediate_size');
  const intermediatePerLayer = checkIntermediatePerLayer(json, numLayers, intermediateSize, r.fail);

  // GemmaAttention / Gemma2Attention put attention_bias on all four projections; the MLP has none.
  const attentionBias = r.bool('attention_bias', false);
  const config: ModelConfig = {
    family: 'gemma',
    arch: 'decoder',
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
    vocabSize: r.int('vocab_size'),
    maxPositions: r.int('max_position_embeddings', 8192),
    normKind: 'rms',
    normPlacement: 'pre',
    normEps: r.positive('rms_norm_eps', 1e-6),
    activation: gemmaActivation(r, type),
    mlpKind: 'gated',
    positionKind: 'rope',
    ropeTheta: ropeTheta(r),
    attentionBias,
    attentionOutBias: attentionBias,
    mlpBias: false,
    tieEmbeddings: r.bool('tie_word_embeddings', true),
    normWeightOffset: 1,
    embedScale: Math.sqrt(hiddenSize),
  };
  if (kvHeadOfQuery) config.kvHeadOfQuery = kvHeadOfQuery;
  if (gemma2) {
    config.attnScale = r.positive('query_pre_attn_scalar', GEMMA2_DEFAULTS.queryPreAttnScalar) ** -0.5;
    const attnSoftcap = nullablePositive(r, 'attn_logit_softcapping', GEMMA2_DEFAULTS.attnSoftcap);
    const finalSoftcap = nullablePositive(r, 'final_logit_softcapping', GEMMA2_DEFAULTS.finalSoftcap);
    if (attnSoftcap !== undefined) config.attnSoftcap = attnSoftcap;
    if (finalSoftcap !== undefined) config.finalSoftcap = finalSoftcap;
    config.slidingWindow = gemma2Windows(r, numLayers);
    config.sandwichNorms = true;
  }
  const bos = r.tokenId('bos_token_id');
  const eos = r.tokenId('eos_token_id');
  if (bos !== undefined) config.bosTokenId = bos;
  if (eos !== undefined) config.eosTokenId = eos;
  return config;
}

// ---------------------------------------------------------------------------------------------------------
// roles, shapes and Hugging Face names

/** Every role of a Gemma spec with its shape: LLaMA's, plus the sandwich norms when the model has them. */
export function gemmaRoleShapes(config: ModelConfig): Array<[string, number[]]> {
  const D = config.hiddenSize;
  const out: Array<[string, number[]]> = [];
  for (const [role, shape] of llamaRoleShapes(config)) {
    out.push([role, shape]);
    const m = /^layers\.(\d+)\.(attn\.o|mlp\.down)\.weight$/.exec(role);
    if (m && config.sandwichNorms) {
      out.push([`layers.${m[1]}.${m[2] === 'attn.o' ? 'post_attn_norm' : 'post_mlp_norm'}.weight`, [D]]);
    }
  }
  return out;
}

const COMMON_NAMES: Array<[RegExp, string]> = [
  [/^embed\.tokens$/, 'model.embed_tokens.weight'],
  [/^layers\.(\d+)\.attn_norm\.weight$/, 'model.layers.$1.input_layernorm.weight'],
  [/^layers\.(\d+)\.attn\.([qkvo])\.(weight|bias)$/, 'model.layers.$1.self_attn.$2_proj.$3'],
  [/^layers\.(\d+)\.mlp\.(gate|up|down)\.weight$/, 'model.layers.$1.mlp.$2_proj.weight'],
  [/^final_norm\.weight$/, 'model.norm.weight'],
  [/^lm_head\.weight$/, 'lm_head.weight'],
];
const GEMMA_NORM_NAMES: Array<[RegExp, string]> = [
  [/^layers\.(\d+)\.mlp_norm\.weight$/, 'model.layers.$1.post_attention_layernorm.weight'],
];
const GEMMA2_NORM_NAMES: Array<[RegExp, string]> = [
  [/^layers\.(\d+)\.post_attn_norm\.weight$/, 'model.layers.$1.post_attention_layernorm.weight'],
  [/^layers\.(\d+)\.mlp_norm\.weight$/, 'model.layers.$1.pre_feedforward_layernorm.weight'],
  [/^layers\.(\d+)\.post_mlp_norm\.weight$/, 'model.layers.$1.post_feedforward_layernorm.weight'],
];

/** The Hugging Face tensor name of a Gemma role (post_attention_layernorm means different roles in the two). */
export function gemmaHfNameOfRole(role: string, sandwichNorms: boolean): string {
  const table = [...COMMON_NAMES, ...(sandwichNorms ? GEMMA2_NORM_NAMES : GEMMA_NORM_NAMES)];
  for (const [re, name] of table) if (re.test(role)) return role.replace(re, name);
  throw new GenepruneError('internal', `no Hugging Face Gemma name for role ${role}`);
}

// ---------------------------------------------------------------------------------------------------------
// Hugging Face folder → spec

export function gemmaSpecFromHf(folder: HfFolder): ModelSpec {
  const configPath = join(folder.dir, 'config.json');
  const config = gemmaConfigFromHf(folder.config, configPath);
  const sandwich = config.sandwichNorms === true;
  const tensors = bindHfTensors(
    folder,
    gemmaRoleShapes(config).map(([role, shape]) => ({
      role,
      name: gemmaHfNameOfRole(role, sandwich),
      hfShape: shape,
    })),
    {
      // Rotary frequencies are recomputed; a tied model may still carry a copy of the head.
      ignorable: (name) =>
        /\.rotary_emb\.inv_freq$/.test(name) || (name === 'lm_head.weight' && config.tieEmbeddings),
      what: `${config.modelType} model`,
      missingHead: 'tensor lm_head.weight is missing and config.json sets tie_word_embeddings false',
    },
  );
  const provenance = provenanceOfFolder(folder, configPath);
  return { config, tensors, source: folder.dir, ...(provenance ? { provenance } : {}) };
}

// ---------------------------------------------------------------------------------------------------------
// spec → Hugging Face

/** query_pre_attn_scalar for a score scale s = q^−½: the integer it almost always is, when that reads back as s. */
function queryPreAttnScalar(scale: number): number {
  const q = 1 / (scale * scale);
  const n = Math.round(q);
  return n > 0 && n ** -0.5 === scale ? n : q;
}

/**
 * config.json and tensors by Hugging Face name (GemmaForCausalLM / Gemma2ForCausalLM layout) for a Gemma spec,
 * the inverse of gemmaSpecFromHf. Fails in one line for what a gemma/gemma2 config.json cannot say.
 */
export function gemmaSpecToHf(spec: ModelSpec): {
  config: Record<string, unknown>;
  tensors: Map<string, TensorSource>;
} {
  const c = spec.config;
  const fail = (m: string) => new GenepruneError('model', m, spec.source);
  if (c.family !== 'gemma') throw fail(`not a Gemma model (family ${c.family})`);
  const type: GemmaModelType = c.sandwichNorms ? 'gemma2' : 'gemma';
  if (c.modelType !== type && (GEMMA_MODEL_TYPES as readonly string[]).includes(c.modelType)) {
    throw fail(
      c.modelType === 'gemma2'
        ? 'model_type gemma2 needs sandwich norms, which this model lacks'
        : 'model_type gemma has no sandwich norms, which this model has',
    );
  }
  const problems: string[] = [];
  if (c.normKind !== 'rms' || c.normPlacement !== 'pre') problems.push('norms are not pre-RMSNorm');
  if (c.mlpKind !== 'gated' || c.mlpBias) problems.push('the MLP is not a bias-free gated MLP');
  if (c.positionKind !== 'rope') problems.push('positions are not rotary');
  if (c.attentionBias !== c.attentionOutBias) problems.push('q/k/v and o projections disagree on biases');
  if (c.normWeightOffset !== 1) problems.push(`norm weight offset is ${c.normWeightOffset ?? 0}, not 1`);
  if (c.embedScale !== Math.sqrt(c.hiddenSize))
    problems.push(`embedding scale is ${c.embedScale ?? 1}, not √hidden`);
  const windows = (c.slidingWindow ?? []).filter((w) => w > 0);
  if (new Set(windows).size > 1)
    problems.push(`layers use different sliding windows (${[...new Set(windows)]})`);
  if (type === 'gemma') {
    if (windows.length > 0) problems.push('layers use sliding windows');
    if (c.attnSoftcap || c.finalSoftcap) problems.push('logits are soft-capped');
    if (c.attnScale !== undefined && c.attnScale !== c.headDim ** -0.5)
      problems.push('scores use their own scale');
  }
  if (problems.length > 0)
    throw fail(`a ${type} config.json cannot express this model: ${problems.join('; ')}`);

  const act = ACTIVATION_TO_HF[c.activation];
  const config: Record<string, unknown> = {
    architectures: [type === 'gemma2' ? 'Gemma2ForCausalLM' : 'GemmaForCausalLM'],
    model_type: type,
    ...rotaryDecoderConfig(c),
    // Both keys, equal: every transformers version then runs the same activation (see gemmaActivation).
    hidden_act: act,
    hidden_activation: act,
    attention_bias: c.attentionBias,
  };
  if (type === 'gemma2') {
    config.query_pre_attn_scalar = queryPreAttnScalar(c.attnScale ?? c.headDim ** -0.5);
    config.attn_logit_softcapping = c.attnSoftcap ?? null;
    config.final_logit_softcapping = c.finalSoftcap ?? null;
    config.sliding_window = windows.length > 0 ? windows[0] : null;
    config.layer_types = Array.from({ length: c.numLayers }, (_, l) =>
      (c.slidingWindow?.[l] ?? 0) > 0 ? SLIDING : FULL,
    );
  }

  const tensors = new Map<string, TensorSource>();
  for (const [role, shape] of gemmaRoleShapes(c)) {
    const t = spec.tensors.get(role);
    if (!t) throw fail(`tensor ${role} is missing from the model`);
    if (!sameShape(t.shape, shape)) {
      throw fail(`tensor ${role} has shape ${shapeText(t.shape)}, the config implies ${shapeText(shape)}`);
    }
    tensors.set(gemmaHfNameOfRole(role, type === 'gemma2'), t);
  }
  return { config, tensors };
}
