/**
 * A model bound to one ONNX Runtime session: built once, then run many times with different tokens and masks.
 */

import type { CandidateMasks, Seq2SeqSteps } from '../arch/decoding.js';
import type { RunnerOutput } from '../arch/descriptor.js';
import { archOf, headMaskShape } from '../arch/registry.js';
import { GenepruneError } from '../errors.js';
import type { AttentionKind, FusedAttentionOp } from '../graph/attention.js';
import { layerRange } from '../graph/blocks.js';
import type { CaptureOptions } from '../graph/capture.js';
import { maxWidthOf } from '../graph/layer.js';
import { IGNORE_INDEX } from '../graph/lmhead.js';
import {
  type ComputeDtype,
  prepareWeights,
  releaseWeights,
  type Weights,
  weightsDtype,
} from '../graph/weights.js';
import type { ModelSpec } from '../model/spec.js';
import { createSeq2SeqSessions } from './seq2seq.js';
import { createEngine, type Device, type Engine, type Feed, type Output } from './session.js';

export type { RunnerOutput };

export interface RunnerOptions {
  output: RunnerOutput;
  /** Linear weight roles that accept a boolean mask. */
  weightMasks?: string[];
  /**
   * Give the graph the structured mask inputs channel_mask and block_mask (DecoderGraphOptions; decoders and
   * encoders), fed from CandidateMasks.channelMask / blockMask (all ones when a candidate gives none).
   */
  structuredMasks?: boolean;
  device?: Device;
  threads?: number;
  /**
   * Weights already prepared (shared between runners of the same model; the caller releases them once its
   * runners have started). Without them the runner prepares its own and releases them once started.
   */
  weights?: Weights;
  /** Passed to prepareWeights (and, for in-memory weights, to the graph: 0 forces external data). */
  externalDataThreshold?: number;
  /** Attention implementation (default fused); see DecoderGraphOptions. */
  attention?: AttentionKind;
  fusedOp?: FusedAttentionOp;
  /**
   * The longest row this runner will be fed (see DecoderGraphOptions.maxSeq): lets a model with sliding windows at
   * least this long run the fused attention kernel. A longer row is refused, since the graph may have been built
   * on the promise.
   */
  maxSeq?: number;
  /** Benchmarks: see EngineOptions.profileFilePrefix. */
  profileFilePrefix?: string;
  /** See EngineOptions.spinning. */
  spinning?: boolean;
  /** Vocabulary rows per output-head chunk for 'nll'/'kl' (default VOCAB_CHUNK); see DecoderGraphOptions. */
  vocabChunk?: number;
  /**
   * Compute precision (default fp32): fp16/bf16 hold the weight matrices in that dtype in ONNX Runtime (half the
   * memory). On CPU the linears still compute in fp32 (the weight is cast just before use: ORT has no fp16 GEMM
   * there); on CUDA and WebGPU they run in the narrow dtype. Outputs are fp32 either way.
   */
  dtype?: ComputeDtype;
  /**
   * A block graph of layers [from, to) (default all); see DecoderGraphOptions. With from > 0 each batch brings
   * `hidden` (the residual stream entering layer from); with to < numLayers the output is 'hidden'.
   */
  layers?: readonly [number, number];
  /** Activation statistics of these layers' linear inputs, returned by runAll as `stats.{i}.{point}`. */
  capture?: CaptureOptions;
}

export type { CandidateMasks };

/** A batch of equal-length rows, already padded. */
export interface TokenBatch {
  batch: number;
  seq: number;
  /** [batch * seq] token ids. */
  ids: BigInt64Array;
  /** [batch * seq] next-token targets, IGNORE_INDEX where padded (nll mode). */
  targets?: BigInt64Array;
  /** [batch * seq * vocab] reference log-probabilities (kl mode). */
  refLogprobs?: Float32Array;
  /** [batch] each row's last real position (row_logits mode; rows are right-padded after it). */
  lastIndex?: BigInt64Array;
  /** [batch * seq * D] the residual stream entering the runner's first layer (block runners starting past 0). */
  hidden?: Float32Array;
  /**
   * [batch * seq] weights of each position in captured statistics (1 real token, 0 padding). Without it a
   * capture runner uses `valid` (as batches() yields it), else counts every position.
   */
  tokenWeight?: Float32Array;
  /** [batch * seq] 1 where a position holds a real token (batches() sets it). */
  valid?: Uint8Array;
  /** Encoders: [batch * seq] 1 for a real token, 0 for padding (default: all real). */
  attentionMask?: BigInt64Array;
  /** Encoders with token types: [batch * seq] segment ids (default: all 0). */
  typeIds?: BigInt64Array;
  /**
   * Encoder-decoders: `ids`, `seq` and `attentionMask` are the source; these are the decoder's input ids
   * [batch * decoderSeq] (the start token, then the target shifted right). targets and lastIndex then index
   * decoder positions, and nll/logits outputs have decoderSeq positions.
   */
  decoderIds?: BigInt64Array;
  decoderSeq?: number;
  /**
   * Encoder-decoders' block graphs (graph/encdec.ts): `hidden` is over source positions for a block starting
   * inside the encoder and over decoder positions for one starting past the first decoder block; a block of
   * decoder layers takes the final encoder output [batch * seq * D] as `encoderHidden`. Capture runners weight
   * source positions by `tokenWeight` (default: `valid`, else the attention mask) and decoder positions by
   * `decoderTokenWeight` [batch * decoderSeq] (default: 1 where targets is not IGNORE_INDEX, else 1).
   */
  encoderHidden?: Float32Array;
  decoderTokenWeight?: Float32Array;
}

