/**
 * An NSGA-II head run on the real stories260K model, seen from every side: its generations.jsonl has as many lines
 * as a GA's with the same flags, each with the best score; the run, the report and the dashboard show one pick,
 * the mask.json; the pick is the best front point at the target, and a run without one there says so on the
 * progress line, in the summary and in result.json; and `geneprune pick` turns front.json into the run's own
 * masks. Expected picks come from a plain reference of the rule written here from its definition.
 */
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { watchRun } from '../../src/dashboard/watch.js';
import { readRunForReport } from '../../src/index.js';
import { assertOneLineError, assertUnchanged, runCli, snapshot } from '../helpers/cli.js';
import { storiesArgs } from '../helpers/familycli.js';
import { CALIB, EVAL, MODEL, sharedPath, skipUnlessShared, TOKENIZER } from '../shared.js';

const skip = skipUnlessShared(MODEL, TOKENIZER, CALIB, EVAL);
const GENES = 40;

interface Point {
  genome: string;
  quality: number;
  sparsity: number;
  keptParameters?: number;
}

const json = (path: string) => JSON.parse(readFileSync(path, 'utf8'));
const lines = (path: string) =>
  readFileSync(path, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l));
const zeros = (genome: string) => [...genome].filter((c) => c === '0').length;
/** Sparsities are 1 − kept/genes in the files: equal to removed/genes up to rounding. */
const near = (a: number, b: number, what: string) =>
  assert.ok(Math.abs(a - b) < 1e-12, `${what}: ${a} vs ${b}`);
const keepText = (dir: string) => (json(join(dir, 'mask.json')).keep as number[]).join('');

/** The pick by its definition: the best quality among points removing `target` genes, else at the nearest size. */
function referencePick(front: Point[], target: number): Point {
  const size = (p: Point) => zeros(p.genome);
  const distance = Math.min(...front.map((p) => Math.abs(size(p) - target)));
  const pool = front.filter((p) => Math.abs(size(p) - target) === distance);
  return pool.reduce((a, b) => (b.quality < a.quality ? b : a));
}

function headArgs(out: string, extra: string[]): string[] {
  return [
    'heads',
    ...storiesArgs(),
    '--population',
    '6',
    '--generations',
    '3',
    '--calib-tokens',
    '1024',
    '--eval-tokens',
    '1024',
    '--seed',
    '7',
    '--out',
    out,
    ...extra,
  ];
}

/** Progress lines are printed one per update when GENEPRUNE_PROGRESS_INTERVAL is 0 (stderr is a pipe here). */
const everyLine = { env: { GENEPRUNE_PROGRESS_INTERVAL: '0' }, timeout: 300_000 };

