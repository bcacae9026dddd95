/**
 * Physical structured removal: turns a StructuredPlan (masks/structured.ts: kept heads, kept MLP channels,
 * skipped attention / MLP blocks) into a smaller ModelSpec that computes exactly what the full model computes
 * under `structuredMasksOf(plan)`, and into the padded form of the same function (dense shapes, zeros where the
 * plan removes).
 *
 * Per layer i:
 * - heads go through the head pruning (prune/heads.ts, `pruneHeads` / `zeroHeads`) with the genome the plan
 *   implies: plan.heads[i], or none where the attention block is skipped;
 * - MLP channels: the kept rows of gate and up (fc) and their biases, the kept columns of down (proj); the width
 *   becomes config.intermediatePerLayer[i] (0 where the MLP is skipped or every channel goes);
 * - a skipped attention block's o bias and a skipped MLP block's down bias are zero: a block that keeps no unit
 *   still adds its bias (the masked model does), a skipped block adds nothing. Zeroing rather than dropping keeps
 *   every layer's tensor list the same, which the writers and the graphs expect.
 * Only neutral roles are read (layers.i.attn.*, layers.i.mlp.{gate,up,down}), so every self-attention family is
 * served (GPT-2's c_fc/c_proj and Phi-3's fused gate_up_proj are split into those roles on load). Encoder-decoders
 * are refused: a plan covers one stack.
 *
 * Tensors are sliced lazily, as in heads.ts: a pruned tensor loads its source only when its own load() is called,
 * and tensors the plan leaves whole are the source's own objects.
 */
import { GenepruneError } from '../errors.js';
import type { Genome } from '../masks/heads.js';
import { checkPlan, layerShapes, type StructuredPlan } from '../masks/structured.js';
import { attentionFlops, countParameters, forwardFlopsPerToken } from '../model/cost.js';
import { intermediateOf, type ModelConfig, type ModelSpec, type TensorSource } from '../model/spec.js';
import { keepRowBlocks, type PruneSummary, pruneHeads, zeroHeads } from './heads.js';

function refuseEncDec(spec: ModelSpec): void {
  if (spec.config.encdec) {
    throw new GenepruneError(
      'model',
      'structured plans cover one stack of self-attention layers: encoder-decoders (T5) are not supported',
      spec.source,
    );
  }
}

/** Checks the plan against the model, naming the model in the refusal. */
function checkStructured(spec: ModelSpec, plan: StructuredPlan): void {
  refuseEncDec(spec);
  try {
    checkPlan(spec.config, plan);
  } catch (e) {
    if (e instanceof GenepruneError) throw new GenepruneError('model', e.message, spec.source);
    throw e;
  }
}

/** The head genome a plan implies: plan.heads[i] kept, none where layer i's attention is skipped. */
export function planGenome(config: ModelConfig, plan: StructuredPlan): Genome {
  const genome = new Uint8Array(config.headsPerLayer.reduce((a, b) => a + b, 0));
  let offset = 0;
  for (let i = 0; i < config.numLayers; i++) {
    if (!plan.skipAttention[i]) for (const h of plan.heads[i]) genome[offset + h] = 1;
    offset += config.headsPerLayer[i];
  }
  return genome;
}

/** The channels layer i keeps: none where its MLP is skipped. */
const keptChannels = (plan: StructuredPlan, i: number): number[] => (plan.skipMlp[i] ? [] : plan.channels[i]);

function tensorOf(spec: ModelSpec, role: string, shape: number[]): TensorSource {
  const t = spec.tensors.get(role);
  if (!t) throw new GenepruneError('model', `tensor ${role} is missing from the model`, spec.source);
  if (t.shape.length !== shape.length || t.shape.some((d, j) => d !== shape[j])) {
    throw new GenepruneError(
      'model',
      `tensor ${role} has shape [${t.shape.join(',')}], the config implies [${shape.join(',')}]`,
      spec.source,
    );
  }
  return t;
}

/** A tensor of `src`'s shape and dtype holding zeros (a skipped block's bias). */
function zeros(src: TensorSource): TensorSource {
  const n = src.shape.reduce((a, b) => a * b, 1);
  return { shape: src.shape, dtype: src.dtype, load: async () => new Float32Array(n) };
}

