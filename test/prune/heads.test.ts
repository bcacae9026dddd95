/**
 * Physical head pruning must compute what head masking computes: the pruned spec (no mask) against the full
 * model run with headMaskOf(genome), against the plain-TS reference on the pruned tensors, and after a Hugging
 * Face export and reload. Slicing and parameter counts are checked by hand on tiny models.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { writeHfFolder } from '../../src/checkpoint/hf.js';
import { createRunner } from '../../src/engine/runner.js';
import { GenepruneError } from '../../src/errors.js';
import { type Genome, geneCount, headMaskOf } from '../../src/masks/heads.js';
import { parameterCount } from '../../src/model/cost.js';
import { llamaSpecToHf } from '../../src/model/llama.js';
import { loadModelSpec } from '../../src/model/load.js';
import { randomLlamaSpec } from '../../src/model/random.js';
import { type ModelSpec, memoryTensor, type TensorSource } from '../../src/model/spec.js';
import { pruneHeads, pruneLayerPlans, pruneSummary, zeroHeads } from '../../src/prune/heads.js';
import { keptParameters } from '../../src/spaces/heads/space.js';
import { createRng } from '../../src/util/rng.js';
import { tempDir } from '../checkpoint/helpers.js';
import { caseDecoder } from '../helpers/llamacase.js';
import { type ReferenceWeights, referenceForward } from '../reference/llama.js';

const tmp = tempDir('geneprune-prune-');
after(tmp.cleanup);

const SEQ = 11;

function tokenRows(vocab: number): number[][] {
  return [1, 2].map((seed) => {
    const rng = createRng(seed);
    return Array.from({ length: SEQ }, () => rng.nextInt(vocab));
  });
}

async function logits(spec: ModelSpec, rows: number[][], headMask?: Float32Array): Promise<Float32Array> {
  const runner = await createRunner(spec, { output: 'logits' });
  try {
    const ids = BigInt64Array.from(rows.flat().map(BigInt));
    return await runner.run({ batch: rows.length, seq: SEQ, ids }, { headMask });
  } finally {
    await runner.release();
  }
}

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
  return worst;
}

async function referenceWeights(spec: ModelSpec): Promise<ReferenceWeights> {
  const w = new Map<string, Float32Array>();
  for (const [role, t] of spec.tensors) w.set(role, await t.load());
  return { ...spec.config, get: (r) => w.get(r) };
}

async function referenceLogits(spec: ModelSpec, rows: number[][]): Promise<Float64Array> {
  const ref = await referenceWeights(spec);
  const V = spec.config.vocabSize;
  const out = new Float64Array(rows.length * SEQ * V);
  rows.forEach((row, b) => {
    referenceForward(ref, row, { rotary: 'half' }).forEach((l, t) => {
      out.set(l, (b * SEQ + t) * V);
    });
  });
  return out;
}

/** A genome from per-layer lists of removed heads. */
function genomeRemoving(layers: number, heads: number, removed: number[][]): Genome {
  const g = new Uint8Array(layers * heads).fill(1);
  removed.forEach((hs, l) => {
    for (const h of hs) g[l * heads + h] = 0;
  });
  return g;
}

const cases = [
  {
    name: 'llama MHA 4, tied',
    modelType: 'llama',
    kv: 4,
    tie: true,
    bias: false,
    removed: [[0, 2], [1], [0, 1, 2, 3]],
  },
  {
    // Layer 0 loses both query heads of KV group 1, layer 1 one of the two in group 0 (uneven map).
    name: 'llama GQA 4:2, untied, uneven groups',
    modelType: 'llama',
    kv: 2,
    tie: false,
    bias: false,
    removed: [[2, 3], [1], [0, 3]],
  },
  {
    name: 'qwen2 GQA 4:2 (q/k/v biases), untied, a layer with no heads',
    modelType: 'qwen2',
    kv: 2,
    tie: false,
    bias: true,
    removed: [[0], [0, 1, 2, 3], [1, 2]],
  },
  {
    name: 'mistral GQA 4:1, tied',
    modelType: 'mistral',
    kv: 1,
    tie: true,
    bias: false,
    removed: [[3], [1, 2], []],
  },
  {
    // The o bias stays: masked heads still leave it in the residual stream.
    name: 'llama attention_bias (q/k/v/o), GQA 4:2',
    modelType: 'llama',
    kv: 2,
    tie: false,
    bias: true,
    removed: [[0, 1], [2], [1, 3]],
  },
];

function caseSpec(c: (typeof cases)[number], seed: number): ModelSpec {
  // Sharp attention (scale 20): a wrong head or KV head shows in the logits.
  return caseDecoder(c, 3, seed, 20);
}

