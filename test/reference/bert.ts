/**
 * A plain-TypeScript forward pass of BERT, RoBERTa and DistilBERT (loops, float64, no ONNX Runtime), written from
 * the published model definitions. It reads config.json as parsed JSON and the weights by their Hugging Face
 * tensor names, exactly as a checkpoint stores them — never through the model spec or the graph code — so it is
 * an independent oracle for the loader and the encoder graph together.
 *
 * Per sequence: embeddings (word + position + token type) → LayerNorm; per layer: bidirectional self-attention
 * (keys where attention_mask is 0 are excluded), each head's attention weights scaled by its head-mask entry,
 * output projection + residual → LayerNorm, intermediate linear + activation, output linear + residual →
 * LayerNorm. A classification head reads the first token's final state.
 */

export interface EncoderInput {
  inputIds: number[];
  /** 1 = real token, 0 = padding; default all 1. */
  attentionMask?: number[];
  /** Segment ids (BERT, RoBERTa); default all 0. */
  tokenTypeIds?: number[];
}

export interface EncoderReferenceOutput {
  /** [seq][hidden] */
  lastHiddenState: Float64Array[];
  /** [labels], for *ForSequenceClassification checkpoints. */
  logits?: Float64Array;
}

/** The four distinct linear inputs of a layer, named as the graph's captured statistics name them. */
export type EncoderLinearInput = 'attn_in' | 'o_in' | 'mlp_in' | 'down_in';

/**
 * erf(x) = (2/√π)·e^(−x²)·Σ_n 2ⁿ x^(2n+1) / (1·3·…·(2n+1)): every term is positive, so the sum is accurate to
 * double precision; beyond |x| = 6, erf is ±1 to 2e-17.
 */
export function erf(x: number): number {
  const a = Math.abs(x);
  if (a >= 6) return Math.sign(x);
  let term = a;
  let sum = a;
  for (let n = 1; term > 1e-17 * sum; n++) {
    term *= (2 * a * a) / (2 * n + 1);
    sum += term;
  }
  return Math.sign(x) * ((2 / Math.sqrt(Math.PI)) * Math.exp(-a * a) * sum);
}

/** transformers' ACT2FN entries the family uses. */
function activation(name: string): (x: number) => number {
  switch (name) {
    case 'gelu':
      return (x) => 0.5 * x * (1 + erf(x / Math.SQRT2));
    case 'gelu_new':
    case 'gelu_pytorch_tanh':
      return (x) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));
    case 'relu':
      return (x) => Math.max(0, x);
    default:
      throw new Error(`reference: no activation ${name}`);
  }
}

/** y = W x + b, W stored [out, in] (torch.nn.Linear); out is the bias's length (so an input of width 0 works). */
function linear(W: Float32Array, b: Float32Array, x: Float64Array): Float64Array {
  const inn = x.length;
  const out = b.length;
  const y = new Float64Array(out);
  for (let o = 0; o < out; o++) {
    let s = b[o];
    for (let i = 0; i < inn; i++) s += W[o * inn + i] * x[i];
    y[o] = s;
  }
  return y;
}

/** torch.nn.LayerNorm: biased variance over the last dimension. */
function layerNorm(x: Float64Array, w: Float32Array, b: Float32Array, eps: number): Float64Array {
  let mean = 0;
  for (const v of x) mean += v;
  mean /= x.length;
  let variance = 0;
  for (const v of x) variance += (v - mean) ** 2;
  variance /= x.length;
  const r = 1 / Math.sqrt(variance + eps);
  return x.map((v, i) => (v - mean) * r * w[i] + b[i]);
}

const add = (a: Float64Array, b: Float64Array) => a.map((v, i) => v + b[i]);

