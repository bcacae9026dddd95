/**
 * What an architecture kind is, as everything above the graph needs it (the transformers.js `MODEL_TYPES` idea):
 * one descriptor per kind — its graph builders, what a runner feeds and reads, its named head stacks, capture
 * points, block graphs, the export writer's entry and the decode loop. Code above the graph asks the descriptor
 * (arch/registry.ts `archOf`) instead of testing the kind, so a new kind (the encoder-decoder next) is one entry.
 */
import type { EncodedModel } from '../graph/builder.js';
import type { CapturePoint } from '../graph/capture.js';
import type { DecoderGraphOptions } from '../graph/decoder.js';
import type { EncDecGenerationOptions, EncDecGraphOptions } from '../graph/encdec.js';
import type { EncoderGraphOptions } from '../graph/encoder.js';
import type { HalfLinears } from '../graph/kit.js';
import type { GraphOutputMode } from '../graph/lmhead.js';
import type { Weights } from '../graph/weights.js';
import type { ModelConfig, ModelSpec } from '../model/spec.js';
import type { DecodeRunner } from './decoding.js';
import type { GenerateOptions } from './generate.js';
import type { GreedyBatchOptions, GreedyBatchResult } from './greedy.js';

/** Every graph output a runner can ask for: the decoder's modes, and the encoder's 'class_logits' ('hidden' both). */
export type RunnerOutput = GraphOutputMode | 'class_logits';

/** The options of an evaluation graph, whichever kind builds it. */
export type GraphOptions = DecoderGraphOptions | EncoderGraphOptions | EncDecGraphOptions;

/** The graphs generation runs on, for kinds that generate on graphs of their own (encoder-decoders). */
export interface GenerationGraphs {
  /** Source ids and padding mask → the final encoder output. */
  encoder: EncodedModel;
  /** One decoder step on a KV cache (graph/encdec.ts's step graph). */
  step: EncodedModel;
}

/**
 * One named stack of attention heads. A head genome is the concatenation of the kind's stacks, in order, each
 * layer-major (`layers` for decoders and encoders; the encoder-decoder adds `encoder`, `decoder`, `cross`).
 */
export interface HeadStack {
  readonly name: string;
  /** Query heads present in each layer of the stack. */
  readonly headsPerLayer: readonly number[];
  /** The row of the graph's head_mask input holding the stack's layer 0 (its layers follow in order). */
  readonly firstMaskRow: number;
  /** Layer l's KV head of each query head (GQA: a KV head goes when every query head reading it goes). */
  kvMap(layer: number): readonly number[];
  /** The tensor-role prefix of layer `layer`'s attention in this stack (`layers.3.attn`; cross: `layers.4.cross`). */
  rolePrefix(layer: number): string;
}

/** A graph input a kind feeds per batch (engine/session.ts takes it as a Feed). */
export type BatchFeed =
  | { type: 'int64'; dims: readonly number[]; data: BigInt64Array }
  | { type: 'float32'; dims: readonly number[]; data: Float32Array };

/** The per-batch inputs a kind's runner feeds besides input_ids / hidden_in, head and weight masks, and targets. */
export interface BatchInputs {
  batch: number;
  seq: number;
  attentionMask?: BigInt64Array;
  typeIds?: BigInt64Array;
  /** Encoder-decoders: [batch * decoderSeq] decoder input ids (teacher forcing), see TokenBatch. */
  decoderIds?: BigInt64Array;
  decoderSeq?: number;
  /** Encoder-decoders' block graphs: see TokenBatch. */
  hidden?: Float32Array;
  encoderHidden?: Float32Array;
  targets?: BigInt64Array;
  decoderTokenWeight?: Float32Array;
  tokenWeight?: Float32Array;
  valid?: Uint8Array;
}

/**
 * A decoding loop over a runner of the kind (generation, batched greedy decoding for scoring). For an
 * encoder-decoder a prompt is the source: the loop encodes it and generates the target from the decoder start
 * token (generate returns the source followed by the generated tokens, as a decoder's returns prompt + new).
 */