describe('the pruned spec computes what the masked full model computes', () => {
  for (const [i, c] of cases.entries()) {
    test(c.name, async () => {
      const spec = caseSpec(c, 500 + i);
      const genome = genomeRemoving(3, 4, c.removed);
      const pruned = pruneHeads(spec, genome);
      assert.deepEqual(
        pruned.config.headsPerLayer,
        c.removed.map((r) => 4 - r.length),
      );
      const rows = tokenRows(37);
      const full = await logits(spec, rows);
      const masked = await logits(spec, rows, headMaskOf(spec.config, genome));
      const physical = await logits(pruned, rows);
      assert.ok(maxDiff(full, masked) > 1e-2, 'the genome should change the logits');
      const d = maxDiff(masked, physical);
      assert.ok(d <= 1e-4, `masked vs pruned max abs diff ${d}`);
      const r = maxDiff(await referenceLogits(pruned, rows), physical);
      assert.ok(r <= 1e-4, `reference vs pruned max abs diff ${r}`);

      // Export and reload: config keys and zero-head layers survive the Hugging Face round trip.
      const dir = join(tmp.dir, `rt-${i}`);
      await writeHfFolder(dir, llamaSpecToHf(pruned));
      const loaded = await loadModelSpec(dir);
      assert.deepEqual(loaded.config.headsPerLayer, pruned.config.headsPerLayer);
      assert.deepEqual(loaded.config.kvHeadsPerLayer, pruned.config.kvHeadsPerLayer);
      assert.deepEqual(loaded.config.kvHeadOfQuery, pruned.config.kvHeadOfQuery);
      const rt = maxDiff(await logits(loaded, rows), physical);
      assert.ok(rt <= 1e-4, `reloaded vs pruned max abs diff ${rt}`);
    });
  }

  test('a genome removing every head leaves an attention-free model that still runs', async () => {
    const spec = caseSpec(cases[1], 650);
    const genome = new Uint8Array(12);
    const pruned = pruneHeads(spec, genome);
    assert.deepEqual(pruned.config.headsPerLayer, [0, 0, 0]);
    const rows = tokenRows(37);
    const d = maxDiff(await logits(spec, rows, headMaskOf(spec.config, genome)), await logits(pruned, rows));
    assert.ok(d <= 1e-4, `max abs diff ${d}`);
  });

  test('pruning an already pruned spec follows headMaskOf on it', async () => {
    const spec = caseSpec(cases[1], 600);
    const once = pruneHeads(spec, genomeRemoving(3, 4, [[2, 3], [1], []]));
    // The second genome has one gene per head left (2 + 3 + 4), layer l's genes after those of layers < l.
    assert.equal(geneCount(once.config), 9);
    const g2 = Uint8Array.from([0, 1, 1, 1, 0, 0, 0, 1, 1]);
    assert.throws(() => pruneHeads(once, genomeRemoving(3, 4, [[0], [2], [0, 1]])), /needs 9/);
    const twice = pruneHeads(once, g2);
    assert.deepEqual(twice.config.headsPerLayer, [1, 2, 2]);
    assert.deepEqual(twice.config.kvHeadsPerLayer, [1, 2, 1]);
    const rows = tokenRows(37);
    const masked = await logits(once, rows, headMaskOf(once.config, g2));
    const d = maxDiff(masked, await logits(twice, rows));
    assert.ok(d <= 1e-4, `max abs diff ${d}`);
  });
});

