/**
 * The one masked-quality function of the weight searches: the calibration perplexity of a candidate whose weight
 * masks are graph inputs, over token batches already cut. Alloc scores whole-model candidates with it (one
 * session for the whole search), the block searches score block l's candidates on the suffix graph of blocks
 * [l, L) fed the hidden states entering block l (blockobjective.ts).
 *
 * Unlike metrics/perplexity.ts `evaluatePerplexity`, a non-finite NLL does not stop the pass: every batch runs
 * (the searches count one forward pass per batch per candidate) and the perplexity comes out +Infinity.
 */
import type { ModelRunner, TokenBatch } from '../../engine/runner.js';

export interface MaskedPerplexity {
  /** exp(mean NLL over the valid positions); +Infinity when that is not finite. */
  perplexity: number;
  /** Valid positions scored. */
  tokens: number;
  /** Batches run. */
  passes: number;
}

/**
 * Perplexity of `runner` (output 'nll') over `list` under weight masks `masks`; with `hidden`, batch b enters the
 * graph as hidden states `hidden[b]` (a suffix graph).
 */
export async function maskedPerplexity(
  runner: ModelRunner,
  list: readonly TokenBatch[],
  masks: ReadonlyMap<string, Uint8Array>,
  hidden?: readonly Float32Array[],
): Promise<MaskedPerplexity> {
  const weightMasks = new Map(masks);
  let sum = 0;
  let count = 0;
  let passes = 0;
  for (const [b, batch] of list.entries()) {
    const input = hidden ? { ...batch, hidden: hidden[b] } : batch;
    const nll = await runner.run(input, { weightMasks });
    passes++;
    const valid = batch.valid;
    for (let i = 0; i < nll.length; i++) {
      if (valid && !valid[i]) continue;
      sum += nll[i];
      count++;
    }
  }
  const ppl = Math.exp(sum / count);
  return { perplexity: Number.isFinite(ppl) ? ppl : Number.POSITIVE_INFINITY, tokens: count, passes };
}
