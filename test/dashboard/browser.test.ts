/**
 * The dashboard as a user sees it: `geneprune heads ... --dashboard 0` on the real stories260K, its page opened
 * in headless Chromium while the search runs. The generation counter advances and points are added to the plot
 * as evaluations arrive; the run's name (a hostile one) is shown as text; the process stops cleanly on SIGINT.
 * A screenshot of the finished run is left in test/dashboard/screenshots/ (ignored by git) to look at.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { spawnCli } from '../helpers/cli.js';
import { CALIB, EVAL, REPO_ROOT, sharedPath, skipUnlessShared } from '../shared.js';

const CHROMIUM = process.env.GENEPRUNE_CHROMIUM ?? '/usr/bin/chromium';
const skip =
  skipUnlessShared(CALIB, EVAL) ||
  (existsSync(CHROMIUM)
    ? false
    : `needs Chromium at ${CHROMIUM} (sudo apt-get install -y chromium, or set GENEPRUNE_CHROMIUM)`);

const work = mkdtempSync(join(tmpdir(), 'geneprune-dashboard-browser-'));
after(() => rmSync(work, { recursive: true, force: true }));

/** Resolves with the URL the CLI prints on stderr. */
function dashboardUrl(child: ChildProcess, stderr: { text: string }): Promise<string> {
  return new Promise((resolve, reject) => {
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (d: string) => {
      stderr.text += d;
      const m = /dashboard: (http:\/\/127\.0\.0\.1:\d+\/)/.exec(stderr.text);
      if (m) resolve(m[1]);
    });
    child.on('exit', (code) =>
      reject(new Error(`geneprune exited (${code}) before serving: ${stderr.text}`)),
    );
  });
}

test('the page follows a running head search', { skip, timeout: 240_000 }, async () => {
  const { chromium } = await import('playwright-core');
  const name = '<script>x<img src=x onerror=window.pwned=1>';
  const out = join(work, name);
  const child = spawnCli(
    [
      'heads',
      ...['--calib', sharedPath(CALIB)!, '--eval', sharedPath(EVAL)!],
      ...['--target-sparsity', '0.25', '--population', '6', '--generations', '12'],
      ...['--calib-tokens', '4096', '--eval-tokens', '512', '--out', out, '--dashboard', '0'],
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const stderr = { text: '' };
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })),
  );
  const browser = await chromium.launch({ executablePath: CHROMIUM });
  try {
    const url = await dashboardUrl(child, stderr);
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(url);
    // Sample the counter and the plotted points until the run has finished.
    const seen: Array<{ done: number; points: number }> = [];
    const until = Date.now() + 180_000;
    for (;;) {
      const doneText = (await page.textContent('#done')) ?? '';
      const points = await page.locator('#scatter svg .mark-symbol path').count();
      const status = await page.textContent('#status');
      const done = Number(/^(\d+)/.exec(doneText)?.[1] ?? Number.NaN);
      if (status === 'running' && Number.isFinite(done)) seen.push({ done, points });
      if (status === 'finished') break;
      assert.ok(Date.now() < until, `the run did not finish: ${stderr.text}`);
      await page.waitForTimeout(150);
    }
    const dones = new Set(seen.map((s) => s.done));
    assert.ok(dones.size >= 3, `the generation counter advanced while running: ${[...dones].join(', ')}`);
    assert.ok(
      seen.at(-1)!.points > seen[0].points,
      `points were added while running: ${seen[0].points} → ${seen.at(-1)!.points}`,
    );
    assert.equal(await page.textContent('#done'), '12 / 12');
    // Browser-side expressions as text: this project's TypeScript has no DOM types.
    await page.waitForFunction("document.querySelectorAll('#scatter svg .mark-symbol path').length >= 12");
    // The hostile run name is shown as text, and nothing in it ran.
    assert.equal(await page.textContent('#name'), name);
    assert.equal(await page.evaluate('typeof window.pwned'), 'undefined');
    assert.equal(await page.locator('#name img, #name script').count(), 0);
    assert.equal(await page.locator('#grid .cell').count(), 40, 'the mask grid: 5 layers × 8 heads');
    assert.equal(await page.locator('#grid .cell.removed').count(), 10);
    assert.deepEqual(errors, []);
    // A reload shows the same run.
    await page.reload();
    await page.waitForFunction("document.getElementById('status').textContent === 'finished'");
    assert.equal(await page.textContent('#done'), '12 / 12');
    const shots = join(REPO_ROOT, 'test/dashboard/screenshots');
    mkdirSync(shots, { recursive: true });
    await page.screenshot({ path: join(shots, 'heads-finished.png'), fullPage: true });
    // The run has printed its result and still serves the page; SIGINT stops it cleanly.
    assert.match(stderr.text, /the run has finished; still serving/);
    child.kill('SIGINT');
    const end = await exited;
    assert.deepEqual(end, { code: 0, signal: null }, stderr.text);
  } finally {
    await browser.close();
    child.kill('SIGKILL');
  }
});

