/**
 * The encoder-decoder's decode loop: each group of sources is encoded once, then the decoder generates from the
 * decoder start token one token per step on its KV cache (the step graph of graph/encdec.ts: self K/V grow, the
 * cross K/V are computed on the first step and passed through after). Rows of different source lengths share a
 * batch (right-padded, the padding masked in the encoder and in cross-attention); a row leaves the batch when it
 * produces a stop token, its cache rows with it. Head and weight masks are inputs of both generation graphs, so
 * masked models generate exactly as the masked evaluation graph scores. It reads a runner only through
 * DecodeRunner.seq2seq, so arch/ needs nothing from engine/.
 */
import { GenepruneError } from '../errors.js';
import { encdecOf } from '../model/spec.js';
import type { Rng } from '../util/rng.js';
import type { CandidateMasks, DecodeRunner, Seq2SeqCache, Seq2SeqSteps } from './decoding.js';
import type { DecodeLoop } from './descriptor.js';
import { argmax, type GenerateOptions, sampleWithTemperature } from './generate.js';
import type { GreedyBatchOptions, GreedyBatchResult } from './greedy.js';

function stepsOf(runner: DecodeRunner): Seq2SeqSteps {
  if (!runner.seq2seq) {
    throw new Error(
      "encoder-decoder decoding needs a runner with generation sessions (output 'last_logits' or 'row_logits')",
    );
  }
  return runner.seq2seq;
}

/** Rows `keep` of a [rows, width] array. */
function pickRows<T extends Float32Array | BigInt64Array>(
  data: T,
  keep: readonly number[],
  width: number,
): T {
  const out = new (data.constructor as { new (n: number): T })(keep.length * width);
  keep.forEach((r, i) => {
    out.set(data.subarray(r * width, (r + 1) * width) as never, i * width);
  });
  return out;
}

interface GroupOptions {
  maxNewTokens: number;
  masks?: CandidateMasks;
  stop: ReadonlySet<number>;
  /** The next token of row `row` from its logits [vocab]. */
  choose: (logits: Float32Array, row: number) => number;
  onToken?: (row: number, id: number) => void;
  onStep?: (rows: number) => void;
}

/**
 * Generates for one batch of sources; returns each row's new tokens and finish reason, and the session runs made
 * (the encoder's and each step's).
 */
async function decodeGroup(
  runner: DecodeRunner,
  sources: readonly (readonly number[])[],
  opts: GroupOptions,
): Promise<{ tokens: number[][]; finish: ('stop' | 'length')[]; runs: number }> {
  const steps = stepsOf(runner);
  const c = runner.spec.config;
  const start = BigInt(encdecOf(c).decoderStartTokenId);
  const vocab = c.vocabSize;
  const D = c.hiddenSize;
  const B = sources.length;
  const tokens: number[][] = sources.map(() => []);
  const finish: ('stop' | 'length')[] = sources.map(() => 'length');
  if (opts.maxNewTokens === 0 || B === 0) return { tokens, finish, runs: 0 };
  const S = Math.max(...sources.map((s) => s.length));
  const pad = BigInt(c.padTokenId ?? 0);
  const ids = new BigInt64Array(B * S).fill(pad);
  let mask = new BigInt64Array(B * S);
  sources.forEach((s, b) => {
    for (let t = 0; t < s.length; t++) {
      ids[b * S + t] = BigInt(s[t]);
      mask[b * S + t] = 1n;
    }
  });
  let hidden = await steps.encode({ batch: B, seq: S, ids, attentionMask: mask }, opts.masks);
  let runs = 1;
  let active = sources.map((_, b) => b);
  let next = new BigInt64Array(B).fill(start);
  let cache: Seq2SeqCache | undefined;
  for (let step = 0; step < opts.maxNewTokens && active.length > 0; step++) {
    const out = await steps.step(
      {
        batch: active.length,
        ids: next,
        newTokens: 1,
        encoderHidden: hidden,
        srcSeq: S,
        attentionMask: mask,
        cache,
      },
      opts.masks,
    );
    runs++;
    opts.onStep?.(active.length);
    const keep: number[] = [];
    const kept: bigint[] = [];
    active.forEach((r, i) => {
      const row = out.logits.subarray(i * vocab, (i + 1) * vocab);
      for (let v = 0; v < vocab; v++) {
        // argmax over NaNs picks token 0 every step: a wrong answer, not output.
        if (row[v] - row[v] !== 0) {
          throw new GenepruneError(
            'model',
            `the model produced a non-finite logit (${row[v]} for token ${v}) at generation step ${step + 1}: ` +
              'the weights or the computation overflow',
            runner.spec.source,
          );
        }
      }
      const id = opts.choose(row, r);
      if (opts.stop.has(id)) {
        finish[r] = 'stop';
        return;
      }
      tokens[r].push(id);
      opts.onToken?.(r, id);
      keep.push(i);
      kept.push(BigInt(id));
    });
    if (keep.length < active.length && keep.length > 0) {
      // Finished rows leave the batch: their encoder output, mask and cache rows go too.
      hidden = pickRows(hidden, keep, S * D);
      mask = pickRows(mask, keep, S);
      const smaller: Seq2SeqCache = {};
      for (const [name, t] of Object.entries(out.cache)) {
        const width = t.dims.slice(1).reduce((a, b) => a * b, 1);
        smaller[name] = { dims: [keep.length, ...t.dims.slice(1)], data: pickRows(t.data, keep, width) };
      }
      out.cache = smaller;
    }
    active = keep.map((i) => active[i]);
    next = BigInt64Array.from(kept);
    cache = out.cache;
  }
  return { tokens, finish, runs };
}

