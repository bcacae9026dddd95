/**
 * Fused causal self-attention for the evaluation graph: one ONNX Runtime attention kernel per layer instead of
 * the explicit QKᵀ · scale + causal mask → Softmax → ·V chain, which materialises and walks every [S, S] score
 * matrix four times (on stories260K that chain was 89 % of a forward).
 *
 * Layout is BSH throughout ([batch, seq, heads·headDim], what the projections produce), so no head transposes
 * are needed; rotary runs on a [batch, seq, heads, headDim] view. The head mask multiplies each query head's
 * output before the o projection, exactly as in the explicit path.
 *
 * Right-padded batches (see `batches()` in metrics/perplexity.ts) need nothing more than causality: padding sits
 * after every real token, so no real token attends to it, and the padded positions' own outputs are ignored.
 *
 * The rotary tables every rope graph holds (rotaryTables) live here too, beside the rotation that reads them.
 */
import { ropeCosSinFactor, ropeInverseFrequencies } from '../model/rope.js';
import type { ModelConfig } from '../model/spec.js';
import type { AttrValue, GraphBuilder } from './builder.js';

/** 'fused' runs one ONNX Runtime kernel per layer; 'explicit' keeps the plain-operator chain (reference, KV cache). */
export type AttentionKind = 'explicit' | 'fused';

/**
 * The fused kernel. com.microsoft GroupQueryAttention was the fastest exact one measured here (docs/measured.md,
 * "Attention"); MultiHeadAttention (unidirectional) is kept selectable so the choice can be re-measured.
 */
export type FusedAttentionOp = 'GroupQueryAttention' | 'MultiHeadAttention';

/**
 * Rotary in the half-split layout on the last axis (pairs (j, j + rotaryDim/2)); cos/sin broadcast against t.
 * Under partial rotary (rotaryDim < hd) the dimensions from rotaryDim on are carried through the rotated term
 * unchanged, where the tables hold sin 0 and cos 1 (rotaryTables), so they pass through as the definition says.
 * The slice constants are made on first use so a graph never carries unused initializers.
 */
export function halfSplitRotary(
  g: GraphBuilder,
  hd: number,
  rotaryDim = hd,
): (t: string, cos: string, sin: string) => string {
  let ends: { a: string; b: string; end: string; axis: string; rest?: string } | undefined;
  return (t, cos, sin) => {
    ends ??= {
      a: g.constInt64([0]),
      b: g.constInt64([rotaryDim / 2]),
      end: g.constInt64([rotaryDim]),
      axis: g.constInt64([-1]),
      ...(rotaryDim < hd ? { rest: g.constInt64([hd]) } : {}),
    };
    const t1 = g.op('Slice', [t, ends.a, ends.b, ends.axis]);
    const t2 = g.op('Slice', [t, ends.b, ends.end, ends.axis]);
    const parts = [g.op('Neg', [t2]), t1];
    if (ends.rest) parts.push(g.op('Slice', [t, ends.end, ends.rest, ends.axis]));
    const rotated = g.op('Concat', parts, { axis: -1 });
    return g.op('Add', [g.op('Mul', [t, cos]), g.op('Mul', [rotated, sin])]);
  };
}

export interface FusedAttentionContext {
  g: GraphBuilder;
  op: FusedAttentionOp;
  headDim: number;
  /** 1-element int64 vectors. */
  batchDim: string;
  seqDim: string;
  /** Rotary tables [maxPositions, headDim] (half-split layout, each half repeated); absent: no rotary (learned positions). */
  cosTable?: string;
  sinTable?: string;
  /** Score scale when not 1/√headDim. */
  scale?: number;
}

export interface LayerAttention {
  /** Projections [batch·seq, heads·headDim] and [batch·seq, kvHeads·headDim], before rotary. */
  q: string;
  k: string;
  v: string;
  heads: number;
  kvHeads: number;
  /** The KV head each query head reads. */
  kvMap: readonly number[];
  /** This layer's head mask [heads] (1 keep, 0 drop). */
  keep: string;
}

/** True when query head h reads KV head ⌊h / (heads/kvHeads)⌋: the contiguous groups a GQA kernel assumes. */
export function isUniformGrouping(heads: number, kvHeads: number, kvMap: readonly number[]): boolean {
  if (kvMap.length !== heads || heads % kvHeads !== 0) return false;
  const group = heads / kvHeads;
  return kvMap.every((kv, h) => kv === Math.floor(h / group));
}