export interface ModelRunner {
  readonly spec: ModelSpec;
  readonly dtype: ComputeDtype;
  readonly output: RunnerOutput;
  readonly maxHeads: number;
  readonly engine: Engine;
  /** The layers this runner's graph runs, [from, to). */
  readonly layers: readonly [number, number];
  /** Runs one batch and returns the main output ([batch, seq] for nll/kl, with vocab for logits, D for hidden). */
  run(batch: TokenBatch, masks?: CandidateMasks): Promise<Float32Array>;
  /** Runs one batch and returns every graph output by name (the main one and any `stats.{i}.{point}`). */
  runAll(batch: TokenBatch, masks?: CandidateMasks): Promise<Record<string, Output>>;
  release(): Promise<void>;
  /** Encoder-decoders' 'last_logits' / 'row_logits' runners: the generation sessions (arch/decoding.ts). */
  readonly seq2seq?: Seq2SeqSteps;
}

export { IGNORE_INDEX };

/** The longest row among batches: what a runner that will run just these is told as its `maxSeq`. */
export function longestRow(list: readonly Pick<TokenBatch, 'seq'>[]): number | undefined {
  return list.length === 0 ? undefined : Math.max(...list.map((b) => b.seq));
}

function checkIds(ids: BigInt64Array, vocab: number, what: string, allowed?: bigint): void {
  const v = BigInt(vocab);
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i];
    if ((id < 0n || id >= v) && id !== allowed) {
      throw new Error(`${what} ${id} at position ${i} is outside the model's vocabulary of ${vocab}`);
    }
  }
}

/** A head_mask keeping every head: [rows, maxHeads] as the model's head stacks declare (arch headMaskShape). */
export function allKeptHeadMask(spec: ModelSpec): Float32Array {
  const [rows, maxHeads] = headMaskShape(spec.config);
  return new Float32Array(rows * maxHeads).fill(1);
}