describe('slicing', () => {
  /** A tiny qwen2 GQA 4:2 model whose attention values name their own row and column: r * 1000 + c. */
  function indexedSpec(loads: Map<string, number>): ModelSpec {
    const spec = randomLlamaSpec({
      hiddenSize: 8,
      numLayers: 4,
      numHeads: 4,
      numKvHeads: 2,
      intermediateSize: 6,
      vocabSize: 5,
      maxPositions: 8,
      modelType: 'qwen2',
      seed: 1,
    });
    for (const [role, t] of spec.tensors) {
      const data = new Float32Array(t.shape.reduce((a, b) => a * b, 1));
      const cols = t.shape.length > 1 ? t.shape[1] : 1;
      data.forEach((_, i) => {
        data[i] = Math.floor(i / cols) * 1000 + (i % cols);
      });
      const mem = memoryTensor(t.shape, data);
      const counted: TensorSource = {
        shape: mem.shape,
        dtype: mem.dtype,
        load: () => {
          loads.set(role, (loads.get(role) ?? 0) + 1);
          return mem.load();
        },
      };
      spec.tensors.set(role, counted);
    }
    return spec;
  }

  const rowsOf = (data: Float32Array, cols: number) =>
    Array.from({ length: data.length / cols }, (_, r) => Math.floor(data[r * cols] / 1000));
  const colsOf = (data: Float32Array, cols: number) => Array.from(data.subarray(0, cols), (v) => v % 1000);

  test('kept q/k/v rows, o columns and maps are exactly the expected ones, loaded lazily', async () => {
    const loads = new Map<string, number>();
    const spec = indexedSpec(loads);
    // headDim 2. Layer 0 keeps 1, 3 (both KV heads); layer 1 keeps 0, 1 (KV 0 only);
    // layer 2 keeps 0, 1, 2 (uneven: KV 0 twice, KV 1 once); layer 3 keeps none.
    const genome = genomeRemoving(4, 4, [[0, 2], [2, 3], [3], [0, 1, 2, 3]]);
    const pruned = pruneHeads(spec, genome);
    assert.equal(loads.size, 0, 'pruning itself loads nothing');
    assert.deepEqual(pruned.config.headsPerLayer, [2, 2, 3, 0]);
    assert.deepEqual(pruned.config.kvHeadsPerLayer, [2, 1, 2, 0]);
    assert.deepEqual(pruned.config.kvHeadOfQuery, [[0, 1], [0, 0], [0, 0, 1], []]);
    assert.deepEqual(spec.config.headsPerLayer, [4, 4, 4, 4], 'the input spec is untouched');
    assert.deepEqual(
      pruneLayerPlans(spec, genome).map((p) => p.kv),
      [[0, 1], [0], [0, 1], []],
    );

    const t = (role: string) => pruned.tensors.get(role)!;
    const load = async (role: string) => t(role).load();
    assert.deepEqual(t('layers.0.attn.q.weight').shape, [4, 8]);
    assert.deepEqual(rowsOf(await load('layers.0.attn.q.weight'), 8), [2, 3, 6, 7]);
    assert.deepEqual(colsOf(await load('layers.0.attn.q.weight'), 8), [0, 1, 2, 3, 4, 5, 6, 7]);
    assert.deepEqual(Array.from(await load('layers.0.attn.q.bias')), [2000, 3000, 6000, 7000]);
    assert.equal(
      t('layers.0.attn.k.weight'),
      spec.tensors.get('layers.0.attn.k.weight'),
      'whole: same source',
    );
    assert.deepEqual(t('layers.0.attn.o.weight').shape, [8, 4]);
    const o0 = await load('layers.0.attn.o.weight');
    assert.deepEqual(colsOf(o0, 4), [2, 3, 6, 7]);
    assert.deepEqual(rowsOf(o0, 4), [0, 1, 2, 3, 4, 5, 6, 7]);

    assert.deepEqual(rowsOf(await load('layers.1.attn.q.weight'), 8), [0, 1, 2, 3]);
    assert.deepEqual(rowsOf(await load('layers.1.attn.k.weight'), 8), [0, 1]);
    assert.deepEqual(rowsOf(await load('layers.1.attn.v.weight'), 8), [0, 1]);
    assert.deepEqual(Array.from(await load('layers.1.attn.v.bias')), [0, 1000]);
    assert.deepEqual(colsOf(await load('layers.1.attn.o.weight'), 4), [0, 1, 2, 3]);

    assert.deepEqual(rowsOf(await load('layers.2.attn.q.weight'), 8), [0, 1, 2, 3, 4, 5]);
    assert.deepEqual(colsOf(await load('layers.2.attn.o.weight'), 6), [0, 1, 2, 3, 4, 5]);

    assert.deepEqual(t('layers.3.attn.q.weight').shape, [0, 8]);
    assert.deepEqual(t('layers.3.attn.k.bias').shape, [0]);
    assert.deepEqual(t('layers.3.attn.o.weight').shape, [8, 0]);
    assert.equal((await load('layers.3.attn.o.weight')).length, 0);
    assert.equal(t('layers.3.mlp.up.weight'), spec.tensors.get('layers.3.mlp.up.weight'));

    assert.equal(loads.get('layers.0.attn.q.weight'), 2);
    assert.equal(loads.has('layers.0.attn.v.weight'), false, 'untouched tensors were never read');
  });

  test('uniform kept grouping leaves kvHeadOfQuery out', () => {
    const spec = indexedSpec(new Map());
    // Layer 0 keeps 1 and 3 (one per KV head), layer 1 keeps 2 and 3 (KV 1), others whole.
    const pruned = pruneHeads(
      spec,
      genomeRemoving(4, 4, [
        [0, 2],
        [0, 1],
      ]),
    );
    assert.equal(pruned.config.kvHeadOfQuery, undefined);
    assert.deepEqual(pruned.config.headsPerLayer, [2, 2, 4, 4]);
    assert.deepEqual(pruned.config.kvHeadsPerLayer, [2, 1, 2, 2]);
  });
});

