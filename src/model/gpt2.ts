/**
 * GPT-2 (Hugging Face model_type gpt2) ↔ ModelSpec: config mapping and weight layout only.
 *
 * GPT-2 is a pre-LayerNorm decoder with learned absolute positions, a plain MLP (GELU, tanh form) and a head tied
 * to the token embedding; every linear has a bias. Its linears are Conv1D modules stored [in, out] (the
 * transpose of nn.Linear), and q, k, v share one fused `c_attn` [D, 3·heads·headDim]: on load they are split and
 * transposed into the spec's [out, in] roles, and fused back on write.
 *
 * Physically pruned GPT-2 models follow transformers' own convention: config.json `pruned_heads` {layer: [head
 * indices removed]}, with c_attn and c_proj shrunk to the kept heads (transformers 4.x applies it when loading),
 * and, for transformers 5 (which dropped `pruned_heads`) through python/modeling_geneprune.py, the same counts as
 * `num_attention_heads_per_layer` with `intermediate_size_per_layer`; both are read back and must agree.
 */
import { join } from 'node:path';
import type { HfFolder } from '../checkpoint/hf.js';
import { fileError, GenepruneError } from '../errors.js';
import { bindHfTensors } from './bind.js';
import { configReader, derivedTensor, transposedColumns } from './hfconfig.js';
import {
  checkIntermediatePerLayer,
  INTERMEDIATE_PER_LAYER,
  intermediateWidths,
  perLayerCounts,
} from './llama.js';
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
  gelu_tanh: 'gelu_new',
  relu: 'relu',
};

/** Query heads kept per layer from config.json's `pruned_heads` ({"layer": [heads]}). */
function keptHeads(
  value: unknown,
  numLayers: number,
  numHeads: number,
  fail: (m: string) => GenepruneError,
): number[] {
  const kept = new Array<number>(numLayers).fill(numHeads);
  if (value === undefined || value === null) return kept;
  if (typeof value !== 'object' || Array.isArray(value)) throw fail('"pruned_heads" must be an object');
  for (const [layer, heads] of Object.entries(value as Record<string, unknown>)) {
    const l = Number(layer);
    if (!Number.isInteger(l) || l < 0 || l >= numLayers) {
      throw fail(`"pruned_heads" names layer ${JSON.stringify(layer)}, outside 0..${numLayers - 1}`);
    }
    if (!Array.isArray(heads) || heads.some((h) => !Number.isInteger(h) || h < 0 || h >= numHeads)) {
      throw fail(`"pruned_heads" for layer ${l} must list head indices in 0..${numHeads - 1}`);
    }
    const distinct = new Set(heads as number[]);
    if (distinct.size === numHeads) {
      throw fail(`"pruned_heads" removes every head of layer ${l}, which GPT-2 cannot express`);
    }
    kept[l] = numHeads - distinct.size;
  }
  return kept;
}