export async function createRunner(spec: ModelSpec, opts: RunnerOptions): Promise<ModelRunner> {
  const threshold = opts.externalDataThreshold;
  const dtype = opts.dtype ?? 'fp32';
  if (opts.weights && weightsDtype(opts.weights) !== dtype) {
    throw new Error(`runner: weights prepared in ${weightsDtype(opts.weights)}, runner asked for ${dtype}`);
  }
  const arch = archOf(spec.config);
  if (opts.structuredMasks && arch.kind === 'encdec') {
    throw new GenepruneError(
      'model',
      `structured masks (MLP channels, whole blocks) are built for decoders and encoders, not the ${spec.config.modelType} encoder-decoder`,
    );
  }
  const weights =
    opts.weights ??
    (await prepareWeights(arch.blockSpec(spec, opts.layers), { externalDataThreshold: threshold, dtype }));
  if (arch.generationGraphs && (opts.output === 'last_logits' || opts.output === 'row_logits')) {
    return generationRunner(spec, weights, opts, dtype);
  }
  let engine: Engine;
  try {
    const graph = arch.buildGraph(spec, weights, {
      output: opts.output,
      weightMasks: opts.weightMasks,
      ...(opts.structuredMasks ? { structuredMasks: true } : {}),
      externalDataThreshold: threshold,
      attention: opts.attention,
      fusedOp: opts.fusedOp,
      maxSeq: opts.maxSeq,
      vocabChunk: opts.vocabChunk,
      halfLinears: (opts.device ?? 'cpu') === 'cpu' ? 'upcast' : 'native',
      layers: opts.layers,
      capture: opts.capture,
    } as Parameters<typeof arch.buildGraph>[2]);
    engine = await createEngine(graph, {
      device: opts.device,
      threads: opts.threads,
      dtype,
      profileFilePrefix: opts.profileFilePrefix,
      spinning: opts.spinning,
    });
  } finally {
    // ORT holds its own copy once started: a file of our own is deleted now.
    if (!opts.weights) await releaseWeights(weights);
  }
  const [maskRows, maxHeads] = headMaskShape(spec.config);
  const onesHead = allKeptHeadMask(spec);
  const onesWeight = new Map<string, Uint8Array>();
  const layers = layerRange(spec.config.numLayers, opts.layers);
  const outputName = arch.outputName(opts.output, layers, spec.config.numLayers);
  const D = spec.config.hiddenSize;
  const graphInputs = new Set(engine.inputNames);
  const capturing = (opts.capture?.layers.length ?? 0) > 0;
  const structured = structuredFeeds(spec, graphInputs);

  const runAll = async (batch: TokenBatch, masks: CandidateMasks = {}): Promise<Record<string, Output>> => {
    const headMask = masks.headMask ?? onesHead;
    if (headMask.length !== onesHead.length) {
      throw new Error(`head mask has ${headMask.length} entries, model needs ${onesHead.length}`);
    }
    const feeds: Record<string, Feed> = {
      head_mask: { type: 'float32', dims: [maskRows, maxHeads], data: headMask },
      ...structured(masks),
    };
    const tokens = batch.batch * batch.seq;
    // The positions targets and lastIndex index: the decoder's for an encoder-decoder, else the row's.
    const outSeq = batch.decoderSeq ?? batch.seq;
    if (batch.seq > spec.config.maxPositions) {
      // The position tables end at the model's context; past it ONNX Runtime fails in an unreadable kernel message
      // (and dynamic NTK rotary scaling would need frequencies these graphs do not hold).
      throw new GenepruneError(
        'model',
        `a row of ${batch.seq} positions is longer than the model's context of ${spec.config.maxPositions} (max_position_embeddings)`,
      );
    }
    if (opts.maxSeq !== undefined && batch.seq > opts.maxSeq) {
      throw new Error(
        `a row of ${batch.seq} positions is longer than this runner's maxSeq of ${opts.maxSeq}`,
      );
    }
    // The kind's own feeds first: an encoder-decoder's block graphs take their hidden states from them.
    const kindFeeds = arch.feedBatch(spec, batch, graphInputs);
    if (graphInputs.has('input_ids')) {
      // A chunked head gathers rows chunk by chunk, where an id past the vocabulary would read as zeros.
      checkIds(batch.ids, spec.config.vocabSize, 'token id');
      feeds.input_ids = { type: 'int64', dims: [batch.batch, batch.seq], data: batch.ids };
    } else if (graphInputs.has('hidden_in') && !kindFeeds.hidden_in) {
      if (batch.hidden?.length !== tokens * D) {
        throw new Error(
          `a block runner starting at layer ${layers[0]} needs hidden states [${batch.batch}, ${batch.seq}, ${D}], got ${batch.hidden ? batch.hidden.length : 'none'}`,
        );
      }
      feeds.hidden_in = { type: 'float32', dims: [batch.batch, batch.seq, D], data: batch.hidden };
    }
    Object.assign(feeds, kindFeeds);
    if (capturing && graphInputs.has('token_weight') && !kindFeeds.token_weight) {
      let w = batch.tokenWeight;
      if (!w) {
        const valid = batch.valid;
        w = new Float32Array(tokens).fill(1);
        if (valid) for (let i = 0; i < tokens; i++) w[i] = valid[i] ? 1 : 0;
      }
      if (w.length !== tokens) throw new Error(`token weights have ${w.length} entries, batch has ${tokens}`);
      feeds.token_weight = { type: 'float32', dims: [batch.batch, batch.seq], data: w };
    }
    if (batch.targets) checkIds(batch.targets, spec.config.vocabSize, 'target', BigInt(IGNORE_INDEX));
    if (opts.output === 'nll') {
      if (!batch.targets) throw new Error('nll runner needs targets');
      feeds.targets = { type: 'int64', dims: [batch.batch, outSeq], data: batch.targets };
    }
    if (opts.output === 'kl') {
      if (!batch.refLogprobs) throw new Error('kl runner needs reference log-probabilities');
      feeds.ref_logprobs = {
        type: 'float32',
        dims: [batch.batch, outSeq, spec.config.vocabSize],
        data: batch.refLogprobs,
      };
    }
    if (opts.output === 'row_logits') {
      const li = batch.lastIndex;
      if (!li || li.length !== batch.batch) throw new Error('row_logits runner needs lastIndex, one per row');
      for (let b = 0; b < li.length; b++) {
        if (li[b] < 0n || li[b] >= BigInt(outSeq)) {
          throw new Error(`lastIndex ${li[b]} of row ${b} is outside the row's ${outSeq} positions`);
        }
      }
      feeds.last_index = { type: 'int64', dims: [batch.batch], data: li };
    }
    for (const role of opts.weightMasks ?? []) {
      // A block graph has mask inputs only for its own layers' roles.
      if (!graphInputs.has(`mask.${role}`)) continue;
      const shape = spec.tensors.get(role)!.shape;
      let m = masks.weightMasks?.get(role);
      if (!m) {
        m = onesWeight.get(role) ?? new Uint8Array(shape.reduce((a, b) => a * b, 1)).fill(1);
        onesWeight.set(role, m);
      }
      feeds[`mask.${role}`] = { type: 'bool', dims: shape, data: m };
    }
    return engine.run(feeds);
  };

  return {
    spec,
    dtype,
    output: opts.output,
    maxHeads,
    engine,
    layers,
    runAll,
    async run(batch, masks) {
      return (await runAll(batch, masks))[outputName].data;
    },
    release: () => engine.release(),
  };
}

