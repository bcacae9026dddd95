/**
 * The graphs of encoder-decoders (T5 v1.0, T5 v1.1 / Flan-T5, CodeT5; arch 'encdec', EncDecConfig in
 * model/spec.ts), assembled from the shared blocks (kit.ts, explicitAttention, lmhead.ts):
 *
 * 1. The evaluation graph (`buildEncDecGraph`), teacher-forced: the encoder reads the source, the decoder reads
 *    decoder_input_ids (the start token, then the target shifted right) and attends to the encoder output.
 *    Inputs:
 *      input_ids          int64 [batch, src]    source tokens, right-padded
 *      attention_mask     int64 [batch, src]    1 = real source token, 0 = padding (no query attends to it, in the
 *                                               encoder's self-attention and in cross-attention)
 *      decoder_input_ids  int64 [batch, seq]    right padding needs no mask: decoder self-attention is causal
 *      head_mask          float [L + Dd, maxHeads]  rows 0 … E−1 encoder self-attention, E … L−1 decoder
 *                                               self-attention, L … L+Dd−1 cross-attention of decoder block
 *                                               0 … Dd−1 (L = numLayers, E encoder blocks, Dd decoder blocks);
 *                                               maxHeads over self and cross heads. 1 keeps a head, 0 drops it
 *                                               (multiplied into the head's output before its o projection).
 *      targets            int64 [batch, seq]    output 'nll': the target ids, −100 = ignore
 *      last_index         int64 [batch]         output 'row_logits': the decoder position to read in each row
 *      mask.<role>        bool, the weight's shape  weight masks, on any linear (self, cross, MLP)
 *    Outputs: 'nll' nll [batch, seq]; 'logits' logits [batch, seq, vocab]; 'row_logits' logits [batch, vocab];
 *    'hidden' last_hidden_state [batch, src, D] (the final encoder output, after encoder_norm).
 *
 * 2. The generation graphs, in the layout transformers.js v4 runs a T5 export with (its seq2seq forward):
 *    `buildEncDecEncoderGraph` (onnx/encoder_model.onnx): input_ids, attention_mask → last_hidden_state;
 *    `buildEncDecStepGraph` (onnx/decoder_model_merged.onnx): input_ids [batch, new] (the new decoder tokens),
 *    encoder_attention_mask, encoder_hidden_states [batch, src, D], past_key_values.{d}.decoder.key/value
 *    [batch, heads_d, past, hd], past_key_values.{d}.encoder.key/value [batch, crossHeads_d, srcOrZero, hd],
 *    use_cache_branch bool [1] → logits [batch, new, vocab], present.{d}.decoder.* (past + new positions) and
 *    present.{d}.encoder.* ({d} counts decoder blocks). The cross-attention K/V are computed from
 *    encoder_hidden_states while the encoder cache is empty (the first step) and passed through after: the graph
 *    projects only the encoder positions the cache does not hold yet, so it is exact whatever use_cache_branch
 *    says (transformers.js feeds it true exactly when it feeds a filled cache; it is an input so the file has the
 *    interface transformers.js expects). Without `deploy` both graphs take head_mask (the evaluation graph's
 *    rows) and weight masks, so `generate --mask` runs a masked model on the same graphs.
 *
 * T5 semantics: RMS norms without mean or bias, pre-norm blocks, scores q·k without 1/√headDim, a learned
 * relative-position bias from each stack's table (bidirectional buckets in the encoder, causal in the decoder,
 * every layer of the stack reading the same table, query head h of layer l reading column relColumnOfQuery[l][h];
 * none in cross-attention), the decoder output times outputScale before the head.
 *
 * Buckets: T5's `_relative_position_bucket` saturates for |key − query| ≥ max(maxDistance, buckets), so each
 * stack's bucket ids are one int64 table over relative positions −R … R (R = that bound) computed here at build
 * time (`relativePositionBucket`, in float32 as PyTorch computes it), and the graph gathers it at
 * clip(key − query, −R, R) + R: exact for rows of any length.
 *
 * Block graphs (`layers: [from, to)`, blocks numbered over both stacks, E encoder blocks), for layer-wise walks
 * (Wanda, recovery, the block search) over both stacks: encoder blocks, then decoder blocks fed the final
 * encoder output. head_mask keeps its full shape in every block; attention_mask (source padding) is an input of
 * every block (encoder self-attention and cross-attention both need it).
 *   from = 0:        input_ids; 0 < from < E: hidden_in [batch, src, D] (the encoder residual stream);
 *   from = E:        encoder_hidden_states [batch, src, D] (the final encoder output) and decoder_input_ids;
 *   from > E:        encoder_hidden_states and hidden_in [batch, seq, D] (the decoder residual stream);
 *   from < E < to:   input_ids or hidden_in as above, and decoder_input_ids.
 *   Output: to < E: 'hidden' [batch, src, D] (residual stream); to = E: 'hidden' [batch, src, D] = the final
 *   encoder output after encoder_norm (what decoder blocks read); E < to < L: 'hidden' [batch, seq, D];
 *   to = L: the head's output mode ('hidden' with to = L means the whole encoder's last_hidden_state).
 * Activation statistics (`capture`, capture.ts): per captured layer, attn_in, o_in, mlp_in, down_in, and in
 * decoder blocks cross_in (cross_norm output), cross_kv_in (the final encoder output, input of cross.k/v) and
 * cross_o_in. Source positions (encoder layers' points and cross_kv_in) are weighted by token_weight
 * [batch, src], decoder positions by decoder_token_weight [batch, seq]; each input exists only when a captured
 * point uses it.
 */