export function gpt2ConfigFromHf(json: Record<string, unknown>, configPath: string): ModelConfig {
  const r = configReader(json, configPath);
  const hiddenSize = r.int('n_embd');
  const numLayers = r.int('n_layer');
  const numHeads = r.int('n_head');
  if (hiddenSize % numHeads !== 0) {
    throw r.fail(`n_embd ${hiddenSize} is not a multiple of n_head ${numHeads}`);
  }
  if (r.bool('scale_attn_by_inverse_layer_idx', false)) {
    throw r.fail('scale_attn_by_inverse_layer_idx true is not supported (scores scaled per layer)');
  }
  if (r.bool('add_cross_attention', false)) throw r.fail('add_cross_attention true is not supported');
  const headDim = hiddenSize / numHeads;
  const headsPerLayer = keptHeads(json.pruned_heads, numLayers, numHeads, r.fail);
  if (r.present('num_attention_heads_per_layer')) {
    const listed = perLayerCounts(json, 'num_attention_heads_per_layer', numLayers, numHeads, r.fail);
    const l = listed.findIndex((n, i) => n !== headsPerLayer[i]);
    if (l >= 0) {
      throw r.fail(
        `"num_attention_heads_per_layer" gives layer ${l} ${listed[l]} heads, "pruned_heads" leaves it ${headsPerLayer[l]}`,
      );
    }
  }
  const intermediateSize = r.present('n_inner') ? r.int('n_inner') : 4 * hiddenSize;
  const intermediatePerLayer = checkIntermediatePerLayer(json, numLayers, intermediateSize, r.fail);
  const config: ModelConfig = {
    family: 'gpt2',
    arch: 'decoder',
    modelType: 'gpt2',
    hiddenSize,
    numLayers,
    numHeads,
    numKvHeads: numHeads,
    headDim,
    headsPerLayer,
    kvHeadsPerLayer: [...headsPerLayer],
    intermediateSize,
    ...(intermediatePerLayer ? { intermediatePerLayer } : {}),
    vocabSize: r.int('vocab_size'),
    maxPositions: r.int('n_positions', 1024),
    normKind: 'layer',
    normPlacement: 'pre',
    normEps: r.positive('layer_norm_epsilon', 1e-5),
    activation: r.activation('activation_function', 'gelu_new'),
    mlpKind: 'plain',
    positionKind: 'learned',
    ropeTheta: 0,
    attentionBias: true,
    attentionOutBias: true,
    mlpBias: true,
    tieEmbeddings: r.bool('tie_word_embeddings', true),
  };
  // scale_attn_weights false: raw dot products, no 1/√headDim.
  if (!r.bool('scale_attn_weights', true)) config.attnScale = 1;
  const bos = r.tokenId('bos_token_id');
  const eos = r.tokenId('eos_token_id');
  if (bos !== undefined) config.bosTokenId = bos;
  if (eos !== undefined) config.eosTokenId = eos;
  return config;
}

/** One spec role read from a Hugging Face tensor: its name there, its shape there, how it becomes the role. */
interface Gpt2Tensor {
  role: string;
  shape: number[];
  name: string;
  hfShape: number[];
  /** HF data → the role's [out, in] data; absent when the tensor is the role as it is. */
  fromHf?: (data: Float32Array) => Float32Array;
}

/** Every role of a GPT-2 spec, where it lives in a checkpoint whose module names start with `prefix`. */
function gpt2Layout(c: ModelConfig, prefix: string): Gpt2Tensor[] {
  const { hiddenSize: D, vocabSize: V, headDim: hd } = c;
  const out: Gpt2Tensor[] = [];
  const plain = (role: string, name: string, shape: number[]) =>
    out.push({ role, shape, name: prefix + name, hfShape: shape });
  /** A Conv1D weight [in, out] → the role [c1 − c0, in] (its columns c0..c1, transposed). */
  const conv = (role: string, name: string, inn: number, outs: number, c0: number, c1: number) =>
    out.push({
      role,
      shape: [c1 - c0, inn],
      name: prefix + name,
      hfShape: [inn, outs],
      fromHf: (d) => transposedColumns(d, inn, outs, c0, c1),
    });
  const slice = (role: string, name: string, n: number, c0: number, c1: number) =>
    out.push({ role, shape: [c1 - c0], name: prefix + name, hfShape: [n], fromHf: (d) => d.slice(c0, c1) });

  plain('embed.tokens', 'wte.weight', [V, D]);
  plain('embed.positions', 'wpe.weight', [c.maxPositions, D]);
  for (let l = 0; l < c.numLayers; l++) {
    const p = `layers.${l}`;
    const h = `h.${l}`;
    const q = c.headsPerLayer[l] * hd;
    const I = intermediateOf(c, l);
    plain(`${p}.attn_norm.weight`, `${h}.ln_1.weight`, [D]);
    plain(`${p}.attn_norm.bias`, `${h}.ln_1.bias`, [D]);
    for (const [j, name] of (['q', 'k', 'v'] as const).entries()) {
      conv(`${p}.attn.${name}.weight`, `${h}.attn.c_attn.weight`, D, 3 * q, j * q, (j + 1) * q);
      slice(`${p}.attn.${name}.bias`, `${h}.attn.c_attn.bias`, 3 * q, j * q, (j + 1) * q);
    }
    conv(`${p}.attn.o.weight`, `${h}.attn.c_proj.weight`, q, D, 0, D);
    plain(`${p}.attn.o.bias`, `${h}.attn.c_proj.bias`, [D]);
    plain(`${p}.mlp_norm.weight`, `${h}.ln_2.weight`, [D]);
    plain(`${p}.mlp_norm.bias`, `${h}.ln_2.bias`, [D]);
    conv(`${p}.mlp.up.weight`, `${h}.mlp.c_fc.weight`, D, I, 0, I);
    plain(`${p}.mlp.up.bias`, `${h}.mlp.c_fc.bias`, [I]);
    conv(`${p}.mlp.down.weight`, `${h}.mlp.c_proj.weight`, I, D, 0, D);
    plain(`${p}.mlp.down.bias`, `${h}.mlp.c_proj.bias`, [D]);
  }
  plain('final_norm.weight', 'ln_f.weight', [D]);
  plain('final_norm.bias', 'ln_f.bias', [D]);
  if (!c.tieEmbeddings)
    out.push({ role: 'lm_head.weight', shape: [V, D], name: 'lm_head.weight', hfShape: [V, D] });
  return out;
}

