/**
 * `--workers N` (search/pool.ts): the head search on the real stories260K (and codet5-tiny, an encoder-decoder)
 * with one process and with two worker threads writes the same evals.jsonl (timings aside), mask and result, also
 * when killed and resumed; a pooled objective scores a batch exactly as the one-process objective does; a worker
 * that cannot open the model, opens another model, or throws while scoring fails with one line, never a score; a
 * worker thread that exits mid-batch fails the batch in one line; a released pool scores nothing more and gives
 * its threads back; --memory-budget counts one session per worker.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { estimatePeakMemory } from '../../src/engine/memory.js';
import { GenepruneError } from '../../src/errors.js';
import { defaultBatchSize } from '../../src/metrics/perplexity.js';
import { loadModelSpec } from '../../src/model/load.js';
import { calibrationRecipe } from '../../src/search/backend.js';
import {
  createPoolBackend,
  createPoolScorer,
  EvaluatorProcess,
  oversubscriptionNote,
  poolRunner,
  poolThread,
  refuseUnpooledMetric,
  threadsPerWorker,
} from '../../src/search/pool.js';
import { objectiveRecord } from '../../src/search/record.js';
import { createHeadObjective } from '../../src/spaces/heads/objective.js';
import { tempDir } from '../checkpoint/helpers.js';
import { assertOneLineError, runCli, spawnCli } from '../helpers/cli.js';
import { childPids, settleTo } from '../helpers/procs.js';
import { logWithoutTimes, readRunJson, smallRunArgs, withoutRunFields } from '../helpers/rundir.js';
import { lcgTokens } from '../helpers/tokens.js';
import { CALIB, EVAL, MODEL, sharedPath, skipUnlessShared } from '../shared.js';

const tmp = tempDir('geneprune-pool-');
after(tmp.cleanup);
const skip = skipUnlessShared(MODEL, CALIB, EVAL);

/** The small head search, 4 generations unless told. */
const headArgs = (out: string, extra: string[] = [], generations = 4) =>
  smallRunArgs('heads', out, { generations }, extra);

