/**
 * The encoder kind: bidirectional encoders (BERT, RoBERTa, DistilBERT), bare or with a sequence-classification
 * head. One head stack `layers`; the graph is graph/encoder.ts, fed a padding mask and token types; an export
 * writes its deployment graph; nothing generates from it.
 */
import { blockSpec } from '../graph/blocks.js';
import { CAPTURE_POINTS, rolesOfCapturePoint } from '../graph/capture.js';
import { buildEncoderGraph, type EncoderGraphOptions } from '../graph/encoder.js';
import { kvMapOfLayer } from '../model/spec.js';
import type { ArchDescriptor, BatchFeed } from './descriptor.js';

const ENCODER_OUTPUTS: readonly string[] = ['hidden', 'class_logits'];

function checkIds(ids: BigInt64Array, vocab: number, what: string): void {
  const v = BigInt(vocab);
  for (let i = 0; i < ids.length; i++) {
    if (ids[i] < 0n || ids[i] >= v) {
      throw new Error(`${what} ${ids[i]} at position ${i} is outside the model's vocabulary of ${vocab}`);
    }
  }
}

export const ENCODER: ArchDescriptor = {
  kind: 'encoder',
  languageModel: false,
  lmData: 'stream',
  buildGraph(spec, weights, opts) {
    if (!ENCODER_OUTPUTS.includes(opts.output)) {
      throw new Error(
        `encoder graph: output '${opts.output}' is not one it builds (${ENCODER_OUTPUTS.map((o) => `'${o}'`).join(', ')})`,
      );
    }
    return buildEncoderGraph(spec, weights, opts as EncoderGraphOptions);
  },
  // The whole model names its hidden output as transformers.js does; its blocks say 'hidden'.
  outputName(output, layers, numLayers) {
    if (output === 'last_logits' || output === 'row_logits' || output === 'class_logits') return 'logits';
    return output === 'hidden' && layers[1] === numLayers ? 'last_hidden_state' : output;
  },
  feedBatch(spec, batch, graphInputs) {
    const feeds: Record<string, BatchFeed> = {};
    const tokens = batch.batch * batch.seq;
    if (graphInputs.has('attention_mask')) {
      const m = batch.attentionMask ?? new BigInt64Array(tokens).fill(1n);
      if (m.length !== tokens) throw new Error(`attention mask has ${m.length} entries, batch has ${tokens}`);
      feeds.attention_mask = { type: 'int64', dims: [batch.batch, batch.seq], data: m };
    }
    if (graphInputs.has('token_type_ids')) {
      const t = batch.typeIds ?? new BigInt64Array(tokens);
      if (t.length !== tokens)
        throw new Error(`token type ids have ${t.length} entries, batch has ${tokens}`);
      checkIds(t, spec.config.typeVocabSize ?? 0, 'token type id');
      feeds.token_type_ids = { type: 'int64', dims: [batch.batch, batch.seq], data: t };
    }
    return feeds;
  },
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
  lastBlockOutput: (config) => (config.classifier ? 'class_logits' : 'hidden'),
  export: {
    deployGraph: (spec, weights, opts = {}) =>
      buildEncoderGraph(spec, weights, {
        output: spec.config.classifier ? 'class_logits' : 'hidden',
        deploy: true,
        ...opts,
      }),
    generationConfig: false,
    compactHeadlessLayer: false,
  },
};
