/**
 * The evaluation graph (and the KV-cache deployment graph) of decoder-only causal language models: the LLaMA
 * family (rotary positions, RMS norm, gated MLP), GPT-2 (learned positions, LayerNorm, plain MLP), Gemma /
 * Gemma 2 (scaled embedding, 1 + w norms, sandwich norms, soft-capping, sliding windows) and Qwen3 (per-head
 * q/k RMSNorm before rotary, `qkNorm`). This file holds the
 * wiring; the shared per-layer units are in layer.ts, capture points in capture.ts, the language-model head in
 * lmhead.ts, block ranges in blocks.ts, the rotary tables in attention.ts.
 *
 * Inputs:
 *   input_ids  int64 [batch, seq]
 *   head_mask  float [layers, maxHeads]  1 keeps a query head, 0 drops it (multiplied into the head's attention
 *                                        output before the output projection, which is exactly what removing
 *                                        the head's o_proj columns does)
 *   targets    int64 [batch, seq]        next-token ids, -100 = ignore (output 'nll')
 *   ref_logprobs float [batch, seq, vocab] log-probabilities of a reference model (output 'kl')
 *   mask.<role> bool, the weight's shape  one per masked linear weight (true keeps the weight)
 *   channel_mask float [layers, maxWidth]  only with `structuredMasks`: multiplies layer i's MLP intermediate
 *                                        activation (the first width_i entries of row i: the input of down)
 *   block_mask  float [layers, 2]        only with `structuredMasks`: multiplies layer i's attention (0) and
 *                                        MLP (1) block outputs, after their bias and sandwich norm, just before
 *                                        the residual add (masks/structured.ts states both masks' semantics)
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
 * A layer without attention heads has no attn_in / o_in (its attention block adds o's bias alone, where o has
 * one), a layer of MLP width 0 (intermediateOf) no mlp_in / down_in (its MLP block adds down's bias alone, where
 * down has one). `capture.points` outputs only the points named (capture.ts).
 *
 * Attention is one fused causal kernel per layer (attention.ts); `attention: 'explicit'` keeps the plain-operator
 * chain, which the KV-cache graph always uses.
 *
 * Linear layers use Gemm with transB=1 so weights stay in the checkpoint's [out, in] layout: no transposed
 * copies, and weight masks line up with checkpoint tensors one to one.
 */
import { GenepruneError } from '../errors.js';
import type { ModelConfig, ModelSpec } from '../model/spec.js';
import { intermediateOf, kvMapOfLayer } from '../model/spec.js';
import {
  type AttentionKind,
  explicitAttention,
  type FusedAttentionOp,
  fusedCausalAttention,
  halfSplitRotary,
  rotaryTables,
} from './attention.js';
import { layerRange } from './blocks.js';
import { type EncodedModel, GraphBuilder, OPSET } from './builder.js';
import {
  type CaptureOptions,
  capturedLayers,
  captureRecorder,
  residualRecorder,
  tokenWeightInput,
} from './capture.js';
import { createKit, type HalfLinears } from './kit.js';
import { layerUnits, maxWidthOf } from './layer.js';
import { type GraphOutputMode, headChunksOf, headRoleOf, lmHead } from './lmhead.js';
import { isWeightFile, type Weights } from './weights.js';

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
   * Evaluation graphs: add the structured mask inputs channel_mask and block_mask (see the header). Without it
   * the graph is exactly what it was before they existed. Not in KV-cache graphs (an export is physically pruned).
   */
  structuredMasks?: boolean;
  /**
   * Evaluation graphs: 'fused' (default) runs one ONNX Runtime attention kernel per layer; 'explicit' the plain
   * QKᵀ/mask/Softmax/·V chain (the reference the fused path is tested against, and the benchmark's "before").
   * The KV-cache graph is always explicit: its left-padding attention_mask has no exact fused equivalent.
   */
  attention?: AttentionKind;
  /** Which fused kernel (benchmarks re-measure the choice); GroupQueryAttention by default. */
  fusedOp?: FusedAttentionOp;
  /**
   * The longest row the graph will be fed, when the caller knows it (an evaluation context): sliding windows at
   * least this long hide no key, so a windowed model keeps the fused kernel. The runner refuses longer rows.
   */
  maxSeq?: number;
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

export type { HalfLinears } from './kit.js';

/**
 * The spec fields this builder implements, and the values it builds; any other value is refused in one line
 * rather than computed as something else (a spec can describe more than this graph builds).
 */
