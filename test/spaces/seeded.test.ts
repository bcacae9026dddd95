/**
 * The budget-exact mask operators (hand-checked on small genomes), and the seeded GAs (`ga-wanda`,
 * `ga-magnitude`) and the paper's GA with a pattern on stories260K: every row keeps its seed's count, every
 * group stays N:M, no block ends worse than its seed (whose perplexity equals Wanda's mask scored
 * independently), the same seed gives the same bytes, and a run killed after a fixed block resumes to the
 * result of the run that was never interrupted.
 */
import assert from 'node:assert/strict';
import { appendFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { createOrtGemm } from '../../src/engine/gemm.js';
import type { TokenBatch } from '../../src/engine/runner.js';
import {
  buildContinuationTask,
  evaluateBleu,
  type PerplexityRunResult,
  perplexityRun,
  pruneWeights,
  readRunForReport,
} from '../../src/index.js';
import { unpackBits } from '../../src/masks/bitset.js';
import { applyRecoveredWeights } from '../../src/masks/recovered.js';
import { loadWeightMaskFile } from '../../src/masks/weightfile.js';
import { prunableMatrices } from '../../src/masks/weights.js';
import { batches, defaultBatchSize, makeWindows, tokenizePrefix } from '../../src/metrics/perplexity.js';
import { openModel } from '../../src/model/open.js';
import { createLayerEvaluator } from '../../src/spaces/weights/blockobjective.js';
import { advanceHidden, recoverBlock } from '../../src/spaces/weights/blockpasses.js';
import { blockLayout } from '../../src/spaces/weights/blockspace.js';
import type { GaReport } from '../../src/spaces/weights/ga.js';
import {
  boundaryRegions,
  boundarySwaps,
  groupSinglePointCrossover,
  groupSwapMutation,
  groupSwaps,
  randomNmGenome,
  rowCrossover,
  rowStarts,
} from '../../src/spaces/weights/operators.js';
import type { SeededReport } from '../../src/spaces/weights/seeded.js';
import { weightPruneSettings } from '../../src/spaces/weights/settings.js';
import { createRng } from '../../src/util/rng.js';
import { tempDir } from '../checkpoint/helpers.js';
import { assertOneLineError, runCli } from '../helpers/cli.js';
import { smallData } from '../helpers/familycli.js';
import { logWithoutTimes } from '../helpers/rundir.js';
import { CALIB, EVAL, MODEL, sharedPath, skipUnlessShared } from '../shared.js';

const tmp = tempDir('geneprune-seeded-');
after(tmp.cleanup);

/** A block of two matrices, 3×4 and 2×6 (24 genes), as blockLayout would give it. */
const block = {
  layer: 0,
  matrices: [
    { role: 'a', layer: 0, rows: 3, cols: 4 },
    { role: 'b', layer: 0, rows: 2, cols: 6 },
  ],
  offsets: [0, 12],
  genes: 24,
} as unknown as ReturnType<typeof blockLayout>;

const rowCounts = (g: Uint8Array, starts: Int32Array) =>
  Array.from({ length: starts.length - 1 }, (_, r) =>
    g.subarray(starts[r], starts[r + 1]).reduce((a, b) => a + b, 0),
  );
/** The two mask files hold the same bits for every matrix (their metadata names different run directories). */
async function assertSameBits(a: string, b: string): Promise<void> {
  const { spec } = await openModel(sharedPath(MODEL)!);
  const x = await loadWeightMaskFile(a, spec);
  const y = await loadWeightMaskFile(b, spec);
  for (const [role, bits] of x.masks)
    assert.deepEqual(unpackBits(bits), unpackBits(y.masks.get(role)!), role);
}

const isNm = (g: Uint8Array, n: number, m: number) => {
  for (let s = 0; s < g.length; s += m)
    if (g.subarray(s, s + m).reduce((a, b) => a + b, 0) !== n) return false;
  return true;
};

describe('budget-exact mask operators', () => {
  test('row starts follow the block’s matrices row by row', () => {
    assert.deepEqual([...rowStarts(block)], [0, 4, 8, 12, 18, 24]);
  });

  test('row crossover: every row of a child is one parent’s row, and each row keeps its count', () => {
    const starts = rowStarts(block);
    const rng = createRng(1);
    const a = Uint8Array.from({ length: 24 }, (_, i) => (i % 3 === 0 ? 0 : 1));
    // b holds each row of a reversed: other bits, the same count per row.
    const b = a.slice();
    for (let r = 0; r < 5; r++) b.subarray(starts[r], starts[r + 1]).reverse();
    for (let t = 0; t < 20; t++) {
      const [c1, c2] = rowCrossover(a, b, starts, 1, rng);
      for (let r = 0; r < 5; r++) {
        const [s, e] = [starts[r], starts[r + 1]];
        const fromA = c1.subarray(s, e).every((x, i) => x === a[s + i]);
        const fromB = c1.subarray(s, e).every((x, i) => x === b[s + i]);
        assert.ok(fromA || fromB);
        const other = fromA ? b : a;
        assert.ok(c2.subarray(s, e).every((x, i) => x === other[s + i]) || fromA === fromB);
      }
      assert.deepEqual(rowCounts(c1, starts), rowCounts(a, starts));
    }
  });

  test('boundary regions hold each row’s weakest kept and strongest pruned weights (hand-computed)', () => {
    // One row of 6: scores 5 1 4 2 3 0, the seed prunes the three lowest (genes 5, 1, 3).
    const starts = Int32Array.from([0, 6]);
    const seed = Uint8Array.from([1, 0, 1, 0, 1, 0]);
    const scores = [5, 1, 4, 2, 3, 0];
    // Ascending order 5 1 3 | 4 2 0; window 1/6 → w = 1: sorted positions [2, 4) = genes 3 and 4.
    const r = boundaryRegions(seed, scores, starts, 1 / 6);
    assert.deepEqual([...r.from], [0, 2]);
    assert.deepEqual([...r.genes], [3, 4]);
    // A swap can only exchange those two.
    const m = boundarySwaps(seed, r, 1, createRng(3));
    assert.deepEqual([...m], [1, 0, 1, 1, 0, 0]);
    // A row with nothing pruned has nothing to swap.
    assert.deepEqual([...boundaryRegions(Uint8Array.of(1, 1), [1, 2], Int32Array.of(0, 2), 0.5).from], [0]);
  });

  test('boundary swaps keep every row’s count and change only boundary genes', () => {
    const starts = rowStarts(block);
    const rng = createRng(5);
    const scores = Float32Array.from({ length: 24 }, () => rng.nextFloat());
    const seed = Uint8Array.from({ length: 24 }, (_, i) => (scores[i] < 0.5 ? 0 : 1));
    const regions = boundaryRegions(seed, scores, starts, 0.25);
    const allowed = new Set(regions.genes);
    for (let t = 0; t < 50; t++) {
      const g = boundarySwaps(seed, regions, 3, rng);
      assert.deepEqual(rowCounts(g, starts), rowCounts(seed, starts));
      for (let i = 0; i < 24; i++) if (g[i] !== seed[i]) assert.ok(allowed.has(i), `gene ${i}`);
    }
  });

  test('N:M genomes, group swaps and group-boundary crossover keep every group N:M', () => {
    const rng = createRng(9);
    for (const [n, m] of [
      [2, 4],
      [1, 4],
      [3, 8],
    ]) {
      const a = randomNmGenome(48, n, m, rng);
      const b = randomNmGenome(48, n, m, rng);
      assert.ok(isNm(a, n, m) && isNm(b, n, m));
      assert.ok(isNm(groupSwaps(a, m, 10, rng), n, m));
      assert.ok(isNm(groupSwapMutation(a, m, 0.5, rng), n, m));
      const [c1, c2] = groupSinglePointCrossover(a, b, m, 1, rng);
      assert.ok(isNm(c1, n, m) && isNm(c2, n, m));
      const cut = c1.findIndex((x, i) => x !== a[i]);
      if (cut >= 0) assert.equal(cut >= 0 && c1.subarray(cut).every((x, i) => x === b[cut + i]), true);
    }
    // A swap in a 2:4 group changes exactly two genes of one group.
    const g = Uint8Array.of(1, 1, 0, 0, 1, 0, 1, 0);
    const s = groupSwaps(g, 4, 1, createRng(2));
    const changed = [...s].map((x, i) => (x !== g[i] ? i : -1)).filter((i) => i >= 0);
    assert.equal(changed.length, 2);
    assert.equal(Math.floor(changed[0] / 4), Math.floor(changed[1] / 4));
  });
});

describe('search settings', () => {
  test('flags a method does not take are refused in one line; bad values are refused', () => {
    const base = { calib: 'c', eval: 'e', sparsity: 0.5 };
    assert.throws(
      () => weightPruneSettings({ ...base, method: 'wanda', population: 8 }),
      /the wanda method does not search/,
    );
    assert.throws(
      () => weightPruneSettings({ ...base, method: 'ga-wanda', lambda: 0.1 }),
      /the ga-wanda method does not take --lambda/,
    );
    assert.throws(
      () => weightPruneSettings({ ...base, method: 'ga', population: 2 }),
      /must be an integer ≥ 4/,
    );
    assert.throws(
      () => weightPruneSettings({ ...base, method: 'ga', mutationRate: 1.5 }),
      /must lie in \[0, 1\]/,
    );
    assert.equal(weightPruneSettings({ ...base, method: 'ga', lambda: 0.5 }).lambda, 0.5);
    assert.throws(
      () => weightPruneSettings({ ...base, method: 'alloc', metric: 'bleu' }),
      /the alloc method searches on ppl, not bleu/,
    );
    assert.throws(
      () => weightPruneSettings({ ...base, method: 'ga-wanda', metric: 'kl' }),
      /the ga-wanda method searches on ppl, bleu, exact-match or pass@1, not kl/,
    );
    const r = runCli([
      'weights',
      '--calib',
      'c',
      '--eval',
      'e',
      '--sparsity',
      '0.5',
      '--method',
      'magnitude',
      '--generations',
      '3',
      '--out',
      join(tmp.dir, 'no'),
    ]);
    assertOneLineError(
      r,
      2,
      '--generations: the magnitude method does not search (it takes no --generations)',
    );
    assert.ok(!existsSync(join(tmp.dir, 'no')));
  });
});

describe('seeded GAs and the GA with a pattern on stories260K', {
  skip: skipUnlessShared(MODEL, CALIB, EVAL),
}, () => {
  const common = () => ({
    model: sharedPath(MODEL)!,
    calib: sharedPath(CALIB)!,
    eval: sharedPath(EVAL)!,
    calibTokens: 1024,
    evalTokens: 2048,
    population: 4,
    generations: 2,
  });
  const runs: Record<string, PerplexityRunResult> = {};

  test('ga-wanda: rows keep Wanda’s counts, blocks never end worse than their seed, the seed is Wanda’s mask', async () => {
    runs.gw = perplexityRun(
      await pruneWeights({
        ...common(),
        method: 'ga-wanda',
        sparsity: 0.5,
        seed: 3,
        out: join(tmp.dir, 'gw'),
      }),
    );
    const wanda = await pruneWeights({
      ...common(),
      population: undefined,
      generations: undefined,
      method: 'wanda',
      sparsity: 0.5,
      out: join(tmp.dir, 'w'),
    });
    const report = runs.gw.methodReport as SeededReport;
    assert.equal(report.layers.length, 5);
    for (const l of report.layers) {
      assert.ok(l.bestQuality <= l.seedQuality, `layer ${l.layer}: ${l.bestQuality} > ${l.seedQuality}`);
      assert.equal(l.evaluations, 4 + 2 * 4);
    }
    assert.equal(runs.gw.sparsity.achieved, 0.5);
    const { spec, tokenizer } = await openModel(sharedPath(MODEL)!);
    const mine = await loadWeightMaskFile(runs.gw.mask, spec);
    const theirs = await loadWeightMaskFile(wanda.mask, spec);
    const matrices = prunableMatrices(spec);
    for (const m of matrices) {
      const a = unpackBits(mine.masks.get(m.role)!);
      for (let r = 0; r < m.rows; r++) {
        const kept = a.subarray(r * m.cols, (r + 1) * m.cols).reduce((x, y) => x + y, 0);
        assert.equal(kept, m.cols - Math.round(0.5 * m.cols), `${m.role} row ${r}`);
      }
    }
    // Block 0's seed is Wanda's block-0 mask: score that mask independently, through the whole model.
    const prefix = await tokenizePrefix(sharedPath(CALIB)!, tokenizer, 1025);
    const windows = makeWindows(prefix.tokens, Math.min(spec.config.maxPositions, 512), 1024, 'calib');
    const list: TokenBatch[] = [...batches(windows, 4)];
    const b0 = blockLayout(matrices, 0);
    const evaluator = await createLayerEvaluator(
      spec,
      0,
      b0.matrices.map((m) => m.role),
      list,
      undefined,
    );
    const wandaBlock0 = new Map(b0.matrices.map((m) => [m.role, unpackBits(theirs.masks.get(m.role)!)]));
    const seedPpl = await evaluator.perplexity(wandaBlock0);
    await evaluator.release();
    assert.ok(
      Math.abs(seedPpl - report.layers[0].seedQuality) / seedPpl < 1e-5,
      `${seedPpl} vs ${report.layers[0].seedQuality}`,
    );
    // The last block's fixed mask is the whole pruned model: its perplexity is the run's calibration score.
    const last = report.layers[4].bestQuality;
    assert.ok(Math.abs(last - runs.gw.calib.perplexity) / last < 1e-5);
  });

  test('the same seed gives the same mask bytes', async () => {
    const again = perplexityRun(
      await pruneWeights({
        ...common(),
        method: 'ga-wanda',
        sparsity: 0.5,
        seed: 3,
        out: join(tmp.dir, 'gw-again'),
      }),
    );
    assert.equal(again.eval.perplexity, runs.gw.eval.perplexity);
    await assertSameBits(again.mask, runs.gw.mask);
  });

  test('ga-magnitude and ga with 2:4 keep every group of every matrix 2:4', async () => {
    const { spec } = await openModel(sharedPath(MODEL)!);
    for (const method of ['ga-magnitude', 'ga']) {
      const r = await pruneWeights({
        ...common(),
        method,
        pattern: '2:4',
        out: join(tmp.dir, `${method}-24`),
      });
      assert.equal(r.pattern, '2:4');
      assert.equal(r.sparsity.achieved, 0.5);
      const file = await loadWeightMaskFile(r.mask, spec);
      for (const [role, bits] of file.masks) assert.ok(isNm(unpackBits(bits), 2, 4), `${method} ${role}`);
      if (method === 'ga-magnitude') {
        for (const l of (r.methodReport as SeededReport).layers) assert.ok(l.bestQuality <= l.seedQuality);
      }
    }
  });

  test('SIGKILL after a fixed block, then --resume: the result of the run that was never interrupted', async () => {
    const args = (dir: string) => [
      'weights',
      ...smallData(1024, 2048),
      '--method',
      'ga-wanda',
      '--sparsity',
      '0.5',
      '--population',
      '4',
      '--generations',
      '2',
      '--seed',
      '3',
      '--out',
      dir,
      '--json',
    ];
    const dir = join(tmp.dir, 'killed');
    const killed = runCli(args(dir), { timeout: 300_000, fault: 'weights:block-fixed:3' });
    assert.equal(killed.signal, 'SIGKILL', killed.stderr);
    assert.ok(existsSync(join(dir, 'search-state.json')) && !existsSync(join(dir, 'result.json')));
    // As if the kill had come while block 3 was being searched: two of its candidates logged, the last torn.
    appendFileSync(
      join(dir, 'evals.jsonl'),
      '{"block":3,"generation":0,"quality":9.5,"sparsity":0.5,"ms":1}\n{"block":3,"generation":0,"qua',
    );
    const resumed = runCli(['weights', '--resume', dir, '--json'], { timeout: 300_000 });
    assert.equal(resumed.code, 0, resumed.stderr);
    const r = JSON.parse(resumed.stdout) as PerplexityRunResult;
    await assertSameBits(r.mask, runs.gw.mask);
    assert.equal(r.eval.perplexity, runs.gw.eval.perplexity);
    assert.deepEqual(r.methodReport, runs.gw.methodReport);
    // The candidate log: block 3's stale lines gone, and line for line the uninterrupted run's (times aside):
    // 5 blocks × (4 + 2 generations × 4 children).
    const log = logWithoutTimes(dir, 'evals.jsonl');
    assert.equal(log.length, 5 * (4 + 2 * 4));
    assert.deepEqual(log, logWithoutTimes(join(tmp.dir, 'gw'), 'evals.jsonl'));
  });

  test('ga with --metric bleu --bleu sentence-mean: fitness on BLEU of the calibration task; dense and final BLEU equal evaluateBleu', async () => {
    const r = await pruneWeights({
      ...common(),
      population: 4,
      generations: 1,
      method: 'ga',
      sparsity: 0.3,
      metric: 'bleu',
      bleu: 'sentence-mean',
      calibItems: 4,
      calibNewTokens: 8,
      out: join(tmp.dir, 'ga-bleu'),
    });
    const report = r.methodReport as GaReport;
    assert.equal(report.metric, 'bleu');
    const task = await buildContinuationTask(sharedPath(CALIB)!);
    const first = { source: 'calib', items: task.items.slice(0, 4) };
    const model = sharedPath(MODEL)!;
    const dense = await evaluateBleu({ model, task: first, maxNewTokens: 8, bleu: 'sentence-mean' });
    assert.equal(report.denseBleu, dense.bleu);
    // The last block's fixed mask is the whole pruned model: its BLEU is that of the run's mask file.
    const pruned = await evaluateBleu({
      model,
      task: first,
      weightMask: r.mask,
      maxNewTokens: 8,
      bleu: 'sentence-mean',
    });
    assert.notEqual(dense.bleu, dense.corpus.score, 'sentence-mean is not the corpus BLEU here');
    assert.equal(report.layers[4].best.bleu, pruned.bleu);
    for (const l of report.layers) {
      assert.equal(l.best.perplexity, undefined);
      const f = 0.98 * (l.best.bleu! / dense.bleu) + 0.02 * l.best.sparsity;
      assert.ok(Math.abs(f - l.best.fitness) < 1e-12, `layer ${l.layer}: ${l.best.fitness} vs ${f}`);
    }
    // The candidate log holds quality as every run log does, lower is better (BLEU negated); the report turns
    // it back, and the BLEU of each block's best is one of its candidates'.
    const log = logWithoutTimes(join(tmp.dir, 'ga-bleu'), 'evals.jsonl') as Array<{
      block: number;
      quality: number;
    }>;
    const rows = await readRunForReport(join(tmp.dir, 'ga-bleu'));
    assert.deepEqual(
      rows.individuals.map((i) => i.quality),
      log.map((e) => -e.quality),
    );
    for (const l of report.layers) {
      const bleus = rows.individuals.filter((i) => i.generation === l.layer).map((i) => i.quality as number);
      assert.ok(bleus.includes(l.best.bleu!), `block ${l.layer}: ${l.best.bleu} among ${bleus.join(', ')}`);
    }
  });

  test('ga-wanda --recover searches on recovered blocks: its in-loop recovery is the final recovery', async () => {
    const r = await pruneWeights({
      ...common(),
      generations: 1,
      method: 'ga-wanda',
      sparsity: 0.5,
      recover: true,
      out: join(tmp.dir, 'gw-recover'),
    });
    const { spec, tokenizer } = await openModel(sharedPath(MODEL)!);
    const file = await loadWeightMaskFile(r.mask, spec);
    const recovered = await applyRecoveredWeights(r.recovery!.weights, spec, {
      weight: { sha256: r.maskSha256 },
    });
    // Blocks 0 … L−2 recovered one after another by the search's own step, from the run's masks.
    const prefix = await tokenizePrefix(sharedPath(CALIB)!, tokenizer, 1025);
    const context = Math.min(spec.config.maxPositions, 512);
    const windows = makeWindows(prefix.tokens, context, 1024, 'calib');
    const list: TokenBatch[] = [...batches(windows, defaultBatchSize(context, spec.config.vocabSize))];
    const matrices = prunableMatrices(spec);
    const gemm = await createOrtGemm();
    let current = spec;
    let hidden: Float32Array[] | undefined;
    try {
      for (let l = 0; l < spec.config.numLayers - 1; l++) {
        const masks = new Map(
          blockLayout(matrices, l).matrices.map((m) => [m.role, unpackBits(file.masks.get(m.role)!)]),
        );
        current = await recoverBlock(current, l, masks, list, hidden, 0.01, {}, gemm);
        hidden = await advanceHidden(current, l, list, hidden, masks);
        for (const role of masks.keys()) {
          const a = await current.tensors.get(role)!.load();
          const b = await recovered.tensors.get(role)!.load();
          let worst = 0;
          for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
          assert.ok(worst < 1e-5, `${role}: differs by ${worst}`);
          assert.notDeepEqual(a, await spec.tensors.get(role)!.load(), `${role} was recovered`);
        }
      }
    } finally {
      await gemm.release();
    }
  });
});
