/**
 * Small random BERT, RoBERTa and DistilBERT checkpoints (config.json + model.safetensors) written with the tensor
 * names transformers saves, spelled out here by hand rather than through src/model/bert.ts, so the loader is
 * checked against an independent statement of the layout. Values come from one seeded RNG: the same options
 * give the same files.
 */
import { join } from 'node:path';
import { writeHfFolder } from '../../src/checkpoint/hf.js';
import { type ModelSpec, memoryTensor } from '../../src/model/spec.js';
import { createRng } from '../../src/util/rng.js';

export type EncoderType = 'bert' | 'roberta' | 'distilbert';

export interface RandomEncoderOptions {
  modelType: EncoderType;
  /** Number of labels of a *ForSequenceClassification head; absent = the bare encoder. */
  labels?: number;
  seed: number;
  hidden?: number;
  layers?: number;
  heads?: number;
  intermediate?: number;
  vocab?: number;
  /** Rows of the position table (RoBERTa: includes the pad_token_id + 1 offset). */
  maxPositions?: number;
  typeVocab?: number;
  padTokenId?: number;
  /** hidden_act (activation for DistilBERT); default gelu. */
  activation?: string;
  layerNormEps?: number;
  /**
   * A bare encoder saved from the masked-LM task model: prefixed encoder, masked-LM head tensors, and
   * architectures naming the masked-LM class.
   */
  maskedLm?: boolean;
}

export interface RandomEncoder {
  dir: string;
  config: Record<string, unknown>;
  /** Every stored tensor by its Hugging Face name. */
  tensors: Map<string, Float32Array>;
}

const ARCH: Record<EncoderType, { base: string; classify: string; maskedLm: string }> = {
  bert: { base: 'BertModel', classify: 'BertForSequenceClassification', maskedLm: 'BertForMaskedLM' },
  roberta: {
    base: 'RobertaModel',
    classify: 'RobertaForSequenceClassification',
    maskedLm: 'RobertaForMaskedLM',
  },
  distilbert: {
    base: 'DistilBertModel',
    classify: 'DistilBertForSequenceClassification',
    maskedLm: 'DistilBertForMaskedLM',
  },
};

/** config.json and the tensor names and shapes of a random encoder. */
export function encoderLayout(opts: RandomEncoderOptions): {
  config: Record<string, unknown>;
  shapes: Array<[string, number[]]>;
} {
  const type = opts.modelType;
  const distil = type === 'distilbert';
  const D = opts.hidden ?? 16;
  const L = opts.layers ?? 2;
  const H = opts.heads ?? 4;
  const I = opts.intermediate ?? 32;
  const V = opts.vocab ?? 40;
  const P = opts.maxPositions ?? 24;
  const T = opts.typeVocab ?? 2;
  const pad = opts.padTokenId ?? (type === 'roberta' ? 1 : 0);
  const classify = opts.labels !== undefined;
  const arch = classify ? ARCH[type].classify : opts.maskedLm ? ARCH[type].maskedLm : ARCH[type].base;
  const config: Record<string, unknown> = { architectures: [arch], model_type: type };
  if (distil) {
    Object.assign(config, { dim: D, n_layers: L, n_heads: H, hidden_dim: I });
    Object.assign(config, { activation: opts.activation ?? 'gelu', sinusoidal_pos_embds: false });
  } else {
    Object.assign(config, {
      hidden_size: D,
      num_hidden_layers: L,
      num_attention_heads: H,
      intermediate_size: I,
    });
    Object.assign(config, {
      hidden_act: opts.activation ?? 'gelu',
      layer_norm_eps: opts.layerNormEps ?? 1e-12,
      type_vocab_size: T,
      position_embedding_type: 'absolute',
    });
  }
  Object.assign(config, { vocab_size: V, max_position_embeddings: P, pad_token_id: pad });
  if (classify) {
    const names = Array.from({ length: opts.labels! }, (_, i) => `class_${i}`);
    config.id2label = Object.fromEntries(names.map((n, i) => [String(i), n]));
    config.label2id = Object.fromEntries(names.map((n, i) => [n, i]));
  }

  // transformers saves task models with the encoder under the model type's prefix; the base model without.
  const pre = classify || opts.maskedLm ? `${type}.` : '';
  const shapes: Array<[string, number[]]> = [];
  const lin = (name: string, out: number, inn: number) =>
    shapes.push([`${name}.weight`, [out, inn]], [`${name}.bias`, [out]]);
  const ln = (name: string) => shapes.push([`${name}.weight`, [D]], [`${name}.bias`, [D]]);
  shapes.push([`${pre}embeddings.word_embeddings.weight`, [V, D]]);
  shapes.push([`${pre}embeddings.position_embeddings.weight`, [P, D]]);
  if (!distil) shapes.push([`${pre}embeddings.token_type_embeddings.weight`, [T, D]]);
  ln(`${pre}embeddings.LayerNorm`);
  for (let l = 0; l < L; l++) {
    if (distil) {
      const p = `${pre}transformer.layer.${l}`;
      for (const n of ['q_lin', 'k_lin', 'v_lin', 'out_lin']) lin(`${p}.attention.${n}`, D, D);
      ln(`${p}.sa_layer_norm`);
      lin(`${p}.ffn.lin1`, I, D);
      lin(`${p}.ffn.lin2`, D, I);
      ln(`${p}.output_layer_norm`);
    } else {
      const p = `${pre}encoder.layer.${l}`;
      for (const n of ['query', 'key', 'value']) lin(`${p}.attention.self.${n}`, D, D);
      lin(`${p}.attention.output.dense`, D, D);
      ln(`${p}.attention.output.LayerNorm`);
      lin(`${p}.intermediate.dense`, I, D);
      lin(`${p}.output.dense`, D, I);
      ln(`${p}.output.LayerNorm`);
    }
  }
  // BertModel and RobertaModel save a pooler (unused by a bare encoder's last_hidden_state).
  if (!distil && !opts.maskedLm && (!classify || type === 'bert')) lin(`${pre}pooler.dense`, D, D);
  if (classify) {
    const C = opts.labels!;
    if (type === 'bert') lin('classifier', C, D);
    if (type === 'roberta') {
      lin('classifier.dense', D, D);
      lin('classifier.out_proj', C, D);
    }
    if (distil) {
      lin('pre_classifier', D, D);
      lin('classifier', C, D);
    }
  } else if (opts.maskedLm) {
    if (type === 'bert') {
      lin('cls.predictions.transform.dense', D, D);
      ln('cls.predictions.transform.LayerNorm');
      shapes.push(['cls.predictions.bias', [V]]);
    }
    if (type === 'roberta') {
      lin('lm_head.dense', D, D);
      ln('lm_head.layer_norm');
      shapes.push(['lm_head.bias', [V]]);
    }
    if (distil) {
      lin('vocab_transform', D, D);
      ln('vocab_layer_norm');
      shapes.push(['vocab_projector.bias', [V]]);
    }
  }
  return { config, shapes };
}

