/**
 * Physical head pruning: turns a head genome into a smaller ModelSpec whose attention tensors hold only the
 * kept heads. The result computes exactly what the full model computes under `headMaskOf(genome)`.
 *
 * Per layer:
 * - q rows (and q bias) of kept query heads, o columns of kept query heads (o bias unchanged);
 * - k/v rows (and biases) of the KV heads some kept query head reads (GQA: a KV head stays while any of its
 *   query heads stays), in their original order;
 * - headsPerLayer / kvHeadsPerLayer become the kept counts, and kvHeadOfQuery the kept query heads' KV heads
 *   renumbered among the kept KV heads.
 *
 * Conventions:
 * - Genes follow `masks/heads.ts`: one per query head *present* in the input spec, layer-major (layer l's genes start
 *   at Σ_{j<l} headsPerLayer[j]). An already pruned input is pruned again over its own heads.
 * - kvHeadOfQuery is written only when some layer's map is not the uniform grouping; it then lists every
 *   layer (the config reader requires one map per layer).
 * - A layer may keep no heads: its q/k/v/o tensors become zero-row/zero-column tensors (the shapes
 *   llamaRoleShapes implies, so HF export and reload work). The decoder and encoder graphs then add the o
 *   projection's bias alone (where it has one), as the masked model does, so every family is pruned exactly.
 * - Tensors are sliced lazily: each pruned tensor loads its source only when its own load() is called.
 *   Tensors a pruning leaves whole are the source's own TensorSource objects.
 */
import { archOf } from '../arch/registry.js';
import { GenepruneError } from '../errors.js';
import { type Genome, geneCount, geneOffsets } from '../masks/heads.js';
import { attentionFlops, countParameters } from '../model/cost.js';
import {
  kvGroupOf,
  kvMapOfLayer,
  type ModelConfig,
  type ModelSpec,
  type TensorSource,
} from '../model/spec.js';
import { pruneEncDecHeads, zeroEncDecHeads } from './encdec-heads.js';

/** What pruning keeps in one layer, in the input spec's head numbering. */
export interface LayerPlan {
  /** Kept query heads, ascending. */
  query: number[];
  /** Kept KV heads, ascending. */
  kv: number[];
  /** For each kept query head, its KV head as an index into `kv`. */
  kvOfQuery: number[];
}

export interface PruneSummary {
  /** Query heads present per layer before pruning. */
  queryHeadsBefore: number[];
  keptQueryHeads: number[];
  kvHeadsBefore: number[];
  keptKvHeads: number[];
  parametersBefore: number;
  parametersAfter: number;
  /**
   * Attention FLOPs per token after / before: q, k, v, o projections (D·hd per head row) plus scores and
   * value mixing (2·hd per query head per attended position) at `contextLength` positions.
   */
  attentionFlopsRatio: number;
  contextLength: number;
  /**
   * Kinds of several head stacks (encoder-decoders: encoder, decoder, cross): each stack's heads per layer before
   * and after, in gene order (queryHeadsBefore / keptQueryHeads hold the self-attention blocks only).
   */
  stacks?: Array<{ name: string; before: number[]; kept: number[] }>;
}

function modelError(spec: ModelSpec, message: string): GenepruneError {
  return new GenepruneError('model', message, spec.source);
}

function checkGenome(spec: ModelSpec, genome: Genome): void {
  const c = spec.config;
  const n = geneCount(c);
  if (genome.length !== n) {
    throw modelError(
      spec,
      `head genome has ${genome.length} genes, the model needs ${n} (one per query head present: ${c.headsPerLayer.join(' ')} per layer)`,
    );
  }
  for (let i = 0; i < genome.length; i++) {
    if (genome[i] !== 0 && genome[i] !== 1) {
      throw modelError(spec, `head genome gene ${i} is ${genome[i]}, genes must be 0 (remove) or 1 (keep)`);
    }
  }
}

/** Which heads of each layer the genome keeps (the input spec's numbering). */
export function pruneLayerPlans(spec: ModelSpec, genome: Genome): LayerPlan[] {
  checkGenome(spec, genome);
  const c = spec.config;
  const plans: LayerPlan[] = [];
  const offsets = geneOffsets(c);
  for (let l = 0; l < c.numLayers; l++) {
    const map = kvMapOfLayer(c, l);
    const query: number[] = [];
    for (let h = 0; h < map.length; h++) if (genome[offsets[l] + h]) query.push(h);
    const kv = [...new Set(query.map((h) => map[h]))].sort((a, b) => a - b);
    const rank = new Map(kv.map((k, i) => [k, i]));
    plans.push({ query, kv, kvOfQuery: query.map((h) => rank.get(map[h])!) });
  }
  return plans;
}

