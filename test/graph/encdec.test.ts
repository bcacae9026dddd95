/**
 * The encoder-decoder graphs on ONNX Runtime against the plain-TypeScript T5 reference (test/reference/t5.ts, a
 * float64 forward written from the T5 definition), for random T5 v1.0 (relu, tied, output scaled by d_model^−½)
 * and v1.1 (gated-gelu, untied) models of 2 + 2 blocks, through the runner and the descriptor as the commands use
 * them: a batch with a right-padded source row among full ones, every head kept and heads masked in each of the
 * three stacks (encoder self, decoder self, cross). Teacher-forced logits, row logits and the encoder output must
 * agree to 1e-4, 'nll' with −log softmax of the reference logits at the targets, and greedy generation through the
 * encoder + KV-cache step graphs (batched, rows of different source lengths, rows stopping at different steps)
 * token for token with the reference's greedy decoding.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { archOf, buildGraph, decodeLoopOf, headMaskShape } from '../../src/arch/registry.js';
import { createRunner, IGNORE_INDEX } from '../../src/engine/runner.js';
import { createEngine } from '../../src/engine/session.js';
import {
  buildEncDecEncoderGraph,
  buildEncDecGraph,
  buildEncDecStepGraph,
  relativePositionBucket,
} from '../../src/graph/encdec.js';
import { loadWeights } from '../../src/graph/weights.js';
import { type ModelSpec, memoryTensor } from '../../src/model/spec.js';
import { createRng } from '../../src/util/rng.js';
import { randomT5, type T5Version } from '../helpers/t5.js';
import { relativeBucket, t5Reference } from '../reference/t5.js';

const TOLERANCE = 1e-4;

/** Source rows (one right-padded), their mask, and decoder input rows of equal length starting with the start id. */
function batchOf(spec: ModelSpec, seed: number) {
  const c = spec.config;
  const rng = createRng(seed);
  const lengths = [7, 4, 7];
  const S = Math.max(...lengths);
  const T = 6;
  const token = () => 2 + rng.nextInt(c.vocabSize - 2); // never pad (0) or eos (1)
  const src = lengths.map((n) => Array.from({ length: S }, (_, t) => (t < n ? token() : 0)));
  const mask = lengths.map((n) => Array.from({ length: S }, (_, t) => (t < n ? 1 : 0)));
  const dec = lengths.map(() => [0, ...Array.from({ length: T - 1 }, token)]);
  return { src, mask, dec, S, T, B: lengths.length, lengths };
}

const int64 = (rows: number[][]) => BigInt64Array.from(rows.flat().map((v) => BigInt(v)));

/** Head masks: all kept, and one head masked in each stack alone and all together (rows per the contract). */
function headMasks(spec: ModelSpec): Array<[string, Float32Array | undefined]> {
  const [rows, maxHeads] = headMaskShape(spec.config);
  const L = spec.config.numLayers;
  const E = spec.config.encdec!.encoderLayers;
  const masked = (cells: Array<[number, number]>) => {
    const m = new Float32Array(rows * maxHeads).fill(1);
    for (const [r, h] of cells) m[r * maxHeads + h] = 0;
    return m;
  };
  return [
    ['every head', undefined],
    [
      'encoder heads masked',
      masked([
        [0, 1],
        [E - 1, 0],
        [E - 1, 2],
      ]),
    ],
    [
      'decoder self heads masked',
      masked([
        [E, 2],
        [L - 1, 0],
      ]),
    ],
    [
      'cross heads masked',
      masked([
        [L, 0],
        [L + 1, 1],
        [L + 1, 2],
      ]),
    ],
    [
      'heads masked in all three stacks',
      masked([
        [0, 2],
        [E + 1, 1],
        [L, 1],
      ]),
    ],
  ];
}

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

const VERSIONS: Array<[T5Version, number]> = [
  ['v1.0', 11],
  ['v1.1', 12],
];

describe('T5 relative position buckets (graph/encdec.ts)', () => {
  it("equal the reference's and PyTorch's float32 values at the log-spaced edges", () => {
    for (const [buckets, distance] of [
      [32, 128],
      [8, 12],
      [16, 40],
    ]) {
      for (let r = -300; r <= 300; r++) {
        for (const bi of [true, false]) {
          assert.equal(
            relativePositionBucket(r, bi, buckets, distance),
            relativeBucket(r, bi, buckets, distance),
            `r ${r}, bidirectional ${bi}, ${buckets}/${distance}`,
          );
        }
      }
    }
    // numpy float32 of torch's formula (32 buckets, 128): −128, −64, −32, −16, 16, 32, 64, 128 bidirectional;
    // −128, −64, −32, −16 causal.
    const bi = [-128, -64, -32, -16, 16, 32, 64, 128].map((r) => relativePositionBucket(r, true, 32, 128));
    assert.deepEqual(bi, [15, 14, 12, 10, 26, 28, 30, 31]);
    const ca = [-128, -64, -32, -16].map((r) => relativePositionBucket(r, false, 32, 128));
    assert.deepEqual(ca, [31, 26, 21, 16]);
  });
});

