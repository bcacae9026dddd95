/**
 * A plain-TypeScript forward pass of T5 encoder-decoders (loops, float64 activations, no ONNX Runtime), written
 * from the T5 definition (Raffel et al. 2020; transformers' modeling_t5 read for the facts only). It is the oracle
 * the encoder-decoder graphs are checked against, so it reads nothing but the ModelSpec's config and tensors (by
 * role) and shares no code with src/graph.
 *
 * What it computes, per row:
 * - Encoder: token embedding (no scaling, no positions); per block: RMS norm (x·w/√(mean(x²)+eps), no mean, no
 *   bias) → self-attention with scores q·k (NOT divided by √d) + the encoder's relative-position bias (bidirectional
 *   buckets) and keys where srcMask is 0 excluded → o → residual; RMS norm → MLP (v1.0: relu(up); gated: act(gate)·up, act gelu-tanh or silu) →
 *   residual. Then the encoder's final RMS norm.
 * - Decoder: token embedding; per block: self-attention (causal buckets, keys j ≤ i), cross-attention over the final
 *   encoder output (no position bias, source padding excluded), MLP, each pre-norm with a residual; final RMS norm,
 *   × outputScale (tied T5: d_model^−½), then the head (the embedding when tied, else lm_head).
 * - Every stack reads one bias table: layer l's query head h reads column relColumnsOfLayer(config, l)[h].
 * - Head mask (optional): Float32Array [rows × maxHeads], rows encoder self 0…E−1, decoder self E…L−1, cross
 *   L…L+D−1 (the contract's order); entry (row, h) multiplies head h's attention output (transformers multiplies the
 *   softmax weights by layer_head_mask, which is the same thing), so 0 removes the head.
 *
 * The decoder runs one position at a time over a cache of its own keys and values; causal attention makes that
 * identical to a whole-sequence pass, and it makes greedy decoding cheap enough for the real model's tests.
 */
import type { ModelConfig, ModelSpec } from '../../src/model/spec.js';
import { relColumnsOfLayer } from '../../src/model/spec.js';

export interface T5Reference {
  config: ModelConfig;
  /** The final encoder hidden states (after the encoder's final norm): [batch][position][hidden]. */
  encode(srcIds: number[][], srcMask: number[][], headMask?: Float32Array): Float64Array[][];
  /**
   * Teacher-forced logits [batch][position][vocab]: position t of row b is the prediction after reading
   * decIds[b][0..t] (decIds rows may differ in length; each row starts with its own first token, usually the
   * decoder start id).
   */
  decodeLogits(
    srcIds: number[][],
    srcMask: number[][],
    decIds: number[][],
    headMask?: Float32Array,
  ): Float64Array[][];
  /**
   * The mean-able NLL of target `labels` given the source, as T5 is trained: decoder input is
   * [decoderStartTokenId, ...labels[:-1]], and every label counts. Returns the sum of −log p over all labels of all
   * rows and how many labels there were.
   */
  targetNll(
    srcIds: number[][],
    srcMask: number[][],
    labels: number[][],
    headMask?: Float32Array,
  ): { sum: number; count: number; perRow: number[] };
  /**
   * Greedy decoding from decoderStartTokenId, at most maxNew tokens per row. A row stops at eos; the returned ids
   * exclude the start token and EXCLUDE the eos token (a row that never emits eos has exactly maxNew ids). Ties in
   * the argmax go to the lowest id (torch.argmax's choice).
   */
  greedy(srcIds: number[][], srcMask: number[][], maxNew: number, headMask?: Float32Array): number[][];
}

/**
 * T5's relative position bucket of `rel` = key position − query position. Bidirectional (encoder): half the buckets
 * per sign, keys after the query in the upper half. Causal (decoder): only rel ≤ 0 counts (rel > 0 maps to bucket
 * 0, which causal masking hides anyway). Distances below half the (per-direction) buckets get their own bucket;
 * larger ones share log-spaced buckets up to maxDistance, and everything beyond it the last bucket.
 */
