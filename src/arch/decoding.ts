/**
 * What the architecture descriptors and their decode loops see of a runner: the masks a candidate brings and the
 * one call a decode loop makes. engine/runner.ts's ModelRunner satisfies DecodeRunner and takes CandidateMasks,
 * so arch/ stays below engine/ (which looks the descriptors up) without importing it.
 */
import type { ModelSpec } from '../model/spec.js';

/** Masks for one candidate, as a runner takes them. Missing masks mean "keep everything". */
export interface CandidateMasks {
  /** [layers * maxHeads], 1 keep / 0 drop, layer-major. */
  headMask?: Float32Array;
  /** role → [out*in] booleans (1 keep). */
  weightMasks?: Map<string, Uint8Array>;
  /**
   * [layers * maxWidth] (maxWidth = the largest MLP width present), 1 keep / 0 drop, layer-major: entry
   * (i, j) multiplies MLP channel j of layer i (the intermediate activation, the input of down). Fed only to
   * runners built with structured mask inputs (masks/structured.ts states the semantics).
   */
  channelMask?: Float32Array;
  /**
   * [layers * 2], layer-major: (i, 0) multiplies layer i's attention block output, (i, 1) its MLP block output,
   * each after its bias and any post-block norm, just before the residual add (0 = the block is skipped).
   */
  blockMask?: Float32Array;
}

/**
 * What a decode loop needs of a runner (engine/runner.ts's ModelRunner is one): descriptors stay below the
 * engine, which looks them up.
 */
export interface DecodeRunner {
  readonly spec: ModelSpec;
  readonly output: string;
  run(
    batch: { batch: number; seq: number; ids: BigInt64Array; lastIndex?: BigInt64Array },
    masks?: CandidateMasks,
  ): Promise<Float32Array>;
  /**
   * Encoder-decoders: the generation sessions (encoder once, then decoder steps on a KV cache), present on a
   * 'last_logits' or 'row_logits' runner of a kind with generation graphs (ArchDescriptor.generationGraphs).
   */
  readonly seq2seq?: Seq2SeqSteps;
}

/** A KV cache between decoder steps: tensors by graph name (`present.*` of the last step). */
export type Seq2SeqCache = Record<string, { dims: readonly number[]; data: Float32Array }>;

/** One decoder step's input: new tokens of `batch` rows, the encoder output, the cache so far. */
export interface Seq2SeqStepInput {
  batch: number;
  /** [batch * newTokens] decoder tokens at the positions after the cache's. */
  ids: BigInt64Array;
  newTokens: number;
  /** [batch * srcSeq * hidden] the encoder output of these rows, and their source padding mask [batch * srcSeq]. */
  encoderHidden: Float32Array;
  srcSeq: number;
  attentionMask: BigInt64Array;
  /** Absent on the first step (the cross K/V are then computed from encoderHidden). */
  cache?: Seq2SeqCache;
}

/** The two generation sessions of an encoder-decoder (engine/seq2seq.ts). */
export interface Seq2SeqSteps {
  /** The final encoder output [batch, seq, hidden] of right-padded source rows under their padding mask. */
  encode(
    batch: { batch: number; seq: number; ids: BigInt64Array; attentionMask: BigInt64Array },
    masks?: CandidateMasks,
  ): Promise<Float32Array>;
  /** Logits [batch, newTokens, vocab] of the new tokens, and the cache that includes them. */
  step(
    input: Seq2SeqStepInput,
    masks?: CandidateMasks,
  ): Promise<{ logits: Float32Array; cache: Seq2SeqCache }>;
}