/** Per-graph values shared by every layer; call once, then `layer` per attention block. */
/** The kernel actually used: ONNX Runtime's CPU GroupQueryAttention refuses head sizes that are not a multiple of 8. */
export function fusedOpFor(op: FusedAttentionOp, headDim: number): FusedAttentionOp {
  return op === 'GroupQueryAttention' && headDim % 8 !== 0 ? 'MultiHeadAttention' : op;
}

export function fusedCausalAttention(context: FusedAttentionContext): (a: LayerAttention) => string {
  const ctx = { ...context, op: fusedOpFor(context.op, context.headDim) };
  const { g, headDim: hd } = ctx;
  const zero = g.constInt64([0]);
  const one = g.constInt64([1]);

  // com.microsoft RotaryEmbedding wants the caches' first halves [maxPositions, headDim/2] and positions
  // [batch, seq]; one fused op replaces the slice/neg/concat/mul/add chain (whose small-span broadcasts
  // were slow in the [batch, seq, heads, headDim] layout).
  const half = (t: string) => g.op('Slice', [t, zero, g.constInt64([hd / 2]), one]);
  const tables =
    ctx.cosTable && ctx.sinTable ? { cos: half(ctx.cosTable), sin: half(ctx.sinTable) } : undefined;
  const seqScalar = g.op('Squeeze', [ctx.seqDim, zero]);
  const positions = tables
    ? g.op('Expand', [
        g.op('Unsqueeze', [g.op('Range', [g.constInt64([0], []), seqScalar, g.constInt64([1], [])]), zero]),
        g.op('Concat', [ctx.batchDim, ctx.seqDim], { axis: 0 }),
      ])
    : '';
  const scaleAttr: Record<string, AttrValue> = ctx.scale === undefined ? {} : { scale: { float: ctx.scale } };

  // GroupQueryAttention's lengths: every row is seq long (right padding needs no key mask, see above).
  // seqlens_k is the index of each row's last key, total_sequence_length the key count, both int32.
  let seqlensK = '';
  let totalLength = '';
  if (ctx.op === 'GroupQueryAttention') {
    const seq32 = g.op('Cast', [ctx.seqDim], { to: 6 });
    totalLength = g.op('Squeeze', [seq32, zero]);
    seqlensK = g.op('Expand', [g.op('Sub', [seq32, g.op('Cast', [one], { to: 6 })]), ctx.batchDim]);
  }

  /** [batch·seq, n·hd] → [batch, seq, n·hd]. */
  const toBsh = (t: string, n: number): string =>
    g.op('Reshape', [
      t,
      g.op('Concat', [g.constInt64([-1]), ctx.seqDim, g.constInt64([n * hd])], { axis: 0 }),
    ]);
  const rotary = (t: string, n: number): string =>
    tables
      ? g.op(
          'RotaryEmbedding',
          [toBsh(t, n), positions, tables.cos, tables.sin],
          { num_heads: n, interleaved: 0 },
          'com.microsoft',
        )
      : toBsh(t, n);
  /** K/V [batch, seq, kvHeads·hd] → one KV head per query head, in query order. */
  const expand = (t: string, kvHeads: number, kvMap: readonly number[]): string => {
    const split = g.op('Reshape', [t, g.constInt64([0, 0, kvHeads, hd])]);
    const picked = g.op('Gather', [split, g.constInt64([...kvMap])], { axis: 2 });
    return g.op('Reshape', [picked, g.constInt64([0, 0, kvMap.length * hd])]);
  };

  return (a) => {
    const q = rotary(a.q, a.heads);
    let k = rotary(a.k, a.kvHeads);
    let v = toBsh(a.v, a.kvHeads);
    // A fused GQA kernel groups contiguous query heads; MHA needs one KV head per query head. Uneven groups
    // (left by pruning) are expanded to per-query-head order, which is exact.
    let kvHeads = a.kvHeads;
    const uniform = isUniformGrouping(a.heads, a.kvHeads, a.kvMap);
    if (!uniform || (ctx.op === 'MultiHeadAttention' && a.kvHeads !== a.heads)) {
      k = expand(k, a.kvHeads, a.kvMap);
      v = expand(v, a.kvHeads, a.kvMap);
      kvHeads = a.heads;
    }
    const out =
      ctx.op === 'GroupQueryAttention'
        ? g.node(
            'GroupQueryAttention',
            [q, k, v, '', '', seqlensK, totalLength],
            { num_heads: a.heads, kv_num_heads: kvHeads, ...scaleAttr },
            { domain: 'com.microsoft', outputs: 3 },
          )[0]
        : g.op(
            'MultiHeadAttention',
            [q, k, v],
            { num_heads: a.heads, unidirectional: 1, ...scaleAttr },
            'com.microsoft',
          );
    // The head mask as a row [heads·hd] (each head's value repeated hd times): one wide broadcast over
    // [batch·seq, heads·hd] instead of a per-head one with an 8-wide inner span.
    const keepRow = g.op('Reshape', [
      g.op('Expand', [g.op('Reshape', [a.keep, g.constInt64([a.heads, 1])]), g.constInt64([a.heads, hd])]),
      g.constInt64([a.heads * hd]),
    ]);
    return g.op('Mul', [g.op('Reshape', [out, g.constInt64([-1, a.heads * hd])]), keepRow]);
  };
}

