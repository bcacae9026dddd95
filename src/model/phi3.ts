/**
 * Phi-3 / Phi-3.5 / Phi-4-mini (Hugging Face model_type phi3, Phi3ForCausalLM) ↔ ModelSpec: config mapping and
 * weight layout. Other Phi model types (phi3small, phimoe, phi, phi4mm …) are not this family and stay refused by
 * load.ts's table.
 *
 * The model is LLaMA-shaped (pre-RMSNorm, rotary attention with GQA, SiLU-gated MLP, no biases) with two fused
 * projections per layer, split on load into the spec's roles and fused back on export:
 *   self_attn.qkv_proj [(H + 2·KV)·hd, D]: rows [0, H·hd) are q, the next KV·hd k, the last KV·hd v;
 *   mlp.gate_up_proj   [2·I, D]:           the first I rows are the gate, the last I the up projection.
 * After head pruning a layer's fused rows are its own heads' (the per-layer head keys say how many), as llama.ts
 * writes and reads them (its exported helpers are reused here).
 *
 * Rotary settings as transformers 5.18's Phi3Config resolves them:
 *   - rope_theta and partial_rotary_factor: from the rope dict (rope_scaling or rope_parameters) when it has them,
 *     else the top-level keys; rotaryDim = int(head_dim · partial_rotary_factor), which must be even (Phi-4-mini:
 *     0.75 of 128 = 96 dims rotate, the rest pass through).
 *   - scaling types default and longrope (old name su); anything else is refused (transformers itself rejects it,
 *     and maps a Phi-3 "yarn" onto longrope, which is no YaRN: refused rather than guessed).
 *   - longrope's original context is config.json's top-level original_max_position_embeddings (default 4096),
 *     which transformers 5.18 puts above the rope dict's own; a rope dict naming a different one is refused
 *     (older transformers read that one instead).
 * sliding_window: every layer attends to the last sliding_window keys (query i sees i − w < j ≤ i), as
 * transformers 5.18's Phi-3 mask does when the key is set (null = global).
 */
import { join } from 'node:path';
import type { HfFolder } from '../checkpoint/hf.js';
import { GenepruneError } from '../errors.js';
import { bindHfTensors, sameShape, shapeText, type TensorBinding } from './bind.js';
import { type ConfigReader, configReader, derivedTensor } from './hfconfig.js';
import {
  checkIntermediatePerLayer,
  kvMaps,
  llamaRoleShapes,
  perLayerCounts,
  provenanceOfFolder,
  rotaryDecoderConfig,
} from './llama.js';
import { longropeScalingFromHf, type RopeScaling, type RopeScalingSource } from './rope.js';
import {
  type Activation,
  intermediateOf,
  type ModelConfig,
  type ModelSpec,
  type TensorSource,
} from './spec.js';

const ACTIVATION_TO_HF: Record<Activation, string> = {
  silu: 'silu',
  gelu: 'gelu',
  gelu_tanh: 'gelu_pytorch_tanh',
  relu: 'relu',
};

/** Phi3Config's defaults where config.json leaves a key out. */
const PHI3_DEFAULTS = { maxPositions: 4096, originalMaxPositions: 4096, eps: 1e-5, theta: 10000 } as const;

// ---------------------------------------------------------------------------------------------------------
// config.json → ModelConfig

interface Phi3Rope {
  theta: number;
  rotaryDim: number;
  scaling?: RopeScaling;
}

