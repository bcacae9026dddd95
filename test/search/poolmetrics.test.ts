/**
 * `heads --workers 2` with every calibration metric beyond the perplexity: BLEU and exact match of greedy
 * continuations (stories260K; the workers load the search's tokenizer themselves, checked by the text it decodes),
 * pass@1 (its code-execution options travel with the recipe), multiple-choice accuracy (a tiny llama) and a
 * classifier's accuracy (a random DistilBERT) — each run writes the same evals.jsonl (timings aside) and
 * result.json (timings aside) as the one-process run; a recipe whose tokenizer decodes differently is refused.
 */
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { GenepruneError } from '../../src/errors.js';
import { prepareGenerationTask } from '../../src/metrics/generation.js';
import { buildContinuationTask } from '../../src/metrics/storytask.js';
import { openModel } from '../../src/model/open.js';
import { buildRecipeScorer, calibrationRecipe } from '../../src/search/backend.js';
import { tempDir } from '../checkpoint/helpers.js';
import { runCli } from '../helpers/cli.js';
import { logWithoutTimes, readRunJson, smallRunArgs, withoutRunFields } from '../helpers/rundir.js';
import { writeTinyModel } from '../helpers/tinylm.js';
import { writeWordPieceClassifier } from '../helpers/wordpiece.js';
import { CALIB, EVAL, MODEL, sharedPath, skipUnlessShared } from '../shared.js';

const tmp = tempDir('geneprune-poolmetrics-');
after(tmp.cleanup);

/** The same head search with one process and with --workers 2: equal logs and results, and a real search. */
function sameWithWorkers(name: string, args: string[]): void {
  const one = join(tmp.dir, `${name}-one`);
  const two = join(tmp.dir, `${name}-two`);
  const r1 = runCli([...args, '--quiet', '--out', one], { timeout: 300_000 });
  assert.equal(r1.code, 0, r1.stderr);
  const r2 = runCli([...args, '--quiet', '--workers', '2', '--out', two], { timeout: 300_000 });
  assert.equal(r2.code, 0, r2.stderr);
  const evals = logWithoutTimes(one, 'evals.jsonl') as Array<{ cached: boolean }>;
  const distinct = evals.filter((e) => !e.cached).length;
  assert.ok(distinct >= 4, `only ${distinct} distinct evaluations of ${evals.length}`);
  assert.deepEqual(logWithoutTimes(two, 'evals.jsonl'), evals);
  const result = (dir: string) => withoutRunFields(readRunJson(dir, 'result.json'));
  assert.deepEqual(result(two), result(one));
}

const search = ['--target-sparsity', '0.25', '--population', '4', '--generations', '2', '--seed', '1'];

describe('heads --workers with generation metrics (stories260K)', {
  skip: skipUnlessShared(MODEL, CALIB, EVAL),
}, () => {
  // The small search below on the shared model, scored on 4 generated items of 8 new tokens each.
  const data = () =>
    smallRunArgs('heads', undefined, {
      'eval-tokens': 512,
      'calib-items': 4,
      'calib-new-tokens': 8,
      'low-tokens': false,
      'calib-tokens': false,
      population: 4,
      generations: 2,
      seed: 1,
      quiet: false,
    });
  for (const metric of ['bleu', 'exact-match']) {
    test(`${metric}: one process and --workers 2 give the same run`, () => {
      sameWithWorkers(metric, [...data(), '--metric', metric]);
    });
  }

  test('pass@1: the code-execution options travel with the recipe', async (t) => {
    const mbpp = sharedPath('data/mbpp/mbpp.jsonl');
    if (!mbpp) return t.skip('data/mbpp absent');
    const file = join(tmp.dir, 'mbpp3.jsonl');
    writeFileSync(file, `${readFileSync(mbpp, 'utf8').split('\n').slice(10, 13).join('\n')}\n`);
    const args = [...data(), '--metric', 'pass@1', '--calib-task', file, '--allow-code-execution'];
    args.splice(args.indexOf('--calib-items'), 2, '--calib-items', '3');
    sameWithWorkers('pass1', args);
  });

  test('a recipe whose tokenizer decodes the prompts differently is refused in one line', async () => {
    const opened = await openModel(sharedPath(MODEL)!);
    const task = prepareGenerationTask(await buildContinuationTask(sharedPath(CALIB)!), opened.tokenizer);
    const recipe = calibrationRecipe(
      opened.spec,
      {},
      {
        stream: [],
        context: 64,
        metric: 'bleu',
        bleu: { task, items: 2, maxNewTokens: 4, kind: 'corpus' },
      },
      opened.modelPath,
    );
    assert.ok(recipe.tokenizer && recipe.tokenizer.probe.length > 0);
    // The recipe is plain data: the tokenizer (code) stays behind.
    assert.equal(JSON.stringify(structuredClone(recipe)), JSON.stringify(recipe));
    const { scorer } = await buildRecipeScorer(structuredClone(recipe));
    await scorer.runner.release();
    // A worker's own copy of the model: the tokenizer beside it, checked by the same probe.
    await (await buildRecipeScorer(recipe, opened.modelPath)).scorer.runner.release();
    const other = { ...recipe, tokenizer: { ...recipe.tokenizer, probe: `${recipe.tokenizer.probe}x` } };
    await assert.rejects(
      buildRecipeScorer(other),
      (e: unknown) =>
        e instanceof GenepruneError && /tokenizer/.test(e.message) && !e.oneLine().includes('\n'),
    );
  });
});