for (const [version, seed] of VERSIONS) {
  describe(`encoder-decoder graphs = reference forward, random T5 ${version}`, async () => {
    const spec = randomT5(version, seed);
    const c = spec.config;
    const ref = await t5Reference(spec);
    const { src, mask, dec, S, T, B, lengths } = batchOf(spec, seed + 100);
    const V = c.vocabSize;
    const batch = {
      batch: B,
      seq: S,
      ids: int64(src),
      attentionMask: int64(mask),
      decoderIds: int64(dec),
      decoderSeq: T,
    };

    it("'logits', 'row_logits' and 'hidden' equal the reference, every head and heads masked in each stack", async () => {
      const logitsRunner = await createRunner(spec, { output: 'logits' });
      const hiddenRunner = await createRunner(spec, { output: 'hidden' });
      try {
        for (const [name, headMask] of headMasks(spec)) {
          const want = ref.decodeLogits(src, mask, dec, headMask);
          const got = await logitsRunner.run(batch, { headMask });
          assert.equal(got.length, B * T * V);
          assert.ok(
            maxDiff(
              got,
              want.flatMap((r) => r.flatMap((p) => [...p])),
            ) < TOLERANCE,
            name,
          );
          // The encoder output at real source positions (padding positions are nobody's input).
          const enc = ref.encode(src, mask, headMask);
          const hidden = await hiddenRunner.run(batch, { headMask });
          const D = c.hiddenSize;
          for (let b = 0; b < B; b++) {
            for (let t = 0; t < lengths[b]; t++) {
              const at = (b * S + t) * D;
              assert.ok(
                maxDiff(hidden.subarray(at, at + D), enc[b][t]) < TOLERANCE,
                `${name}: hidden ${b},${t}`,
              );
            }
          }
        }
      } finally {
        await logitsRunner.release();
        await hiddenRunner.release();
      }
    });

    it('weight masks on self, cross and MLP linears equal the reference with those weights zeroed', async () => {
      const roles = [
        'layers.0.attn.q.weight',
        'layers.1.mlp.down.weight',
        'layers.2.attn.v.weight',
        'layers.3.cross.k.weight',
        'layers.2.cross.o.weight',
        'layers.3.cross.q.weight',
      ];
      const rng = createRng(seed + 3);
      const weightMasks = new Map<string, Uint8Array>();
      const zeroed = new Map(spec.tensors);
      for (const role of roles) {
        const t = spec.tensors.get(role)!;
        const m = Uint8Array.from({ length: t.shape[0] * t.shape[1] }, () => (rng.nextFloat() < 0.5 ? 1 : 0));
        weightMasks.set(role, m);
        const data = Float32Array.from(await t.load(), (v, i) => (m[i] ? v : 0));
        zeroed.set(role, memoryTensor([...t.shape], data));
      }
      const want = (await t5Reference({ ...spec, tensors: zeroed })).decodeLogits(src, mask, dec);
      const runner = await createRunner(spec, { output: 'logits', weightMasks: roles });
      try {
        const got = await runner.run(batch, { weightMasks });
        assert.ok(
          maxDiff(
            got,
            want.flatMap((r) => r.flatMap((p) => [...p])),
          ) < TOLERANCE,
        );
        // Unmasked, the same session gives the dense model's logits.
        const dense = ref.decodeLogits(src, mask, dec);
        assert.ok(
          maxDiff(
            await runner.run(batch),
            dense.flatMap((r) => r.flatMap((p) => [...p])),
          ) < TOLERANCE,
        );
      } finally {
        await runner.release();
      }
    });

    it("'row_logits' reads each row's own decoder position", async () => {
      const weights = await loadWeights(spec);
      const engine = await createEngine(buildGraph(spec, weights, { output: 'row_logits' }), {});
      try {
        const [rows, maxHeads] = headMaskShape(c);
        const lastIndex = [5, 2, 0];
        const out = await engine.run({
          input_ids: { type: 'int64', dims: [B, S], data: int64(src) },
          attention_mask: { type: 'int64', dims: [B, S], data: int64(mask) },
          decoder_input_ids: { type: 'int64', dims: [B, T], data: int64(dec) },
          head_mask: {
            type: 'float32',
            dims: [rows, maxHeads],
            data: new Float32Array(rows * maxHeads).fill(1),
          },
          last_index: { type: 'int64', dims: [B], data: int64([lastIndex]) },
        });
        const want = ref.decodeLogits(src, mask, dec);
        assert.deepEqual(out.logits.dims, [B, V]);
        for (let b = 0; b < B; b++) {
          assert.ok(maxDiff(out.logits.data.subarray(b * V, (b + 1) * V), want[b][lastIndex[b]]) < TOLERANCE);
        }
      } finally {
        await engine.release();
      }
    });

    it("'nll' equals −log softmax of the reference logits at the targets (−100 ignored)", async () => {
      const runner = await createRunner(spec, { output: 'nll' });
      try {
        const targets = dec.map((row, b) =>
          row.map((_, t) => (b === 1 && t >= 4 ? IGNORE_INDEX : (row[t] * 7 + b) % V)),
        );
        for (const [name, headMask] of headMasks(spec)) {
          const logits = ref.decodeLogits(src, mask, dec, headMask);
          const got = await runner.run({ ...batch, targets: int64(targets) }, { headMask });
          for (let b = 0; b < B; b++) {
            for (let t = 0; t < T; t++) {
              const y = targets[b][t];
              let want = 0;
              if (y !== IGNORE_INDEX) {
                const row = logits[b][t];
                const max = Math.max(...row);
                let z = 0;
                for (const v of row) z += Math.exp(v - max);
                want = max + Math.log(z) - row[y];
              }
              assert.ok(
                Math.abs(got[b * T + t] - want) < TOLERANCE,
                `${name}: nll ${b},${t}: ${got[b * T + t]} vs ${want}`,
              );
            }
          }
        }
      } finally {
        await runner.release();
      }
    });

    it("'nll' in vocabulary chunks equals the whole-vocabulary 'nll' (the head shares the embedding's chunks when tied)", async () => {
      const targets = int64(dec.map((row) => row.map((t) => (t * 3 + 1) % V)));
      const whole = await createRunner(spec, { output: 'nll' });
      const chunked = await createRunner(spec, { output: 'nll', vocabChunk: 16 });
      try {
        const headMask = headMasks(spec)[4][1];
        const a = await whole.run({ ...batch, targets }, { headMask });
        const b = await chunked.run({ ...batch, targets }, { headMask });
        assert.ok(maxDiff(a, b) < 1e-5);
      } finally {
        await whole.release();
        await chunked.release();
      }
    });

    it('greedy decoding on the encoder + KV-cache step graphs equals the reference token for token', async () => {
      const runner = await createRunner(spec, { output: 'row_logits' });
      const single = await createRunner(spec, { output: 'last_logits' });
      const loop = decodeLoopOf(c);
      // Sources of four different lengths (unpadded: the loop pads them), in one batch and in batches of two.
      const rng = createRng(seed + 7);
      const sources = [5, 9, 3, 7].map((n) => Array.from({ length: n }, () => 2 + rng.nextInt(V - 2)));
      const S2 = Math.max(...sources.map((s) => s.length));
      const padded = sources.map((s) => [...s, ...Array(S2 - s.length).fill(0)]);
      const srcMask = sources.map((s) => Array.from({ length: S2 }, (_, t) => (t < s.length ? 1 : 0)));
      const maxNew = 10;
      const eos = c.eosTokenId!;
      try {
        for (const [name, headMask] of headMasks(spec)) {
          const want = ref.greedy(padded, srcMask, maxNew, headMask);
          // A stop token that some row reaches mid-way makes rows leave the batch at different steps: each row's
          // expected output is the reference's cut before that token's first occurrence.
          const stopAt = want.map((w) => w[Math.floor(w.length / 2)]).find((t) => t !== undefined)!;
          const cut = want.map((w) => (w.includes(stopAt) ? w.slice(0, w.indexOf(stopAt)) : w));
          for (const batchSize of [4, 2]) {
            const got = await loop.greedyBatch(runner, sources, {
              maxNewTokens: maxNew,
              batchSize,
              masks: { headMask },
              stopTokens: [eos, stopAt],
            });
            assert.deepEqual(got.tokens, cut, `${name}, batch ${batchSize}`);
            assert.deepEqual(
              got.finish,
              cut.map((w) => (w.length < maxNew ? 'stop' : 'length')),
              `${name}: finish`,
            );
          }
          // One source through generate (the source, then the generated tokens).
          const one = await loop.generate(single, sources[1], {
            maxNewTokens: maxNew,
            masks: { headMask },
            stopTokens: [eos],
          });
          assert.deepEqual(one, [...sources[1], ...want[1]], `${name}: generate`);
        }
      } finally {
        await runner.release();
        await single.release();
      }
    });

    it('greedy decoding with weight masks equals the reference with those weights zeroed', async () => {
      const roles = ['layers.1.attn.k.weight', 'layers.2.cross.v.weight', 'layers.3.mlp.up.weight'];
      const rng = createRng(seed + 9);
      const weightMasks = new Map<string, Uint8Array>();
      const zeroed = new Map(spec.tensors);
      for (const role of roles) {
        const t = spec.tensors.get(role)!;
        const m = Uint8Array.from({ length: t.shape[0] * t.shape[1] }, () => (rng.nextFloat() < 0.6 ? 1 : 0));
        weightMasks.set(role, m);
        zeroed.set(
          role,
          memoryTensor(
            [...t.shape],
            Float32Array.from(await t.load(), (v, i) => (m[i] ? v : 0)),
          ),
        );
      }
      const want = (await t5Reference({ ...spec, tensors: zeroed })).greedy(src, mask, 8);
      const runner = await createRunner(spec, { output: 'row_logits', weightMasks: roles });
      try {
        const sources = src.map((row, b) => row.slice(0, lengths[b]));
        const got = await decodeLoopOf(c).greedyBatch(runner, sources, {
          maxNewTokens: 8,
          masks: { weightMasks },
          stopTokens: [c.eosTokenId!],
        });
        assert.deepEqual(got.tokens, want);
      } finally {
        await runner.release();
      }
    });
  });
}