function phi3Rope(r: ConfigReader, headDim: number, maxPositions: number): Phi3Rope {
  const num = (v: unknown, what: string): number => {
    if (typeof v !== 'number' || !(v > 0) || !Number.isFinite(v)) {
      throw r.fail(`${what} must be a positive number, got ${JSON.stringify(v)}`);
    }
    return v;
  };
  let source: RopeScalingSource | undefined;
  for (const key of ['rope_scaling', 'rope_parameters'] as const) {
    if (!r.present(key)) continue;
    const value = r.json[key];
    if (typeof value !== 'object' || Array.isArray(value)) throw r.fail(`"${key}" must be an object or null`);
    if (source) {
      throw r.fail(
        'both rope_scaling and rope_parameters are given: give one (transformers would read only one)',
      );
    }
    source = { key, value: value as Record<string, unknown> };
  }
  const dict = source?.value ?? {};
  const has = (field: string) => dict[field] !== undefined && dict[field] !== null;
  const theta = has('rope_theta')
    ? num(dict.rope_theta, `${source?.key}.rope_theta`)
    : r.positive('rope_theta', PHI3_DEFAULTS.theta);
  const partial = has('partial_rotary_factor')
    ? num(dict.partial_rotary_factor, `${source?.key}.partial_rotary_factor`)
    : r.positive('partial_rotary_factor', 1);
  const partialKey = has('partial_rotary_factor')
    ? `${source?.key}.partial_rotary_factor`
    : 'partial_rotary_factor';
  if (partial > 1)
    throw r.fail(`${partialKey} ${partial} exceeds 1 (it is the fraction of each head that rotates)`);
  // transformers truncates head_dim · factor to an integer, then rotates pairs over it.
  const rotaryDim = Math.trunc(headDim * partial);
  if (rotaryDim < 2 || rotaryDim % 2 !== 0) {
    throw r.fail(
      `${partialKey} ${partial} gives ${rotaryDim} rotary dimensions of head_dim ${headDim}: rotary embedding needs an even number ≥ 2`,
    );
  }
  const kind = dict.rope_type ?? dict.type ?? 'default';
  if (kind === 'default') return { theta, rotaryDim };
  if (kind !== 'longrope' && kind !== 'su') {
    throw r.fail(
      `${source?.key} type ${JSON.stringify(kind)} is not supported for phi3 (supported: default, longrope, su)`,
    );
  }
  const originalMaxPositions = r.int('original_max_position_embeddings', PHI3_DEFAULTS.originalMaxPositions);
  if (
    has('original_max_position_embeddings') &&
    dict.original_max_position_embeddings !== originalMaxPositions
  ) {
    throw r.fail(
      `${source?.key}.original_max_position_embeddings ${JSON.stringify(dict.original_max_position_embeddings)} differs from the original context ${originalMaxPositions} transformers 5.18 uses (top-level original_max_position_embeddings, default 4096): make them agree`,
    );
  }
  const scaling = longropeScalingFromHf(
    source as RopeScalingSource,
    { rotaryDim, maxPositions, originalMaxPositions },
    r.fail,
  );
  return { theta, rotaryDim, scaling };
}

export function phi3ConfigFromHf(json: Record<string, unknown>, configPath: string): ModelConfig {
  const r = configReader(json, configPath);
  if (json.model_type !== 'phi3') {
    throw r.fail(`model_type ${JSON.stringify(json.model_type)} is not supported here (supported: phi3)`);
  }
  const hiddenSize = r.int('hidden_size');
  const numLayers = r.int('num_hidden_layers');
  const numHeads = r.int('num_attention_heads');
  const numKvHeads = r.int('num_key_value_heads', numHeads);
  if (numHeads % numKvHeads !== 0) {
    throw r.fail(`num_attention_heads ${numHeads} is not a multiple of num_key_value_heads ${numKvHeads}`);
  }
  if (!r.present('head_dim') && hiddenSize % numHeads !== 0) {
    throw r.fail(
      `hidden_size ${hiddenSize} is not a multiple of num_attention_heads ${numHeads} and head_dim is unset`,
    );
  }
  const headDim = r.int('head_dim', hiddenSize / numHeads);
  const maxPositions = r.int('max_position_embeddings', PHI3_DEFAULTS.maxPositions);
  const rope = phi3Rope(r, headDim, maxPositions);
  // Phi-3's linears carry no biases; a config asking for them describes another model.
  for (const key of ['attention_bias', 'mlp_bias']) {
    if (r.bool(key, false))
      throw r.fail(`"${key}" true is not supported (Phi-3's projections have no biases)`);
  }

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

  const config: ModelConfig = {
    family: 'phi3',
    arch: 'decoder',
    modelType: 'phi3',
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
    normEps: r.positive('rms_norm_eps', PHI3_DEFAULTS.eps),
    activation: r.activation('hidden_act', 'silu'),
    mlpKind: 'gated',
    positionKind: 'rope',
    ropeTheta: rope.theta,
    ...(rope.rotaryDim !== headDim ? { rotaryDim: rope.rotaryDim } : {}),
    ...(rope.scaling ? { ropeScaling: rope.scaling } : {}),
    attentionBias: false,
    attentionOutBias: false,
    mlpBias: false,
    tieEmbeddings: r.bool('tie_word_embeddings', false),
  };
  if (r.present('sliding_window')) {
    const window = r.int('sliding_window');
    config.slidingWindow = Array(numLayers).fill(window);
  }
  if (kvHeadOfQuery) config.kvHeadOfQuery = kvHeadOfQuery;
  // Only the export reads it: stock transformers sizes the embedding's padding row from it (default 32000).
  const pad = r.tokenId('pad_token_id');
  if (pad !== undefined) config.padTokenId = pad;
  const bos = r.tokenId('bos_token_id');
  const eos = r.tokenId('eos_token_id');
  if (bos !== undefined) config.bosTokenId = bos;
  if (eos !== undefined) config.eosTokenId = eos;
  return config;
}