import { GenepruneError } from '../errors.js';
import { encdecOf, type ModelConfig, type ModelSpec, relColumnsOfLayer } from '../model/spec.js';
import { explicitAttention } from './attention.js';
import { layerRange } from './blocks.js';
import { type EncodedModel, GraphBuilder, OPSET } from './builder.js';
import {
  type CaptureOptions,
  type CapturePoint,
  type CaptureRecorder,
  capturedLayers,
  captureRecorder,
} from './capture.js';
import { createKit, type GraphKit, type HalfLinears } from './kit.js';
import { type GraphOutputMode, type HeadChunk, headChunksOf, headRoleOf, lmHead } from './lmhead.js';
import { isWeightFile, type Weights } from './weights.js';

/** The evaluation graph's outputs (see the header). */
export const ENCDEC_OUTPUTS: readonly GraphOutputMode[] = ['nll', 'logits', 'row_logits', 'hidden'];

export interface EncDecGraphOptions {
  output: GraphOutputMode;
  /** Linear weight roles that get a boolean mask input `mask.<role>`. */
  weightMasks?: string[];
  halfLinears?: HalfLinears;
  /** As the decoder's: in-memory weights above this many bytes go to external data (default: inline). */
  externalDataThreshold?: number;
  /** As the decoder's: 'nll' graphs compute the head in vocabulary chunks of this many rows. */
  vocabChunk?: number;
  /** Run blocks from … to−1 only (numbered over both stacks); see the header for a block's inputs and outputs. */
  layers?: readonly [number, number];
  /** Output activation statistics of these layers' linear inputs (see the header). */
  capture?: CaptureOptions;
}

export interface EncDecGenerationOptions {
  /** Physically pruned deployment graphs (what an export writes): no head_mask, no weight masks. */
  deploy?: boolean;
  weightMasks?: string[];
  halfLinears?: HalfLinears;
  externalDataThreshold?: number;
}

/** A blocked key's additive score: finite, so a row with every key blocked stays finite too. */
const BLOCKED = -1e30;

/**
 * T5's relative-position bucket of key − query position `relative`, computed in float32 as PyTorch does (the
 * truncation of the log-spaced part is sensitive to rounding at the bucket edges).
 */
export function relativePositionBucket(
  relative: number,
  bidirectional: boolean,
  buckets: number,
  maxDistance: number,
): number {
  let n = buckets;
  let bucket = 0;
  let r = relative;
  if (bidirectional) {
    n = Math.floor(n / 2);
    if (r > 0) bucket += n;
    r = Math.abs(r);
  } else r = -Math.min(r, 0);
  const maxExact = Math.floor(n / 2);
  if (r < maxExact) return bucket + r;
  const f = Math.fround;
  const logRatio = f(Math.log(f(r / maxExact)));
  const scaled = f(f(logRatio / f(Math.log(maxDistance / maxExact))) * (n - maxExact));
  return bucket + Math.min(maxExact + Math.trunc(scaled), n - 1);
}

/** The relative distance past which every bucket is the same (the table spans −R … R). */
export function bucketRadius(e: { relativeBuckets: number; relativeMaxDistance: number }): number {
  return Math.max(e.relativeMaxDistance, e.relativeBuckets);
}

/**
 * The spec fields these builders implement and the values they build; anything else is refused in one line
 * rather than computed as something else.
 */
const HONOURED: ReadonlyArray<[keyof ModelConfig, readonly unknown[]]> = [
  ['arch', ['encdec']],
  ['family', ['t5']],
  ['normKind', ['rms']],
  ['normPlacement', ['pre']],
  ['mlpKind', ['plain', 'gated']],
  ['activation', ['silu', 'gelu', 'gelu_tanh', 'relu']],
  ['attentionBias', [false]],
  ['attentionOutBias', [false]],
  ['mlpBias', [false]],
  ['kvHeadOfQuery', [undefined]],
  ['normWeightOffset', [undefined, 0]],
  ['embedScale', [undefined, 1]],
  ['attnScale', [undefined]],
  ['attnSoftcap', [undefined]],
  ['finalSoftcap', [undefined]],
  ['sandwichNorms', [undefined, false]],
  ['slidingWindow', [undefined]],
  ['classifier', [undefined]],
];

