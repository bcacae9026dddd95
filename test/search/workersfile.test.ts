/**
 * A backend's stats and the run's workers.json (runs/workersfile.ts): the worker-thread pool counts each
 * evaluation once, on the thread that ran it, and keeps its numbers after release; a `--workers 2` head search
 * writes workers.json whose per-worker evaluations add up to the run's evaluations, a one-process search writes
 * none; the writer writes at once, only on change while running, once at the end, and a malformed file is a
 * one-line error naming it.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { GenepruneError } from '../../src/errors.js';
import { loadModelSpec } from '../../src/model/load.js';
import { RUN_FILES } from '../../src/runs/files.js';
import { readWorkersFile, watchBackend } from '../../src/runs/workersfile.js';
import { type BackendStats, calibrationRecipe, type EvaluationBackend } from '../../src/search/backend.js';
import { createPoolBackend, poolRunner } from '../../src/search/pool.js';
import { createHeadObjective } from '../../src/spaces/heads/objective.js';
import { tempDir } from '../checkpoint/helpers.js';
import { runCli } from '../helpers/cli.js';
import { readRunJson, smallRunArgs } from '../helpers/rundir.js';
import { lcgTokens } from '../helpers/tokens.js';
import { CALIB, EVAL, MODEL, sharedPath, skipUnlessShared } from '../shared.js';

const tmp = tempDir('geneprune-workersfile-');
after(tmp.cleanup);
const skip = skipUnlessShared(MODEL, CALIB, EVAL);

describe('pool stats', { skip }, () => {
  test('every distinct evaluation is counted once, on one thread, and the numbers outlive release', async () => {
    const spec = await loadModelSpec(sharedPath(MODEL)!);
    const backend = createPoolBackend(2);
    const opts = { stream: lcgTokens(700, 777, 500), context: 128, metric: 'ppl' as const, tokens: 512 };
    const objective = await createHeadObjective(spec, {
      ...opts,
      remote: { backend, model: sharedPath(MODEL)! },
    });
    try {
      const before = await backend.stats!();
      assert.deepEqual(
        { ...before, workers: before.workers.map((w) => [w.id, w.evaluations, w.busyMs]) },
        {
          label: '2 worker processes',
          waiting: 0,
          active: 0,
          done: 0,
          failed: 0,
          workers: [
            ['worker 1', 0, 0],
            ['worker 2', 0, 0],
          ],
        },
      );
      const genes = objective.space.genes;
      const genomes = Array.from({ length: 9 }, (_, k) =>
        Uint8Array.from({ length: genes }, (_, j) => (j === k ? 0 : 1)),
      );
      genomes.push(genomes[4], genomes[0]); // repeats: cached, not evaluated again
      let midway: BackendStats | undefined;
      await objective.evaluateMany(genomes, 'full', (i) => {
        if (i === 0) void backend.stats!().then((s) => (midway = s));
      });
      const s = await backend.stats!();
      assert.equal(objective.evaluations(), 9);
      assert.equal(s.done, 9);
      assert.equal(s.waiting + s.active + s.failed, 0);
      assert.equal(
        s.workers.reduce((a, w) => a + w.evaluations, 0),
        9,
      );
      // Both threads worked, and a worker's busy time is at least its share of the scoring.
      for (const w of s.workers) assert.ok(w.evaluations > 0 && w.busyMs > 0, JSON.stringify(w));
      // Seen while the batch ran: the other candidates were still waiting or being scored.
      assert.ok(midway && midway.waiting + midway.active > 0, JSON.stringify(midway));
      assert.equal(midway.waiting + midway.active + midway.done, 9);
      // An evaluation that throws in a worker (a head mask of the wrong size) counts as failed, on no worker's
      // evaluations. A second recipe opened on the same backend adds to the same tally and thread names.
      const scorer = await backend.open(calibrationRecipe(spec, {}, opts, sharedPath(MODEL)!));
      await assert.rejects(scorer.score({ headMask: new Float32Array(3) }, 'full'));
      await scorer.score({}, 'full');
      await scorer.runner.release();
      const f = await backend.stats!();
      assert.deepEqual([f.done, f.failed, f.workers.length], [10, 1, 2]);
      assert.equal(
        f.workers.reduce((a, w) => a + w.evaluations, 0),
        10,
      );
    } finally {
      await objective.release();
    }
    const released = await backend.stats!();
    assert.equal(released.done, 10);
    assert.equal(released.workers.length, 2);
  });

  test('poolRunner is the pool backend’s batch runner', () => {
    assert.equal(createPoolBackend(1).elementwise, poolRunner);
  });
});

describe('heads --workers writes workers.json', { skip }, () => {
  const args = (out: string, extra: string[] = []) => smallRunArgs('heads', out, { seed: 5 }, extra);

  test('per-worker evaluations add up to the run’s evaluations; one process writes no file', async () => {
    const two = join(tmp.dir, 'two');
    const r = await runCli(args(two, ['--workers', '2']), { timeout: 300_000 });
    assert.equal(r.code, 0, r.stderr);
    const result = readRunJson(two, RUN_FILES.result);
    const w = await readWorkersFile(two);
    assert.ok(w, 'workers.json written');
    assert.equal(w.label, '2 worker processes');
    assert.deepEqual(
      w.workers.map((x) => x.id),
      ['worker 1', 'worker 2'],
    );
    const evaluated = readFileSync(join(two, RUN_FILES.evals), 'utf8')
      .split('\n')
      .filter(Boolean)
      .filter((l) => JSON.parse(l).cached === false).length;
    assert.ok(result.evaluations > 10, `only ${result.evaluations} evaluations`);
    // The search's own count (the log's uncached lines and the dense model, scored first and not logged) and
    // the backend's tally agree.
    assert.equal(evaluated + 1, result.evaluations);
    assert.equal(
      w.workers.reduce((a, x) => a + x.evaluations, 0),
      result.evaluations,
    );
    assert.equal(w.done, result.evaluations);
    assert.deepEqual([w.waiting, w.active, w.failed], [0, 0, 0]);
    assert.ok(w.seconds > 0 && w.seconds <= result.seconds + 5, `${w.seconds} s vs ${result.seconds} s`);
    assert.ok(Date.parse(w.updated) >= Date.parse(w.started));

    const one = join(tmp.dir, 'one');
    const r1 = await runCli(args(one), { timeout: 300_000 });
    assert.equal(r1.code, 0, r1.stderr);
    assert.ok(!existsSync(join(one, RUN_FILES.workers)));
    assert.equal(await readWorkersFile(one), undefined);
  });
});

describe('weights --workers writes workers.json', { skip }, () => {
  test('a block-wise GA: per-worker evaluations add up to the candidates it logged', async () => {
    const out = join(tmp.dir, 'weights');
    const args = smallRunArgs('weights', out, { generations: 2 }, ['--workers', '2']);
    const r = await runCli(args, { timeout: 300_000 });
    assert.equal(r.code, 0, r.stderr);
    const w = await readWorkersFile(out);
    assert.ok(w, 'workers.json written');
    assert.equal(w.label, '2 worker processes');
    // The search's own count per block (state.json's method report) and its log of every candidate agree with
    // the threads' tally, plus the first block's dense model (scored on the backend once, not a candidate).
    const layers = readRunJson(out, RUN_FILES.state).methodReport.layers as Array<{ evaluations: number }>;
    const searched = layers.reduce((a, l) => a + l.evaluations, 0);
    const logged = readFileSync(join(out, RUN_FILES.evals), 'utf8').split('\n').filter(Boolean).length;
    assert.ok(searched > 20, `only ${searched} candidates`);
    assert.equal(logged, searched);
    assert.equal(
      w.workers.reduce((a, x) => a + x.evaluations, 0),
      w.done,
    );
    assert.equal(w.done, searched + 1);
    assert.deepEqual([w.waiting, w.active, w.failed], [0, 0, 0]);
    for (const x of w.workers) assert.ok(x.evaluations > 0, JSON.stringify(x));
  });
});

/** A backend that only reports stats (the writer reads nothing else), its numbers set by the test. */
function statsOnly(current: { done: number }): EvaluationBackend {
  return {
    flag: '--workers',
    label: 'test',
    elementwise: poolRunner,
    open: () => Promise.reject(new Error('not used')),
    release: async () => {},
    stats: async () => ({
      label: 'test',
      waiting: 0,
      active: 0,
      done: current.done,
      failed: 0,
      workers: [{ id: 'a', evaluations: current.done, busyMs: 0 }],
    }),
  };
}

