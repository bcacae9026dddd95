/**
 * One entry point from a spec to its evaluation graph: the decoder builder for causal language models, the
 * encoder builder for bidirectional encoders, chosen by the spec's `arch`. The options are the chosen builder's;
 * an output mode of the other kind is refused in one line.
 */
import type { ModelSpec } from '../model/spec.js';
import type { EncodedModel } from './builder.js';
import { buildDecoderGraph, type DecoderGraphOptions } from './decoder.js';
import { buildEncoderGraph, type EncoderGraphOptions } from './encoder.js';
import type { Weights } from './weights.js';

export type GraphOptions = DecoderGraphOptions | EncoderGraphOptions;

const ENCODER_OUTPUTS: readonly string[] = ['hidden', 'class_logits'];

export function buildGraph(spec: ModelSpec, weights: Weights, opts: GraphOptions): EncodedModel {
  if ((spec.config.arch ?? 'decoder') === 'encoder') {
    if (!ENCODER_OUTPUTS.includes(opts.output)) {
      throw new Error(
        `encoder graph: output '${opts.output}' is not one it builds (${ENCODER_OUTPUTS.map((o) => `'${o}'`).join(', ')})`,
      );
    }
    return buildEncoderGraph(spec, weights, opts as EncoderGraphOptions);
  }
  if (opts.output === 'class_logits') {
    throw new Error(`decoder graph: output 'class_logits' needs an encoder with a classification head`);
  }
  return buildDecoderGraph(spec, weights, opts as DecoderGraphOptions);
}