describe('heads --workers', { skip }, () => {
  test('one process and --workers 2 write the same evaluations, mask and result', async () => {
    const one = join(tmp.dir, 'one');
    const two = join(tmp.dir, 'two');
    const r1 = await runCli(headArgs(one), { timeout: 300_000 });
    assert.equal(r1.code, 0, r1.stderr);
    const r2 = await runCli(headArgs(two, ['--workers', '2']), { timeout: 300_000 });
    assert.equal(r2.code, 0, r2.stderr);
    const evals = logWithoutTimes(one, 'evals.jsonl');
    // Several generations, both fidelities, cache hits: a real search, not a trivial one.
    assert.ok(evals.length > 20, `only ${evals.length} evaluations logged`);
    assert.ok(evals.some((e) => (e as { fidelity: string }).fidelity === 'low'));
    assert.ok(evals.some((e) => (e as { cached: boolean }).cached));
    assert.deepEqual(logWithoutTimes(two, 'evals.jsonl'), evals);
    assert.deepEqual(logWithoutTimes(two, 'generations.jsonl'), logWithoutTimes(one, 'generations.jsonl'));
    assert.deepEqual(
      withoutRunFields(readRunJson(two, 'mask.json')),
      withoutRunFields(readRunJson(one, 'mask.json')),
    );
    assert.deepEqual(
      withoutRunFields(readRunJson(two, 'result.json')),
      withoutRunFields(readRunJson(one, 'result.json')),
    );
  });

  test('an encoder-decoder (codet5-tiny, ppl on source/target pairs) gives the same run with --workers 2', async (t) => {
    const model = sharedPath('models/codet5-tiny');
    const calib = sharedPath('data/codegen/calib.jsonl');
    const evalFile = sharedPath('data/codegen/eval.jsonl');
    if (!model || !calib || !evalFile) return t.skip('codet5-tiny or its data absent');
    const args = (out: string) =>
      smallRunArgs('heads', out, {
        model,
        calib,
        eval: evalFile,
        population: 4,
        generations: 2,
        'low-tokens': false,
        'calib-tokens': 512,
        'eval-tokens': 512,
        seed: false,
      });
    const one = join(tmp.dir, 't5-one');
    const two = join(tmp.dir, 't5-two');
    const r1 = await runCli(args(one), { timeout: 300_000 });
    assert.equal(r1.code, 0, r1.stderr);
    const r2 = await runCli([...args(two), '--workers', '2'], { timeout: 300_000 });
    assert.equal(r2.code, 0, r2.stderr);
    const evals = logWithoutTimes(one, 'evals.jsonl');
    assert.ok(evals.length >= 4);
    assert.deepEqual(logWithoutTimes(two, 'evals.jsonl'), evals);
    assert.deepEqual(
      withoutRunFields(readRunJson(two, 'result.json')),
      withoutRunFields(readRunJson(one, 'result.json')),
    );
  });

  test('a --workers 2 run killed with SIGKILL and resumed with --workers 2 ends as a one-process run', async () => {
    const whole = join(tmp.dir, 'whole');
    const killed = join(tmp.dir, 'killed');
    const rw = await runCli(headArgs(whole, [], 12), { timeout: 300_000 });
    assert.equal(rw.code, 0, rw.stderr);
    const child = spawnCli(headArgs(killed, ['--workers', '2'], 12), { stdio: 'ignore' });
    const exited = new Promise<void>((res) => child.on('exit', () => res()));
    const gens = () => {
      const f = join(killed, 'generations.jsonl');
      return existsSync(f) ? readFileSync(f, 'utf8').split('\n').filter(Boolean).length : 0;
    };
    const deadline = Date.now() + 120_000;
    while (gens() < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    child.kill('SIGKILL');
    await exited;
    assert.ok(gens() >= 3 && !existsSync(join(killed, 'mask.json')), `killed after ${gens()} generations`);
    const rr = await runCli(['heads', '--resume', killed, '--workers', '2', '--quiet'], { timeout: 300_000 });
    assert.equal(rr.code, 0, rr.stderr);
    assert.deepEqual(logWithoutTimes(killed, 'evals.jsonl'), logWithoutTimes(whole, 'evals.jsonl'));
    assert.deepEqual(
      logWithoutTimes(killed, 'generations.jsonl'),
      logWithoutTimes(whole, 'generations.jsonl'),
    );
    assert.deepEqual(readRunJson(killed, 'mask.json').keep, readRunJson(whole, 'mask.json').keep);
  });

  test('--memory-budget counts one session per worker: refused in one line with --workers 2, not without', async () => {
    // The estimate the run makes (runs/data.ts): default batch of 512-token windows, ppl, fp32.
    const spec = await loadModelSpec(sharedPath(MODEL)!);
    const one = estimatePeakMemory(spec, { batch: defaultBatchSize(512, 512), seq: 512, metric: 'ppl' });
    const two = estimatePeakMemory(spec, {
      batch: defaultBatchSize(512, 512),
      seq: 512,
      metric: 'ppl',
      workers: 2,
    });
    assert.ok(two.totalBytes > one.totalBytes);
    // Between the two estimates: one session fits, two do not.
    const budget = String(Math.floor((one.totalBytes + two.totalBytes) / 2));
    const ok = await runCli(headArgs(join(tmp.dir, 'budget-one'), ['--memory-budget', budget]), {
      timeout: 300_000,
    });
    assert.equal(ok.code, 0, ok.stderr);
    const out = join(tmp.dir, 'budget-two');
    const r = await runCli(headArgs(out, ['--memory-budget', budget, '--workers', '2']));
    assertOneLineError(r, 'non-zero', '--memory-budget', '2 worker sessions');
    assert.ok(!existsSync(out), 'refused before the run directory was made');
  });

  test('--workers 2 --threads <cores> runs, with the note that the threads exceed the cores', async () => {
    const cores = availableParallelism();
    const r = await runCli(
      headArgs(join(tmp.dir, 'crowded'), ['--workers', '2', '--threads', String(cores)], 1),
      {
        timeout: 300_000,
      },
    );
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, new RegExp(`${2 * cores} compute threads on ${cores} cores`));
  });

  test('--workers 0 is refused in one line', async () => {
    const r = await runCli(headArgs(join(tmp.dir, 'zero'), ['--workers', '0']));
    assertOneLineError(r, 'non-zero', '--workers');
  });
});