export function refuseUnhonouredEncDec(c: ModelConfig): void {
  const refuse = (what: string, builds: string) =>
    new GenepruneError(
      'model',
      `the encoder-decoder graph cannot build ${what} (it builds ${builds}); model_type ${c.modelType} is not supported`,
    );
  for (const [field, values] of HONOURED) {
    if (!values.includes(c[field])) {
      const shown = values.map((v) => (v === undefined ? 'none' : JSON.stringify(v))).join(', ');
      throw refuse(`${field} ${JSON.stringify(c[field])}`, shown);
    }
  }
  if (c.kvHeadsPerLayer.some((k, l) => k !== c.headsPerLayer[l])) {
    throw refuse(`kvHeadsPerLayer ${JSON.stringify(c.kvHeadsPerLayer)}`, 'one key/value head per query head');
  }
  const e = encdecOf(c);
  const decoderLayers = c.numLayers - e.encoderLayers;
  if (e.encoderLayers < 1 || decoderLayers < 1 || e.crossHeadsPerLayer.length !== decoderLayers) {
    throw refuse(
      `${e.encoderLayers} encoder blocks of ${c.numLayers} with ${e.crossHeadsPerLayer.length} cross-attention layers`,
      'at least one block per stack and one cross-attention layer per decoder block',
    );
  }
}

/** Rows of the head_mask input: every block's self-attention, then each decoder block's cross-attention. */
export function encdecHeadMaskRows(c: ModelConfig): number {
  return c.numLayers + encdecOf(c).crossHeadsPerLayer.length;
}

/** Columns of the head_mask input: the most heads of any self- or cross-attention layer. */
export function encdecMaxHeads(c: ModelConfig): number {
  return Math.max(...c.headsPerLayer, ...encdecOf(c).crossHeadsPerLayer);
}

/** The shared wiring of the three graphs. */
interface Wiring {
  g: GraphBuilder;
  kit: GraphKit;
  c: ModelConfig;
  /** The head_mask input, '' in deployment graphs. */
  headMask: string;
  maxHeads: number;
}

function wiring(spec: ModelSpec, weights: Weights, what: string, deploy: boolean, masks?: string[]): Wiring {
  const c = spec.config;
  refuseUnhonouredEncDec(c);
  if (deploy && (masks?.length ?? 0) > 0) {
    throw new Error(`${what}: a deployment graph takes no weight masks (inputs transformers.js never feeds)`);
  }
  const g = new GraphBuilder();
  const kit = createKit(g, spec, weights, { weightMasks: masks, what });
  const maxHeads = encdecMaxHeads(c);
  const headMask = deploy ? '' : g.input('head_mask', 'float32', [encdecHeadMaskRows(c), maxHeads]);
  return { g, kit, c, headMask, maxHeads };
}

/** Row `row` of the head mask, cut to `heads` entries (undefined without a head_mask input). */
function rowMask(w: Wiring, row: number, heads: number): string | undefined {
  if (!w.headMask) return undefined;
  const { g } = w;
  const r = g.op('Gather', [w.headMask, g.constInt64([row], [])], { axis: 0 });
  return heads === w.maxHeads ? r : g.op('Slice', [r, g.constInt64([0]), g.constInt64([heads])]);
}

/** 1-element int64 dims of a [batch, seq(, ...)] value. */
function dimsOf(g: GraphBuilder, v: string): { batch: string; seq: string } {
  const shape = g.op('Shape', [v]);
  return {
    batch: g.op('Slice', [shape, g.constInt64([0]), g.constInt64([1])]),
    seq: g.op('Slice', [shape, g.constInt64([1]), g.constInt64([2])]),
  };
}

/** [N, heads·hd] → [batch, heads, seq, hd]. */
function splitHeads(w: Wiring, t: string, batch: string, seq: string, heads: number): string {
  const { g } = w;
  const shape = g.op('Concat', [batch, seq, g.constInt64([heads, w.c.headDim])], { axis: 0 });
  // allowzero: a cached step projects zero encoder positions, and a 0 in the shape must stay 0.
  return g.op('Transpose', [g.op('Reshape', [t, shape], { allowzero: 1 })], { perm: [0, 2, 1, 3] });
}

/**
 * Token embeddings [N, D] of int64 ids [batch, seq] (fp32). A tied head held in vocabulary chunks lends its
 * chunks, so the table is never an initializer of its own beside them (as decoder.ts does).
 */
function embedTokens(w: Wiring, ids: string, headChunks: readonly HeadChunk[]): string {
  const { g, kit, c } = w;
  const flat = g.op('Reshape', [ids, g.constInt64([-1])]);
  if (c.tieEmbeddings && headChunks.length > 1) return kit.gatherRows(headRoleOf(c), headChunks, flat);
  return kit.gatherRows('embed.tokens', [{ w: kit.weight('embed.tokens'), v0: 0, v1: c.vocabSize }], flat);
}

/** Key padding mask [batch, 1, 1, src] (0 attend, BLOCKED padding) from an int64 [batch, src] attention mask. */
function keyPaddingMask(g: GraphBuilder, attentionMask: string): string {
  const padded = g.op('Equal', [attentionMask, g.constInt64([0], [])]);
  return g.op('Unsqueeze', [
    g.op('Where', [padded, g.constFloat([BLOCKED], []), g.constFloat([0], [])]),
    g.constInt64([1, 2]),
  ]);
}

