/**
 * The BERT family (Hugging Face model_type bert, roberta, distilbert) ↔ ModelSpec: bidirectional encoders with
 * learned positions, post-LayerNorm residual blocks and a plain MLP, as base models (last hidden state) or with a
 * sequence-classification head. They differ in config field names (DistilBERT: dim, n_layers, ...), tensor names,
 * token type embeddings (none in DistilBERT), where positions start (RoBERTa: after the padding id) and in the
 * classification head's names and pooling activation.
 *
 * Checkpoints saved from a task model prefix the encoder with `bert.` / `roberta.` / `distilbert.`; those saved
 * from the base model do not. Both are read. Tensors this mapping does not use but knows (pooler of a base model,
 * masked-LM and pre-training heads, the position_ids buffer of old checkpoints) are skipped; any other tensor is
 * refused.
 */
import { join } from 'node:path';
import type { HfFolder } from '../checkpoint/hf.js';
import type { FileTensor } from '../checkpoint/safetensors.js';
import { fileError, GenepruneError } from '../errors.js';
import { bindHfTensors, sameShape, shapeText } from './bind.js';
import { configReader } from './hfconfig.js';
import { checkIntermediatePerLayer, INTERMEDIATE_PER_LAYER, intermediateWidths } from './llama.js';
import {
  type Activation,
  intermediateOf,
  type ModelConfig,
  type ModelSpec,
  type PoolActivation,
  type TensorSource,
} from './spec.js';

export const BERT_MODEL_TYPES = ['bert', 'roberta', 'distilbert'] as const;
export type BertModelType = (typeof BERT_MODEL_TYPES)[number];

/** The classification architecture of each model type and its pooling activation. */
const CLASSIFIERS: Record<BertModelType, { arch: string; pool: PoolActivation }> = {
  bert: { arch: 'BertForSequenceClassification', pool: 'tanh' },
  roberta: { arch: 'RobertaForSequenceClassification', pool: 'tanh' },
  distilbert: { arch: 'DistilBertForSequenceClassification', pool: 'relu' },
};

/** Architectures read as the bare encoder (their task heads, if stored, are skipped). */
const BASE_ARCHITECTURES: Record<BertModelType, readonly string[]> = {
  bert: ['BertModel', 'BertForMaskedLM', 'BertForPreTraining'],
  roberta: ['RobertaModel', 'RobertaForMaskedLM'],
  distilbert: ['DistilBertModel', 'DistilBertForMaskedLM'],
};

/** transformers' defaults where a config.json leaves a field out. */
const DEFAULT_PAD_ID: Record<BertModelType, number> = { bert: 0, roberta: 1, distilbert: 0 };
const DEFAULT_EPS = 1e-12;
const DEFAULT_MAX_POSITIONS = 512;

const ACTIVATION_TO_HF: Record<Activation, string> = {
  silu: 'silu',
  gelu: 'gelu',
  gelu_tanh: 'gelu_new',
  relu: 'relu',
};

// ---------------------------------------------------------------------------------------------------------
// config.json → ModelConfig