describe('counts', () => {
  test('parameter counts and summary, by hand', () => {
    // D 8, headDim 2, 4 heads over 2 KV heads, qwen2 (q/k/v biases), untied, vocab 10, inter 12, 2 layers.
    const spec = randomLlamaSpec({
      hiddenSize: 8,
      numLayers: 2,
      numHeads: 4,
      numKvHeads: 2,
      intermediateSize: 12,
      vocabSize: 10,
      maxPositions: 4,
      modelType: 'qwen2',
      seed: 3,
    });
    // Per layer: norms 8 + 8, q 64 + 8, k 32 + 4, v 32 + 4, o 64, mlp 3 × 96 = 512. Plus embed 80,
    // final norm 8, lm_head 80.
    assert.equal(parameterCount(spec), 80 + 2 * 512 + 8 + 80);
    // Layer 0 keeps heads 1, 3 (both KV heads): q 32 + 4, o 32 → -68.
    // Layer 1 keeps head 0 (KV 0 only): q 16 + 2, k and v 16 + 2 each, o 16 → -(54 + 18 + 18 + 48) = -138.
    const genome = genomeRemoving(2, 4, [
      [0, 2],
      [1, 2, 3],
    ]);
    assert.equal(parameterCount(pruneHeads(spec, genome)), 1192 - 68 - 138);
    assert.equal(keptParameters(spec.config, genome, 1192), 1192 - 68 - 138);
    const s = pruneSummary(spec, genome);
    assert.deepEqual(s.keptQueryHeads, [2, 1]);
    assert.deepEqual(s.keptKvHeads, [2, 1]);
    assert.deepEqual(s.queryHeadsBefore, [4, 4]);
    assert.deepEqual(s.kvHeadsBefore, [2, 2]);
    assert.equal(s.parametersBefore, 1192);
    assert.equal(s.parametersAfter, 986);
    // Per layer at T = 4: D·hd·(2H + 2KV) + 2·H·hd·T. Before 2 × (16·12 + 64) = 512; after
    // (16·8 + 32) + (16·4 + 16) = 240.
    assert.equal(s.contextLength, 4);
    assert.equal(s.attentionFlopsRatio, 240 / 512);
    assert.equal(pruneSummary(spec, new Uint8Array(8).fill(1)).attentionFlopsRatio, 1);
  });
});

describe('refusals', () => {
  const spec = caseSpec(cases[4], 700); // llama with o bias
  const isModelError = (pattern: RegExp) => (err: unknown) =>
    err instanceof GenepruneError && err.kind === 'model' && pattern.test(err.message);

  test('a genome of the wrong length or with non-binary genes', () => {
    assert.throws(() => pruneHeads(spec, new Uint8Array(11).fill(1)), isModelError(/11 genes.*needs 12/));
    const g = new Uint8Array(12).fill(1);
    g[5] = 2;
    assert.throws(() => pruneHeads(spec, g), isModelError(/gene 5 is 2/));
  });

  test('a decoder layer left without heads whose o projection has a bias is pruned: it adds the bias alone', async () => {
    const genome = genomeRemoving(3, 4, [[], [0, 1, 2, 3]]);
    const pruned = pruneHeads(spec, genome);
    assert.equal(pruned.config.headsPerLayer[1], 0);
    assert.deepEqual(pruned.tensors.get('layers.1.attn.o.weight')!.shape, [32, 0]);
    assert.ok(pruned.tensors.has('layers.1.attn.o.bias'));
    const rows = tokenRows(37);
    const masked = await logits(spec, rows, headMaskOf(spec.config, genome));
    const d = maxDiff(masked, await logits(pruned, rows));
    assert.ok(d <= 1e-4, `masked vs physically pruned max abs diff ${d}`);
  });

  test('zeroHeads is not refused there: the padded model adds the o bias alone, as the masked one does', async () => {
    const genome = genomeRemoving(3, 4, [[], [0, 1, 2, 3], [2]]);
    const rows = tokenRows(37);
    const masked = await logits(spec, rows, headMaskOf(spec.config, genome));
    // Without its o bias layer 1 would compute something else: the bias matters to the logits.
    const o = spec.tensors.get('layers.1.attn.o.bias')!;
    const unbiased = new Map(spec.tensors).set(
      'layers.1.attn.o.bias',
      memoryTensor(o.shape, new Float32Array(32)),
    );
    const noBias = await logits({ ...spec, tensors: unbiased }, rows, headMaskOf(spec.config, genome));
    assert.ok(maxDiff(masked, noBias) > 1e-2, 'the o bias should change the logits');
    const d = maxDiff(masked, await logits(zeroHeads(spec, genome), rows));
    assert.ok(d <= 1e-4, `masked vs padded max abs diff ${d}`);
  });
});
