/**
 * The random LLaMA shapes the benchmarks run at (`randomLlamaSpec` draws the weights: speed does not depend on
 * them). Only bench/ uses them, so they live here rather than in the shipped package.
 */

/** The ~100M-parameter LLaMA shape the speed benchmarks use (134M with the untied 32k vocabulary). */
export const BENCH_LLAMA_SHAPE = {
  hiddenSize: 768,
  numLayers: 12,
  numHeads: 12,
  numKvHeads: 12,
  intermediateSize: 2048,
  vocabSize: 32000,
} as const;

/** A shape small enough for the benchmarks' smoke tests (`npm run bench -- --quick`): seconds, not minutes. */
export const TINY_LLAMA_SHAPE = {
  hiddenSize: 64,
  numLayers: 2,
  numHeads: 4,
  numKvHeads: 4,
  intermediateSize: 128,
  vocabSize: 512,
} as const;