export function bertConfigFromHf(json: Record<string, unknown>, configPath: string): ModelConfig {
  const r = configReader(json, configPath);
  const type = r.string('model_type', '', BERT_MODEL_TYPES) as BertModelType;
  const distil = type === 'distilbert';

  // DistilBERT names the same sizes differently.
  const key = (bertName: string, distilName: string) => (distil ? distilName : bertName);
  const hiddenSize = r.int(key('hidden_size', 'dim'));
  const numLayers = r.int(key('num_hidden_layers', 'n_layers'));
  const numHeads = r.int(key('num_attention_heads', 'n_heads'));
  if (hiddenSize % numHeads !== 0) {
    throw r.fail(`${key('hidden_size', 'dim')} ${hiddenSize} is not a multiple of the ${numHeads} heads`);
  }
  const intermediateSize = r.int(key('intermediate_size', 'hidden_dim'));
  const intermediatePerLayer = checkIntermediatePerLayer(json, numLayers, intermediateSize, r.fail);
  const activation = r.activation(key('hidden_act', 'activation'), 'gelu');

  if (distil && json.sinusoidal_pos_embds === true) {
    throw r.fail('sinusoidal_pos_embds is true: only learned position embeddings are supported');
  }
  const positionType = r.present('position_embedding_type') ? json.position_embedding_type : 'absolute';
  if (positionType !== 'absolute') {
    throw r.fail(
      `position_embedding_type ${JSON.stringify(positionType)} is not supported (only "absolute" is)`,
    );
  }
  if (json.is_decoder === true) throw r.fail('is_decoder is true: only bidirectional encoders are supported');

  const normEps = distil ? DEFAULT_EPS : r.positive('layer_norm_eps', DEFAULT_EPS); // DistilBERT fixes 1e-12
  const padTokenId = r.int('pad_token_id', DEFAULT_PAD_ID[type], 0);
  // RoBERTa numbers positions after the padding id: position 0 reads row pad + 1.
  const positionOffset = type === 'roberta' ? padTokenId + 1 : 0;
  const positionRows = r.int('max_position_embeddings', DEFAULT_MAX_POSITIONS);
  if (positionRows <= positionOffset) {
    throw r.fail(
      `max_position_embeddings ${positionRows} leaves no position after the offset ${positionOffset} (pad_token_id + 1)`,
    );
  }
  const typeVocabSize = distil ? 0 : r.int('type_vocab_size', 2);
  const headsPerLayer = keptHeads(json.pruned_heads, numLayers, numHeads, r.fail);

  const config: ModelConfig = {
    family: 'bert',
    arch: 'encoder',
    modelType: type,
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
    // The usable context: the position table has positionOffset more rows.
    maxPositions: positionRows - positionOffset,
    normKind: 'layer',
    normPlacement: 'post',
    normEps,
    activation,
    mlpKind: 'plain',
    positionKind: 'learned',
    ropeTheta: 0, // unused: positions are learned
    attentionBias: true,
    attentionOutBias: true,
    mlpBias: true,
    tieEmbeddings: false,
    typeVocabSize,
    padTokenId,
  };
  if (positionOffset > 0) config.positionOffset = positionOffset;
  const classifier = classifierOf(json, type, r.fail);
  if (classifier) config.classifier = classifier;
  return config;
}

/**
 * Query heads kept per layer, from transformers' own record of physically pruned heads: config.json
 * `pruned_heads` {"layer": [head indices removed]} (transformers shrinks the attention linears accordingly when it
 * loads the model). A layer may lose every head: its attention then adds the output projection's bias alone.
 */
function keptHeads(
  value: unknown,
  numLayers: number,
  numHeads: number,
  fail: (msg: string) => Error,
): number[] {
  const kept = new Array<number>(numLayers).fill(numHeads);
  if (value === undefined || value === null) return kept;
  if (typeof value !== 'object' || Array.isArray(value)) throw fail('"pruned_heads" must be an object');
  for (const [layer, heads] of Object.entries(value as Record<string, unknown>)) {
    const l = Number(layer);
    if (!/^\d+$/.test(layer) || l >= numLayers) {
      throw fail(`"pruned_heads" names layer ${JSON.stringify(layer)}, outside 0..${numLayers - 1}`);
    }
    if (!Array.isArray(heads) || heads.some((h) => !Number.isInteger(h) || h < 0 || h >= numHeads)) {
      throw fail(`"pruned_heads" for layer ${l} must list head indices in 0..${numHeads - 1}`);
    }
    kept[l] = numHeads - new Set(heads as number[]).size;
  }
  return kept;
}

