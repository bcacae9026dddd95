/**
 * Capture points: the activation statistics a graph can output about the inputs of its linear layers, for the
 * layer-wise methods (Wanda, SparseGPT, recovery) that read them. Each block has four distinct linear inputs, in
 * forward order — attn_in (input of q/k/v), o_in (merged heads after the head mask: input of o), mlp_in (input
 * of gate/up) and down_in (input of down) — and a captured one is output as stats.{layer}.{point}: Σ_t X_tj² per
 * input column ('sqnorm', [in]) or XᵀX ('gram', [in, in]) over the batch's tokens, each token's row weighted by
 * the graph input token_weight float32 [batch, seq] first (1 real token, 0 padding; a weight w counts a token as
 * w²). Which tensor feeds a point is each builder's business (decoder.ts, encoder.ts). With `sums`, a captured
 * point also outputs stats.{layer}.{point}.sum: Σ_t w_t X_tj per input column ([in]; a token weight w counts the
 * token as w), so a column's mean and variance over the tokens follow (FLAP's fluctuation metric).
 *
 * Residual cosines (opt-in, `residual`): for block influence (ShortGPT's BI = 1 − mean cos), a captured layer
 * also outputs stats.{layer}.cos_attn, stats.{layer}.cos_mlp and stats.{layer}.cos_layer, each [1]: Σ_t w_t ·
 * cos(x_t, y_t), x the residual stream entering the attention block / the MLP block / the layer and y the stream
 * leaving it (after the block's residual add, and after its norm where the family norms after the add). Here a
 * token weight w counts a token as w (0/1 weights: the mean over real tokens is the sum over the token count).
 * A decoder layer without attention heads has no cos_attn (its attention block is the identity); an encoder's
 * still adds the o bias and norms. Encoder-decoder graphs refuse `residual`.
 */
import type { GraphBuilder } from './builder.js';

/** Activation statistics of linear inputs: Σ_t X_tj² per column, or the Gram matrix XᵀX. */
export type CaptureKind = 'sqnorm' | 'gram';

/** Which statistics a capture graph outputs: of these layers, of these points (default all four). */
export interface CaptureOptions {
  layers: readonly number[];
  kind: CaptureKind;
  points?: readonly CapturePoint[];
  /** Also output each captured point's column sums Σ_t w_t X_tj (see the header). */
  sums?: boolean;
  /** Also output the residual cosines of the captured layers (see the header); `points` does not limit them. */
  residual?: boolean;
}

/** The four distinct linear inputs of a block, in forward order (see the header). */
export const CAPTURE_POINTS = ['attn_in', 'o_in', 'mlp_in', 'down_in'] as const;
/**
 * An encoder-decoder's decoder block has three more linear inputs, between o_in and mlp_in: cross_in (the cross
 * norm's output: input of cross.q), cross_kv_in (the final encoder output: input of cross.k/v) and cross_o_in
 * (merged cross heads after the head mask: input of cross.o). arch/encdec.ts lists them, graph/encdec.ts
 * captures them (cross_kv_in weighted by the source's token weights).
 */
export const CROSS_CAPTURE_POINTS = ['cross_in', 'cross_kv_in', 'cross_o_in'] as const;
export type CapturePoint = (typeof CAPTURE_POINTS)[number] | (typeof CROSS_CAPTURE_POINTS)[number];

/** The graph output holding one captured statistic. */
export function statsName(layer: number, point: CapturePoint): string {
  return `stats.${layer}.${point}`;
}

/** The graph output holding a captured point's column sums (`CaptureOptions.sums`). */
export function sumName(layer: number, point: CapturePoint): string {
  return `${statsName(layer, point)}.sum`;
}

/** The linear weight roles that read a capture point's input. */
export function rolesOfCapturePoint(layer: number, point: CapturePoint): string[] {
  const p = `layers.${layer}`;
  switch (point) {
    case 'attn_in':
      return [`${p}.attn.q.weight`, `${p}.attn.k.weight`, `${p}.attn.v.weight`];
    case 'o_in':
      return [`${p}.attn.o.weight`];
    case 'mlp_in':
      return [`${p}.mlp.gate.weight`, `${p}.mlp.up.weight`];
    case 'down_in':
      return [`${p}.mlp.down.weight`];
    case 'cross_in':
      return [`${p}.cross.q.weight`];
    case 'cross_kv_in':
      return [`${p}.cross.k.weight`, `${p}.cross.v.weight`];
    case 'cross_o_in':
      return [`${p}.cross.o.weight`];
  }
}