describe('pooled objective', { skip }, () => {
  const modelPath = sharedPath(MODEL) ?? '';
  const opts = {
    stream: lcgTokens(1200, 12345, 500),
    context: 128,
    metric: 'ppl' as const,
    tokens: 1024,
    lowTokens: 256,
  };
  const pool = (workers: number, model = modelPath) => ({ backend: createPoolBackend(workers), model });

  test('scores a batch (repeats, both fidelities) exactly as the one-process objective', async () => {
    const spec = await loadModelSpec(modelPath);
    const plain = await createHeadObjective(spec, opts);
    const pooled = await createHeadObjective(spec, { ...opts, remote: pool(2) });
    try {
      const genes = plain.space.genes;
      const genomes = Array.from({ length: 7 }, (_, k) =>
        Uint8Array.from({ length: genes }, (_, j) => ((j * 7 + k * 3) % 5 === 0 ? 0 : 1)),
      );
      genomes.push(genomes[2]);
      for (const fidelity of ['low', 'full'] as const) {
        const a = await plain.evaluateMany(genomes, fidelity);
        const seen: number[] = [];
        const b = await pooled.evaluateMany(genomes, fidelity, (i) => seen.push(i));
        assert.deepEqual(
          b.map((r) => [r.evaluation.quality, r.evaluation.tokens, r.forwardPasses, r.cached]),
          a.map((r) => [r.evaluation.quality, r.evaluation.tokens, r.forwardPasses, r.cached]),
        );
        // Progress in index order, whatever order the workers finished in.
        assert.deepEqual(
          seen,
          genomes.map((_, i) => i),
        );
      }
      assert.equal(pooled.evaluations(), plain.evaluations());
      // The identity record (what a remote worker must match) is the one-process objective's.
      assert.deepEqual(await objectiveRecord(pooled), await objectiveRecord(plain));
      assert.equal(pooled.forwardPasses(), plain.forwardPasses());
    } finally {
      await plain.release();
      await pooled.release();
    }
  });

  test('kl (each worker computes the dense reference itself) scores as the one-process objective', async () => {
    const spec = await loadModelSpec(modelPath);
    const kl = { ...opts, metric: 'kl' as const, tokens: 512 };
    const plain = await createHeadObjective(spec, kl);
    const pooled = await createHeadObjective(spec, { ...kl, remote: pool(2) });
    try {
      const genes = plain.space.genes;
      const genomes = Array.from({ length: 4 }, (_, k) =>
        Uint8Array.from({ length: genes }, (_, j) => (j % 4 === k ? 0 : 1)),
      );
      const a = await plain.evaluateMany(genomes);
      const b = await pooled.evaluateMany(genomes);
      assert.ok(a.every((r) => r.evaluation.quality > 0));
      assert.deepEqual(
        b.map((r) => r.evaluation.quality),
        a.map((r) => r.evaluation.quality),
      );
    } finally {
      await plain.release();
      await pooled.release();
    }
  });

  test('a worker that cannot open the model fails the start in one line', async () => {
    const spec = await loadModelSpec(modelPath);
    const missing = join(tmp.dir, 'absent.bin');
    await assert.rejects(
      createHeadObjective(spec, { ...opts, remote: pool(2, missing) }),
      (e: unknown) => e instanceof GenepruneError && e.where === missing && !e.oneLine().includes('\n'),
    );
  });

  test('a worker that opens another model refuses to score', async (t) => {
    const other = sharedPath('models/codet5-tiny');
    if (!other) return t.skip('codet5-tiny absent');
    const spec = await loadModelSpec(modelPath);
    await assert.rejects(
      createHeadObjective(spec, { ...opts, remote: pool(1, other) }),
      (e: unknown) => e instanceof GenepruneError && /different model configuration/.test(e.message),
    );
  });

  test('an evaluation that throws in a worker is a one-line error, not a score; released, the pool scores nothing', async () => {
    const spec = await loadModelSpec(modelPath);
    const scorer = await createPoolScorer(calibrationRecipe(spec, {}, opts, modelPath), 2);
    try {
      const good = await scorer.score({}, 'full');
      assert.ok(Number.isFinite(good.quality) && good.tokens === 1024);
      // A head mask of the wrong size: the engine throws inside the worker.
      await assert.rejects(scorer.score({ headMask: new Float32Array(3) }, 'full'), (e: unknown) => {
        assert.ok(e instanceof GenepruneError || e instanceof Error);
        assert.ok(!(e as Error).message.includes('\n'), (e as Error).message);
        return true;
      });
      // The worker that threw is still usable, and scores as before.
      assert.equal((await scorer.score({}, 'full')).quality, good.quality);
    } finally {
      await scorer.runner.release();
    }
    await assert.rejects(scorer.score({}, 'full'), /released/);
  });

  test('a worker process that exits mid-batch fails the batch in one line; the pool then scores nothing', async () => {
    const spec = await loadModelSpec(modelPath);
    // A process that builds nothing and ends itself when asked to score: worker 1 of the pool, beside a real
    // evaluation worker 2.
    const script = join(tmp.dir, 'exiting.cjs');
    writeFileSync(
      script,
      `process.on('message', (m) => {
         if (m.kind === 'load') process.send({ kind: 'ready' });
         else if (m.kind === 'score') setTimeout(() => process.exit(7), 50);
       });`,
    );
    const scorer = await createPoolScorer(calibrationRecipe(spec, {}, opts, modelPath), 2, {
      threads: [poolThread(new EvaluatorProcess(script, []))],
    });
    try {
      const tasks = Array.from({ length: 4 }, () => () => scorer.score({}, 'low'));
      await assert.rejects(poolRunner(tasks), (e: unknown) => {
        assert.ok(e instanceof GenepruneError, String(e));
        assert.match(e.message, /evaluation worker 1 exited \(code 7\)/);
        assert.ok(!e.oneLine().includes('\n'));
        return true;
      });
      await assert.rejects(scorer.score({}, 'low'), /exited/);
    } finally {
      await scorer.runner.release();
    }
  });

  test('a Ctrl-C (SIGINT, SIGTERM) that reaches the worker processes leaves them to the search', async (t) => {
    const before = childPids();
    if (before === undefined) return t.skip('no /proc here');
    const spec = await loadModelSpec(modelPath);
    const scorer = await createPoolScorer(calibrationRecipe(spec, {}, opts, modelPath), 2);
    try {
      const first = await scorer.score({}, 'low');
      const workers = childPids()!.filter((p) => !before.includes(p));
      assert.equal(workers.length, 2);
      for (const pid of workers) {
        process.kill(pid, 'SIGINT');
        process.kill(pid, 'SIGTERM');
      }
      await new Promise((r) => setTimeout(r, 200));
      const again = await poolRunner([() => scorer.score({}, 'low'), () => scorer.score({}, 'low')]);
      assert.deepEqual(
        again.map((r) => r.quality),
        [first.quality, first.quality],
      );
    } finally {
      await scorer.runner.release();
    }
    assert.equal(await settleTo(() => childPids()!.length, before.length), before.length);
  });

  test('release ends the worker processes', async (t) => {
    const children = () => childPids()?.length ?? 0;
    if (childPids() === undefined) return t.skip('no /proc here');
    const spec = await loadModelSpec(modelPath);
    const before = children();
    const scorer = await createPoolScorer(calibrationRecipe(spec, {}, opts, modelPath), 2);
    await scorer.score({}, 'low');
    const running = children();
    assert.equal(running, before + 2, `${before} child processes before, ${running} with two workers`);
    await scorer.runner.release();
    assert.equal(await settleTo(children, before), before);
  });
});

