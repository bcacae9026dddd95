/**
 * The dashboard's workers panel over a run directory written by hand: the view carries workers.json's numbers
 * (each worker's evaluations per second and busy share worked out from the file) only while the file exists and
 * reads as one, follows it as it is rewritten, and the page — in headless Chromium — shows the panel (label, jobs
 * waiting / active / done / failed, one row per worker) from a workers.json and leaves it out without one; the
 * label is shown as text, never parsed as HTML.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { startDashboard } from '../../src/dashboard/server.js';
import { watchRun } from '../../src/dashboard/watch.js';
import { RUN_FILES } from '../../src/runs/files.js';

const CHROMIUM = process.env.GENEPRUNE_CHROMIUM ?? '/usr/bin/chromium';
const HOSTILE = '<img src=x onerror=window.pwned=1>';
const work = mkdtempSync(join(tmpdir(), 'geneprune-dashboard-workers-'));
after(() => rmSync(work, { recursive: true, force: true }));

let runs = 0;
/** A GA head run of 2 layers × 2 heads with three evaluations and one generation logged. */
function runDir(): string {
  const dir = join(work, `run-${runs++}`);
  mkdirSync(dir);
  writeFileSync(
    join(dir, RUN_FILES.config),
    JSON.stringify({
      kind: 'geneprune-head-search',
      version: 1,
      method: 'ga',
      settings: { method: 'ga', metric: 'ppl', generations: 4, population: 3, targetSparsity: 0.25 },
      model: { path: '/models/m.bin', shape: { numLayers: 2, queryHeads: [2, 2], kvHeads: [1, 1] } },
    }),
  );
  const line = (i: number) =>
    `${JSON.stringify({ generation: 0, index: i, genome: '1011', sparsity: 0.25, quality: 5 + i, metric: 'ppl', fitness: -1, fidelity: 'full', tokens: 512, cached: false, ms: 100 })}\n`;
  writeFileSync(join(dir, RUN_FILES.evals), [0, 1, 2].map(line).join(''));
  writeFileSync(
    join(dir, RUN_FILES.generations),
    `${JSON.stringify({ generation: 0, bestFitness: -1, bestQuality: 5, bestSparsity: 0.25, meanFitness: -1, evaluations: 3, best: { genome: '1011', fitness: -1, quality: 5, sparsity: 0.25 } })}\n`,
  );
  return dir;
}

/** A workers.json as the search writes it: 10 s watched, two workers. */
function workersJson(label: string, done = 40) {
  return {
    version: 1,
    label,
    started: '2026-12-07T14:00:00.000Z',
    updated: '2026-12-07T14:00:10.000Z',
    seconds: 10,
    waiting: 3,
    active: 2,
    done,
    failed: 1,
    workers: [
      { id: 'worker 1', evaluations: 25, busyMs: 8000 },
      { id: 'worker 2', evaluations: done - 25, busyMs: 6500 },
    ],
  };
}

describe('the run view', () => {
  test('carries workers.json while it exists and reads as one, its rates worked out', async () => {
    const dir = runDir();
    const w = watchRun(dir);
    const first = await w.refresh();
    assert.equal(first?.kind, 'snapshot');
    assert.equal(w.snapshot().meta.workers, null);

    writeFileSync(join(dir, RUN_FILES.workers), JSON.stringify(workersJson('2 worker processes')));
    const change = await w.refresh();
    assert.equal(change?.kind, 'append');
    // By hand: 25 evaluations in 10 s = 2.5/s, busy 8 s of 10 = 0.8; 15 in 10 s = 1.5/s, 6.5 of 10 = 0.65.
    assert.deepEqual(w.snapshot().meta.workers, {
      label: '2 worker processes',
      waiting: 3,
      active: 2,
      done: 40,
      failed: 1,
      seconds: 10,
      workers: [
        { id: 'worker 1', evaluations: 25, perSecond: 2.5, busy: 0.8 },
        { id: 'worker 2', evaluations: 15, perSecond: 1.5, busy: 0.65 },
      ],
    });
    // Rewritten (the search writes it again as it scores): the view follows.
    writeFileSync(join(dir, RUN_FILES.workers), JSON.stringify(workersJson('2 worker processes', 45)));
    assert.equal((await w.refresh())?.kind, 'append');
    assert.equal(w.snapshot().meta.workers?.done, 45);
    assert.equal(w.snapshot().meta.workers?.workers[1].perSecond, 2);
    // Nothing changed: nothing to send.
    assert.equal(await w.refresh(), undefined);

    // A file that does not read as one (another version) shows no panel; gone, none either.
    writeFileSync(join(dir, RUN_FILES.workers), JSON.stringify({ ...workersJson('x'), version: 9 }));
    await w.refresh();
    assert.equal(w.snapshot().meta.workers, null);
    writeFileSync(join(dir, RUN_FILES.workers), JSON.stringify(workersJson('back')));
    await w.refresh();
    assert.equal(w.snapshot().meta.workers?.label, 'back');
    rmSync(join(dir, RUN_FILES.workers));
    await w.refresh();
    assert.equal(w.snapshot().meta.workers, null);
  });

  test('no time watched yet: no rate rather than a division by zero', async () => {
    const dir = runDir();
    writeFileSync(join(dir, RUN_FILES.workers), JSON.stringify({ ...workersJson('w'), seconds: 0 }));
    const w = watchRun(dir);
    await w.refresh();
    assert.deepEqual(
      w.snapshot().meta.workers?.workers.map((x) => [x.perSecond, x.busy]),
      [
        [null, null],
        [null, null],
      ],
    );
  });
});