/** True when `map` is what kvMapOfLayer derives without an explicit map (and the reader accepts as such). */
function isUniformMap(map: readonly number[], kvHeads: number): boolean {
  const heads = map.length;
  if (heads === 0 || kvHeads === 0) return heads === kvHeads;
  if (heads % kvHeads !== 0) return false;
  return map.every((k, h) => k === kvGroupOf(h, heads, kvHeads));
}

/** Keeps row blocks `blocks` (each `blockRows` rows of `cols` values) of a [rows, cols] or [rows] tensor. */
export function keepRowBlocks(src: TensorSource, blocks: number[], blockRows: number): TensorSource {
  const cols = src.shape.length > 1 ? src.shape[1] : 1;
  const shape = src.shape.length > 1 ? [blocks.length * blockRows, cols] : [blocks.length * blockRows];
  return {
    shape,
    dtype: src.dtype,
    load: async () => {
      const data = await src.load();
      const span = blockRows * cols;
      const out = new Float32Array(blocks.length * span);
      blocks.forEach((b, i) => {
        out.set(data.subarray(b * span, (b + 1) * span), i * span);
      });
      return out;
    },
  };
}

/** Keeps column blocks `blocks` (each `blockCols` wide) of a [rows, cols] tensor. */
export function keepColumnBlocks(src: TensorSource, blocks: number[], blockCols: number): TensorSource {
  const [rows, cols] = src.shape;
  const outCols = blocks.length * blockCols;
  return {
    shape: [rows, outCols],
    dtype: src.dtype,
    load: async () => {
      const data = await src.load();
      const out = new Float32Array(rows * outCols);
      for (let r = 0; r < rows; r++) {
        blocks.forEach((b, i) => {
          const from = r * cols + b * blockCols;
          out.set(data.subarray(from, from + blockCols), r * outCols + i * blockCols);
        });
      }
      return out;
    },
  };
}

function checkShape(
  spec: ModelSpec,
  role: string,
  t: TensorSource | undefined,
  shape: number[],
): TensorSource {
  if (!t) throw modelError(spec, `tensor ${role} is missing from the model`);
  if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
    throw modelError(
      spec,
      `tensor ${role} has shape [${t.shape.join(',')}], the config implies [${shape.join(',')}]`,
    );
  }
  return t;
}

/** The spec with the heads the genome removes physically gone (see the module comment for conventions). */
export function pruneHeads(spec: ModelSpec, genome: Genome): ModelSpec {
  // Encoder-decoders have three stacks and shared relative-bias tables: their own rules (encdec-heads.ts).
  if (spec.config.encdec) return pruneEncDecHeads(spec, genome);
  const c = spec.config;
  const plans = pruneLayerPlans(spec, genome);
  const hd = c.headDim;
  const D = c.hiddenSize;
  const tensors = new Map(spec.tensors);
  const maps: number[][] = [];

  plans.forEach((plan, l) => {
    const heads = c.headsPerLayer[l];
    const kvHeads = c.kvHeadsPerLayer[l];
    const p = `layers.${l}.attn`;
    maps.push(plan.kvOfQuery);
    const sliceRows = (name: string, total: number, kept: number[]) => {
      for (const kind of ['weight', 'bias'] as const) {
        const role = `${p}.${name}.${kind}`;
        if (kind === 'bias' && !spec.tensors.has(role)) continue;
        const t = checkShape(
          spec,
          role,
          spec.tensors.get(role),
          kind === 'weight' ? [total * hd, D] : [total * hd],
        );
        // Whole layers keep the source object itself: no copy, and nothing changes for unpruned layers.
        if (kept.length !== total) tensors.set(role, keepRowBlocks(t, kept, hd));
      }
    };
    sliceRows('q', heads, plan.query);
    sliceRows('k', kvHeads, plan.kv);
    sliceRows('v', kvHeads, plan.kv);
    const oRole = `${p}.o.weight`;
    const o = checkShape(spec, oRole, spec.tensors.get(oRole), [D, heads * hd]);
    if (plan.query.length !== heads) tensors.set(oRole, keepColumnBlocks(o, plan.query, hd));
  });

  const config: ModelConfig = {
    ...c,
    headsPerLayer: plans.map((p) => p.query.length),
    kvHeadsPerLayer: plans.map((p) => p.kv.length),
  };
  delete config.kvHeadOfQuery;
  if (maps.some((m, l) => !isUniformMap(m, config.kvHeadsPerLayer[l]))) config.kvHeadOfQuery = maps;
  return { config, tensors, source: spec.source };
}

