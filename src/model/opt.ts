/**
 * OPT (Hugging Face model_type opt: facebook/opt-125m … 66b, the model of the Wanda and SparseGPT papers'
 * tables) ↔ ModelSpec: config mapping and weight layout only.
 *
 * OPT is a pre-LayerNorm decoder (LayerNorm with weight and bias, eps 1e-5: transformers builds nn.LayerNorm
 * without a config key for it) with learned absolute positions, a plain MLP fc1 → ReLU → fc2, biases on q/k/v,
 * out_proj, fc1 and fc2, and a head tied to the token embedding. Its position table has two extra rows in front:
 * token position p reads row p + 2 (positionOffset 2), so embed_positions is [max_position_embeddings + 2, D].
 * transformers derives the positions from the attention mask (cumsum − 1), which for unpadded and right-padded
 * rows is 0 … n−1 for the real tokens, exactly what the evaluation graph uses; the KV-cache graph takes
 * position_ids, which transformers.js computes from the mask the same way.
 *
 * Hugging Face names (OPTForCausalLM: `model.decoder.`; the older uploads such as facebook/opt-125m's own files
 * name the base model's modules `decoder.` with no `model.`; both load):
 *   embed_tokens, embed_positions, layers.N.self_attn_layer_norm → attn_norm, self_attn.{q,k,v,out}_proj →
 *   attn.{q,k,v,o}, final_layer_norm (in a layer) → mlp_norm, fc1 → mlp.up, fc2 → mlp.down,
 *   final_layer_norm (after the layers) → final_norm; lm_head.weight only when untied.
 *
 * Refused in one line naming config.json and the key, because the decoder graph would compute something else:
 * do_layer_norm_before false (opt-350m's post-norm), word_embed_proj_dim ≠ hidden_size (opt-350m's project_in /
 * project_out), _remove_final_layer_norm true (no final norm), layer_norm_elementwise_affine false (norms without
 * weight and bias). enable_bias false is honoured: the four projections, fc1 and fc2 then have no biases (the
 * norms keep theirs, as transformers' nn.LayerNorm does).
 *
 * Physically pruned models use the decoder families' per-layer keys (num_attention_heads_per_layer, and
 * num_key_value_heads_per_layer equal to it: OPT has no grouped KV heads).
 */
import { join } from 'node:path';
import type { HfFolder } from '../checkpoint/hf.js';
import { GenepruneError } from '../errors.js';
import { bindHfTensors, sameShape, shapeText } from './bind.js';
import { configReader } from './hfconfig.js';
import {
  checkIntermediatePerLayer,
  INTERMEDIATE_PER_LAYER,
  intermediateWidths,
  perLayerCounts,
  provenanceOfFolder,
} from './llama.js';
import {
  type Activation,
  intermediateOf,
  type ModelConfig,
  type ModelSpec,
  type TensorSource,
} from './spec.js';

/** OPT's learned positions start this many rows into embed_positions. */
export const OPT_POSITION_OFFSET = 2;
/** The LayerNorm eps transformers' OPT uses (nn.LayerNorm's default; config.json has no key for it). */
const OPT_NORM_EPS = 1e-5;

const ACTIVATION_TO_HF: Record<Activation, string> = {
  silu: 'silu',
  gelu: 'gelu',
  gelu_tanh: 'gelu_new',
  relu: 'relu',
};

// ---------------------------------------------------------------------------------------------------------
// config.json → ModelConfig

