/**
 * The evaluation graph for decoder-only models with rotary positions (the LLaMA family).
 *
 * Inputs:
 *   input_ids  int64 [batch, seq]
 *   head_mask  float [layers, maxHeads]  1 keeps a query head, 0 drops it (multiplied into the head's attention
 *                                        output before the output projection, which is exactly what removing
 *                                        the head's o_proj columns does)
 *   targets    int64 [batch, seq]        next-token ids, -100 = ignore (output 'nll')
 *   ref_logprobs float [batch, seq, vocab] log-probabilities of a reference model (output 'kl')
 *   mask.<role> bool, the weight's shape  one per masked linear weight (true keeps the weight)
 * Outputs, by mode:
 *   'nll'         nll    float [batch, seq]   per-token negative log-likelihood (0 where target = -100)
 *   'kl'          kl     float [batch, seq]   KL(ref || model) per token
 *   'logits'      logits float [batch, seq, vocab]
 *   'logprobs'    logprobs float [batch, seq, vocab]  log-softmax of the logits (KL references)
 *   'last_logits' logits float [batch, vocab]  logits at the last position only (generation)
 *   'row_logits'  logits float [batch, vocab]  logits at each row's own last position, given by the input
 *                 last_index int64 [batch] (batched generation over right-padded prompts of different lengths)
 *
 *   'hidden'      hidden float [batch, seq, D]  the residual stream leaving layer to−1 (block graphs, below)
 *
 * Block graphs (`layers: [from, to]`, default all layers) run layers from … to−1 only, so a layer-wise search or
 * calibration walk starts from cached hidden states instead of recomputing the layers before:
 *   from > 0: the input is hidden_in float32 [batch, seq, D] (the residual stream entering layer `from`) instead of
 *             input_ids; rotary positions are still 0 … seq−1 (a block sees whole rows).
 *   to < L:   the output is 'hidden' (no final norm, no head); output must then be 'hidden'.
 * head_mask keeps its full [layers, maxHeads] shape in every block (row i is layer i): one mask feeds every
 * block of a model unchanged. Only the block's weights become initializers (the embedding only when from = 0,
 * the final norm and head only when to = L), and only the masked roles inside the block become mask inputs.
 *
 * Activation statistics (`capture`): for each captured layer i, outputs the statistics of the four distinct
 * linear inputs — stats.{i}.attn_in (attention norm output: input of q/k/v), stats.{i}.o_in (merged heads after
 * the head mask: input of o), stats.{i}.mlp_in (MLP norm output: input of gate/up), stats.{i}.down_in
 * (SiLU(gate)·up: input of down) — as Σ_t X_tj² per input column ('sqnorm', [in]) or XᵀX ('gram', [in, in]),
 * over the batch's tokens. Capture graphs take token_weight float32 [batch, seq], multiplied into X before the
 * reduction (1 real token, 0 padding: padded positions do not count; a weight w counts a token as w²).
 * A layer without attention heads has no attn_in / o_in. `capture.points` outputs only the points named.
 *
 * Attention is one fused causal kernel per layer (attention.ts); `attention: 'explicit'` keeps the plain-operator
 * chain, which the KV-cache graph always uses.
 *
 * Linear layers use Gemm with transB=1 so weights stay in the checkpoint's [out, in] layout: no transposed
 * copies, and weight masks line up with checkpoint tensors one to one.
 */
import { GenepruneError } from '../errors.js';
import { ropeCosSinFactor, ropeInverseFrequencies } from '../model/rope.js';
import type { ModelConfig, ModelSpec } from '../model/spec.js';
import { kvMapOfLayer } from '../model/spec.js';
import {
  type AttentionKind,
  explicitAttention,
  type FusedAttentionOp,
  fusedCausalAttention,
  halfSplitRotary,
} from './attention.js';
import { type EncodedModel, GraphBuilder } from './builder.js';
import { createKit, type HalfLinears } from './kit.js';
import { isWeightFile, type Weights } from './weights.js';

export { loadWeights, prepareWeights, releaseWeights, type WeightMap, type Weights } from './weights.js';

export type GraphOutputMode = 'nll' | 'kl' | 'logits' | 'logprobs' | 'last_logits' | 'row_logits' | 'hidden';

/** Activation statistics of linear inputs: Σ_t X_tj² per column, or the Gram matrix XᵀX. */
export type CaptureKind = 'sqnorm' | 'gram';

/** Which statistics a capture graph outputs: of these layers, of these points (default all four). */
export interface CaptureOptions {
  layers: readonly number[];
  kind: CaptureKind;
  points?: readonly CapturePoint[];
}