/** The sequence-classification head config.json's architectures declare, or undefined for a bare encoder. */
function classifierOf(
  json: Record<string, unknown>,
  type: BertModelType,
  fail: (msg: string) => Error,
): ModelConfig['classifier'] {
  const archs = json.architectures;
  if (archs === undefined || archs === null) return undefined;
  if (!Array.isArray(archs) || archs.length !== 1 || typeof archs[0] !== 'string') {
    throw fail(`"architectures" must list one architecture name, got ${JSON.stringify(archs)}`);
  }
  // A transformers class name (BertForSequenceClassification ...), not the ModelConfig.arch kind.
  const declared = archs[0];
  const cls = CLASSIFIERS[type];
  if (BASE_ARCHITECTURES[type].includes(declared)) return undefined;
  if (declared !== cls.arch) {
    throw fail(
      `architecture ${declared} is not supported for model_type ${type} (supported: ${[...BASE_ARCHITECTURES[type], cls.arch].join(', ')})`,
    );
  }
  const problem = json.problem_type;
  if (problem !== undefined && problem !== null && problem !== 'single_label_classification') {
    throw fail(
      `problem_type ${JSON.stringify(problem)} is not supported (only single-label classification is)`,
    );
  }
  return { labels: labelsOf(json, fail), poolActivation: cls.pool };
}

/** Label names from id2label (keys "0" … "n−1"), else num_labels generic names, else transformers' 2. */
function labelsOf(json: Record<string, unknown>, fail: (msg: string) => Error): string[] {
  const id2label = json.id2label;
  if (id2label !== undefined && id2label !== null) {
    if (typeof id2label !== 'object' || Array.isArray(id2label)) throw fail('"id2label" must be an object');
    const entries = Object.entries(id2label as Record<string, unknown>);
    const labels: string[] = [];
    for (const [k, v] of entries) {
      const i = Number(k);
      if (!/^\d+$/.test(k) || i >= entries.length || typeof v !== 'string' || labels[i] !== undefined) {
        throw fail(
          `"id2label" must map the ids 0..${entries.length - 1} to names, got ${JSON.stringify(k)}: ${JSON.stringify(v)}`,
        );
      }
      labels[i] = v;
    }
    if (labels.length === 0) throw fail('"id2label" is empty');
    const n = json.num_labels;
    if (n !== undefined && n !== null && n !== labels.length) {
      throw fail(`num_labels ${JSON.stringify(n)} disagrees with the ${labels.length} labels of id2label`);
    }
    return labels;
  }
  const n = json.num_labels ?? 2;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 1) {
    throw fail(`"num_labels" must be an integer ≥ 1, got ${JSON.stringify(n)}`);
  }
  return Array.from({ length: n }, (_, i) => `LABEL_${i}`);
}

// ---------------------------------------------------------------------------------------------------------
// roles, shapes and Hugging Face names

/** Every role a BERT-family model with `config` has, in a stable order, with its shape. */
export function bertRoleShapes(config: ModelConfig): Array<[string, number[]]> {
  const { hiddenSize: D, headDim: hd } = config;
  const out: Array<[string, number[]]> = [
    ['embed.tokens', [config.vocabSize, D]],
    ['embed.positions', [config.maxPositions + (config.positionOffset ?? 0), D]],
  ];
  if ((config.typeVocabSize ?? 0) > 0) out.push(['embed.token_types', [config.typeVocabSize!, D]]);
  const norm = (role: string) => out.push([`${role}.weight`, [D]], [`${role}.bias`, [D]]);
  const linear = (role: string, rows: number, cols: number) =>
    out.push([`${role}.weight`, [rows, cols]], [`${role}.bias`, [rows]]);
  norm('embed.norm');
  for (let l = 0; l < config.numLayers; l++) {
    const p = `layers.${l}`;
    const q = config.headsPerLayer[l] * hd;
    for (const name of ['q', 'k', 'v']) linear(`${p}.attn.${name}`, q, D);
    linear(`${p}.attn.o`, D, q);
    norm(`${p}.attn_norm`);
    linear(`${p}.mlp.up`, intermediateOf(config, l), D);
    linear(`${p}.mlp.down`, D, intermediateOf(config, l));
    norm(`${p}.mlp_norm`);
  }
  if (config.classifier) {
    linear('cls.pool', D, D);
    linear('cls.out', config.classifier.labels.length, D);
  }
  return out;
}