export function optConfigFromHf(json: Record<string, unknown>, configPath: string): ModelConfig {
  const r = configReader(json, configPath);
  const hiddenSize = r.int('hidden_size');
  const numLayers = r.int('num_hidden_layers');
  const numHeads = r.int('num_attention_heads');
  if (hiddenSize % numHeads !== 0) {
    throw r.fail(`hidden_size ${hiddenSize} is not a multiple of num_attention_heads ${numHeads}`);
  }
  if (!r.bool('do_layer_norm_before', true)) {
    throw r.fail(
      'do_layer_norm_before false is not supported (post-norm OPT, e.g. opt-350m: the decoder graph normalises before each block)',
    );
  }
  if (r.present('word_embed_proj_dim') && r.int('word_embed_proj_dim') !== hiddenSize) {
    throw r.fail(
      `word_embed_proj_dim ${String(json.word_embed_proj_dim)} differs from hidden_size ${hiddenSize} (project_in / project_out are not supported)`,
    );
  }
  if (r.bool('_remove_final_layer_norm', false)) {
    throw r.fail(
      '_remove_final_layer_norm true is not supported (the decoder graph always has a final norm)',
    );
  }
  if (!r.bool('layer_norm_elementwise_affine', true)) {
    throw r.fail('layer_norm_elementwise_affine false is not supported (norms without weight and bias)');
  }
  const bias = r.bool('enable_bias', true);
  const maxPositions = r.int('max_position_embeddings', 2048);
  const headsPerLayer = perLayerCounts(json, 'num_attention_heads_per_layer', numLayers, numHeads, r.fail);
  if (r.present('num_key_value_heads_per_layer')) {
    const kv = perLayerCounts(json, 'num_key_value_heads_per_layer', numLayers, numHeads, r.fail);
    if (kv.some((k, l) => k !== headsPerLayer[l])) {
      throw r.fail(
        '"num_key_value_heads_per_layer" must equal the query heads of each layer (OPT has no grouped KV heads)',
      );
    }
  }
  if (r.present('num_key_value_heads') && r.int('num_key_value_heads') !== numHeads) {
    throw r.fail(
      `num_key_value_heads ${String(json.num_key_value_heads)} differs from num_attention_heads ${numHeads} (OPT has no grouped KV heads)`,
    );
  }
  const intermediateSize = r.int('ffn_dim', 3072);
  const intermediatePerLayer = checkIntermediatePerLayer(json, numLayers, intermediateSize, r.fail);

  const config: ModelConfig = {
    family: 'opt',
    arch: 'decoder',
    modelType: 'opt',
    hiddenSize,
    numLayers,
    numHeads,
    numKvHeads: numHeads,
    headDim: hiddenSize / numHeads,
    headsPerLayer,
    kvHeadsPerLayer: [...headsPerLayer],
    intermediateSize,
    ...(intermediatePerLayer ? { intermediatePerLayer } : {}),
    vocabSize: r.int('vocab_size'),
    maxPositions,
    normKind: 'layer',
    normPlacement: 'pre',
    normEps: OPT_NORM_EPS,
    activation: r.activation('activation_function', 'relu'),
    mlpKind: 'plain',
    positionKind: 'learned',
    positionOffset: OPT_POSITION_OFFSET,
    ropeTheta: 0,
    attentionBias: bias,
    attentionOutBias: bias,
    mlpBias: bias,
    tieEmbeddings: r.bool('tie_word_embeddings', true),
  };
  const bos = r.tokenId('bos_token_id');
  const eos = r.tokenId('eos_token_id');
  if (bos !== undefined) config.bosTokenId = bos;
  if (eos !== undefined) config.eosTokenId = eos;
  return config;
}

// ---------------------------------------------------------------------------------------------------------
// roles, shapes and Hugging Face names

