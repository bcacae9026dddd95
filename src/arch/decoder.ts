/**
 * The decoder kind: causal language models (LLaMA family, GPT-2, Gemma). One head stack `layers`; the graph is
 * graph/decoder.ts, exported with its KV cache for transformers.js, and generation decodes on it.
 */
import { blockSpec } from '../graph/blocks.js';
import { CAPTURE_POINTS, rolesOfCapturePoint } from '../graph/capture.js';
import { buildDecoderGraph, type DecoderGraphOptions } from '../graph/decoder.js';
import { kvMapOfLayer } from '../model/spec.js';
import type { ArchDescriptor } from './descriptor.js';
import { generate } from './generate.js';
import { greedyDecodeBatch } from './greedy.js';

export const DECODER: ArchDescriptor = {
  kind: 'decoder',
  languageModel: true,
  lmData: 'stream',
  buildGraph(spec, weights, opts) {
    if (opts.output === 'class_logits') {
      throw new Error(`decoder graph: output 'class_logits' needs an encoder with a classification head`);
    }
    return buildDecoderGraph(spec, weights, opts as DecoderGraphOptions);
  },
  outputName(output) {
    return output === 'last_logits' || output === 'row_logits' || output === 'class_logits'
      ? 'logits'
      : output;
  },
  // A decoder's evaluation graphs take no padding mask (right padding is invisible under causal attention).
  feedBatch: () => ({}),
  headStacks(config) {
    return [
      {
        name: 'layers',
        headsPerLayer: config.headsPerLayer,
        firstMaskRow: 0,
        kvMap: (l) => kvMapOfLayer(config, l),
        rolePrefix: (l) => `layers.${l}.attn`,
      },
    ];
  },
  headlessAttention: 'bias',
  capturePoints: CAPTURE_POINTS,
  rolesOfCapturePoint,
  blockSpec,
  lastBlockOutput: () => 'nll',
  export: {
    deployGraph: (spec, weights, opts = {}) =>
      buildDecoderGraph(spec, weights, { output: 'logits', kvCache: true, ...opts }),
    generationConfig: true,
    compactHeadlessLayer: true,
  },
  decode: { generate, greedyBatch: greedyDecodeBatch },
};
