/**
 * Structured plans: what a structured pruning keeps of each layer — query heads, MLP channels, and whether the
 * attention and MLP blocks run at all. One plan is the common currency of the structured search spaces (which
 * write plans), the engine (which computes a plan through mask inputs: `structuredMasksOf`), physical removal
 * and export (which make the plan's model), and the latency model (which prices the plan's layer shapes).
 *
 * Semantics (the masked model and the physically pruned one compute the same function):
 * - `heads[i]`: the query heads layer i keeps, in the numbering of the heads present (ascending). A KV head stays
 *   while some kept query head reads it (GQA). Removed heads contribute nothing; the o projection's bias (where
 *   the family has one) is still added unless the block is skipped.
 * - `channels[i]`: the MLP channels (intermediate neurons) layer i keeps, ascending: rows of gate/up (fc),
 *   columns of down (proj). Removed channels contribute nothing; down's bias is still added unless the block is
 *   skipped.
 * - `skipAttention[i]` / `skipMlp[i]`: the whole block is skipped — its output, bias and any post-block norm
 *   included, is not added to the residual stream. A skipped block's heads / channels count as removed whatever
 *   `heads[i]` / `channels[i]` say.
 *
 * Plans cover one stack of self-attention layers (decoders and encoders); encoder-decoders are refused by the
 * code that builds plans.
 */
import { GenepruneError } from '../errors.js';
import { intermediateOf, kvMapOfLayer, type ModelConfig } from '../model/spec.js';

export interface StructuredPlan {
  heads: number[][];
  channels: number[][];
  skipAttention: boolean[];
  skipMlp: boolean[];
}

/** What a plan leaves of each layer: the shapes physical removal produces and the latency model prices. */
export interface LayerShapes {
  /** Query heads kept per layer (0 where the attention block is skipped or every head removed). */
  heads: number[];
  /** KV heads kept per layer. */
  kvHeads: number[];
  /** MLP width kept per layer (0 where the MLP block is skipped or every channel removed). */
  widths: number[];
  /** Blocks that still add something (a bias) although every unit is removed: false where skipped. */
  attentionRuns: boolean[];
  mlpRuns: boolean[];
}

/** The plan that keeps everything. */
export function fullPlan(config: ModelConfig): StructuredPlan {
  const L = config.numLayers;
  return {
    heads: config.headsPerLayer.map((h) => Array.from({ length: h }, (_, j) => j)),
    channels: Array.from({ length: L }, (_, i) =>
      Array.from({ length: intermediateOf(config, i) }, (_, j) => j),
    ),
    skipAttention: Array(L).fill(false),
    skipMlp: Array(L).fill(false),
  };
}

/** Throws when a plan does not fit the model (lengths, indices out of range, not ascending). */
export function checkPlan(config: ModelConfig, plan: StructuredPlan): void {
  const L = config.numLayers;
  const fail = (what: string): never => {
    throw new GenepruneError('data', `structured plan: ${what}`);
  };
  for (const [name, v] of Object.entries(plan)) {
    if (!Array.isArray(v) || v.length !== L) fail(`${name} must list ${L} layers`);
  }
  const ascending = (v: number[], n: number, what: string) => {
    for (let j = 0; j < v.length; j++) {
      if (!Number.isInteger(v[j]) || v[j] < 0 || v[j] >= n || (j > 0 && v[j] <= v[j - 1])) {
        fail(`${what} must be ascending indices below ${n}`);
      }
    }
  };
  for (let i = 0; i < L; i++) {
    ascending(plan.heads[i], config.headsPerLayer[i], `layer ${i}'s heads`);
    ascending(plan.channels[i], intermediateOf(config, i), `layer ${i}'s channels`);
  }
}

/** The kept shapes of every layer. */
export function layerShapes(config: ModelConfig, plan: StructuredPlan): LayerShapes {
  const L = config.numLayers;
  const heads: number[] = [];
  const kvHeads: number[] = [];
  const widths: number[] = [];
  for (let i = 0; i < L; i++) {
    const kept = plan.skipAttention[i] ? [] : plan.heads[i];
    const map = kvMapOfLayer(config, i);
    heads.push(kept.length);
    kvHeads.push(new Set(kept.map((h) => map[h])).size);
    widths.push(plan.skipMlp[i] ? 0 : plan.channels[i].length);
  }
  return {
    heads,
    kvHeads,
    widths,
    attentionRuns: plan.skipAttention.map((s) => !s),
    mlpRuns: plan.skipMlp.map((s) => !s),
  };
}

/**
 * The engine feeds that compute a plan: head_mask [layers, maxHeads], channel_mask [layers, maxWidth] and
 * block_mask [layers, 2] (see CandidateMasks; maxHeads is the graph's, maxWidth at least 1). Entries past a layer's present heads / width are 1 (unused).
 */
export function structuredMasksOf(
  config: ModelConfig,
  plan: StructuredPlan,
): { headMask: Float32Array; channelMask: Float32Array; blockMask: Float32Array } {
  checkPlan(config, plan);
  const L = config.numLayers;
  const maxHeads = Math.max(...config.headsPerLayer);
  const maxWidth = Math.max(1, ...Array.from({ length: L }, (_, i) => intermediateOf(config, i)));
  const headMask = new Float32Array(L * maxHeads).fill(1);
  const channelMask = new Float32Array(L * maxWidth).fill(1);
  const blockMask = new Float32Array(L * 2);
  for (let i = 0; i < L; i++) {
    headMask.fill(0, i * maxHeads, i * maxHeads + config.headsPerLayer[i]);
    for (const h of plan.heads[i]) headMask[i * maxHeads + h] = 1;
    channelMask.fill(0, i * maxWidth, i * maxWidth + intermediateOf(config, i));
    for (const j of plan.channels[i]) channelMask[i * maxWidth + j] = 1;
    blockMask[2 * i] = plan.skipAttention[i] ? 0 : 1;
    blockMask[2 * i + 1] = plan.skipMlp[i] ? 0 : 1;
  }
  return { headMask, channelMask, blockMask };
}

/**
 * The MLP widths a structured search may give a layer of width `width`: multiples of a step that keeps shapes
 * hardware-friendly — 64 or 1/32 of the width, whichever is coarser, rounded up to a multiple of 64 — plus the
 * full width itself (0 included: the MLP's channels all removed). `step` overrides the rule (small models, where
 * 64 would leave two or three levels).
 */
export function widthLevels(width: number, step?: number): number[] {
  const s = step ?? Math.max(64, Math.ceil(width / 32 / 64) * 64);
  if (!(Number.isInteger(s) && s > 0))
    throw new GenepruneError('internal', `width step ${s} is not a positive integer`);
  const levels: number[] = [];
  for (let w = 0; w < width; w += s) levels.push(w);
  levels.push(width);
  return levels;
}
