/**
 * The shared blocks every architecture's graph is assembled from: weights as initializers (inline, in memory as
 * external data, or in a weight file), linears (bias, weight masks, narrow-weight handling), norms (RMS or
 * LayerNorm, with bias, with Gemma's 1 + w), activations, the MLP (gated or plain) and learned-position
 * embeddings. A builder (decoder.ts, encoder.ts) creates one kit per graph and decides only the wiring.
 *
 * Everything here follows the spec's conventions (model/spec.ts): linear weights [out, in] used by Gemm with
 * transB = 1, so masks and weights line up with checkpoint tensors one to one.
 */
import type { ModelConfig, ModelSpec } from '../model/spec.js';
import type { GraphBuilder } from './builder.js';
import { isWeightFile, type Weights, weightType } from './weights.js';

/** ONNX TensorProto data types used by Cast. */
export const ONNX_FLOAT = 1;
const ONNX_FLOAT16 = 10;
const ONNX_BFLOAT16 = 16;

/**
 * How a linear whose weight is held in fp16/bf16 runs: 'upcast' casts the weight to fp32 right before its Gemm
 * (storage narrow, arithmetic fp32); 'native' runs the Gemm in the weight's dtype (CUDA, WebGPU).
 */
export type HalfLinears = 'upcast' | 'native';

export interface KitOptions {
  /** Linear weight roles that get a boolean mask input `mask.<role>` (true keeps the weight). */
  weightMasks?: readonly string[];
  halfLinears?: HalfLinears;
  /** Names the kit's errors (e.g. 'decoder graph'). */
  what: string;
}

export interface GraphKit {
  readonly g: GraphBuilder;
  readonly config: ModelConfig;
  /** The initializer of a role (created once). */
  weight(role: string): string;
  /** Whether the spec has this role. */
  has(role: string): boolean;
  /** Whether a role is held in fp16/bf16. */
  isHalf(role: string): boolean;
  /**
   * fp32 values of a (possibly narrow) weight, cast where used, anchored on the current block's activation so
   * ONNX Runtime neither folds the cast into an fp32 copy nor runs every layer's cast up front.
   */
  floatOf(name: string, role: string, dims?: readonly number[]): string;
  /** The activation later casts depend on (set at the start of each block). */
  setAnchor(x: string): void;
  /** Rows [v0, v1) of a [rows, cols] weight as an initializer of its own over the same bytes. */
  weightRows(role: string, v0: number, v1: number): string;
  /** Rows `idx` (int64 [N]) of a weight held in row chunks (fp32 out). */
  gatherRows(role: string, chunks: ReadonlyArray<{ w: string; v0: number; v1: number }>, idx: string): string;
  /** x [N, in] → x·Wᵀ (+ b) for the linear `prefix` (prefix.weight, prefix.bias when present). */
  linear(x: string, prefix: string): string;
  /** The spec's norm over the last axis with `prefix.weight` (and `prefix.bias` when present). */
  norm(x: string, prefix: string): string;
  /** The spec's activation. */
  activation(x: string): string;
  /**
   * Layer `layer`'s MLP on its normed input h [N, D]: gated act(gate·h)·(up·h) or plain act(up·h), then down.
   * `scaleDownIn` replaces the down projection's input (a channel mask multiplied in) before `onDownIn` sees it
   * (capture) and down reads it.
   */
  mlp(
    h: string,
    layer: number,
    onDownIn?: (downIn: string) => void,
    scaleDownIn?: (downIn: string) => string,
  ): string;
  /** Learned absolute positions: rows positionOffset + ids of embed.positions, fp32 [..., D]. */
  learnedPositions(positionIds: string): string;
}

