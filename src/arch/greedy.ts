/**
 * Greedy decoding of many prompts at once on a 'row_logits' runner: one forward per step for a whole batch of
 * prompts of different lengths. Rows are right-padded to the longest and each row's logits are read at its own
 * last position, which causal attention makes exactly what that row alone would give. Like `generate`, every step
 * re-runs the whole (cropped) sequence: no KV cache, so head and weight masks apply unchanged.
 */
import { GenepruneError } from '../errors.js';
import { maxOf } from '../util/arrays.js';
import type { CandidateMasks, DecodeRunner } from './decoding.js';
import { argmax } from './generate.js';

export interface GreedyBatchOptions {
  /** New tokens per prompt at most. */
  maxNewTokens: number;
  /** Prompts per forward pass (default 16). Prompts are grouped by length first, so padding stays small. */
  batchSize?: number;
  masks?: CandidateMasks;
  /** A row stops when it produces one of these (not included in its output). */
  stopTokens?: number[];
  /** Called after each forward pass with the number of rows it decoded. */
  onStep?: (rows: number) => void;
}

export interface GreedyBatchResult {
  /** Generated ids per prompt, in the prompts' order (without the prompt, without the stop token). */
  tokens: number[][];
  /** Whether each prompt stopped at a stop token ('stop') or ran out of new tokens ('length'). */
  finish: ('stop' | 'length')[];
  /** Forward passes run. */
  forwards: number;
}

/** Greedy continuations of `prompts` (token ids, BOS included), each as if decoded alone. */
export async function greedyDecodeBatch(
  runner: DecodeRunner,
  prompts: readonly (readonly number[])[],
  opts: GreedyBatchOptions,
): Promise<GreedyBatchResult> {
  if (runner.output !== 'row_logits') throw new Error('greedyDecodeBatch needs a row_logits runner');
  const batchSize = opts.batchSize ?? 16;
  if (!Number.isInteger(batchSize) || batchSize < 1)
    throw new Error(`batch size must be ≥ 1 (got ${batchSize})`);
  if (!Number.isInteger(opts.maxNewTokens) || opts.maxNewTokens < 0) {
    throw new Error(`maxNewTokens must be a non-negative integer (got ${opts.maxNewTokens})`);
  }
  prompts.forEach((p, i) => {
    if (p.length === 0) throw new Error(`prompt ${i + 1} has no tokens (it needs at least BOS)`);
  });
  const maxPos = runner.spec.config.maxPositions;
  const vocab = runner.spec.config.vocabSize;
  const stop = new Set(opts.stopTokens ?? []);
  const seqs = prompts.map((p) => [...p]);
  const tokens: number[][] = prompts.map(() => []);
  const finish: ('stop' | 'length')[] = prompts.map(() => 'length');
  let forwards = 0;

  // Longest first, ties in input order: a deterministic grouping that keeps rows of a batch of similar length.
  const order = prompts.map((_, i) => i).sort((a, b) => prompts[b].length - prompts[a].length || a - b);
  for (let start = 0; start < order.length; start += batchSize) {
    let active = order.slice(start, start + batchSize);
    for (let step = 0; step < opts.maxNewTokens && active.length > 0; step++) {
      // Each row's window: its last maxPos tokens, as single-prompt generation crops.
      const windows = active.map((r) => seqs[r].slice(Math.max(0, seqs[r].length - maxPos)));
      const seq = maxOf(windows.map((w) => w.length));
      const ids = new BigInt64Array(active.length * seq); // right padding with id 0, never attended to
      const lastIndex = new BigInt64Array(active.length);
      windows.forEach((w, b) => {
        for (let t = 0; t < w.length; t++) ids[b * seq + t] = BigInt(w[t]);
        lastIndex[b] = BigInt(w.length - 1);
      });
      const logits = await runner.run({ batch: active.length, seq, ids, lastIndex }, opts.masks);
      forwards++;
      opts.onStep?.(active.length);
      const still: number[] = [];
      active.forEach((r, b) => {
        const row = logits.subarray(b * vocab, (b + 1) * vocab);
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
        const next = argmax(row);
        if (stop.has(next)) {
          finish[r] = 'stop';
          return;
        }
        seqs[r].push(next);
        tokens[r].push(next);
        still.push(r);
      });
      active = still;
    }
  }
  return { tokens, finish, forwards };
}
