/**
 * A plain-TypeScript LLaMA forward pass (loops, float64 accumulators, no ONNX Runtime), written directly from
 * the architecture's definition. It is the independent oracle the engine's logits are checked against.
 *
 * `rotary: 'interleaved'` rotates pairs (2i, 2i+1) as llama2.c does, so it can run on raw llama2.c weights;
 * `'half'` rotates pairs (i, i + headDim/2) as Hugging Face does.
 */

export interface ReferenceWeights {
  hiddenSize: number;
  numLayers: number;
  headDim: number;
  headsPerLayer: number[];
  kvHeadsPerLayer: number[];
  kvHeadOfQuery?: number[][];
  intermediateSize: number;
  vocabSize: number;
  normEps: number;
  ropeTheta: number;
  /**
   * config.json's rope_scaling object, read here by the published definitions (not through src/model/rope.ts);
   * maxPositions is max_position_embeddings, which yarn and dynamic NTK read.
   */
  ropeScalingJson?: Record<string, unknown>;
  maxPositions?: number;
  tieEmbeddings: boolean;
  /** The MLP activation (default silu, LLaMA's). */
  activation?: 'silu' | 'gelu' | 'gelu_tanh' | 'relu';
  /**
   * Per layer, a sliding attention window w (Mistral, Qwen2 with use_sliding_window): position t attends to
   * positions u with t − w < u ≤ t, the last w positions including itself; 0 or absent = all earlier positions.
   */
  slidingWindow?: number[];
  get(role: string): Float32Array | undefined;
}

/**
 * erf by Abramowitz & Stegun 7.1.26 (absolute error below 1.5e-7), since JavaScript has no Math.erf.
 */
function erf(x: number): number {
  const t = 1 / (1 + 0.3275911 * Math.abs(x));
  const y =
    1 -
    ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t + 0.254829592) *
      t *
      Math.exp(-x * x);
  return x >= 0 ? y : -y;
}

/** The activations by their published definitions. */
function activate(kind: ReferenceWeights['activation'], x: number): number {
  switch (kind ?? 'silu') {
    case 'silu':
      return x / (1 + Math.exp(-x));
    case 'relu':
      return Math.max(0, x);
    case 'gelu':
      return 0.5 * x * (1 + erf(x / Math.SQRT2));
    case 'gelu_tanh':
      return 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));
    default:
      throw new Error(`reference: no activation ${kind}`);
  }
}

/** y[o] = sum_i W[o, i] x[i] + b[o], W in [out, in] layout. */
function linear(W: Float32Array, b: Float32Array | undefined, x: Float64Array, out: number): Float64Array {
  const inn = x.length;
  const y = new Float64Array(out);
  for (let o = 0; o < out; o++) {
    let s = b ? b[o] : 0;
    for (let i = 0; i < inn; i++) s += W[o * inn + i] * x[i];
    y[o] = s;
  }
  return y;
}

function rmsNorm(x: Float64Array, w: Float32Array, eps: number): Float64Array {
  let ss = 0;
  for (const v of x) ss += v * v;
  const r = 1 / Math.sqrt(ss / x.length + eps);
  return x.map((v, i) => v * r * w[i]);
}

/**
 * The rotation frequency of each pair j < hd/2 for a sequence of `seqLen` positions, by each kind's definition
 * (transformers' modeling_rope_utils, the Llama 3.1 release, the YaRN paper), plus the factor cos and sin carry.
 */
