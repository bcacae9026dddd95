/**
 * A plain-TypeScript Phi-3 forward (loops, float64), written from the published definition and reading the Hugging
 * Face tensors by their own names (Phi3ForCausalLM, `model.` prefix, fused qkv_proj and gate_up_proj) — nothing from
 * the spec or the graph code, so the loader's split of the fused tensors is checked too.
 *
 * x = embed[id]; per layer: qkv = qkv_proj(rms₁(x)) split into q (H·hd rows), k and v (KV·hd rows each); the first
 * rotaryDim dims of each q and k head rotate in half-split pairs (j, j + rotaryDim/2), the rest pass through;
 * scores q·k/√hd, causal (and within sliding_window when set: i − w < j ≤ i), softmax, ·v; x += o_proj(heads);
 * then g, u = halves of gate_up_proj(rms₂(x)); x += down_proj(silu(g)·u); logits = lm_head(rms(x)).
 * Rotary frequency j (of rotaryDim/2) is θ^(−2j/rotaryDim); LongRoPE divides it by short_factor[j] while the
 * sequence is at most the original context long and by long_factor[j] at every position once it is longer, and
 * multiplies cos and sin by attention_factor (given, else √(1 + ln s/ln original) with s = factor or
 * max_position_embeddings / original, 1 when s ≤ 1).
 */

import { rmsNorm, silu } from './ops.js';

export interface Phi3Reference {
  hiddenSize: number;
  numLayers: number;
  headDim: number;
  /** Query and KV heads per layer as stored. */
  headsPerLayer: number[];
  kvHeadsPerLayer: number[];
  intermediateSize: number;
  vocabSize: number;
  maxPositions: number;
  eps: number;
  ropeTheta: number;
  /** Rotated dims per head (head_dim · partial_rotary_factor). */
  rotaryDim: number;
  longrope?: {
    shortFactor: number[];
    longFactor: number[];
    original: number;
    factor?: number;
    attentionFactor?: number;
  };
  slidingWindow?: number;
  tieEmbeddings: boolean;
  get(name: string): Float32Array | undefined;
}

function linear(W: Float32Array, x: Float64Array, out: number, row0 = 0): Float64Array {
  const n = x.length;
  const y = new Float64Array(out);
  for (let o = 0; o < out; o++) {
    let s = 0;
    for (let i = 0; i < n; i++) s += W[(row0 + o) * n + i] * x[i];
    y[o] = s;
  }
  return y;
}

/** Logits [seq][vocab]; `headMask[layer][head]` multiplies that query head's attention output. */
export function phi3Forward(m: Phi3Reference, tokens: number[], headMask?: number[][]): Float64Array[] {
  const D = m.hiddenSize;
  const hd = m.headDim;
  const rd = m.rotaryDim;
  const t = (name: string): Float32Array => {
    const w = m.get(name);
    if (!w) throw new Error(`reference: no tensor ${name}`);
    return w;
  };
  // The rotary angle table for this sequence length (LongRoPE picks its factors by the length).
  const lr = m.longrope;
  const useLong = lr !== undefined && tokens.length > lr.original;
  let attnFactor = 1;
  if (lr) {
    const s = lr.factor ?? m.maxPositions / lr.original;
    attnFactor = lr.attentionFactor ?? (s <= 1 ? 1 : Math.sqrt(1 + Math.log(s) / Math.log(lr.original)));
  }
  const freq = Array.from({ length: rd / 2 }, (_, j) => {
    const f = 1 / m.ropeTheta ** ((2 * j) / rd);
    return lr ? f / (useLong ? lr.longFactor : lr.shortFactor)[j] : f;
  });
  const rotate = (v: Float64Array, heads: number, pos: number) => {
    for (let h = 0; h < heads; h++) {
      const base = h * hd;
      for (let j = 0; j < rd / 2; j++) {
        const c = Math.cos(pos * freq[j]) * attnFactor;
        const s = Math.sin(pos * freq[j]) * attnFactor;
        const a = v[base + j];
        const b = v[base + rd / 2 + j];
        v[base + j] = a * c - b * s;
        v[base + rd / 2 + j] = b * c + a * s;
      }
    }
  };
  const embed = t('model.embed_tokens.weight');
  let xs = tokens.map((id) => Float64Array.from({ length: D }, (_, i) => embed[id * D + i]));
  for (let l = 0; l < m.numLayers; l++) {
    const p = `model.layers.${l}`;
    const H = m.headsPerLayer[l];
    const KV = m.kvHeadsPerLayer[l];
    const qkvW = t(`${p}.self_attn.qkv_proj.weight`);
    const normed = xs.map((x) => rmsNorm(x, t(`${p}.input_layernorm.weight`), m.eps));
    const q = normed.map((x, pos) => {
      const y = linear(qkvW, x, H * hd, 0);
      rotate(y, H, pos);
      return y;
    });
    const k = normed.map((x, pos) => {
      const y = linear(qkvW, x, KV * hd, H * hd);
      rotate(y, KV, pos);
      return y;
    });
    const v = normed.map((x) => linear(qkvW, x, KV * hd, (H + KV) * hd));
    xs = xs.map((x, i) => {
      const merged = new Float64Array(H * hd);
      for (let h = 0; h < H; h++) {
        const g = Math.floor(h / (H / KV));
        const keep = headMask ? headMask[l][h] : 1;
        const visible: number[] = [];
        for (let j = 0; j <= i; j++)
          if (m.slidingWindow === undefined || j > i - m.slidingWindow) visible.push(j);
        const scores = visible.map((j) => {
          let s = 0;
          for (let d = 0; d < hd; d++) s += q[i][h * hd + d] * k[j][g * hd + d];
          return s / Math.sqrt(hd);
        });
        const max = Math.max(...scores);
        const e = scores.map((s) => Math.exp(s - max));
        const z = e.reduce((a, b) => a + b, 0);
        visible.forEach((j, n) => {
          for (let d = 0; d < hd; d++) merged[h * hd + d] += ((keep * e[n]) / z) * v[j][g * hd + d];
        });
      }
      const o = linear(t(`${p}.self_attn.o_proj.weight`), merged, D);
      return x.map((val, c) => val + o[c]);
    });
    const I = m.intermediateSize;
    xs = xs.map((x) => {
      const n = rmsNorm(x, t(`${p}.post_attention_layernorm.weight`), m.eps);
      const gu = linear(t(`${p}.mlp.gate_up_proj.weight`), n, 2 * I);
      const act = Float64Array.from({ length: I }, (_, i) => silu(gu[i]) * gu[I + i]);
      const o = linear(t(`${p}.mlp.down_proj.weight`), act, D);
      return x.map((val, c) => val + o[c]);
    });
  }
  const head = m.tieEmbeddings ? embed : t('lm_head.weight');
  return xs.map((x) => linear(head, rmsNorm(x, t('model.norm.weight'), m.eps), m.vocabSize));
}
