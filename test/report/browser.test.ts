/**
 * A report of real short runs, opened in headless Chromium (Debian's `chromium`, driven by playwright-core):
 * every figure is there with as many drawn points as the run files hold (counted here from the raw files), the
 * page makes no request beyond itself, a run named `<script>alert(1)` shows as text, and screenshots are saved
 * ($GENEPRUNE_SCREENSHOTS, else a folder in the test's temporary directory) for a person to look at.
 * Skipped with a message when Chromium or the shared model is absent.
 */
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { chromium } from 'playwright-core';
import { MARK_NAMES } from '../../src/report/specs.js';
import { runCli } from '../helpers/cli.js';
import { CALIB, EVAL, MODEL, skipUnlessShared } from '../shared.js';
import { makeShortRuns, type ShortRuns } from './runs.js';

const CHROMIUM = process.env.GENEPRUNE_CHROMIUM ?? '/usr/bin/chromium';
const skip =
  skipUnlessShared(MODEL, CALIB, EVAL) ||
  (existsSync(CHROMIUM)
    ? false
    : `needs Chromium at ${CHROMIUM} (Debian: apt-get install chromium; or set GENEPRUNE_CHROMIUM), which is absent`);

const jsonl = (path: string) =>
  existsSync(path)
    ? readFileSync(path, 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l))
    : [];
const json = (path: string) => JSON.parse(readFileSync(path, 'utf8'));