/**
 * A stack's position bias for queries at positions rows [q] and keys at cols [k] (int64 scalars' ranges):
 * returns, per layer, the bias [heads, q, k] of that layer's heads (with `extra` added: a mask broadcasting
 * to [batch, heads, q, k]).
 */
function positionBias(
  w: Wiring,
  stack: 'encoder' | 'decoder',
  rows: string,
  cols: string,
  extra: string,
): (layer: number) => string {
  const { g, kit, c } = w;
  const e = encdecOf(c);
  const R = bucketRadius(e);
  const table = new BigInt64Array(2 * R + 1);
  for (let r = -R; r <= R; r++) {
    table[r + R] = BigInt(
      relativePositionBucket(r, stack === 'encoder', e.relativeBuckets, e.relativeMaxDistance),
    );
  }
  const bucketTable = g.initializer(`rel_bucket.${stack}`, { type: 'int64', dims: [2 * R + 1], data: table });
  const rel = g.op('Sub', [
    g.op('Unsqueeze', [cols, g.constInt64([0])]),
    g.op('Unsqueeze', [rows, g.constInt64([1])]),
  ]); // [q, k]: key − query
  const clipped = g.op('Clip', [rel, g.constInt64([-R], []), g.constInt64([R], [])]);
  const ids = g.op('Gather', [bucketTable, g.op('Add', [clipped, g.constInt64([R], [])])], { axis: 0 });
  const role = `rel_bias.${stack}.weight`;
  // A narrow (fp16/bf16) table is widened where it is read, anchored on this graph's positions.
  kit.setAnchor(rel);
  const values = g.op('Gather', [kit.floatOf(kit.weight(role), role), ids], { axis: 0 }); // [q, k, columns]
  const byColumn = g.op('Transpose', [values], { perm: [2, 0, 1] }); // [columns, q, k]
  const columns = stack === 'encoder' ? e.encoderBiasColumns : e.decoderBiasColumns;
  const made = new Map<string, string>();
  return (layer) => {
    const picked = relColumnsOfLayer(c, layer);
    const key = picked.join(',');
    const known = made.get(key);
    if (known) return known;
    const identity = picked.length === columns && picked.every((col, h) => col === h);
    const bias = identity ? byColumn : g.op('Gather', [byColumn, g.constInt64(picked)], { axis: 0 });
    const withMask = g.op('Add', [bias, extra]);
    made.set(key, withMask);
    return withMask;
  };
}

/** An attention block whose every head is gone adds nothing (T5 has no o bias). */
function zeroBranch(g: GraphBuilder): string {
  return g.constFloat([0], []);
}

/** Capture recorders of a graph: source-weighted (encoder layers, cross_kv_in) and decoder-weighted points. */
/** What one T5 attention (encoder self, decoder self or cross) reads; see `attention`. */
interface AttentionSite {
  /** Role prefix of its q/k/v/o (`layers.3.attn`, `layers.4.cross`). */
  prefix: string;
  /** Rows [N, D] the queries are projected from, and those the keys and values are (the same for self-attention). */
  queryIn: string;
  kvIn: string;
  batch: string;
  seq: string;
  kvSeq: string;
  heads: number;
  /** Additive score mask / position bias. */
  mask: string;
  /** Its head_mask row. */
  row: number;
  /** A KV cache's present output for the fresh keys or values (the tensor itself without a cache). */
  present?: (kind: 'key' | 'value', fresh: string) => string;
}

/**
 * One T5 attention: q, k, v projections split into heads, explicit attention without score scaling under the mask,
 * the head mask applied; returns the merged heads [N, heads·hd] (the o projection's input, which callers record).
 */
function attention(w: Wiring, a: AttentionSite): string {
  const { g, kit } = w;
  const split = (role: string, from: string, seq: string) =>
    splitHeads(w, kit.linear(from, `${a.prefix}.${role}`), a.batch, seq, a.heads);
  const q = split('q', a.queryIn, a.seq);
  const fresh = (kind: 'key' | 'value', role: string) => {
    const t = split(role, a.kvIn, a.kvSeq);
    return a.present ? a.present(kind, t) : t;
  };
  const k = fresh('key', 'k');
  const v = fresh('value', 'v');
  return explicitAttention(g, w.c.headDim, {
    q,
    k,
    v,
    heads: a.heads,
    kvHeads: a.heads,
    kvMap: Array.from({ length: a.heads }, (_, j) => j),
    mask: a.mask,
    scale: 1,
    keep: rowMask(w, a.row, a.heads),
  });
}

interface Recorders {
  source: CaptureRecorder;
  decoder: CaptureRecorder;
}

const NO_CAPTURE: Recorders = { source: () => {}, decoder: () => {} };

/** The input of an encoder stack: source ids (embedded) or the residual stream entering layer `from`. */
type StackInput = { ids: string } | { hidden: string };

