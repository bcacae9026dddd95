/**
 * The sparsity-allocation search (`weights --method alloc`): the global budget holds exactly for every sparsity and
 * matrix shape (the start, every mutation, the result), each matrix's mask is the plain per-row Wanda selection at
 * its allocated count (checked against a reference written here with input norms captured by the full graph), the
 * uniform start at a whole s·in is one-shot Wanda, the same seed gives the same mask bytes, and the result is never
 * worse than the uniform start on the full calibration score (recomputed by evaluatePerplexity). On stories260K:
 * --pattern is refused in one line, and a short CLI run finishes with the asked sparsity.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { createRunner, type TokenBatch } from '../../src/engine/runner.js';
import { selectPerRow, wandaScores } from '../../src/masks/select.js';
import { prunableMatrices } from '../../src/masks/weights.js';
import { batches, evaluatePerplexity, makeWindows } from '../../src/metrics/perplexity.js';
import { randomLlamaSpec } from '../../src/model/random.js';
import type { ModelSpec } from '../../src/model/spec.js';
import { ALLOC, type AllocReport, allocatePrune } from '../../src/spaces/weights/alloc.js';
import {
  allocationBounds,
  allocationQuantum,
  mutateAllocation,
  uniformAllocation,
} from '../../src/spaces/weights/allocation.js';
import { weightPruneSettings } from '../../src/spaces/weights/settings.js';
import { createRng } from '../../src/util/rng.js';
import { tempDir } from '../checkpoint/helpers.js';
import { assertOneLineError, runCli } from '../helpers/cli.js';
import { fullGraphNorms, wandaAtCount } from '../helpers/wandaref.js';
import { CALIB, EVAL, MODEL, sharedPath, skipUnlessShared } from '../shared.js';

const tmp = tempDir('geneprune-alloc-');
after(tmp.cleanup);

const CONTEXT = 32;
const TOKENS = 256;
const FAST = { generations: 4, offspring: 4, fidelity: [{ share: 1 / 4, keep: 2 }] };

function tiny(shape: 'a' | 'b', seed = 1): ModelSpec {
  return shape === 'a'
    ? randomLlamaSpec({
        hiddenSize: 16,
        numLayers: 2,
        numHeads: 2,
        numKvHeads: 1,
        intermediateSize: 24,
        vocabSize: 32,
        maxPositions: CONTEXT,
        seed,
        scale: 20,
      })
    : randomLlamaSpec({
        hiddenSize: 24,
        numLayers: 2,
        numHeads: 3,
        numKvHeads: 3,
        intermediateSize: 36,
        vocabSize: 40,
        maxPositions: CONTEXT,
        seed,
        scale: 20,
      });
}

function stream(vocab: number, seed = 5): number[] {
  const rng = createRng(seed);
  return Array.from({ length: TOKENS + 1 }, () => rng.nextInt(vocab));
}

const calibration = (spec: ModelSpec) => ({
  stream: stream(spec.config.vocabSize),
  context: CONTEXT,
  tokens: TOKENS,
});

const zeros = (k: Uint8Array) => k.reduce((a, b) => a + (b ? 0 : 1), 0);

describe('the allocation genome', () => {
  test('the uniform start meets round(s·N) exactly, each matrix within one weight of s·n_i', () => {
    const rng = createRng(2);
    for (let trial = 0; trial < 200; trial++) {
      const sizes = Array.from({ length: 1 + rng.nextInt(40) }, () => 1 + rng.nextInt(5000));
      const s = [0, 0.1, 0.3333, 0.5, 0.7, 0.95, 0.999][trial % 7];
      const c = uniformAllocation(sizes, s);
      const N = sizes.reduce((a, b) => a + b, 0);
      assert.equal(
        c.reduce((a, b) => a + b, 0),
        Math.round(s * N),
      );
      for (const [i, ci] of c.entries()) {
        assert.ok(Math.abs(ci - s * sizes[i]) < 1 && ci >= 0 && ci <= sizes[i]);
      }
    }
    // Largest remainder, ties to the earlier matrix: 3 × 0.5 · 3 = 4.5 → 1,1,1 + 2 extras (round(4.5) = 5 in JS).
    assert.deepEqual(uniformAllocation([3, 3, 3], 0.5), [2, 2, 1]);
  });

  test('mutations keep the sum and the bounds', () => {
    const rng = createRng(3);
    const sizes = [4096, 2048, 2048, 4096, 11008, 11008, 11008, 7];
    for (const s of [0.2, 0.5, 0.9, 0.97]) {
      const start = uniformAllocation(sizes, s);
      const upper = allocationBounds(sizes, start, 0.9, s);
      const delta = allocationQuantum(sizes, 1 / 32);
      assert.equal(delta, Math.round(sizes.reduce((a, b) => a + b, 0) / sizes.length / 32));
      let c = start;
      let moved = 0;
      for (let k = 0; k < 500; k++) {
        const next = mutateAllocation(c, upper, delta, 3, rng);
        moved += next.some((x, i) => x !== c[i]) ? 1 : 0;
        c = next;
        assert.equal(
          c.reduce((a, b) => a + b, 0),
          start.reduce((a, b) => a + b, 0),
        );
        for (const [i, ci] of c.entries()) {
          assert.ok(ci >= 0 && ci <= upper[i], `matrix ${i}: ${ci} of ${upper[i]}`);
        }
      }
      assert.ok(moved > 400, `s ${s}: only ${moved} mutations moved anything`);
    }
  });
});

describe('allocatePrune on small random models', () => {
  test('the budget holds exactly for several sparsities and shapes; each matrix is per-row Wanda at its count', async () => {
    for (const shape of ['a', 'b'] as const) {
      const spec = tiny(shape);
      const matrices = prunableMatrices(spec);
      const cal = calibration(spec);
      const list: TokenBatch[] = [...batches(makeWindows(cal.stream, CONTEXT, TOKENS), 8)];
      const norms = await fullGraphNorms(spec, list);
      const N = matrices.reduce((a, m) => a + m.rows * m.cols, 0);
      for (const s of [0.1, 0.37, 0.5, 0.8]) {
        const out = await allocatePrune({
          spec,
          matrices,
          sparsity: s,
          calibration: cal,
          rng: createRng(9),
          settings: FAST,
        });
        const pruned = out.keeps.map(zeros);
        assert.equal(
          pruned.reduce((a, b) => a + b, 0),
          Math.round(s * N),
          `shape ${shape} at ${s}`,
        );
        assert.deepEqual(
          pruned,
          out.report.allocation.map((a) => a.pruned),
        );
        for (const [i, m] of matrices.entries()) {
          const ref = wandaAtCount(await spec.tensors.get(m.role)!.load(), m, norms.get(m.role)!, pruned[i]);
          assert.deepEqual(out.keeps[i], ref, `${m.role} at ${s} (${pruned[i]} pruned)`);
          assert.ok(
            pruned[i] <=
              Math.max(
                Math.floor(Math.max(0.9, (1 + s) / 2) * m.rows * m.cols),
                out.report.allocation[i].start,
              ),
          );
        }
      }
    }
  });

  test('the uniform start at a whole s·in is one-shot per-row Wanda on the dense model’s norms', async () => {
    const spec = tiny('a');
    const matrices = prunableMatrices(spec);
    const cal = calibration(spec);
    const norms = await fullGraphNorms(spec, [...batches(makeWindows(cal.stream, CONTEXT, TOKENS), 8)]);
    const out = await allocatePrune({
      spec,
      matrices,
      sparsity: 0.5,
      calibration: cal,
      rng: createRng(1),
      settings: { generations: 0 },
    });
    for (const [i, m] of matrices.entries()) {
      const w = await spec.tensors.get(m.role)!.load();
      const wanda = selectPerRow(wandaScores(w, m.rows, m.cols, norms.get(m.role)!), m.rows, m.cols, 0.5);
      assert.deepEqual(out.keeps[i], wanda, m.role);
    }
    assert.equal(out.report.perplexity, out.report.startPerplexity);
  });

  test('the same seed gives the same mask bytes; the result never loses to the uniform start', async () => {
    const spec = tiny('b', 4);
    const matrices = prunableMatrices(spec);
    const cal = calibration(spec);
    const settings = { ...FAST, generations: 8, quantum: 1 / 8 };
    const run = (seed: number) =>
      allocatePrune({ spec, matrices, sparsity: 0.6, calibration: cal, rng: createRng(seed), settings });
    const a = await run(21);
    const b = await run(21);
    assert.deepEqual(a.keeps, b.keeps);
    assert.deepEqual(a.report, b.report);
    assert.equal(a.forwardPasses, b.forwardPasses);

    // The full calibration score, recomputed outside the search for the result and for the uniform start.
    const start = await allocatePrune({
      spec,
      matrices,
      sparsity: 0.6,
      calibration: cal,
      rng: createRng(21),
      settings: { generations: 0 },
    });
    const runner = await createRunner(spec, { output: 'nll', weightMasks: matrices.map((m) => m.role) });
    const windows = makeWindows(cal.stream, CONTEXT, TOKENS);
    const ppl = async (keeps: Uint8Array[]) =>
      (
        await evaluatePerplexity(runner, windows, {
          masks: { weightMasks: new Map(matrices.map((m, i) => [m.role, keeps[i]])) },
        })
      ).perplexity;
    const result = await ppl(a.keeps);
    const uniform = await ppl(start.keeps);
    await runner.release();
    const rep = a.report;
    assert.ok(result <= uniform * (1 + 1e-6), `${result} vs uniform ${uniform}`);
    assert.ok(Math.abs(result - rep.perplexity) / result < 1e-5);
    assert.ok(Math.abs(uniform - rep.startPerplexity) / uniform < 1e-5);
    assert.equal(rep.generations.length, 8);
    for (let g = 1; g < rep.generations.length; g++)
      assert.ok(rep.generations[g].best <= rep.generations[g - 1].best);
    assert.ok(
      rep.generations.some((g) => g.accepted),
      'some generation improved on the start',
    );
  });
});

describe('weights --method alloc on stories260K', { skip: skipUnlessShared(MODEL, CALIB, EVAL) }, () => {
  test('--pattern is refused in one line, before anything is written', () => {
    assert.throws(
      () => weightPruneSettings({ calib: 'c', eval: 'e', method: 'alloc', pattern: '2:4' }),
      /nothing to allocate/,
    );
    const out = join(tmp.dir, 'refused');
    const r = runCli([
      'weights',
      '--calib',
      sharedPath(CALIB)!,
      '--eval',
      sharedPath(EVAL)!,
      '--method',
      'alloc',
      '--pattern',
      '2:4',
      '--out',
      out,
    ]);
    assertOneLineError(r, 2, '--pattern: an N:M pattern fixes every matrix at 1 − N/M');
    assert.ok(!existsSync(out));
    assert.equal(ALLOC.supportsPattern, false);
  });

  test('a short CLI run prunes exactly 50 % and records the search', () => {
    const out = join(tmp.dir, 'alloc50');
    const r = runCli(
      [
        'weights',
        '--calib',
        sharedPath(CALIB)!,
        '--eval',
        sharedPath(EVAL)!,
        '--method',
        'alloc',
        '--sparsity',
        '0.5',
        '--ctx',
        '64',
        '--calib-tokens',
        '256',
        '--eval-tokens',
        '512',
        '--out',
        out,
        '--json',
      ],
      { timeout: 120_000 },
    );
    assert.equal(r.code, 0, r.stderr);
    const res = JSON.parse(r.stdout) as {
      sparsity: { achieved: number };
      calib: { perplexity: number };
      methodReport: AllocReport;
    };
    assert.equal(res.sparsity.achieved, 0.5);
    const rep = res.methodReport;
    assert.ok(rep.perplexity <= rep.startPerplexity);
    assert.ok(Math.abs(rep.perplexity - res.calib.perplexity) / res.calib.perplexity < 1e-5);
    assert.equal(rep.allocation.length, 35);
    assert.ok(rep.generations.length > 0);
  });

  test('SIGKILL after a generation, then --resume: the mask and log of the run never interrupted', async () => {
    const args = (out: string) => [
      'weights',
      '--calib',
      sharedPath(CALIB)!,
      '--eval',
      sharedPath(EVAL)!,
      '--method',
      'alloc',
      '--sparsity',
      '0.5',
      '--generations',
      '6',
      '--seed',
      '4',
      '--ctx',
      '64',
      '--calib-tokens',
      '256',
      '--eval-tokens',
      '512',
      '--out',
      out,
      '--json',
    ];
    const whole = runCli(args(join(tmp.dir, 'alloc-whole')), { timeout: 120_000 });
    assert.equal(whole.code, 0, whole.stderr);
    const killedDir = join(tmp.dir, 'alloc-killed');
    const killed = runCli(args(killedDir), { timeout: 120_000, fault: 'weights:method-state:3' });
    assert.equal(killed.signal, 'SIGKILL', killed.stderr);
    assert.ok(
      existsSync(join(killedDir, 'method-state.json')) && !existsSync(join(killedDir, 'result.json')),
    );
    const resumed = runCli(['weights', '--resume', killedDir, '--json'], { timeout: 120_000 });
    assert.equal(resumed.code, 0, resumed.stderr);
    const a = JSON.parse(whole.stdout) as { methodReport: AllocReport; eval: { perplexity: number } };
    const b = JSON.parse(resumed.stdout) as { methodReport: AllocReport; eval: { perplexity: number } };
    assert.deepEqual(b.methodReport, a.methodReport);
    assert.equal(b.eval.perplexity, a.eval.perplexity);
    assert.equal(b.methodReport.generations.length, 6);
  });
});