describe('encoder-decoder graphs with fp16 / bf16 weights', () => {
  it('stay within the narrow dtype of the fp32 logits, and generate', async () => {
    const spec = randomT5('v1.0', 23);
    const { src, mask, dec, S, T, B } = batchOf(spec, 9);
    const batch = {
      batch: B,
      seq: S,
      ids: int64(src),
      attentionMask: int64(mask),
      decoderIds: int64(dec),
      decoderSeq: T,
    };
    const want = (await t5Reference(spec))
      .decodeLogits(src, mask, dec)
      .flatMap((r) => r.flatMap((p) => [...p]));
    // Weights rounded to 11 (fp16) or 8 (bf16) significant bits, through six blocks and the head.
    for (const [dtype, tolerance] of [
      ['fp16', 1e-2],
      ['bf16', 6e-2],
    ] as const) {
      const runner = await createRunner(spec, { output: 'logits', dtype });
      const gen = await createRunner(spec, { output: 'row_logits', dtype });
      try {
        assert.ok(maxDiff(await runner.run(batch), want) < tolerance, dtype);
        const out = await decodeLoopOf(spec.config).greedyBatch(gen, [src[0]], { maxNewTokens: 4 });
        assert.equal(out.tokens[0].length, 4);
      } finally {
        await runner.release();
        await gen.release();
      }
    }
  });
});

