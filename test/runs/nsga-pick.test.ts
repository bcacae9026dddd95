/**
 * The dashboard shows the NSGA-II pick the run makes, at every generation: a small NSGA-II head run on the real
 * stories260K model, then the dashboard's view of its run directory as it stood after each generation (the log
 * cut after that generation's line, no mask.json yet). The expected pick is computed here from the run's
 * evals.jsonl alone, by the rule's definition: the non-dominated set of (quality, kept parameters) over every
 * mask scored so far, then the best quality among the points removing the target number of heads (else the
 * nearest size). It must equal the dashboard's pick, the generation's own line and, at the end, mask.json.
 */
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { watchRun } from '../../src/dashboard/watch.js';
import { searchHeads } from '../../src/index.js';
import { openModel } from '../../src/model/open.js';
import { RUN_FILES } from '../../src/runs/files.js';
import { createHeadSpace } from '../../src/spaces/heads/space.js';
import { CALIB, EVAL, MODEL, sharedPath, skipUnlessShared, TOKENIZER } from '../shared.js';

const skip = skipUnlessShared(MODEL, TOKENIZER, CALIB, EVAL);
const GENERATIONS = 4;
const TARGET = 0.25;

type Row = Record<string, unknown>;
const lines = (path: string): Row[] =>
  readFileSync(path, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l));
const zeros = (genome: string) => [...genome].filter((c) => c === '0').length;

interface Point {
  genome: string;
  quality: number;
  kept: number;
}

/** The pick by definition, over every distinct mask scored (`points`), at `target` removed heads. */
function referencePick(points: Point[], target: number): string {
  const finite = points.filter((p) => Number.isFinite(p.quality));
  const pool = finite.length > 0 ? finite : points;
  const dominated = (p: Point) =>
    pool.some(
      (q) => q.quality <= p.quality && q.kept <= p.kept && (q.quality < p.quality || q.kept < p.kept),
    );
  const front = pool.filter((p) => !dominated(p));
  const distance = Math.min(...front.map((p) => Math.abs(zeros(p.genome) - target)));
  const nearest = front.filter((p) => Math.abs(zeros(p.genome) - target) === distance);
  // Ties (equal quality) fall to fewer kept parameters, then the genome text.
  return nearest.sort((a, b) => a.quality - b.quality || a.kept - b.kept || (a.genome < b.genome ? -1 : 1))[0]
    .genome;
}

describe('the dashboard’s NSGA-II pick is the run’s, generation by generation', { skip }, () => {
  let root: string;
  let run: string;
  let maskKeep: string;
  let resultGenome: string;
  let keptOf: (genome: string) => number;
  before(async () => {
    root = mkdtempSync(join(tmpdir(), 'geneprune-nsga-pick-'));
    run = join(root, 'run');
    const r = await searchHeads({
      model: sharedPath(MODEL),
      tokenizer: sharedPath(TOKENIZER),
      calib: sharedPath(CALIB)!,
      eval: sharedPath(EVAL)!,
      method: 'nsga',
      population: 6,
      generations: GENERATIONS,
      targetSparsity: TARGET,
      calibTokens: 1024,
      evalTokens: 1024,
      seed: 11,
      threads: 1,
      out: run,
    });
    resultGenome = Array.from(r.genome).join('');
    maskKeep = (JSON.parse(readFileSync(join(run, RUN_FILES.mask), 'utf8')).keep as number[]).join('');
    // Kept parameters of a mask, from the head space (the run logs quality and genome, not the cost).
    const model = await openModel(sharedPath(MODEL), { tokenizer: sharedPath(TOKENIZER) });
    const total = Number(
      (JSON.parse(readFileSync(join(run, RUN_FILES.result), 'utf8')) as Row).totalParameters,
    );
    const space = createHeadSpace(model.spec.config, total);
    keptOf = (genome) => space.keptParameters(space.decode(genome)!);
  });
  after(() => rmSync(root, { recursive: true, force: true }));

  test('after each generation, and at the end', async () => {
    assert.equal(maskKeep, resultGenome);
    const evals = lines(join(run, RUN_FILES.evals));
    const generations = lines(join(run, RUN_FILES.generations));
    assert.equal(generations.length, GENERATIONS);
    const genes = maskKeep.length;
    const target = Math.round(TARGET * genes);
    for (let g = 0; g < GENERATIONS; g++) {
      const scored = evals
        .filter((e) => typeof e.generation === 'number' && e.generation <= g)
        .map((e) => ({
          genome: String(e.genome),
          quality: typeof e.quality === 'number' ? e.quality : Number.NaN,
          kept: keptOf(String(e.genome)),
        }));
      const expected = referencePick(scored, target);
      // The run directory as the dashboard saw it once generation g was logged.
      const view = join(root, `after-${g}`);
      cpSync(run, view, { recursive: true });
      for (const f of [RUN_FILES.mask, RUN_FILES.result, RUN_FILES.front]) rmSync(join(view, f));
      const logged = generations.slice(0, g + 1);
      writeFileSync(join(view, RUN_FILES.generations), logged.map((l) => `${JSON.stringify(l)}\n`).join(''));
      writeFileSync(
        join(view, RUN_FILES.evals),
        evals
          .filter((e) => (e.generation as number) <= g)
          .map((l) => `${JSON.stringify(l)}\n`)
          .join(''),
      );
      const w = watchRun(view);
      await w.refresh();
      const best = w.snapshot().meta.best;
      assert.equal(best?.from, 'search');
      assert.equal(best?.genome, expected, `generation ${g}: the dashboard's pick`);
      assert.equal((logged[g].best as Row).genome, expected, `generation ${g}: the run's line`);
    }
    assert.equal(
      referencePick(
        evals.map((e) => ({
          genome: String(e.genome),
          quality: typeof e.quality === 'number' ? e.quality : Number.NaN,
          kept: keptOf(String(e.genome)),
        })),
        target,
      ),
      maskKeep,
    );
    // Finished: the dashboard shows mask.json, the same mask.
    const f = watchRun(run);
    await f.refresh();
    assert.equal(f.snapshot().meta.best?.from, 'mask');
    assert.equal(f.snapshot().meta.best?.genome, maskKeep);
  });

  test('a line whose recorded best was edited still shows the pick the run made from its front', async () => {
    const view = join(root, 'edited');
    cpSync(run, view, { recursive: true });
    for (const f of [RUN_FILES.mask, RUN_FILES.result, RUN_FILES.front]) rmSync(join(view, f));
    const generations = lines(join(run, RUN_FILES.generations));
    const other = '1'.repeat(maskKeep.length);
    writeFileSync(
      join(view, RUN_FILES.generations),
      generations
        .map((l) => ({ ...l, best: { ...(l.best as Row), genome: other } }))
        .map((l) => `${JSON.stringify(l)}\n`)
        .join(''),
    );
    const w = watchRun(view);
    await w.refresh();
    assert.equal(w.snapshot().meta.best?.genome, maskKeep);
  });
});
