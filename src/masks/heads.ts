/**
 * Head masks, and the head genomes the head search evolves (the same bits). A genome is the concatenation of the
 * architecture's named head stacks (arch/ `headStacks`: `layers` for decoders and encoders), each layer-major;
 * one gene per query head *present* in the model: the genes of head layer l (the l-th layer over all stacks, in
 * order) start at Σ_{j<l} heads[j], and gene offset(l) + h is the h-th head present in that layer. For an unpruned
 * model of one stack that is gene = layer × heads + head; in a physically pruned one a layer has as many genes as
 * heads left (a head-less layer none), so every gene has a head behind it. 1 keeps the head, 0 removes it (the
 * paper's convention).
 *
 * GQA: a KV head is removed exactly when every query head that reads it is removed.
 */
import { archOf } from '../arch/registry.js';
import { GenepruneError } from '../errors.js';
import type { ModelConfig } from '../model/spec.js';

export type Genome = Uint8Array;

/** One layer of a head stack, as a genome sees it. */
export interface HeadLayer {
  /** The stack's name, and the layer's index inside the stack. */
  stack: string;
  layer: number;
  /** Its row of the graph's head_mask input. */
  row: number;
  /** Query heads present. */
  heads: number;
  /** Each query head's KV head. */
  kvMap(): readonly number[];
  /** The tensor-role prefix of its attention (`layers.3.attn`, `layers.4.cross`). */
  rolePrefix: string;
}

/** Every head layer of the model, in gene order (stack after stack). */
export function headLayers(config: ModelConfig): HeadLayer[] {
  return archOf(config)
    .headStacks(config)
    .flatMap((s) =>
      s.headsPerLayer.map((heads, layer) => ({
        stack: s.name,
        layer,
        row: s.firstMaskRow + layer,
        heads,
        kvMap: () => s.kvMap(layer),
        rolePrefix: s.rolePrefix(layer),
      })),
    );
}

/** The first gene of each head layer, plus the gene count at the end (head layers + 1 entries). */
export function geneOffsets(config: ModelConfig): number[] {
  const offsets = [0];
  for (const [l, hl] of headLayers(config).entries()) offsets.push(offsets[l] + hl.heads);
  return offsets;
}

export function geneCount(config: ModelConfig): number {
  const offsets = geneOffsets(config);
  return offsets[offsets.length - 1];
}

export function geneIndex(config: ModelConfig, layer: number, head: number): number {
  const heads = headLayers(config)[layer]?.heads;
  if (!(heads !== undefined && head >= 0 && head < heads)) {
    throw new GenepruneError('internal', `layer ${layer} has no head ${head} (it has ${heads})`);
  }
  return geneOffsets(config)[layer] + head;
}

/** [layer, head] of a gene (the layer counted over all stacks). */
export function headOfGene(config: ModelConfig, gene: number): [number, number] {
  const offsets = geneOffsets(config);
  const layers = offsets.length - 1;
  let l = 0;
  while (l < layers - 1 && gene >= offsets[l + 1]) l++;
  return [l, gene - offsets[l]];
}

export function keptCount(g: Genome): number {
  let n = 0;
  for (let i = 0; i < g.length; i++) n += g[i];
  return n;
}

/** Share of heads removed, in [0, 1]. */
export function sparsity(g: Genome): number {
  return 1 - keptCount(g) / g.length;
}

/** The engine's head_mask feed [rows * maxHeads] for a genome. */
export function headMaskOf(config: ModelConfig, g: Genome): Float32Array {
  const layers = headLayers(config);
  const maxHeads = Math.max(...layers.map((hl) => hl.heads));
  const rows = Math.max(...layers.map((hl) => hl.row)) + 1;
  const offsets = geneOffsets(config);
  const mask = new Float32Array(rows * maxHeads).fill(1);
  for (const [l, hl] of layers.entries()) {
    for (let h = 0; h < hl.heads; h++) mask[hl.row * maxHeads + h] = g[offsets[l] + h];
  }
  return mask;
}

export interface HeadCounts {
  /** Query heads kept per head layer. */
  query: number[];
  /** KV heads kept per head layer (a KV head stays while any query head reading it stays). */
  kv: number[];
}

export function keptHeads(config: ModelConfig, g: Genome): HeadCounts {
  const query: number[] = [];
  const kv: number[] = [];
  const offsets = geneOffsets(config);
  for (const [l, hl] of headLayers(config).entries()) {
    const map = hl.kvMap();
    const usedKv = new Set<number>();
    let q = 0;
    for (let h = 0; h < map.length; h++) {
      if (g[offsets[l] + h]) {
        q++;
        usedKv.add(map[h]);
      }
    }
    query.push(q);
    kv.push(usedKv.size);
  }
  return { query, kv };
}

/**
 * Human-readable list of removed heads, `L:H` (for logs and flags); a head of a stack other than `layers` reads
 * `stack.L:H`.
 */
export function removedList(config: ModelConfig, g: Genome): string[] {
  const out: string[] = [];
  const offsets = geneOffsets(config);
  for (const [l, hl] of headLayers(config).entries()) {
    const name = hl.stack === 'layers' ? `${hl.layer}` : `${hl.stack}.${hl.layer}`;
    for (let h = 0; h < hl.heads; h++) if (!g[offsets[l] + h]) out.push(`${name}:${h}`);
  }
  return out;
}