/**
 * The feeds of the structured mask inputs a graph has (none without them): a candidate's channelMask /
 * blockMask, or all ones (everything kept) where it gives none. A wrong length is the caller's bug.
 */
function structuredFeeds(
  spec: ModelSpec,
  graphInputs: ReadonlySet<string>,
): (masks: CandidateMasks) => Record<string, Feed> {
  if (!graphInputs.has('channel_mask')) return () => ({});
  const L = spec.config.numLayers;
  const dims = { channel_mask: [L, maxWidthOf(spec.config)], block_mask: [L, 2] };
  const ones = {
    channel_mask: new Float32Array(dims.channel_mask[0] * dims.channel_mask[1]).fill(1),
    block_mask: new Float32Array(L * 2).fill(1),
  };
  const feed = (name: 'channel_mask' | 'block_mask', given: Float32Array | undefined): Feed => {
    const data = given ?? ones[name];
    if (data.length !== ones[name].length) {
      throw new GenepruneError(
        'internal',
        `${name} has ${data.length} entries, the model needs ${ones[name].length} ([${dims[name].join(', ')}])`,
      );
    }
    return { type: 'float32', dims: dims[name], data };
  };
  return (masks) => ({
    channel_mask: feed('channel_mask', masks.channelMask),
    block_mask: feed('block_mask', masks.blockMask),
  });
}

/**
 * A 'last_logits' / 'row_logits' runner of a kind that generates on graphs of its own (encoder-decoders): its
 * sessions are the generation graphs, which the kind's decode loop drives through `seq2seq`; `run` is refused in
 * one line (there is no single forward to run).
 */
async function generationRunner(
  spec: ModelSpec,
  weights: Weights,
  opts: RunnerOptions,
  dtype: ComputeDtype,
): Promise<ModelRunner> {
  const arch = archOf(spec.config);
  let sessions: Awaited<ReturnType<typeof createSeq2SeqSessions>>;
  try {
    const graphs = arch.generationGraphs!(spec, weights, {
      weightMasks: opts.weightMasks,
      externalDataThreshold: opts.externalDataThreshold,
      halfLinears: (opts.device ?? 'cpu') === 'cpu' ? 'upcast' : 'native',
    });
    sessions = await createSeq2SeqSessions(spec, graphs, {
      device: opts.device,
      threads: opts.threads,
      dtype,
      weightMasks: opts.weightMasks,
    });
  } finally {
    if (!opts.weights) await releaseWeights(weights);
  }
  const refuse = async (): Promise<never> => {
    throw new Error(
      `a ${spec.config.modelType} ${arch.kind} '${opts.output}' runner generates through its decode loop (seq2seq), not run()`,
    );
  };
  return {
    spec,
    dtype,
    output: opts.output,
    maxHeads: headMaskShape(spec.config)[1],
    engine: sessions.decoder,
    layers: layerRange(spec.config.numLayers, opts.layers),
    run: refuse,
    runAll: refuse,
    seq2seq: sessions,
    release: () => sessions.release(),
  };
}
