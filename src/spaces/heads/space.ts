/**
 * The head search space: one gene per query head present in the model, layer-major (`masks/heads.ts` states
 * the order), 1 keeps the head. Genomes are written as 0/1 strings, the text head runs have always logged
 * (40 genes for stories260K; even a 1B model has a few hundred heads). The cost is the parameters a physical
 * removal keeps, and the engine feed is the head_mask input.
 */

import { type Genome, geneCount, headMaskOf, keptHeads, sparsity } from '../../masks/heads.js';
import { removedHeadParameters } from '../../model/cost.js';
import type { ModelConfig } from '../../model/spec.js';
import { bitStringCodec } from '../../search/codec.js';
import type { SearchSpace } from '../../search/space.js';

export interface HeadSpace extends SearchSpace<Genome> {
  readonly config: ModelConfig;
}

export function createHeadSpace(config: ModelConfig, totalParameters: number): HeadSpace {
  const genes = geneCount(config);
  return {
    ...bitStringCodec(genes),
    unit: 'heads',
    config,
    genes,
    totalParameters,
    full: () => new Uint8Array(genes).fill(1),
    isFull: (g) => g.every((gene) => gene === 1),
    sparsity,
    keptParameters: (g) => keptParameters(config, g, totalParameters),
    masks: (g) => ({ headMask: headMaskOf(config, g) }),
  };
}

/**
 * Parameters the physically pruned model keeps: per removed query head, its q rows and o columns; per removed
 * KV head, its k and v rows (biases included where present).
 */
export function keptParameters(config: ModelConfig, g: Genome, totalParameters: number): number {
  const { query, kv } = keptHeads(config, g);
  return totalParameters - removedHeadParameters(config, query, kv);
}
