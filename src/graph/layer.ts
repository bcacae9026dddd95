/**
 * The per-layer units the decoder and encoder builders share (nanoGPT's attention / MLP split): splitting a
 * projection into heads, a layer's row of the head mask, and the MLP branch with its down_in capture. Each
 * builder keeps its own wiring (pre- or post-norm, fused or explicit attention, where the residual adds), which
 * is all that differs between them. A unit adds exactly the nodes the builders added inline before, in the same
 * order, so the serialized graphs are unchanged.
 *
 * Structured mask inputs (a graph built with `structuredMasks`): channel_mask [layers, maxWidth] multiplies layer
 * i's MLP intermediate activation (the first width_i entries of row i, the input of down, before capture sees
 * it), and block_mask [layers, 2] multiplies the attention (column 0) and MLP (column 1) block outputs just before
 * their residual adds (masks/structured.ts states the semantics). Without them no node is added.
 */
import { intermediateOf, type ModelConfig } from '../model/spec.js';
import type { GraphBuilder } from './builder.js';
import type { CaptureRecorder } from './capture.js';
import type { GraphKit } from './kit.js';

export interface LayerUnitsContext {
  g: GraphBuilder;
  kit: GraphKit;
  config: ModelConfig;
  /** 1-element int64 vectors of the batch and sequence sizes. */
  batchDim: string;
  seqDim: string;
  /** The head_mask input [layers, maxHeads], or '' where the graph has none (deployment, KV cache). */
  headMask: string;
  capture: CaptureRecorder;
  /** The channel_mask [layers, maxWidth] and block_mask [layers, 2] inputs, or '' / absent where the graph has none. */
  channelMask?: string;
  blockMask?: string;
}

export interface LayerUnits {
  /** [N, heads·hd] → [batch, heads, seq, hd]. */
  splitHeads(t: string, heads: number): string;
  /** Layer i's head mask [heads]: the first `heads` entries of its row (undefined without a head_mask input). */
  layerHeadMask(i: number, heads: number): string | undefined;
  /** Layer i's MLP on its normed input h [N, D], recording down_in for capture (after the channel mask). */
  mlp(i: number, h: string): string;
  /**
   * A block output y [N, D] (its bias and any post-block norm included) times layer i's block_mask entry
   * (0 attention, 1 MLP); y itself where the graph has no block_mask.
   */
  gateBlock(i: number, block: 0 | 1, y: string): string;
  /**
   * A bias vector [D] in fp32, for a block whose units are all absent (no heads, MLP width 0): its output is the
   * bias alone; undefined where the spec has no such bias (the block then adds nothing).
   */
  biasAlone(role: string): string | undefined;
}

export function layerUnits(ctx: LayerUnitsContext): LayerUnits {
  const { g, kit, config: c, batchDim, seqDim, headMask, capture, channelMask, blockMask } = ctx;
  const hd = c.headDim;
  const maxHeads = Math.max(...c.headsPerLayer);
  const maxWidth = maxWidthOf(c);
  return {
    splitHeads(t, heads) {
      const shape = g.op('Concat', [batchDim, seqDim, g.constInt64([heads, hd])], { axis: 0 });
      return g.op('Transpose', [g.op('Reshape', [t, shape])], { perm: [0, 2, 1, 3] });
    },
    layerHeadMask(i, heads) {
      if (!headMask) return undefined;
      const row = g.op('Gather', [headMask, g.constInt64([i], [])], { axis: 0 }); // [maxHeads]
      return heads === maxHeads ? row : g.op('Slice', [row, g.constInt64([0]), g.constInt64([heads])]);
    },
    mlp(i, h) {
      const width = intermediateOf(c, i);
      // [N, width] · channel_mask[i, :width] (broadcast over tokens).
      const scale = channelMask
        ? (act: string) => {
            const row = g.op('Gather', [channelMask, g.constInt64([i], [])], { axis: 0 }); // [maxWidth]
            const keep =
              width === maxWidth ? row : g.op('Slice', [row, g.constInt64([0]), g.constInt64([width])]);
            return g.op('Mul', [act, keep]);
          }
        : undefined;
      return kit.mlp(h, i, (downIn) => capture(i, 'down_in', downIn, width), scale);
    },
    biasAlone(role) {
      return kit.has(role) ? kit.floatOf(kit.weight(role), role) : undefined;
    },
    gateBlock(i, block, y) {
      if (!blockMask) return y;
      const row = g.op('Gather', [blockMask, g.constInt64([i], [])], { axis: 0 }); // [2]
      return g.op('Mul', [y, g.op('Gather', [row, g.constInt64([block], [])], { axis: 0 })]);
    },
  };
}

/** The channel_mask's row length: the largest MLP width present, at least 1 (masks/structured.ts). */
export function maxWidthOf(c: ModelConfig): number {
  return Math.max(1, ...Array.from({ length: c.numLayers }, (_, i) => intermediateOf(c, i)));
}
