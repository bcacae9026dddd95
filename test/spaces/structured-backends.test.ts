/**
 * A structured search on the evaluation backends (stories260K): the same run in one process, on `--workers 2`
 * (worker processes) and on `--queue` (a real Redis, one `geneprune worker` process) writes the same evals.jsonl
 * and generations.jsonl (timings aside), the same plan and the same result — the plans' channel, block and head
 * masks travel to the evaluators and their runners are built with the structured mask inputs; a run resumed on
 * --workers ends as the uninterrupted one. The queue part
 * skips, saying why, where redis-server is not installed (test/helpers/redis.ts).
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { CandidateMasks } from '../../src/engine/runner.js';
import { fullPlan, structuredMasksOf } from '../../src/masks/structured.js';
import { loadModelSpec } from '../../src/model/load.js';
import { decodeMasks, encodeMasks } from '../../src/queue/jobs.js';
import { readWorkersFile } from '../../src/runs/workersfile.js';
import { calibrationRecipe } from '../../src/search/backend.js';
import { resumeStructuredSearch, runStructuredSearch } from '../../src/spaces/structured/run.js';
import { structuredSearchSettings } from '../../src/spaces/structured/settings.js';
import { tempDir } from '../checkpoint/helpers.js';
import { spawnCli } from '../helpers/cli.js';
import { redisSkip, startRedis } from '../helpers/redis.js';
import { logWithoutTimes, readRunJson, withoutRunFields } from '../helpers/rundir.js';
import { CALIB, EVAL, MODEL, sharedPath, skipUnlessShared } from '../shared.js';

const tmp = tempDir('geneprune-sdist-');
after(tmp.cleanup);
const skip = skipUnlessShared(MODEL, CALIB, EVAL);

const settings = () =>
  structuredSearchSettings({
    model: sharedPath(MODEL)!,
    calib: sharedPath(CALIB)!,
    eval: sharedPath(EVAL)!,
    budget: 'params:0.75',
    widthStep: 16,
    population: 6,
    generations: 2,
    calibTokens: 256,
    lowTokens: 128,
    scoreTokens: 256,
    evalTokens: 256,
    context: 64,
    seed: 3,
  });

/** The run's logs, plan and result with what names its directory or measures time left out. */
function runOf(dir: string) {
  const { planFile: _p, ...result } = withoutRunFields(readRunJson(dir, 'result.json'));
  const plan = withoutRunFields(readRunJson(dir, 'plan.json'));
  return {
    evals: logWithoutTimes(dir, 'evals.jsonl'),
    generations: logWithoutTimes(dir, 'generations.jsonl'),
    plan,
    result,
  };
}

describe('structured search on the evaluation backends (stories260K)', { skip }, () => {
  const one = join(tmp.dir, 'one');
  before(async () => {
    await runStructuredSearch(one, settings());
  });

  test('the plan masks are structured: a recipe says so, and the masks come back from JSON exactly', async () => {
    const spec = await loadModelSpec(sharedPath(MODEL)!);
    const plan = fullPlan(spec.config);
    plan.channels[1] = plan.channels[1].slice(0, 5);
    plan.heads[0] = [1];
    plan.skipMlp[3] = true;
    const masks: CandidateMasks = structuredMasksOf(spec.config, plan);
    const back = decodeMasks(JSON.parse(JSON.stringify(encodeMasks(masks))), 'test');
    assert.deepEqual(back, masks);
    assert.equal(
      back.channelMask!.reduce((a, b) => a + b, 0),
      masks.channelMask!.reduce((a, b) => a + b, 0),
    );
    const recipe = calibrationRecipe(
      spec,
      { structuredMasks: true },
      { stream: [1, 2, 3], context: 2, metric: 'ppl' },
      'm',
    );
    assert.deepEqual(recipe.target, { structuredMasks: true });
    assert.deepEqual(calibrationRecipe(spec, {}, { stream: [1], context: 2, metric: 'ppl' }, 'm').target, {});
  });

  test('--workers 2 gives the one-process run', async () => {
    const two = join(tmp.dir, 'two');
    await runStructuredSearch(two, settings(), { workers: 2, threads: 1 });
    const a = runOf(one);
    const b = runOf(two);
    // A real search: several distinct plans were scored.
    assert.ok((a.evals as Array<{ cached: boolean }>).filter((e) => !e.cached).length >= 6);
    assert.deepEqual(b, a);
    // workers.json: what the two workers did, every distinct evaluation of the run, none failed.
    const w = await readWorkersFile(two);
    assert.ok(w);
    assert.equal(w.label, '2 worker processes');
    assert.equal(w.failed, 0);
    assert.equal(w.done, b.result.evaluations);
    assert.equal(
      w.workers.reduce((n, x) => n + x.evaluations, 0),
      w.done,
    );
  });

  test('a run stopped after a generation and resumed on --workers 2 ends as the one-process run', async () => {
    const dir = join(tmp.dir, 'resumed');
    await assert.rejects(
      runStructuredSearch(dir, settings(), {
        onGeneration: (g) => {
          if (g.generation === 0) throw new Error('stopped');
        },
      }),
      /stopped/,
    );
    const r = await resumeStructuredSearch(dir, { workers: 2, threads: 1 });
    assert.equal(r.resumed, true);
    const { resumed: _r, ...result } = runOf(dir).result;
    assert.deepEqual({ ...runOf(dir), result }, runOf(one));
  });

  describe('--queue with a geneprune worker (real Redis)', { skip: redisSkip() }, () => {
    let redis: Awaited<ReturnType<typeof startRedis>>;
    let worker: ChildProcess | undefined;
    let out = '';
    before(async () => {
      redis = await startRedis();
      worker = spawnCli(['worker', '--queue', redis.url, '--threads', '1'], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      worker.stdout?.on('data', (d) => {
        out += d.toString();
      });
      worker.stderr?.on('data', (d) => {
        out += d.toString();
      });
    });
    after(async () => {
      if (worker && worker.exitCode === null && worker.signalCode === null) {
        const exited = new Promise((r) => worker!.once('exit', r));
        worker.kill('SIGTERM');
        await exited;
      }
      await redis?.cleanup();
    });

    test('gives the one-process run, scored by the worker', async () => {
      const queued = join(tmp.dir, 'queued');
      await runStructuredSearch(queued, settings(), { queue: redis.url });
      assert.deepEqual(runOf(queued), runOf(one));
      assert.match(out, /^job \S+: (low|full) quality/m, out);
    });
  });
});
