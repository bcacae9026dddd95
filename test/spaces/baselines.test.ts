/**
 * Baselines against landscapes whose right answer is known by hand: a synthetic HeadObjective whose quality is
 * base + Σ_removed damage[g] (+ chosen pairwise interactions), then a tiny random model with weights edited so
 * the weight-norm answer is known, then the real ONNX objective end to end.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import type { Genome } from '../../src/masks/heads.js';
import { randomLlamaSpec } from '../../src/model/random.js';
import { type ModelConfig, type ModelSpec, memoryTensor } from '../../src/model/spec.js';
import { genomeKey } from '../../src/search/codec.js';
import {
  ablationBaseline,
  BASELINE_NAMES,
  type BaselineResult,
  type GreedyStep,
  greedyBaseline,
  randomBaseline,
  regressionBaseline,
  runBaseline,
  singleHeadAblationScores,
  weightNormBaseline,
  weightNormImportance,
} from '../../src/spaces/heads/baselines.js';
import { createHeadObjective, type HeadObjective } from '../../src/spaces/heads/objective.js';
import { choleskySolve } from '../../src/spaces/heads/ridge.js';
import { createHeadSpace } from '../../src/spaces/heads/space.js';
import { createRng } from '../../src/util/rng.js';
import { computedObjective } from '../helpers/objective.js';

/** A config (and spec) with the given head layout; the weights only matter to the weight-norm tests. */
function tinySpec(numLayers: number, numHeads: number, numKvHeads = numHeads, seed = 1): ModelSpec {
  return randomLlamaSpec({
    hiddenSize: numHeads * 8,
    numLayers,
    numHeads,
    numKvHeads,
    intermediateSize: 16,
    vocabSize: 10,
    maxPositions: 8,
    seed,
  });
}

/** Caches like the real objective; each distinct evaluation costs 2 forward passes at full fidelity, 1 at low. */
function syntheticObjective(config: ModelConfig, quality: (g: Genome) => number): HeadObjective {
  return computedObjective(
    createHeadSpace(config, 0),
    (g: Genome) => {
      assert.equal(g.length, config.numLayers * config.numHeads);
      return quality(g);
    },
    { forwards: (fidelity) => (fidelity === 'full' ? 2 : 1) },
  );
}

/** quality = base + Σ_{g removed} damage[g] + Σ_{pairs both removed} extra. */
function landscape(damage: number[], base = 10, pairs: [number, number, number][] = []) {
  return (g: Genome) => {
    let q = base;
    for (let i = 0; i < g.length; i++) if (!g[i]) q += damage[i];
    for (const [a, b, extra] of pairs) if (!g[a] && !g[b]) q += extra;
    return q;
  };
}

const removedSet = (g: Genome) => [...g].flatMap((v, i) => (v ? [] : [i]));
const full = (n: number) => new Uint8Array(n).fill(1);

/** Spearman rank correlation (no ties in the inputs used here). */
function spearman(a: ArrayLike<number>, b: ArrayLike<number>): number {
  const rank = (x: ArrayLike<number>) => {
    const idx = Array.from(x, (_, i) => i).sort((i, j) => x[i] - x[j]);
    const r = new Array<number>(x.length);
    idx.forEach((i, k) => {
      r[i] = k;
    });
    return r;
  };
  const ra = rank(a);
  const rb = rank(b);
  const n = a.length;
  let d2 = 0;
  for (let i = 0; i < n; i++) d2 += (ra[i] - rb[i]) ** 2;
  return 1 - (6 * d2) / (n * (n * n - 1));
}

// 2 layers × 4 heads; the three cheapest heads are 1 (0.1), 6 (0.2) and 4 (0.3).
const DAMAGE8 = [0.9, 0.1, 0.5, 0.7, 0.3, 0.8, 0.2, 0.6];

