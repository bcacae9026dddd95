/**
 * BLEU as a search metric and as a report metric, on stories260K with tiny tasks:
 * - the objective's 'bleu' quality is −BLEU and equals `evaluateBleu` (its own session, its own head-mask path)
 *   on the same masks and items, at both fidelities; the fitness's normalised BLEU quality has the right sign;
 * - `heads --metric bleu` runs end to end (fitness from BLEU, −BLEU logged, BLEU in result.json), and the
 *   evaluation BLEU that result.json holds equals `evaluateBleu` with the run's mask.json;
 * - `weights --eval-task FILE` records dense and pruned BLEU equal to `evaluateBleu` with the run's weight mask,
 *   and `eval --task` prints that same BLEU;
 * - a missing, empty or unusable task, a task shared by calibration and evaluation, and sos with BLEU are refused
 *   in one line.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  buildContinuationTask,
  type EvalBleu,
  evaluateBleu,
  type GenerationTask,
  generationTaskJsonl,
  type HeadSearchResult,
  type OpenedModel,
  openModel,
  prepareGenerationTask,
  type WeightPruneResult,
} from '../../src/index.js';
import { headOfGene } from '../../src/masks/heads.js';
import { parameterCount } from '../../src/model/cost.js';
import { fitnessOf, normalisedQuality } from '../../src/search/fitness.js';
import { bleuOfQuality, createObjective } from '../../src/search/objective.js';
import { createHeadSpace } from '../../src/spaces/heads/space.js';
import { tempDir } from '../checkpoint/helpers.js';
import { assertOneLineError, type CliResult, runCli } from '../helpers/cli.js';
import { smallData } from '../helpers/familycli.js';
import { CALIB, EVAL, MODEL, sharedPath, skipUnlessShared } from '../shared.js';

const skip = skipUnlessShared(MODEL, CALIB, EVAL);
const tmp = tempDir('geneprune-bleu-');
after(tmp.cleanup);

const cli = (args: string[]) => runCli(args, { timeout: 120_000 });
function json<T>(r: CliResult): T {
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout.trim().split('\n').at(-1)!) as T;
}

let model: OpenedModel;
let calibTask: GenerationTask;
let evalTask: GenerationTask;
let calibFile: string;
let evalFile: string;

before(async () => {
  if (skip) return;
  model = await openModel(sharedPath(MODEL)!);
  const c = await buildContinuationTask(sharedPath(CALIB)!);
  const e = await buildContinuationTask(sharedPath(EVAL)!);
  calibTask = { source: 'calib', items: c.items.slice(0, 6) };
  evalTask = { source: 'eval', items: e.items.slice(0, 5) };
  calibFile = join(tmp.dir, 'calib-task.jsonl');
  evalFile = join(tmp.dir, 'eval-task.jsonl');
  writeFileSync(calibFile, generationTaskJsonl(calibTask));
  writeFileSync(evalFile, generationTaskJsonl(evalTask));
});

describe('the bleu objective', { skip }, () => {
  test('quality = −BLEU, equal to evaluateBleu on the same head masks, at full and low fidelity', async () => {
    const spec = model.spec;
    const space = createHeadSpace(spec.config, parameterCount(spec));
    const objective = await createObjective(spec, space, {
      stream: [],
      context: 0,
      metric: 'bleu',
      bleu: {
        task: prepareGenerationTask(calibTask, model.tokenizer),
        items: 5,
        lowItems: 2,
        maxNewTokens: 12,
      },
    });
    try {
      const full = space.full();
      const pruned = full.slice();
      for (const g of [0, 3, 9, 17, 30, 38]) pruned[g] = 0;
      for (const [genome, fidelity, items] of [
        [full, 'full', 5],
        [pruned, 'full', 5],
        [pruned, 'low', 2],
      ] as const) {
        const e = await objective.evaluate(genome, fidelity);
        const ref = await evaluateBleu({
          model,
          task: { source: 'calib', items: calibTask.items.slice(0, items) },
          pruneHeads: [...genome.keys()]
            .filter((g) => genome[g] === 0)
            .map((g) => headOfGene(spec.config, g)),
          maxNewTokens: 12,
        });
        assert.equal(e.tokens, items);
        assert.ok(
          Math.abs(e.quality + ref.bleu) < 1e-9,
          `${fidelity}: quality ${e.quality} vs BLEU ${ref.bleu}`,
        );
        assert.equal(bleuOfQuality(e.quality), -e.quality);
      }
      // The cache answers repeats, and forward passes are the decoder's own.
      const before = objective.forwardPasses();
      assert.equal((await objective.evaluate(pruned)).ms, 0);
      assert.equal(objective.forwardPasses(), before);
      assert.ok(before > 0);
      assert.equal(objective.evaluations(), 3);
    } finally {
      await objective.release();
    }
  });
});

describe('fitness with BLEU quality', () => {
  test('normalised BLEU quality is 1 − BLEU/dense BLEU: 0 for dense, higher BLEU fitter', () => {
    const spec = { kind: 'budget' as const, metric: 'bleu' as const, lambda: 1, denseQuality: -10 };
    assert.equal(normalisedQuality(spec, -10), 0);
    assert.equal(normalisedQuality(spec, -5), 0.5);
    assert.ok(fitnessOf(spec, -8, 0.25) > fitnessOf(spec, -6, 0.25));
    const lambda = { ...spec, kind: 'lambda' as const, lambda: 0.5 };
    assert.equal(fitnessOf(lambda, -5, 0.5), -0.5 + 0.25);
    assert.ok(fitnessOf(lambda, -9, 0.5) > fitnessOf(lambda, -9, 0.25));
    assert.equal(normalisedQuality({ ...spec, denseQuality: 0 }, -3), -0.03);
  });
});

describe('heads --metric bleu', { skip }, () => {
  test('searches with BLEU fitness end to end; result.json eval BLEU equals evaluateBleu with mask.json', async () => {
    const out = join(tmp.dir, 'heads-bleu');
    const r = json<HeadSearchResult & { mask: string }>(
      cli([
        'heads',
        '--model',
        sharedPath(MODEL)!,
        '--calib',
        sharedPath(CALIB)!,
        '--eval',
        sharedPath(EVAL)!,
        '--metric',
        'bleu',
        '--calib-task',
        calibFile,
        '--calib-items',
        '4',
        '--low-items',
        '2',
        '--calib-new-tokens',
        '8',
        '--target-sparsity',
        '0.25',
        '--population',
        '4',
        '--generations',
        '2',
        '--eval-tokens',
        '1024',
        '--eval-task',
        evalFile,
        '--eval-new-tokens',
        '10',
        '--out',
        out,
        '--json',
      ]),
    );
    assert.equal(r.calib.metric, 'bleu');
    assert.equal(r.calib.bleu, -r.calib.quality);
    assert.equal(r.calib.denseBleu, -r.calib.denseQuality);
    assert.equal(r.calib.tokens, 4);
    assert.equal(r.calib.task?.source, calibFile);
    assert.equal(r.removed, 10);
    const logged = readFileSync(join(out, 'evals.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    assert.ok(logged.every((l) => l.metric === 'bleu' && l.quality <= 0));
    assert.ok(logged.some((l) => l.fidelity === 'low' && l.tokens === 2));
    // The fitness is −(1 − BLEU/dense BLEU) for the budget kind, so the dense model would score 0.
    for (const l of logged.filter((x) => x.fidelity === 'full')) {
      const expect = -(l.quality - r.calib.denseQuality) / Math.abs(r.calib.denseQuality);
      assert.ok(Math.abs(l.fitness - expect) < 1e-12);
    }
    const saved = JSON.parse(readFileSync(join(out, 'result.json'), 'utf8'));
    const b: EvalBleu = saved.evalBleu;
    assert.equal(b.task, evalFile);
    assert.equal(b.items, 5);
    const pruned = await evaluateBleu({
      model,
      task: evalFile,
      mask: join(out, 'mask.json'),
      maxNewTokens: 10,
    });
    const dense = await evaluateBleu({ model, task: evalFile, maxNewTokens: 10 });
    assert.equal(b.corpus, pruned.corpus.score);
    assert.equal(b.sentenceMean, pruned.sentenceMean);
    assert.equal(b.denseCorpus, dense.corpus.score);
    assert.equal(b.denseSentenceMean, dense.sentenceMean);
  });
});

describe('weights --eval-task', { skip }, () => {
  test('result.json BLEU equals evaluateBleu and eval --task with the run weight mask', async () => {
    const out = join(tmp.dir, 'mag50');
    const r = json<WeightPruneResult>(
      cli([
        'weights',
        '--model',
        sharedPath(MODEL)!,
        ...smallData(),
        '--method',
        'magnitude',
        '--sparsity',
        '0.5',
        '--metric',
        'bleu',
        '--calib-task',
        calibFile,
        '--calib-items',
        '3',
        '--calib-new-tokens',
        '8',
        '--eval-task',
        evalFile,
        '--eval-new-tokens',
        '10',
        '--out',
        out,
        '--json',
      ]),
    );
    assert.equal(r.calib.metric, 'bleu');
    assert.equal(r.calib.bleu, -r.calib.quality);
    assert.ok(Number.isFinite(r.calib.perplexity));
    const b = r.evalBleu!;
    const pruned = await evaluateBleu({ model, task: evalFile, weightMask: r.mask, maxNewTokens: 10 });
    const dense = await evaluateBleu({ model, task: evalFile, maxNewTokens: 10 });
    assert.equal(b.corpus, pruned.corpus.score);
    assert.equal(b.sentenceMean, pruned.sentenceMean);
    assert.equal(b.denseCorpus, dense.corpus.score);
    assert.ok(b.corpus < b.denseCorpus, `pruned ${b.corpus} vs dense ${b.denseCorpus}`);
    const printed = json<{ corpus: { score: number }; sentenceMean: number; weightMask: string }>(
      cli([
        'eval',
        '--model',
        sharedPath(MODEL)!,
        '--task',
        evalFile,
        '--max-new-tokens',
        '10',
        '--weight-mask',
        r.mask,
        '--json',
      ]),
    );
    assert.equal(printed.corpus.score, b.corpus);
    assert.equal(printed.sentenceMean, b.sentenceMean);
  });
});

describe('refusals', { skip }, () => {
  const heads = (...args: string[]) =>
    cli([
      'heads',
      '--model',
      sharedPath(MODEL)!,
      '--eval',
      sharedPath(EVAL)!,
      '--target-sparsity',
      '0.25',
      '--out',
      join(tmp.dir, `refused-${Math.random()}`),
      ...args,
    ]);
  test('missing, empty and unbuildable calibration tasks, a shared task, sos with BLEU: one line each', () => {
    const calib = sharedPath(CALIB)!;
    assertOneLineError(
      heads('--calib', calib, '--metric', 'bleu', '--calib-task', join(tmp.dir, 'absent.jsonl')),
      'non-zero',
      'absent.jsonl',
      'cannot read task file',
    );
    const empty = join(tmp.dir, 'empty.jsonl');
    writeFileSync(empty, '\n');
    assertOneLineError(
      heads('--calib', calib, '--metric', 'bleu', '--calib-task', empty),
      'non-zero',
      'no items',
    );
    const plain = join(tmp.dir, 'plain');
    writeFileSync(`${plain}.txt`, 'Some text without any story separators. It goes on.\n');
    assertOneLineError(
      heads('--calib', `${plain}.txt`, '--metric', 'bleu'),
      'non-zero',
      '--calib-task',
      'no TinyStories story openings',
    );
    assertOneLineError(
      heads('--calib', calib, '--metric', 'bleu', '--calib-task', calibFile, '--eval-task', calibFile),
      'non-zero',
      '--eval-task',
      'also the calibration task',
    );
    assertOneLineError(
      heads('--calib', calib, '--metric', 'bleu', '--fitness', 'sos'),
      'non-zero',
      '--fitness',
      'bleu',
    );
    assertOneLineError(
      heads('--calib', calib, '--calib-task', calibFile),
      'non-zero',
      '--calib-task',
      '--metric bleu',
    );
    assertOneLineError(
      heads('--calib', calib, '--bleu', 'sentence-mean'),
      'non-zero',
      '--bleu',
      '--metric bleu',
    );
    assertOneLineError(
      heads('--calib', calib, '--metric', 'bleu', '--bleu', 'meteor'),
      'non-zero',
      '--bleu',
      'meteor',
    );
    assertOneLineError(
      cli(['eval', '--model', sharedPath(MODEL)!, '--task', empty]),
      'non-zero',
      'empty.jsonl',
      'no items',
    );
  });
});