/** Buffers some GPT-2 checkpoints carry that are not weights (the causal mask), and a tied head's copy. */
function ignorable(name: string, c: ModelConfig): boolean {
  return /\.attn\.(bias|masked_bias)$/.test(name) || (name === 'lm_head.weight' && c.tieEmbeddings);
}

export function gpt2SpecFromHf(folder: HfFolder): ModelSpec {
  const configPath = join(folder.dir, 'config.json');
  const config = gpt2ConfigFromHf(folder.config, configPath);
  // GPT2LMHeadModel names its modules transformer.*; GPT2Model (e.g. the original gpt2 upload) has no prefix.
  const prefix = folder.tensors.has('transformer.wte.weight') ? 'transformer.' : '';
  const tensors = bindHfTensors(
    folder,
    gpt2Layout(config, prefix).map((t) => ({
      role: t.role,
      name: t.name,
      hfShape: t.hfShape,
      ...(t.fromHf ? { derive: (stored: TensorSource) => derivedTensor(t.shape, stored, t.fromHf!) } : {}),
    })),
    {
      ignorable: (name) =>
        ignorable(name.startsWith(prefix) ? name.slice(prefix.length) : name, config) ||
        ignorable(name, config),
      what: 'gpt2 model',
      missingHead: 'tensor lm_head.weight is missing and config.json sets tie_word_embeddings false',
    },
  );
  return { config, tensors, source: folder.dir };
}

/**
 * config.json and tensors by Hugging Face name (GPT2LMHeadModel layout) for a GPT-2 spec. Pruned layers are
 * written with `pruned_heads`; which head indices were removed is `prunedHeads[layer]` when given, else the
 * layer's last heads (any choice of that many gives the same shapes and the same model).
 */