/** The four distinct linear inputs of a block, in forward order (see the header). */
export const CAPTURE_POINTS = ['attn_in', 'o_in', 'mlp_in', 'down_in'] as const;
export type CapturePoint = (typeof CAPTURE_POINTS)[number];

/** The graph output holding one captured statistic. */
export function statsName(layer: number, point: CapturePoint): string {
  return `stats.${layer}.${point}`;
}

/** The linear weight roles that read a capture point's input. */
export function rolesOfCapturePoint(layer: number, point: CapturePoint): string[] {
  const p = `layers.${layer}`;
  switch (point) {
    case 'attn_in':
      return [`${p}.attn.q.weight`, `${p}.attn.k.weight`, `${p}.attn.v.weight`];
    case 'o_in':
      return [`${p}.attn.o.weight`];
    case 'mlp_in':
      return [`${p}.mlp.gate.weight`, `${p}.mlp.up.weight`];
    case 'down_in':
      return [`${p}.mlp.down.weight`];
  }
}

export interface DecoderGraphOptions {
  output: GraphOutputMode;
  /**
   * Build the deployment graph instead: inputs input_ids, attention_mask [batch, past+seq] (int64, 1 = attend),
   * position_ids [batch, seq] and past_key_values.{i}.key/value [batch, kvHeads_i, past, headDim]; outputs
   * logits [batch, seq, vocab] and present.{i}.key/value [batch, kvHeads_i, past+seq, headDim] — the names and
   * layout transformers.js expects. Each layer's cache carries its own concrete KV-head count. No head mask:
   * an exported model is physically pruned. Requires output 'logits'.
   */
  kvCache?: boolean;
  /** Linear weight roles that get a boolean mask input `mask.<role>`. */
  weightMasks?: string[];
  /**
   * Evaluation graphs: 'fused' (default) runs one ONNX Runtime attention kernel per layer; 'explicit' the plain
   * QKᵀ/mask/Softmax/·V chain (the reference the fused path is tested against, and the benchmark's "before").
   * The KV-cache graph is always explicit: its left-padding attention_mask has no exact fused equivalent.
   */
  attention?: AttentionKind;
  /** Which fused kernel (benchmarks re-measure the choice); GroupQueryAttention by default. */
  fusedOp?: FusedAttentionOp;
  /**
   * In-memory weights go to ONNX external data passed in memory (referenced in place when they lie in the
   * WeightMap's blobs) when they total more than this many bytes: 0 forces it; default inline up to
   * protobuf's 2 GiB limit. Weights in a file (prepareWeights) are always external.
   */
  externalDataThreshold?: number;
  /**
   * How a linear whose weight is held in fp16/bf16 runs (weights.ts decides which are): 'upcast' (default) casts
   * the weight to fp32 right before its Gemm, so activations and arithmetic stay fp32 and only storage is narrow
   * (ONNX Runtime's CPU provider has no fp16 Gemm: it would insert the same casts and then fold them into fp32
   * copies of the weights, losing the memory); 'native' casts the activation to the weight's dtype and runs the
   * Gemm there (CUDA, WebGPU), back to fp32 after. Norms, rotary, attention, softmax and the loss are fp32 in both.
   */
  halfLinears?: HalfLinears;
  /**
   * 'nll' and 'kl' graphs compute the output head over vocabulary chunks of this many rows when the vocabulary
   * is larger (default VOCAB_CHUNK), so no [tokens, vocab] tensor exists; tests set it small to exercise it.
   */
  vocabChunk?: number;
  /** Run layers from … to−1 only (default [0, numLayers]); see the header for the block graph's inputs/outputs. */
  layers?: readonly [number, number];
  /**
   * Output activation statistics of these layers' linear inputs (each layer inside `layers`); see the header.
   * `points` limits them to some capture points (default all four).
   */
  capture?: CaptureOptions;
}

/** A graph's layer range [from, to), checked (default all layers). */
export function layerRange(numLayers: number, layers?: readonly [number, number]): [number, number] {
  if (!layers) return [0, numLayers];
  const [from, to] = layers;
  if (!Number.isInteger(from) || !Number.isInteger(to) || from < 0 || to > numLayers || from >= to) {
    throw new Error(
      `decoder graph: layer range [${from}, ${to}) is not inside the model's ${numLayers} layers`,
    );
  }
  return [from, to];
}