const skipBrowser = existsSync(CHROMIUM)
  ? false
  : `needs Chromium at ${CHROMIUM} (sudo apt-get install -y chromium, or set GENEPRUNE_CHROMIUM)`;

describe('the page', { skip: skipBrowser }, () => {
  test('shows the workers panel from workers.json and leaves it out without one', {
    timeout: 120_000,
  }, async () => {
    const { chromium } = await import('playwright-core');
    const withFile = runDir();
    writeFileSync(join(withFile, RUN_FILES.workers), JSON.stringify(workersJson(`2 workers ${HOSTILE}`)));
    const without = runDir();
    const browser = await chromium.launch({ executablePath: CHROMIUM });
    const servers = [
      await startDashboard({ runDir: withFile, pollMs: 20 }),
      await startDashboard({ runDir: without, pollMs: 20 }),
    ];
    try {
      const page = await browser.newPage();
      const errors: string[] = [];
      page.on('pageerror', (e) => errors.push(e.message));
      await page.goto(servers[0].url);
      await page.waitForSelector('#workers-panel:not([hidden])', { timeout: 30_000 });
      assert.ok(await page.isVisible('#workers-panel'));
      assert.equal(await page.textContent('#workers-about'), `2 workers ${HOSTILE} · 2 workers · 10.0 s`);
      const jobs = await page.$$eval('#workers-jobs [data-jobs]', (els) =>
        els.map((e) => [e.getAttribute('data-jobs'), e.textContent]),
      );
      assert.deepEqual(jobs, [
        ['waiting', '3'],
        ['active', '2'],
        ['done', '40'],
        ['failed', '1'],
      ]);
      const rows = await page.$$eval('#workers-table tbody tr', (trs) =>
        trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent)),
      );
      assert.deepEqual(rows, [
        ['worker 1', '25', '2.50', '80 %'],
        ['worker 2', '15', '1.50', '65 %'],
      ]);
      assert.equal(await page.evaluate('window.pwned'), undefined);
      assert.equal(await page.locator('#workers-panel img').count(), 0);

      // The file removed while the page is open: the panel goes.
      rmSync(join(withFile, RUN_FILES.workers));
      await page.waitForSelector('#workers-panel', { state: 'hidden', timeout: 30_000 });
      assert.equal(await page.locator('#workers-table tbody tr').count(), 0);

      // A run that never had the file: no panel at all.
      const other = await browser.newPage();
      other.on('pageerror', (e) => errors.push(e.message));
      await other.goto(servers[1].url);
      await other.waitForFunction("document.getElementById('status').textContent !== 'connecting'");
      await other.waitForFunction("document.getElementById('evaluations').textContent === '3'");
      assert.equal(await other.isVisible('#workers-panel'), false);
      assert.equal(await other.locator('#workers-table tbody tr').count(), 0);
      assert.deepEqual(errors, []);
    } finally {
      for (const s of servers) await s.close();
      await browser.close();
    }
  });
});
