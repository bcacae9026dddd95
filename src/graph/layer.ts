/**
 * The per-layer units the decoder and encoder builders share (nanoGPT's attention / MLP split): splitting a
 * projection into heads, a layer's row of the head mask, and the MLP branch with its down_in capture. Each
 * builder keeps its own wiring (pre- or post-norm, fused or explicit attention, where the residual adds), which
 * is all that differs between them. A unit adds exactly the nodes the builders added inline before, in the same
 * order, so the serialized graphs are unchanged.
 */
import type { ModelConfig } from '../model/spec.js';
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
}

export interface LayerUnits {
  /** [N, heads·hd] → [batch, heads, seq, hd]. */
  splitHeads(t: string, heads: number): string;
  /** Layer i's head mask [heads]: the first `heads` entries of its row (undefined without a head_mask input). */
  layerHeadMask(i: number, heads: number): string | undefined;
  /** Layer i's MLP on its normed input h [N, D], recording down_in for capture. */
  mlp(i: number, h: string): string;
}

export function layerUnits(ctx: LayerUnitsContext): LayerUnits {
  const { g, kit, config: c, batchDim, seqDim, headMask, capture } = ctx;
  const hd = c.headDim;
  const maxHeads = Math.max(...c.headsPerLayer);
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
      return kit.mlp(h, i, (downIn) => capture(i, 'down_in', downIn, c.intermediateSize));
    },
  };
}