function checkSources(sources: readonly (readonly number[])[], maxNewTokens: number, vocab: number): void {
  if (!Number.isInteger(maxNewTokens) || maxNewTokens < 0) {
    throw new Error(`maxNewTokens must be a non-negative integer (got ${maxNewTokens})`);
  }
  sources.forEach((p, i) => {
    if (p.length === 0) throw new Error(`source ${i + 1} has no tokens (it needs at least EOS)`);
    const bad = p.find((id) => !Number.isInteger(id) || id < 0 || id >= vocab);
    if (bad !== undefined) {
      throw new Error(`source ${i + 1} has token id ${bad}, outside the model's vocabulary of ${vocab}`);
    }
  });
}

/** Greedy targets of many sources, batched (longest first, ties in input order), each as if decoded alone. */
export async function seq2seqGreedyBatch(
  runner: DecodeRunner,
  sources: readonly (readonly number[])[],
  opts: GreedyBatchOptions,
): Promise<GreedyBatchResult> {
  const batchSize = opts.batchSize ?? 16;
  if (!Number.isInteger(batchSize) || batchSize < 1)
    throw new Error(`batch size must be ≥ 1 (got ${batchSize})`);
  checkSources(sources, opts.maxNewTokens, runner.spec.config.vocabSize);
  const tokens: number[][] = sources.map(() => []);
  const finish: ('stop' | 'length')[] = sources.map(() => 'length');
  let forwards = 0;
  const order = sources.map((_, i) => i).sort((a, b) => sources[b].length - sources[a].length || a - b);
  for (let at = 0; at < order.length; at += batchSize) {
    const group = order.slice(at, at + batchSize);
    const out = await decodeGroup(
      runner,
      group.map((i) => sources[i]),
      {
        maxNewTokens: opts.maxNewTokens,
        masks: opts.masks,
        stop: new Set(opts.stopTokens ?? []),
        choose: (logits) => argmax(logits),
        onStep: opts.onStep,
      },
    );
    group.forEach((i, b) => {
      tokens[i] = out.tokens[b];
      finish[i] = out.finish[b];
    });
    forwards += out.runs;
  }
  return { tokens, finish, forwards };
}

/** Generation from one source: returns the source followed by the generated tokens (without a stop token). */
export async function seq2seqGenerate(
  runner: DecodeRunner,
  source: number[],
  opts: GenerateOptions,
): Promise<number[]> {
  checkSources([source], opts.maxNewTokens, runner.spec.config.vocabSize);
  const temperature = opts.temperature ?? 0;
  if (temperature > 0 && !opts.rng) throw new Error('sampling needs a seeded rng');
  const rng = opts.rng as Rng;
  const out = await decodeGroup(runner, [source], {
    maxNewTokens: opts.maxNewTokens,
    masks: opts.masks,
    stop: new Set(opts.stopTokens ?? []),
    choose: (logits) => (temperature > 0 ? sampleWithTemperature(logits, temperature, rng) : argmax(logits)),
    onToken: (_, id) => opts.onToken?.(id),
  });
  return [...source, ...out.tokens[0]];
}

export const SEQ2SEQ_DECODE: DecodeLoop = {
  promptIsSource: true,
  generate: seq2seqGenerate,
  greedyBatch: seq2seqGreedyBatch,
};