describe('watchBackend', () => {
  test('writes at once, then only when the numbers change, and once at the end', async () => {
    const dir = tempDir('geneprune-watch-');
    try {
      const path = join(dir.dir, RUN_FILES.workers);
      const current = { done: 0 };
      const watch = watchBackend(dir.dir, statsOnly(current), 50);
      const until = async (ok: () => boolean) => {
        const end = Date.now() + 5000;
        while (!ok() && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
        assert.ok(ok());
      };
      await until(() => existsSync(path));
      assert.equal(readRunJson(dir.dir, RUN_FILES.workers).done, 0);
      const first = statSync(path).mtimeMs;
      const firstText = readFileSync(path, 'utf8');
      await new Promise((r) => setTimeout(r, 200)); // four ticks with nothing new
      assert.equal(readFileSync(path, 'utf8'), firstText);
      assert.equal(statSync(path).mtimeMs, first);
      current.done = 3;
      await until(() => readRunJson(dir.dir, RUN_FILES.workers).done === 3);
      current.done = 4;
      await watch.stop();
      const last = await readWorkersFile(dir.dir);
      assert.equal(last?.done, 4);
      assert.equal(last?.workers[0].evaluations, 4);
      current.done = 9;
      await new Promise((r) => setTimeout(r, 120));
      await watch.stop(); // once: a second stop writes nothing more
      assert.equal(readRunJson(dir.dir, RUN_FILES.workers).done, 4);
    } finally {
      dir.cleanup();
    }
  });

  test('a backend without stats (or none) writes no file', async () => {
    const dir = tempDir('geneprune-watch-');
    try {
      const { stats: _s, ...plain } = statsOnly({ done: 0 });
      await watchBackend(dir.dir, plain, 10).stop();
      await watchBackend(dir.dir, undefined, 10).stop();
      assert.ok(!existsSync(join(dir.dir, RUN_FILES.workers)));
    } finally {
      dir.cleanup();
    }
  });

  test('a malformed workers.json is a one-line error naming the file', async () => {
    const dir = tempDir('geneprune-watch-');
    try {
      const path = join(dir.dir, RUN_FILES.workers);
      const good = { version: 1, label: 'x', started: 's', updated: 'u', seconds: 1 };
      const cases: Array<[string, RegExp]> = [
        ['{', /not JSON/],
        [JSON.stringify({ ...good, version: 2 }), /version 2/],
        [JSON.stringify({ ...good, waiting: 0, active: 0, done: -1, failed: 0, workers: [] }), /"done"/],
        [
          JSON.stringify({ ...good, waiting: 0, active: 0, done: 1, failed: 0, workers: [{ id: 1 }] }),
          /workers\[0\]/,
        ],
      ];
      for (const [text, why] of cases) {
        writeFileSync(path, text);
        await assert.rejects(readWorkersFile(dir.dir), (e: unknown) => {
          assert.ok(e instanceof GenepruneError && e.where === path, String(e));
          assert.match(e.message, why);
          assert.ok(!e.message.includes('\n'));
          return true;
        });
      }
    } finally {
      dir.cleanup();
    }
  });
});