export function referenceEncoderForward(
  config: Record<string, unknown>,
  tensor: (name: string) => Float32Array | undefined,
  input: EncoderInput,
  opts: {
    headMask?: number[][];
    /**
     * Structured masks (masks/structured.ts): channelMask[layer][j] multiplies MLP channel j's activation (the
     * output dense's input); blockMask[layer][0] / [1] multiplies the attention / MLP block's output (bias
     * included) before its residual add — the LayerNorm after the add belongs to the residual stream and stays.
     */
    channelMask?: number[][];
    blockMask?: number[][];
    /** Sees each linear's input per token: q/k/v's (attn_in), o's (o_in), the MLP's (mlp_in, down_in). */
    onLinearInput?: (layer: number, input: EncoderLinearInput, token: number, x: Float64Array) => void;
  } = {},
): EncoderReferenceOutput {
  const type = config.model_type as string;
  const distil = type === 'distilbert';
  const num = (bertKey: string, distilKey: string) => config[distil ? distilKey : bertKey] as number;
  const D = num('hidden_size', 'dim');
  const L = num('num_hidden_layers', 'n_layers');
  const hd = D / num('num_attention_heads', 'n_heads');
  const eps = distil ? 1e-12 : ((config.layer_norm_eps as number | undefined) ?? 1e-12);
  const act = activation(((distil ? config.activation : config.hidden_act) as string | undefined) ?? 'gelu');
  const arch = (config.architectures as string[] | undefined)?.[0] ?? '';
  const classify = arch.endsWith('ForSequenceClassification');

  // Task-model checkpoints prefix the encoder with the model type.
  const prefix = tensor(`${type}.embeddings.word_embeddings.weight`) ? `${type}.` : '';
  const w = (name: string): Float32Array => {
    const t = tensor(name);
    if (!t) throw new Error(`reference: no tensor ${name}`);
    return t;
  };
  const row = (name: string, i: number) => Float64Array.from(w(name).subarray(i * D, (i + 1) * D));

  const ids = input.inputIds;
  const S = ids.length;
  const mask = input.attentionMask ?? ids.map(() => 1);
  const types = input.tokenTypeIds ?? ids.map(() => 0);

  // Positions: BERT and DistilBERT count 0, 1, 2, …; RoBERTa numbers non-padding tokens from pad + 1 and gives
  // padding tokens the padding row (transformers' create_position_ids_from_input_ids).
  let positions: number[];
  if (type === 'roberta') {
    const pad = (config.pad_token_id as number | undefined) ?? 1;
    let seen = 0;
    positions = ids.map((id) => (id === pad ? pad : pad + ++seen));
  } else positions = ids.map((_, t) => t);

  const e = `${prefix}embeddings`;
  let xs: Float64Array[] = ids.map((id, t) => {
    let x = add(row(`${e}.word_embeddings.weight`, id), row(`${e}.position_embeddings.weight`, positions[t]));
    if (!distil) x = add(x, row(`${e}.token_type_embeddings.weight`, types[t]));
    return layerNorm(x, w(`${e}.LayerNorm.weight`), w(`${e}.LayerNorm.bias`), eps);
  });

  for (let l = 0; l < L; l++) {
    const p = distil ? `${prefix}transformer.layer.${l}` : `${prefix}encoder.layer.${l}`;
    const n = distil
      ? {
          q: `${p}.attention.q_lin`,
          k: `${p}.attention.k_lin`,
          v: `${p}.attention.v_lin`,
          o: `${p}.attention.out_lin`,
          attnNorm: `${p}.sa_layer_norm`,
          up: `${p}.ffn.lin1`,
          down: `${p}.ffn.lin2`,
          outNorm: `${p}.output_layer_norm`,
        }
      : {
          q: `${p}.attention.self.query`,
          k: `${p}.attention.self.key`,
          v: `${p}.attention.self.value`,
          o: `${p}.attention.output.dense`,
          attnNorm: `${p}.attention.output.LayerNorm`,
          up: `${p}.intermediate.dense`,
          down: `${p}.output.dense`,
          outNorm: `${p}.output.LayerNorm`,
        };
    const lin = (name: string, x: Float64Array) => linear(w(`${name}.weight`), w(`${name}.bias`), x);
    const norm = (name: string, x: Float64Array) => layerNorm(x, w(`${name}.weight`), w(`${name}.bias`), eps);
    for (const [t, x] of xs.entries()) opts.onLinearInput?.(l, 'attn_in', t, x);
    const qs = xs.map((x) => lin(n.q, x));
    const ks = xs.map((x) => lin(n.k, x));
    const vs = xs.map((x) => lin(n.v, x));
    const H = qs[0].length / hd;
    xs = xs.map((x, t) => {
      const context = new Float64Array(H * hd);
      for (let h = 0; h < H; h++) {
        const scores = new Float64Array(S);
        let max = Number.NEGATIVE_INFINITY;
        for (let u = 0; u < S; u++) {
          if (mask[u] === 0) continue;
          let s = 0;
          for (let d = 0; d < hd; d++) s += qs[t][h * hd + d] * ks[u][h * hd + d];
          scores[u] = s / Math.sqrt(hd);
          max = Math.max(max, scores[u]);
        }
        let z = 0;
        for (let u = 0; u < S; u++) {
          scores[u] = mask[u] === 0 ? 0 : Math.exp(scores[u] - max);
          z += scores[u];
        }
        const keep = opts.headMask ? opts.headMask[l][h] : 1;
        for (let u = 0; u < S; u++) {
          const pr = (keep * scores[u]) / z;
          for (let d = 0; d < hd; d++) context[h * hd + d] += pr * vs[u][h * hd + d];
        }
      }
      opts.onLinearInput?.(l, 'o_in', t, context);
      const gate = (block: 0 | 1, y: Float64Array) =>
        opts.blockMask ? y.map((v) => v * opts.blockMask![l][block]) : y;
      const attended = norm(n.attnNorm, add(x, gate(0, lin(n.o, context))));
      opts.onLinearInput?.(l, 'mlp_in', t, attended);
      const inner = lin(n.up, attended).map(
        (v, j) => act(v) * (opts.channelMask ? opts.channelMask[l][j] : 1),
      );
      opts.onLinearInput?.(l, 'down_in', t, inner);
      return norm(n.outNorm, add(attended, gate(1, lin(n.down, inner))));
    });
  }

  const out: EncoderReferenceOutput = { lastHiddenState: xs };
  if (classify) {
    const first = xs[0];
    const head = (name: string, x: Float64Array) => linear(w(`${name}.weight`), w(`${name}.bias`), x);
    if (type === 'bert') out.logits = head('classifier', head(`${prefix}pooler.dense`, first).map(Math.tanh));
    else if (type === 'roberta')
      out.logits = head('classifier.out_proj', head('classifier.dense', first).map(Math.tanh));
    else
      out.logits = head(
        'classifier',
        head('pre_classifier', first).map((v) => Math.max(0, v)),
      );
  }
  return out;
}