describe('an NSGA-II run on stories260K, and its views', { skip }, () => {
  let root: string;
  let ga: string;
  let nsga: string;
  before(() => {
    root = mkdtempSync(join(tmpdir(), 'geneprune-nsga-'));
    ga = join(root, 'ga');
    nsga = join(root, 'nsga');
    const g = runCli(headArgs(ga, ['--target-sparsity', '0.25']), everyLine);
    assert.equal(g.code, 0, g.stderr);
    const n = runCli(headArgs(nsga, ['--method', 'nsga', '--target-sparsity', '0.25']), everyLine);
    assert.equal(n.code, 0, n.stderr);
  });
  after(() => rmSync(root, { recursive: true, force: true }));

  test('--generations 3 logs three generations, as the GA does, each with its best score: the pick so far', () => {
    const gaLines = lines(join(ga, 'generations.jsonl'));
    const nsgaLines = lines(join(nsga, 'generations.jsonl'));
    assert.equal(gaLines.length, 3);
    assert.equal(nsgaLines.length, gaLines.length);
    assert.deepEqual(
      nsgaLines.map((l) => l.generation),
      [0, 1, 2],
    );
    assert.deepEqual([...new Set(lines(join(nsga, 'evals.jsonl')).map((e) => e.generation))], [0, 1, 2]);
    for (const l of nsgaLines) {
      assert.ok(Number.isFinite(l.bestQuality), `generation ${l.generation}: bestQuality ${l.bestQuality}`);
      const expected = referencePick(l.front, 10);
      assert.equal(l.best.genome, expected.genome, `generation ${l.generation}`);
      assert.equal(l.bestQuality, expected.quality);
      near(l.bestSparsity, zeros(expected.genome) / GENES, 'bestSparsity');
    }
    // The last line's front is front.json, and its best is the mask the run wrote.
    const last = nsgaLines[nsgaLines.length - 1];
    assert.deepEqual(last.front, json(join(nsga, 'front.json')));
    assert.equal(last.best.genome, keepText(nsga));
    // Every front point is a logged mask with its logged score.
    const logged = new Map(lines(join(nsga, 'evals.jsonl')).map((e) => [e.genome, e.quality]));
    for (const p of last.front as Point[]) assert.equal(logged.get(p.genome), p.quality);
  });

  test('the report rings the run’s pick on its front: the mask.json', async () => {
    const r = await readRunForReport(nsga);
    const result = json(join(nsga, 'result.json'));
    const picked = r.front.filter((f) => f.picked);
    assert.equal(picked.length, 1);
    near(picked[0].sparsity, zeros(keepText(nsga)) / GENES, 'sparsity');
    assert.equal(picked[0].quality, result.calib.quality);
    assert.equal(result.genome, keepText(nsga));
    assert.deepEqual([...new Set(r.individuals.map((i) => i.generation))], [0, 1, 2]);
  });

  test('the dashboard shows the pick the run makes, while it runs and after', async () => {
    // The run as it was before its end: no mask.json, result.json or front.json yet.
    const running = join(root, 'running');
    cpSync(nsga, running, { recursive: true });
    for (const f of ['mask.json', 'result.json', 'front.json']) rmSync(join(running, f));
    const w = watchRun(running);
    await w.refresh();
    const s = w.snapshot();
    assert.equal(s.meta.done, 3);
    assert.equal(s.meta.total, 3);
    assert.equal(s.meta.best?.from, 'search');
    assert.equal(s.meta.best?.genome, keepText(nsga));
    const logged = lines(join(nsga, 'generations.jsonl'));
    assert.deepEqual(
      s.generations.map((g) => g.bestScore),
      logged.map((l) => l.bestQuality),
    );
    // Lines from before they carried the pick: the same rule on their front still gives the run's mask.
    const older = join(root, 'older');
    cpSync(running, older, { recursive: true });
    writeFileSync(
      join(older, 'generations.jsonl'),
      logged
        .map(({ best: _b, bestQuality: _q, bestSparsity: _s, ...rest }) => `${JSON.stringify(rest)}\n`)
        .join(''),
    );
    const o = watchRun(older);
    await o.refresh();
    assert.equal(o.snapshot().meta.best?.genome, keepText(nsga));
    // Finished: the mask itself.
    const f = watchRun(nsga);
    await f.refresh();
    assert.equal(f.snapshot().meta.best?.from, 'mask');
    assert.equal(f.snapshot().meta.best?.genome, keepText(nsga));
  });

  test('at the target: the best front point there; with none there it says so everywhere', () => {
    const front = json(join(nsga, 'front.json')) as Point[];
    const sizes = new Set(front.map((p) => zeros(p.genome)));
    // The target changes only the pick, never the search: the same seed gives the same front.
    const present = [...sizes].filter((k) => k > 0).sort((a, b) => a - b)[0];
    let absent = 1;
    while (sizes.has(absent)) absent++;
    assert.ok(present !== undefined && absent < GENES);

    const at = join(root, 'at-target');
    const ra = runCli(
      headArgs(at, ['--method', 'nsga', '--target-sparsity', String(present / GENES)]),
      everyLine,
    );
    assert.equal(ra.code, 0, ra.stderr);
    assert.deepEqual(json(join(at, 'front.json')), front);
    const resultAt = json(join(at, 'result.json'));
    assert.equal(resultAt.pickedAtTarget, true);
    assert.equal(resultAt.removed, present);
    assert.equal(keepText(at), referencePick(front, present).genome);
    assert.equal(resultAt.pick.warning, undefined);
    assert.doesNotMatch(ra.stdout, /WARNING/);

    const off = join(root, 'off-target');
    const ro = runCli(
      headArgs(off, ['--method', 'nsga', '--target-sparsity', String(absent / GENES)]),
      everyLine,
    );
    assert.equal(ro.code, 0, ro.stderr);
    const resultOff = json(join(off, 'result.json'));
    const expected = referencePick(front, absent);
    assert.equal(resultOff.pickedAtTarget, false);
    assert.equal(keepText(off), expected.genome);
    const words = `no front point removes ${absent}/${GENES} heads (the target); picked the nearest size, ${zeros(expected.genome)}/${GENES}`;
    assert.equal(resultOff.pick.warning, words);
    assert.match(ro.stdout, new RegExp(`^pick +WARNING: ${words.replace(/[()]/g, '\\$&')}`, 'm'));
    assert.match(ro.stderr, new RegExp(`^note: .*${words.replace(/[()]/g, '\\$&')}$`, 'm'));
    const progress = ro.stderr.split('\n').filter((l) => l.startsWith('nsga · '));
    assert.equal(progress.length, 3);
    assert.match(progress[2], new RegExp(`\\(no front point at the target ${absent}/${GENES} yet\\)`));
  });

  test('geneprune pick turns front.json into the run’s own masks, by target and by index', () => {
    const front = json(join(nsga, 'front.json')) as Point[];
    const own = readFileSync(join(nsga, 'mask.json'), 'utf8');
    const mask = json(join(nsga, 'mask.json'));
    const byTarget = join(root, 'pick-target.json');
    const r = runCli(['pick', nsga, '--pick', 'sparsity=0.25', '--out', byTarget]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(readFileSync(byTarget, 'utf8'), own);
    // The first, the last and the run's own point (each pick is a process of its own).
    const ownIndex = front.findIndex((p) => p.genome === mask.keep.join(''));
    const indices = [...new Set([0, ownIndex, front.length - 1])];
    assert.ok(ownIndex >= 0, "the run's mask is on its front");
    indices.forEach((i) => {
      const p = front[i];
      const out = join(root, `pick-${i}.json`);
      const ri = runCli(['pick', nsga, '--pick', String(i), '--out', out, '--json']);
      assert.equal(ri.code, 0, ri.stderr);
      assert.equal(JSON.parse(ri.stdout).frontIndex, i);
      const m = json(out);
      assert.equal(m.keep.join(''), p.genome);
      if (p.genome === mask.keep.join('')) {
        assert.equal(readFileSync(out, 'utf8'), own);
        return;
      }
      // The same file as the run writes, for this point: format, model, layout; its heads and its score.
      for (const key of ['format', 'version', 'model', 'geneOrder', 'numLayers', 'headsPerLayer'])
        assert.deepEqual(m[key], mask[key], key);
      const removed = [...p.genome].flatMap((c, g) => (c === '0' ? [`${Math.floor(g / 8)}:${g % 8}`] : []));
      assert.deepEqual(m.removed, removed);
      near(m.sparsity, zeros(p.genome) / GENES, 'sparsity');
      assert.equal(m.info.calibration.quality, p.quality);
      assert.equal(m.info.evaluation, undefined);
    });
    // A picked file is a mask eval accepts.
    const e = runCli([
      'eval',
      '--model',
      sharedPath(MODEL) ?? '',
      '--data',
      sharedPath(EVAL) ?? '',
      '--mask',
      join(root, 'pick-0.json'),
      '--max-tokens',
      '512',
    ]);
    assert.equal(e.code, 0, e.stderr);
  });

  test('pick refuses in one line and writes nothing', () => {
    const corruptMask = join(root, 'corrupt-mask');
    cpSync(nsga, corruptMask, { recursive: true });
    writeFileSync(join(corruptMask, 'mask.json'), '{"keep": [1, ');
    const corruptFront = join(root, 'corrupt-front');
    cpSync(nsga, corruptFront, { recursive: true });
    writeFileSync(
      join(corruptFront, 'front.json'),
      JSON.stringify([{ genome: '0101', quality: 1, sparsity: 0.5 }]),
    );
    const unfinished = join(root, 'unfinished');
    cpSync(nsga, unfinished, { recursive: true });
    rmSync(join(unfinished, 'front.json'));
    const before = snapshot(root);
    const out = join(root, 'refused.json');
    const cases: Array<[string[], string[]]> = [
      [
        ['pick', nsga, '--pick', '99', '--out', out],
        ['--pick', 'past the front'],
      ],
      [
        ['pick', nsga, '--pick', 'sparsity=2', '--out', out],
        ['--pick', 'share'],
      ],
      [
        ['pick', nsga, '--pick', 'best', '--out', out],
        ['--pick', 'sparsity=S'],
      ],
      [
        ['pick', nsga, '--out', out],
        ['--pick', 'required'],
      ],
      [
        ['pick', nsga, '--pick', '0'],
        ['--out', 'required'],
      ],
      [
        ['pick', ga, '--pick', '0', '--out', out],
        ['--pick', 'ga run'],
      ],
      [
        ['pick', nsga, '--pick', '0', '--out', join(nsga, 'mask.json')],
        ['mask.json', 'exists'],
      ],
      [
        ['pick', join(root, 'nowhere'), '--pick', '0', '--out', out],
        ['nowhere', 'does not exist'],
      ],
      [
        ['pick', corruptMask, '--pick', '0', '--out', out],
        ['mask.json', 'corrupt'],
      ],
      [
        ['pick', corruptFront, '--pick', '0', '--out', out],
        ['front.json', 'point 0'],
      ],
      [
        ['pick', unfinished, '--pick', '0', '--out', out],
        ['front.json', 'has not finished'],
      ],
    ];
    for (const [args, mentions] of cases) assertOneLineError(runCli(args), 'non-zero', ...mentions);
    assert.ok(!existsSync(out));
    assertUnchanged(root, before);
  });
});
