/**
 * The T5 family (Hugging Face model_type t5: T5 v1.0, T5 v1.1 / Flan-T5, CodeT5 and CodeT5+ 220M in T5's layout)
 * ↔ ModelSpec: encoder-decoders (arch 'encdec', EncDecConfig in spec.ts). This file holds the roles and their
 * shapes; config.json and tensor names are mapped below them.
 */
import type { EncDecConfig, ModelConfig } from './spec.js';

/** The sizes a T5 model is made of (config.json's d_model, d_kv, num_heads, d_ff, num_layers, ...). */
export interface T5Sizes {
  modelType?: string;
  hiddenSize: number;
  headDim: number;
  numHeads: number;
  intermediateSize: number;
  encoderLayers: number;
  decoderLayers: number;
  vocabSize: number;
  relativeBuckets: number;
  relativeMaxDistance: number;
  /** v1.0 / CodeT5: 'relu' plain MLP; v1.1 / Flan-T5: gated GELU (tanh approximation). */
  feedForward: 'relu' | 'gated-gelu';
  tieEmbeddings: boolean;
  normEps: number;
  /** The longest rows the graphs accept (config n_positions; relative positions themselves have no end). */
  maxPositions: number;
  padTokenId: number;
  eosTokenId: number;
  decoderStartTokenId: number;
}

/** The ModelConfig of an unpruned T5 model of these sizes. */
export function t5ConfigOf(s: T5Sizes): ModelConfig {
  const numLayers = s.encoderLayers + s.decoderLayers;
  const encdec: EncDecConfig = {
    encoderLayers: s.encoderLayers,
    crossHeadsPerLayer: Array(s.decoderLayers).fill(s.numHeads),
    relativeBuckets: s.relativeBuckets,
    relativeMaxDistance: s.relativeMaxDistance,
    encoderBiasColumns: s.numHeads,
    decoderBiasColumns: s.numHeads,
    decoderStartTokenId: s.decoderStartTokenId,
    // transformers scales the decoder output by d_model^-0.5 exactly when the head is tied to the embedding.
    outputScale: s.tieEmbeddings ? s.hiddenSize ** -0.5 : 1,
  };
  return {
    family: 't5',
    arch: 'encdec',
    modelType: s.modelType ?? 't5',
    hiddenSize: s.hiddenSize,
    numLayers,
    numHeads: s.numHeads,
    numKvHeads: s.numHeads,
    headDim: s.headDim,
    headsPerLayer: Array(numLayers).fill(s.numHeads),
    kvHeadsPerLayer: Array(numLayers).fill(s.numHeads),
    intermediateSize: s.intermediateSize,
    vocabSize: s.vocabSize,
    maxPositions: s.maxPositions,
    normKind: 'rms',
    normPlacement: 'pre',
    normEps: s.normEps,
    activation: s.feedForward === 'relu' ? 'relu' : 'gelu_tanh',
    mlpKind: s.feedForward === 'relu' ? 'plain' : 'gated',
    positionKind: 'learned', // unused: positions enter only through the relative bias
    ropeTheta: 0,
    attentionBias: false,
    attentionOutBias: false,
    mlpBias: false,
    tieEmbeddings: s.tieEmbeddings,
    padTokenId: s.padTokenId,
    eosTokenId: s.eosTokenId,
    encdec,
  };
}

/** Every tensor role of a T5 spec with its shape, in a fixed order (embedding, encoder, decoder, head). */
export function t5RoleShapes(c: ModelConfig): Array<[string, number[]]> {
  const e = c.encdec;
  if (!e) throw new Error('t5RoleShapes: not an encoder-decoder config');
  const D = c.hiddenSize;
  const hd = c.headDim;
  const out: Array<[string, number[]]> = [['embed.tokens', [c.vocabSize, D]]];
  for (let i = 0; i < c.numLayers; i++) {
    if (i === 0) out.push(['rel_bias.encoder.weight', [e.relativeBuckets, e.encoderBiasColumns]]);
    if (i === e.encoderLayers) {
      out.push(['encoder_norm.weight', [D]]);
      out.push(['rel_bias.decoder.weight', [e.relativeBuckets, e.decoderBiasColumns]]);
    }
    const h = c.headsPerLayer[i];
    const p = `layers.${i}`;
    out.push([`${p}.attn_norm.weight`, [D]]);
    out.push([`${p}.attn.q.weight`, [h * hd, D]]);
    out.push([`${p}.attn.k.weight`, [h * hd, D]]);
    out.push([`${p}.attn.v.weight`, [h * hd, D]]);
    out.push([`${p}.attn.o.weight`, [D, h * hd]]);
    if (i >= e.encoderLayers) {
      const x = e.crossHeadsPerLayer[i - e.encoderLayers];
      out.push([`${p}.cross_norm.weight`, [D]]);
      out.push([`${p}.cross.q.weight`, [x * hd, D]]);
      out.push([`${p}.cross.k.weight`, [x * hd, D]]);
      out.push([`${p}.cross.v.weight`, [x * hd, D]]);
      out.push([`${p}.cross.o.weight`, [D, x * hd]]);
    }
    out.push([`${p}.mlp_norm.weight`, [D]]);
    if (c.mlpKind === 'gated') out.push([`${p}.mlp.gate.weight`, [c.intermediateSize, D]]);
    out.push([`${p}.mlp.up.weight`, [c.intermediateSize, D]]);
    out.push([`${p}.mlp.down.weight`, [D, c.intermediateSize]]);
  }
  if (e.encoderLayers === c.numLayers) throw new Error('t5RoleShapes: a T5 model needs decoder layers');
  out.push(['final_norm.weight', [D]]);
  if (!c.tieEmbeddings) out.push(['lm_head.weight', [c.vocabSize, D]]);
  return out;
}