export interface ExplicitAttention {
  /** Queries [batch, heads, seq, hd], keys and values [batch, kvHeads, total, hd] (positions already applied). */
  q: string;
  k: string;
  v: string;
  heads: number;
  kvHeads: number;
  /** The KV head each query head reads. */
  kvMap: readonly number[];
  /** Additive mask broadcasting to [batch, heads, seq, total] (0 = attend, very negative = blocked). */
  mask: string;
  /** Multiplies scores (1/√headDim unless the model says otherwise). */
  scale: number;
  /** Scores soft-capped as cap·tanh(s/cap) before the mask (Gemma 2). */
  softcap?: number;
  /** This layer's head mask [heads] (1 keep, 0 drop); absent in deployment graphs. */
  keep?: string;
}

/**
 * The plain-operator attention chain: softmax(scale·QKᵀ [soft-capped] + mask)·V per head, each head's output
 * multiplied by its head-mask entry, heads merged to [batch·seq, heads·hd]. Exact for any mask (causal, padding,
 * sliding windows, KV cache); the fused kernels are checked against it.
 */
export function explicitAttention(g: GraphBuilder, hd: number, a: ExplicitAttention): string {
  let { k, v } = a;
  if (!isUniformGrouping(a.heads, a.kvHeads, a.kvMap) || a.kvHeads !== a.heads) {
    const map = g.constInt64([...a.kvMap]);
    k = g.op('Gather', [k, map], { axis: 1 });
    v = g.op('Gather', [v, map], { axis: 1 });
  }
  const kt = g.op('Transpose', [k], { perm: [0, 1, 3, 2] });
  let scores = g.op('Mul', [g.op('MatMul', [a.q, kt]), g.constFloat([a.scale], [])]);
  if (a.softcap) {
    const cap = g.constFloat([a.softcap], []);
    scores = g.op('Mul', [g.op('Tanh', [g.op('Div', [scores, cap])]), cap]);
  }
  const probs = g.op('Softmax', [g.op('Add', [scores, a.mask])], { axis: -1 });
  let attn = g.op('MatMul', [probs, v]); // [batch, heads, seq, hd]
  if (a.keep) attn = g.op('Mul', [attn, g.op('Reshape', [a.keep, g.constInt64([a.heads, 1, 1])])]);
  return g.op('Reshape', [
    g.op('Transpose', [attn], { perm: [0, 2, 1, 3] }),
    g.constInt64([-1, a.heads * hd]),
  ]);
}

/**
 * Rotary tables in the half-split layout: cos/sin [positions, headDim], with the config's rotary scaling (its
 * frequencies, and yarn's / longrope's factor on cos and sin). Dynamic NTK scaling changes nothing below
 * max_position_embeddings, and no graph here runs a position beyond it (the tables end there). Partial rotary: the
 * first rotaryDim columns rotate, the rest hold cos 1 and sin 0 (see halfSplitRotary). longrope: the short-factor
 * tables, or with `long` the long-factor ones (the graph chooses by the run's length).
 */
export function rotaryTables(
  config: ModelConfig,
  positions: number,
  long = false,
): { cos: Float32Array; sin: Float32Array } {
  const hd = config.headDim;
  const rd = config.rotaryDim ?? hd;
  const half = rd / 2;
  const invFreq = ropeInverseFrequencies(config.ropeTheta, rd, config.ropeScaling, long);
  const m = ropeCosSinFactor(config.ropeScaling);
  const cos = new Float32Array(positions * hd);
  const sin = new Float32Array(positions * hd);
  for (let p = 0; p < positions; p++) {
    for (let j = 0; j < half; j++) {
      const angle = p * invFreq[j];
      const c = m * Math.cos(angle);
      const s = m * Math.sin(angle);
      cos[p * hd + j] = c;
      cos[p * hd + half + j] = c;
      sin[p * hd + j] = s;
      sin[p * hd + half + j] = s;
    }
    for (let j = rd; j < hd; j++) cos[p * hd + j] = 1;
  }
  return { cos, sin };
}