/**
 * Encoder layers from … to−1 (to ≤ E) on source rows [batch, src] under attention_mask: returns the residual
 * stream leaving layer to−1 as [N, D], and — when the block reaches the end of the encoder — the final encoder
 * output (after encoder_norm) as `out`.
 */
function encoderStack(
  w: Wiring,
  input: StackInput,
  attentionMask: string,
  headChunks: readonly HeadChunk[],
  [from, to]: readonly [number, number],
  record: CaptureRecorder,
): { x: string; out?: string } {
  const { g, kit, c } = w;
  const e = encdecOf(c);
  const D = c.hiddenSize;
  const { batch, seq } = dimsOf(g, attentionMask);
  const seqScalar = g.op('Squeeze', [seq, g.constInt64([0])]);
  const positions = g.op('Range', [g.constInt64([0], []), seqScalar, g.constInt64([1], [])]);
  const biasOf = positionBias(w, 'encoder', positions, positions, keyPaddingMask(g, attentionMask));
  let x =
    'ids' in input
      ? embedTokens(w, input.ids, headChunks)
      : g.op('Reshape', [input.hidden, g.constInt64([-1, D])]);
  for (let i = from; i < to; i++) {
    const p = `layers.${i}`;
    const heads = c.headsPerLayer[i];
    kit.setAnchor(x);
    const attended = heads > 0 ? selfAttention(w, i, x, { batch, seq }, biasOf(i), record) : '';
    x = g.op('Add', [x, attended || zeroBranch(g)]);
    const h2 = kit.norm(x, `${p}.mlp_norm`);
    record(i, 'mlp_in', h2, D);
    x = g.op('Add', [x, mlpOf(w, i, h2, record)]);
  }
  if (to < e.encoderLayers) return { x };
  kit.setAnchor(x);
  return { x, out: kit.norm(x, 'encoder_norm') };
}

/**
 * Layer i's self-attention on the residual stream x (anchored by the caller): normed, attended over its own
 * positions under `mask`, projected out; records attn_in and o_in. `present` routes fresh keys/values through a
 * decoder's cache.
 */
function selfAttention(
  w: Wiring,
  i: number,
  x: string,
  { batch, seq }: { batch: string; seq: string },
  mask: string,
  record: CaptureRecorder,
  present?: AttentionSite['present'],
): string {
  const { kit, c } = w;
  const p = `layers.${i}`;
  const heads = c.headsPerLayer[i];
  const h = kit.norm(x, `${p}.attn_norm`);
  record(i, 'attn_in', h, c.hiddenSize);
  const merged = attention(w, {
    prefix: `${p}.attn`,
    queryIn: h,
    kvIn: h,
    batch,
    seq,
    kvSeq: seq,
    heads,
    mask,
    row: i,
    ...(present ? { present } : {}),
  });
  record(i, 'o_in', merged, heads * c.headDim);
  return kit.linear(merged, `${p}.attn.o`);
}

/** Layer i's MLP on its normed input, recording down_in. */
function mlpOf(w: Wiring, i: number, h: string, record: CaptureRecorder): string {
  return w.kit.mlp(h, i, (downIn) => record(i, 'down_in', downIn, w.c.intermediateSize));
}

/** Where a decoder stack's self- and cross-attention keys come from. */
interface DecoderCache {
  /** past_key_values.{d}.{decoder,encoder}.{key,value} input names, present.* outputs are added. */
  past: (d: number, part: 'decoder' | 'encoder', kind: 'key' | 'value') => string;
  /** The past decoder length as an int64 scalar. */
  pastLength: string;
  /** The encoder positions whose cross K/V the cache does not hold yet, as an int64 scalar (src or 0). */
  crossStart: string;
}

/**
 * The decoder stack on ids [batch, tgt] (tokens at positions past … past+tgt−1 with a cache, 0 … tgt−1 without)
 * over the encoder output encOut [batch·src, D] (3-D [batch, src, D] with a cache), under srcMask: returns the
 * last block's residual stream [N, D] (before final_norm).
 */