/** Every role of an OPT spec with its shape, in a stable order. */
export function optRoleShapes(c: ModelConfig): Array<[string, number[]]> {
  const { hiddenSize: D, vocabSize: V, headDim: hd } = c;
  const out: Array<[string, number[]]> = [
    ['embed.tokens', [V, D]],
    ['embed.positions', [(c.positionOffset ?? 0) + c.maxPositions, D]],
  ];
  for (let l = 0; l < c.numLayers; l++) {
    const p = `layers.${l}`;
    const q = c.headsPerLayer[l] * hd;
    const I = intermediateOf(c, l);
    out.push([`${p}.attn_norm.weight`, [D]], [`${p}.attn_norm.bias`, [D]]);
    for (const name of ['q', 'k', 'v'] as const) {
      out.push([`${p}.attn.${name}.weight`, [q, D]]);
      if (c.attentionBias) out.push([`${p}.attn.${name}.bias`, [q]]);
    }
    out.push([`${p}.attn.o.weight`, [D, q]]);
    if (c.attentionOutBias) out.push([`${p}.attn.o.bias`, [D]]);
    out.push([`${p}.mlp_norm.weight`, [D]], [`${p}.mlp_norm.bias`, [D]]);
    out.push([`${p}.mlp.up.weight`, [I, D]]);
    if (c.mlpBias) out.push([`${p}.mlp.up.bias`, [I]]);
    out.push([`${p}.mlp.down.weight`, [D, I]]);
    if (c.mlpBias) out.push([`${p}.mlp.down.bias`, [D]]);
  }
  out.push(['final_norm.weight', [D]], ['final_norm.bias', [D]]);
  if (!c.tieEmbeddings) out.push(['lm_head.weight', [V, D]]);
  return out;
}

const NAMES: Array<[RegExp, string]> = [
  [/^embed\.tokens$/, 'embed_tokens.weight'],
  [/^embed\.positions$/, 'embed_positions.weight'],
  [/^layers\.(\d+)\.attn_norm\.(weight|bias)$/, 'layers.$1.self_attn_layer_norm.$2'],
  [/^layers\.(\d+)\.attn\.([qkv])\.(weight|bias)$/, 'layers.$1.self_attn.$2_proj.$3'],
  [/^layers\.(\d+)\.attn\.o\.(weight|bias)$/, 'layers.$1.self_attn.out_proj.$2'],
  [/^layers\.(\d+)\.mlp_norm\.(weight|bias)$/, 'layers.$1.final_layer_norm.$2'],
  [/^layers\.(\d+)\.mlp\.up\.(weight|bias)$/, 'layers.$1.fc1.$2'],
  [/^layers\.(\d+)\.mlp\.down\.(weight|bias)$/, 'layers.$1.fc2.$2'],
  [/^final_norm\.(weight|bias)$/, 'final_layer_norm.$1'],
];

/** The Hugging Face name of an OPT role, its base-model modules under `prefix` (lm_head.weight has none). */
export function optHfNameOfRole(role: string, prefix: string): string {
  if (role === 'lm_head.weight') return role;
  for (const [re, name] of NAMES) if (re.test(role)) return prefix + role.replace(re, name);
  throw new GenepruneError('internal', `no Hugging Face OPT name for role ${role}`);
}

// ---------------------------------------------------------------------------------------------------------
// Hugging Face folder → spec

export function optSpecFromHf(folder: HfFolder): ModelSpec {
  const configPath = join(folder.dir, 'config.json');
  const config = optConfigFromHf(folder.config, configPath);
  // OPTForCausalLM names its base model model.decoder.*; older uploads (facebook/opt-125m's files) decoder.*.
  const prefix = folder.tensors.has('decoder.embed_tokens.weight') ? 'decoder.' : 'model.decoder.';
  const tensors = bindHfTensors(
    folder,
    optRoleShapes(config).map(([role, shape]) => ({
      role,
      name: optHfNameOfRole(role, prefix),
      hfShape: shape,
    })),
    {
      // A tied model may still carry a copy of the head.
      ignorable: (name) => name === 'lm_head.weight' && config.tieEmbeddings,
      what: 'opt model',
      missingHead: 'tensor lm_head.weight is missing and config.json sets tie_word_embeddings false',
    },
  );
  const provenance = provenanceOfFolder(folder, configPath);
  return { config, tensors, source: folder.dir, ...(provenance ? { provenance } : {}) };
}

// ---------------------------------------------------------------------------------------------------------
// spec → Hugging Face

