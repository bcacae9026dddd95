/**
 * What the decoder export tests check against transformers.js, once: an exported causal LM loaded offline from a
 * folder the test wrote, its logits for one row of tokens, its greedy generation through its own KV cache, and
 * the same greedy decoding on geneprune's full-sequence graph (argmax of the last position, ties to the lower id).
 */
import assert from 'node:assert/strict';
import { createRunner } from '../../src/engine/runner.js';
import type { ModelSpec } from '../../src/model/spec.js';
import { maxAbsDiff } from './logits.js';

export const int64 = (xs: number[]): BigInt64Array => BigInt64Array.from(xs.map(BigInt));

/** The engine's logits for one row of `tokens`, [tokens · vocab], heads masked by a flat mask when given. */
export async function rowLogits(
  spec: ModelSpec,
  tokens: number[],
  headMask?: Float32Array,
): Promise<Float32Array> {
  const runner = await createRunner(spec, { output: 'logits' });
  const out = await runner.run({ batch: 1, seq: tokens.length, ids: int64(tokens) }, { headMask });
  await runner.release();
  return out;
}

/** `tokens` and `steps` greedy tokens after them on geneprune's full-sequence graph. */
export async function greedyTokens(
  spec: ModelSpec,
  tokens: number[],
  steps: number,
  headMask?: Float32Array,
): Promise<number[]> {
  const ids = [...tokens];
  const full = await createRunner(spec, { output: 'last_logits' });
  for (let s = 0; s < steps; s++) {
    const last = await full.run({ batch: 1, seq: ids.length, ids: int64(ids) }, { headMask });
    let best = 0;
    for (let v = 1; v < last.length; v++) if (last[v] > last[best]) best = v;
    ids.push(best);
  }
  await full.release();
  return ids;
}

/** A causal LM transformers.js loaded (fp32, offline), and how the tests run it. */
export interface TransformersJsLm {
  /** Logits of one row of tokens, attention mask all ones. */
  logits(tokens: number[]): Promise<Float32Array>;
  /** Logits of rows of one length with their attention masks (0 = padding), as one batch. */
  batchLogits(rows: number[][], masks: number[][]): Promise<Float32Array>;
  /** `tokens` and `steps` greedy tokens after them, through transformers.js' KV cache. */
  generate(tokens: number[], steps: number): Promise<number[]>;
  dispose(): Promise<void>;
}

/** transformers.js' AutoModelForCausalLM of folder `root`/`name`, loaded without the network. */
export async function loadTransformersJs(root: string, name = 'pruned'): Promise<TransformersJsLm> {
  const { env, AutoModelForCausalLM, Tensor } = await import('@huggingface/transformers');
  env.allowRemoteModels = false;
  env.localModelPath = `${root}/`;
  const lm = await AutoModelForCausalLM.from_pretrained(name, { dtype: 'fp32' });
  const inputs = (rows: number[][], masks: number[][]) => ({
    input_ids: new Tensor('int64', int64(rows.flat()), [rows.length, rows[0].length]),
    attention_mask: new Tensor('int64', int64(masks.flat()), [rows.length, rows[0].length]),
  });
  const ones = (tokens: number[]) => [tokens.map(() => 1)];
  const batchLogits = async (rows: number[][], masks: number[][]) =>
    ((await lm(inputs(rows, masks))) as { logits: { data: Float32Array } }).logits.data;
  return {
    logits: (tokens) => batchLogits([tokens], ones(tokens)),
    batchLogits,
    async generate(tokens, steps) {
      const generated = (await lm.generate({
        ...inputs([tokens], ones(tokens)),
        max_new_tokens: steps,
        do_sample: false,
      })) as unknown as { tolist(): bigint[][] };
      return generated.tolist()[0].map(Number);
    },
    async dispose() {
      await lm.dispose();
    },
  };
}

/**
 * transformers.js, loading the export `root`/pruned offline, gives `expected` for `tokens` (within 1e-4), and its
 * greedy generation of `steps` tokens through its KV cache equals geneprune's greedy decoding of `spec`.
 */
export async function assertTransformersJsMatches(
  root: string,
  spec: ModelSpec,
  tokens: number[],
  expected: Float32Array,
  steps: number,
): Promise<void> {
  const lm = await loadTransformersJs(root);
  const d = maxAbsDiff(await lm.logits(tokens), expected);
  assert.ok(d <= 1e-4, `transformers.js logits: max abs diff ${d}`);
  const generated = await lm.generate(tokens, steps);
  await lm.dispose();
  assert.deepEqual(generated, await greedyTokens(spec, tokens, steps), 'greedy tokens');
}
