/**
 * Qwen3 (Hugging Face model_type qwen3, Qwen3ForCausalLM) ↔ ModelSpec: config mapping and weight layout only.
 *
 * Qwen3 is LLaMA-shaped (pre-RMSNorm, rotary attention with GQA, SwiGLU MLP) with three differences that matter
 * here: each head's query and key go through their own RMSNorm over headDim (weights q_norm / k_norm [headDim],
 * shared by all heads of a layer) after the projection and before rotary (ModelConfig.qkNorm); head_dim is a key of
 * its own (Qwen3-0.6B: hidden 1024, 16 heads × 128), defaulting to 128 as transformers' Qwen3Config does, not to
 * hidden/heads; and q/k/v carry no biases unless `attention_bias` is set, which then puts one on all four
 * projections (o too), as Qwen3Attention does. Sliding windows are honoured as transformers computes them: with
 * `use_sliding_window` true, the layers `layer_types` names sliding (or, without layer_types, layers ≥
 * `max_window_layers`) see `sliding_window` keys; with it false no layer slides.
 *
 * qwen3_moe reaches this file only to be refused: its experts are not a search space yet.
 *
 * Hugging Face names are LLaMA's (`model.layers.{i}.self_attn.{q,k,v,o}_proj`, input_layernorm,
 * post_attention_layernorm, mlp.{gate,up,down}_proj, model.norm, lm_head) plus
 * `model.layers.{i}.self_attn.q_norm.weight` / `k_norm.weight`. Physically pruned models use the LLaMA loader's
 * per-layer head keys (llama.ts), which stock transformers ignores.
 */
import { join } from 'node:path';
import type { HfFolder } from '../checkpoint/hf.js';
import { GenepruneError } from '../errors.js';
import { bindHfTensors, sameShape, shapeText } from './bind.js';
import { type ConfigReader, configReader } from './hfconfig.js';
import {
  checkIntermediatePerLayer,
  hfNameOfRole,
  kvMaps,
  llamaRoleShapes,
  perLayerCounts,
  provenanceOfFolder,
  rotaryDecoderConfig,
} from './llama.js';
import { ropeSettingsFromHf } from './rope.js';
import type { Activation, ModelConfig, ModelSpec, TensorSource } from './spec.js';

/** transformers' Qwen3Config defaults where config.json leaves a key out. */
const QWEN3_DEFAULTS = {
  headDim: 128,
  maxPositions: 32768,
  slidingWindow: 4096,
  maxWindowLayers: 28,
} as const;

const SLIDING = 'sliding_attention';
const FULL = 'full_attention';

const ACTIVATION_TO_HF: Record<Activation, string> = {
  silu: 'silu',
  gelu: 'gelu',
  gelu_tanh: 'gelu_pytorch_tanh',
  relu: 'relu',
};

// ---------------------------------------------------------------------------------------------------------
// config.json → ModelConfig

/**
 * Per-layer windows (0 = global) as Qwen3Config computes them: sliding_window counts only when use_sliding_window
 * is true (an explicit null means none); layer_types, when given, names the sliding layers, else layers from
 * max_window_layers on slide. A layer_types that names sliding layers without a window is refused: transformers
 * would build a window mask with no window.
 */
function qwen3Windows(r: ConfigReader, numLayers: number): number[] {
  const use = r.bool('use_sliding_window', false);
  let window: number | undefined;
  if (use) {
    if (!('sliding_window' in r.json)) window = QWEN3_DEFAULTS.slidingWindow;
    else if (r.json.sliding_window !== null) window = r.int('sliding_window');
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
    if (window === undefined && sliding.some(Boolean)) {
      throw r.fail(
        `"layer_types" names sliding layers but ${use ? 'sliding_window is null' : 'use_sliding_window is false'} (no window to apply)`,
      );
    }
  } else {
    const first = r.int('max_window_layers', QWEN3_DEFAULTS.maxWindowLayers, 0);
    sliding = Array.from({ length: numLayers }, (_, l) => window !== undefined && l >= first);
  }
  return sliding.map((s) => (s && window !== undefined ? window : 0));
}

