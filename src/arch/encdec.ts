/**
 * The encoder-decoder kind (T5 v1.0, T5 v1.1 / Flan-T5, CodeT5): three head stacks in gene order — `encoder`
 * (head_mask rows 0 … E−1), `decoder` (rows E … L−1: the decoder blocks' self-attention) and `cross` (rows
 * L … L+Dd−1: each decoder block's cross-attention) — the teacher-forced evaluation graph of graph/encdec.ts fed
 * the source's padding mask and the decoder input ids, and generation on its own graphs (the encoder once, then
 * decoder steps on a KV cache; arch/seq2seq.ts).
 */
import { layerRange } from '../graph/blocks.js';
import { CAPTURE_POINTS, CROSS_CAPTURE_POINTS, rolesOfCapturePoint } from '../graph/capture.js';
import {
  buildEncDecEncoderGraph,
  buildEncDecGraph,
  buildEncDecStepGraph,
  ENCDEC_OUTPUTS,
  type EncDecGraphOptions,
} from '../graph/encdec.js';
import type { GraphOutputMode } from '../graph/lmhead.js';
import { IGNORE_INDEX } from '../graph/lmhead.js';
import { encdecOf, type ModelSpec } from '../model/spec.js';
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

/**
 * The tensors a block graph [from, to) reads: its layers; the shared embedding when it embeds source ids
 * (from 0), decoder ids (from ≤ E < to) or ends with a tied head; each stack's bias table when it runs a layer of
 * that stack; encoder_norm when it reaches the encoder's end; final_norm and lm_head when it ends at the last layer.
 */
function encdecBlockSpec(spec: ModelSpec, layers?: readonly [number, number]): ModelSpec {
  const c = spec.config;
  const L = c.numLayers;
  const E = encdecOf(c).encoderLayers;
  const [from, to] = layerRange(L, layers);
  if (from === 0 && to === L) return spec;
  const keep = (role: string): boolean => {
    const m = /^layers\.(\d+)\./.exec(role);
    if (m) return Number(m[1]) >= from && Number(m[1]) < to;
    switch (role) {
      case 'embed.tokens':
        return from === 0 || (from <= E && to > E) || (to === L && c.tieEmbeddings);
      case 'rel_bias.encoder.weight':
        return from < E;
      case 'rel_bias.decoder.weight':
        return to > E;
      case 'encoder_norm.weight':
        return from < E && to >= E;
      default:
        return to === L; // final_norm, lm_head
    }
  };
  return { ...spec, tensors: new Map([...spec.tensors].filter(([role]) => keep(role))) };
}

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
  // 'hidden' of the whole model is the final encoder output, named as transformers.js names an encoder's;
  // a block's is 'hidden'.
  outputName(output, layers, numLayers) {
    if (output === 'last_logits' || output === 'row_logits') return 'logits';
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
    const D = spec.config.hiddenSize;
    // Block graphs: a block of decoder layers reads the final encoder output, and its hidden_in is over decoder
    // positions; a block inside the encoder has hidden_in over source positions.
    const decoderBlock = graphInputs.has('encoder_hidden_states');
    const tgt = batch.decoderSeq ?? 0;
    const float = (name: string, data: Float32Array | undefined, seq: number, what: string) => {
      if (!graphInputs.has(name)) return;
      if (data?.length !== batch.batch * seq * D) {
        throw new Error(
          `this block needs ${what} [${batch.batch}, ${seq}, ${D}], got ${data ? data.length : 'none'} values`,
        );
      }
      feeds[name] = { type: 'float32', dims: [batch.batch, seq, D], data };
    };
    float(
      'encoder_hidden_states',
      batch.encoderHidden,
      batch.seq,
      'the final encoder output (encoderHidden)',
    );
    float(
      'hidden_in',
      batch.hidden,
      decoderBlock ? tgt : batch.seq,
      decoderBlock ? 'decoder hidden states' : 'encoder hidden states',
    );
    if (graphInputs.has('token_weight')) {
      // Source positions count by the caller's weights, else by the padding mask (padding counts 0). A pair
      // batch's `valid` (metrics/perplexity.ts batches()) marks decoder positions, so a batch with decoder ids
      // counts its source by the attention mask.
      let weight = batch.tokenWeight;
      if (!weight) {
        weight = new Float32Array(tokens).fill(1);
        const m = batch.decoderIds ? batch.attentionMask : (batch.valid ?? batch.attentionMask);
        if (m) for (let i = 0; i < tokens; i++) weight[i] = Number(m[i]) ? 1 : 0;
      }
      if (weight.length !== tokens)
        throw new Error(`token weights have ${weight.length} entries, batch has ${tokens}`);
      feeds.token_weight = { type: 'float32', dims: [batch.batch, batch.seq], data: weight };
    }
    if (graphInputs.has('decoder_token_weight')) {
      const n = batch.batch * tgt;
      let weight = batch.decoderTokenWeight;
      if (!weight) {
        weight = new Float32Array(n).fill(1);
        const t = batch.targets;
        if (t) for (let i = 0; i < n; i++) weight[i] = t[i] === BigInt(IGNORE_INDEX) ? 0 : 1;
      }
      if (weight.length !== n)
        throw new Error(`decoder token weights have ${weight.length} entries, batch has ${n}`);
      feeds.decoder_token_weight = { type: 'float32', dims: [batch.batch, tgt], data: weight };
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
        rolePrefix: (l) => `layers.${l}.attn`,
      },
      {
        name: 'decoder',
        headsPerLayer: config.headsPerLayer.slice(E, L),
        firstMaskRow: E,
        kvMap: (l) => identity(config.headsPerLayer[E + l]),
        rolePrefix: (l) => `layers.${E + l}.attn`,
      },
      {
        name: 'cross',
        headsPerLayer: e.crossHeadsPerLayer,
        firstMaskRow: L,
        kvMap: (l) => identity(e.crossHeadsPerLayer[l]),
        rolePrefix: (l) => `layers.${E + l}.cross`,
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
  blockSpec: encdecBlockSpec,
  secondStackStart: (config) => encdecOf(config).encoderLayers,
  blockStacks(config) {
    const E = encdecOf(config).encoderLayers;
    return [
      { name: 'encoder', first: 0, count: E },
      { name: 'decoder', first: E, count: config.numLayers - E },
    ];
  },
  lastBlockOutput: () => 'nll',
  export: {
    deployGraph() {
      throw new Error(
        'an encoder-decoder export writes two graphs (encoder_model.onnx, decoder_model_merged.onnx): generationGraphs with deploy',
      );
    },
    generationConfig: true,
    // No compact T5 loads in stock transformers at all (its attention sizes come from num_heads): the compact
    // folder is geneprune's, which runs a layer of zero heads (so do the exported ONNX graphs).
    compactHeadlessLayer: true,
  },
  generationGraphs(spec, weights, opts) {
    return {
      encoder: buildEncDecEncoderGraph(spec, weights, opts),
      step: buildEncDecStepGraph(spec, weights, opts),
    };
  },
  decode: SEQ2SEQ_DECODE,
};