export interface DecodeLoop {
  /**
   * The prompt is an encoder's source (encoder-decoders): a command encodes it as the tokenizer's model input
   * (its special tokens, e.g. `<s> text </s>`), not as a BOS-led text to continue.
   */
  readonly promptIsSource?: boolean;
  /** Token-by-token generation on a 'last_logits' runner (arch/generate.ts). */
  generate(runner: DecodeRunner, prompt: number[], opts: GenerateOptions): Promise<number[]>;
  /** Greedy continuations of many prompts on a 'row_logits' runner (arch/greedy.ts). */
  greedyBatch(
    runner: DecodeRunner,
    prompts: readonly (readonly number[])[],
    opts: GreedyBatchOptions,
  ): Promise<GreedyBatchResult>;
}

export interface ArchDescriptor {
  /** The `ModelConfig.arch` value this descriptor serves (an absent arch reads as 'decoder'). */
  readonly kind: string;
  /** Whether the model ends in a language-model head (perplexity, KL, generation and BLEU need one). */
  readonly languageModel: boolean;
  /**
   * What the kind's language-model metrics (perplexity, KL) read: 'stream' token windows cut from pages of text
   * (decoders); 'pairs' each item's reference target given its source, from a task file (encoder-decoders,
   * metrics/seq2seq.ts).
   */
  readonly lmData: 'stream' | 'pairs';
  /** The evaluation graph for these options; an output mode the kind does not build is refused in one line. */
  buildGraph(spec: ModelSpec, weights: Weights, opts: GraphOptions): EncodedModel;
  /** The graph output holding a runner's main output, for a graph running `layers` of `numLayers`. */
  outputName(output: RunnerOutput, layers: readonly [number, number], numLayers: number): string;
  /**
   * The kind's own per-batch feeds (encoders: attention_mask, token_type_ids) for the inputs the graph has,
   * checked against the batch.
   */
  feedBatch(spec: ModelSpec, batch: BatchInputs, graphInputs: ReadonlySet<string>): Record<string, BatchFeed>;
  /** The head stacks of a model of this kind, in gene order. */
  headStacks(config: ModelConfig): HeadStack[];
  /**
   * What the graph computes for a layer left without heads: 'skip' (no attention at all: a biased o projection
   * would be lost) or 'bias' (the o projection's bias alone, as the masked model; every kind now).
   */
  readonly headlessAttention: 'skip' | 'bias';
  /** The capture points of a block (capture.ts), in forward order, and the weight roles reading each. */
  readonly capturePoints: readonly CapturePoint[];
  rolesOfCapturePoint(layer: number, point: CapturePoint): string[];
  /** The spec a block graph of `layers` reads (engine/blocks.ts walks). */
  blockSpec(spec: ModelSpec, layers?: readonly [number, number]): ModelSpec;
  /**
   * Layer-wise walks over a kind with two stacks (encoder-decoders): the first block of the second stack. That
   * block starts from its own embedding (decoder_input_ids), not from the hidden states the block before it
   * handed on; those are the first stack's final output, which it and every later block read as
   * `encoderHidden` (engine/blocks.ts enterBlock). Absent: one stack, each block reads the one before.
   */
  secondStackStart?(config: ModelConfig): number;
  /**
   * The kind's stacks of blocks as `--layers` names them (masks/layers.ts): block N of a stack is layer first + N.
   * Absent: one stack `layers` over every block.
   */
  blockStacks?(config: ModelConfig): { name: string; first: number; count: number }[];
  /** The output of the last block of a layer-wise walk: the model's own head. */
  lastBlockOutput(config: ModelConfig): RunnerOutput;
  /** What an export writes for the kind. */
  readonly export: {
    /**
     * onnx/model.onnx: the graph transformers.js runs (a physically pruned model: no masks); the speed benchmark
     * decodes on it too.
     */
    deployGraph(spec: ModelSpec, weights: Weights, opts?: { halfLinears?: HalfLinears }): EncodedModel;
    /** Whether a generation_config.json goes beside config.json. */
    readonly generationConfig: boolean;
    /** Whether transformers runs a layer without heads in the compact Hugging Face layout. */
    readonly compactHeadlessLayer: boolean;
  };
  /** The decode loop; absent for kinds nothing generates from. */
  readonly decode?: DecodeLoop;
  /**
   * Kinds that generate on graphs of their own (encoder-decoders: an encoder, then decoder steps on a KV cache):
   * a 'last_logits' or 'row_logits' runner builds these instead of the evaluation graph and hands them to the
   * decode loop as `seq2seq` (arch/decoding.ts).
   */
  generationGraphs?(spec: ModelSpec, weights: Weights, opts: EncDecGenerationOptions): GenerationGraphs;
}
