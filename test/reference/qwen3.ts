/**
 * A plain-TypeScript Qwen3 forward (loops, float64), written from the published definition and reading the Hugging
 * Face tensors by their own names (Qwen3ForCausalLM, `model.` prefix) — nothing from the spec or the graph code, so
 * the loader's name mapping is checked too.
 *
 * x = embed[id]; per layer: h = rms(x)·w₁; q = W_q·h (+b), k = W_k·h (+b), v = W_v·h (+b); each query head and each
 * key head is RMS-normed over its headDim values and scaled by q_norm / k_norm (one weight per layer, shared by the
 * heads), then rotated (half-split rotary, base rope_theta); scores q·k/√headDim under the causal mask (and, on
 * sliding layers, keys j > i − window only); x += W_o·(⊕ heads softmax·v) (+b); x += down(silu(gate(rms(x)))·
 * up(rms(x))); logits = rms(x)·w·headᵀ (the embedding when tied). RMSNorm is x/√(mean(x²) + eps)·w.
 */

import { linear, rmsNorm, rotate, silu } from './ops.js';

export interface Qwen3Reference {
  hiddenSize: number;
  numLayers: number;
  headDim: number;
  /** Query and KV heads per layer as stored, and which KV head each query head reads (default: even groups). */
  headsPerLayer: number[];
  kvHeadsPerLayer: number[];
  kvHeadOfQuery?: number[][];
  intermediateSize: number;
  vocabSize: number;
  eps: number;
  ropeTheta: number;
  tieEmbeddings: boolean;
  /** Per layer, the sliding window (0 or absent = global). */
  windows?: number[];
  /** Leave out the per-head q/k norms (to show they matter). */
  skipQkNorm?: boolean;
  /** Tensor by Hugging Face name, undefined when the checkpoint has none (biases). */
  get(name: string): Float32Array | undefined;
}

/** RMSNorm of x[from, from + n) in place: x / √(mean(x²) + eps) · w. */
function rmsNormAt(x: Float64Array, from: number, n: number, w: Float32Array, eps: number): void {
  let ss = 0;
  for (let i = 0; i < n; i++) ss += x[from + i] ** 2;
  const r = 1 / Math.sqrt(ss / n + eps);
  for (let i = 0; i < n; i++) x[from + i] = x[from + i] * r * w[i];
}

/** Logits [seq][vocab]; `headMask[layer][head]` multiplies that query head's attention output. */
export function qwen3Forward(m: Qwen3Reference, tokens: number[], headMask?: number[][]): Float64Array[] {
  const D = m.hiddenSize;
  const hd = m.headDim;
  const t = (name: string): Float32Array => {
    const w = m.get(name);
    if (!w) throw new Error(`reference: no tensor ${name}`);
    return w;
  };
  const embed = t('model.embed_tokens.weight');
  const scale = 1 / Math.sqrt(hd);
  let xs = tokens.map((id) => Float64Array.from(embed.subarray(id * D, (id + 1) * D)));
  for (let l = 0; l < m.numLayers; l++) {
    const p = `model.layers.${l}`;
    const H = m.headsPerLayer[l];
    const KV = m.kvHeadsPerLayer[l];
    const kvOf = (h: number) => m.kvHeadOfQuery?.[l][h] ?? Math.floor(h / (H / KV));
    const window = m.windows?.[l] ?? 0;
    if (H > 0) {
      const normed = xs.map((x) => rmsNorm(x, t(`${p}.input_layernorm.weight`), m.eps));
      const proj = (which: 'q' | 'k' | 'v', n: number) =>
        normed.map((x, pos) => {
          const y = linear(
            t(`${p}.self_attn.${which}_proj.weight`),
            x,
            n * hd,
            m.get(`${p}.self_attn.${which}_proj.bias`),
          );
          if (which === 'v') return y;
          for (let h = 0; h < n; h++) {
            if (!m.skipQkNorm) rmsNormAt(y, h * hd, hd, t(`${p}.self_attn.${which}_norm.weight`), m.eps);
            rotate(y, h, hd, pos, m.ropeTheta);
          }
          return y;
        });
      const q = proj('q', H);
      const k = proj('k', KV);
      const v = proj('v', KV);
      xs = xs.map((x, i) => {
        const merged = new Float64Array(H * hd);
        for (let h = 0; h < H; h++) {
          const g = kvOf(h);
          const keep = headMask ? headMask[l][h] : 1;
          const visible: number[] = [];
          for (let j = 0; j <= i; j++) if (window === 0 || j > i - window) visible.push(j);
          const scores = visible.map((j) => {
            let s = 0;
            for (let d = 0; d < hd; d++) s += q[i][h * hd + d] * k[j][g * hd + d];
            return s * scale;
          });
          const max = Math.max(...scores);
          const e = scores.map((s) => Math.exp(s - max));
          const z = e.reduce((a, b) => a + b, 0);
          visible.forEach((j, n) => {
            for (let d = 0; d < hd; d++) merged[h * hd + d] += ((keep * e[n]) / z) * v[j][g * hd + d];
          });
        }
        const o = linear(t(`${p}.self_attn.o_proj.weight`), merged, D, m.get(`${p}.self_attn.o_proj.bias`));
        return x.map((val, c) => val + o[c]);
      });
    }
    xs = xs.map((x) => {
      const n = rmsNorm(x, t(`${p}.post_attention_layernorm.weight`), m.eps);
      const gate = linear(t(`${p}.mlp.gate_proj.weight`), n, m.intermediateSize);
      const up = linear(t(`${p}.mlp.up_proj.weight`), n, m.intermediateSize);
      const o = linear(
        t(`${p}.mlp.down_proj.weight`),
        gate.map((g, i) => silu(g) * up[i]),
        D,
      );
      return x.map((val, c) => val + o[c]);
    });
  }
  const head = m.tieEmbeddings ? embed : t('lm_head.weight');
  return xs.map((x) => linear(head, rmsNorm(x, t('model.norm.weight'), m.eps), m.vocabSize));
}