function decoderStack(
  w: Wiring,
  input: StackInput,
  encOut: string,
  srcMask: string,
  cache: DecoderCache | undefined,
  headChunks: readonly HeadChunk[],
  [from, to]: readonly [number, number],
  recorders: Recorders,
): { x: string; batch: string; seq: string; seqScalar: string } {
  const { g, kit, c } = w;
  const e = encdecOf(c);
  const D = c.hiddenSize;
  const hd = c.headDim;
  const L = c.numLayers;
  const { batch, seq } = dimsOf(g, 'ids' in input ? input.ids : input.hidden);
  const seqScalar = g.op('Squeeze', [seq, g.constInt64([0])]);
  const zero = g.constInt64([0], []);
  const one = g.constInt64([1], []);
  const start = cache ? cache.pastLength : zero;
  const total = g.op('Add', [start, seqScalar]);
  const rows = g.op('Range', [start, total, one]);
  const cols = g.op('Range', [zero, total, one]);
  const causal = g.op('Where', [
    g.op('Greater', [
      g.op('Unsqueeze', [cols, g.constInt64([0])]),
      g.op('Unsqueeze', [rows, g.constInt64([1])]),
    ]),
    g.constFloat([BLOCKED], []),
    g.constFloat([0], []),
  ]); // [tgt, total]
  const biasOf = positionBias(w, 'decoder', rows, cols, causal);
  const crossMask = keyPaddingMask(g, srcMask);
  // The encoder positions (with a cache: only those the cache lacks) as [M, D] rows, and their length.
  let encRows = encOut;
  let encSeq = '';
  if (cache) {
    const encDims = dimsOf(g, encOut);
    const srcScalar = g.op('Squeeze', [encDims.seq, g.constInt64([0])]);
    const fresh = g.op('Slice', [
      encOut,
      g.op('Unsqueeze', [cache.crossStart, g.constInt64([0])]),
      g.op('Unsqueeze', [srcScalar, g.constInt64([0])]),
      g.constInt64([1]),
    ]);
    encSeq = g.op('Unsqueeze', [g.op('Sub', [srcScalar, cache.crossStart]), g.constInt64([0])]);
    encRows = g.op('Reshape', [fresh, g.constInt64([-1, D])]);
  } else {
    const encDims = dimsOf(g, srcMask);
    encSeq = encDims.seq;
  }
  /** Present output `name` = Concat(past, fresh) along the sequence axis. */
  const present = (
    d: number,
    part: 'decoder' | 'encoder',
    kind: 'key' | 'value',
    fresh: string,
    heads: number,
  ) => {
    if (!cache) return fresh;
    const name = `present.${d}.${part}.${kind}`;
    g.node('Concat', [cache.past(d, part, kind), fresh], { axis: 2 }, { outputs: [name] });
    const len = part === 'decoder' ? 'present_decoder_sequence_length' : 'encoder_sequence_length_out';
    g.output(name, 'float32', ['batch_size', heads, len, hd]);
    return name;
  };
  /** [batch, 0, len, hd]: the cache entry of a layer without heads still grows with the sequence. */
  const emptyHeads = (len: string) =>
    g.op(
      'ConstantOfShape',
      [g.op('Concat', [batch, g.constInt64([0]), len, g.constInt64([hd])], { axis: 0 })],
      { value: { tensor: { type: 'float32', dims: [1], data: Float32Array.from([0]) } } },
    );

  let x =
    'ids' in input
      ? embedTokens(w, input.ids, headChunks)
      : g.op('Reshape', [input.hidden, g.constInt64([-1, D])]);
  const record = recorders.decoder;
  for (let i = from; i < to; i++) {
    const d = i - e.encoderLayers;
    const p = `layers.${i}`;
    const heads = c.headsPerLayer[i];
    kit.setAnchor(x);
    let attended = '';
    if (heads > 0) {
      attended = selfAttention(w, i, x, { batch, seq }, biasOf(i), record, (kind, fresh) =>
        present(d, 'decoder', kind, fresh, heads),
      );
    } else if (cache) {
      for (const kind of ['key', 'value'] as const) present(d, 'decoder', kind, emptyHeads(seq), 0);
    }
    x = g.op('Add', [x, attended || zeroBranch(g)]);

    const xh = e.crossHeadsPerLayer[d];
    let crossed = '';
    if (xh > 0) {
      kit.setAnchor(x);
      const h = kit.norm(x, `${p}.cross_norm`);
      record(i, 'cross_in', h, D);
      recorders.source(i, 'cross_kv_in', encRows, D);
      const merged = attention(w, {
        prefix: `${p}.cross`,
        queryIn: h,
        kvIn: encRows,
        batch,
        seq,
        kvSeq: encSeq,
        heads: xh,
        mask: crossMask,
        row: L + d,
        present: (kind, fresh) => present(d, 'encoder', kind, fresh, xh),
      });
      record(i, 'cross_o_in', merged, xh * hd);
      crossed = kit.linear(merged, `${p}.cross.o`);
    } else if (cache) {
      for (const kind of ['key', 'value'] as const) present(d, 'encoder', kind, emptyHeads(encSeq), 0);
    }
    x = g.op('Add', [x, crossed || zeroBranch(g)]);
    kit.setAnchor(x);
    const h2 = kit.norm(x, `${p}.mlp_norm`);
    record(i, 'mlp_in', h2, D);
    x = g.op('Add', [x, mlpOf(w, i, h2, record)]);
  }
  return { x, batch, seq, seqScalar };
}

function encodeGraph(g: GraphBuilder, weights: Weights, threshold: number | undefined): EncodedModel {
  return g.encodeModel({
    opset: OPSET,
    external: {
      threshold: threshold ?? Number.POSITIVE_INFINITY,
      location: 'weights.bin',
      blobs: isWeightFile(weights) ? undefined : weights.blobs,
    },
  });
}

