/**
 * The language-model head of a decoder graph: the final norm, then the output head in the graph's output mode
 * (see decoder.ts for the modes' inputs and outputs). For 'nll' and 'kl' over a vocabulary larger than the chunk
 * size the head runs in vocabulary chunks (each chunk's logits reduced to a log-sum-exp before the next), so no
 * [tokens, vocab] tensor exists; the chunks are initializers over the same bytes as the whole table, shared with
 * the embedding when the head is tied.
 */
import type { ModelConfig } from '../model/spec.js';
import type { GraphBuilder } from './builder.js';
import type { GraphKit } from './kit.js';

export type GraphOutputMode = 'nll' | 'kl' | 'logits' | 'logprobs' | 'last_logits' | 'row_logits' | 'hidden';

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

/** One vocabulary chunk of the head's weight: its initializer and rows [v0, v1). */
export interface HeadChunk {
  w: string;
  v0: number;
  v1: number;
}

/** The head's weight role: the embedding table when tied. */
export function headRoleOf(c: ModelConfig): string {
  return c.tieEmbeddings ? 'embed.tokens' : 'lm_head.weight';
}

/**
 * The head's weight in vocabulary chunks for this output mode (none for a block without the head). Created
 * before the embedding, which a tied, chunked head gathers its rows from.
 */
export function headChunksOf(
  kit: GraphKit,
  c: ModelConfig,
  output: GraphOutputMode,
  vocabChunk: number | undefined,
  hasHead: boolean,
): HeadChunk[] {
  const headRole = headRoleOf(c);
  const ranges = vocabChunks(c.vocabSize, output, vocabChunk);
  return !hasHead
    ? []
    : ranges.map(([v0, v1]) => ({
        w: ranges.length === 1 ? kit.weight(headRole) : kit.weightRows(headRole, v0, v1),
        v0,
        v1,
      }));
}

export interface LmHeadContext {
  g: GraphBuilder;
  kit: GraphKit;
  config: ModelConfig;
  output: GraphOutputMode;
  headChunks: readonly HeadChunk[];
  /** 1-element int64 vectors of the batch and sequence sizes, and the sequence size as a scalar. */
  batchDim: string;
  seqDim: string;
  seqScalar: string;
  /** Multiplies the normed final hidden state before the head (T5 with a tied head: d_model^−½); absent = 1. */
  outputScale?: number;
}

/** The final norm and the head on the last layer's residual stream x [N, D], adding the mode's graph outputs. */
export function lmHead(ctx: LmHeadContext, xIn: string): void {
  const { g, kit, config: c, output, headChunks, batchDim, seqDim, seqScalar } = ctx;
  const headRole = headRoleOf(c);
  const D = c.hiddenSize;
  const minus1 = (): string => g.constInt64([-1]);
  let x = xIn;
  kit.setAnchor(x);
  x = kit.norm(x, 'final_norm');
  if (ctx.outputScale !== undefined && ctx.outputScale !== 1) {
    x = g.op('Mul', [x, g.constFloat([ctx.outputScale], [])]);
  }
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

  switch (output) {
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
}
