/**
 * The T5 family (Hugging Face model_type t5: T5 v1.0, T5 v1.1 / Flan-T5, CodeT5 and CodeT5+ 220M in T5's layout)
 * ↔ ModelSpec: encoder-decoders (arch 'encdec', EncDecConfig in spec.ts). This file holds the roles and their
 * shapes; config.json and tensor names are mapped below them.
 */
import { join } from 'node:path';
import type { HfFolder } from '../checkpoint/hf.js';
import { fileError, GenepruneError } from '../errors.js';
import { bindHfTensors, sameShape, specTensor } from './bind.js';
import { configReader } from './hfconfig.js';
import {
  type Activation,
  type EncDecConfig,
  encdecOf,
  type ModelConfig,
  type ModelSpec,
  type TensorSource,
} from './spec.js';

/** The feed_forward_proj values geneprune runs. */
export type T5FeedForward = 'relu' | 'gated-gelu' | 'gated-silu';

/** The sizes a T5 model is made of (config.json's d_model, d_kv, num_heads, d_ff, num_layers, ...). */
export interface T5Sizes {
  modelType?: string;
  hiddenSize: number;
  headDim: number;
  numHeads: number;
  intermediateSize: number;
  encoderLayers: number;
  decoderLayers: number;
  vocabSize: number;
  relativeBuckets: number;
  relativeMaxDistance: number;
  /**
   * v1.0 / CodeT5: 'relu' plain MLP; v1.1 / Flan-T5: gated GELU (tanh approximation); 'gated-silu': gated SiLU
   * (config feed_forward_proj, as transformers reads it).
   */
  feedForward: T5FeedForward;
  tieEmbeddings: boolean;
  normEps: number;
  /** The longest rows the graphs accept (config n_positions; relative positions themselves have no end). */
  maxPositions: number;
  padTokenId: number;
  eosTokenId: number;
  decoderStartTokenId: number;
}

/** The activation of each feed_forward_proj (transformers maps gated-gelu to gelu_new, the tanh approximation). */
const FEED_FORWARD: Record<T5FeedForward, Activation> = {
  relu: 'relu',
  'gated-gelu': 'gelu_tanh',
  'gated-silu': 'silu',
};

/** The ModelConfig of an unpruned T5 model of these sizes. */
export function t5ConfigOf(s: T5Sizes): ModelConfig {
  const numLayers = s.encoderLayers + s.decoderLayers;
  const encdec: EncDecConfig = {
    encoderLayers: s.encoderLayers,
    crossHeadsPerLayer: Array(s.decoderLayers).fill(s.numHeads),
    relativeBuckets: s.relativeBuckets,
    relativeMaxDistance: s.relativeMaxDistance,
    encoderBiasColumns: s.numHeads,
    decoderBiasColumns: s.numHeads,
    decoderStartTokenId: s.decoderStartTokenId,
    // transformers scales the decoder output by d_model^-0.5 exactly when the head is tied to the embedding.
    outputScale: s.tieEmbeddings ? s.hiddenSize ** -0.5 : 1,
  };
  return {
    family: 't5',
    arch: 'encdec',
    modelType: s.modelType ?? 't5',
    hiddenSize: s.hiddenSize,
    numLayers,
    numHeads: s.numHeads,
    numKvHeads: s.numHeads,
    headDim: s.headDim,
    headsPerLayer: Array(numLayers).fill(s.numHeads),
    kvHeadsPerLayer: Array(numLayers).fill(s.numHeads),
    intermediateSize: s.intermediateSize,
    vocabSize: s.vocabSize,
    maxPositions: s.maxPositions,
    normKind: 'rms',
    normPlacement: 'pre',
    normEps: s.normEps,
    activation: FEED_FORWARD[s.feedForward],
    mlpKind: s.feedForward === 'relu' ? 'plain' : 'gated',
    positionKind: 'learned', // unused: positions enter only through the relative bias
    ropeTheta: 0,
    attentionBias: false,
    attentionOutBias: false,
    mlpBias: false,
    tieEmbeddings: s.tieEmbeddings,
    padTokenId: s.padTokenId,
    eosTokenId: s.eosTokenId,
    encdec,
  };
}

