/**
 * The evaluation graph for bidirectional encoders (the BERT family), assembled from the shared blocks (kit.ts,
 * explicitAttention, the per-layer units of layer.ts, capture.ts).
 *
 * Inputs:
 *   input_ids       int64 [batch, seq]
 *   attention_mask  int64 [batch, seq]     1 = real token, 0 = padding (no query attends to a padding key)
 *   token_type_ids  int64 [batch, seq]     segment ids; only when the model has token types (typeVocabSize > 0)
 *   head_mask       float [layers, maxHeads]  as the decoder's: 1 keeps a head, 0 drops it (multiplied into the
 *                                          head's attention output before the output projection); not in
 *                                          deployment graphs
 *   mask.<role>     bool, the weight's shape  one per masked linear weight (true keeps the weight)
 *   token_weight    float [batch, seq]     capture graphs only (as the decoder's)
 *   channel_mask    float [layers, maxWidth]  with `structuredMasks` only, as the decoder's: multiplies layer i's
 *                                          MLP activation (the input of the output dense)
 *   block_mask      float [layers, 2]      with `structuredMasks` only: multiplies the attention (0) and MLP (1)
 *                                          block outputs (bias included) before the residual add; the post-norm
 *                                          after the add belongs to the residual stream and stays
 * Outputs, by mode:
 *   'hidden'        last_hidden_state float [batch, seq, hidden]  (transformers.js feature-extraction name);
 *                   a block ending before the last layer outputs hidden float [batch, seq, hidden] instead
 *   'class_logits'  logits float [batch, labels]   the classification head on each row's first token
 *
 * A deployment graph (`deploy`, what an export writes as onnx/model.onnx) has exactly the inputs transformers.js
 * feeds an encoder: input_ids, attention_mask, and token_type_ids when the model has token types (transformers.js
 * fills zeros when the caller gives none). An exported model is physically pruned, so it has no head mask, and it
 * takes no weight masks or capture inputs.
 *
 * Block graphs (`layers: [from, to)`, default all layers), as the decoder's, for layer-wise walks (Wanda,
 * recovery) that start from cached hidden states:
 *   from > 0: hidden_in float32 [batch, seq, hidden] (the residual stream entering layer `from`: layer from−1's
 *             output norm) replaces input_ids and token_type_ids; attention_mask stays an input (attention needs
 *             it in every layer).
 *   to < L:   the output is 'hidden' (no classification head).
 * head_mask keeps its [layers, maxHeads] shape in every block; only the block's weights become initializers (the
 * embeddings only when from = 0, the classification head only when to = L).
 *
 * Positions are 0 … seq−1 in every row (read at rows positionOffset + p of the table), as transformers numbers
 * BERT and DistilBERT positions, and RoBERTa's for real tokens of right-padded rows; transformers gives RoBERTa's
 * padding tokens the padding row instead, which changes only the outputs at padded positions (nothing reads
 * them: no key there is attended). Left-padded RoBERTa input would need positions counted over real tokens.
 *
 * Per layer (post-norm): x ← norm(x + o(attention(x))), x ← norm(x + mlp(x)). Activation statistics (`capture`)
 * as in the decoder: attn_in is the layer's input (q/k/v read the residual stream directly here), o_in the merged
 * heads after the head mask, mlp_in the attention norm's output, down_in the MLP activation.
 */
import { GenepruneError } from '../errors.js';
import { intermediateOf, type ModelConfig, type ModelSpec } from '../model/spec.js';
import { explicitAttention } from './attention.js';
import { layerRange } from './blocks.js';
import { type EncodedModel, GraphBuilder, OPSET } from './builder.js';
import {
  type CaptureOptions,
  capturedLayers,
  captureRecorder,
  residualRecorder,
  tokenWeightInput,
} from './capture.js';
import { createKit, type HalfLinears, ONNX_FLOAT } from './kit.js';
import { layerUnits, maxWidthOf } from './layer.js';
import { isWeightFile, type Weights } from './weights.js';

export type EncoderOutputMode = 'hidden' | 'class_logits';

export interface EncoderGraphOptions {
  output: EncoderOutputMode;
  /** Linear weight roles that get a boolean mask input `mask.<role>`. */
  weightMasks?: string[];
  /** How fp16/bf16 linears run (kit.ts); default 'upcast'. */
  halfLinears?: HalfLinears;
  /** As the decoder's: in-memory weights above this many bytes go to external data (default: inline). */
  externalDataThreshold?: number;
  /** Output activation statistics of these layers' linear inputs (see the header). */
  capture?: CaptureOptions;
  /** The structured mask inputs channel_mask and block_mask (see the header); not in deployment graphs. */
  structuredMasks?: boolean;
  /** A deployment graph: no head_mask input (see the header); refuses weight masks and capture. */
  deploy?: boolean;
  /** Run layers from … to−1 only (default all); see the header for the block graph's inputs and outputs. */
  layers?: readonly [number, number];
}

/** A blocked key's additive score: finite, so a row with every key blocked stays finite too. */
const BLOCKED = -1e30;