describe('heads --workers with mc-accuracy (a tiny llama)', () => {
  let args: string[];
  before(async () => {
    const { model, tokenizer } = await writeTinyModel(tmp.dir, 11);
    const calib = join(tmp.dir, 'calib');
    const evalData = join(tmp.dir, 'eval');
    mkdirSync(calib);
    mkdirSync(evalData);
    writeFileSync(join(calib, 'a.txt'), 'the cat sat on a mat\n<|endoftext|>\na dog ran to the cat bed\n');
    writeFileSync(join(evalData, 'b.txt'), 'a cat and a dog sat at a cab\n<|endoftext|>\nthe dog ate\n');
    const words = [' cat', ' dog', ' ab', ' at', ' bed', ' cab'];
    const items = (n: number, offset: number) =>
      Array.from({ length: n }, (_, i) => {
        const j = i + offset;
        const choices = words.slice(j % 3, (j % 3) + 3 + (j % 2));
        return `${JSON.stringify({ context: `the ${j} ${'ab'.repeat(j % 4)}`, choices, label: j % choices.length })}\n`;
      }).join('');
    writeFileSync(join(tmp.dir, 'calib-mc.jsonl'), items(16, 0));
    writeFileSync(join(tmp.dir, 'eval-mc.jsonl'), items(10, 100));
    args = [
      'heads',
      '--model',
      model,
      '--tokenizer',
      tokenizer,
      '--calib',
      calib,
      '--eval',
      evalData,
      '--metric',
      'mc-accuracy',
      '--calib-choices',
      join(tmp.dir, 'calib-mc.jsonl'),
      '--eval-choices',
      join(tmp.dir, 'eval-mc.jsonl'),
      ...search,
      '--generations',
      '3',
    ];
  });
  test('one process and --workers 2 give the same run', () => sameWithWorkers('mc', args));
});

describe('heads --workers with accuracy and macro-f1 (a random DistilBERT classifier)', () => {
  let args: string[];
  before(async () => {
    const words = ['good', 'bad', 'great', 'awful', 'movie', 'plot', 'the', 'was', 'not', 'fun', 'boring'];
    const model = await writeWordPieceClassifier(tmp.dir, 'distil', words);
    const labelled = (n: number, offset: number) =>
      Array.from({ length: n }, (_, i) => {
        const text = [0, 1, 2, 3].map((k) => words[(i * 7 + k * 3 + offset) % words.length]).join(' ');
        return `${JSON.stringify({ text: `${text} ${i + offset}`, label: (i * 5 + offset) % 3 })}\n`;
      }).join('');
    writeFileSync(join(tmp.dir, 'calib.jsonl'), labelled(24, 0));
    writeFileSync(join(tmp.dir, 'eval.jsonl'), labelled(30, 100));
    args = [
      'heads',
      '--model',
      model,
      '--calib',
      join(tmp.dir, 'calib.jsonl'),
      '--eval',
      join(tmp.dir, 'eval.jsonl'),
    ];
  });
  for (const metric of ['accuracy', 'macro-f1']) {
    test(`${metric}: one process and --workers 2 give the same run`, () =>
      sameWithWorkers(metric, [...args, '--metric', metric, ...search]));
  }
});
