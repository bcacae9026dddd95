/**
 * Rotary-scaled checkpoints (rope_scaling linear, dynamic, llama3, yarn; rope_parameters) written as Hugging Face
 * folders, loaded and run on ONNX Runtime, match the plain reference forward to 1e-4 on logits — fused and
 * explicit attention, block graphs, and the KV-cache graph — at lengths where the scaling changes the rotation
 * (for llama3: pairs in all three bands). The reference reads config.json's rope_scaling object itself.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { writeHfFolder } from '../../src/checkpoint/hf.js';
import { emptyPastFeeds, pastFromPresent } from '../../src/engine/kvcache.js';
import { createRunner } from '../../src/engine/runner.js';
import { createEngine } from '../../src/engine/session.js';
import { GenepruneError } from '../../src/errors.js';
import { buildDecoderGraph } from '../../src/graph/decoder.js';
import { loadWeights } from '../../src/graph/weights.js';
import { llamaSpecToHf, writeLlama2cFromSpec } from '../../src/model/llama.js';
import { loadModelSpec } from '../../src/model/load.js';
import { randomLlamaSpec } from '../../src/model/random.js';
import type { ModelSpec } from '../../src/model/spec.js';
import { createRng } from '../../src/util/rng.js';
import { tempDir } from '../checkpoint/helpers.js';
import { type ReferenceWeights, referenceForward } from '../reference/llama.js';

const tmp = tempDir('geneprune-rope-');
after(tmp.cleanup);

const SEQ = 24;
const int64 = (xs: number[]) => BigInt64Array.from(xs.map(BigInt));

function randomTokens(n: number, vocab: number, seed: number): number[] {
  const rng = createRng(seed);
  return Array.from({ length: n }, () => rng.nextInt(vocab));
}

interface Case {
  name: string;
  modelType: string;
  maxPositions: number;
  theta: number;
  /** Written to config.json under `key`. */
  json: Record<string, unknown>;
  key: 'rope_scaling' | 'rope_parameters';
}

// head_dim 16 throughout (64 hidden / 4 heads, GQA 4:2). With θ = 10⁴ the wavelengths are 6.3, 20, 63, 199, 628, …
const CASES: Case[] = [
  {
    // Context 512, bands at wavelengths 128 and 512: pairs 0–2 kept, pair 3 blended, pairs 4–7 divided by 8.
    name: 'llama3 (all three bands)',
    modelType: 'llama',
    maxPositions: 4096,
    theta: 10000,
    json: {
      rope_type: 'llama3',
      factor: 8,
      low_freq_factor: 1,
      high_freq_factor: 4,
      original_max_position_embeddings: 512,
    },
    key: 'rope_scaling',
  },
  {
    name: 'linear',
    modelType: 'mistral',
    maxPositions: 128,
    theta: 10000,
    json: { type: 'linear', factor: 4 },
    key: 'rope_scaling',
  },
  {
    // Pairs 0, 1, 2, ≥3 ramp 0, 1/3, 2/3, 1; cos and sin × 1.1386.
    name: 'yarn (qwen2, attention factor 0.1·ln 4 + 1)',
    modelType: 'qwen2',
    maxPositions: 256,
    theta: 10000,
    json: { type: 'yarn', factor: 4, original_max_position_embeddings: 64 },
    key: 'rope_scaling',
  },
  {
    name: 'yarn in rope_parameters (mscale ratio, untruncated, beta_fast 8)',
    modelType: 'qwen2',
    maxPositions: 512,
    theta: 500000,
    json: {
      rope_type: 'yarn',
      rope_theta: 500000,
      factor: 8,
      beta_fast: 8,
      mscale: 2,
      mscale_all_dim: 1,
      truncate: false,
      original_max_position_embeddings: 64,
    },
    key: 'rope_parameters',
  },
  {
    // Exactly the unscaled rotation up to max_position_embeddings (here the whole 24-token row).
    name: 'dynamic (inside the context)',
    modelType: 'llama',
    maxPositions: SEQ,
    theta: 10000,
    json: { type: 'dynamic', factor: 2 },
    key: 'rope_scaling',
  },
];

function specOf(c: Case, seed: number): ModelSpec {
  return randomLlamaSpec({
    hiddenSize: 64,
    numLayers: 2,
    numHeads: 4,
    numKvHeads: 2,
    intermediateSize: 48,
    vocabSize: 41,
    maxPositions: c.maxPositions,
    modelType: c.modelType,
    ropeTheta: c.theta,
    seed,
    scale: 12, // sharp enough attention that a wrong rotation shows, logits small enough for fp32 to hold 1e-4
  });
}

/** Writes the spec as a Hugging Face folder whose config.json carries the case's scaling, and loads it. */
async function scaledFolder(c: Case, spec: ModelSpec, dir: string): Promise<ModelSpec> {
  const hf = llamaSpecToHf(spec);
  await writeHfFolder(dir, { config: hf.config, tensors: hf.tensors });
  const path = join(dir, 'config.json');
  const config = JSON.parse(readFileSync(path, 'utf8'));
  config[c.key] = c.json;
  writeFileSync(path, JSON.stringify(config));
  return loadModelSpec(dir);
}

async function referenceOf(spec: ModelSpec, json?: Record<string, unknown>): Promise<ReferenceWeights> {
  const w = new Map<string, Float32Array>();
  for (const [role, t] of spec.tensors) w.set(role, await t.load());
  return { ...spec.config, ropeScalingJson: json, get: (r) => w.get(r) };
}