describe('ablation', () => {
  test('removes exactly the k lowest-damage heads on an additive landscape; genes + 1 evaluations', async () => {
    const spec = tinySpec(2, 4);
    const obj = syntheticObjective(spec.config, landscape(DAMAGE8));
    await obj.evaluate(full(8)); // earlier work must not be billed to the baseline
    const progress: [number, number][] = [];
    const r = await ablationBaseline(obj, 3, { onProgress: (d, t) => progress.push([d, t]) });
    assert.equal(r.method, 'ablation');
    assert.deepEqual(removedSet(r.genome), [1, 4, 6]);
    assert.ok(Math.abs(r.quality - 10.6) < 1e-12);
    assert.equal(r.evaluations, 8 + 1);
    assert.equal(r.forwardPasses, 2 * (8 + 1));
    assert.deepEqual(
      [...r.ranking!],
      DAMAGE8.map((d) => 10 + d),
    );
    assert.deepEqual(progress.at(-1), [8, 8]);
    assert.equal(progress.length, 8);
  });

  test('singleHeadAblationScores gives the quality with each head removed, at the asked fidelity', async () => {
    const spec = tinySpec(2, 4);
    const obj = syntheticObjective(spec.config, landscape(DAMAGE8, 3));
    const s = await singleHeadAblationScores(obj, 'low');
    assert.deepEqual(
      [...s],
      DAMAGE8.map((d) => 3 + d),
    );
    assert.equal(obj.forwardPasses(), 8); // 1 pass per low-fidelity evaluation
  });
});

describe('greedy', () => {
  test('equals ablation on an additive landscape; Σ_{i<k}(genes − i) evaluations, final mask cached', async () => {
    const spec = tinySpec(2, 4);
    const obj = syntheticObjective(spec.config, landscape(DAMAGE8));
    const steps: GreedyStep[] = [];
    const progress: [number, number][] = [];
    const r = await greedyBaseline(obj, 3, {
      onStep: (s) => steps.push(s),
      onProgress: (d, t) => progress.push([d, t]),
    });
    assert.deepEqual(removedSet(r.genome), [1, 4, 6]);
    assert.deepEqual(r.order, [1, 6, 4]);
    assert.equal(r.evaluations, 8 + 7 + 6);
    assert.equal(r.forwardPasses, 2 * 21);
    assert.deepEqual(
      steps.map((s) => [s.step, s.gene, Math.round(s.quality * 1e9) / 1e9, removedSet(s.genome).length]),
      [
        [1, 1, 10.1, 1],
        [2, 6, 10.3, 2],
        [3, 4, 10.6, 3],
      ],
    );
    assert.equal(progress.length, 21);
    assert.deepEqual(progress.at(-1), [21, 21]);
  });

  test('beats ablation where two individually cheap heads back each other up', async () => {
    // 2 layers × 3 heads. Alone, heads 1 (1) and 2 (2) are cheapest, but removing both costs 10 more.
    // Ablation takes {1, 2}: 10 + 1 + 2 + 10 = 23. Greedy takes 1 first (11), then 0 (3 < 2 + 10): 14.
    const spec = tinySpec(2, 3);
    const damage = [3, 1, 2, 6, 7, 8];
    const q = landscape(damage, 10, [[1, 2, 10]]);
    const ablation = await ablationBaseline(syntheticObjective(spec.config, q), 2);
    const greedy = await greedyBaseline(syntheticObjective(spec.config, q), 2);
    assert.deepEqual(removedSet(ablation.genome), [1, 2]);
    assert.equal(ablation.quality, 23);
    assert.deepEqual(removedSet(greedy.genome), [0, 1]);
    assert.equal(greedy.quality, 14);
    // Greedy's pair is the optimum here (brute force over all 15 pairs).
    let best = Number.POSITIVE_INFINITY;
    for (let a = 0; a < 6; a++) {
      for (let b = a + 1; b < 6; b++) {
        const g = full(6);
        g[a] = 0;
        g[b] = 0;
        best = Math.min(best, q(g));
      }
    }
    assert.equal(greedy.quality, best);
    assert.equal(greedy.evaluations, 6 + 5);
  });
});