export function relativeBucket(
  rel: number,
  bidirectional: boolean,
  buckets: number,
  maxDistance: number,
): number {
  let n = buckets;
  let bucket = 0;
  let dist: number;
  if (bidirectional) {
    n = Math.floor(n / 2);
    if (rel > 0) bucket += n;
    dist = Math.abs(rel);
  } else {
    dist = Math.max(-rel, 0);
  }
  const maxExact = Math.floor(n / 2);
  if (dist < maxExact) return bucket + dist;
  // Computed in float64; torch computes it in float32. The two truncate to the same bucket for every distance below
  // 3000 with 32/128, 32/256, 64/128, 128/128 and 8/12 buckets/max distance (checked against a float32 emulation):
  // the boundaries that land exactly on whole numbers are ratios of logs of powers of two, exact in both.
  const large =
    maxExact + Math.trunc((Math.log(dist / maxExact) / Math.log(maxDistance / maxExact)) * (n - maxExact));
  return bucket + Math.min(large, n - 1);
}

/** y = W x, W stored [out, in]. */
function linear(W: Float32Array, x: Float64Array): Float64Array {
  const inn = x.length;
  const out = W.length / inn;
  const y = new Float64Array(out);
  for (let o = 0; o < out; o++) {
    let s = 0;
    const row = o * inn;
    for (let i = 0; i < inn; i++) s += W[row + i] * x[i];
    y[o] = s;
  }
  return y;
}

/** T5LayerNorm: scale only, no mean subtraction, no bias. */
function rmsNorm(x: Float64Array, w: Float32Array, eps: number): Float64Array {
  let ms = 0;
  for (const v of x) ms += v * v;
  const r = 1 / Math.sqrt(ms / x.length + eps);
  const y = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) y[i] = x[i] * r * w[i];
  return y;
}

/** The MLP activations T5 checkpoints use, by their published definitions. */
function activationOf(name: string): (x: number) => number {
  switch (name) {
    case 'relu':
      return (x) => Math.max(0, x);
    case 'gelu_tanh':
      return (x) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));
    case 'silu':
      return (x) => x / (1 + Math.exp(-x));
    default:
      throw new Error(`t5Reference: no activation ${name}`);
  }
}

function add(a: Float64Array, b: Float64Array): Float64Array {
  const y = new Float64Array(a.length);
  for (let i = 0; i < a.length; i++) y[i] = a[i] + b[i];
  return y;
}

/**
 * One attention head group: query vector q (heads × hd), keys/values per position (heads × hd each), scores
 * q·k + bias(h, j) over the positions `visible(j)` allows, softmax, weights × values, each head scaled by keep(h).
 */
function attend(
  q: Float64Array,
  keys: Float64Array[],
  values: Float64Array[],
  heads: number,
  hd: number,
  visible: (j: number) => boolean,
  bias: (h: number, j: number) => number,
  keep: (h: number) => number,
): Float64Array {
  const out = new Float64Array(heads * hd);
  const n = keys.length;
  const scores = new Float64Array(n);
  for (let h = 0; h < heads; h++) {
    const k = keep(h);
    if (k === 0) continue;
    let max = Number.NEGATIVE_INFINITY;
    for (let j = 0; j < n; j++) {
      if (!visible(j)) {
        scores[j] = Number.NEGATIVE_INFINITY;
        continue;
      }
      let s = 0;
      for (let d = 0; d < hd; d++) s += q[h * hd + d] * keys[j][h * hd + d];
      s += bias(h, j);
      scores[j] = s;
      if (s > max) max = s;
    }
    if (max === Number.NEGATIVE_INFINITY) continue; // nothing visible (an all-padding source): output 0
    let z = 0;
    for (let j = 0; j < n; j++) {
      scores[j] = scores[j] === Number.NEGATIVE_INFINITY ? 0 : Math.exp(scores[j] - max);
      z += scores[j];
    }
    for (let j = 0; j < n; j++) {
      if (scores[j] === 0) continue;
      const wgt = (k * scores[j]) / z;
      for (let d = 0; d < hd; d++) out[h * hd + d] += wgt * values[j][h * hd + d];
    }
  }
  return out;
}

/** Loads every tensor of a T5 spec and returns the reference forward over it. */
/**
 * `onLinear` (tests of activation statistics): called with each linear's role and the input vector it multiplies,
 * once per position that reaches it — real source positions of the row (the padding the caller cut off never
 * does) and every decoder position.
 */
