/**
 * A plain-TypeScript OPT forward (loops, float64), written from OPT's published definition (Zhang et al. 2022,
 * as transformers' OPTForCausalLM computes it) and reading the Hugging Face tensors by their own names — nothing
 * from the spec or the graph code, so the loader's naming and the position offset are checked too.
 *
 * Per token: x = embed_tokens[id] + embed_positions[pos + 2], pos from the attention mask as OPT derives it
 * (cumsum(mask) · mask − 1: the real tokens of a row count 0, 1, …; padding reads row 1). Per layer (pre-norm):
 * x += out_proj(attention(self_attn_layer_norm(x))), with q = q_proj(h) · headDim^−½, causal and under the
 * padding mask; x += fc2(relu(fc1(final_layer_norm(x)))). Then final_layer_norm and the tied (or own) head.
 */

export interface OptReference {
  hidden: number;
  heads: number;
  layers: number;
  vocab: number;
  /** Heads per layer as stored (fewer where the checkpoint is pruned). */
  headsPerLayer?: number[];
  /** Base-model prefix of the names: 'model.decoder.' (default) or 'decoder.'. */
  prefix?: string;
  /** Tensor by Hugging Face name; undefined when absent (biases under enable_bias false, a tied head). */
  get(name: string): Float32Array | undefined;
}

const EPS = 1e-5;

function layerNorm(x: Float64Array, w: Float32Array, b: Float32Array): Float64Array {
  let mean = 0;
  for (const v of x) mean += v;
  mean /= x.length;
  let variance = 0;
  for (const v of x) variance += (v - mean) ** 2;
  variance /= x.length;
  const r = 1 / Math.sqrt(variance + EPS);
  return x.map((v, i) => (v - mean) * r * w[i] + b[i]);
}

/** nn.Linear: y = W·x + b, W [out, in]. */
function linear(x: Float64Array, W: Float32Array, b: Float32Array | undefined, out: number): Float64Array {
  const n = x.length;
  const y = new Float64Array(out);
  for (let o = 0; o < out; o++) {
    let s = b ? b[o] : 0;
    for (let i = 0; i < n; i++) s += W[o * n + i] * x[i];
    y[o] = s;
  }
  return y;
}

/**
 * Logits [seq][vocab] of one row. `mask` is the row's attention mask (1 = real token, 0 = padding; default all
 * ones); `headMask[layer][head]` multiplies that head's attention output.
 */
export function optForward(
  m: OptReference,
  tokens: number[],
  opts: { mask?: number[]; headMask?: number[][] } = {},
): Float64Array[] {
  const D = m.hidden;
  const hd = D / m.heads;
  const prefix = m.prefix ?? 'model.decoder.';
  const need = (name: string) => {
    const t = m.get(name);
    if (!t) throw new Error(`no tensor ${name}`);
    return t;
  };
  const t = (n: string) => need(prefix + n);
  const opt = (n: string) => m.get(prefix + n);
  const mask = opts.mask ?? tokens.map(() => 1);
  let running = 0;
  const positions = mask.map((v) => {
    running += v;
    return running * v - 1;
  });
  const wte = t('embed_tokens.weight');
  const wpe = t('embed_positions.weight');
  let xs = tokens.map((id, i) => {
    const x = new Float64Array(D);
    const row = positions[i] + 2;
    for (let k = 0; k < D; k++) x[k] = wte[id * D + k] + wpe[row * D + k];
    return x;
  });
  for (let l = 0; l < m.layers; l++) {
    const H = m.headsPerLayer?.[l] ?? m.heads;
    const W = H * hd;
    const p = `layers.${l}`;
    const normed = xs.map((x) =>
      layerNorm(x, t(`${p}.self_attn_layer_norm.weight`), t(`${p}.self_attn_layer_norm.bias`)),
    );
    const proj = (x: string) =>
      normed.map((h) =>
        linear(h, t(`${p}.self_attn.${x}_proj.weight`), opt(`${p}.self_attn.${x}_proj.bias`), W),
      );
    const q = proj('q').map((v) => v.map((a) => a * hd ** -0.5));
    const k = proj('k');
    const v = proj('v');
    xs = xs.map((x, i) => {
      const merged = new Float64Array(W);
      for (let a = 0; a < H; a++) {
        const keep = opts.headMask ? opts.headMask[l][a] : 1;
        const seen: number[] = [];
        for (let j = 0; j <= i; j++) if (mask[j] === 1) seen.push(j);
        if (seen.length === 0) continue; // a padding row that sees nothing: its output is never read
        const scores = seen.map((j) => {
          let s = 0;
          for (let d = 0; d < hd; d++) s += q[i][a * hd + d] * k[j][a * hd + d];
          return s;
        });
        const max = Math.max(...scores);
        const e = scores.map((s) => Math.exp(s - max));
        const z = e.reduce((u, w) => u + w, 0);
        seen.forEach((j, n) => {
          for (let d = 0; d < hd; d++) merged[a * hd + d] += ((keep * e[n]) / z) * v[j][a * hd + d];
        });
      }
      const o = linear(merged, t(`${p}.self_attn.out_proj.weight`), opt(`${p}.self_attn.out_proj.bias`), D);
      return x.map((u, c) => u + o[c]);
    });
    xs = xs.map((x) => {
      const h = layerNorm(x, t(`${p}.final_layer_norm.weight`), t(`${p}.final_layer_norm.bias`));
      const ffn = t(`${p}.fc1.weight`).length / D;
      const inner = linear(h, t(`${p}.fc1.weight`), opt(`${p}.fc1.bias`), ffn).map((u) => Math.max(0, u));
      const o = linear(inner, t(`${p}.fc2.weight`), opt(`${p}.fc2.bias`), D);
      return x.map((u, c) => u + o[c]);
    });
  }
  const head = m.get('lm_head.weight') ?? wte;
  return xs.map((x) =>
    linear(layerNorm(x, t('final_layer_norm.weight'), t('final_layer_norm.bias')), head, undefined, m.vocab),
  );
}
