/**
 * The run watcher inside a searching process: the progress line and the block search's report it was made of
 * arrive together (setLive) at any moment, also while a refresh is reading the run's files; every view the
 * watcher builds holds one such pair, never the line of one report beside the numbers of another.
 */
import assert from 'node:assert/strict';
import { appendFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { watchRun } from '../../src/dashboard/watch.js';
import { LOCK_FILE, RUN_FILES } from '../../src/runs/files.js';
import { WEIGHT_RUN_KIND } from '../../src/runs/rundir.js';
import type { BlockSearchProgress } from '../../src/spaces/weights/blockwise.js';

const work = mkdtempSync(join(tmpdir(), 'geneprune-watch-'));
after(() => rmSync(work, { recursive: true, force: true }));

test('a line and its report given while a refresh reads the files are shown together, never split', async () => {
  const dir = join(work, 'ga-wanda');
  mkdirSync(dir);
  writeFileSync(
    join(dir, RUN_FILES.config),
    JSON.stringify({
      kind: WEIGHT_RUN_KIND,
      version: 1,
      method: 'ga-wanda',
      settings: { method: 'ga-wanda', metric: 'ppl', generations: 1000 },
      model: { shape: { numLayers: 3 } },
    }),
  );
  // This process holds the lock: the run is running, so the view is built with its status read from the lock.
  writeFileSync(join(dir, LOCK_FILE), JSON.stringify({ pid: process.pid, host: hostname() }));
  const report = (g: number): BlockSearchProgress => ({
    layer: 0,
    layers: 3,
    generation: g,
    generations: 1000,
    metric: 'ppl',
    best: 10 - g / 1000,
    bestSparsity: 0.5,
    evaluations: 4 * (g + 1),
    seconds: g + 1,
  });
  const lineOf = (g: number) => `ga-wanda · block 1/3, generation ${g}/1000`;
  const watcher = watchRun(dir);
  let g = 0;
  watcher.setLive(lineOf(g), report(g));
  await watcher.refresh();
  let givenDuringRefresh = 0;
  for (let round = 0; round < 20; round++) {
    let settled = false;
    const refreshed = watcher.refresh().finally(() => {
      settled = true;
    });
    // A new pair at every turn of the event loop the refresh takes (each file it reads is one or more).
    while (!settled) {
      g++;
      watcher.setLive(lineOf(g), report(g));
      givenDuringRefresh++;
      await new Promise((r) => setImmediate(r));
    }
    await refreshed;
    const { meta } = watcher.snapshot();
    assert.equal(meta.status, 'running');
    assert.equal(meta.search?.from, 'process');
    const shown = /generation (\d+)\//.exec(meta.live ?? '');
    assert.ok(shown, `a search line: ${meta.live}`);
    assert.equal(meta.search.generation, Number(shown[1]), `the page's generation beside "${meta.live}"`);
    assert.equal(meta.search.seconds, Number(shown[1]) + 1);
  }
  // The refreshes did take several turns each, so pairs were given in the middle of them.
  assert.ok(givenDuringRefresh >= 40, `${givenDuringRefresh} pairs given during 20 refreshes`);
});

test('a run seen finished is seen with every candidate it logged before its result', async () => {
  const candidate = (generation: number) =>
    `${JSON.stringify({ block: 0, generation, metric: 'ppl', quality: 10 - generation, sparsity: 0.5, ms: 50 })}\n`;
  // The run's last candidate and its result land k turns of the event loop into a refresh, for every k the
  // refresh lasts: whenever the view says finished, it holds that candidate too.
  let finishedSeen = 0;
  for (let k = 0; k < 40; k++) {
    const dir = join(work, `finishing-${k}`);
    mkdirSync(dir);
    writeFileSync(
      join(dir, RUN_FILES.config),
      JSON.stringify({
        kind: WEIGHT_RUN_KIND,
        version: 1,
        method: 'ga-wanda',
        settings: { method: 'ga-wanda', metric: 'ppl', generations: 2 },
        model: { shape: { numLayers: 1 } },
      }),
    );
    writeFileSync(join(dir, LOCK_FILE), JSON.stringify({ pid: process.pid, host: hostname() }));
    writeFileSync(join(dir, RUN_FILES.evals), candidate(0) + candidate(1));
    const watcher = watchRun(dir);
    await watcher.refresh();
    assert.equal(watcher.snapshot().evals.length, 2);
    const refreshed = watcher.refresh();
    for (let t = 0; t < k; t++) await new Promise((r) => setImmediate(r));
    // As the run writes them: the candidate's line, then (its search done, its mask scored) result.json.
    appendFileSync(join(dir, RUN_FILES.evals), candidate(2));
    writeFileSync(join(dir, RUN_FILES.result), JSON.stringify({ seconds: 1 }));
    await refreshed;
    const { meta, evals } = watcher.snapshot();
    if (meta.status !== 'finished') continue;
    finishedSeen++;
    assert.equal(evals.length, 3, `finished after ${k} turns, with ${evals.length} of 3 candidates`);
  }
  assert.ok(finishedSeen > 0, 'the result was written soon enough in some refresh to be seen by it');
});