export function referenceFrequencies(
  w: Pick<ReferenceWeights, 'ropeTheta' | 'headDim' | 'ropeScalingJson' | 'maxPositions'>,
  seqLen: number,
): { freqs: number[]; cosSinFactor: number } {
  const hd = w.headDim;
  const pairs = Array.from({ length: hd / 2 }, (_, j) => j);
  const plain = (base: number) => pairs.map((j) => base ** (-(2 * j) / hd));
  const rs = w.ropeScalingJson;
  const kind = rs ? (rs.rope_type ?? rs.type) : 'default';
  if (!rs || kind === 'default') return { freqs: plain(w.ropeTheta), cosSinFactor: 1 };
  const num = (key: string): number => {
    const v = rs[key];
    if (typeof v !== 'number') throw new Error(`reference: rope_scaling.${key} is not a number`);
    return v;
  };
  const maxPos = w.maxPositions ?? Number.NaN;
  switch (kind) {
    case 'linear':
      // Position p is read as p / factor.
      return { freqs: plain(w.ropeTheta).map((f) => f / num('factor')), cosSinFactor: 1 };
    case 'dynamic': {
      // NTK-aware: a larger base once the sequence outgrows the trained context.
      if (seqLen <= maxPos) return { freqs: plain(w.ropeTheta), cosSinFactor: 1 };
      const a = num('factor');
      const base = w.ropeTheta * ((a * seqLen) / maxPos - (a - 1)) ** (hd / (hd - 2));
      return { freqs: plain(base), cosSinFactor: 1 };
    }
    case 'llama3': {
      const a = num('factor');
      const lo = num('low_freq_factor');
      const hi = num('high_freq_factor');
      const old = num('original_max_position_embeddings');
      const freqs = plain(w.ropeTheta).map((f) => {
        // Rotations over the old context: few → fully interpolated, many → untouched, smooth in between.
        const turns = (old * f) / (2 * Math.PI);
        if (turns < lo) return f / a;
        if (turns > hi) return f;
        const t = (turns - lo) / (hi - lo);
        return t * f + (1 - t) * (f / a);
      });
      return { freqs, cosSinFactor: 1 };
    }
    case 'yarn': {
      const a = num('factor');
      const old =
        typeof rs.original_max_position_embeddings === 'number'
          ? rs.original_max_position_embeddings
          : maxPos;
      const fast = typeof rs.beta_fast === 'number' && rs.beta_fast !== 0 ? rs.beta_fast : 32;
      const slow = typeof rs.beta_slow === 'number' && rs.beta_slow !== 0 ? rs.beta_slow : 1;
      // Pair index whose frequency turns r times over the old context: old·θ^(−2d/hd) = 2πr.
      const pairTurning = (r: number) =>
        (hd / 2) * (Math.log(old / (2 * Math.PI * r)) / Math.log(w.ropeTheta));
      // truncate (default true) widens the ramp to whole pairs.
      const whole = rs.truncate !== false;
      const start = Math.max(0, whole ? Math.floor(pairTurning(fast)) : pairTurning(fast));
      let end = Math.min(hd - 1, whole ? Math.ceil(pairTurning(slow)) : pairTurning(slow));
      if (end === start) end += 0.001;
      const freqs = plain(w.ropeTheta).map((f, j) => {
        const mix = j <= start ? 0 : j >= end ? 1 : (j - start) / (end - start);
        return mix * (f / a) + (1 - mix) * f;
      });
      const given = rs.attention_factor;
      const temperature = (m: number) => (a <= 1 ? 1 : 1 + 0.1 * m * Math.log(a));
      let cosSinFactor: number;
      if (typeof given === 'number') cosSinFactor = given;
      else if (
        typeof rs.mscale === 'number' &&
        rs.mscale &&
        typeof rs.mscale_all_dim === 'number' &&
        rs.mscale_all_dim
      )
        cosSinFactor = temperature(rs.mscale) / temperature(rs.mscale_all_dim);
      else cosSinFactor = temperature(1);
      return { freqs, cosSinFactor };
    }
    default:
      throw new Error(`reference: no rope_scaling kind ${String(kind)}`);
  }
}

function rotate(
  vec: Float64Array,
  offset: number,
  pos: number,
  rope: { freqs: number[]; cosSinFactor: number },
  layout: 'half' | 'interleaved',
) {
  const hd = rope.freqs.length * 2;
  for (let j = 0; j < hd / 2; j++) {
    const c = rope.cosSinFactor * Math.cos(pos * rope.freqs[j]);
    const s = rope.cosSinFactor * Math.sin(pos * rope.freqs[j]);
    const a = layout === 'half' ? offset + j : offset + 2 * j;
    const b = layout === 'half' ? offset + j + hd / 2 : offset + 2 * j + 1;
    const x0 = vec[a];
    const x1 = vec[b];
    vec[a] = x0 * c - x1 * s;
    vec[b] = x0 * s + x1 * c;
  }
}

/** The four distinct inputs of a block's linears: q/k/v, o, gate/up, down. */
export type LinearInput = 'attn_in' | 'o_in' | 'mlp_in' | 'down_in';

export interface ReferenceOptions {
  rotary: 'half' | 'interleaved';
  headMask?: number[][];
  /**
   * Structured masks (masks/structured.ts): `channelMask[layer][j]` multiplies MLP channel j's activation (the
   * input of down); `blockMask[layer][0]` / `[1]` multiplies the attention / MLP block's output (bias included)
   * before its residual add.
   */
  channelMask?: number[][];
  blockMask?: number[][];
  /** Called with every linear input vector: layer, which input, position, the vector (do not keep it). */
  onLinearInput?: (layer: number, input: LinearInput, position: number, x: Float64Array) => void;
  /** Called with the residual stream leaving each layer, one vector per position. */
  onLayerOutput?: (layer: number, xs: Float64Array[]) => void;
  /** Called with the residual stream entering each layer's attention block and MLP block, one vector per position. */
  onBlockInput?: (layer: number, block: 'attn' | 'mlp', xs: Float64Array[]) => void;
}

/**
 * Logits [seq][vocab] for one sequence. `headMask[layer][head]` = 0 zeroes that head's attention output.
 */
