/**
 * The search space of one block's weight masks, what every block-wise weight search (`ga`, `ga-wanda`,
 * `ga-magnitude`) searches over block l: one gene per weight of the block's prunable matrices (q k v o gate up
 * down, in mask-file order, each [out, in] row-major), one byte per gene (1 keeps the weight), matrix i's genes
 * from `offsets[i]`. A genome is written as base64 of its packed bits and cached under a sha256 key (a block of
 * a small model has tens of thousands of genes). The engine feeds are the block's weight-mask graph inputs; the
 * blocks before l (fixed) and after it (dense) are the block objective's business (blockobjective.ts).
 */
import { bitsetFromBase64, bitsetKey, bitsetToBase64, packBits, unpackBits } from '../../masks/bitset.js';
import type { PrunableMatrix } from '../../masks/weights.js';
import type { SearchSpace } from '../../search/space.js';

/** The matrices of one block, in mask-file order, and each one's first gene in the block's genome. */
export interface BlockLayout {
  layer: number;
  matrices: PrunableMatrix[];
  offsets: number[];
  genes: number;
}

export function blockLayout(matrices: readonly PrunableMatrix[], layer: number): BlockLayout {
  const ms = matrices.filter((m) => m.layer === layer);
  const offsets: number[] = [];
  let n = 0;
  for (const m of ms) {
    offsets.push(n);
    n += m.rows * m.cols;
  }
  return { layer, matrices: ms, offsets, genes: n };
}

/** The runner's weight-mask feeds of a block genome (views, not copies). */
export function blockFeeds(block: BlockLayout, genome: Uint8Array): Map<string, Uint8Array> {
  return new Map(
    block.matrices.map((m, i) => [
      m.role,
      genome.subarray(block.offsets[i], block.offsets[i] + m.rows * m.cols),
    ]),
  );
}

/** Share of a genome's genes that are 0 (pruned). */
export function offShare(g: Uint8Array): number {
  let off = 0;
  for (let i = 0; i < g.length; i++) off += g[i] ? 0 : 1;
  return g.length === 0 ? 0 : off / g.length;
}

/** The space of block `layout.layer`'s masks: its parameters are the block's prunable weights. */
export interface BlockSpace extends SearchSpace<Uint8Array> {
  readonly layout: BlockLayout;
  readonly weightRoles: readonly string[];
}

export function createBlockSpace(layout: BlockLayout): BlockSpace {
  const genes = layout.genes;
  const kept = (g: Uint8Array) => {
    let n = 0;
    for (let i = 0; i < g.length; i++) n += g[i] ? 1 : 0;
    return n;
  };
  return {
    layout,
    unit: 'weights',
    genes,
    totalParameters: genes,
    weightRoles: layout.matrices.map((m) => m.role),
    encode: (g) => bitsetToBase64(packBits(g)),
    decode: (text) => {
      try {
        return unpackBits(bitsetFromBase64(text, genes));
      } catch {
        return undefined;
      }
    },
    key: (g) => bitsetKey(packBits(g)),
    full: () => new Uint8Array(genes).fill(1),
    isFull: (g) => kept(g) === genes,
    sparsity: offShare,
    keptParameters: kept,
    masks: (g) => ({ weightMasks: blockFeeds(layout, g) }),
  };
}