/**
 * Draws the values: embeddings in [−1, 1], linear weights in [−0.4, 0.4] (large enough that attention is far
 * from uniform at hidden 16), biases and LayerNorm biases in [−0.1, 0.1], LayerNorm weights in [0.8, 1.2].
 */
export function randomEncoderTensors(
  shapes: Array<[string, number[]]>,
  seed: number,
): Map<string, Float32Array> {
  const rng = createRng(seed);
  const out = new Map<string, Float32Array>();
  for (const [name, shape] of shapes) {
    const n = shape.reduce((a, b) => a * b, 1);
    const [lo, hi] = /embeddings\.weight$/.test(name)
      ? [-1, 1]
      : /(LayerNorm|layer_norm)\.weight$/.test(name)
        ? [0.8, 1.2]
        : name.endsWith('.bias')
          ? [-0.1, 0.1]
          : [-0.4, 0.4];
    out.set(
      name,
      Float32Array.from({ length: n }, () => lo + (hi - lo) * rng.nextFloat()),
    );
  }
  return out;
}

/** Writes a random encoder checkpoint into `parent/name`. */
export async function writeRandomEncoder(
  parent: string,
  name: string,
  opts: RandomEncoderOptions,
): Promise<RandomEncoder> {
  const { config, shapes } = encoderLayout(opts);
  const tensors = randomEncoderTensors(shapes, opts.seed);
  const dir = join(parent, name);
  await writeHfFolder(dir, {
    config,
    tensors: [...tensors].map(([n, data]) => ({ name: n, shape: shapes.find(([s]) => s === n)![1], data })),
  });
  return { dir, config, tensors };
}

/** The six test checkpoints: each family as a bare encoder and with a classification head. */
export const ENCODER_CASES: ReadonlyArray<{ name: string; opts: Omit<RandomEncoderOptions, 'seed'> }> = [
  { name: 'bert', opts: { modelType: 'bert' } },
  { name: 'bert-cls', opts: { modelType: 'bert', labels: 3, activation: 'gelu_new', typeVocab: 3 } },
  { name: 'roberta', opts: { modelType: 'roberta', layerNormEps: 1e-5, typeVocab: 1, maxPositions: 26 } },
  { name: 'roberta-cls', opts: { modelType: 'roberta', labels: 2, typeVocab: 1, maxPositions: 26 } },
  { name: 'distilbert', opts: { modelType: 'distilbert', layers: 3 } },
  { name: 'distilbert-cls', opts: { modelType: 'distilbert', labels: 4, activation: 'relu' } },
];

/**
 * An encoder spec with only the heads `kept[layer]` left in each layer: their q/k/v rows (and biases) and o
 * columns, as physical head removal leaves them (the o bias stays whole).
 */
export async function keepHeads(spec: ModelSpec, kept: number[][]): Promise<ModelSpec> {
  const { headDim: hd, hiddenSize: D } = spec.config;
  const tensors = new Map(spec.tensors);
  for (const [l, heads] of kept.entries()) {
    const p = `layers.${l}.attn`;
    for (const n of ['q', 'k', 'v']) {
      for (const [kind, cols] of [
        ['weight', D],
        ['bias', 1],
      ] as const) {
        const data = await spec.tensors.get(`${p}.${n}.${kind}`)!.load();
        const rows = heads.flatMap((h) => [...data.subarray(h * hd * cols, (h + 1) * hd * cols)]);
        const shape = kind === 'weight' ? [heads.length * hd, D] : [heads.length * hd];
        tensors.set(`${p}.${n}.${kind}`, memoryTensor(shape, Float32Array.from(rows)));
      }
    }
    const o = await spec.tensors.get(`${p}.o.weight`)!.load();
    const width = o.length / D;
    const oKept = new Float32Array(D * heads.length * hd);
    for (let r = 0; r < D; r++) {
      for (const [j, h] of heads.entries()) {
        oKept.set(o.subarray(r * width + h * hd, r * width + (h + 1) * hd), (r * heads.length + j) * hd);
      }
    }
    tensors.set(`${p}.o.weight`, memoryTensor([D, heads.length * hd], oKept));
  }
  const counts = kept.map((h) => h.length);
  return {
    ...spec,
    config: { ...spec.config, headsPerLayer: counts, kvHeadsPerLayer: [...counts] },
    tensors,
  };
}
