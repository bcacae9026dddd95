/** The tiny random models the export safety tests write: the layer count tells the old export from the new. */
import { randomLlamaSpec } from '../../src/model/random.js';
import type { ModelSpec } from '../../src/model/spec.js';

export function tinySpec(layers: number): ModelSpec {
  return randomLlamaSpec({
    hiddenSize: 16,
    numLayers: layers,
    numHeads: 2,
    numKvHeads: 1,
    intermediateSize: 8,
    vocabSize: 11,
    maxPositions: 8,
    seed: 100 + layers,
  });
}