export function gpt2SpecToHf(
  spec: ModelSpec,
  prunedHeads?: readonly (readonly number[])[],
): { config: Record<string, unknown>; tensors: Map<string, TensorSource> } {
  const c = spec.config;
  const fail = (m: string) => new GenepruneError('model', `${spec.source}: ${m}`);
  if (c.family !== 'gpt2') throw fail(`not a GPT-2 model (family ${c.family})`);
  if (c.kvHeadsPerLayer.some((k, l) => k !== c.headsPerLayer[l]) || c.kvHeadOfQuery) {
    throw fail('GPT-2 has no grouped KV heads: every layer needs as many KV heads as query heads');
  }
  const pruned: Record<string, number[]> = {};
  for (let l = 0; l < c.numLayers; l++) {
    const removed = c.numHeads - c.headsPerLayer[l];
    if (removed === 0) continue;
    if (removed === c.numHeads)
      throw fail(`layer ${l} has no heads left, which a GPT-2 config cannot express`);
    const given = prunedHeads?.[l];
    if (given && given.length !== removed) {
      throw fail(`layer ${l}: ${given.length} pruned head indices given for ${removed} removed heads`);
    }
    pruned[String(l)] = given
      ? [...given]
      : Array.from({ length: removed }, (_, i) => c.numHeads - removed + i);
  }
  const config: Record<string, unknown> = {
    architectures: ['GPT2LMHeadModel'],
    model_type: 'gpt2',
    n_embd: c.hiddenSize,
    n_layer: c.numLayers,
    n_head: c.numHeads,
    n_inner: c.intermediateSize,
    n_positions: c.maxPositions,
    n_ctx: c.maxPositions,
    vocab_size: c.vocabSize,
    layer_norm_epsilon: c.normEps,
    activation_function: ACTIVATION_TO_HF[c.activation],
    scale_attn_weights: c.attnScale === undefined,
    tie_word_embeddings: c.tieEmbeddings,
    torch_dtype: 'float32',
  };
  if (Object.keys(pruned).length > 0) {
    config.pruned_heads = pruned;
    config.num_attention_heads_per_layer = [...c.headsPerLayer];
  }
  if (config.num_attention_heads_per_layer || c.intermediatePerLayer) {
    config[INTERMEDIATE_PER_LAYER] = intermediateWidths(c);
  }
  if (c.bosTokenId !== undefined) config.bos_token_id = c.bosTokenId;
  if (c.eosTokenId !== undefined) config.eos_token_id = c.eosTokenId;

  const need = (role: string): TensorSource => {
    const t = spec.tensors.get(role);
    if (!t) throw fail(`missing tensor ${role}`);
    return t;
  };
  const tensors = new Map<string, TensorSource>();
  const fuse = (name: string, shape: number[], parts: TensorSource[], transposeRows: number) => {
    // Role tensors [outs_j, in] (or biases [outs_j]) → one Conv1D [in, Σ outs_j] (or [Σ outs_j]).
    tensors.set(name, {
      shape,
      dtype: parts[0].dtype,
      load: async () => {
        const out = new Float32Array(shape.reduce((a, b) => a * b, 1));
        const cols = shape.length === 2 ? shape[1] : shape[0];
        let c0 = 0;
        for (const part of parts) {
          const d = await part.load();
          const outs = transposeRows > 0 ? d.length / transposeRows : d.length;
          if (transposeRows > 0) {
            for (let o = 0; o < outs; o++) {
              for (let i = 0; i < transposeRows; i++) out[i * cols + c0 + o] = d[o * transposeRows + i];
            }
          } else out.set(d, c0);
          c0 += outs;
        }
        return out;
      },
    });
  };
  for (const t of gpt2Layout(c, 'transformer.')) {
    if (tensors.has(t.name)) continue;
    if (t.fromHf === undefined) {
      tensors.set(t.name, need(t.role));
      continue;
    }
    const m = /^layers\.(\d+)\.(attn\.[qkv]|attn\.o|mlp\.up|mlp\.down)\.(weight|bias)$/.exec(t.role);
    if (!m) throw fail(`no Hugging Face layout for role ${t.role}`);
    const [, l, which, kind] = m;
    const roles =
      which.startsWith('attn.') && which !== 'attn.o'
        ? ['q', 'k', 'v'].map((x) => `layers.${l}.attn.${x}.${kind}`)
        : [t.role];
    fuse(t.name, t.hfShape, roles.map(need), kind === 'weight' ? t.hfShape[0] : 0);
  }
  return { config, tensors };
}