export async function t5Reference(
  spec: ModelSpec,
  opts: { onLinear?: (role: string, input: Float64Array) => void } = {},
): Promise<T5Reference> {
  const c = spec.config;
  const e = c.encdec;
  if (!e) throw new Error('t5Reference: not an encoder-decoder spec');
  const W = new Map<string, Float32Array>();
  for (const [role, src] of spec.tensors) W.set(role, await src.load());
  const need = (role: string): Float32Array => {
    const t = W.get(role);
    if (!t) throw new Error(`t5Reference: missing ${role}`);
    return t;
  };
  const lin = (role: string, x: Float64Array): Float64Array => {
    opts.onLinear?.(role, x);
    return linear(need(role), x);
  };
  const D = c.hiddenSize;
  const hd = c.headDim;
  const E = e.encoderLayers;
  const L = c.numLayers;
  const decLayers = L - E;
  const rows = L + decLayers;
  const emb = need('embed.tokens');
  const head = c.tieEmbeddings ? emb : need('lm_head.weight');
  const eps = c.normEps;
  const act = activationOf(c.activation);

  const embed = (id: number): Float64Array => {
    if (!Number.isInteger(id) || id < 0 || id >= c.vocabSize)
      throw new Error(`t5Reference: token ${id} out of range`);
    return Float64Array.from(emb.subarray(id * D, (id + 1) * D));
  };

  const keepOf = (mask: Float32Array | undefined, row: number) => {
    if (!mask) return () => 1;
    if (mask.length % rows !== 0)
      throw new Error(`t5Reference: head mask of ${mask.length} values, not ${rows} rows`);
    const maxHeads = mask.length / rows;
    return (h: number) => mask[row * maxHeads + h];
  };

  const mlp = (l: number, x: Float64Array): Float64Array => {
    const p = `layers.${l}`;
    const h = rmsNorm(x, need(`${p}.mlp_norm.weight`), eps);
    const up = lin(`${p}.mlp.up.weight`, h);
    if (c.mlpKind === 'gated') {
      const gate = lin(`${p}.mlp.gate.weight`, h);
      for (let i = 0; i < up.length; i++) up[i] *= act(gate[i]);
    } else {
      for (let i = 0; i < up.length; i++) up[i] = act(up[i]);
    }
    return add(x, lin(`${p}.mlp.down.weight`, up));
  };

  const encBias = need('rel_bias.encoder.weight');
  const decBias = need('rel_bias.decoder.weight');

  const encodeRow = (ids: number[], mask: number[], headMask?: Float32Array): Float64Array[] => {
    if (mask.length !== ids.length)
      throw new Error('t5Reference: srcMask row length differs from srcIds row');
    let xs = ids.map(embed);
    for (let l = 0; l < E; l++) {
      const p = `layers.${l}`;
      const H = c.headsPerLayer[l];
      const cols = relColumnsOfLayer(c, l);
      const keep = keepOf(headMask, l);
      const hs = xs.map((x) => rmsNorm(x, need(`${p}.attn_norm.weight`), eps));
      const qs = hs.map((h) => lin(`${p}.attn.q.weight`, h));
      const ks = hs.map((h) => lin(`${p}.attn.k.weight`, h));
      const vs = hs.map((h) => lin(`${p}.attn.v.weight`, h));
      xs = xs.map((x, i) => {
        const a = attend(
          qs[i],
          ks,
          vs,
          H,
          hd,
          (j) => mask[j] !== 0,
          (h, j) =>
            encBias[
              relativeBucket(j - i, true, e.relativeBuckets, e.relativeMaxDistance) * e.encoderBiasColumns +
                cols[h]
            ],
          keep,
        );
        return add(x, lin(`${p}.attn.o.weight`, a));
      });
      xs = xs.map((x) => mlp(l, x));
    }
    return xs.map((x) => rmsNorm(x, need('encoder_norm.weight'), eps));
  };

  /** A decoder over one row's encoder output: step(token) returns the logits after that token. */
  const decoderOf = (encOut: Float64Array[], mask: number[], headMask?: Float32Array) => {
    const crossK: Float64Array[][] = [];
    const crossV: Float64Array[][] = [];
    for (let d = 0; d < decLayers; d++) {
      const p = `layers.${E + d}`;
      crossK.push(encOut.map((h) => lin(`${p}.cross.k.weight`, h)));
      crossV.push(encOut.map((h) => lin(`${p}.cross.v.weight`, h)));
    }
    const selfK: Float64Array[][] = Array.from({ length: decLayers }, () => []);
    const selfV: Float64Array[][] = Array.from({ length: decLayers }, () => []);
    let pos = 0;
    return (token: number): Float64Array => {
      const i = pos++;
      let x = embed(token);
      for (let d = 0; d < decLayers; d++) {
        const l = E + d;
        const p = `layers.${l}`;
        const cols = relColumnsOfLayer(c, l);
        const h = rmsNorm(x, need(`${p}.attn_norm.weight`), eps);
        selfK[d].push(lin(`${p}.attn.k.weight`, h));
        selfV[d].push(lin(`${p}.attn.v.weight`, h));
        const a = attend(
          lin(`${p}.attn.q.weight`, h),
          selfK[d],
          selfV[d],
          c.headsPerLayer[l],
          hd,
          (j) => j <= i,
          (hh, j) =>
            decBias[
              relativeBucket(j - i, false, e.relativeBuckets, e.relativeMaxDistance) * e.decoderBiasColumns +
                cols[hh]
            ],
          keepOf(headMask, l),
        );
        x = add(x, lin(`${p}.attn.o.weight`, a));
        const hc = rmsNorm(x, need(`${p}.cross_norm.weight`), eps);
        const ca = attend(
          lin(`${p}.cross.q.weight`, hc),
          crossK[d],
          crossV[d],
          e.crossHeadsPerLayer[d],
          hd,
          (j) => mask[j] !== 0,
          () => 0,
          keepOf(headMask, L + d),
        );
        x = add(x, lin(`${p}.cross.o.weight`, ca));
        x = mlp(l, x);
      }
      const y = rmsNorm(x, need('final_norm.weight'), eps);
      for (let k = 0; k < D; k++) y[k] *= e.outputScale;
      return linear(head, y);
    };
  };

  const checkBatch = (srcIds: number[][], srcMask: number[][]) => {
    if (srcIds.length !== srcMask.length)
      throw new Error('t5Reference: srcIds and srcMask differ in batch size');
  };

  const ref: T5Reference = {
    config: c,
    encode(srcIds, srcMask, headMask) {
      checkBatch(srcIds, srcMask);
      return srcIds.map((ids, b) => encodeRow(ids, srcMask[b], headMask));
    },
    decodeLogits(srcIds, srcMask, decIds, headMask) {
      checkBatch(srcIds, srcMask);
      return srcIds.map((ids, b) => {
        const step = decoderOf(encodeRow(ids, srcMask[b], headMask), srcMask[b], headMask);
        return decIds[b].map((t) => step(t));
      });
    },
    targetNll(srcIds, srcMask, labels, headMask) {
      const dec = labels.map((row) => [e.decoderStartTokenId, ...row.slice(0, -1)]);
      const logits = ref.decodeLogits(srcIds, srcMask, dec, headMask);
      let sum = 0;
      let count = 0;
      const perRow = labels.map((row, b) => {
        let rowSum = 0;
        row.forEach((label, t) => {
          const z = logits[b][t];
          let max = Number.NEGATIVE_INFINITY;
          for (const v of z) if (v > max) max = v;
          let s = 0;
          for (const v of z) s += Math.exp(v - max);
          rowSum += max + Math.log(s) - z[label];
        });
        sum += rowSum;
        count += row.length;
        return rowSum;
      });
      return { sum, count, perRow };
    },
    greedy(srcIds, srcMask, maxNew, headMask) {
      checkBatch(srcIds, srcMask);
      return srcIds.map((ids, b) => {
        const step = decoderOf(encodeRow(ids, srcMask[b], headMask), srcMask[b], headMask);
        const out: number[] = [];
        let token = e.decoderStartTokenId;
        for (let n = 0; n < maxNew; n++) {
          const z = step(token);
          let best = 0;
          for (let v = 1; v < z.length; v++) if (z[v] > z[best]) best = v;
          if (best === c.eosTokenId) break;
          out.push(best);
          token = best;
        }
        return out;
      });
    },
  };
  return ref;
}
