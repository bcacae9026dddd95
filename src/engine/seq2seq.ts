/**
 * The generation sessions of an encoder-decoder (arch/decoding.ts `Seq2SeqSteps`): the encoder graph and the
 * decoder step graph of graph/encdec.ts, each one ONNX Runtime session, fed what a candidate's masks say (head
 * mask, weight masks) and the KV cache between steps (an empty one on the first step, then each step's present.*
 * as the next step's past_key_values.*).
 */
import type { CandidateMasks, Seq2SeqCache, Seq2SeqSteps } from '../arch/decoding.js';
import type { GenerationGraphs } from '../arch/descriptor.js';
import { headMaskShape } from '../arch/registry.js';
import { encdecOf, type ModelSpec } from '../model/spec.js';
import { createEngine, type Engine, type EngineOptions, type Feed } from './session.js';

export interface Seq2SeqSessions extends Seq2SeqSteps {
  readonly encoder: Engine;
  readonly decoder: Engine;
  release(): Promise<void>;
}

export async function createSeq2SeqSessions(
  spec: ModelSpec,
  graphs: GenerationGraphs,
  opts: EngineOptions & { weightMasks?: readonly string[] },
): Promise<Seq2SeqSessions> {
  const c = spec.config;
  const e = encdecOf(c);
  const engineOpts: EngineOptions = { device: opts.device, threads: opts.threads, dtype: opts.dtype };
  const encoder = await createEngine(graphs.encoder, engineOpts);
  let decoder: Engine;
  try {
    decoder = await createEngine(graphs.step, engineOpts);
  } catch (err) {
    await encoder.release();
    throw err;
  }
  const [rows, maxHeads] = headMaskShape(c);
  const onesHead = new Float32Array(rows * maxHeads).fill(1);
  const onesWeight = new Map<string, Uint8Array>();

  /** head_mask and mask.<role> feeds for the inputs a graph has. */
  const maskFeeds = (engine: Engine, masks: CandidateMasks = {}): Record<string, Feed> => {
    const inputs = new Set(engine.inputNames);
    const feeds: Record<string, Feed> = {};
    if (inputs.has('head_mask')) {
      const m = masks.headMask ?? onesHead;
      if (m.length !== onesHead.length) {
        throw new Error(`head mask has ${m.length} entries, model needs ${onesHead.length}`);
      }
      feeds.head_mask = { type: 'float32', dims: [rows, maxHeads], data: m };
    }
    for (const role of opts.weightMasks ?? []) {
      if (!inputs.has(`mask.${role}`)) continue;
      const shape = spec.tensors.get(role)!.shape;
      let m = masks.weightMasks?.get(role);
      if (!m) {
        m = onesWeight.get(role) ?? new Uint8Array(shape.reduce((a, b) => a * b, 1)).fill(1);
        onesWeight.set(role, m);
      }
      feeds[`mask.${role}`] = { type: 'bool', dims: shape, data: m };
    }
    return feeds;
  };

  const decoderLayers = c.numLayers - e.encoderLayers;
  const emptyCache = (batch: number): Record<string, Feed> => {
    const feeds: Record<string, Feed> = {};
    for (let d = 0; d < decoderLayers; d++) {
      for (const kind of ['key', 'value']) {
        feeds[`past_key_values.${d}.decoder.${kind}`] = {
          type: 'float32',
          dims: [batch, c.headsPerLayer[e.encoderLayers + d], 0, c.headDim],
          data: new Float32Array(0),
        };
        feeds[`past_key_values.${d}.encoder.${kind}`] = {
          type: 'float32',
          dims: [batch, e.crossHeadsPerLayer[d], 0, c.headDim],
          data: new Float32Array(0),
        };
      }
    }
    return feeds;
  };

  return {
    encoder,
    decoder,
    async encode(batch, masks) {
      const dims = [batch.batch, batch.seq];
      const out = await encoder.run({
        input_ids: { type: 'int64', dims, data: batch.ids },
        attention_mask: { type: 'int64', dims, data: batch.attentionMask },
        ...maskFeeds(encoder, masks),
      });
      return out.last_hidden_state.data;
    },
    async step(input, masks) {
      const { batch, srcSeq } = input;
      const past: Record<string, Feed> = {};
      if (input.cache) {
        for (const [name, t] of Object.entries(input.cache)) {
          past[name.replace(/^present\./, 'past_key_values.')] = {
            type: 'float32',
            dims: t.dims,
            data: t.data,
          };
        }
      }
      const out = await decoder.run({
        input_ids: { type: 'int64', dims: [batch, input.newTokens], data: input.ids },
        encoder_attention_mask: { type: 'int64', dims: [batch, srcSeq], data: input.attentionMask },
        encoder_hidden_states: {
          type: 'float32',
          dims: [batch, srcSeq, c.hiddenSize],
          data: input.encoderHidden,
        },
        use_cache_branch: { type: 'bool', dims: [1], data: Uint8Array.of(input.cache ? 1 : 0) },
        ...(input.cache ? past : emptyCache(batch)),
        ...maskFeeds(decoder, masks),
      });
      const cache: Seq2SeqCache = {};
      for (const [name, t] of Object.entries(out)) if (name.startsWith('present.')) cache[name] = t;
      return { logits: out.logits.data, cache };
    },
    async release() {
      await encoder.release();
      await decoder.release();
    },
  };
}
