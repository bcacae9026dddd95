/**
 * A plain-TypeScript Gemma / Gemma 2 forward (loops, float64), written from the published definitions and reading
 * the Hugging Face tensors by their own names (GemmaForCausalLM / Gemma2ForCausalLM, `model.` prefix) — nothing
 * from the spec or the graph code, so the loader's name mapping is checked too.
 *
 * Gemma: x = embed[id]·√D; per layer x += o(attn(rms₁(x))), x += down(act(gate(rms₂(x)))·up(rms₂(x))); logits =
 * rms(x)·embedᵀ, where every RMSNorm scales by (1 + w) and attention scores are q·k/√headDim with half-split
 * rotary. Gemma 2: scores are q·k·query_pre_attn_scalar^−½, soft-capped cap·tanh(s/cap) before the causal (and,
 * on sliding layers, window) mask; even layers slide unless `layerTypes` says otherwise; each branch output goes
 * through its own norm before the residual add (sandwich norms); logits are soft-capped the same way.
 */

export interface GemmaReference {
  gemma2: boolean;
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
  activation: 'gelu_tanh' | 'gelu';
  tieEmbeddings: boolean;
  /** Gemma 2 only. */
  queryPreAttnScalar?: number;
  attnSoftcap?: number;
  finalSoftcap?: number;
  /** Window of the sliding layers (Gemma 2); undefined = none. */
  slidingWindow?: number;
  /** Per layer 'sliding_attention' | 'full_attention' (Gemma 2); default: even layers slide. */
  layerTypes?: string[];
  /** Tensor by Hugging Face name, undefined when the checkpoint has none (biases). */
  get(name: string): Float32Array | undefined;
}

/** erf by Abramowitz & Stegun 7.1.26 (absolute error below 1.5e-7). */
function erf(x: number): number {
  const t = 1 / (1 + 0.3275911 * Math.abs(x));
  const y =
    1 -
    ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t + 0.254829592) *
      t *
      Math.exp(-x * x);
  return x >= 0 ? y : -y;
}

const geluTanh = (x: number) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));
const geluErf = (x: number) => 0.5 * x * (1 + erf(x / Math.SQRT2));

/** y = W·x (+ b), W [out, in]. */
function linear(W: Float32Array, x: Float64Array, out: number, b?: Float32Array): Float64Array {
  const n = x.length;
  const y = new Float64Array(out);
  for (let o = 0; o < out; o++) {
    let s = b ? b[o] : 0;
    for (let i = 0; i < n; i++) s += W[o * n + i] * x[i];
    y[o] = s;
  }
  return y;
}

/** Gemma's RMSNorm: x / √(mean(x²) + eps) · (1 + w). */
function rmsNorm(x: Float64Array, w: Float32Array, eps: number): Float64Array {
  let ss = 0;
  for (const v of x) ss += v * v;
  const r = 1 / Math.sqrt(ss / x.length + eps);
  return x.map((v, i) => v * r * (1 + w[i]));
}

/** Half-split rotary on head `h` of a [heads·hd] vector at position `pos`, in place. */
function rotate(v: Float64Array, h: number, hd: number, pos: number, theta: number): void {
  const half = hd / 2;
  const base = h * hd;
  for (let j = 0; j < half; j++) {
    const angle = pos / theta ** ((2 * j) / hd);
    const c = Math.cos(angle);
    const s = Math.sin(angle);
    const a = v[base + j];
    const b = v[base + half + j];
    v[base + j] = a * c - b * s;
    v[base + half + j] = b * c + a * s;
  }
}

const cap = (s: number, c: number | undefined) => (c ? c * Math.tanh(s / c) : s);

/**
 * Logits [seq][vocab]; `headMask[layer][head]` multiplies that query head's attention output. Structured masks
 * (masks/structured.ts): `channelMask[layer][j]` multiplies MLP channel j's activation (the input of down_proj);
 * `blockMask[layer][0]` / `[1]` multiplies the attention / MLP branch output — after Gemma 2's post-block norm —
 * before its residual add. Each layer's MLP width is its down_proj's column count.
 */