describe('regression', () => {
  // 3 layers × 4 heads, distinct damages.
  const DAMAGE12 = [1.2, 0.3, 2.5, 0.8, 1.9, 0.1, 3.1, 1.5, 0.6, 2.2, 1.0, 2.8];

  test('recovers the additive damages (rank correlation 1) and removes the k least important', async () => {
    const spec = tinySpec(3, 4);
    const obj = syntheticObjective(spec.config, landscape(DAMAGE12));
    const progress: number[] = [];
    const r = await regressionBaseline(obj, 4, createRng(5), {
      samples: 100,
      onProgress: (d, t) => {
        assert.equal(t, 100);
        progress.push(d);
      },
    });
    assert.equal(progress.length, 100);
    assert.ok(r.ranking);
    assert.equal(spearman(r.ranking, DAMAGE12), 1);
    // Noise-free linear data: the fitted importance is the damage, up to the small ridge shrinkage.
    for (let g = 0; g < 12; g++) assert.ok(Math.abs(r.ranking[g] - DAMAGE12[g]) < 0.02, `gene ${g}`);
    assert.deepEqual(removedSet(r.genome), [1, 3, 5, 8]);
    // Repeated samples come from the cache, so at most samples + 1 (final) distinct evaluations.
    assert.ok(r.evaluations >= 13 && r.evaluations <= 101, `${r.evaluations}`);
    assert.equal(r.forwardPasses, 2 * r.evaluations);
  });

  test('default samples (2 · genes) still find the right heads; seed-deterministic', async () => {
    const spec = tinySpec(3, 4);
    const run = () =>
      regressionBaseline(syntheticObjective(spec.config, landscape(DAMAGE12)), 4, createRng(9));
    const a = await run();
    const b = await run();
    assert.deepEqual(removedSet(a.genome), [1, 3, 5, 8]);
    assert.ok(spearman(a.ranking!, DAMAGE12) > 0.95);
    assert.deepEqual(a.genome, b.genome);
    assert.deepEqual(a.ranking, b.ranking);
    assert.ok(a.evaluations <= 2 * 12 + 1);
  });

  test('choleskySolve solves a hand-checked system', () => {
    // [[4, 2], [2, 3]] x = [2, 1] → x = [0.5, 0].
    const x = choleskySolve(Float64Array.from([4, 2, 2, 3]), Float64Array.from([2, 1]), 2);
    assert.ok(Math.abs(x[0] - 0.5) < 1e-12 && Math.abs(x[1]) < 1e-12);
  });
});

describe('random', () => {
  test('removes exactly k heads, one evaluation, deterministic in the seed, uniform over heads', async () => {
    const spec = tinySpec(2, 4);
    const obj = syntheticObjective(spec.config, landscape(DAMAGE8));
    const a = await randomBaseline(obj, 3, createRng(11));
    const b = await randomBaseline(obj, 3, createRng(11));
    assert.deepEqual(a.genome, b.genome);
    assert.equal(removedSet(a.genome).length, 3);
    assert.equal(a.evaluations, 1);
    assert.equal(b.evaluations, 0); // the same mask again is a cache hit
    const seen = new Set<string>();
    for (let s = 0; s < 10; s++) seen.add(genomeKey((await randomBaseline(obj, 3, createRng(s))).genome));
    assert.ok(seen.size > 3);
    // Each head is removed with probability 3/8 under a uniform choice of the set.
    const rng = createRng(3);
    const counts = new Array(8).fill(0);
    const trials = 4000;
    for (let t = 0; t < trials; t++)
      for (const g of removedSet((await randomBaseline(obj, 3, rng)).genome)) counts[g]++;
    for (const c of counts) assert.ok(Math.abs(c / trials - 3 / 8) < 0.03, `${c}`);
  });
});