/** The captured layers of a graph, checked to lie inside its layers [from, to); `what` names the graph. */
export function capturedLayers(
  capture: CaptureOptions | undefined,
  [from, to]: readonly [number, number],
  what: string,
): Set<number> {
  const captured = new Set(capture?.layers ?? []);
  for (const i of captured) {
    if (!Number.isInteger(i) || i < from || i >= to) {
      throw new Error(`${what}: captured layer ${i} is outside the graph's layers [${from}, ${to})`);
    }
  }
  return captured;
}

/** The token_weight input as [N, 1] (created only when something is captured; '' otherwise). */
export function tokenWeightInput(g: GraphBuilder, captured: ReadonlySet<number>): string {
  return captured.size > 0
    ? g.op('Reshape', [g.input('token_weight', 'float32', ['batch', 'seq']), g.constInt64([-1, 1])])
    : '';
}

/** A point's recorder: `(layer, point, input [N, width], width)` adds its statistic output when captured. */
export type CaptureRecorder = (layer: number, point: CapturePoint, input: string, width: number) => void;

export function captureRecorder(
  g: GraphBuilder,
  capture: CaptureOptions | undefined,
  captured: ReadonlySet<number>,
  tokenWeight: string,
): CaptureRecorder {
  return (layer, point, input, width) => {
    if (!captured.has(layer) || (capture?.points && !capture.points.includes(point))) return;
    const xw = g.op('Mul', [input, tokenWeight]);
    const name = statsName(layer, point);
    if (capture?.kind === 'gram') {
      g.node('Gemm', [xw, xw], { transA: 1 }, { outputs: [name] });
      g.output(name, 'float32', [width, width]);
    } else {
      g.node('ReduceSumSquare', [xw], { axes: [0], keepdims: 0 }, { outputs: [name] });
      g.output(name, 'float32', [width]);
    }
    if (capture?.sums) {
      const sum = sumName(layer, point);
      g.node('ReduceSum', [xw, g.constInt64([0])], { keepdims: 0 }, { outputs: [sum] });
      g.output(sum, 'float32', [width]);
    }
  };
}

/** The residual blocks whose stream cosines a capture can output (see the header). */
export const RESIDUAL_BLOCKS = ['attn', 'mlp', 'layer'] as const;
export type ResidualBlock = (typeof RESIDUAL_BLOCKS)[number];

/** The graph output holding a layer's summed residual cosine across one block. */
export function cosineName(layer: number, block: ResidualBlock): string {
  return `stats.${layer}.cos_${block}`;
}

/**
 * A residual recorder: `(layer, block, before [N, D], after [N, D])` outputs Σ_t w_t · cos(before_t, after_t)
 * as [1] when the layer is captured with `residual`; a no-op otherwise.
 */
export type ResidualRecorder = (layer: number, block: ResidualBlock, before: string, after: string) => void;

export function residualRecorder(
  g: GraphBuilder,
  capture: CaptureOptions | undefined,
  captured: ReadonlySet<number>,
  tokenWeight: string,
): ResidualRecorder {
  return (layer, block, before, after) => {
    if (!capture?.residual || !captured.has(layer)) return;
    const norm = (t: string) => g.op('Sqrt', [g.op('ReduceSumSquare', [t], { axes: [1], keepdims: 1 })]);
    const dot = g.op('ReduceSum', [g.op('Mul', [before, after]), g.constInt64([1])], { keepdims: 1 });
    // A zero vector (never a real residual stream) gives cosine 0 instead of NaN.
    const denominator = g.op('Max', [g.op('Mul', [norm(before), norm(after)]), g.constFloat([1e-30], [])]);
    const weighted = g.op('Mul', [g.op('Div', [dot, denominator]), tokenWeight]); // [N, 1]
    const name = cosineName(layer, block);
    g.node('ReduceSum', [weighted, g.constInt64([0])], { keepdims: 0 }, { outputs: [name] });
    g.output(name, 'float32', [1]);
  };
}
