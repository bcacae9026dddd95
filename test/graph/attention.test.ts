/**
 * The fused attention path (one ONNX Runtime kernel per layer) against the explicit QKᵀ/mask/Softmax/·V path it
 * replaces: equal logits and NLL to 1e-5 on random models (multi-head, GQA, biases, uneven query→KV maps left by
 * pruning, a layer with no heads, masked heads, right-padded batches), and stories260K's perplexity unchanged.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { createRunner, type TokenBatch } from '../../src/engine/runner.js';
import type { AttentionKind, FusedAttentionOp } from '../../src/graph/attention.js';
import { isUniformGrouping } from '../../src/graph/attention.js';
import { IGNORE_INDEX } from '../../src/graph/lmhead.js';
import { loadWeights } from '../../src/graph/weights.js';
import { readDataset } from '../../src/metrics/data.js';
import { evaluatePerplexity, makeWindows, tokenizeDocuments } from '../../src/metrics/perplexity.js';
import { openModel } from '../../src/model/open.js';
import { randomLlamaSpec } from '../../src/model/random.js';
import type { ModelSpec } from '../../src/model/spec.js';
import { pruneHeads } from '../../src/prune/heads.js';
import { createRng } from '../../src/util/rng.js';
import { sharedPath } from '../shared.js';

const VOCAB = 41;

function spec(opts: {
  heads: number;
  kv: number;
  modelType?: string;
  bias?: boolean;
  headDim?: number;
  seed: number;
}): ModelSpec {
  return randomLlamaSpec({
    hiddenSize: 48,
    numLayers: 3,
    numHeads: opts.heads,
    numKvHeads: opts.kv,
    headDim: opts.headDim ?? 8,
    intermediateSize: 56,
    vocabSize: VOCAB,
    maxPositions: 64,
    modelType: opts.modelType,
    attentionBias: opts.bias,
    seed: opts.seed,
    scale: 4, // larger weights: sharper attention, so a wrong mask or grouping shows
  });
}

/** Two rows of `seq` tokens; row 1 is right-padded after `realLength` (targets ignored there) when given. */
function tokenBatch(seq: number, seed: number, realLength = seq): TokenBatch {
  const rng = createRng(seed);
  const ids = BigInt64Array.from({ length: 2 * seq }, () => BigInt(rng.nextInt(VOCAB)));
  const targets = BigInt64Array.from({ length: 2 * seq }, () => BigInt(rng.nextInt(VOCAB)));
  for (let t = realLength; t < seq; t++) {
    ids[seq + t] = 0n;
    targets[seq + t] = BigInt(IGNORE_INDEX);
  }
  return { batch: 2, seq, ids, targets };
}

async function outputs(
  s: ModelSpec,
  batch: TokenBatch,
  attention: AttentionKind,
  headMask?: Float32Array,
  fusedOp?: FusedAttentionOp,
): Promise<{ logits: Float32Array; nll: Float32Array }> {
  const weights = await loadWeights(s);
  const out: { logits: Float32Array; nll: Float32Array } = {
    logits: new Float32Array(),
    nll: new Float32Array(),
  };
  for (const output of ['logits', 'nll'] as const) {
    const runner = await createRunner(s, { output, weights, attention, fusedOp });
    try {
      out[output] = await runner.run(batch, { headMask });
    } finally {
      await runner.release();
    }
  }
  return out;
}

function maxDiff(a: Float32Array, b: Float32Array, positions?: (i: number) => boolean): number {
  assert.equal(a.length, b.length);
  let d = 0;
  for (let i = 0; i < a.length; i++) if (!positions || positions(i)) d = Math.max(d, Math.abs(a[i] - b[i]));
  return d;
}

async function assertSame(
  s: ModelSpec,
  batch: TokenBatch,
  headMask?: Float32Array,
  fusedOp?: FusedAttentionOp,
) {
  const explicit = await outputs(s, batch, 'explicit', headMask);
  const fused = await outputs(s, batch, 'fused', headMask, fusedOp);
  const dLogits = maxDiff(explicit.logits, fused.logits);
  const dNll = maxDiff(explicit.nll, fused.nll);
  assert.ok(dLogits <= 1e-5, `logits differ by ${dLogits}`);
  assert.ok(dNll <= 1e-5, `NLL differs by ${dNll}`);
  return explicit;
}