export function referenceForward(
  w: ReferenceWeights,
  tokens: number[],
  opts: ReferenceOptions,
): Float64Array[] {
  const D = w.hiddenSize;
  const hd = w.headDim;
  const need = (role: string): Float32Array => {
    const t = w.get(role);
    if (!t) throw new Error(`reference: missing ${role}`);
    return t;
  };
  const emb = need('embed.tokens');
  const S = tokens.length;
  const rope = referenceFrequencies(w, S);
  let xs: Float64Array[] = tokens.map((t) => Float64Array.from(emb.subarray(t * D, (t + 1) * D)));

  for (let l = 0; l < w.numLayers; l++) {
    const H = w.headsPerLayer[l];
    const KV = w.kvHeadsPerLayer[l];
    const p = `layers.${l}`;
    opts.onBlockInput?.(l, 'attn', xs);
    if (H > 0) {
      const qs: Float64Array[] = [];
      const ks: Float64Array[] = [];
      const vs: Float64Array[] = [];
      for (let t = 0; t < S; t++) {
        const h = rmsNorm(xs[t], need(`${p}.attn_norm.weight`), w.normEps);
        opts.onLinearInput?.(l, 'attn_in', t, h);
        const q = linear(need(`${p}.attn.q.weight`), w.get(`${p}.attn.q.bias`), h, H * hd);
        const k = linear(need(`${p}.attn.k.weight`), w.get(`${p}.attn.k.bias`), h, KV * hd);
        const v = linear(need(`${p}.attn.v.weight`), w.get(`${p}.attn.v.bias`), h, KV * hd);
        for (let a = 0; a < H; a++) rotate(q, a * hd, t, rope, opts.rotary);
        for (let a = 0; a < KV; a++) rotate(k, a * hd, t, rope, opts.rotary);
        qs.push(q);
        ks.push(k);
        vs.push(v);
      }
      const next: Float64Array[] = [];
      for (let t = 0; t < S; t++) {
        const concat = new Float64Array(H * hd);
        for (let a = 0; a < H; a++) {
          const keep = opts.headMask ? opts.headMask[l][a] : 1;
          if (keep === 0) continue;
          const kvh = w.kvHeadOfQuery ? w.kvHeadOfQuery[l][a] : Math.floor(a / (H / KV));
          const window = w.slidingWindow?.[l] ?? 0;
          const first = window > 0 ? Math.max(0, t - window + 1) : 0;
          const scores = new Float64Array(t + 1);
          let max = Number.NEGATIVE_INFINITY;
          for (let u = first; u <= t; u++) {
            let s = 0;
            for (let d = 0; d < hd; d++) s += qs[t][a * hd + d] * ks[u][kvh * hd + d];
            scores[u] = s / Math.sqrt(hd);
            if (scores[u] > max) max = scores[u];
          }
          let z = 0;
          for (let u = first; u <= t; u++) {
            scores[u] = Math.exp(scores[u] - max);
            z += scores[u];
          }
          for (let u = first; u <= t; u++) {
            for (let d = 0; d < hd; d++) concat[a * hd + d] += (keep * scores[u] * vs[u][kvh * hd + d]) / z;
          }
        }
        opts.onLinearInput?.(l, 'o_in', t, concat);
        const o = linear(need(`${p}.attn.o.weight`), w.get(`${p}.attn.o.bias`), concat, D);
        const keepBlock = opts.blockMask ? opts.blockMask[l][0] : 1;
        next.push(xs[t].map((v, i) => v + keepBlock * o[i]));
      }
      xs = next;
    } else {
      // No heads: the block's output is the o projection's bias alone (nothing without one).
      const bias = w.get(`${p}.attn.o.bias`);
      const keepBlock = opts.blockMask ? opts.blockMask[l][0] : 1;
      if (bias) xs = xs.map((x) => x.map((v, i) => v + keepBlock * bias[i]));
    }
    opts.onBlockInput?.(l, 'mlp', xs);
    xs = xs.map((x, t) => {
      const h = rmsNorm(x, need(`${p}.mlp_norm.weight`), w.normEps);
      opts.onLinearInput?.(l, 'mlp_in', t, h);
      // The layer's MLP width is its down weight's column count (per-layer widths, 0 included).
      const width = need(`${p}.mlp.down.weight`).length / D;
      const gate = linear(need(`${p}.mlp.gate.weight`), w.get(`${p}.mlp.gate.bias`), h, width);
      const up = linear(need(`${p}.mlp.up.weight`), w.get(`${p}.mlp.up.bias`), h, width);
      const keep = (i: number) => (opts.channelMask ? opts.channelMask[l][i] : 1);
      const act = gate.map((gv, i) => activate(w.activation, gv) * up[i] * keep(i));
      opts.onLinearInput?.(l, 'down_in', t, act);
      const down = linear(need(`${p}.mlp.down.weight`), w.get(`${p}.mlp.down.bias`), act, D);
      const keepBlock = opts.blockMask ? opts.blockMask[l][1] : 1;
      return x.map((v, i) => v + keepBlock * down[i]);
    });
    opts.onLayerOutput?.(l, xs);
  }
  const head = w.tieEmbeddings ? emb : need('lm_head.weight');
  return xs.map((x) =>
    linear(head, undefined, rmsNorm(x, need('final_norm.weight'), w.normEps), w.vocabSize),
  );
}
