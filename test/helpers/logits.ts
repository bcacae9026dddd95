/**
 * Engine logits against a plain reference forward, the one comparison the family tests share: random token rows
 * run as one batch on ONNX Runtime (heads masked per layer, rows padded to the widest layer with ones), the
 * reference run row by row in float64, and the largest absolute difference between the two.
 */
import assert from 'node:assert/strict';
import { emptyPastFeeds, pastFromPresent } from '../../src/engine/kvcache.js';
import { createRunner, type RunnerOptions } from '../../src/engine/runner.js';
import { createEngine } from '../../src/engine/session.js';
import { buildDecoderGraph } from '../../src/graph/decoder.js';
import { loadWeights } from '../../src/graph/weights.js';
import { type StructuredPlan, structuredMasksOf } from '../../src/masks/structured.js';
import type { ModelSpec } from '../../src/model/spec.js';
import { createRng } from '../../src/util/rng.js';

/** A reference forward: one row of logits per position of `tokens`, heads dropped where `headMask` says 0. */
export type ReferenceForward = (tokens: number[], headMask?: number[][]) => ReadonlyArray<ArrayLike<number>>;

/** `n` seeded random token ids below `vocab`. */
export function randomTokens(n: number, vocab: number, seed: number): number[] {
  const rng = createRng(seed);
  return Array.from({ length: n }, () => rng.nextInt(vocab));
}

/** The two rows of `n` tokens the family tests run (seeds 1 and 2). */
export function twoRows(n: number, vocab: number): number[][] {
  return [randomTokens(n, vocab, 1), randomTokens(n, vocab, 2)];
}

/** The largest |a_i − b_i| of two arrays of the same length. */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
  return worst;
}

/** The engine's logits of one row of `ids`, under a structured plan's masks when one is given. */
export async function planLogits(
  spec: ModelSpec,
  ids: number[],
  plan?: StructuredPlan,
): Promise<Float32Array> {
  const runner = await createRunner(spec, { output: 'logits', ...(plan ? { structuredMasks: true } : {}) });
  try {
    return await runner.run(
      { batch: 1, seq: ids.length, ids: BigInt64Array.from(ids.map(BigInt)) },
      plan ? structuredMasksOf(spec.config, plan) : undefined,
    );
  } finally {
    await runner.release();
  }
}

/** The engine's logits of `seqs` (one batch, rows of one length), [rows · length · vocab]. */
export async function engineLogits(
  spec: ModelSpec,
  seqs: number[][],
  headMask?: number[][],
  options: Omit<RunnerOptions, 'output'> = {},
): Promise<Float32Array> {
  const runner = await createRunner(spec, { output: 'logits', ...options });
  const maxHeads = Math.max(...spec.config.headsPerLayer);
  const flat = headMask
    ? Float32Array.from(headMask.flatMap((row) => [...row, ...new Array(maxHeads - row.length).fill(1)]))
    : undefined;
  const out = await runner.run(
    { batch: seqs.length, seq: seqs[0].length, ids: BigInt64Array.from(seqs.flat().map(BigInt)) },
    { headMask: flat },
  );
  await runner.release();
  return out;
}

/** The reference's logits of `seqs`, laid out as engineLogits lays them out. */
export function referenceLogits(
  forward: ReferenceForward,
  seqs: number[][],
  headMask?: number[][],
): Float64Array {
  const out: number[] = [];
  for (const seq of seqs)
    for (const row of forward(seq, headMask)) for (let v = 0; v < row.length; v++) out.push(row[v]);
  return Float64Array.from(out);
}

/** The largest |engine logit − reference logit| over `seqs`. */
export async function maxDiffToReference(
  spec: ModelSpec,
  forward: ReferenceForward,
  seqs: number[][],
  headMask?: number[][],
  options: Omit<RunnerOptions, 'output'> = {},
): Promise<number> {
  return maxAbsDiff(
    await engineLogits(spec, seqs, headMask, options),
    referenceLogits(forward, seqs, headMask),
  );
}

/**
 * A family's plain reference forward `run` as the comparison here runs it (`forward`), and `assertMatches`: engine
 * logits against it on two rows of 9 tokens, dense and with `mask`, on both attention paths.
 */
export function familyComparison<R extends { vocabSize: number }>(
  run: (ref: R, tokens: number[], headMask?: number[][]) => ReadonlyArray<ArrayLike<number>>,
) {
  const forward =
    (ref: R): ReferenceForward =>
    (tokens, headMask) =>
      run(ref, tokens, headMask);
  const assertMatches = (spec: ModelSpec, ref: R, mask: number[][]) =>
    assertMatchesReference(spec, forward(ref), twoRows(9, ref.vocabSize), mask);
  return { forward, assertMatches };
}

/** Engine logits within 1e-4 of the reference's, dense and with `mask`, on the fused and the explicit attention paths. */
export async function assertMatchesReference(
  spec: ModelSpec,
  forward: ReferenceForward,
  seqs: number[][],
  mask: number[][],
  label = '',
): Promise<void> {
  for (const headMask of [undefined, mask]) {
    const expected = referenceLogits(forward, seqs, headMask);
    for (const attention of ['fused', 'explicit'] as const) {
      const d = maxAbsDiff(await engineLogits(spec, seqs, headMask, { attention }), expected);
      assert.ok(d <= 1e-4, `${label}${attention}${headMask ? ', masked heads' : ''}: max abs diff ${d}`);
    }
  }
}

/**
 * The KV-cache graph's logits for one row of `tokens` fed in `chunks` (a prefill, then a token at a time, …): each
 * chunk sees the cache of those before it, positions counting on; laid out as engineLogits lays one row out.
 */
export async function cachedLogits(
  spec: ModelSpec,
  tokens: number[],
  chunks: number[][],
): Promise<Float32Array> {
  const V = spec.config.vocabSize;
  const engine = await createEngine(
    buildDecoderGraph(spec, await loadWeights(spec), { output: 'logits', kvCache: true }),
  );
  const int64 = (xs: number[]) => BigInt64Array.from(xs.map(BigInt));
  const out = new Float32Array(tokens.length * V);
  let past = emptyPastFeeds(spec.config, 1);
  let pos = 0;
  for (const chunk of chunks) {
    const total = pos + chunk.length;
    const r = await engine.run({
      input_ids: { type: 'int64', dims: [1, chunk.length], data: int64(chunk) },
      attention_mask: { type: 'int64', dims: [1, total], data: int64(new Array(total).fill(1)) },
      position_ids: { type: 'int64', dims: [1, chunk.length], data: int64(chunk.map((_, j) => pos + j)) },
      ...past,
    });
    out.set(r.logits.data as Float32Array, pos * V);
    past = pastFromPresent(spec.config, r);
    pos = total;
  }
  await engine.release();
  return out;
}

/** A prefill of the first `prefill` tokens, then one token at a time. */
export const prefillThenSteps = (tokens: number[], prefill: number): number[][] => [
  tokens.slice(0, prefill),
  ...tokens.slice(prefill).map((t) => [t]),
];