export function qwen3ConfigFromHf(json: Record<string, unknown>, configPath: string): ModelConfig {
  const r = configReader(json, configPath);
  const modelType = json.model_type;
  if (typeof modelType !== 'string') throw r.fail('no "model_type" string');
  if (modelType === 'qwen3_moe') {
    throw r.fail(
      'model_type "qwen3_moe" is a mixture-of-experts model: experts are not a search space yet (dense qwen3 is supported)',
    );
  }
  if (modelType !== 'qwen3') throw r.fail(`model_type "${modelType}" is not supported (supported: qwen3)`);

  const hiddenSize = r.int('hidden_size');
  const numLayers = r.int('num_hidden_layers');
  const numHeads = r.int('num_attention_heads');
  const numKvHeads = r.int('num_key_value_heads', numHeads);
  if (numHeads % numKvHeads !== 0) {
    throw r.fail(`num_attention_heads ${numHeads} is not a multiple of num_key_value_heads ${numKvHeads}`);
  }
  // Qwen3Config defaults head_dim to 128 whatever hidden_size / num_attention_heads is.
  const headDim = r.int('head_dim', QWEN3_DEFAULTS.headDim);
  if (headDim % 2 !== 0) throw r.fail(`head_dim ${headDim} is odd (rotary embedding needs pairs)`);
  const maxPositions = r.int('max_position_embeddings', QWEN3_DEFAULTS.maxPositions);
  const rope = ropeSettingsFromHf(json, maxPositions, r.fail);

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
  const windows = qwen3Windows(r, numLayers);

  // Qwen3Attention puts attention_bias on q, k, v and o alike; Qwen3MLP has no biases (no mlp_bias key).
  const attentionBias = r.bool('attention_bias', false);
  const intermediateSize = r.int('intermediate_size');
  const intermediatePerLayer = checkIntermediatePerLayer(json, numLayers, intermediateSize, r.fail);

  const config: ModelConfig = {
    family: 'qwen3',
    arch: 'decoder',
    modelType: 'qwen3',
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
    maxPositions,
    normKind: 'rms',
    normPlacement: 'pre',
    normEps: r.positive('rms_norm_eps', 1e-6),
    activation: r.activation('hidden_act', 'silu'),
    mlpKind: 'gated',
    positionKind: 'rope',
    ropeTheta: rope.theta,
    ...(rope.scaling ? { ropeScaling: rope.scaling } : {}),
    attentionBias,
    attentionOutBias: attentionBias,
    mlpBias: false,
    tieEmbeddings: r.bool('tie_word_embeddings', false),
    qkNorm: true,
  };
  if (kvHeadOfQuery) config.kvHeadOfQuery = kvHeadOfQuery;
  if (windows.some((w) => w > 0)) config.slidingWindow = windows;
  const bos = r.tokenId('bos_token_id');
  const eos = r.tokenId('eos_token_id');
  if (bos !== undefined) config.bosTokenId = bos;
  if (eos !== undefined) config.eosTokenId = eos;
  return config;
}

// ---------------------------------------------------------------------------------------------------------
// roles, shapes and Hugging Face names

/** Every role of a Qwen3 spec with its shape: LLaMA's, plus each layer's q_norm / k_norm [headDim] after o. */
export function qwen3RoleShapes(config: ModelConfig): Array<[string, number[]]> {
  const out: Array<[string, number[]]> = [];
  const shapes = llamaRoleShapes(config);
  shapes.forEach(([role, shape], n) => {
    out.push([role, shape]);
    const m = /^layers\.(\d+)\.attn\.o\.(weight|bias)$/.exec(role);
    const next = shapes[n + 1]?.[0];
    // After the layer's last o tensor (its bias when it has one).
    if (m && next !== `layers.${m[1]}.attn.o.bias`) {
      // Kept even when pruning leaves a layer no heads: transformers builds both norms for every layer.
      out.push([`layers.${m[1]}.attn.q_norm.weight`, [config.headDim]]);
      out.push([`layers.${m[1]}.attn.k_norm.weight`, [config.headDim]]);
    }
  });
  return out;
}

/** The Hugging Face tensor name of a Qwen3 role. */
export function qwen3HfNameOfRole(role: string): string {
  const m = /^layers\.(\d+)\.attn\.([qk])_norm\.weight$/.exec(role);
  if (m) return `model.layers.${m[1]}.self_attn.${m[2]}_norm.weight`;
  return hfNameOfRole(role);
}

// ---------------------------------------------------------------------------------------------------------
// Hugging Face folder → spec