describe('encoder-decoder generation graphs', () => {
  it("have transformers.js v4's T5 inputs and outputs when built for deployment, and a cached step equals the teacher-forced logits", async () => {
    const spec = randomT5('v1.1', 21);
    const c = spec.config;
    const weights = await loadWeights(spec);
    const enc = await createEngine(buildEncDecEncoderGraph(spec, weights, { deploy: true }), {});
    const step = await createEngine(buildEncDecStepGraph(spec, weights, { deploy: true }), {});
    const full = await createEngine(buildEncDecGraph(spec, weights, { output: 'logits' }), {});
    try {
      assert.deepEqual([...enc.inputNames].sort(), ['attention_mask', 'input_ids']);
      assert.deepEqual(enc.outputNames, ['last_hidden_state']);
      const pkv = [0, 1].flatMap((d) =>
        ['decoder', 'encoder'].flatMap((p) => ['key', 'value'].map((k) => `${d}.${p}.${k}`)),
      );
      assert.deepEqual(
        [...step.inputNames].sort(),
        [
          'encoder_attention_mask',
          'encoder_hidden_states',
          'input_ids',
          ...pkv.map((n) => `past_key_values.${n}`),
          'use_cache_branch',
        ].sort(),
      );
      assert.deepEqual([...step.outputNames].sort(), ['logits', ...pkv.map((n) => `present.${n}`)].sort());
      // Feed it as transformers.js does: first step with zero-length caches and use_cache_branch false, the
      // start token; then one token per step with the previous presents.
      const { src, mask, dec, S, T, B } = batchOf(spec, 5);
      const [rows, maxHeads] = headMaskShape(c);
      const teacher = await full.run({
        input_ids: { type: 'int64', dims: [B, S], data: int64(src) },
        attention_mask: { type: 'int64', dims: [B, S], data: int64(mask) },
        decoder_input_ids: { type: 'int64', dims: [B, T], data: int64(dec) },
        head_mask: {
          type: 'float32',
          dims: [rows, maxHeads],
          data: new Float32Array(rows * maxHeads).fill(1),
        },
      });
      const hidden = (
        await enc.run({
          input_ids: { type: 'int64', dims: [B, S], data: int64(src) },
          attention_mask: { type: 'int64', dims: [B, S], data: int64(mask) },
        })
      ).last_hidden_state;
      let past: Record<string, { type: 'float32'; dims: readonly number[]; data: Float32Array }> = {};
      for (const n of pkv)
        past[`past_key_values.${n}`] = { type: 'float32', dims: [B, 3, 0, 4], data: new Float32Array(0) };
      const V = c.vocabSize;
      for (let t = 0; t < T; t++) {
        const out = await step.run({
          input_ids: { type: 'int64', dims: [B, 1], data: int64(dec.map((r) => [r[t]])) },
          encoder_attention_mask: { type: 'int64', dims: [B, S], data: int64(mask) },
          encoder_hidden_states: { type: 'float32', dims: hidden.dims, data: hidden.data },
          use_cache_branch: { type: 'bool', dims: [1], data: Uint8Array.of(t > 0 ? 1 : 0) },
          ...past,
        });
        assert.deepEqual(out['present.1.decoder.key'].dims, [B, 3, t + 1, 4]);
        assert.deepEqual(out['present.0.encoder.value'].dims, [B, 3, S, 4]);
        for (let b = 0; b < B; b++) {
          const got = out.logits.data.subarray(b * V, (b + 1) * V);
          const want = teacher.logits.data.subarray((b * T + t) * V, (b * T + t + 1) * V);
          assert.ok(maxDiff(got, want) < 1e-5, `step ${t} row ${b}`);
        }
        past = {};
        for (const n of pkv) {
          const p = out[`present.${n}`];
          past[`past_key_values.${n}`] = { type: 'float32', dims: p.dims, data: p.data };
        }
      }
    } finally {
      await enc.release();
      await step.release();
      await full.release();
    }
  });

  it('refuse what they do not build in one line', async () => {
    const spec = randomT5('v1.0', 22);
    const weights = await loadWeights(spec);
    assert.throws(
      () => buildEncDecGraph(spec, weights, { output: 'kl' }),
      /output 'kl' is not one it builds/,
    );
    assert.throws(
      () => buildEncDecGraph(spec, weights, { output: 'nll', layers: [0, 2] }),
      /a block ending at layer 2 of 4 outputs 'hidden', not 'nll'/,
    );
    assert.throws(
      () => buildEncDecGraph(spec, weights, { output: 'hidden', layers: [2, 4] }),
      /a block of decoder layers \[2, 4\) has no encoder output/,
    );
    assert.throws(
      () =>
        buildEncDecGraph(spec, weights, {
          output: 'hidden',
          layers: [2, 3],
          capture: { layers: [1], kind: 'sqnorm' },
        }),
      /captured layer 1 is outside the graph's layers \[2, 3\)/,
    );
    const capped = { ...spec, config: { ...spec.config, attnSoftcap: 50 } };
    assert.throws(() => buildEncDecGraph(capped, weights, { output: 'nll' }), /cannot build attnSoftcap 50/);
    assert.throws(
      () => buildEncDecStepGraph(spec, weights, { deploy: true, weightMasks: ['layers.0.attn.q.weight'] }),
      /deployment graph takes no weight masks/,
    );
    assert.throws(() => archOf(spec.config).export.deployGraph(spec, weights), /writes two graphs/);
    const runner = await createRunner(spec, { output: 'row_logits' });
    try {
      const loop = decodeLoopOf(spec.config);
      await assert.rejects(
        loop.greedyBatch(
          runner,
          [
            [3, 4],
            [5, 40],
          ],
          { maxNewTokens: 2 },
        ),
        /source 2 has token id 40, outside the model's vocabulary of 40/,
      );
      await assert.rejects(loop.greedyBatch(runner, [[]], { maxNewTokens: 2 }), /source 1 has no tokens/);
      await assert.rejects(
        runner.run({ batch: 1, seq: 1, ids: BigInt64Array.of(3n) }),
        /generates through its decode loop/,
      );
    } finally {
      await runner.release();
    }
  });
});