export function gemmaForward(
  m: GemmaReference,
  tokens: number[],
  headMask?: number[][],
  structured: { channelMask?: number[][]; blockMask?: number[][] } = {},
): Float64Array[] {
  const D = m.hiddenSize;
  const hd = m.headDim;
  const t = (name: string): Float32Array => {
    const w = m.get(name);
    if (!w) throw new Error(`reference: no tensor ${name}`);
    return w;
  };
  const bias = (name: string) => m.get(name);
  const embed = t('model.embed_tokens.weight');
  const scale = m.gemma2 ? (m.queryPreAttnScalar ?? 256) ** -0.5 : 1 / Math.sqrt(hd);
  let xs = tokens.map((id) => {
    const x = new Float64Array(D);
    for (let i = 0; i < D; i++) x[i] = embed[id * D + i] * Math.sqrt(D);
    return x;
  });
  for (let l = 0; l < m.numLayers; l++) {
    const p = `model.layers.${l}`;
    const H = m.headsPerLayer[l];
    const KV = m.kvHeadsPerLayer[l];
    const kvOf = (h: number) => m.kvHeadOfQuery?.[l][h] ?? Math.floor(h / (H / KV));
    const sliding =
      m.gemma2 &&
      m.slidingWindow !== undefined &&
      (m.layerTypes ? m.layerTypes[l] === 'sliding_attention' : l % 2 === 0);
    if (H > 0) {
      const normed = xs.map((x) => rmsNorm(x, t(`${p}.input_layernorm.weight`), m.eps));
      const proj = (which: string, rows: number) =>
        normed.map((x, pos) => {
          const y = linear(
            t(`${p}.self_attn.${which}_proj.weight`),
            x,
            rows,
            bias(`${p}.self_attn.${which}_proj.bias`),
          );
          if (which !== 'v') for (let h = 0; h < rows / hd; h++) rotate(y, h, hd, pos, m.ropeTheta);
          return y;
        });
      const q = proj('q', H * hd);
      const k = proj('k', KV * hd);
      const v = proj('v', KV * hd);
      xs = xs.map((x, i) => {
        const merged = new Float64Array(H * hd);
        for (let h = 0; h < H; h++) {
          const g = kvOf(h);
          const keep = headMask ? headMask[l][h] : 1;
          const visible: number[] = [];
          for (let j = 0; j <= i; j++) if (!sliding || j > i - (m.slidingWindow as number)) visible.push(j);
          const scores = visible.map((j) => {
            let s = 0;
            for (let d = 0; d < hd; d++) s += q[i][h * hd + d] * k[j][g * hd + d];
            return cap(s * scale, m.gemma2 ? m.attnSoftcap : undefined);
          });
          const max = Math.max(...scores);
          const e = scores.map((s) => Math.exp(s - max));
          const z = e.reduce((a, b) => a + b, 0);
          visible.forEach((j, n) => {
            for (let d = 0; d < hd; d++) merged[h * hd + d] += ((keep * e[n]) / z) * v[j][g * hd + d];
          });
        }
        let o = linear(t(`${p}.self_attn.o_proj.weight`), merged, D, bias(`${p}.self_attn.o_proj.bias`));
        if (m.gemma2) o = rmsNorm(o, t(`${p}.post_attention_layernorm.weight`), m.eps);
        const keepBlock = structured.blockMask ? structured.blockMask[l][0] : 1;
        return x.map((val, c) => val + keepBlock * o[c]);
      });
    }
    const preMlp = m.gemma2
      ? `${p}.pre_feedforward_layernorm.weight`
      : `${p}.post_attention_layernorm.weight`;
    const act = m.activation === 'gelu' ? geluErf : geluTanh;
    xs = xs.map((x) => {
      const n = rmsNorm(x, t(preMlp), m.eps);
      const width = t(`${p}.mlp.down_proj.weight`).length / D;
      const gate = linear(t(`${p}.mlp.gate_proj.weight`), n, width);
      const up = linear(t(`${p}.mlp.up_proj.weight`), n, width);
      const keep = (i: number) => (structured.channelMask ? structured.channelMask[l][i] : 1);
      let o = linear(
        t(`${p}.mlp.down_proj.weight`),
        gate.map((g, i) => act(g) * up[i] * keep(i)),
        D,
      );
      if (m.gemma2) o = rmsNorm(o, t(`${p}.post_feedforward_layernorm.weight`), m.eps);
      const keepBlock = structured.blockMask ? structured.blockMask[l][1] : 1;
      return x.map((val, c) => val + keepBlock * o[c]);
    });
  }
  const head = m.tieEmbeddings ? embed : t('lm_head.weight');
  return xs.map((x) => {
    const n = rmsNorm(x, t('model.norm.weight'), m.eps);
    const logits = linear(head, n, m.vocabSize);
    return m.gemma2 ? logits.map((s) => cap(s, m.finalSoftcap)) : logits;
  });
}
