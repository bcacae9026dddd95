/**
 * `--method evopress` and `--method nsga` over structured genomes (spaces/structured/algorithms.ts), on a tiny
 * random LLaMA (test/helpers/tinylm.ts): budgets held by every individual, the same seed giving the same result,
 * a resumed run equal to an uninterrupted one, EvoPress never worse than its start and its reported quality equal
 * to an independent re-score, and NSGA-II's front checked against a plain pairwise reference.
 */
import assert from 'node:assert/strict';
import { appendFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createRunner } from '../../src/engine/runner.js';
import { fullPlan, layerShapes, type StructuredPlan, structuredMasksOf } from '../../src/masks/structured.js';
import { loadStructuredPlanFile } from '../../src/masks/structuredfile.js';
import { readDataset } from '../../src/metrics/data.js';
import { evaluatePerplexity, makeWindows, tokenizeDocuments } from '../../src/metrics/perplexity.js';
import { forwardFlopsPerToken, parameterCount } from '../../src/model/cost.js';
import { openModel } from '../../src/model/open.js';
import { randomLlamaSpec } from '../../src/model/random.js';
import { pruneStructured } from '../../src/prune/structured.js';
import { evoPressStart } from '../../src/spaces/structured/algorithms.js';
import { priceBudget } from '../../src/spaces/structured/budget.js';
import {
  resumeStructuredSearch,
  runStructuredSearch,
  type StructuredSearchResult,
} from '../../src/spaces/structured/run.js';
import { structuredSearchSettings } from '../../src/spaces/structured/settings.js';
import { createStructuredSpace } from '../../src/spaces/structured/space.js';
import { createRng } from '../../src/util/rng.js';
import { writeTinyModel } from '../helpers/tinylm.js';

const tmp = mkdtempSync(join(tmpdir(), 'geneprune-structured-algorithms-'));
after(() => (process.env.KEEP ? console.log(tmp) : rmSync(tmp, { recursive: true, force: true })));

const words = ['the', 'cat', 'dog', 'sat', 'at', 'a', 'cab', 'ab', 'bed', 'mat', 'ran', 'on'];
function text(seed: number, lines: number): string {
  let x = seed;
  const next = () => {
    x = (x * 1103515245 + 12345) % 2147483648;
    return x;
  };
  return Array.from({ length: lines }, () =>
    Array.from({ length: 8 }, () => words[next() % words.length]).join(' '),
  ).join('\n<|endoftext|>\n');
}

let paths: { model: string; tokenizer: string; calib: string; eval: string };
let total = 0;
before(async () => {
  const { model, tokenizer, spec } = await writeTinyModel(tmp, 5);
  total = parameterCount(spec);
  const calib = join(tmp, 'calib');
  const evalDir = join(tmp, 'eval');
  mkdirSync(calib);
  mkdirSync(evalDir);
  writeFileSync(join(calib, 'a.txt'), text(1, 60));
  writeFileSync(join(evalDir, 'b.txt'), text(2, 30));
  paths = { model, tokenizer, calib, eval: evalDir };
});

const settings = (extra: Record<string, unknown> = {}) =>
  structuredSearchSettings({
    ...paths,
    budget: 'params:0.8',
    widthStep: 16,
    metric: 'ppl',
    population: 6,
    generations: 4,
    calibTokens: 256,
    scoreTokens: 256,
    evalTokens: 256,
    context: 32,
    ...extra,
  });