/** The teacher-forced evaluation graph and its block graphs (see the header). */
export function buildEncDecGraph(spec: ModelSpec, weights: Weights, opts: EncDecGraphOptions): EncodedModel {
  const c = spec.config;
  refuseUnhonouredEncDec(c);
  if (!ENCDEC_OUTPUTS.includes(opts.output)) {
    throw new Error(
      `encoder-decoder graph: output '${opts.output}' is not one it builds (${ENCDEC_OUTPUTS.map((o) => `'${o}'`).join(', ')})`,
    );
  }
  const E = encdecOf(c).encoderLayers;
  const L = c.numLayers;
  const [from, to] = layerRange(L, opts.layers);
  // 'hidden' of a range reaching the last layer is the whole encoder's output (last_hidden_state).
  const encoderOnly = opts.output === 'hidden' && to === L;
  if (encoderOnly && from >= E) {
    throw new Error(
      `encoder-decoder graph: a block of decoder layers [${from}, ${to}) has no encoder output`,
    );
  }
  if (to < L && opts.output !== 'hidden') {
    throw new Error(
      `encoder-decoder graph: a block ending at layer ${to} of ${L} outputs 'hidden', not '${opts.output}'`,
    );
  }
  const runsEncoder = from < E;
  const runsDecoder = !encoderOnly && to > E;
  const captured = capturedLayers(opts.capture, [from, encoderOnly ? E : to], 'encoder-decoder graph');
  if (opts.capture?.residual)
    throw new Error('encoder-decoder graph: no residual cosines (capture.residual)');
  const w = wiring(spec, weights, 'encoder-decoder graph', false, opts.weightMasks);
  const { g, kit } = w;
  const D = c.hiddenSize;
  const inputIds = from === 0 ? g.input('input_ids', 'int64', ['batch', 'src']) : '';
  const hiddenIn =
    from > 0 && from !== E ? g.input('hidden_in', 'float32', ['batch', from < E ? 'src' : 'seq', D]) : '';
  const attentionMask = g.input('attention_mask', 'int64', ['batch', 'src']);
  const encoderIn =
    runsDecoder && !runsEncoder ? g.input('encoder_hidden_states', 'float32', ['batch', 'src', D]) : '';
  const decoderIds = runsDecoder && from <= E ? g.input('decoder_input_ids', 'int64', ['batch', 'seq']) : '';

  // Statistics: encoder layers and cross_kv_in (encoder positions) are weighted by token_weight [batch, src], the
  // decoder layers' other points by decoder_token_weight [batch, seq]; each input exists only when used.
  const wanted = (layer: number, point: CapturePoint) =>
    captured.has(layer) && (!opts.capture?.points || opts.capture.points.includes(point));
  const lazyRecorder = (name: string, seqName: string): CaptureRecorder => {
    let record: CaptureRecorder | undefined;
    return (layer, point, input, width) => {
      if (!wanted(layer, point)) return;
      record ??= captureRecorder(
        g,
        opts.capture,
        captured,
        g.op('Reshape', [g.input(name, 'float32', ['batch', seqName]), g.constInt64([-1, 1])]),
      );
      record(layer, point, input, width);
    };
  };
  const recorders: Recorders = {
    source: lazyRecorder('token_weight', 'src'),
    decoder: lazyRecorder('decoder_token_weight', 'seq'),
  };
  /** Output `name` [batch, seqOf, D] from rows x [N, D]. */
  const hiddenOutput = (x: string, name: string, batch: string, seq: string, seqName: string) => {
    const bsd = g.op('Concat', [batch, seq, g.constInt64([D])], { axis: 0 });
    g.node('Reshape', [x, bsd], {}, { outputs: [name] });
    g.output(name, 'float32', ['batch', seqName, D]);
    return encodeGraph(g, weights, opts.externalDataThreshold);
  };

  // The head's weight chunks are made before the embeddings read the table (lmhead.ts's order).
  const hasHead = runsDecoder && to === L;
  const headChunks = hasHead ? headChunksOf(kit, c, opts.output, opts.vocabChunk, true) : [];
  let encOut: string;
  if (runsEncoder) {
    const encTo = encoderOnly ? E : Math.min(to, E);
    const input = from === 0 ? { ids: inputIds } : { hidden: hiddenIn };
    const enc = encoderStack(w, input, attentionMask, headChunks, [from, encTo], recorders.source);
    const src = dimsOf(g, attentionMask);
    // Inside the encoder a block hands on its residual stream; at the encoder's end, the final (normed) output.
    if (!enc.out) return hiddenOutput(enc.x, 'hidden', src.batch, src.seq, 'src');
    if (!runsDecoder) {
      return hiddenOutput(enc.out, encoderOnly ? 'last_hidden_state' : 'hidden', src.batch, src.seq, 'src');
    }
    encOut = enc.out;
  } else encOut = g.op('Reshape', [encoderIn, g.constInt64([-1, D])]);

  const input = from <= E ? { ids: decoderIds } : { hidden: hiddenIn };
  const dec = decoderStack(
    w,
    input,
    encOut,
    attentionMask,
    undefined,
    headChunks,
    [Math.max(from, E), to],
    recorders,
  );
  if (!hasHead) return hiddenOutput(dec.x, 'hidden', dec.batch, dec.seq, 'seq');
  lmHead(
    {
      g,
      kit,
      config: c,
      output: opts.output,
      headChunks,
      batchDim: dec.batch,
      seqDim: dec.seq,
      seqScalar: dec.seqScalar,
      outputScale: encdecOf(c).outputScale,
    },
    dec.x,
  );
  return encodeGraph(g, weights, opts.externalDataThreshold);
}

