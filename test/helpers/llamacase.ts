/**
 * The small random LLaMA-kind decoder the graph and head-pruning tests (test/graph/blocks.test.ts,
 * decoder.test.ts, test/prune/heads.test.ts) build from one row of their case tables: head_dim 8, an MLP of 40,
 * a vocabulary of 37 and 32 positions, with the row's heads, KV heads, biases, tying and model type.
 */
import { randomLlamaSpec } from '../../src/model/random.js';
import type { ModelSpec } from '../../src/model/spec.js';

/** One row of a case table: query heads (4 unless given) and KV heads, tied head, attention biases, model type. */
export interface DecoderCase {
  heads?: number;
  kv: number;
  tie: boolean;
  bias: boolean;
  modelType?: string;
}

/** The decoder of case `c` with `numLayers` layers, its weights drawn from `seed` at `scale`. */
export function caseDecoder(c: DecoderCase, numLayers: number, seed: number, scale: number): ModelSpec {
  const heads = c.heads ?? 4;
  return randomLlamaSpec({
    hiddenSize: heads * 8,
    numLayers,
    numHeads: heads,
    numKvHeads: c.kv,
    intermediateSize: 40,
    vocabSize: 37,
    maxPositions: 32,
    attentionBias: c.bias,
    tieEmbeddings: c.tie,
    modelType: c.modelType,
    seed,
    scale,
  });
}