/**
 * The spec fields this builder implements, and the values it builds; anything else is refused in one line
 * rather than computed as something else.
 */
const HONOURED: ReadonlyArray<[keyof ModelConfig, readonly unknown[]]> = [
  ['arch', ['encoder']],
  ['family', ['bert']],
  ['normKind', ['layer', 'rms']],
  ['normPlacement', ['post']],
  ['mlpKind', ['plain', 'gated']],
  ['positionKind', ['learned']],
  ['activation', ['silu', 'gelu', 'gelu_tanh', 'relu']],
  ['tieEmbeddings', [false]],
  ['kvHeadOfQuery', [undefined]],
  ['embedScale', [undefined, 1]],
  ['attnSoftcap', [undefined]],
  ['finalSoftcap', [undefined]],
  ['sandwichNorms', [undefined, false]],
];

export function refuseUnhonouredEncoder(c: ModelConfig): void {
  const refuse = (what: string, builds: string) =>
    new GenepruneError(
      'model',
      `the encoder graph cannot build ${what} (it builds ${builds}); model_type ${c.modelType} is not supported`,
    );
  for (const [field, values] of HONOURED) {
    if (!values.includes(c[field])) {
      const shown = values.map((v) => (v === undefined ? 'none' : JSON.stringify(v))).join(', ');
      throw refuse(`${field} ${JSON.stringify(c[field])}`, shown);
    }
  }
  if (c.slidingWindow?.some((w) => w !== 0)) {
    throw refuse(`slidingWindow ${JSON.stringify(c.slidingWindow)}`, 'global attention only');
  }
  if (c.kvHeadsPerLayer.some((k, l) => k !== c.headsPerLayer[l])) {
    throw refuse(`kvHeadsPerLayer ${JSON.stringify(c.kvHeadsPerLayer)}`, 'one key/value head per query head');
  }
}