// ---------------------------------------------------------------------------------------------------------
// roles ↔ Hugging Face names

/** A stored tensor and the spec roles its row ranges are. */
interface FusedLayout {
  name: string;
  /** Stored shape [rows, D]. */
  shape: [number, number];
  /** Role and its rows [r0, r1) of the stored tensor. */
  parts: Array<{ role: string; r0: number; r1: number }>;
}

/** Per layer, the two fused tensors of `config` (sizes from the layer's own head counts). */
function fusedLayouts(config: ModelConfig): FusedLayout[] {
  const { hiddenSize: D, headDim: hd } = config;
  const out: FusedLayout[] = [];
  for (let l = 0; l < config.numLayers; l++) {
    const p = `layers.${l}`;
    const I = intermediateOf(config, l);
    const q = config.headsPerLayer[l] * hd;
    const kv = config.kvHeadsPerLayer[l] * hd;
    out.push({
      name: `model.layers.${l}.self_attn.qkv_proj.weight`,
      shape: [q + 2 * kv, D],
      parts: [
        { role: `${p}.attn.q.weight`, r0: 0, r1: q },
        { role: `${p}.attn.k.weight`, r0: q, r1: q + kv },
        { role: `${p}.attn.v.weight`, r0: q + kv, r1: q + 2 * kv },
      ],
    });
    out.push({
      name: `model.layers.${l}.mlp.gate_up_proj.weight`,
      shape: [2 * I, D],
      parts: [
        { role: `${p}.mlp.gate.weight`, r0: 0, r1: I },
        { role: `${p}.mlp.up.weight`, r0: I, r1: 2 * I },
      ],
    });
  }
  return out;
}

/** The Hugging Face name of every role that is stored alone. */
const PLAIN_NAMES: Array<[RegExp, string]> = [
  [/^embed\.tokens$/, 'model.embed_tokens.weight'],
  [/^layers\.(\d+)\.attn_norm\.weight$/, 'model.layers.$1.input_layernorm.weight'],
  [/^layers\.(\d+)\.attn\.o\.weight$/, 'model.layers.$1.self_attn.o_proj.weight'],
  [/^layers\.(\d+)\.mlp_norm\.weight$/, 'model.layers.$1.post_attention_layernorm.weight'],
  [/^layers\.(\d+)\.mlp\.down\.weight$/, 'model.layers.$1.mlp.down_proj.weight'],
  [/^final_norm\.weight$/, 'model.norm.weight'],
  [/^lm_head\.weight$/, 'lm_head.weight'],
];

function plainName(role: string): string | undefined {
  for (const [re, name] of PLAIN_NAMES) if (re.test(role)) return role.replace(re, name);
  return undefined;
}

// ---------------------------------------------------------------------------------------------------------
// Hugging Face folder → spec

export function phi3SpecFromHf(folder: HfFolder): ModelSpec {
  const configPath = join(folder.dir, 'config.json');
  const config = phi3ConfigFromHf(folder.config, configPath);
  const D = config.hiddenSize;
  const bindings: TensorBinding[] = [];
  for (const [role, shape] of llamaRoleShapes(config)) {
    const name = plainName(role);
    if (name) bindings.push({ role, name, hfShape: shape });
  }
  for (const f of fusedLayouts(config)) {
    for (const part of f.parts) {
      // Each role reads its rows of the fused tensor when the graph asks for it, not before.
      bindings.push({
        role: part.role,
        name: f.name,
        hfShape: f.shape,
        derive: (stored) =>
          derivedTensor([part.r1 - part.r0, D], stored, (data) => data.slice(part.r0 * D, part.r1 * D)),
      });
    }
  }
  const why =
    folder.config.tie_word_embeddings === true
      ? ''
      : folder.config.tie_word_embeddings === false
        ? 'config.json sets tie_word_embeddings false'
        : 'config.json does not set tie_word_embeddings (default false)';
  const tensors = bindHfTensors(folder, bindings, {
    ignorable: (name) =>
      /\.rotary_emb\.(inv_freq|original_inv_freq)$/.test(name) ||
      (name === 'lm_head.weight' && config.tieEmbeddings),
    what: 'phi3 model',
    missingHead: `tensor lm_head.weight is missing and ${why}`,
  });
  const provenance = provenanceOfFolder(folder, configPath);
  return { config, tensors, source: folder.dir, ...(provenance ? { provenance } : {}) };
}