/** Tensor names inside the encoder (after its prefix), by role pattern, for each model type. */
const BODY_NAMES: Record<'bert' | 'distilbert', Array<[RegExp, string]>> = {
  bert: [
    [/^embed\.tokens$/, 'embeddings.word_embeddings.weight'],
    [/^embed\.positions$/, 'embeddings.position_embeddings.weight'],
    [/^embed\.token_types$/, 'embeddings.token_type_embeddings.weight'],
    [/^embed\.norm\.(weight|bias)$/, 'embeddings.LayerNorm.$1'],
    [/^layers\.(\d+)\.attn\.q\.(weight|bias)$/, 'encoder.layer.$1.attention.self.query.$2'],
    [/^layers\.(\d+)\.attn\.k\.(weight|bias)$/, 'encoder.layer.$1.attention.self.key.$2'],
    [/^layers\.(\d+)\.attn\.v\.(weight|bias)$/, 'encoder.layer.$1.attention.self.value.$2'],
    [/^layers\.(\d+)\.attn\.o\.(weight|bias)$/, 'encoder.layer.$1.attention.output.dense.$2'],
    [/^layers\.(\d+)\.attn_norm\.(weight|bias)$/, 'encoder.layer.$1.attention.output.LayerNorm.$2'],
    [/^layers\.(\d+)\.mlp\.up\.(weight|bias)$/, 'encoder.layer.$1.intermediate.dense.$2'],
    [/^layers\.(\d+)\.mlp\.down\.(weight|bias)$/, 'encoder.layer.$1.output.dense.$2'],
    [/^layers\.(\d+)\.mlp_norm\.(weight|bias)$/, 'encoder.layer.$1.output.LayerNorm.$2'],
  ],
  distilbert: [
    [/^embed\.tokens$/, 'embeddings.word_embeddings.weight'],
    [/^embed\.positions$/, 'embeddings.position_embeddings.weight'],
    [/^embed\.norm\.(weight|bias)$/, 'embeddings.LayerNorm.$1'],
    [/^layers\.(\d+)\.attn\.([qkv])\.(weight|bias)$/, 'transformer.layer.$1.attention.$2_lin.$3'],
    [/^layers\.(\d+)\.attn\.o\.(weight|bias)$/, 'transformer.layer.$1.attention.out_lin.$2'],
    [/^layers\.(\d+)\.attn_norm\.(weight|bias)$/, 'transformer.layer.$1.sa_layer_norm.$2'],
    [/^layers\.(\d+)\.mlp\.up\.(weight|bias)$/, 'transformer.layer.$1.ffn.lin1.$2'],
    [/^layers\.(\d+)\.mlp\.down\.(weight|bias)$/, 'transformer.layer.$1.ffn.lin2.$2'],
    [/^layers\.(\d+)\.mlp_norm\.(weight|bias)$/, 'transformer.layer.$1.output_layer_norm.$2'],
  ],
};

/** Classification head names (never prefixed, except BERT's pooler, which belongs to the encoder). */
const HEAD_NAMES: Record<BertModelType, Array<[RegExp, string, boolean]>> = {
  bert: [
    [/^cls\.pool\.(weight|bias)$/, 'pooler.dense.$1', true],
    [/^cls\.out\.(weight|bias)$/, 'classifier.$1', false],
  ],
  roberta: [
    [/^cls\.pool\.(weight|bias)$/, 'classifier.dense.$1', false],
    [/^cls\.out\.(weight|bias)$/, 'classifier.out_proj.$1', false],
  ],
  distilbert: [
    [/^cls\.pool\.(weight|bias)$/, 'pre_classifier.$1', false],
    [/^cls\.out\.(weight|bias)$/, 'classifier.$1', false],
  ],
};

/**
 * The Hugging Face tensor name of a BERT-family role. `prefixed`: the encoder's tensors carry the
 * `<model_type>.` prefix, as in checkpoints saved from a task model.
 */
export function bertHfNameOfRole(modelType: BertModelType, role: string, prefixed: boolean): string {
  const prefix = prefixed ? `${modelType}.` : '';
  for (const [re, name, inEncoder] of HEAD_NAMES[modelType]) {
    if (re.test(role)) return (inEncoder ? prefix : '') + role.replace(re, name);
  }
  for (const [re, name] of BODY_NAMES[modelType === 'distilbert' ? 'distilbert' : 'bert']) {
    if (re.test(role)) return prefix + role.replace(re, name);
  }
  throw new GenepruneError('internal', `no Hugging Face name for ${modelType} role ${role}`);
}