export function buildEncoderGraph(
  spec: ModelSpec,
  weights: Weights,
  opts: EncoderGraphOptions,
): EncodedModel {
  const c = spec.config;
  refuseUnhonouredEncoder(c);
  if (opts.output !== 'hidden' && opts.output !== 'class_logits') {
    throw new Error(`encoder graph: output '${opts.output}' is not one it builds ('hidden', 'class_logits')`);
  }
  if (opts.output === 'class_logits' && !c.classifier) {
    throw new Error("encoder graph: output 'class_logits' needs a classification head, the model has none");
  }
  if (opts.deploy && ((opts.weightMasks?.length ?? 0) > 0 || (opts.capture?.layers.length ?? 0) > 0)) {
    throw new Error(
      'encoder graph: a deployment graph takes no weight masks or capture (inputs transformers.js never feeds)',
    );
  }
  if (opts.deploy && opts.structuredMasks) {
    throw new Error(
      'encoder graph: a deployment graph takes no structured masks (an export is physically pruned)',
    );
  }

  const [from, to] = layerRange(c.numLayers, opts.layers);
  const hasEmbed = from === 0;
  const hasHead = to === c.numLayers;
  if (!hasHead && opts.output !== 'hidden') {
    throw new Error(
      `encoder graph: a block ending at layer ${to} of ${c.numLayers} outputs 'hidden', not '${opts.output}'`,
    );
  }
  const captured = capturedLayers(opts.capture, [from, to], 'encoder graph');
  const g = new GraphBuilder();
  const kit = createKit(g, spec, weights, {
    weightMasks: opts.weightMasks,
    halfLinears: opts.halfLinears,
    what: 'encoder graph',
  });
  const D = c.hiddenSize;
  const hd = c.headDim;
  const maxHeads = Math.max(...c.headsPerLayer);
  const types = (c.typeVocabSize ?? 0) > 0;

  const inputIds = hasEmbed ? g.input('input_ids', 'int64', ['batch', 'seq']) : '';
  const hiddenIn = hasEmbed ? '' : g.input('hidden_in', 'float32', ['batch', 'seq', D]);
  const attentionMask = g.input('attention_mask', 'int64', ['batch', 'seq']);
  const tokenTypeIds = hasEmbed && types ? g.input('token_type_ids', 'int64', ['batch', 'seq']) : '';
  const headMask = opts.deploy ? '' : g.input('head_mask', 'float32', [c.numLayers, maxHeads]);
  const channelMask = opts.structuredMasks
    ? g.input('channel_mask', 'float32', [c.numLayers, maxWidthOf(c)])
    : '';
  const blockMask = opts.structuredMasks ? g.input('block_mask', 'float32', [c.numLayers, 2]) : '';
  const tokenWeight = tokenWeightInput(g, captured);

  const idsShape = g.op('Shape', [hasEmbed ? inputIds : hiddenIn]);
  const batchDim = g.op('Slice', [idsShape, g.constInt64([0]), g.constInt64([1])]);
  const seqDim = g.op('Slice', [idsShape, g.constInt64([1]), g.constInt64([2])]);
  const bsd = g.op('Concat', [batchDim, seqDim, g.constInt64([D])], { axis: 0 });

  /** Rows of an embedding table by int64 ids, fp32 out. */
  const embed = (role: string, ids: string): string => {
    const rows = g.op('Gather', [kit.weight(role), ids], { axis: 0 });
    return kit.isHalf(role) ? g.op('Cast', [rows], { to: ONNX_FLOAT }) : rows;
  };
  let x: string; // [N = batch·seq, D]
  if (hasEmbed) {
    // [batch, seq, D]: word + position (broadcast over the batch) + token type, then the embedding norm.
    const seqScalar = g.op('Squeeze', [seqDim, g.constInt64([0])]);
    let e = g.op('Add', [
      embed('embed.tokens', inputIds),
      kit.learnedPositions(g.op('Range', [g.constInt64([0], []), seqScalar, g.constInt64([1], [])])),
    ]);
    if (types) e = g.op('Add', [e, embed('embed.token_types', tokenTypeIds)]);
    x = g.op('Reshape', [kit.norm(e, 'embed.norm'), g.constInt64([-1, D])]);
  } else x = g.op('Reshape', [hiddenIn, g.constInt64([-1, D])]);

  // Padding keys blocked for every query: [batch, 1, 1, seq].
  const padded = g.op('Equal', [attentionMask, g.constInt64([0], [])]);
  const keyMask = g.op('Unsqueeze', [
    g.op('Where', [padded, g.constFloat([BLOCKED], []), g.constFloat([0], [])]),
    g.constInt64([1, 2]),
  ]);

  const capture = captureRecorder(g, opts.capture, captured, tokenWeight);
  const residual = residualRecorder(g, opts.capture, captured, tokenWeight);
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
  const scale = c.attnScale ?? 1 / Math.sqrt(hd);

  for (let i = from; i < to; i++) {
    const heads = c.headsPerLayer[i];
    const p = `layers.${i}`;
    kit.setAnchor(x);
    capture(i, 'attn_in', x, D);
    let attended: string;
    if (heads > 0) {
      const merged = explicitAttention(g, hd, {
        q: splitHeads(kit.linear(x, `${p}.attn.q`), heads),
        k: splitHeads(kit.linear(x, `${p}.attn.k`), heads),
        v: splitHeads(kit.linear(x, `${p}.attn.v`), heads),
        heads,
        kvHeads: heads,
        kvMap: Array.from({ length: heads }, (_, h) => h),
        mask: keyMask,
        scale,
        keep: layerHeadMask(i, heads),
      });
      capture(i, 'o_in', merged, heads * hd);
      attended = kit.linear(merged, `${p}.attn.o`);
    } else {
      // Every head removed: the attention block's output is the output projection's bias alone.
      const bias = `${p}.attn.o.bias`;
      attended = kit.has(bias) ? kit.floatOf(kit.weight(bias), bias) : g.constFloat([0], []);
    }
    const layerIn = x;
    x = kit.norm(g.op('Add', [x, gateBlock(i, 0, attended)]), `${p}.attn_norm`);
    residual(i, 'attn', layerIn, x);
    const mlpIn = x;
    const hasMlp = intermediateOf(c, i) > 0;
    let mlpOut: string;
    if (hasMlp) {
      capture(i, 'mlp_in', x, D);
      mlpOut = mlp(i, x);
    } else {
      // MLP width 0: no matmuls (and no mlp_in / down_in statistics); the output dense's bias alone.
      mlpOut = biasAlone(`${p}.mlp.down.bias`) ?? g.constFloat([0], []);
    }
    x = kit.norm(g.op('Add', [x, gateBlock(i, 1, mlpOut)]), `${p}.mlp_norm`);
    // As in the decoder: no MLP block, no MLP block influence measured (the scores read it as 0).
    if (hasMlp) residual(i, 'mlp', mlpIn, x);
    residual(i, 'layer', layerIn, x);
  }

  if (opts.output === 'hidden') {
    const name = hasHead ? 'last_hidden_state' : 'hidden';
    g.node('Reshape', [x, bsd], {}, { outputs: [name] });
    g.output(name, 'float32', ['batch', 'seq', D]);
  } else {
    const cls = c.classifier!;
    kit.setAnchor(x);
    const first = g.op('Gather', [g.op('Reshape', [x, bsd]), g.constInt64([0], [])], { axis: 1 }); // [batch, D]
    const pooledIn = kit.linear(first, 'cls.pool');
    const pooled = cls.poolActivation === 'tanh' ? g.op('Tanh', [pooledIn]) : g.op('Relu', [pooledIn]);
    g.node('Identity', [kit.linear(pooled, 'cls.out')], {}, { outputs: ['logits'] });
    g.output('logits', 'float32', ['batch', cls.labels.length]);
  }
  return g.encodeModel({
    opset: OPSET,
    external: {
      threshold: opts.externalDataThreshold ?? Number.POSITIVE_INFINITY,
      location: 'weights.bin',
      blobs: isWeightFile(weights) ? undefined : weights.blobs,
    },
  });
}
