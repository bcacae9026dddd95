/**
 * Head masks, and the head genomes the head search evolves (the same bits). One gene per query head *present* in the model, layer-major: the genes of layer l start at
 * Σ_{j<l} headsPerLayer[j], and gene offset(l) + h is the h-th head present in layer l. For an unpruned model
 * that is gene = layer × heads + head; in a physically pruned one a layer has as many genes as heads left (a
 * head-less layer none), so every gene has a head behind it. 1 keeps the head, 0 removes it (the paper's
 * convention).
 *
 * GQA: a KV head is removed exactly when every query head that reads it is removed.
 */
import { GenepruneError } from '../errors.js';
import type { ModelConfig } from '../model/spec.js';
import { kvMapOfLayer } from '../model/spec.js';

export type Genome = Uint8Array;

/** The first gene of each layer, plus the gene count at the end (numLayers + 1 entries). */
export function geneOffsets(config: ModelConfig): number[] {
  const offsets = [0];
  for (let l = 0; l < config.numLayers; l++) offsets.push(offsets[l] + config.headsPerLayer[l]);
  return offsets;
}

export function geneCount(config: ModelConfig): number {
  return geneOffsets(config)[config.numLayers];
}

export function geneIndex(config: ModelConfig, layer: number, head: number): number {
  if (!(head >= 0 && head < config.headsPerLayer[layer])) {
    throw new GenepruneError(
      'internal',
      `layer ${layer} has no head ${head} (it has ${config.headsPerLayer[layer]})`,
    );
  }
  return geneOffsets(config)[layer] + head;
}

/** [layer, head] of a gene. */
export function headOfGene(config: ModelConfig, gene: number): [number, number] {
  const offsets = geneOffsets(config);
  let l = 0;
  while (l < config.numLayers - 1 && gene >= offsets[l + 1]) l++;
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

/** The engine's head_mask feed [layers * maxHeads] for a genome. */
export function headMaskOf(config: ModelConfig, g: Genome): Float32Array {
  const maxHeads = Math.max(...config.headsPerLayer);
  const offsets = geneOffsets(config);
  const mask = new Float32Array(config.numLayers * maxHeads).fill(1);
  for (let l = 0; l < config.numLayers; l++) {
    for (let h = 0; h < config.headsPerLayer[l]; h++) mask[l * maxHeads + h] = g[offsets[l] + h];
  }
  return mask;
}

export interface HeadCounts {
  /** Query heads kept per layer. */
  query: number[];
  /** KV heads kept per layer (a KV head stays while any query head reading it stays). */
  kv: number[];
}

export function keptHeads(config: ModelConfig, g: Genome): HeadCounts {
  const query: number[] = [];
  const kv: number[] = [];
  const offsets = geneOffsets(config);
  for (let l = 0; l < config.numLayers; l++) {
    const map = kvMapOfLayer(config, l);
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

/** Human-readable list of removed heads, `L:H` (for logs and flags). */
export function removedList(config: ModelConfig, g: Genome): string[] {
  const out: string[] = [];
  const offsets = geneOffsets(config);
  for (let l = 0; l < config.numLayers; l++) {
    for (let h = 0; h < config.headsPerLayer[l]; h++) if (!g[offsets[l] + h]) out.push(`${l}:${h}`);
  }
  return out;
}
