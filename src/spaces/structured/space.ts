/**
 * The structured search spaces (issue #23): per-layer *level* genomes that decode to a StructuredPlan
 * (masks/structured.ts), the one currency the engine, physical removal, export and the latency model share.
 *
 * A genome is a Uint8Array of levels, layer-major, each layer holding only the genes its space uses, in this
 * order:
 *   heads      query heads kept, 0 … H_i (the best `level` by the layer's head order: "heads as levels")
 *   width      an index into the layer's MLP width grid (`widthLevels`): the best `widthLevels[level]` channels
 *              by the layer's channel order
 *   attention  1 runs the attention block, 0 skips it whole (EvoPress depth)
 *   mlp        1 runs the MLP block, 0 skips it whole
 * Spaces: `channels` (width), `heads` (heads), `blocks` (attention, mlp) and `joint` (all four). Genes a space
 * leaves out keep everything. A higher level always keeps more, so "lower a level" is the one move that
 * shrinks a model and the budget operators (operators.ts) need nothing else.
 *
 * The orders (per layer, heads and channels best first) come from the structured scores measured on
 * calibration data; a space decodes through them, so one genome is one plan for one set of scores, and the run
 * records its orders. The cost side counts what physical removal keeps: removed query heads take their q rows
 * and o columns, removed KV heads (no kept query head reads them) their k and v rows, removed channels their
 * gate/up rows and down columns (biases included); norms and the o / down biases of a skipped block stay as
 * zeroed tensors, so they still count.
 *
 * Genomes are written as levels in decimal, '.' within a layer and '/' between layers ("8.3.1.1/6.2.1.0"):
 * readable in logs and state files, and their own cache key.
 */
import { GenepruneError } from '../../errors.js';
import {
  fullPlan,
  type LayerShapes,
  layerShapes,
  type StructuredPlan,
  structuredMasksOf,
  widthLevels,
} from '../../masks/structured.js';
import { removedHeadParameters } from '../../model/cost.js';
import { intermediateOf, kvMapOfLayer, type ModelConfig, type ModelSpec } from '../../model/spec.js';
import type { SearchSpace } from '../../search/space.js';

export const STRUCTURED_SPACES = ['channels', 'heads', 'blocks', 'joint'] as const;
export type StructuredSpaceKind = (typeof STRUCTURED_SPACES)[number];

export type GeneKind = 'heads' | 'width' | 'attention' | 'mlp';

/** The genes each space gives a layer, in genome order. */
export const SPACE_GENES: Record<StructuredSpaceKind, readonly GeneKind[]> = {
  channels: ['width'],
  heads: ['heads'],
  blocks: ['attention', 'mlp'],
  joint: ['heads', 'width', 'attention', 'mlp'],
};

/** One gene: which layer and what it sets, and its highest level (the level that keeps everything). */
export interface GeneSlot {
  layer: number;
  kind: GeneKind;
  max: number;
}

/** Per layer, heads and MLP channels best first (the structured scores' orders). */
export interface StructuredOrders {
  heads: number[][];
  channels: number[][];
}

/** Orders by index: the fallback when no scores are given (tests, and spaces whose genes ignore them). */
export function indexOrders(config: ModelConfig): StructuredOrders {
  return {
    heads: config.headsPerLayer.map((h) => Array.from({ length: h }, (_, j) => j)),
    channels: Array.from({ length: config.numLayers }, (_, i) =>
      Array.from({ length: intermediateOf(config, i) }, (_, j) => j),
    ),
  };
}

export type StructuredGenome = Uint8Array;

export interface StructuredSpace extends SearchSpace<StructuredGenome> {
  readonly kind: StructuredSpaceKind;
  readonly config: ModelConfig;
  readonly slots: readonly GeneSlot[];
  /** Per layer, the MLP widths a width gene indexes. */
  readonly widths: readonly number[][];
  readonly orders: StructuredOrders;
  /** The plan a genome stands for. */
  plan(g: StructuredGenome): StructuredPlan;
  /** The plan's layer shapes (what the budgets price). */
  shapes(g: StructuredGenome): LayerShapes;
  /** The genome that keeps least (every gene at level 0). */
  smallest(): StructuredGenome;
  /** Parameters a physical removal keeps, from the shapes alone. */
  keptParametersOf(shapes: LayerShapes): number;
}

export interface StructuredSpaceOptions {
  kind: StructuredSpaceKind;
  orders?: StructuredOrders;
  /** The MLP width grid's step (widthLevels' override; default its own rule). */
  widthStep?: number;
}