/** Keeps columns `kept` of a [rows, cols] tensor (a gather per row: down's kept channels). */
function keepColumns(src: TensorSource, kept: number[]): TensorSource {
  const [rows, cols] = src.shape;
  const k = kept.length;
  return {
    shape: [rows, k],
    dtype: src.dtype,
    load: async () => {
      const data = await src.load();
      const out = new Float32Array(rows * k);
      for (let r = 0; r < rows; r++) {
        const from = r * cols;
        const to = r * k;
        for (let j = 0; j < k; j++) out[to + j] = data[from + kept[j]];
      }
      return out;
    },
  };
}

/** `src` with rows (`columns`: columns) `drop` zero; a 1-D tensor counts as one column. */
function zeroLines(src: TensorSource, drop: number[], columns: boolean): TensorSource {
  if (drop.length === 0) return src;
  const [rows, cols = 1] = src.shape;
  return {
    shape: src.shape,
    dtype: src.dtype,
    load: async () => {
      const data = Float32Array.from(await src.load());
      for (const d of drop) {
        if (columns) for (let r = 0; r < rows; r++) data[r * cols + d] = 0;
        else data.fill(0, d * cols, (d + 1) * cols);
      }
      return data;
    },
  };
}

/** The MLP roles of layer i with their full shapes: gate (gated MLPs only) and up rows, down columns. */
function mlpRoles(spec: ModelSpec, i: number): { rows: Array<[string, number[]]>; down: string } {
  const c = spec.config;
  const W = intermediateOf(c, i);
  const D = c.hiddenSize;
  const p = `layers.${i}.mlp`;
  const rows: Array<[string, number[]]> = [];
  for (const name of c.mlpKind === 'gated' ? ['gate', 'up'] : ['up']) {
    rows.push([`${p}.${name}.weight`, [W, D]]);
    if (spec.tensors.has(`${p}.${name}.bias`)) rows.push([`${p}.${name}.bias`, [W]]);
  }
  return { rows, down: `${p}.down.weight` };
}

/** Zeroes the o bias of skipped attention blocks and the down bias of skipped MLP blocks, in place of `tensors`. */
function zeroSkippedBiases(spec: ModelSpec, plan: StructuredPlan, tensors: Map<string, TensorSource>): void {
  const D = spec.config.hiddenSize;
  for (let i = 0; i < spec.config.numLayers; i++) {
    const skipped: string[] = [];
    if (plan.skipAttention[i]) skipped.push(`layers.${i}.attn.o.bias`);
    if (plan.skipMlp[i]) skipped.push(`layers.${i}.mlp.down.bias`);
    for (const role of skipped) {
      if (spec.tensors.has(role)) tensors.set(role, zeros(tensorOf(spec, role, [D])));
    }
  }
}

/** The spec with what the plan removes physically gone (see the module comment). */
export function pruneStructured(spec: ModelSpec, plan: StructuredPlan): ModelSpec {
  checkStructured(spec, plan);
  const c = spec.config;
  const D = c.hiddenSize;
  // Skipped blocks' biases zero first; the head pruning then keeps the zero o bias of a skipped attention block.
  const biased = new Map(spec.tensors);
  zeroSkippedBiases(spec, plan, biased);
  const headPruned = pruneHeads({ ...spec, tensors: biased }, planGenome(c, plan));
  const tensors = new Map(headPruned.tensors);
  const widths: number[] = [];
  for (let i = 0; i < c.numLayers; i++) {
    const W = intermediateOf(c, i);
    const kept = keptChannels(plan, i);
    widths.push(kept.length);
    const { rows, down } = mlpRoles(spec, i);
    for (const [role, shape] of rows) tensorOf(spec, role, shape);
    tensorOf(spec, down, [D, W]);
    // Whole MLPs keep the source objects: nothing changes for layers the plan leaves alone.
    if (kept.length === W) continue;
    for (const [role] of rows) tensors.set(role, keepRowBlocks(spec.tensors.get(role)!, kept, 1));
    tensors.set(down, keepColumns(spec.tensors.get(down)!, kept));
  }
  const config: ModelConfig = { ...headPruned.config };
  delete config.intermediatePerLayer;
  if (widths.some((w) => w !== c.intermediateSize)) config.intermediatePerLayer = widths;
  return { ...headPruned, config, tensors };
}