/**
 * The spec restricted to the tensors a block graph [from, to) reads: its layers' weights, the embedding when it
 * starts at layer 0 (or ends with a tied head), the final norm and head when it ends at the last layer. Preparing
 * weights from it keeps a one-layer block from loading the whole model.
 */
export function blockSpec(spec: ModelSpec, layers?: readonly [number, number]): ModelSpec {
  const L = spec.config.numLayers;
  const [from, to] = layerRange(L, layers);
  if (from === 0 && to === L) return spec;
  const keep = (role: string): boolean => {
    const m = /^layers\.(\d+)\./.exec(role);
    if (m) return Number(m[1]) >= from && Number(m[1]) < to;
    if (role === 'embed.tokens') return from === 0 || (to === L && spec.config.tieEmbeddings);
    if (role.startsWith('embed.')) return from === 0; // positions, token types, embedding norm
    return to === L;
  };
  return { ...spec, tensors: new Map([...spec.tensors].filter(([role]) => keep(role))) };
}

export type { HalfLinears } from './kit.js';

export const IGNORE_INDEX = -100;
/**
 * Vocabulary rows per output-head chunk. A 128k vocabulary's fp32 logits are 1 GiB per 2048 tokens and ORT keeps
 * several such buffers (logits, softmax, loss); in chunks of 16,384 each is 128 MiB at 2048 tokens.
 */
export const VOCAB_CHUNK = 16384;

/** Vocabulary chunks [start, end) for a graph of this output mode (one chunk: the plain path). */
export function vocabChunks(
  vocabSize: number,
  output: GraphOutputMode,
  chunk = VOCAB_CHUNK,
): Array<[number, number]> {
  if ((output !== 'nll' && output !== 'kl') || vocabSize <= chunk) return [[0, vocabSize]];
  const out: Array<[number, number]> = [];
  for (let v = 0; v < vocabSize; v += chunk) out.push([v, Math.min(vocabSize, v + chunk)]);
  return out;
}
export const OPSET = 17;

/**
 * Rotary tables in the half-split layout: cos/sin [positions, headDim], with the config's rotary scaling (its
 * frequencies, and yarn's factor on cos and sin). Dynamic NTK scaling changes nothing below max_position_embeddings,
 * and no graph here runs a position beyond it (the tables end there).
 */
export function rotaryTables(
  config: ModelConfig,
  positions: number,
): { cos: Float32Array; sin: Float32Array } {
  const hd = config.headDim;
  const half = hd / 2;
  const invFreq = ropeInverseFrequencies(config.ropeTheta, hd, config.ropeScaling);
  const m = ropeCosSinFactor(config.ropeScaling);
  const cos = new Float32Array(positions * hd);
  const sin = new Float32Array(positions * hd);
  for (let p = 0; p < positions; p++) {
    for (let j = 0; j < half; j++) {
      const angle = p * invFreq[j];
      const c = m * Math.cos(angle);
      const s = m * Math.sin(angle);
      cos[p * hd + j] = c;
      cos[p * hd + half + j] = c;
      sin[p * hd + j] = s;
      sin[p * hd + half + j] = s;
    }
  }
  return { cos, sin };
}

/**
 * The spec fields this builder implements, and the values it builds; any other value is refused in one line
 * rather than computed as something else (a spec can describe more than this graph builds).
 */
const HONOURED: ReadonlyArray<[keyof ModelConfig, readonly unknown[]]> = [
  ['arch', [undefined, 'decoder']],
  ['family', ['llama', 'gpt2', 'gemma']],
  ['normKind', ['rms', 'layer']],
  ['normPlacement', ['pre']],
  ['mlpKind', ['gated', 'plain']],
  ['positionKind', ['rope', 'learned']],
  ['activation', ['silu', 'gelu', 'gelu_tanh', 'relu']],
  ['typeVocabSize', [undefined, 0]],
  ['classifier', [undefined]],
];

export function refuseUnhonoured(c: ModelConfig): void {
  for (const [field, values] of HONOURED) {
    if (!values.includes(c[field])) {
      const shown = values.map((v) => (v === undefined ? 'none' : JSON.stringify(v))).join(', ');
      throw new GenepruneError(
        'model',
        `the decoder graph cannot build ${field} ${JSON.stringify(c[field])} (it builds ${shown}); model_type ${c.modelType} is not supported`,
      );
    }
  }
  const window = c.slidingWindow;
  if (window && (window.length !== c.numLayers || window.some((w) => !Number.isInteger(w) || w < 0))) {
    throw new GenepruneError(
      'model',
      `sliding windows must be ${c.numLayers} non-negative integers, one per layer (got ${JSON.stringify(window)})`,
    );
  }
}