export function createKit(g: GraphBuilder, spec: ModelSpec, weights: Weights, opts: KitOptions): GraphKit {
  const c = spec.config;
  const maskSet = new Set(opts.weightMasks ?? []);
  for (const role of maskSet) {
    if (!spec.tensors.has(role)) throw new Error(`${opts.what}: no weight ${role} to mask`);
  }
  const missing = (role: string) => new Error(`${opts.what}: missing tensor ${role}`);
  const made = new Map<string, string>();

  const weight = (role: string): string => {
    const known = made.get(role);
    if (known) return known;
    const src = spec.tensors.get(role);
    let name: string;
    if (isWeightFile(weights)) {
      const t = weights.tensors.get(role);
      if (!t || !src) throw missing(role);
      name = g.externalInitializer(role, weights.dir, { ...t, location: weights.location });
    } else {
      const data = weights.get(role);
      if (!data || !src) throw missing(role);
      name = g.initializer(role, { type: weightType(weights, role), dims: [...src.shape], data });
    }
    made.set(role, name);
    return name;
  };
  const isHalf = (role: string) => weightType(weights, role) !== 'float32';
  const native = opts.halfLinears === 'native';

  let anchor = '';
  const anchorZero = new Map<string, string>();
  const floatOf = (name: string, role: string, dims?: readonly number[]): string => {
    if (!isHalf(role)) return name;
    let zero = anchorZero.get(anchor);
    if (!zero) {
      const dim0 = g.op('Slice', [g.op('Shape', [anchor]), g.constInt64([0]), g.constInt64([1])]);
      zero = g.op('Mul', [dim0, g.constInt64([0])]);
      anchorZero.set(anchor, zero);
    }
    const shape = g.op('Add', [g.constInt64([...(dims ?? spec.tensors.get(role)!.shape)]), zero]);
    return g.op('Cast', [g.op('Reshape', [name, shape])], { to: ONNX_FLOAT });
  };
  const halfCode = (role: string) => (weightType(weights, role) === 'float16' ? ONNX_FLOAT16 : ONNX_BFLOAT16);

  const weightRows = (role: string, v0: number, v1: number): string => {
    const src = spec.tensors.get(role);
    if (!src) throw missing(role);
    const cols = src.shape[1];
    const name = `${role}.rows${v0}_${v1}`;
    if (isWeightFile(weights)) {
      const t = weights.tensors.get(role);
      if (!t) throw missing(role);
      const rowBytes = t.byteLength / src.shape[0];
      return g.externalInitializer(name, weights.dir, {
        ...t,
        dims: [v1 - v0, cols],
        offset: t.offset + v0 * rowBytes,
        byteLength: (v1 - v0) * rowBytes,
        location: weights.location,
      });
    }
    const data = weights.get(role);
    if (!data) throw missing(role);
    return g.initializer(name, {
      type: weightType(weights, role),
      dims: [v1 - v0, cols],
      data: data.subarray(v0 * cols, v1 * cols),
    });
  };

  const gatherRows: GraphKit['gatherRows'] = (role, chunks, idx) => {
    // Rows of a narrow weight are gathered narrow and widened: [N, D], never the table.
    const wide = (v: string) => (isHalf(role) ? g.op('Cast', [v], { to: ONNX_FLOAT }) : v);
    if (chunks.length === 1) return wide(g.op('Gather', [chunks[0].w, idx], { axis: 0 }));
    let sum = '';
    for (const { w, v0, v1 } of chunks) {
      const local = g.op('Sub', [idx, g.constInt64([v0], [])]);
      const inside = g.op('And', [
        g.op('GreaterOrEqual', [local, g.constInt64([0], [])]),
        g.op('Less', [local, g.constInt64([v1 - v0], [])]),
      ]);
      const rows = wide(
        g.op('Gather', [w, g.op('Where', [inside, local, g.constInt64([0], [])])], { axis: 0 }),
      );
      const part = g.op('Where', [
        g.op('Unsqueeze', [inside, g.constInt64([1])]),
        rows,
        g.constFloat([0], []),
      ]);
      sum = sum === '' ? part : g.op('Add', [sum, part]);
    }
    return sum;
  };

  const maybeMasked = (role: string, inHalf: boolean): string => {
    const w = inHalf ? weight(role) : floatOf(weight(role), role);
    if (!maskSet.has(role)) return w;
    const m = g.input(`mask.${role}`, 'bool', [...spec.tensors.get(role)!.shape]);
    const zero = inHalf
      ? g.op('Cast', [g.constFloat([0], [])], { to: halfCode(role) })
      : g.constFloat([0], []);
    return g.op('Where', [m, w, zero]);
  };
  /** A small vector (norm weight, bias) in fp32. */
  const vector = (role: string): string => floatOf(weight(role), role);

  const linear = (x: string, prefix: string): string => {
    const role = `${prefix}.weight`;
    const bias = spec.tensors.has(`${prefix}.bias`) ? vector(`${prefix}.bias`) : undefined;
    if (native && isHalf(role)) {
      const xh = g.op('Cast', [x], { to: halfCode(role) });
      const y = g.op('Cast', [g.op('Gemm', [xh, maybeMasked(role, true)], { transB: 1 })], {
        to: ONNX_FLOAT,
      });
      return bias ? g.op('Add', [y, bias]) : y;
    }
    const inputs = [x, maybeMasked(role, false)];
    if (bias) inputs.push(bias);
    return g.op('Gemm', inputs, { transB: 1 });
  };

  const norm = (x: string, prefix: string): string => {
    let w = vector(`${prefix}.weight`);
    if (c.normWeightOffset) w = g.op('Add', [w, g.constFloat([c.normWeightOffset], [])]);
    const biasRole = `${prefix}.bias`;
    if (c.normKind === 'layer') {
      // (x − mean) / √(var + eps) · w + b over the last axis (population variance), ONNX's LayerNormalization.
      const bias = spec.tensors.has(biasRole) ? vector(biasRole) : undefined;
      const inputs = bias ? [x, w, bias] : [x, w];
      return g.node('LayerNormalization', inputs, { axis: -1, epsilon: { float: c.normEps } })[0];
    }
    if (spec.tensors.has(biasRole)) throw new Error(`${opts.what}: an RMS norm has no bias (${biasRole})`);
    const sq = g.op('Pow', [x, g.constFloat([2], [])]);
    const ms = g.op('ReduceMean', [sq], { axes: [-1], keepdims: 1 });
    const rs = g.op('Sqrt', [g.op('Add', [ms, g.constFloat([c.normEps], [])])]);
    return g.op('Mul', [g.op('Div', [x, rs]), w]);
  };

  /** The activation as the spec names it (each defined as in PyTorch / Hugging Face). */
  const activation = (x: string): string => {
    switch (c.activation) {
      case 'silu': // x·σ(x)
        return g.op('Mul', [x, g.op('Sigmoid', [x])]);
      case 'relu':
        return g.op('Relu', [x]);
      case 'gelu': // x·Φ(x) = x/2·(1 + erf(x/√2)), the exact GELU
        return g.op('Mul', [
          g.op('Mul', [x, g.constFloat([0.5])]),
          g.op('Add', [g.op('Erf', [g.op('Mul', [x, g.constFloat([Math.SQRT1_2])])]), g.constFloat([1])]),
        ]);
      case 'gelu_tanh': {
        // x/2·(1 + tanh(√(2/π)·(x + 0.044715·x³))), HF's gelu_new / gelu_pytorch_tanh
        const cube = g.op('Mul', [g.op('Mul', [x, x]), x]);
        const inner = g.op('Mul', [
          g.op('Add', [x, g.op('Mul', [cube, g.constFloat([0.044715])])]),
          g.constFloat([Math.sqrt(2 / Math.PI)]),
        ]);
        return g.op('Mul', [
          g.op('Mul', [x, g.constFloat([0.5])]),
          g.op('Add', [g.op('Tanh', [inner]), g.constFloat([1])]),
        ]);
      }
    }
  };

  const mlp: GraphKit['mlp'] = (h, layer, onDownIn, scaleDownIn) => {
    const p = `layers.${layer}.mlp`;
    const act =
      c.mlpKind === 'gated'
        ? g.op('Mul', [activation(linear(h, `${p}.gate`)), linear(h, `${p}.up`)])
        : activation(linear(h, `${p}.up`));
    const downIn = scaleDownIn ? scaleDownIn(act) : act;
    onDownIn?.(downIn);
    return linear(downIn, `${p}.down`);
  };

  const learnedPositions = (positionIds: string): string => {
    const ids = c.positionOffset
      ? g.op('Add', [positionIds, g.constInt64([c.positionOffset], [])])
      : positionIds;
    const rows = g.op('Gather', [weight('embed.positions'), ids], { axis: 0 });
    return isHalf('embed.positions') ? g.op('Cast', [rows], { to: ONNX_FLOAT }) : rows;
  };

  return {
    g,
    config: c,
    weight,
    has: (role) => spec.tensors.has(role),
    isHalf,
    floatOf,
    setAnchor: (x) => {
      anchor = x;
    },
    weightRows,
    gatherRows,
    linear,
    norm,
    activation,
    mlp,
    learnedPositions,
  };
}