describe('poolRunner', () => {
  test('values in input order whatever the finishing order; the lowest-index failure is the error', async () => {
    const delays = [30, 5, 20, 0];
    const settled: number[] = [];
    const values = await poolRunner(
      delays.map((d, i) => () => new Promise<number>((r) => setTimeout(() => r(i * 10), d))),
      (i) => settled.push(i),
    );
    assert.deepEqual(values, [0, 10, 20, 30]);
    assert.deepEqual([...settled].sort(), [0, 1, 2, 3]);
    assert.notDeepEqual(settled, [0, 1, 2, 3]);
    await assert.rejects(
      poolRunner([
        () => new Promise((r) => setTimeout(() => r(1), 10)),
        () => new Promise((_, j) => setTimeout(() => j(new Error('second')), 20)),
        () => Promise.reject(new Error('third')),
      ]),
      /second/,
    );
  });

  test('a metric registered later (not checked to travel to workers) is refused in one line', () => {
    assert.throws(
      () => refuseUnpooledMetric('perplexity-of-a-plugin'),
      (e: unknown) =>
        e instanceof GenepruneError &&
        e.where === '--workers' &&
        /perplexity-of-a-plugin/.test(e.message) &&
        !e.oneLine().includes('\n'),
    );
    for (const m of ['ppl', 'kl', 'bleu', 'mc-accuracy', 'accuracy']) refuseUnpooledMetric(m);
  });

  test('more compute threads than cores is a note naming the --threads that fits', () => {
    const note = oversubscriptionNote(2, 2, 2);
    assert.ok(note?.includes('4 compute threads on 2 cores') && note.includes('--threads 1'), note);
    assert.equal(oversubscriptionNote(2, 1, 2), undefined);
    assert.equal(oversubscriptionNote(2, undefined, 2), undefined);
    assert.equal(oversubscriptionNote(undefined, 8, 2), undefined);
  });

  test('threads per worker share the cores out, at least one each', () => {
    assert.equal(threadsPerWorker(2, 16), 8);
    assert.equal(threadsPerWorker(3, 16), 5);
    assert.equal(threadsPerWorker(4, 2), 1);
  });
});