const logged = (dir: string, file = 'evals.jsonl') =>
  readFileSync(join(dir, file), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
const lines = (dir: string) =>
  logged(dir).map((e) => `${e.generation} ${e.fidelity} ${e.genome} ${e.quality}`);

/** Appends the uninterrupted run's first evaluation of generation 2 to a run stopped after generation 1. */
function tornGeneration(dir: string, uninterrupted: string): void {
  const line = readFileSync(join(uninterrupted, 'evals.jsonl'), 'utf8')
    .split('\n')
    .find((l) => l !== '' && JSON.parse(l).generation === 2);
  assert.ok(line);
  appendFileSync(join(dir, 'evals.jsonl'), `${line}\n`);
}

/** The calibration perplexity of a plan, measured afresh: the run's windows through a runner fed its masks. */
async function rescore(r: StructuredSearchResult): Promise<number> {
  const model = await openModel(paths.model, { tokenizer: paths.tokenizer });
  const stream = tokenizeDocuments((await readDataset(paths.calib)).documents, model.tokenizer);
  const runner = await createRunner(model.spec, { output: 'nll', structuredMasks: true });
  try {
    const { perplexity } = await evaluatePerplexity(runner, makeWindows(stream, 32, 256), {
      masks: structuredMasksOf(model.spec.config, r.plan),
    });
    return perplexity;
  } finally {
    await runner.release();
  }
}

describe('structured --method evopress', () => {
  let first: StructuredSearchResult;
  before(async () => {
    first = await runStructuredSearch(join(tmp, 'evo-a'), settings({ method: 'evopress', offspring: 4 }));
  });

  it('holds the budget for every child, never ends worse than its start, and reports what a re-score gives', async () => {
    const limit = 0.8 * total;
    assert.equal(first.budget.limit, limit);
    const evals = logged(first.runDir);
    // Generation 0: the start (the uniform plan only, no seeds); then 4 children a generation, at full fidelity.
    assert.deepEqual(
      [0, 1, 2, 3].map((g) => evals.filter((e) => e.generation === g).length),
      [1, 4, 4, 4],
    );
    for (const e of evals) assert.ok(e.keptParameters <= limit, `${e.genome} keeps ${e.keptParameters}`);
    const start = evals[0].quality;
    assert.ok(first.calib.quality <= start, `${first.calib.quality} > start ${start}`);
    // The parent after each generation is the best full score seen so far (strict improvement only).
    const gens = logged(first.runDir, 'generations.jsonl');
    let best = start;
    for (const g of gens) {
      const scored = evals.filter((e) => e.generation === g.generation).map((e) => e.quality);
      if (Math.min(...scored) < best) best = Math.min(...scored);
      assert.equal(g.parentQuality, best, `generation ${g.generation}`);
    }
    assert.equal(first.calib.quality, best);
    const again = await rescore(first);
    assert.ok(Math.abs(again - first.calib.quality) < 1e-6 * again, `${again} vs ${first.calib.quality}`);
    assert.ok(first.keptParameters <= limit);
    const file = await loadStructuredPlanFile(
      first.planFile,
      (await openModel(paths.model, { tokenizer: paths.tokenizer })).spec,
    );
    assert.deepEqual(file.plan, first.plan);
  });

  it('gives the same result for the same seed', async () => {
    const again = await runStructuredSearch(
      join(tmp, 'evo-b'),
      settings({ method: 'evopress', offspring: 4 }),
    );
    assert.equal(again.genome, first.genome);
    assert.equal(again.calib.quality, first.calib.quality);
    assert.deepEqual(lines(again.runDir), lines(first.runDir));
  });

  it('resumes a run stopped after a generation to exactly the uninterrupted result', async () => {
    const dir = join(tmp, 'evo-c');
    await assert.rejects(
      runStructuredSearch(dir, settings({ method: 'evopress', offspring: 4 }), {
        onGeneration: (s) => {
          if (s.generation === 1) throw new Error('stopped');
        },
      }),
      /stopped/,
    );
    assert.equal(JSON.parse(readFileSync(join(dir, 'state.json'), 'utf8')).evopress.generation, 1);
    // A generation cut short by a kill: its first evaluation logged after the state was saved.
    tornGeneration(dir, first.runDir);
    const resumed = await resumeStructuredSearch(dir);
    assert.equal(resumed.resumed, true);
    assert.equal(resumed.genome, first.genome);
    assert.equal(resumed.calib.quality, first.calib.quality);
    assert.equal(resumed.eval.perplexity, first.eval.perplexity);
    assert.deepEqual(lines(dir), lines(first.runDir));
  });

  it('with --low-tokens scores every child cheaply and promotes the best on all tokens', async () => {
    const r = await runStructuredSearch(
      join(tmp, 'evo-mf'),
      settings({ method: 'evopress', offspring: 4, lowTokens: 96, promote: 2 }),
    );
    const evals = logged(r.runDir);
    for (const g of [1, 2, 3]) {
      const low = evals.filter((e) => e.generation === g && e.fidelity === 'low');
      const full = evals.filter((e) => e.generation === g && e.fidelity === 'full');
      assert.equal(low.length, 4);
      assert.equal(full.length, 2);
      // The promoted are the two best on the cheap pass (ties: the earlier child).
      const order = low
        .map((e) => ({ q: e.quality, i: e.index }))
        .sort((a, b) => a.q - b.q || a.i - b.i)
        .slice(0, 2)
        .map((x) => x.i)
        .sort((a, b) => a - b);
      assert.deepEqual(
        full.map((e) => e.index),
        order,
      );
    }
    assert.ok(r.calib.quality <= evals[0].quality);
  });
});

/** Plain reference: a dominates b when no worse in both and better in one (both minimised). */
const dominates = (a: { quality: number; cost: number }, b: { quality: number; cost: number }) =>
  a.quality <= b.quality && a.cost <= b.cost && (a.quality < b.quality || a.cost < b.cost);

describe('structured --method nsga', () => {
  let first: StructuredSearchResult;
  before(async () => {
    first = await runStructuredSearch(join(tmp, 'nsga-a'), settings({ method: 'nsga', metric: 'kl' }));
  });

  it('keeps every individual within the budget and writes the non-dominated set of all it scored', () => {
    const limit = 0.8 * total;
    const evals = logged(first.runDir);
    for (const e of evals) {
      assert.ok(e.keptParameters <= limit, `${e.genome} keeps ${e.keptParameters}`);
      assert.equal(e.cost, e.keptParameters);
    }
    const front = JSON.parse(readFileSync(join(first.runDir, 'front.json'), 'utf8')) as Array<{
      genome: string;
      quality: number;
      cost: number;
      withinBudget: boolean;
      kept: { heads: number[] };
    }>;
    for (const a of front)
      for (const b of front) assert.ok(!dominates(a, b), `${a.genome} dominates ${b.genome}`);
    // The reference front of every logged point: those no other logged point dominates (one per objective pair).
    const ref = new Set(
      evals.filter((a) => !evals.some((b) => dominates(b, a))).map((e) => `${e.quality} ${e.cost}`),
    );
    assert.deepEqual(new Set(front.map((m) => `${m.quality} ${m.cost}`)), ref);
    assert.ok(front.length >= 2, 'the front spans more than one cost');
    assert.ok(new Set(evals.map((e) => e.cost)).size > 1, 'individuals at several costs, not one');
    // plan.json is the best-quality member within the budget.
    const within = front.filter((m) => m.cost <= limit);
    assert.ok(within.every((m) => m.withinBudget));
    const best = Math.min(...within.map((m) => m.quality));
    assert.equal(first.calib.quality, best);
    assert.ok(first.budget.cost <= limit);
    assert.equal(first.genome, within.find((m) => m.quality === best)!.genome);
  });

  it('gives the same result for the same seed, and a resumed run equals an uninterrupted one', async () => {
    const again = await runStructuredSearch(join(tmp, 'nsga-b'), settings({ method: 'nsga', metric: 'kl' }));
    assert.equal(again.genome, first.genome);
    assert.deepEqual(lines(again.runDir), lines(first.runDir));
    const dir = join(tmp, 'nsga-c');
    await assert.rejects(
      runStructuredSearch(dir, settings({ method: 'nsga', metric: 'kl' }), {
        onGeneration: (s) => {
          if (s.generation === 1) throw new Error('stopped');
        },
      }),
      /stopped/,
    );
    assert.equal(JSON.parse(readFileSync(join(dir, 'state.json'), 'utf8')).nsga.generation, 1);
    // A generation cut short by a kill: its first evaluation logged after the state was saved.
    tornGeneration(dir, first.runDir);
    const resumed = await resumeStructuredSearch(dir);
    assert.equal(resumed.resumed, true);
    assert.equal(resumed.genome, first.genome);
    assert.equal(resumed.calib.quality, first.calib.quality);
    assert.deepEqual(lines(dir), lines(first.runDir));
    assert.equal(
      readFileSync(join(dir, 'front.json'), 'utf8'),
      readFileSync(join(first.runDir, 'front.json'), 'utf8'),
    );
  });
});

describe('a FLOP budget', () => {
  it('is the cost both methods hold and NSGA-II minimises: FLOPs per token of the physically pruned model', async () => {
    const model = await openModel(paths.model, { tokenizer: paths.tokenizer });
    const flops = (plan: StructuredPlan) => forwardFlopsPerToken(pruneStructured(model.spec, plan), 32);
    const limit = 0.7 * forwardFlopsPerToken(model.spec, 32);
    for (const method of ['evopress', 'nsga']) {
      const r = await runStructuredSearch(
        join(tmp, `flops-${method}`),
        settings({ method, budget: 'flops:0.7', generations: 2, metric: 'kl' }),
      );
      assert.ok(Math.abs(r.budget.limit - limit) < 1e-6 * limit);
      assert.equal(r.budget.cost, flops(r.plan));
      for (const e of logged(r.runDir))
        assert.ok(e.cost <= r.budget.limit, `${method} ${e.genome}: ${e.cost}`);
      if (method === 'nsga') {
        const front = JSON.parse(readFileSync(join(r.runDir, 'front.json'), 'utf8'));
        for (const m of front) assert.equal(m.cost, flops(m.plan));
      }
    }
  });
});

describe("EvoPress's start", () => {
  const spec = randomLlamaSpec({
    hiddenSize: 16,
    numLayers: 3,
    numHeads: 4,
    numKvHeads: 2,
    intermediateSize: 32,
    vocabSize: 40,
    maxPositions: 32,
    seed: 3,
  });
  const all = parameterCount(spec);
  // Half the heads and half the channels in every layer, the first by index (the spaces' orders here).
  const half = fullPlan(spec.config);
  half.heads = half.heads.map(() => [0, 1]);
  half.channels = half.channels.map(() => Array.from({ length: 16 }, (_, j) => j));

  it('is the uniform plan itself where the space can express it, each seed repaired beside it', () => {
    const space = createStructuredSpace(spec, all, { kind: 'joint', widthStep: 8 });
    const cost = space.keptParametersOf(layerShapes(spec.config, half));
    // The limit is the plan's own cost: no level can be added, so the repair leaves the plan as it is.
    const budget = priceBudget(space, { kind: 'params', value: (cost + 0.5) / all }, { seq: 16 });
    const seed = space.full();
    const [uniform, seeded] = evoPressStart(space, budget, half, [seed], createRng(1));
    assert.deepEqual(space.plan(uniform), half);
    assert.ok(budget.cost(space.shapes(seeded)) <= budget.limit);
  });

  it('falls back to the uniform genome where it cannot (blocks only: no heads or channels to thin)', () => {
    const space = createStructuredSpace(spec, all, { kind: 'blocks' });
    const budget = priceBudget(space, { kind: 'params', value: 0.8 }, { seq: 16 });
    const [start] = evoPressStart(space, budget, half, [], createRng(1));
    const shapes = space.shapes(start);
    const dense = layerShapes(spec.config, fullPlan(spec.config));
    for (let i = 0; i < 3; i++) {
      if (shapes.attentionRuns[i]) assert.equal(shapes.heads[i], dense.heads[i]);
      if (shapes.mlpRuns[i]) assert.equal(shapes.widths[i], dense.widths[i]);
    }
    assert.ok(budget.cost(shapes) <= budget.limit);
    // Maximal: no skipped block could run again within the budget.
    for (let k = 0; k < start.length; k++) {
      if (start[k] === 1) continue;
      const up = start.slice();
      up[k] = 1;
      assert.ok(budget.cost(space.shapes(up)) > budget.limit, `block gene ${k} could run`);
    }
  });

  it('takes a --seed-plan plan as a candidate: a GA plan is scored in generation 0 and never lost', async () => {
    const ga = await runStructuredSearch(join(tmp, 'seed-ga'), settings({ population: 4, generations: 2 }));
    const evo = await runStructuredSearch(
      join(tmp, 'seed-evo'),
      settings({ method: 'evopress', offspring: 3, generations: 2, seedPlans: [ga.planFile] }),
    );
    const gen0 = logged(evo.runDir).filter((e) => e.generation === 0);
    assert.equal(gen0.length, 2);
    assert.equal(gen0[1].genome, ga.genome);
    assert.equal(gen0[1].quality, ga.calib.quality);
    assert.ok(evo.calib.quality <= Math.min(ga.calib.quality, gen0[0].quality));
  });
});

describe('structured algorithm settings', () => {
  it('refuses --offspring outside evopress and multi-fidelity with nsga, naming the flag', () => {
    assert.throws(
      () => settings({ method: 'ga', offspring: 4 }),
      /EvoPress's λ; --method ga has no offspring setting/,
    );
    assert.throws(
      () => settings({ method: 'nsga', lowTokens: 64 }),
      /NSGA-II scores every individual on all calibration tokens/,
    );
    assert.equal(settings({ method: 'evopress' }).offspring, 16);
    assert.equal(settings({ method: 'ga' }).offspring, undefined);
  });
});
