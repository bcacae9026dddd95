/**
 * A plain-TypeScript GPT-2 forward (loops, float64), written from GPT-2's published definition and reading the
 * Hugging Face tensors by their own names and layouts (Conv1D weights [in, out], fused c_attn) — nothing from the
 * spec or the graph code, so the loader's splitting and transposing is checked too.
 */

export interface Gpt2Reference {
  nEmbd: number;
  nHead: number;
  nLayer: number;
  /** Heads per layer as stored (fewer where the checkpoint is pruned). */
  headsPerLayer?: number[];
  eps: number;
  vocab: number;
  /** Tensor by Hugging Face name (GPT2LMHeadModel, with the transformer. prefix). */
  get(name: string): Float32Array;
}

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

/** Conv1D: y = x·W + b with W [in, out]. */
function conv1d(x: Float64Array, W: Float32Array, b: Float32Array): Float64Array {
  const out = b.length;
  const y = Float64Array.from(b);
  for (let i = 0; i < x.length; i++) {
    const xi = x[i];
    for (let o = 0; o < out; o++) y[o] += xi * W[i * out + o];
  }
  return y;
}

const geluNew = (x: number) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));

/**
 * Structured masks (masks/structured.ts): `channelMask[layer][j]` multiplies MLP channel j's activation (the input
 * of c_proj); `blockMask[layer][0]` / `[1]` multiplies the attention / MLP block's output, bias included, before
 * its residual add.
 */
export interface Gpt2StructuredMasks {
  channelMask?: number[][];
  blockMask?: number[][];
}

/**
 * Logits [seq][vocab]; `headMask[layer][head]` multiplies that head's attention probabilities. Each layer's MLP
 * width is its c_fc bias's length (per-layer widths, 0 included).
 */
export function gpt2Forward(
  m: Gpt2Reference,
  tokens: number[],
  headMask?: number[][],
  structured: Gpt2StructuredMasks = {},
): Float64Array[] {
  const D = m.nEmbd;
  const hd = D / m.nHead;
  const t = (n: string) => m.get(`transformer.${n}`);
  const wte = t('wte.weight');
  const wpe = t('wpe.weight');
  let xs = tokens.map((id, pos) => {
    const x = new Float64Array(D);
    for (let i = 0; i < D; i++) x[i] = wte[id * D + i] + wpe[pos * D + i];
    return x;
  });
  for (let l = 0; l < m.nLayer; l++) {
    const H = m.headsPerLayer?.[l] ?? m.nHead;
    const h = `h.${l}`;
    const qkv = xs.map((x) =>
      conv1d(
        layerNorm(x, t(`${h}.ln_1.weight`), t(`${h}.ln_1.bias`), m.eps),
        t(`${h}.attn.c_attn.weight`),
        t(`${h}.attn.c_attn.bias`),
      ),
    );
    const W = H * hd;
    xs = xs.map((x, i) => {
      const merged = new Float64Array(W);
      for (let a = 0; a < H; a++) {
        const keep = headMask ? headMask[l][a] : 1;
        const scores: number[] = [];
        for (let j = 0; j <= i; j++) {
          let s = 0;
          for (let d = 0; d < hd; d++) s += qkv[i][a * hd + d] * qkv[j][W + a * hd + d];
          scores.push(s / Math.sqrt(hd));
        }
        const max = Math.max(...scores);
        const e = scores.map((s) => Math.exp(s - max));
        const z = e.reduce((p, q) => p + q, 0);
        for (let j = 0; j <= i; j++) {
          for (let d = 0; d < hd; d++) merged[a * hd + d] += ((keep * e[j]) / z) * qkv[j][2 * W + a * hd + d];
        }
      }
      const o = conv1d(merged, t(`${h}.attn.c_proj.weight`), t(`${h}.attn.c_proj.bias`));
      const keepBlock = structured.blockMask ? structured.blockMask[l][0] : 1;
      return x.map((v, k) => v + keepBlock * o[k]);
    });
    xs = xs.map((x) => {
      const n = layerNorm(x, t(`${h}.ln_2.weight`), t(`${h}.ln_2.bias`), m.eps);
      const keep = (j: number) => (structured.channelMask ? structured.channelMask[l][j] : 1);
      const inner = conv1d(n, t(`${h}.mlp.c_fc.weight`), t(`${h}.mlp.c_fc.bias`)).map(
        (v, j) => geluNew(v) * keep(j),
      );
      const o = conv1d(inner, t(`${h}.mlp.c_proj.weight`), t(`${h}.mlp.c_proj.bias`));
      const keepBlock = structured.blockMask ? structured.blockMask[l][1] : 1;
      return x.map((v, k) => v + keepBlock * o[k]);
    });
  }
  return xs.map((x) => {
    const n = layerNorm(x, t('ln_f.weight'), t('ln_f.bias'), m.eps);
    const logits = new Float64Array(m.vocab);
    for (let v = 0; v < m.vocab; v++) {
      let s = 0;
      for (let i = 0; i < D; i++) s += n[i] * wte[v * D + i];
      logits[v] = s;
    }
    return logits;
  });
}