/** Counts for reports: heads and parameters before/after, and the attention FLOPs ratio. */
export function pruneSummary(
  spec: ModelSpec,
  genome: Genome,
  opts: { contextLength?: number } = {},
): PruneSummary {
  const pruned = pruneHeads(spec, genome);
  const T = opts.contextLength ?? spec.config.maxPositions;
  const before = attentionFlops(spec.config, T);
  return {
    queryHeadsBefore: [...spec.config.headsPerLayer],
    keptQueryHeads: [...pruned.config.headsPerLayer],
    kvHeadsBefore: [...spec.config.kvHeadsPerLayer],
    keptKvHeads: [...pruned.config.kvHeadsPerLayer],
    parametersBefore: countParameters(spec.tensors),
    parametersAfter: countParameters(pruned.tensors),
    attentionFlopsRatio: before > 0 ? attentionFlops(pruned.config, T) / before : 1,
    contextLength: T,
    ...(spec.config.encdec
      ? {
          stacks: archOf(spec.config)
            .headStacks(spec.config)
            .map((s, i) => ({
              name: s.name,
              before: [...s.headsPerLayer],
              kept: [...archOf(pruned.config).headStacks(pruned.config)[i].headsPerLayer],
            })),
        }
      : {}),
  };
}

/**
 * The genome's pruning in the original shapes (`--hf-layout padded`): the removed query heads' q rows (and q
 * bias) and o columns are zero, and so are the k/v rows (and biases) of KV heads no kept query head reads.
 * Computes exactly what the masked model computes (a head whose o columns are zero adds nothing), in the
 * dense layout any loader of the family reads; no speed-up, since nothing is smaller. A layer may lose every
 * head, o bias or not: its attention then adds the o bias alone, as the masked model's does.
 */
export function zeroHeads(spec: ModelSpec, genome: Genome): ModelSpec {
  if (spec.config.encdec) return zeroEncDecHeads(spec, genome);
  const plans = pruneLayerPlans(spec, genome);
  const c = spec.config;
  const hd = c.headDim;
  const D = c.hiddenSize;
  const tensors = new Map(spec.tensors);
  /** Zeroes row blocks (or, `columns`, column blocks) `drop` of width hd in a tensor. */
  const zeroBlocks = (role: string, shape: number[], drop: number[], columns: boolean) => {
    if (drop.length === 0 || !spec.tensors.has(role)) return;
    const src = checkShape(spec, role, spec.tensors.get(role), shape);
    const apply = (data: Float32Array) => {
      const cols = shape.length > 1 ? shape[1] : 1;
      for (const b of drop) {
        if (columns) {
          for (let r = 0; r < shape[0]; r++) data.fill(0, r * cols + b * hd, r * cols + (b + 1) * hd);
        } else data.fill(0, b * hd * cols, (b + 1) * hd * cols);
      }
      return data;
    };
    tensors.set(role, {
      shape: src.shape,
      dtype: src.dtype,
      load: async () => apply(Float32Array.from(await src.load())),
    });
  };
  plans.forEach((plan, l) => {
    const heads = c.headsPerLayer[l];
    const kvHeads = c.kvHeadsPerLayer[l];
    const p = `layers.${l}.attn`;
    const droppedQ = [...Array(heads).keys()].filter((h) => !plan.query.includes(h));
    const droppedKv = [...Array(kvHeads).keys()].filter((k) => !plan.kv.includes(k));
    zeroBlocks(`${p}.q.weight`, [heads * hd, D], droppedQ, false);
    zeroBlocks(`${p}.q.bias`, [heads * hd], droppedQ, false);
    for (const kv of ['k', 'v']) {
      zeroBlocks(`${p}.${kv}.weight`, [kvHeads * hd, D], droppedKv, false);
      zeroBlocks(`${p}.${kv}.bias`, [kvHeads * hd], droppedKv, false);
    }
    zeroBlocks(`${p}.o.weight`, [D, heads * hd], droppedQ, true);
  });
  return { ...spec, tensors };
}