test('the page follows a running ga-wanda weight search as its progress line does', {
  skip,
  timeout: 240_000,
}, async () => {
  const { chromium } = await import('playwright-core');
  const out = join(work, 'ga-wanda');
  const child = spawnCli(
    [
      'weights',
      ...['--calib', sharedPath(CALIB)!, '--eval', sharedPath(EVAL)!],
      ...['--method', 'ga-wanda', '--sparsity', '0.5', '--population', '4', '--generations', '6'],
      ...['--calib-tokens', '4096', '--eval-tokens', '512', '--out', out, '--dashboard', '0'],
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const stderr = { text: '' };
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })),
  );
  const browser = await chromium.launch({ executablePath: CHROMIUM });
  try {
    const url = await dashboardUrl(child, stderr);
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(url);
    // The CLI's line: ga-wanda · block b/L, generation g/G · best … · R evals/s · ETA 34s (or 1m05s).
    const LINE = /^ga-wanda · block (\d+)\/(\d+), generation (\d+)\/(\d+) · .* · ETA (?:(\d+)m)?(\d+)s$/;
    let agreed = 0;
    let provisionalInFirstBlock = 0;
    const until = Date.now() + 180_000;
    for (;;) {
      // One evaluation in the page: the counters, the line and the plot as they stand together.
      const shown = (await page.evaluate(`(() => {
        const t = (id) => document.getElementById(id).textContent;
        return { status: t('status'), done: t('done'), step: t('step'), stepHidden: document.getElementById('step-box').hidden,
          eta: t('eta'), elapsed: t('elapsed'), live: t('live'), title: t('progress-title'),
          best: document.querySelectorAll('#progress svg .mark-symbol path').length };
      })()`)) as Record<string, string | number | boolean>;
      const m = LINE.exec(String(shown.live));
      if (shown.status === 'running' && m) {
        assert.equal(shown.stepHidden, false);
        assert.equal(shown.done, `${m[1]} / ${m[2]}`, String(shown.live));
        assert.equal(shown.step, `${m[3]} / ${m[4]}`, String(shown.live));
        // The page writes '12.3 s', '1 min 51 s' or '2 h 5 min'; the line rounds to whole seconds.
        const [, h, min, sec] =
          /^(?:(\d+) h )?(?:(\d+) min ?)?(?:([\d.]+) s)?$/.exec(String(shown.eta)) ?? [];
        const eta = Number(h ?? 0) * 3600 + Number(min ?? 0) * 60 + Number(sec ?? 0);
        const within = h ? 60 : 1;
        const lineEta = Number(m[5] ?? 0) * 60 + Number(m[6]);
        assert.ok(Math.abs(eta - lineEta) <= within, `ETA ${shown.eta} beside ${shown.live}`);
        assert.notEqual(shown.elapsed, '0.0 s');
        if (m[1] === '1') {
          // No block has finished: the plot's one point is the first block's best so far.
          assert.equal(shown.best, 1);
          assert.match(String(shown.title), /best so far/);
          provisionalInFirstBlock++;
        }
        agreed++;
      }
      if (shown.status === 'finished') break;
      assert.ok(Date.now() < until, `the run did not finish: ${stderr.text}`);
      await page.waitForTimeout(150);
    }
    assert.ok(agreed >= 3, `the page agreed with the line ${agreed} times`);
    assert.ok(provisionalInFirstBlock > 0, 'the first block was seen with its best so far plotted');
    assert.equal(await page.textContent('#done'), '5 / 5');
    assert.equal(await page.isHidden('#step-box'), true);
    // Every candidate plotted against its generation in the block (their sparsity is one and the same).
    await page.waitForFunction(
      "document.querySelectorAll('#scatter svg .mark-symbol path').length === 5 * (4 + 6 * 4)",
    );
    assert.match((await page.textContent('#scatter svg')) ?? '', /generation within the block/);
    assert.equal(await page.locator('#progress svg .mark-symbol path').count(), 5);
    assert.deepEqual(errors, []);
    const shots = join(REPO_ROOT, 'test/dashboard/screenshots');
    mkdirSync(shots, { recursive: true });
    await page.screenshot({ path: join(shots, 'weights-finished.png'), fullPage: true });
    child.kill('SIGINT');
    assert.deepEqual(await exited, { code: 0, signal: null }, stderr.text);
  } finally {
    await browser.close();
    child.kill('SIGKILL');
  }
});