/** The fused kernels implement plain causal attention with a score scale; soft-capped or windowed layers run the explicit chain. */
function fusedCapable(c: ModelConfig): boolean {
  return !c.attnSoftcap && !(c.slidingWindow ?? []).some((w) => w > 0);
}

export function buildDecoderGraph(
  spec: ModelSpec,
  weights: Weights,
  opts: DecoderGraphOptions,
): EncodedModel {
  const c = spec.config;
  refuseUnhonoured(c);
  const g = new GraphBuilder();
  const kit = createKit(g, spec, weights, {
    weightMasks: opts.weightMasks,
    halfLinears: opts.halfLinears,
    what: 'decoder graph',
  });
  const maxHeads = Math.max(...c.headsPerLayer);
  const hd = c.headDim;
  const D = c.hiddenSize;
  const rope = c.positionKind === 'rope';

  const cache = opts.kvCache === true;
  if (cache && opts.output !== 'logits') throw new Error('decoder graph: a KV-cache graph outputs logits');
  const [from, to] = layerRange(c.numLayers, opts.layers);
  const hasEmbed = from === 0;
  const hasHead = to === c.numLayers;
  if (cache && (!hasEmbed || !hasHead)) throw new Error('decoder graph: a KV-cache graph runs every layer');
  if (!hasHead && opts.output !== 'hidden') {
    throw new Error(
      `decoder graph: a block ending at layer ${to} of ${c.numLayers} outputs 'hidden', not '${opts.output}'`,
    );
  }
  if (hasHead && opts.output === 'hidden') {
    throw new Error(
      `decoder graph: output 'hidden' needs a block ending before the last layer (layers [from, to < ${c.numLayers}])`,
    );
  }
  const captured = new Set(opts.capture?.layers ?? []);
  for (const i of captured) {
    if (!Number.isInteger(i) || i < from || i >= to) {
      throw new Error(`decoder graph: captured layer ${i} is outside the graph's layers [${from}, ${to})`);
    }
  }
  if (cache && captured.size > 0) throw new Error('decoder graph: a KV-cache graph captures no statistics');
  const inputIds = hasEmbed ? g.input('input_ids', 'int64', ['batch', 'seq']) : '';
  const hiddenIn = hasEmbed ? '' : g.input('hidden_in', 'float32', ['batch', 'seq', D]);
  const attentionMask = cache ? g.input('attention_mask', 'int64', ['batch', 'total']) : '';
  const positionIds = cache ? g.input('position_ids', 'int64', ['batch', 'seq']) : '';
  const headMask = cache ? '' : g.input('head_mask', 'float32', [c.numLayers, maxHeads]);
  const past = (i: number, kind: 'key' | 'value') => `past_key_values.${i}.${kind}`;
  if (cache) {
    for (let i = 0; i < c.numLayers; i++) {
      for (const kind of ['key', 'value'] as const) {
        g.input(past(i, kind), 'float32', ['batch', c.kvHeadsPerLayer[i], 'past', hd]);
      }
    }
  }

  // Dynamic sizes as 1-element int64 vectors.
  const idsShape = g.op('Shape', [hasEmbed ? inputIds : hiddenIn]);
  const batchDim = g.op('Slice', [idsShape, g.constInt64([0]), g.constInt64([1])]);
  const seqDim = g.op('Slice', [idsShape, g.constInt64([1]), g.constInt64([2])]);
  const seqScalar = g.op('Squeeze', [seqDim, g.constInt64([0])]);
  const minus1 = (): string => g.constInt64([-1]);

  // The output head's weight, in vocabulary chunks for 'nll' and 'kl' graphs of large vocabularies; a tied head
  // shares the embedding's chunks (the full table is then never an initializer of its own).
  const headRole = c.tieEmbeddings ? 'embed.tokens' : 'lm_head.weight';
  const ranges = vocabChunks(c.vocabSize, opts.output, opts.vocabChunk);
  const headChunks = !hasHead
    ? []
    : ranges.map(([v0, v1]) => ({
        w: ranges.length === 1 ? kit.weight(headRole) : kit.weightRows(headRole, v0, v1),
        v0,
        v1,
      }));

  // Positions 0 … seq−1 of a full graph ([seq]), or the KV-cache graph's position_ids ([batch, seq]).
  const positions = (): string =>
    cache ? positionIds : g.op('Range', [g.constInt64([0], []), seqScalar, g.constInt64([1], [])]);

  // Token embedding (or the block's input hidden states), flattened to [N = batch*seq, D] for the linears.
  let x: string;
  if (!hasEmbed) {
    x = g.op('Reshape', [hiddenIn, g.constInt64([-1, D])]);
  } else {
    const ids1d = g.op('Reshape', [inputIds, minus1()]);
    x =
      c.tieEmbeddings && ranges.length > 1
        ? kit.gatherRows(headRole, headChunks, ids1d)
        : kit.gatherRows('embed.tokens', [{ w: kit.weight('embed.tokens'), v0: 0, v1: c.vocabSize }], ids1d);
    if (c.embedScale !== undefined && c.embedScale !== 1)
      x = g.op('Mul', [x, g.constFloat([c.embedScale], [])]);
    if (c.positionKind === 'learned') {
      // [seq, D] broadcast over the batch, or [batch, seq, D] from position_ids; added on [batch, seq, D].
      const bsd = g.op('Concat', [batchDim, seqDim, g.constInt64([D])], { axis: 0 });
      const x3 = g.op('Add', [g.op('Reshape', [x, bsd]), kit.learnedPositions(positions())]);
      x = g.op('Reshape', [x3, g.constInt64([-1, D])]);
    }
  }

  // Capture graphs: token weights [N, 1] multiplied into each captured input before its reduction.
  const tokenWeight =
    captured.size > 0
      ? g.op('Reshape', [g.input('token_weight', 'float32', ['batch', 'seq']), g.constInt64([-1, 1])])
      : '';
  const capture = (layer: number, point: CapturePoint, input: string, width: number): void => {
    if (!captured.has(layer) || (opts.capture?.points && !opts.capture.points.includes(point))) return;
    const xw = g.op('Mul', [input, tokenWeight]);
    const name = statsName(layer, point);
    if (opts.capture?.kind === 'gram') {
      g.node('Gemm', [xw, xw], { transA: 1 }, { outputs: [name] });
      g.output(name, 'float32', [width, width]);
    } else {
      g.node('ReduceSumSquare', [xw], { axes: [0], keepdims: 0 }, { outputs: [name] });
      g.output(name, 'float32', [width]);
    }
  };

  // Rotary cos/sin tables [maxPositions, hd] (rope models only).
  let cosTable: string | undefined;
  let sinTable: string | undefined;
  if (rope) {
    const tables = rotaryTables(c, c.maxPositions);
    cosTable = g.initializer('rotary.cos', { type: 'float32', dims: [c.maxPositions, hd], data: tables.cos });
    sinTable = g.initializer('rotary.sin', { type: 'float32', dims: [c.maxPositions, hd], data: tables.sin });
  }
  const scale = c.attnScale ?? 1 / Math.sqrt(hd);
  const fused = !cache && (opts.attention ?? 'fused') === 'fused' && fusedCapable(c);
  const fusedLayer = fused
    ? fusedCausalAttention({
        g,
        op: opts.fusedOp ?? 'GroupQueryAttention',
        headDim: hd,
        batchDim,
        seqDim,
        cosTable,
        sinTable,
        ...(c.attnScale !== undefined ? { scale: c.attnScale } : {}),
      })
    : undefined;

  // Explicit path: rotary cos/sin [seq, hd] (full graphs) or [batch, 1, seq, hd] (from position_ids), and the
  // additive masks per sliding window (0 = global).
  const one = (): string => g.constInt64([1]);
  let rotate = (t: string): string => t;
  if (!fused && rope && cosTable && sinTable) {
    const rotary = halfSplitRotary(g, hd);
    let cos: string;
    let sin: string;
    if (cache) {
      cos = g.op('Unsqueeze', [g.op('Gather', [cosTable, positionIds], { axis: 0 }), one()]);
      sin = g.op('Unsqueeze', [g.op('Gather', [sinTable, positionIds], { axis: 0 }), one()]);
    } else {
      cos = g.op('Slice', [cosTable, g.constInt64([0]), seqDim, g.constInt64([0])]);
      sin = g.op('Slice', [sinTable, g.constInt64([0]), seqDim, g.constInt64([0])]);
    }
    rotate = (t) => rotary(t, cos, sin);
  }
  const masks = new Map<number, string>();
  const maskOf = (window: number): string => {
    const known = masks.get(window);
    if (known) return known;
    // Query i sits at absolute index total − seq + i (total = seq without a cache) and may see keys j ≤ that
    // index (within the window, when there is one) whose attention_mask is 1. A large finite negative instead
    // of −inf keeps fully padded rows from turning into NaN.
    const total = cache ? g.op('Slice', [g.op('Shape', [attentionMask]), one(), g.constInt64([2])]) : seqDim;
    const totalScalar = g.op('Squeeze', [total, g.constInt64([0])]);
    const start = g.op('Sub', [totalScalar, seqScalar]);
    const rows = g.op('Unsqueeze', [g.op('Range', [start, totalScalar, g.constInt64([1], [])]), one()]); // [seq, 1]
    const cols = g.op('Range', [g.constInt64([0], []), totalScalar, g.constInt64([1], [])]); // [total]
    let blocked = g.op('Greater', [cols, rows]); // [seq, total]
    if (window > 0) {
      const tooOld = g.op('LessOrEqual', [cols, g.op('Sub', [rows, g.constInt64([window], [])])]);
      blocked = g.op('Or', [blocked, tooOld]);
    }
    if (cache) {
      const padded = g.op('Unsqueeze', [
        g.op('Equal', [attentionMask, g.constInt64([0], [])]),
        g.constInt64([1, 2]),
      ]); // [batch, 1, 1, total]
      blocked = g.op('Or', [blocked, padded]); // [batch, 1, seq, total]
    }
    const mask = g.op('Where', [blocked, g.constFloat([-1e30], []), g.constFloat([0], [])]);
    masks.set(window, mask);
    return mask;
  };

  const encode = (): EncodedModel =>
    g.encodeModel({
      opset: OPSET,
      msOpset: fused ? 1 : undefined,
      external: {
        threshold: opts.externalDataThreshold ?? Number.POSITIVE_INFINITY,
        location: 'weights.bin',
        blobs: isWeightFile(weights) ? undefined : weights.blobs,
      },
    });

  const splitHeads = (t: string, heads: number): string => {
    const shape = g.op('Concat', [batchDim, seqDim, g.constInt64([heads, hd])], { axis: 0 });
    return g.op('Transpose', [g.op('Reshape', [t, shape])], { perm: [0, 2, 1, 3] });
  };
  /** Layer i's head mask [heads] (its first `heads` entries of the [layers, maxHeads] input). */
  const layerHeadMask = (i: number, heads: number): string => {
    const layerMask = g.op('Gather', [headMask, g.constInt64([i], [])], { axis: 0 }); // [maxHeads]
    return heads === maxHeads
      ? layerMask
      : g.op('Slice', [layerMask, g.constInt64([0]), g.constInt64([heads])]);
  };
  /** A residual branch's output, through the sandwich norm when the model has one (Gemma 2). */
  const branch = (y: string, role: string): string => (c.sandwichNorms ? kit.norm(y, role) : y);

  for (let i = from; i < to; i++) {
    const heads = c.headsPerLayer[i];
    const kvHeads = c.kvHeadsPerLayer[i];
    const p = `layers.${i}`;
    kit.setAnchor(x);
    if (heads === 0 && cache) {
      // No attention here: the cache still has this layer, with zero KV heads, so its shapes stay consistent.
      const emptyShape = g.op('Concat', [batchDim, g.constInt64([0]), seqDim, g.constInt64([hd])], {
        axis: 0,
      });
      const empty = g.op('ConstantOfShape', [emptyShape], {
        value: { tensor: { type: 'float32', dims: [1], data: Float32Array.from([0]) } },
      });
      for (const kind of ['key', 'value'] as const) {
        g.node('Concat', [past(i, kind), empty], { axis: 2 }, { outputs: [`present.${i}.${kind}`] });
        g.output(`present.${i}.${kind}`, 'float32', ['batch', 0, 'total', hd]);
      }
    }
    if (heads > 0) {
      const h = kit.norm(x, `${p}.attn_norm`);
      capture(i, 'attn_in', h, D);
      const q = kit.linear(h, `${p}.attn.q`);
      const k = kit.linear(h, `${p}.attn.k`);
      const v = kit.linear(h, `${p}.attn.v`);
      let merged: string;
      if (fusedLayer) {
        merged = fusedLayer({
          q,
          k,
          v,
          heads,
          kvHeads,
          kvMap: kvMapOfLayer(c, i),
          keep: layerHeadMask(i, heads),
        });
      } else {
        let kh = rotate(splitHeads(k, kvHeads));
        let vh = splitHeads(v, kvHeads);
        if (cache) {
          kh = g.node('Concat', [past(i, 'key'), kh], { axis: 2 }, { outputs: [`present.${i}.key`] })[0];
          vh = g.node('Concat', [past(i, 'value'), vh], { axis: 2 }, { outputs: [`present.${i}.value`] })[0];
          g.output(`present.${i}.key`, 'float32', ['batch', kvHeads, 'total', hd]);
          g.output(`present.${i}.value`, 'float32', ['batch', kvHeads, 'total', hd]);
        }
        merged = explicitAttention(g, hd, {
          q: rotate(splitHeads(q, heads)),
          k: kh,
          v: vh,
          heads,
          kvHeads,
          kvMap: kvMapOfLayer(c, i),
          mask: maskOf(c.slidingWindow?.[i] ?? 0),
          scale,
          softcap: c.attnSoftcap,
          keep: cache ? undefined : layerHeadMask(i, heads),
        });
      }
      capture(i, 'o_in', merged, heads * hd);
      x = g.op('Add', [x, branch(kit.linear(merged, `${p}.attn.o`), `${p}.post_attn_norm`)]);
    }
    const h2 = kit.norm(x, `${p}.mlp_norm`);
    capture(i, 'mlp_in', h2, D);
    const out = kit.mlp(h2, i, (downIn) => capture(i, 'down_in', downIn, c.intermediateSize));
    x = g.op('Add', [x, branch(out, `${p}.post_mlp_norm`)]);
  }

  if (!hasHead) {
    const bsd = g.op('Concat', [batchDim, seqDim, g.constInt64([D])], { axis: 0 });
    g.node('Reshape', [x, bsd], {}, { outputs: ['hidden'] });
    g.output('hidden', 'float32', ['batch', 'seq', D]);
    return encode();
  }

  kit.setAnchor(x);
  x = kit.norm(x, 'final_norm');
  // fp32 values of the head (whole, for the logits modes: one chunk).
  const headWeight = headChunks.length === 1 ? kit.floatOf(headChunks[0].w, headRole) : '';
  /** Logits of rows `rows` [n, D] against head weights `w` (fp32), soft-capped when the model says so. */
  const logitsOf = (rows: string, w: string, name?: string): string => {
    const cap = c.finalSoftcap;
    if (!cap) return g.node('Gemm', [rows, w], { transB: 1 }, name ? { outputs: [name] } : {})[0];
    const capped = g.op('Div', [g.op('Gemm', [rows, w], { transB: 1 }), g.constFloat([cap], [])]);
    return g.node(
      'Mul',
      [g.op('Tanh', [capped]), g.constFloat([cap], [])],
      {},
      name ? { outputs: [name] } : {},
    )[0];
  };
  const V = c.vocabSize;
  const bsv = g.op('Concat', [batchDim, seqDim, g.constInt64([V])], { axis: 0 });
  const perToken = (v: string, name: string) => {
    g.node('Reshape', [v, g.op('Concat', [batchDim, seqDim], { axis: 0 })], {}, { outputs: [name] });
    g.output(name, 'float32', ['batch', 'seq']);
  };
  /** Sums a list of same-shaped values. */
  const sumAll = (vs: string[]): string => vs.reduce((a, b) => g.op('Add', [a, b]));
  /**
   * The head in chunks: logits [N, chunk] one chunk at a time, each reduced to its log-sum-exp [N, 1] before the
   * next; `each` sees every chunk's logits (KL terms). Returns log Σ exp(logits) over the whole vocabulary [N].
   */
  const chunkedLse = (each?: (logits: string, v0: number, v1: number) => void): string => {
    const parts = headChunks.map(({ w, v0, v1 }) => {
      // A narrow chunk is widened only once the previous chunk is reduced (anchored on its result), so one
      // fp32 chunk exists at a time.
      const logits = logitsOf(x, kit.floatOf(w, headRole, [v1 - v0, D]));
      each?.(logits, v0, v1);
      const lse = g.op('ReduceLogSumExp', [logits], { axes: [-1], keepdims: 1 });
      kit.setAnchor(lse);
      return lse;
    });
    return g.op('ReduceLogSumExp', [g.op('Concat', parts, { axis: 1 })], { axes: [-1], keepdims: 0 });
  };

  switch (opts.output) {
    case 'last_logits': {
      const x3 = g.op('Reshape', [x, g.op('Concat', [batchDim, seqDim, g.constInt64([D])], { axis: 0 })]);
      const lastIdx = g.op('Sub', [seqScalar, g.constInt64([1], [])]);
      const last = g.op('Gather', [x3, lastIdx], { axis: 1 }); // [batch, D]
      logitsOf(last, headWeight, 'logits');
      g.output('logits', 'float32', ['batch', V]);
      break;
    }
    case 'row_logits': {
      // Row b's hidden state at position last_index[b]: right padding after it is invisible under causal attention.
      const lastIndex = g.input('last_index', 'int64', ['batch']);
      const x3 = g.op('Reshape', [x, g.op('Concat', [batchDim, seqDim, g.constInt64([D])], { axis: 0 })]);
      const idx = g.op('Unsqueeze', [lastIndex, g.constInt64([1])]); // [batch, 1]
      const last = g.op('GatherND', [x3, idx], { batch_dims: 1 }); // [batch, D]
      logitsOf(last, headWeight, 'logits');
      g.output('logits', 'float32', ['batch', V]);
      break;
    }
    case 'logits': {
      const logits = logitsOf(x, headWeight);
      g.node('Reshape', [logits, bsv], {}, { outputs: ['logits'] });
      g.output('logits', 'float32', ['batch', 'seq', V]);
      break;
    }
    case 'logprobs': {
      const logp = g.op('LogSoftmax', [logitsOf(x, headWeight)], { axis: -1 });
      g.node('Reshape', [logp, bsv], {}, { outputs: ['logprobs'] });
      g.output('logprobs', 'float32', ['batch', 'seq', V]);
      break;
    }
    case 'nll': {
      const targets = g.input('targets', 'int64', ['batch', 'seq']);
      const t1d = g.op('Reshape', [targets, minus1()]);
      if (headChunks.length === 1) {
        const logits = logitsOf(x, headWeight);
        const nll = g.op('SoftmaxCrossEntropyLoss', [logits, t1d], {
          reduction: 'none',
          ignore_index: IGNORE_INDEX,
        });
        perToken(nll, 'nll');
        break;
      }
      // −log p(t) = logsumexp(logits) − logit_t, with logit_t = x · W[t] from the target's own row.
      const valid = g.op('Not', [g.op('Equal', [t1d, g.constInt64([IGNORE_INDEX], [])])]);
      const tIdx = g.op('Where', [valid, t1d, g.constInt64([0], [])]);
      let targetLogit = g.op(
        'ReduceSum',
        [g.op('Mul', [x, kit.gatherRows(headRole, headChunks, tIdx)]), g.constInt64([-1])],
        {
          keepdims: 0,
        },
      );
      // The lse is over soft-capped logits (logitsOf), so the target's logit is capped the same way.
      const cap = c.finalSoftcap;
      if (cap) {
        const capped = g.op('Tanh', [g.op('Div', [targetLogit, g.constFloat([cap], [])])]);
        targetLogit = g.op('Mul', [capped, g.constFloat([cap], [])]);
      }
      const nll = g.op('Sub', [chunkedLse(), targetLogit]);
      perToken(g.op('Where', [valid, nll, g.constFloat([0], [])]), 'nll');
      break;
    }
    case 'kl': {
      const ref = g.input('ref_logprobs', 'float32', ['batch', 'seq', V]);
      const ref2 = g.op('Reshape', [ref, g.constInt64([-1, V])]);
      if (headChunks.length === 1) {
        const logp = g.op('LogSoftmax', [logitsOf(x, headWeight)], { axis: -1 });
        const terms = g.op('Mul', [g.op('Exp', [ref2]), g.op('Sub', [ref2, logp])]);
        perToken(g.op('ReduceSum', [terms, g.constInt64([-1])], { keepdims: 0 }), 'kl');
        break;
      }
      // KL = Σ_v p_v (r_v − logit_v + lse) = Σ_chunks Σ p_v (r_v − logit_v) + lse · Σ_v p_v, with p = exp(r).
      const cross: string[] = [];
      const mass: string[] = [];
      const lse = chunkedLse((logits, v0, v1) => {
        const r = g.op('Slice', [ref2, g.constInt64([v0]), g.constInt64([v1]), g.constInt64([1])]);
        const p = g.op('Exp', [r]);
        const sum = (v: string) => g.op('ReduceSum', [v, g.constInt64([-1])], { keepdims: 0 });
        cross.push(sum(g.op('Mul', [p, g.op('Sub', [r, logits])])));
        mass.push(sum(p));
      });
      perToken(g.op('Add', [sumAll(cross), g.op('Mul', [lse, sumAll(mass)])]), 'kl');
      break;
    }
    case 'hidden':
      throw new Error('decoder graph: unreachable (hidden output checked above)');
  }
  return encode();
}