describe('every method', () => {
  test('removes exactly removeCount heads for every k, and rejects a bad count', async () => {
    const spec = tinySpec(2, 3);
    const damage = [3, 1, 2, 6, 7, 8];
    for (const name of BASELINE_NAMES) {
      for (let k = 0; k <= 6; k++) {
        const objective = syntheticObjective(spec.config, landscape(damage, 10, [[1, 2, 10]]));
        const r: BaselineResult = await runBaseline(name, {
          spec,
          objective,
          removeCount: k,
          rng: createRng(k),
        });
        assert.equal(r.method, name);
        assert.equal(removedSet(r.genome).length, k, `${name} k=${k}`);
        assert.ok(r.evaluations >= 1 && r.seconds >= 0);
      }
      const objective = syntheticObjective(spec.config, landscape(damage));
      for (const bad of [-1, 7, 1.5]) {
        await assert.rejects(runBaseline(name, { spec, objective, removeCount: bad, rng: createRng(0) }));
      }
    }
  });

  test('greedy with k = 0 costs one evaluation (the full model); norm costs one whatever k', async () => {
    const spec = tinySpec(2, 3);
    const g = await greedyBaseline(syntheticObjective(spec.config, landscape([1, 2, 3, 4, 5, 6])), 0);
    assert.equal(g.evaluations, 1);
    const n = await weightNormBaseline(
      spec,
      syntheticObjective(spec.config, landscape([1, 2, 3, 4, 5, 6])),
      4,
    );
    assert.equal(n.evaluations, 1);
    assert.equal(n.forwardPasses, 2);
  });
});

/** A copy of `spec` with `edit` applied to one tensor's values. */
async function editTensor(
  spec: ModelSpec,
  role: string,
  edit: (a: Float32Array) => void,
): Promise<ModelSpec> {
  const t = spec.tensors.get(role)!;
  const data = Float32Array.from(await t.load());
  edit(data);
  const tensors = new Map(spec.tensors);
  tensors.set(role, memoryTensor(t.shape, data));
  return { ...spec, tensors };
}

/** Multiplies columns [from, to) of a row-major [rows, cols] matrix. */
const scaleCols = (cols: number, from: number, to: number, f: number) => (a: Float32Array) => {
  for (let i = 0; i < a.length; i++) if (i % cols >= from && i % cols < to) a[i] *= f;
};
/** Multiplies rows [from, to) of a row-major [rows, cols] matrix. */
const scaleRows = (cols: number, from: number, to: number, f: number) => (a: Float32Array) => {
  for (let i = from * cols; i < to * cols; i++) a[i] *= f;
};

describe('weight norm', () => {
  test('a head with near-zero o columns and v rows is ranked least important and removed', async () => {
    // hidden 32, 4 heads of dim 8: layer 1 head 2 = gene 6, o columns 16..24, v rows 16..24.
    let spec = tinySpec(2, 4, 4, 7);
    spec = await editTensor(spec, 'layers.1.attn.o.weight', scaleCols(32, 16, 24, 1e-3));
    spec = await editTensor(spec, 'layers.1.attn.v.weight', scaleRows(32, 16, 24, 1e-3));
    const imp = await weightNormImportance(spec);
    const order = [...imp.keys()].sort((a, b) => imp[a] - imp[b]);
    assert.equal(order[0], 6);
    // Independent value for one gene: layer 0 head 1, straight from the tensors.
    const o = await spec.tensors.get('layers.0.attn.o.weight')!.load();
    const v = await spec.tensors.get('layers.0.attn.v.weight')!.load();
    let os = 0;
    let vs = 0;
    for (let r = 0; r < 32; r++) for (let d = 8; d < 16; d++) os += o[r * 32 + d] ** 2;
    for (let r = 8; r < 16; r++) for (let c = 0; c < 32; c++) vs += v[r * 32 + c] ** 2;
    assert.ok(Math.abs(imp[1] - Math.sqrt(os * vs)) < 1e-9);

    const obj = syntheticObjective(spec.config, landscape(DAMAGE8));
    const r = await weightNormBaseline(spec, obj, 1);
    assert.deepEqual(removedSet(r.genome), [6]);
    assert.deepEqual(r.ranking, imp);
  });

  test('GQA: the v rows of a KV head are shared by its query heads', async () => {
    // 4 query heads, 2 KV heads: heads 0, 1 read KV 0 and heads 2, 3 read KV 1 (v rows 8..16 of 16).
    const base = tinySpec(2, 4, 2, 3);
    const before = await weightNormImportance(base);
    const halved = await editTensor(base, 'layers.0.attn.v.weight', scaleRows(32, 8, 16, 0.5));
    const after1 = await weightNormImportance(halved);
    for (let g = 0; g < 8; g++) {
      const expected = g === 2 || g === 3 ? before[g] / 2 : before[g];
      assert.ok(Math.abs(after1[g] - expected) < 1e-6 * before[g], `gene ${g}`);
    }
    // Zeroing KV head 1 of layer 0 and shrinking the o columns of layer 1 head 0: remove {2, 3}, then 4.
    let spec = await editTensor(base, 'layers.0.attn.v.weight', scaleRows(32, 8, 16, 0));
    spec = await editTensor(spec, 'layers.1.attn.o.weight', scaleCols(32, 0, 8, 1e-3));
    const obj = syntheticObjective(spec.config, landscape(DAMAGE8));
    assert.deepEqual(removedSet((await weightNormBaseline(spec, obj, 2)).genome), [2, 3]);
    assert.deepEqual(removedSet((await weightNormBaseline(spec, obj, 3)).genome), [2, 3, 4]);
  });
});

