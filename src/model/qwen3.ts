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
import { specTensor } from './bind.js';
import { ACTIVATION_TO_HF, type ConfigReader, configReader, layerTypes, layerTypesOf } from './hfconfig.js';
import {
  checkIntermediatePerLayer,
  decoderSizesFromHf,
  hfNameOfRole,
  llamaRoleShapes,
  perLayerHeadsFromHf,
  rotaryDecoderConfig,
  rotaryDecoderConfigFromHf,
  rotaryDecoderSpecFromHf,
  setTokenIds,
} from './llama.js';
import { ropeSettingsFromHf } from './rope.js';
import type { ModelConfig, ModelSpec, TensorSource } from './spec.js';

/** transformers' Qwen3Config defaults where config.json leaves a key out. */
const QWEN3_DEFAULTS = {
  headDim: 128,
  maxPositions: 32768,
  slidingWindow: 4096,
  maxWindowLayers: 28,
} as const;

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
  let sliding = layerTypes(r, numLayers);
  if (sliding) {
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

  // Qwen3Config defaults head_dim to 128 whatever hidden_size / num_attention_heads is.
  const sizes = decoderSizesFromHf(r, { headDim: QWEN3_DEFAULTS.headDim });
  const { numLayers } = sizes;
  const maxPositions = r.int('max_position_embeddings', QWEN3_DEFAULTS.maxPositions);
  const rope = ropeSettingsFromHf(json, maxPositions, r.fail);

  const heads = perLayerHeadsFromHf(r, sizes);
  const windows = qwen3Windows(r, numLayers);

  // Qwen3Attention puts attention_bias on q, k, v and o alike; Qwen3MLP has no biases (no mlp_bias key).
  const attentionBias = r.bool('attention_bias', false);
  const intermediateSize = r.int('intermediate_size');
  const intermediatePerLayer = checkIntermediatePerLayer(json, numLayers, intermediateSize, r.fail);

  const config: ModelConfig = {
    ...rotaryDecoderConfigFromHf(r, {
      family: 'qwen3',
      arch: 'decoder',
      modelType: 'qwen3',
      sizes,
      heads,
      intermediateSize,
      intermediatePerLayer,
      maxPositions,
      normEps: 1e-6,
      activation: r.activation('hidden_act', 'silu'),
      rope,
      biases: { attentionBias, attentionOutBias: attentionBias, mlpBias: false },
      tieEmbeddings: false,
    }),
    qkNorm: true,
  };
  if (heads.kvHeadOfQuery) config.kvHeadOfQuery = heads.kvHeadOfQuery;
  if (windows.some((w) => w > 0)) config.slidingWindow = windows;
  setTokenIds(config, r);
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
  return rotaryDecoderSpecFromHf(
    folder,
    configPath,
    config,
    qwen3RoleShapes(config).map(([role, shape]) => ({ role, name: qwen3HfNameOfRole(role), hfShape: shape })),
    'qwen3 model',
  );
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
    layer_types: layerTypesOf(sliding),
  };

  const tensors = new Map<string, TensorSource>();
  for (const [role, shape] of qwen3RoleShapes(c)) {
    tensors.set(qwen3HfNameOfRole(role), specTensor(spec, role, shape));
  }
  return { config, tensors };
}
