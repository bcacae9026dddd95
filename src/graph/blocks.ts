/**
 * Block graphs: a graph may run layers from … to−1 only, so a layer-wise walk (engine/blocks.ts) starts from
 * cached hidden states instead of recomputing the layers before. This module owns the range itself and the part
 * of a spec a block reads; the builders own the block's inputs and outputs (hidden_in, 'hidden').
 */
import type { ModelSpec } from '../model/spec.js';

/** A graph's layer range [from, to), checked (default all layers). */
export function layerRange(numLayers: number, layers?: readonly [number, number]): [number, number] {
  if (!layers) return [0, numLayers];
  const [from, to] = layers;
  if (!Number.isInteger(from) || !Number.isInteger(to) || from < 0 || to > numLayers || from >= to) {
    throw new Error(
      `decoder graph: layer range [${from}, ${to}) is not inside the model's ${numLayers} layers`,
    );
  }
  return [from, to];
}

/**
 * The spec restricted to the tensors a block graph [from, to) reads: its layers' weights, the embedding when it
 * starts at layer 0 (or ends with a tied head), the final norm and head when it ends at the last layer. Preparing
 * weights from it keeps a one-layer block from loading the whole model.
 */
export function blockSpec(spec: ModelSpec, layers?: readonly [number, number]): ModelSpec {
  const L = spec.config.numLayers;
  const [from, to] = layerRange(L, layers);
  if (from === 0 && to === L) return spec;
  const keep = (role: string): boolean => {
    const m = /^layers\.(\d+)\./.exec(role);
    if (m) return Number(m[1]) >= from && Number(m[1]) < to;
    if (role === 'embed.tokens') return from === 0 || (to === L && spec.config.tieEmbeddings);
    if (role.startsWith('embed.')) return from === 0; // positions, token types, embedding norm
    return to === L;
  };
  return { ...spec, tensors: new Map([...spec.tensors].filter(([role]) => keep(role))) };
}