/**
 * pruneStructured for a format that cannot express a layer without heads (GPT-2's config.json, whose pruned_heads
 * may not remove every head): such a layer keeps its head 0 with every weight and bias of it zero — the padded
 * model's head, which adds nothing (its values are zero), so the function is the same; only that head's q/k/v/o
 * slices stay. Other layers are pruneStructured's.
 */
export function pruneStructuredKeepingAHead(spec: ModelSpec, plan: StructuredPlan): ModelSpec {
  checkStructured(spec, plan);
  const empty = plan.heads.map(
    (h, i) => spec.config.headsPerLayer[i] > 0 && (plan.skipAttention[i] || h.length === 0),
  );
  if (!empty.some((e) => e)) return pruneStructured(spec, plan);
  const oneHead: StructuredPlan = {
    ...plan,
    heads: plan.heads.map((h, i) => (empty[i] ? [0] : h)),
    // The zeroed source already holds the skipped blocks' zero biases; head 0 of such a layer runs, adding 0.
    skipAttention: plan.skipAttention.map((s, i) => s && !empty[i]),
  };
  return pruneStructured(zeroStructured(spec, plan), oneHead);
}

/**
 * The plan in the original shapes (the padded layout): removed heads as `zeroHeads` writes them, removed channels'
 * gate/up rows (and biases) and down columns zero, skipped blocks' o / down biases zero. Computes what the masked
 * model computes, in the dense layout any loader of the family reads; nothing is smaller.
 */
export function zeroStructured(spec: ModelSpec, plan: StructuredPlan): ModelSpec {
  checkStructured(spec, plan);
  const c = spec.config;
  const headZeroed = zeroHeads(spec, planGenome(c, plan));
  const tensors = new Map(headZeroed.tensors);
  zeroSkippedBiases(spec, plan, tensors);
  for (let i = 0; i < c.numLayers; i++) {
    const W = intermediateOf(c, i);
    const keep = new Set(keptChannels(plan, i));
    const drop = [...Array(W).keys()].filter((j) => !keep.has(j));
    const { rows, down } = mlpRoles(spec, i);
    for (const [role, shape] of rows) tensors.set(role, zeroLines(tensorOf(spec, role, shape), drop, false));
    tensors.set(down, zeroLines(tensorOf(spec, down, [c.hiddenSize, W]), drop, true));
  }
  return { ...headZeroed, tensors };
}

/** Counts for reports: PruneSummary's heads and parameters, each layer's MLP width, skipped blocks, FLOPs. */
export interface StructuredSummary extends PruneSummary {
  /** MLP width present per layer before pruning, and kept (0 where skipped or emptied). */
  widthsBefore: number[];
  keptWidths: number[];
  /** Layers whose attention / MLP block is skipped. */
  skippedAttention: number[];
  skippedMlp: number[];
  /** Forward FLOPs per token after / before (model/cost.ts `forwardFlopsPerToken`) at `contextLength` tokens. */
  flopsRatio: number;
}

export function structuredSummary(
  spec: ModelSpec,
  plan: StructuredPlan,
  opts: { contextLength?: number } = {},
): StructuredSummary {
  const pruned = pruneStructured(spec, plan);
  const T = opts.contextLength ?? spec.config.maxPositions;
  const shapes = layerShapes(spec.config, plan);
  const skipped = (v: boolean[]) => v.flatMap((s, i) => (s ? [i] : []));
  const before = forwardFlopsPerToken(spec, T);
  const attention = attentionFlops(spec.config, T);
  const c = spec.config;
  return {
    queryHeadsBefore: [...c.headsPerLayer],
    keptQueryHeads: [...pruned.config.headsPerLayer],
    kvHeadsBefore: [...c.kvHeadsPerLayer],
    keptKvHeads: [...pruned.config.kvHeadsPerLayer],
    parametersBefore: countParameters(spec.tensors),
    parametersAfter: countParameters(pruned.tensors),
    attentionFlopsRatio: attention > 0 ? attentionFlops(pruned.config, T) / attention : 1,
    contextLength: T,
    widthsBefore: Array.from({ length: spec.config.numLayers }, (_, i) => intermediateOf(spec.config, i)),
    keptWidths: shapes.widths,
    skippedAttention: skipped(plan.skipAttention),
    skippedMlp: skipped(plan.skipMlp),
    flopsRatio: before > 0 ? forwardFlopsPerToken(pruned, T) / before : 1,
  };
}