/**
 * config.json and tensors by Hugging Face name (OPTForCausalLM layout, `model.decoder.`) for an OPT spec, the
 * inverse of optSpecFromHf. Fails in one line for what an opt config.json cannot say.
 */
export function optSpecToHf(spec: ModelSpec): {
  config: Record<string, unknown>;
  tensors: Map<string, TensorSource>;
} {
  const c = spec.config;
  const fail = (m: string) => new GenepruneError('model', m, spec.source);
  if (c.family !== 'opt') throw fail(`not an OPT model (family ${c.family})`);
  const problems: string[] = [];
  if (c.normKind !== 'layer' || c.normPlacement !== 'pre') problems.push('norms are not pre-LayerNorm');
  if (c.normEps !== OPT_NORM_EPS) problems.push(`norm eps is ${c.normEps}, OPT fixes ${OPT_NORM_EPS}`);
  if (c.mlpKind !== 'plain') problems.push('the MLP is gated');
  if (c.positionKind !== 'learned' || (c.positionOffset ?? 0) !== OPT_POSITION_OFFSET)
    problems.push(`positions are not learned with offset ${OPT_POSITION_OFFSET}`);
  if (c.attentionBias !== c.attentionOutBias || c.attentionBias !== c.mlpBias)
    problems.push('the projections and the MLP disagree on biases (enable_bias covers all)');
  if (c.attnScale !== undefined && c.attnScale !== c.headDim ** -0.5)
    problems.push('scores use their own scale');
  if (c.kvHeadsPerLayer.some((k, l) => k !== c.headsPerLayer[l]) || c.kvHeadOfQuery)
    problems.push('query heads share KV heads');
  if (c.numHeads * c.headDim !== c.hiddenSize) problems.push('heads × head size differs from hidden_size');
  if (c.embedScale !== undefined && c.embedScale !== 1) problems.push('embeddings are scaled');
  if (c.attnSoftcap || c.finalSoftcap || c.sandwichNorms || (c.slidingWindow ?? []).some((w) => w > 0))
    problems.push('attention is soft-capped, windowed or sandwich-normed');
  if (problems.length > 0) throw fail(`an opt config.json cannot express this model: ${problems.join('; ')}`);

  const config: Record<string, unknown> = {
    architectures: ['OPTForCausalLM'],
    model_type: 'opt',
    hidden_size: c.hiddenSize,
    word_embed_proj_dim: c.hiddenSize,
    num_hidden_layers: c.numLayers,
    num_attention_heads: c.numHeads,
    ffn_dim: c.intermediateSize,
    max_position_embeddings: c.maxPositions,
    vocab_size: c.vocabSize,
    activation_function: ACTIVATION_TO_HF[c.activation],
    do_layer_norm_before: true,
    enable_bias: c.attentionBias,
    layer_norm_elementwise_affine: true,
    tie_word_embeddings: c.tieEmbeddings,
    torch_dtype: 'float32',
  };
  if (c.bosTokenId !== undefined) config.bos_token_id = c.bosTokenId;
  if (c.eosTokenId !== undefined) config.eos_token_id = c.eosTokenId;
  if (c.headsPerLayer.some((h) => h !== c.numHeads)) {
    config.num_attention_heads_per_layer = [...c.headsPerLayer];
    config.num_key_value_heads_per_layer = [...c.kvHeadsPerLayer];
  }
  if (config.num_attention_heads_per_layer || c.intermediatePerLayer) {
    config[INTERMEDIATE_PER_LAYER] = intermediateWidths(c);
  }

  const tensors = new Map<string, TensorSource>();
  for (const [role, shape] of optRoleShapes(c)) {
    const t = spec.tensors.get(role);
    if (!t) throw fail(`tensor ${role} is missing from the model`);
    if (!sameShape(t.shape, shape)) {
      throw fail(`tensor ${role} has shape ${shapeText(t.shape)}, the config implies ${shapeText(shape)}`);
    }
    tensors.set(optHfNameOfRole(role, 'model.decoder.'), t);
  }
  return { config, tensors };
}