// ---------------------------------------------------------------------------------------------------------
// spec → Hugging Face

function modelError(spec: ModelSpec, message: string): GenepruneError {
  return new GenepruneError('model', message, spec.source);
}

/** partial_rotary_factor written so that transformers' int(head_dim · factor) gives rotaryDim back. */
function partialFactor(rotaryDim: number, headDim: number): number {
  const exact = rotaryDim / headDim;
  return Math.trunc(headDim * exact) === rotaryDim ? exact : (rotaryDim + 0.5) / headDim;
}

/** config.json and tensors by Hugging Face name (Phi3ForCausalLM) for a phi3 spec; q/k/v and gate/up fused back. */
export function phi3SpecToHf(spec: ModelSpec): {
  config: Record<string, unknown>;
  tensors: Map<string, TensorSource>;
} {
  const c = spec.config;
  if (c.family !== 'phi3') throw modelError(spec, `not a Phi-3 model (family ${c.family})`);
  if (c.attentionBias || c.attentionOutBias || c.mlpBias) {
    throw modelError(spec, 'a phi3 config.json cannot express biases');
  }
  const windows = new Set(c.slidingWindow ?? []);
  if (windows.size > 1 || windows.has(0)) {
    throw modelError(spec, 'a phi3 config.json gives every layer the same sliding window (or none)');
  }
  const need = (role: string, shape: readonly number[]): TensorSource => {
    const t = spec.tensors.get(role);
    if (!t) throw modelError(spec, `tensor ${role} is missing from the model`);
    if (!sameShape(t.shape, shape)) {
      throw modelError(
        spec,
        `tensor ${role} has shape ${shapeText(t.shape)}, the config implies ${shapeText(shape)}`,
      );
    }
    return t;
  };
  const shapes = new Map(llamaRoleShapes(c));
  const tensors = new Map<string, TensorSource>();
  const fused = new Map(fusedLayouts(c).flatMap((f) => f.parts.map((p) => [p.role, f] as const)));
  for (const [role, shape] of shapes) {
    const f = fused.get(role);
    if (!f) {
      tensors.set(plainName(role)!, need(role, shape));
      continue;
    }
    if (tensors.has(f.name)) continue;
    const parts = f.parts.map((p) => need(p.role, shapes.get(p.role)!));
    tensors.set(f.name, {
      shape: f.shape,
      dtype: parts[0].dtype,
      load: async () => {
        const out = new Float32Array(f.shape[0] * f.shape[1]);
        for (let i = 0; i < parts.length; i++) out.set(await parts[i].load(), f.parts[i].r0 * f.shape[1]);
        return out;
      },
    });
  }
  const scaling = c.ropeScaling;
  if (scaling && scaling.kind !== 'longrope') {
    throw modelError(spec, `a phi3 config.json cannot express rotary scaling ${scaling.kind}`);
  }
  const config: Record<string, unknown> = {
    architectures: ['Phi3ForCausalLM'],
    model_type: 'phi3',
    ...rotaryDecoderConfig(c),
    hidden_act: ACTIVATION_TO_HF[c.activation],
    sliding_window: windows.size === 1 ? [...windows][0] : null,
    // Phi3Config's default (32000) is no row of a smaller vocabulary, and transformers then refuses to build the
    // embedding: an id outside the vocabulary is written as null (no padding row; inference is the same).
    pad_token_id: c.padTokenId !== undefined && c.padTokenId < c.vocabSize ? c.padTokenId : null,
  };
  if (c.rotaryDim !== undefined && c.rotaryDim !== c.headDim) {
    config.partial_rotary_factor = partialFactor(c.rotaryDim, c.headDim);
  }
  if (scaling) config.original_max_position_embeddings = scaling.originalMaxPositions;
  return { config, tensors };
}