/**
 * Tensors a checkpoint may hold that this mapping knowingly leaves out: buffers old checkpoints saved, a base
 * model's pooler (RoBERTa's classifier never uses it), masked-LM and pre-training heads of a bare encoder.
 */
function skippable(name: string, type: BertModelType, prefix: string, classifier: boolean): boolean {
  if (name === `${prefix}embeddings.position_ids` || name === `${prefix}embeddings.token_type_ids`)
    return true;
  if (
    type !== 'distilbert' &&
    (!classifier || type === 'roberta') &&
    name.startsWith(`${prefix}pooler.dense.`)
  )
    return true;
  if (classifier) return false;
  const heads: Record<BertModelType, RegExp> = {
    bert: /^cls\.(predictions|seq_relationship)\./,
    roberta: /^lm_head\./,
    distilbert: /^(vocab_transform|vocab_layer_norm|vocab_projector)\./,
  };
  return heads[type].test(name);
}

// ---------------------------------------------------------------------------------------------------------
// Hugging Face folder → spec

export function bertSpecFromHf(folder: HfFolder): ModelSpec {
  const configPath = join(folder.dir, 'config.json');
  const config = bertConfigFromHf(folder.config, configPath);
  const type = config.modelType as BertModelType;
  // A checkpoint saved from a task model prefixes the encoder; one saved from the base model does not.
  const prefixed = [...folder.tensors.keys()].some((name) => name.startsWith(`${type}.`));
  const prefix = prefixed ? `${type}.` : '';
  const what = config.classifier ? `${CLASSIFIERS[type].arch} model` : `${type} encoder`;
  const tensors = bindHfTensors(
    folder,
    bertRoleShapes(config).map(([role, shape]) => ({
      role,
      name: bertHfNameOfRole(type, role, prefixed),
      hfShape: shape,
    })),
    {
      lookup: (name) => lookup(folder.tensors, name),
      ignorable: (name) => skippable(name, type, prefix, config.classifier !== undefined),
      what,
    },
  );
  return { config, tensors, source: folder.dir };
}

/** A tensor by name; LayerNorm weight/bias also under the gamma/beta names of checkpoints converted from TF. */
function lookup(tensors: Map<string, FileTensor>, name: string): [string, FileTensor] | undefined {
  const t = tensors.get(name);
  if (t) return [name, t];
  const m = /^(.*[Ll]ayer_?[Nn]orm)\.(weight|bias)$/.exec(name);
  if (!m) return undefined;
  const old = `${m[1]}.${m[2] === 'weight' ? 'gamma' : 'beta'}`;
  const o = tensors.get(old);
  return o ? [old, o] : undefined;
}

// ---------------------------------------------------------------------------------------------------------
// spec → Hugging Face

function modelError(spec: ModelSpec, message: string): GenepruneError {
  return new GenepruneError('model', message, spec.source);
}

/**
 * config.json and tensors by Hugging Face name for a spec (the inverse of bertSpecFromHf). Classification models
 * are written as transformers saves them (encoder prefixed), bare encoders as the base model (no prefix). Pruned
 * layers are written with `pruned_heads`; the head indices removed are `prunedHeads[layer]` when given, else the
 * layer's last heads (any choice of that many gives the same shapes and the same model).
 */