/**
 * Parameters each MLP channel of each layer holds: its gate and up rows (weights and biases) and its down
 * column, counted from the tensors, so every family's layout is counted as it is stored.
 */
export function channelParameters(spec: ModelSpec): number[] {
  const c = spec.config;
  const shape = (name: string) => spec.tensors.get(name)?.shape;
  return Array.from({ length: c.numLayers }, (_, i) => {
    const p = `layers.${i}.mlp`;
    let n = 0;
    for (const role of ['gate', 'up']) {
      const w = shape(`${p}.${role}.weight`);
      if (w) n += w[1];
      if (shape(`${p}.${role}.bias`)) n += 1;
    }
    const down = shape(`${p}.down.weight`);
    if (down) n += down[0];
    return n;
  });
}

function refuseUnsupported(config: ModelConfig): void {
  if (config.encdec)
    throw new GenepruneError('model', 'structured search covers decoders and encoders, not encoder-decoders');
}

export function createStructuredSpace(
  spec: ModelSpec,
  totalParameters: number,
  opts: StructuredSpaceOptions,
): StructuredSpace {
  const config = spec.config;
  refuseUnsupported(config);
  const L = config.numLayers;
  const orders = opts.orders ?? indexOrders(config);
  checkOrders(config, orders);
  const widths = Array.from({ length: L }, (_, i) => {
    const w = intermediateOf(config, i);
    return w === 0 ? [0] : widthLevels(w, opts.widthStep);
  });
  const perChannel = channelParameters(spec);
  const kinds = SPACE_GENES[opts.kind];
  const slots: GeneSlot[] = [];
  for (let i = 0; i < L; i++) {
    for (const kind of kinds) {
      const max = kind === 'heads' ? config.headsPerLayer[i] : kind === 'width' ? widths[i].length - 1 : 1;
      if (max > 255)
        throw new GenepruneError('model', `layer ${i} has ${max} heads: more than a level gene holds`);
      slots.push({ layer: i, kind, max });
    }
  }
  const genes = slots.length;
  const full = () => Uint8Array.from(slots, (s) => s.max);
  const plan = (g: StructuredGenome): StructuredPlan => {
    const p = fullPlan(config);
    for (let k = 0; k < genes; k++) {
      const { layer: i, kind } = slots[k];
      const level = g[k];
      if (kind === 'heads') p.heads[i] = orders.heads[i].slice(0, level).sort((a, b) => a - b);
      else if (kind === 'width')
        p.channels[i] = orders.channels[i].slice(0, widths[i][level]).sort((a, b) => a - b);
      else if (kind === 'attention') p.skipAttention[i] = level === 0;
      else p.skipMlp[i] = level === 0;
    }
    return p;
  };
  const keptParametersOf = (shapes: LayerShapes): number => {
    let removed = removedHeadParameters(config, shapes.heads, shapes.kvHeads);
    for (let i = 0; i < L; i++) removed += (intermediateOf(config, i) - shapes.widths[i]) * perChannel[i];
    return totalParameters - removed;
  };
  // Shapes straight from the levels (the budget operators price thousands of genomes; building each plan's
  // channel lists would dominate): a head level's KV heads are those its best `level` heads read.
  const kvAtLevel = Array.from({ length: L }, (_, i) => {
    const map = kvMapOfLayer(config, i);
    const seen = new Set<number>();
    const out = [0];
    for (const h of orders.heads[i]) {
      seen.add(map[h]);
      out.push(seen.size);
    }
    return out;
  });
  const dense = layerShapes(config, fullPlan(config));
  const shapes = (g: StructuredGenome): LayerShapes => {
    const s: LayerShapes = {
      heads: [...dense.heads],
      kvHeads: [...dense.kvHeads],
      widths: [...dense.widths],
      attentionRuns: [...dense.attentionRuns],
      mlpRuns: [...dense.mlpRuns],
    };
    for (let k = 0; k < genes; k++) {
      const { layer: i, kind } = slots[k];
      const level = g[k];
      if (kind === 'heads') {
        s.heads[i] = level;
        s.kvHeads[i] = kvAtLevel[i][level];
      } else if (kind === 'width') s.widths[i] = widths[i][level];
      else if (kind === 'attention') s.attentionRuns[i] = level === 1;
      else s.mlpRuns[i] = level === 1;
    }
    for (let i = 0; i < L; i++) {
      if (!s.attentionRuns[i]) {
        s.heads[i] = 0;
        s.kvHeads[i] = 0;
      }
      if (!s.mlpRuns[i]) s.widths[i] = 0;
    }
    return s;
  };
  const kept = (g: StructuredGenome) => keptParametersOf(shapes(g));
  const { encode, decode } = levelCodec(L, slots)!;
  return {
    kind: opts.kind,
    unit: `${opts.kind} levels`,
    config,
    slots,
    widths,
    orders,
    genes,
    totalParameters,
    encode,
    decode,
    key: encode,
    full,
    isFull: (g) => g.every((v, k) => v === slots[k].max),
    smallest: () => new Uint8Array(genes),
    sparsity: (g) => 1 - kept(g) / totalParameters,
    keptParameters: kept,
    keptParametersOf,
    plan,
    shapes,
    masks: (g) => structuredMasksOf(config, plan(g)),
  };
}

