/**
 * The encoder-decoder kind (T5 v1.0, T5 v1.1 / Flan-T5, CodeT5): three head stacks in gene order — `encoder`
 * (head_mask rows 0 … E−1), `decoder` (rows E … L−1: the decoder blocks' self-attention) and `cross` (rows
 * L … L+Dd−1: each decoder block's cross-attention) — the teacher-forced evaluation graph of graph/encdec.ts fed
 * the source's padding mask and the decoder input ids, and generation on its own graphs (the encoder once, then
 * decoder steps on a KV cache; arch/seq2seq.ts).
 */
import { blockSpec } from '../graph/blocks.js';
import { CAPTURE_POINTS, CROSS_CAPTURE_POINTS, rolesOfCapturePoint } from '../graph/capture.js';
import {
  buildEncDecEncoderGraph,
  buildEncDecGraph,
  buildEncDecStepGraph,
  ENCDEC_OUTPUTS,
  type EncDecGraphOptions,
} from '../graph/encdec.js';
import type { GraphOutputMode } from '../graph/lmhead.js';
import { encdecOf } from '../model/spec.js';
import type { ArchDescriptor, BatchFeed } from './descriptor.js';
import { SEQ2SEQ_DECODE } from './seq2seq.js';

function checkIds(ids: BigInt64Array, vocab: number, what: string): void {
  const v = BigInt(vocab);
  for (let i = 0; i < ids.length; i++) {
    if (ids[i] < 0n || ids[i] >= v) {
      throw new Error(`${what} ${ids[i]} at position ${i} is outside the model's vocabulary of ${vocab}`);
    }
  }
}

const identity = (n: number): number[] => Array.from({ length: n }, (_, h) => h);

export const ENCDEC: ArchDescriptor = {
  kind: 'encdec',
  languageModel: true,
  lmData: 'pairs',
  buildGraph(spec, weights, opts) {
    if (!ENCDEC_OUTPUTS.includes(opts.output as GraphOutputMode)) {
      throw new Error(
        `encoder-decoder graph: output '${opts.output}' is not one it builds (${ENCDEC_OUTPUTS.map((o) => `'${o}'`).join(', ')})`,
      );
    }
    return buildEncDecGraph(spec, weights, opts as EncDecGraphOptions);
  },
  // 'hidden' is the final encoder output, named as transformers.js names an encoder's.
  outputName(output) {
    if (output === 'last_logits' || output === 'row_logits') return 'logits';
    return output === 'hidden' ? 'last_hidden_state' : output;
  },
  feedBatch(spec, batch, graphInputs) {
    const feeds: Record<string, BatchFeed> = {};
    const tokens = batch.batch * batch.seq;
    if (graphInputs.has('attention_mask')) {
      const m = batch.attentionMask ?? new BigInt64Array(tokens).fill(1n);
      if (m.length !== tokens) throw new Error(`attention mask has ${m.length} entries, batch has ${tokens}`);
      feeds.attention_mask = { type: 'int64', dims: [batch.batch, batch.seq], data: m };
    }
    if (graphInputs.has('decoder_input_ids')) {
      const ids = batch.decoderIds;
      const seq = batch.decoderSeq;
      if (!ids || seq === undefined) {
        throw new Error('an encoder-decoder batch needs decoder input ids (decoderIds, decoderSeq)');
      }
      if (ids.length !== batch.batch * seq) {
        throw new Error(`decoder input ids have ${ids.length} entries, batch has ${batch.batch * seq}`);
      }
      checkIds(ids, spec.config.vocabSize, 'decoder input id');
      feeds.decoder_input_ids = { type: 'int64', dims: [batch.batch, seq], data: ids };
    }
    return feeds;
  },
  headStacks(config) {
    const e = encdecOf(config);
    const L = config.numLayers;
    const E = e.encoderLayers;
    return [
      {
        name: 'encoder',
        headsPerLayer: config.headsPerLayer.slice(0, E),
        firstMaskRow: 0,
        kvMap: (l) => identity(config.headsPerLayer[l]),
      },
      {
        name: 'decoder',
        headsPerLayer: config.headsPerLayer.slice(E, L),
        firstMaskRow: E,
        kvMap: (l) => identity(config.headsPerLayer[E + l]),
      },
      {
        name: 'cross',
        headsPerLayer: e.crossHeadsPerLayer,
        firstMaskRow: L,
        kvMap: (l) => identity(e.crossHeadsPerLayer[l]),
      },
    ];
  },
  // T5 has no o bias: a layer without heads adds nothing, which is what the masked model computes.
  headlessAttention: 'bias',
  // Decoder blocks' forward order; encoder blocks have no cross points.
  capturePoints: [
    CAPTURE_POINTS[0],
    CAPTURE_POINTS[1],
    ...CROSS_CAPTURE_POINTS,
    CAPTURE_POINTS[2],
    CAPTURE_POINTS[3],
  ],
  rolesOfCapturePoint,
  blockSpec,
  lastBlockOutput: () => 'nll',
  export: {
    deployGraph() {
      throw new Error(
        'an encoder-decoder export writes two graphs (encoder_model.onnx, decoder_model_merged.onnx): generationGraphs with deploy',
      );
    },
    generationConfig: true,
    // Not checked against transformers' T5 yet: the export pads such layers (the safe answer).
    compactHeadlessLayer: false,
  },
  generationGraphs(spec, weights, opts) {
    return {
      encoder: buildEncDecEncoderGraph(spec, weights, opts),
      step: buildEncDecStepGraph(spec, weights, opts),
    };
  },
  decode: SEQ2SEQ_DECODE,
};