function referenceLogits(ref: ReferenceWeights, seqs: number[][]): Float32Array {
  const V = ref.vocabSize;
  const out = new Float32Array(seqs.length * seqs[0].length * V);
  seqs.forEach((seq, b) => {
    referenceForward(ref, seq, { rotary: 'half' }).forEach((row, t) => {
      out.set(row, (b * seq.length + t) * V);
    });
  });
  return out;
}

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

describe('rotary-scaled Hugging Face folders match the reference forward', () => {
  for (const [i, c] of CASES.entries()) {
    test(c.name, async () => {
      const spec = specOf(c, 700 + i);
      const loaded = await scaledFolder(c, spec, join(tmp.dir, `case-${i}`));
      assert.equal(loaded.config.ropeScaling?.kind, String(c.json.rope_type ?? c.json.type));
      assert.equal(loaded.config.ropeTheta, c.theta);
      const V = loaded.config.vocabSize;
      const seqs = [randomTokens(SEQ, V, 10 + i), randomTokens(SEQ, V, 20 + i)];
      const batch = { batch: 2, seq: SEQ, ids: int64(seqs.flat()) };
      const expected = referenceLogits(await referenceOf(spec, c.json), seqs);
      for (const attention of ['fused', 'explicit'] as const) {
        const runner = await createRunner(loaded, { output: 'logits', attention });
        const got = await runner.run(batch);
        await runner.release();
        const diff = maxDiff(got, expected);
        assert.ok(diff <= 1e-4, `${attention}: max abs diff ${diff}`);
      }
      // The scaling matters at this length (dynamic is the unscaled rotation by definition here).
      const unscaled = referenceLogits(await referenceOf(spec), seqs);
      const effect = maxDiff(unscaled, expected);
      if (c.json.type === 'dynamic') assert.ok(effect === 0, `dynamic differs by ${effect}`);
      else assert.ok(effect > 0.05, `scaling changes the logits by only ${effect}`);

      // Block graphs (what weight searches run): layer 0 alone, then layer 1 with the head, from its hidden states.
      const first = await createRunner(loaded, { output: 'hidden', layers: [0, 1] });
      const hidden = await first.run(batch);
      await first.release();
      const second = await createRunner(loaded, { output: 'logits', layers: [1, 2] });
      const blocks = await second.run({ ...batch, hidden });
      await second.release();
      assert.ok(maxDiff(blocks, expected) <= 1e-4, 'block graphs');
    });
  }
});

describe('the KV-cache (export) graph of a scaled model', () => {
  for (const c of [CASES[0], CASES[2]]) {
    test(`${c.name}: prefill + token-by-token decoding equals the reference`, async () => {
      const spec = await scaledFolder(
        c,
        specOf(c, 800),
        join(tmp.dir, `kv-${c.json.type ?? c.json.rope_type}`),
      );
      const V = spec.config.vocabSize;
      const tokens = randomTokens(SEQ, V, 30);
      const expected = referenceLogits(await referenceOf(spec, c.json), [tokens]);
      const engine = await createEngine(
        buildDecoderGraph(spec, await loadWeights(spec), { output: 'logits', kvCache: true }),
      );
      const got = new Float32Array(SEQ * V);
      let past = emptyPastFeeds(spec.config, 1);
      let pos = 0;
      for (const chunk of [tokens.slice(0, 9), ...tokens.slice(9).map((t) => [t])]) {
        const total = pos + chunk.length;
        const out = await engine.run({
          input_ids: { type: 'int64', dims: [1, chunk.length], data: int64(chunk) },
          attention_mask: { type: 'int64', dims: [1, total], data: int64(Array(total).fill(1)) },
          position_ids: { type: 'int64', dims: [1, chunk.length], data: int64(chunk.map((_, j) => pos + j)) },
          ...past,
        });
        got.set(out.logits.data as Float32Array, pos * V);
        past = pastFromPresent(spec.config, out);
        pos = total;
      }
      await engine.release();
      const diff = maxDiff(got, expected);
      assert.ok(diff <= 1e-4, `max abs diff ${diff}`);
    });
  }
});

describe('what scaled models refuse', () => {
  test('a row past max_position_embeddings (where dynamic NTK would rescale) is refused in one line', async () => {
    const c = CASES[4];
    const spec = specOf(c, 900);
    const loaded = await scaledFolder(c, spec, join(tmp.dir, 'dynamic-long'));
    const runner = await createRunner(loaded, { output: 'logits' });
    const long = SEQ + 8;
    await assert.rejects(
      runner.run({ batch: 1, seq: long, ids: int64(randomTokens(long, 41, 3)) }),
      (err: unknown) =>
        err instanceof GenepruneError &&
        /a row of 32 positions is longer than the model's context of 24 \(max_position_embeddings\)/.test(
          err.message,
        ),
    );
    await runner.release();
  });

  test('the llama2.c writer refuses a scaled model (llama2.c has no rotary scaling)', async () => {
    const spec = await scaledFolder(CASES[1], specOf(CASES[1], 901), join(tmp.dir, 'l2c'));
    await assert.rejects(
      writeLlama2cFromSpec(join(tmp.dir, 'out.bin'), spec),
      /rotary scaling \{"kind":"linear","factor":4\}, llama2\.c has none/,
    );
  });
});