/** The generation encoder (onnx/encoder_model.onnx): input_ids, attention_mask → last_hidden_state. */
export function buildEncDecEncoderGraph(
  spec: ModelSpec,
  weights: Weights,
  opts: EncDecGenerationOptions = {},
): EncodedModel {
  const c = spec.config;
  const w = wiring(spec, weights, 'encoder-decoder encoder graph', opts.deploy === true, opts.weightMasks);
  const { g } = w;
  const inputIds = g.input('input_ids', 'int64', ['batch_size', 'encoder_sequence_length']);
  const attentionMask = g.input('attention_mask', 'int64', ['batch_size', 'encoder_sequence_length']);
  const encOut = encoderStack(
    w,
    { ids: inputIds },
    attentionMask,
    [],
    [0, encdecOf(c).encoderLayers],
    NO_CAPTURE.source,
  ).out!;
  const { batch, seq } = dimsOf(g, inputIds);
  const bsd = g.op('Concat', [batch, seq, g.constInt64([c.hiddenSize])], { axis: 0 });
  g.node('Reshape', [encOut, bsd], {}, { outputs: ['last_hidden_state'] });
  g.output('last_hidden_state', 'float32', ['batch_size', 'encoder_sequence_length', c.hiddenSize]);
  return encodeGraph(g, weights, opts.externalDataThreshold);
}

/** The names of the step graph's cache inputs (and, with 'present', its outputs), decoder block d. */
export function encdecCacheName(
  prefix: 'past_key_values' | 'present',
  d: number,
  part: 'decoder' | 'encoder',
  kind: 'key' | 'value',
): string {
  return `${prefix}.${d}.${part}.${kind}`;
}

/** The generation decoder step (onnx/decoder_model_merged.onnx), see the header. */
export function buildEncDecStepGraph(
  spec: ModelSpec,
  weights: Weights,
  opts: EncDecGenerationOptions = {},
): EncodedModel {
  const c = spec.config;
  const e = encdecOf(c);
  const w = wiring(spec, weights, 'encoder-decoder step graph', opts.deploy === true, opts.weightMasks);
  const { g, kit } = w;
  const hd = c.headDim;
  const D = c.hiddenSize;
  const ids = g.input('input_ids', 'int64', ['batch_size', 'decoder_sequence_length']);
  const srcMask = g.input('encoder_attention_mask', 'int64', ['batch_size', 'encoder_sequence_length']);
  const encHidden = g.input('encoder_hidden_states', 'float32', ['batch_size', 'encoder_sequence_length', D]);
  const decoderLayers = c.numLayers - e.encoderLayers;
  for (let d = 0; d < decoderLayers; d++) {
    for (const kind of ['key', 'value'] as const) {
      g.input(encdecCacheName('past_key_values', d, 'decoder', kind), 'float32', [
        'batch_size',
        c.headsPerLayer[e.encoderLayers + d],
        'past_decoder_sequence_length',
        hd,
      ]);
      g.input(encdecCacheName('past_key_values', d, 'encoder', kind), 'float32', [
        'batch_size',
        e.crossHeadsPerLayer[d],
        'encoder_sequence_length_out',
        hd,
      ]);
    }
  }
  g.input('use_cache_branch', 'bool', [1]);
  const headChunks = headChunksOf(kit, c, 'logits', undefined, true);
  const lengthOf = (name: string) =>
    g.op('Squeeze', [
      g.op('Slice', [g.op('Shape', [name]), g.constInt64([2]), g.constInt64([3])]),
      g.constInt64([0]),
    ]);
  const cache: DecoderCache = {
    past: (d, part, kind) => encdecCacheName('past_key_values', d, part, kind),
    pastLength: lengthOf(encdecCacheName('past_key_values', 0, 'decoder', 'key')),
    crossStart: lengthOf(encdecCacheName('past_key_values', 0, 'encoder', 'key')),
  };
  const dec = decoderStack(
    w,
    { ids },
    encHidden,
    srcMask,
    cache,
    headChunks,
    [e.encoderLayers, c.numLayers],
    NO_CAPTURE,
  );
  lmHead(
    {
      g,
      kit,
      config: c,
      output: 'logits',
      headChunks,
      batchDim: dec.batch,
      seqDim: dec.seq,
      seqScalar: dec.seqScalar,
      outputScale: e.outputScale,
    },
    dec.x,
  );
  return encodeGraph(g, weights, opts.externalDataThreshold);
}