describe('end to end with the real objective', () => {
  const spec = randomLlamaSpec({
    hiddenSize: 32,
    numLayers: 2,
    numHeads: 4,
    numKvHeads: 4,
    intermediateSize: 64,
    vocabSize: 50,
    maxPositions: 32,
    scale: 10,
    seed: 21,
  });
  const rng = createRng(99);
  const stream = Array.from({ length: 400 }, () => rng.nextInt(50));
  const objectives: HeadObjective[] = [];
  const make = async () => {
    const o = await createHeadObjective(spec, { stream, context: 16, metric: 'ppl' });
    objectives.push(o);
    return o;
  };
  after(async () => {
    for (const o of objectives) await o.release();
  });

  test('every baseline removes 3 heads, counts real forward passes, and is deterministic', async () => {
    const obj = await make();
    await obj.evaluate(full(8));
    const passesPerEval = obj.forwardPasses();
    assert.ok(passesPerEval >= 1);

    const results = new Map<string, BaselineResult>();
    for (const name of BASELINE_NAMES) {
      const r = await runBaseline(name, {
        spec,
        objective: obj,
        removeCount: 3,
        rng: createRng(4),
        samples: 16,
      });
      assert.equal(removedSet(r.genome).length, 3, name);
      assert.ok(Number.isFinite(r.quality) && r.quality > 0, name);
      assert.equal(r.forwardPasses, r.evaluations * passesPerEval, name);
      results.set(name, r);
    }
    assert.equal(results.get('random')!.evaluations, 1);
    assert.equal(results.get('norm')!.evaluations, 1);
    assert.equal(results.get('ablation')!.evaluations, 8 + 1);
    // Greedy's first step repeats ablation's single-head masks (cache hits); later ones may hit earlier masks.
    assert.ok(results.get('greedy')!.evaluations <= 7 + 6);
    assert.ok(results.get('regression')!.evaluations <= 16 + 1);

    // Sanity: ablation's mask is no worse than the mean of random masks of the same size.
    let sum = 0;
    for (let s = 0; s < 10; s++) sum += (await randomBaseline(obj, 3, createRng(1000 + s))).quality;
    assert.ok(
      results.get('ablation')!.quality <= sum / 10,
      `${results.get('ablation')!.quality} vs ${sum / 10}`,
    );

    // A fresh objective, same seeds: the same masks and scores.
    const again = await make();
    for (const name of ['greedy', 'random', 'ablation', 'regression'] as const) {
      const r = await runBaseline(name, {
        spec,
        objective: again,
        removeCount: 3,
        rng: createRng(4),
        samples: 16,
      });
      if (name === 'greedy') assert.equal(r.evaluations, 8 + 7 + 6); // first on a cold cache
      assert.deepEqual(r.genome, results.get(name)!.genome, name);
      assert.equal(r.quality, results.get(name)!.quality, name);
    }
  });
});