/**
 * The genome text of a level space with these slots (layer-major, the same genes in every layer), from the
 * slots alone (a run's config.json records them); undefined when the slots are not such a layout.
 */
export function levelCodec(
  layers: number,
  slots: unknown,
):
  | { genes: number; encode(g: StructuredGenome): string; decode(text: string): StructuredGenome | undefined }
  | undefined {
  if (!Number.isInteger(layers) || layers < 1 || !Array.isArray(slots) || slots.length % layers !== 0)
    return undefined;
  const ok = slots.every(
    (s, k) =>
      Number.isInteger(s?.max) &&
      s.max >= 0 &&
      s.max <= 255 &&
      s.layer === Math.floor(k / (slots.length / layers)),
  );
  if (!ok) return undefined;
  const max = slots.map((s) => s.max as number);
  const genes = max.length;
  const perLayer = genes / layers;
  const encode = (g: StructuredGenome): string => {
    const parts: string[] = [];
    for (let i = 0; i < layers; i++)
      parts.push(Array.from(g.subarray(i * perLayer, (i + 1) * perLayer)).join('.'));
    return parts.join('/');
  };
  const decode = (text: string): StructuredGenome | undefined => {
    const parts = text.split('/');
    if (parts.length !== layers) return undefined;
    const g = new Uint8Array(genes);
    let k = 0;
    for (const layer of parts) {
      const levels = layer.split('.');
      if (levels.length !== perLayer) return undefined;
      for (const v of levels) {
        if (!/^(0|[1-9][0-9]{0,2})$/.test(v) || Number(v) > max[k]) return undefined;
        g[k++] = Number(v);
      }
    }
    return g;
  };
  return { genes, encode, decode };
}

/** Refuses orders that are not, per layer, a permutation of the heads / channels present. */
function checkOrders(config: ModelConfig, orders: StructuredOrders): void {
  const perm = (v: number[] | undefined, n: number, what: string) => {
    const seen = new Uint8Array(n);
    if (
      !Array.isArray(v) ||
      v.length !== n ||
      !v.every((j) => Number.isInteger(j) && j >= 0 && j < n && !seen[j]++)
    )
      throw new GenepruneError('internal', `structured orders: ${what} is not an order of its ${n} units`);
  };
  for (let i = 0; i < config.numLayers; i++) {
    perm(orders.heads[i], config.headsPerLayer[i], `layer ${i}'s heads`);
    perm(orders.channels[i], intermediateOf(config, i), `layer ${i}'s channels`);
  }
}

/**
 * FLOPs per token of a forward over `seq` tokens of a model of these layer shapes: 2 per multiply-add in q/k/v/o,
 * QKᵀ and PV (as cost.ts's forwardFlopsPerToken counts them), gate/up/down (fc/proj: two linears) and the head.
 * Skipped blocks and removed units cost nothing.
 */
export function planFlopsPerToken(config: ModelConfig, shapes: LayerShapes, seq: number): number {
  const D = config.hiddenSize;
  const hd = config.headDim;
  const mlpLinears = config.mlpKind === 'gated' ? 3 : 2;
  let flops = 2 * D * config.vocabSize;
  for (let i = 0; i < config.numLayers; i++) {
    const q = shapes.heads[i] * hd;
    const kv = shapes.kvHeads[i] * hd;
    flops += 2 * D * (2 * q + 2 * kv) + 2 * 2 * seq * q;
    flops += 2 * mlpLinears * D * shapes.widths[i];
  }
  return flops;
}