const HONOURED: ReadonlyArray<[keyof ModelConfig, readonly unknown[]]> = [
  ['arch', [undefined, 'decoder']],
  ['family', ['llama', 'gpt2', 'gemma', 'qwen3', 'phi3', 'opt']],
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

/**
 * The fused kernels implement plain causal attention with a score scale over whole-head rotary; soft-capped or
 * windowed layers and partial rotary run the explicit chain. A window hides a key only in a row longer than the
 * window, so a window at least as long as every row the graph runs counts as none: as long as the position table
 * (Phi-3-mini-128k's sliding_window past max_position_embeddings), or as `maxSeq` (Mistral-7B-v0.1's 4096 under an
 * evaluation context of 2048).
 */
function fusedCapable(c: ModelConfig, maxSeq: number | undefined): boolean {
  const rotaryDim = c.rotaryDim ?? c.headDim;
  const longestRow = Math.min(c.maxPositions, maxSeq ?? c.maxPositions);
  return (
    !c.attnSoftcap && !(c.slidingWindow ?? []).some((w) => w > 0 && w < longestRow) && rotaryDim === c.headDim
  );
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
  const captured = capturedLayers(opts.capture, [from, to], 'decoder graph');
  if (cache && captured.size > 0) throw new Error('decoder graph: a KV-cache graph captures no statistics');
  const inputIds = hasEmbed ? g.input('input_ids', 'int64', ['batch', 'seq']) : '';
  const hiddenIn = hasEmbed ? '' : g.input('hidden_in', 'float32', ['batch', 'seq', D]);
  const attentionMask = cache ? g.input('attention_mask', 'int64', ['batch', 'total']) : '';
  const positionIds = cache ? g.input('position_ids', 'int64', ['batch', 'seq']) : '';
  const headMask = cache ? '' : g.input('head_mask', 'float32', [c.numLayers, maxHeads]);
  if (cache && opts.structuredMasks)
    throw new Error('decoder graph: a KV-cache graph takes no structured masks');
  const channelMask = opts.structuredMasks
    ? g.input('channel_mask', 'float32', [c.numLayers, maxWidthOf(c)])
    : '';
  const blockMask = opts.structuredMasks ? g.input('block_mask', 'float32', [c.numLayers, 2]) : '';
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
  const headRole = headRoleOf(c);
  const headChunks = headChunksOf(kit, c, opts.output, opts.vocabChunk, hasHead);

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
      c.tieEmbeddings && headChunks.length > 1
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
  const tokenWeight = tokenWeightInput(g, captured);
  const capture = captureRecorder(g, opts.capture, captured, tokenWeight);
  const residual = residualRecorder(g, opts.capture, captured, tokenWeight);

  // Rotary cos/sin tables [maxPositions, hd] (rope models only).
  let cosTable: string | undefined;
  let sinTable: string | undefined;
  /**
   * The rotary rows a graph reads, `select` picking them from a [maxPositions, hd] table. LongRoPE switches every
   * position to the long factors once the run is longer than the original context — seq in full and block graphs
   * (positions 0 … seq−1), the largest position_id + 1 with a KV cache (transformers takes the maximum over the
   * whole batch) — so both tables are held and Where picks between the selected rows, not the whole tables.
   */
  let rotaryRows = (_select: (table: string) => string): { cos: string; sin: string } | undefined =>
    undefined;
  if (rope) {
    const dims = [c.maxPositions, hd];
    const tables = rotaryTables(c, c.maxPositions);
    cosTable = g.initializer('rotary.cos', { type: 'float32', dims, data: tables.cos });
    sinTable = g.initializer('rotary.sin', { type: 'float32', dims, data: tables.sin });
    const [cosShort, sinShort] = [cosTable, sinTable];
    rotaryRows = (select) => ({ cos: select(cosShort), sin: select(sinShort) });
    const scaling = c.ropeScaling;
    if (scaling?.kind === 'longrope') {
      const long = rotaryTables(c, c.maxPositions, true);
      const cosLong = g.initializer('rotary.cos_long', { type: 'float32', dims, data: long.cos });
      const sinLong = g.initializer('rotary.sin_long', { type: 'float32', dims, data: long.sin });
      const length = cache
        ? g.op('Add', [g.op('ReduceMax', [positionIds], { keepdims: 0 }), g.constInt64([1], [])])
        : seqScalar;
      const isLong = g.op('Greater', [length, g.constInt64([scaling.originalMaxPositions], [])]);
      rotaryRows = (select) => ({
        cos: g.op('Where', [isLong, select(cosLong), select(cosShort)]),
        sin: g.op('Where', [isLong, select(sinLong), select(sinShort)]),
      });
    }
  }
  const firstRows = (table: string): string =>
    g.op('Slice', [table, g.constInt64([0]), seqDim, g.constInt64([0])]);
  const scale = c.attnScale ?? 1 / Math.sqrt(hd);
  const fused = !cache && (opts.attention ?? 'fused') === 'fused' && fusedCapable(c, opts.maxSeq);
  // The fused kernel reads rows 0 … seq−1 of its tables (positions are 0 … seq−1): unscaled models pass the whole
  // tables as before, longrope the chosen first seq rows.
  const fusedTables = !fused
    ? undefined
    : c.ropeScaling?.kind === 'longrope'
      ? rotaryRows(firstRows)
      : cosTable && sinTable
        ? { cos: cosTable, sin: sinTable }
        : undefined;
  const fusedLayer = fused
    ? fusedCausalAttention({
        g,
        op: opts.fusedOp ?? 'GroupQueryAttention',
        headDim: hd,
        batchDim,
        seqDim,
        cosTable: fusedTables?.cos,
        sinTable: fusedTables?.sin,
        ...(c.attnScale !== undefined ? { scale: c.attnScale } : {}),
      })
    : undefined;

  // Explicit path: rotary cos/sin [seq, hd] (full graphs) or [batch, 1, seq, hd] (from position_ids), and the
  // additive masks per sliding window (0 = global).
  const one = (): string => g.constInt64([1]);
  let rotate = (t: string): string => t;
  const rows = !fused
    ? rotaryRows(
        cache
          ? (table) => g.op('Unsqueeze', [g.op('Gather', [table, positionIds], { axis: 0 }), one()])
          : firstRows,
      )
    : undefined;
  if (rows) {
    const rotary = halfSplitRotary(g, hd, c.rotaryDim ?? hd);
    rotate = (t) => rotary(t, rows.cos, rows.sin);
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

  const { splitHeads, layerHeadMask, mlp, gateBlock, biasAlone } = layerUnits({
    g,
    kit,
    config: c,
    batchDim,
    seqDim,
    headMask,
    capture,
    channelMask,
    blockMask,
  });
  /**
   * Qwen3's per-head q/k norm on a projection [N, n·hd]: RMSNorm over each head's hd values with one [hd] weight
   * shared by the heads, before rotary — so every attention path (fused, explicit, KV cache) sees normed heads.
   */
  const headNorm = (t: string, n: number, prefix: string): string =>
    c.qkNorm
      ? g.op('Reshape', [
          kit.norm(g.op('Reshape', [t, g.constInt64([-1, n, hd])]), prefix),
          g.constInt64([-1, n * hd]),
        ])
      : t;
  /** A residual branch's output, through the sandwich norm when the model has one (Gemma 2). */
  const branch = (y: string, role: string): string => (c.sandwichNorms ? kit.norm(y, role) : y);

  for (let i = from; i < to; i++) {
    const heads = c.headsPerLayer[i];
    const kvHeads = c.kvHeadsPerLayer[i];
    const p = `layers.${i}`;
    kit.setAnchor(x);
    const layerIn = x;
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
      const q = headNorm(kit.linear(h, `${p}.attn.q`), heads, `${p}.attn.q_norm`);
      const k = headNorm(kit.linear(h, `${p}.attn.k`), kvHeads, `${p}.attn.k_norm`);
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
          keep: layerHeadMask(i, heads)!,
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
      const attended = branch(kit.linear(merged, `${p}.attn.o`), `${p}.post_attn_norm`);
      x = g.op('Add', [x, gateBlock(i, 0, attended)]);
      residual(i, 'attn', layerIn, x);
    } else {
      // No heads: the block's output is the o projection's bias alone (what the masked model computes with
      // every head off), or nothing where o has no bias.
      const bias = biasAlone(`${p}.attn.o.bias`);
      if (bias) x = g.op('Add', [x, gateBlock(i, 0, branch(bias, `${p}.post_attn_norm`))]);
    }
    const mlpIn = x;
    if (intermediateOf(c, i) > 0) {
      const h2 = kit.norm(x, `${p}.mlp_norm`);
      capture(i, 'mlp_in', h2, D);
      const out = mlp(i, h2);
      x = g.op('Add', [x, gateBlock(i, 1, branch(out, `${p}.post_mlp_norm`))]);
      residual(i, 'mlp', mlpIn, x);
    } else {
      // Width 0: no MLP matmuls (and no mlp_in / down_in statistics); down's bias alone where it has one.
      const bias = biasAlone(`${p}.mlp.down.bias`);
      if (bias) x = g.op('Add', [x, gateBlock(i, 1, branch(bias, `${p}.post_mlp_norm`))]);
    }
    residual(i, 'layer', layerIn, x);
  }

  if (!hasHead) {
    const bsd = g.op('Concat', [batchDim, seqDim, g.constInt64([D])], { axis: 0 });
    g.node('Reshape', [x, bsd], {}, { outputs: ['hidden'] });
    g.output('hidden', 'float32', ['batch', 'seq', D]);
    return encode();
  }

  lmHead({ g, kit, config: c, output: opts.output, headChunks, batchDim, seqDim, seqScalar }, x);
  return encode();
}