export function bertSpecToHf(
  spec: ModelSpec,
  prunedHeads?: readonly (readonly number[])[],
): {
  config: Record<string, unknown>;
  tensors: Map<string, TensorSource>;
} {
  const c = spec.config;
  if (c.family !== 'bert' || !(BERT_MODEL_TYPES as readonly string[]).includes(c.modelType)) {
    throw modelError(spec, `not a BERT-family model (family ${c.family}, model_type ${c.modelType})`);
  }
  const type = c.modelType as BertModelType;
  const problems: string[] = [];
  if (c.normKind !== 'layer' || c.normPlacement !== 'post') problems.push('norms are not post-LayerNorm');
  if (c.mlpKind !== 'plain') problems.push('the MLP is gated');
  if (c.positionKind !== 'learned') problems.push('positions are not learned');
  if (!c.attentionBias || !c.attentionOutBias || !c.mlpBias) problems.push('some linears lack biases');
  if (c.numKvHeads !== c.numHeads || c.kvHeadsPerLayer.some((k, l) => k !== c.headsPerLayer[l]))
    problems.push('keys and values are grouped');
  if (c.numHeads * c.headDim !== c.hiddenSize)
    problems.push('heads × head size differs from the hidden size');
  const hfAct = ACTIVATION_TO_HF[c.activation];
  const offset = c.positionOffset ?? 0;
  const padId = c.padTokenId ?? DEFAULT_PAD_ID[type];
  if (offset !== (type === 'roberta' ? padId + 1 : 0)) problems.push(`position offset ${offset}`);
  if (type === 'distilbert' && (c.typeVocabSize ?? 0) > 0) problems.push('token type embeddings');
  if (type === 'distilbert' && c.normEps !== DEFAULT_EPS) problems.push(`norm eps ${c.normEps}`);
  if (type !== 'distilbert' && !((c.typeVocabSize ?? 0) > 0)) problems.push('no token type embeddings');
  if (c.classifier && c.classifier.poolActivation !== CLASSIFIERS[type].pool)
    problems.push(`pooling activation ${c.classifier.poolActivation}`);
  if (problems.length > 0) {
    throw modelError(spec, `a ${type} checkpoint cannot express this model: ${problems.join('; ')}`);
  }

  const distil = type === 'distilbert';
  const arch = c.classifier ? CLASSIFIERS[type].arch : BASE_ARCHITECTURES[type][0];
  const config: Record<string, unknown> = { architectures: [arch], model_type: type };
  const sizes: Array<[string, string, number]> = [
    ['hidden_size', 'dim', c.hiddenSize],
    ['num_hidden_layers', 'n_layers', c.numLayers],
    ['num_attention_heads', 'n_heads', c.numHeads],
    ['intermediate_size', 'hidden_dim', c.intermediateSize],
  ];
  for (const [bertKey, distilKey, v] of sizes) config[distil ? distilKey : bertKey] = v;
  if (c.intermediatePerLayer) config[INTERMEDIATE_PER_LAYER] = intermediateWidths(c);
  config.vocab_size = c.vocabSize;
  config.max_position_embeddings = c.maxPositions + offset;
  config.pad_token_id = padId;
  if (distil) {
    config.activation = hfAct;
    config.sinusoidal_pos_embds = false;
  } else {
    config.hidden_act = hfAct;
    config.layer_norm_eps = c.normEps;
    config.type_vocab_size = c.typeVocabSize;
    config.position_embedding_type = 'absolute';
  }
  if (c.classifier) {
    config.id2label = Object.fromEntries(c.classifier.labels.map((name, i) => [String(i), name]));
    config.label2id = Object.fromEntries(c.classifier.labels.map((name, i) => [name, i]));
  }
  const pruned: Record<string, number[]> = {};
  for (const [l, kept] of c.headsPerLayer.entries()) {
    const removed = c.numHeads - kept;
    if (removed === 0) continue;
    const given = prunedHeads?.[l];
    if (given && new Set(given).size !== removed) {
      throw modelError(
        spec,
        `layer ${l}: ${given.length} pruned head indices given for ${removed} removed heads`,
      );
    }
    pruned[String(l)] = given ? [...given] : Array.from({ length: removed }, (_, i) => kept + i);
  }
  if (Object.keys(pruned).length > 0) config.pruned_heads = pruned;
  config.torch_dtype = 'float32';

  const tensors = new Map<string, TensorSource>();
  for (const [role, shape] of bertRoleShapes(c)) {
    const t = spec.tensors.get(role);
    if (!t) throw modelError(spec, `tensor ${role} is missing from the model`);
    if (!sameShape(t.shape, shape)) {
      throw modelError(
        spec,
        `tensor ${role} has shape ${shapeText(t.shape)}, the config implies ${shapeText(shape)}`,
      );
    }
    tensors.set(bertHfNameOfRole(type, role, c.classifier !== undefined), t);
  }
  return { config, tensors };
}