/** Every tensor role of a T5 spec with its shape, in a fixed order (embedding, encoder, decoder, head). */
export function t5RoleShapes(c: ModelConfig): Array<[string, number[]]> {
  const e = c.encdec;
  if (!e) throw new Error('t5RoleShapes: not an encoder-decoder config');
  const D = c.hiddenSize;
  const hd = c.headDim;
  const out: Array<[string, number[]]> = [['embed.tokens', [c.vocabSize, D]]];
  for (let i = 0; i < c.numLayers; i++) {
    if (i === 0) out.push(['rel_bias.encoder.weight', [e.relativeBuckets, e.encoderBiasColumns]]);
    if (i === e.encoderLayers) {
      out.push(['encoder_norm.weight', [D]]);
      out.push(['rel_bias.decoder.weight', [e.relativeBuckets, e.decoderBiasColumns]]);
    }
    const h = c.headsPerLayer[i];
    const p = `layers.${i}`;
    out.push([`${p}.attn_norm.weight`, [D]]);
    out.push([`${p}.attn.q.weight`, [h * hd, D]]);
    out.push([`${p}.attn.k.weight`, [h * hd, D]]);
    out.push([`${p}.attn.v.weight`, [h * hd, D]]);
    out.push([`${p}.attn.o.weight`, [D, h * hd]]);
    if (i >= e.encoderLayers) {
      const x = e.crossHeadsPerLayer[i - e.encoderLayers];
      out.push([`${p}.cross_norm.weight`, [D]]);
      out.push([`${p}.cross.q.weight`, [x * hd, D]]);
      out.push([`${p}.cross.k.weight`, [x * hd, D]]);
      out.push([`${p}.cross.v.weight`, [x * hd, D]]);
      out.push([`${p}.cross.o.weight`, [D, x * hd]]);
    }
    out.push([`${p}.mlp_norm.weight`, [D]]);
    if (c.mlpKind === 'gated') out.push([`${p}.mlp.gate.weight`, [c.intermediateSize, D]]);
    out.push([`${p}.mlp.up.weight`, [c.intermediateSize, D]]);
    out.push([`${p}.mlp.down.weight`, [D, c.intermediateSize]]);
  }
  if (e.encoderLayers === c.numLayers) throw new Error('t5RoleShapes: a T5 model needs decoder layers');
  out.push(['final_norm.weight', [D]]);
  if (!c.tieEmbeddings) out.push(['lm_head.weight', [c.vocabSize, D]]);
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// config.json → ModelConfig

/** transformers' T5Config defaults for the fields a config.json may leave out. */
const T5_DEFAULTS = {
  relativeBuckets: 32,
  relativeMaxDistance: 128,
  normEps: 1e-6,
  maxPositions: 512,
  padTokenId: 0,
  eosTokenId: 1,
} as const;

/** The task classes read as an encoder-decoder with its LM head (T5WithLMHeadModel: the class's old name). */
const T5_ARCHITECTURES = ['T5ForConditionalGeneration', 'T5WithLMHeadModel'] as const;

/** What dense_act_fn / is_gated_act transformers derives from each feed_forward_proj (and saves beside it). */
const DERIVED_ACT: Record<T5FeedForward, { dense_act_fn: string; is_gated_act: boolean }> = {
  relu: { dense_act_fn: 'relu', is_gated_act: false },
  'gated-gelu': { dense_act_fn: 'gelu_new', is_gated_act: true },
  'gated-silu': { dense_act_fn: 'silu', is_gated_act: true },
};

/**
 * The ModelConfig of an unpruned T5 checkpoint from its config.json (model_type t5: T5 v1.0, v1.1 / Flan-T5,
 * CodeT5, CodeT5+ 220M). Anything the encoder-decoder graphs would not run as transformers does is refused in one
 * line naming the file.
 */
export function t5ConfigFromHf(json: Record<string, unknown>, configPath: string): ModelConfig {
  const r = configReader(json, configPath);
  r.string('model_type', '', ['t5']);
  if (json.is_encoder_decoder === false) {
    throw r.fail(
      '"is_encoder_decoder" is false: only T5ForConditionalGeneration (encoder and decoder) is supported',
    );
  }
  const archs = json.architectures;
  if (archs !== undefined && archs !== null) {
    if (!Array.isArray(archs) || archs.length !== 1 || typeof archs[0] !== 'string') {
      throw r.fail(`"architectures" must list one architecture name, got ${JSON.stringify(archs)}`);
    }
    if (!(T5_ARCHITECTURES as readonly string[]).includes(archs[0])) {
      throw r.fail(
        `architecture ${archs[0]} is not supported for model_type t5 (supported: T5ForConditionalGeneration, the encoder-decoder with its LM head)`,
      );
    }
  }
  const proj = r.string('feed_forward_proj', 'relu');
  if (!Object.hasOwn(DERIVED_ACT, proj)) {
    throw r.fail(
      `"feed_forward_proj" ${JSON.stringify(proj)} is not supported (supported: ${Object.keys(DERIVED_ACT).join(', ')})`,
    );
  }
  const feedForward = proj as T5FeedForward;
  // transformers derives these from feed_forward_proj, but saved values override it on load: they must agree.
  for (const [key, expected] of Object.entries(DERIVED_ACT[feedForward])) {
    if (r.present(key) && json[key] !== expected) {
      throw r.fail(
        `"${key}" ${JSON.stringify(json[key])} contradicts "feed_forward_proj" ${JSON.stringify(proj)} (which means ${JSON.stringify(expected)})`,
      );
    }
  }
  const encoderLayers = r.int('num_layers');
  const padTokenId = r.int('pad_token_id', T5_DEFAULTS.padTokenId, 0);
  const sizes: T5Sizes = {
    modelType: 't5',
    hiddenSize: r.int('d_model'),
    headDim: r.int('d_kv'),
    numHeads: r.int('num_heads'),
    intermediateSize: r.int('d_ff'),
    encoderLayers,
    decoderLayers: r.int('num_decoder_layers', encoderLayers),
    vocabSize: r.int('vocab_size'),
    relativeBuckets: r.int('relative_attention_num_buckets', T5_DEFAULTS.relativeBuckets),
    relativeMaxDistance: r.int('relative_attention_max_distance', T5_DEFAULTS.relativeMaxDistance),
    feedForward,
    tieEmbeddings: r.bool('tie_word_embeddings', true),
    normEps: r.positive('layer_norm_epsilon', T5_DEFAULTS.normEps),
    maxPositions: r.int('n_positions', T5_DEFAULTS.maxPositions),
    padTokenId,
    eosTokenId: r.int('eos_token_id', T5_DEFAULTS.eosTokenId, 0),
    decoderStartTokenId: r.int('decoder_start_token_id', padTokenId, 0),
  };
  for (const [key, id] of [
    ['pad_token_id', sizes.padTokenId],
    ['eos_token_id', sizes.eosTokenId],
    ['decoder_start_token_id', sizes.decoderStartTokenId],
  ] as const) {
    if (id >= sizes.vocabSize)
      throw r.fail(`"${key}" ${id} is outside the vocabulary (vocab_size ${sizes.vocabSize})`);
  }
  // Buckets per direction (half of them in the encoder) must leave room for the exact and the log-spaced ones.
  if (sizes.relativeBuckets < 4) {
    throw r.fail(`"relative_attention_num_buckets" must be at least 4, got ${sizes.relativeBuckets}`);
  }
  // The decoder's exact buckets cover distances below buckets/2; the log-spaced ones divide by
  // log(max_distance / (buckets/2)), which must be positive.
  if (sizes.relativeMaxDistance <= sizes.relativeBuckets / 2) {
    throw r.fail(
      `"relative_attention_max_distance" ${sizes.relativeMaxDistance} must exceed half the ${sizes.relativeBuckets} buckets (the distances with buckets of their own)`,
    );
  }
  return t5ConfigOf(sizes);
}

// ---------------------------------------------------------------------------------------------------------
// roles ↔ Hugging Face tensor names

/** The Hugging Face name of a T5 role in a config with `encoderLayers` encoder blocks. */
export function t5HfNameOfRole(role: string, encoderLayers: number): string {
  const fixed: Record<string, string> = {
    'embed.tokens': 'shared.weight',
    'rel_bias.encoder.weight': 'encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight',
    'rel_bias.decoder.weight': 'decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight',
    'encoder_norm.weight': 'encoder.final_layer_norm.weight',
    'final_norm.weight': 'decoder.final_layer_norm.weight',
    'lm_head.weight': 'lm_head.weight',
  };
  if (Object.hasOwn(fixed, role)) return fixed[role];
  const m = /^layers\.(\d+)\.(.+)$/.exec(role);
  if (m) {
    const l = Number(m[1]);
    const dec = l >= encoderLayers;
    const block = `${dec ? 'decoder' : 'encoder'}.block.${dec ? l - encoderLayers : l}`;
    // Sub-layers: self-attention 0; the decoder's cross-attention 1; the feed-forward last.
    const ff = dec ? 2 : 1;
    const part = m[2];
    const names: Record<string, string> = {
      'attn_norm.weight': 'layer.0.layer_norm.weight',
      'cross_norm.weight': 'layer.1.layer_norm.weight',
      'mlp_norm.weight': `layer.${ff}.layer_norm.weight`,
      'mlp.gate.weight': `layer.${ff}.DenseReluDense.wi_0.weight`,
      'mlp.down.weight': `layer.${ff}.DenseReluDense.wo.weight`,
    };
    const a = /^(attn|cross)\.([qkvo])\.weight$/.exec(part);
    if (a)
      return `${block}.layer.${a[1] === 'attn' ? 0 : 1}.${a[1] === 'attn' ? 'SelfAttention' : 'EncDecAttention'}.${a[2]}.weight`;
    if (Object.hasOwn(names, part) && (dec || part !== 'cross_norm.weight')) return `${block}.${names[part]}`;
  }
  throw new GenepruneError('internal', `no Hugging Face name for T5 role ${role}`);
}

/** The name of mlp.up: `wi` in a plain (relu) feed-forward, `wi_1` beside the gate `wi_0` in a gated one. */
function hfNameOf(role: string, config: ModelConfig): string {
  const e = encdecOf(config);
  const up = /^layers\.(\d+)\.mlp\.up\.weight$/.exec(role);
  if (up) {
    const l = Number(up[1]);
    const dec = l >= e.encoderLayers;
    const block = `${dec ? 'decoder' : 'encoder'}.block.${dec ? l - e.encoderLayers : l}`;
    return `${block}.layer.${dec ? 2 : 1}.DenseReluDense.${config.mlpKind === 'gated' ? 'wi_1' : 'wi'}.weight`;
  }
  return t5HfNameOfRole(role, e.encoderLayers);
}

/** The highest block index tensor names hold in each stack (−1 when none). */
function highestBlocks(names: Iterable<string>): { encoder: number; decoder: number } {
  const out = { encoder: -1, decoder: -1 };
  for (const name of names) {
    const m = /^(encoder|decoder)\.block\.(\d+)\./.exec(name);
    if (m) out[m[1] as 'encoder' | 'decoder'] = Math.max(out[m[1] as 'encoder' | 'decoder'], Number(m[2]));
  }
  return out;
}

/**
 * Heads present per layer, read from the q shapes of a physically pruned folder: self-attention q of every block,
 * cross-attention q of every decoder block; the bias table's columns from its shape. Unpruned folders give the
 * config's counts back unchanged.
 */
function headsFromShapes(folder: HfFolder, config: ModelConfig, configPath: string): ModelConfig {
  const e = encdecOf(config);
  const rows = (name: string): number | undefined => {
    const t = folder.tensors.get(name);
    if (t?.shape.length !== 2 || t.shape[0] % config.headDim !== 0) return undefined;
    return t.shape[0] / config.headDim;
  };
  const heads = config.headsPerLayer.map(
    (h, l) => rows(t5HfNameOfRole(`layers.${l}.attn.q.weight`, e.encoderLayers)) ?? h,
  );
  const cross = e.crossHeadsPerLayer.map(
    (h, d) => rows(t5HfNameOfRole(`layers.${e.encoderLayers + d}.cross.q.weight`, e.encoderLayers)) ?? h,
  );
  const cols = (role: string, fallback: number) => {
    const t = folder.tensors.get(t5HfNameOfRole(role, e.encoderLayers));
    return t && t.shape.length === 2 ? t.shape[1] : fallback;
  };
  const encoderBiasColumns = cols('rel_bias.encoder.weight', e.encoderBiasColumns);
  const decoderBiasColumns = cols('rel_bias.decoder.weight', e.decoderBiasColumns);
  for (const [l, h] of heads.entries()) {
    const columns = l < e.encoderLayers ? encoderBiasColumns : decoderBiasColumns;
    if (h > config.numHeads || h > columns) {
      throw fileError(
        configPath,
        `layer ${l} has ${h} self-attention heads, more than num_heads ${config.numHeads} or the ${columns} columns of its relative-bias table`,
      );
    }
  }
  if (cross.some((h) => h > config.numHeads)) {
    throw fileError(configPath, `a cross-attention has more heads than num_heads ${config.numHeads}`);
  }
  return {
    ...config,
    headsPerLayer: heads,
    kvHeadsPerLayer: [...heads],
    encdec: { ...e, crossHeadsPerLayer: cross, encoderBiasColumns, decoderBiasColumns },
  };
}

/**
 * config.json key of a physically pruned folder whose self-attention heads read their relative-bias table through a
 * column map (EncDecConfig.relColumnOfQuery): `{"encoder": [[column of each head] per encoder block], "decoder":
 * [... per decoder block]}`. Absent, head h of every layer reads column h. Stock transformers ignores it (it cannot
 * load a compact T5 at all: its attention sizes come from num_heads).
 */
export const REL_COLUMNS_KEY = 'relative_attention_bias_column_of_head';

/** The column map of REL_COLUMNS_KEY, checked against the heads and table columns the tensors hold. */
function relColumnsFromHf(
  json: Record<string, unknown>,
  config: ModelConfig,
  configPath: string,
): ModelConfig {
  const raw = json[REL_COLUMNS_KEY];
  if (raw === undefined || raw === null) return config;
  const e = encdecOf(config);
  const E = e.encoderLayers;
  const fail = (why: string) => fileError(configPath, `"${REL_COLUMNS_KEY}" ${why}`);
  if (typeof raw !== 'object' || Array.isArray(raw))
    throw fail('must be {"encoder": [...], "decoder": [...]}');
  const map: number[][] = [];
  for (const [stack, first, count, columns] of [
    ['encoder', 0, E, e.encoderBiasColumns],
    ['decoder', E, config.numLayers - E, e.decoderBiasColumns],
  ] as const) {
    const layers = (raw as Record<string, unknown>)[stack];
    if (!Array.isArray(layers) || layers.length !== count)
      throw fail(`must list the ${count} ${stack} blocks' columns under "${stack}"`);
    layers.forEach((cols, i) => {
      const heads = config.headsPerLayer[first + i];
      if (
        !Array.isArray(cols) ||
        cols.length !== heads ||
        cols.some((x) => !Number.isInteger(x) || x < 0 || x >= columns)
      ) {
        throw fail(
          `${stack} block ${i}: expected ${heads} column indices below the table's ${columns} columns, got ${JSON.stringify(cols)}`,
        );
      }
      map.push(cols as number[]);
    });
  }
  return { ...config, encdec: { ...e, relColumnOfQuery: map } };
}

// ---------------------------------------------------------------------------------------------------------
// Hugging Face folder → spec

/**
 * A T5ForConditionalGeneration folder as a ModelSpec. The embedding is `shared.weight`; transformers ties
 * encoder.embed_tokens, decoder.embed_tokens (and, when tied, lm_head) to it, so copies of those saved beside it
 * are skipped, and a folder holding only an embed_tokens copy is read from that. Any other tensor is refused.
 */
export function t5SpecFromHf(folder: HfFolder): ModelSpec {
  const configPath = join(folder.dir, 'config.json');
  // Before anything is built per layer (t5ConfigOf fills per-layer arrays): a layer count the tensors cannot back
  // is refused, not allocated.
  const r = configReader(folder.config, configPath);
  const encoderLayers = r.int('num_layers');
  const top = highestBlocks(folder.tensors.keys());
  for (const [key, n, stack] of [
    ['num_layers', encoderLayers, 'encoder'],
    ['num_decoder_layers', r.int('num_decoder_layers', encoderLayers), 'decoder'],
  ] as const) {
    if (n > top[stack] + 1) {
      throw fileError(
        configPath,
        `"${key}" is ${n}, but the checkpoint holds ${top[stack] + 1} ${stack} blocks (${stack}.block.N tensors)`,
      );
    }
  }
  let config = t5ConfigFromHf(folder.config, configPath);
  config = headsFromShapes(folder, config, configPath);
  config = relColumnsFromHf(folder.config, config, configPath);
  const D = config.hiddenSize;
  const embedAliases = ['shared.weight', 'encoder.embed_tokens.weight', 'decoder.embed_tokens.weight'];
  const embedShape = [config.vocabSize, D];
  const tensors = bindHfTensors(
    folder,
    t5RoleShapes(config).map(([role, shape]) => ({ role, name: hfNameOf(role, config), hfShape: shape })),
    {
      lookup: (name) => {
        for (const alias of name === 'shared.weight' ? embedAliases : [name]) {
          const t = folder.tensors.get(alias);
          if (t) return [alias, t];
        }
        return undefined;
      },
      ignorable: (name) => {
        const t = folder.tensors.get(name);
        const tiedCopy = embedAliases.includes(name) || (config.tieEmbeddings && name === 'lm_head.weight');
        return tiedCopy && t !== undefined && sameShape(t.shape, embedShape);
      },
      what: 'T5ForConditionalGeneration model',
      missingHead: 'tie_word_embeddings is false but the checkpoint has no lm_head.weight',
    },
  );
  return { config, tensors, source: folder.dir };
}

// ---------------------------------------------------------------------------------------------------------
// spec → Hugging Face

/**
 * config.json and tensors by Hugging Face name for a T5 spec, exactly as transformers saves a
 * T5ForConditionalGeneration (the inverse of t5SpecFromHf): `shared.weight` once (tied copies left out, as
 * safetensors saving drops them), lm_head.weight only when untied. Physically pruned layers are written at their
 * shapes (t5SpecFromHf reads them back from the q shapes), a bias table read through a column map with its map
 * (REL_COLUMNS_KEY).
 */
export function t5SpecToHf(spec: ModelSpec): {
  config: Record<string, unknown>;
  tensors: Map<string, TensorSource>;
} {
  const c = spec.config;
  const fail = (message: string) => new GenepruneError('model', message, spec.source);
  if (c.family !== 't5' || !c.encdec)
    throw fail(`not a T5 model (family ${c.family}, model_type ${c.modelType})`);
  const e = c.encdec;
  const feedForward = (Object.keys(FEED_FORWARD) as T5FeedForward[]).find(
    (k) => FEED_FORWARD[k] === c.activation && (k === 'relu') === (c.mlpKind === 'plain'),
  );
  const problems: string[] = [];
  if (!feedForward) problems.push(`a ${c.mlpKind} ${c.activation} feed-forward`);
  if (c.normKind !== 'rms' || c.normPlacement !== 'pre') problems.push('norms are not pre-RMS');
  if (c.attentionBias || c.attentionOutBias || c.mlpBias) problems.push('some linears have biases');
  if (c.numKvHeads !== c.numHeads || c.kvHeadsPerLayer.some((k, l) => k !== c.headsPerLayer[l]))
    problems.push('keys and values are grouped');
  const expectedScale = c.tieEmbeddings ? c.hiddenSize ** -0.5 : 1;
  if (Math.abs(e.outputScale - expectedScale) > 1e-12 * expectedScale)
    problems.push(`output scale ${e.outputScale} (transformers uses ${expectedScale})`);
  if (problems.length > 0) throw fail(`a T5 checkpoint cannot express this model: ${problems.join('; ')}`);
  const ff = feedForward as T5FeedForward;
  const config: Record<string, unknown> = {
    architectures: ['T5ForConditionalGeneration'],
    model_type: 't5',
    d_model: c.hiddenSize,
    d_kv: c.headDim,
    d_ff: c.intermediateSize,
    num_heads: c.numHeads,
    num_layers: e.encoderLayers,
    num_decoder_layers: c.numLayers - e.encoderLayers,
    vocab_size: c.vocabSize,
    relative_attention_num_buckets: e.relativeBuckets,
    relative_attention_max_distance: e.relativeMaxDistance,
    feed_forward_proj: ff,
    ...DERIVED_ACT[ff],
    tie_word_embeddings: c.tieEmbeddings,
    layer_norm_epsilon: c.normEps,
    n_positions: c.maxPositions,
    is_encoder_decoder: true,
    pad_token_id: c.padTokenId ?? T5_DEFAULTS.padTokenId,
    eos_token_id: c.eosTokenId ?? T5_DEFAULTS.eosTokenId,
    decoder_start_token_id: e.decoderStartTokenId,
    torch_dtype: 'float32',
  };
  if (e.relColumnOfQuery) {
    const E = e.encoderLayers;
    config[REL_COLUMNS_KEY] = {
      encoder: e.relColumnOfQuery.slice(0, E),
      decoder: e.relColumnOfQuery.slice(E),
    };
  }
  const tensors = new Map<string, TensorSource>();
  for (const [role, shape] of t5RoleShapes(c)) {
    tensors.set(hfNameOf(role, c), specTensor(spec, role, shape));
  }
  return { config, tensors };
}
