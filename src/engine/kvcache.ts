/** Feeds for the KV-cache (deployment) graph: an empty cache, and the next step's cache from a step's outputs. */
import type { ModelConfig } from '../model/spec.js';
import type { Feed, Output } from './session.js';

/** `past_key_values.{i}.key/value` of length 0: [batch, kvHeads_i, 0, headDim]. */
export function emptyPastFeeds(config: ModelConfig, batch: number): Record<string, Feed> {
  const feeds: Record<string, Feed> = {};
  config.kvHeadsPerLayer.forEach((kv, i) => {
    for (const kind of ['key', 'value']) {
      feeds[`past_key_values.${i}.${kind}`] = {
        type: 'float32',
        dims: [batch, kv, 0, config.headDim],
        data: new Float32Array(0),
      };
    }
  });
  return feeds;
}

/** The cache for the next step: each `present.{i}.*` output fed back as `past_key_values.{i}.*`. */
export function pastFromPresent(config: ModelConfig, outputs: Record<string, Output>): Record<string, Feed> {
  const feeds: Record<string, Feed> = {};
  for (let i = 0; i < config.numLayers; i++) {
    for (const kind of ['key', 'value']) {
      const t = outputs[`present.${i}.${kind}`];
      feeds[`past_key_values.${i}.${kind}`] = { type: 'float32', dims: t.dims, data: t.data };
    }
  }
  return feeds;
}