export function qwen3SpecFromHf(folder: HfFolder): ModelSpec {
  const configPath = join(folder.dir, 'config.json');
  const config = qwen3ConfigFromHf(folder.config, configPath);
  const why =
    folder.config.tie_word_embeddings === false
      ? 'config.json sets tie_word_embeddings false'
      : 'config.json does not set tie_word_embeddings (default false)';
  const tensors = bindHfTensors(
    folder,
    qwen3RoleShapes(config).map(([role, shape]) => ({ role, name: qwen3HfNameOfRole(role), hfShape: shape })),
    {
      // Rotary frequencies are recomputed; a tied model may still carry a copy of the head.
      ignorable: (name) =>
        /\.rotary_emb\.inv_freq$/.test(name) || (name === 'lm_head.weight' && config.tieEmbeddings),
      what: 'qwen3 model',
      missingHead: `tensor lm_head.weight is missing and ${why}`,
    },
  );
  const provenance = provenanceOfFolder(folder, configPath);
  return { config, tensors, source: folder.dir, ...(provenance ? { provenance } : {}) };
}

// ---------------------------------------------------------------------------------------------------------
// spec → Hugging Face

/**
 * config.json and tensors by Hugging Face name (Qwen3ForCausalLM layout) for a Qwen3 spec, the inverse of
 * qwen3SpecFromHf. Fails in one line for what a qwen3 config.json cannot say.
 */
export function qwen3SpecToHf(spec: ModelSpec): {
  config: Record<string, unknown>;
  tensors: Map<string, TensorSource>;
} {
  const c = spec.config;
  const fail = (m: string) => new GenepruneError('model', m, spec.source);
  if (c.family !== 'qwen3') throw fail(`not a Qwen3 model (family ${c.family})`);
  const problems: string[] = [];
  if (c.normKind !== 'rms' || c.normPlacement !== 'pre') problems.push('norms are not pre-RMSNorm');
  if (c.mlpKind !== 'gated' || c.mlpBias) problems.push('the MLP is not a bias-free gated MLP');
  if (c.positionKind !== 'rope') problems.push('positions are not rotary');
  if (c.qkNorm !== true) problems.push('queries and keys are not normed per head');
  if (c.attentionBias !== c.attentionOutBias) problems.push('q/k/v and o projections disagree on biases');
  if (c.normWeightOffset) problems.push(`norm weight offset is ${c.normWeightOffset}, not 0`);
  if (c.embedScale !== undefined && c.embedScale !== 1) problems.push('token embeddings are scaled');
  if (c.attnScale !== undefined && c.attnScale !== c.headDim ** -0.5)
    problems.push('scores use their own scale');
  if (c.attnSoftcap || c.finalSoftcap) problems.push('logits are soft-capped');
  if (c.sandwichNorms) problems.push('the model has sandwich norms');
  const windows = (c.slidingWindow ?? []).filter((w) => w > 0);
  if (new Set(windows).size > 1)
    problems.push(`layers use different sliding windows (${[...new Set(windows)]})`);
  if (problems.length > 0)
    throw fail(`a qwen3 config.json cannot express this model: ${problems.join('; ')}`);

  const sliding = Array.from({ length: c.numLayers }, (_, l) => (c.slidingWindow?.[l] ?? 0) > 0);
  const leadingFull = sliding.indexOf(true) === -1 ? c.numLayers : sliding.indexOf(true);
  const config: Record<string, unknown> = {
    architectures: ['Qwen3ForCausalLM'],
    model_type: 'qwen3',
    ...rotaryDecoderConfig(c),
    hidden_act: ACTIVATION_TO_HF[c.activation],
    attention_bias: c.attentionBias,
    use_sliding_window: windows.length > 0,
    sliding_window: windows.length > 0 ? windows[0] : null,
    // layer_types decides; max_window_layers agrees with it whenever the sliding layers are the last ones.
    max_window_layers: leadingFull,
    layer_types: sliding.map((s) => (s ? SLIDING : FULL)),
  };

  const tensors = new Map<string, TensorSource>();
  for (const [role, shape] of qwen3RoleShapes(c)) {
    const t = spec.tensors.get(role);
    if (!t) throw fail(`tensor ${role} is missing from the model`);
    if (!sameShape(t.shape, shape)) {
      throw fail(`tensor ${role} has shape ${shapeText(t.shape)}, the config implies ${shapeText(shape)}`);
    }
    tensors.set(qwen3HfNameOfRole(role), t);
  }
  return { config, tensors };
}