describe('fused attention equals the explicit path', () => {
  const models = [
    { name: 'multi-head 6:6', heads: 6, kv: 6 },
    { name: 'GQA 6:2', heads: 6, kv: 2 },
    { name: 'GQA 8:4, qwen2 q/k/v biases', heads: 8, kv: 4, modelType: 'qwen2', bias: true },
    { name: 'MQA 4:1, attention_bias', heads: 4, kv: 1, bias: true },
    {
      name: 'GQA 6:2, head size 4 (MultiHeadAttention: GQA needs head size % 8 = 0)',
      heads: 6,
      kv: 2,
      headDim: 4,
    },
    { name: 'GQA 4:2, head size 16', heads: 4, kv: 2, headDim: 16 },
  ];
  models.forEach((m, i) => {
    test(m.name, async () => {
      const s = spec({ ...m, seed: 10 + i });
      await assertSame(s, tokenBatch(29, i));
    });
  });

  test('with heads masked (GQA 6:2)', async () => {
    const s = spec({ heads: 6, kv: 2, seed: 20 });
    const rng = createRng(21);
    const mask = Float32Array.from({ length: 3 * 6 }, () => (rng.nextFloat() < 0.4 ? 0 : 1));
    mask[0] = 0;
    mask[17] = 1;
    const masked = await assertSame(s, tokenBatch(23, 3), mask);
    const unmasked = await outputs(s, tokenBatch(23, 3), 'explicit');
    assert.ok(maxDiff(masked.nll, unmasked.nll) > 1e-3, 'the mask changes the output');
  });

  test('pruned: uneven query→KV maps and a layer with no heads', async () => {
    const s = spec({ heads: 6, kv: 3, seed: 30 });
    // Layer 0 keeps heads 0, 1, 2, 4 (KV 0 twice, KV 1, KV 2: uneven); layer 1 keeps none; layer 2 keeps 1, 3, 5
    // (one per KV head: uniform, kvHeadOfQuery left out).
    const genome = Uint8Array.from([1, 1, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0, 1]);
    const pruned = pruneHeads(s, genome);
    assert.deepEqual(pruned.config.headsPerLayer, [4, 0, 3]);
    assert.deepEqual(pruned.config.kvHeadOfQuery?.[0], [0, 0, 1, 2]);
    assert.ok(!isUniformGrouping(4, 3, [0, 0, 1, 2]));
    for (const op of ['GroupQueryAttention', 'MultiHeadAttention'] as const) {
      await assertSame(pruned, tokenBatch(19, 4), undefined, op);
      // and masked on top (iterative pruning scores a pruned model's heads)
      await assertSame(
        pruned,
        tokenBatch(19, 4),
        Float32Array.from([1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0]),
        op,
      );
    }
  });

  test('right-padded batches: real tokens are unaffected by the padding after them', async () => {
    const s = spec({ heads: 6, kv: 2, seed: 40 });
    const padded = tokenBatch(31, 5, 17);
    const explicit = await assertSame(s, padded);
    // Row 1 alone, unpadded, gives the same NLL on its 17 real tokens.
    const alone: TokenBatch = {
      batch: 1,
      seq: 17,
      ids: padded.ids.slice(31, 31 + 17),
      targets: padded.targets!.slice(31, 31 + 17),
    };
    const fusedAlone = (await outputs(s, alone, 'fused')).nll;
    const fusedPadded = (await outputs(s, padded, 'fused')).nll;
    const d = maxDiff(fusedAlone, fusedPadded.subarray(31, 31 + 17));
    assert.ok(d <= 1e-5, `padded row differs from the row alone by ${d}`);
    for (let t = 17; t < 31; t++) assert.ok(explicit.nll[31 + t] === 0, 'ignored targets score 0');
  });
});

const STORIES = sharedPath('models/stories260K/stories260K.bin');
const EVAL = sharedPath('data/tinystories/eval');
describe('stories260K', { skip: STORIES && EVAL ? false : 'shared model or data absent' }, () => {
  test('eval perplexity is unchanged by the fused path (3.736 over 38,008 tokens)', async () => {
    const model = await openModel(STORIES!);
    const data = await readDataset(EVAL!);
    const windows = makeWindows(tokenizeDocuments(data.documents, model.tokenizer), 512);
    const weights = await loadWeights(model.spec);
    const ppl: Record<AttentionKind, number> = { explicit: 0, fused: 0 };
    for (const attention of ['explicit', 'fused'] as const) {
      const runner = await createRunner(model.spec, { output: 'nll', weights, attention });
      try {
        const r = await evaluatePerplexity(runner, windows);
        assert.equal(r.tokens, 38008);
        ppl[attention] = r.perplexity;
      } finally {
        await runner.release();
      }
    }
    assert.equal(ppl.fused.toFixed(3), '3.736');
    const rel = Math.abs(ppl.fused - ppl.explicit) / ppl.explicit;
    assert.ok(rel <= 1e-4, `fused ${ppl.fused} vs explicit ${ppl.explicit}: relative ${rel}`);
  });
});