describe('report in headless Chromium', { skip }, () => {
  let runs: ShortRuns;
  let hostile: string;
  let html: string;
  let shots: string;
  before(async () => {
    runs = await makeShortRuns();
    // A run whose name is markup: it must show as text.
    hostile = join(runs.root, '<script>alert(1)');
    cpSync(runs.ga, hostile, { recursive: true });
    shots = process.env.GENEPRUNE_SCREENSHOTS ?? join(runs.root, 'screenshots');
    mkdirSync(shots, { recursive: true });
    html = join(runs.root, 'report.html');
    const r = runCli(
      [
        'report',
        runs.ga,
        runs.nsga,
        runs.ablation,
        runs.wanda,
        runs.gaWeights,
        hostile,
        '--bench',
        '--bench-runs',
        '3',
        '--out',
        html,
        '--json',
      ],
      { timeout: 300_000 },
    );
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).out, html);
  });

  test('every figure is present with one drawn mark per point, and nothing is fetched', async (t) => {
    const headRuns = [runs.ga, runs.nsga, runs.ablation, hostile];
    const weightRuns = [runs.wanda, runs.gaWeights];
    const all = [...headRuns, ...weightRuns];
    const name = (dir: string) => dir.slice(dir.lastIndexOf('/') + 1);
    // What each figure should draw, from the run files alone.
    const expected: Array<{ kind: string; run?: string; mark: string; points: number }> = [
      { kind: 'speedup-proxy', mark: MARK_NAMES.speedup, points: all.length },
      {
        kind: 'speedup-measured',
        mark: MARK_NAMES.speedup,
        points: headRuns.filter((d) => existsSync(join(d, 'bench.json'))).length,
      },
      {
        kind: 'layer-sparsity',
        mark: MARK_NAMES.layerSparsity,
        points: weightRuns.reduce((a, d) => a + json(join(d, 'result.json')).layers.length, 0),
      },
      {
        kind: 'quality-vs-sparsity',
        run: name(runs.gaWeights),
        mark: MARK_NAMES.individuals,
        points: jsonl(join(runs.gaWeights, 'evals.jsonl')).filter((e) => e.quality !== null).length,
      },
    ];
    for (const dir of [runs.ga, hostile]) {
      const evals = jsonl(join(dir, 'evals.jsonl')).filter((e) => e.quality !== null);
      const gens = jsonl(join(dir, 'generations.jsonl')).length;
      expected.push({
        kind: 'quality-vs-sparsity',
        run: name(dir),
        mark: MARK_NAMES.individuals,
        points: evals.length,
      });
      expected.push({
        kind: 'generations',
        run: name(dir),
        mark: MARK_NAMES.generationSparsity,
        points: 3 * gens,
      });
      expected.push({
        kind: 'generations',
        run: name(dir),
        mark: MARK_NAMES.generationFitness,
        points: 2 * gens,
      });
    }
    expected.push({
      kind: 'pareto',
      run: 'nsga',
      mark: MARK_NAMES.archive,
      points: jsonl(join(runs.nsga, 'evals.jsonl')).length,
    });
    expected.push({
      kind: 'pareto',
      run: 'nsga',
      mark: MARK_NAMES.front,
      points: json(join(runs.nsga, 'front.json')).length,
    });
    for (const dir of headRuns) {
      const heads = json(join(dir, 'config.json')).model.shape.queryHeads.reduce(
        (a: number, b: number) => a + b,
        0,
      );
      expected.push({ kind: 'head-mask', run: name(dir), mark: MARK_NAMES.headMask, points: heads });
    }
    assert.equal(
      expected.find((e) => e.kind === 'speedup-measured')!.points,
      4,
      '--bench measured every head run',
    );

    const browser = await chromium.launch({ executablePath: CHROMIUM });
    try {
      const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
      const fetched: string[] = [];
      await page.route('**/*', (route) => {
        const url = route.request().url();
        if (url.startsWith('file:')) return route.continue();
        fetched.push(url);
        return route.abort();
      });
      await page.goto(`file://${html}`);
      assert.deepEqual(fetched, [], 'the page asked for nothing outside itself');
      assert.equal(await page.locator('script').count(), 0, 'no script element');
      const figureCount = await page.locator('figure.plot').count();
      // Speedup proxy, measured speedup, layer sparsity; quality-vs-sparsity and generations of the two GA head
      // runs; the Pareto front; a head mask per head run; the weight GA's candidates.
      assert.equal(figureCount, 3 + 2 * 2 + 1 + headRuns.length + 1, 'figures on the page');
      for (const e of expected) {
        const ofKind = page.locator(`figure.plot[data-kind="${e.kind}"]`);
        const scoped = e.run === undefined ? ofKind : ofKind.and(page.locator(`[data-run="${e.run}"]`));
        assert.equal(await scoped.count(), 1, `one ${e.kind} figure${e.run ? ` of ${e.run}` : ''}`);
        const svg = scoped.locator('svg');
        const box = await svg.boundingBox();
        assert.ok(box && box.width > 100 && box.height > 80, `${e.kind} SVG is laid out`);
        const drawn = await scoped.locator(`g.role-mark.${e.mark}_marks > path`).count();
        assert.equal(drawn, e.points, `${e.kind}${e.run ? ` (${e.run})` : ''}: ${e.mark} points`);
      }
      // The hostile name is text in the table and the headings.
      const cells = await page.locator('table.methods td b').allTextContents();
      assert.ok(cells.includes('<script>alert(1)'), `run names in the table: ${cells.join(', ')}`);
      // Calibration and evaluation data are named.
      const text = await page.locator('body').innerText();
      assert.ok(text.includes(json(join(runs.ga, 'config.json')).calibration.path));
      assert.ok(text.includes(json(join(runs.ga, 'config.json')).evaluation.path));
      await page.screenshot({ path: join(shots, 'report-full.png'), fullPage: true });
      await page
        .locator('figure.plot[data-kind="speedup-proxy"]')
        .screenshot({ path: join(shots, 'speedup-proxy.png') });
      await page
        .locator('figure.plot[data-kind="quality-vs-sparsity"][data-run="ga-sos"]')
        .screenshot({ path: join(shots, 'quality-vs-sparsity.png') });
      await page.locator('figure.plot[data-kind="pareto"]').screenshot({ path: join(shots, 'pareto.png') });
      await page
        .locator('figure.plot[data-kind="quality-vs-sparsity"][data-run="ga-magnitude"]')
        .screenshot({ path: join(shots, 'weights-candidates.png') });
      t.diagnostic(`screenshots in ${shots}`);
    } finally {
      await browser.close();
    }
  });
});
