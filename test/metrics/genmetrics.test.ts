/**
 * The generation metrics beside BLEU, and what a task file now carries:
 * - task files: `{source, target}` lines, MBPP rows with `test_list` / `test_setup_code` / `test_imports` /
 *   `task_id` kept as the item's code problem, and malformed test fields refused naming the file and line
 *   (hand-written files);
 * - the prompt template: refusals, and prompts encoded exactly as the template's text would be;
 * - exact match on stories260K: a task whose references are the model's own greedy continuations (decoded one
 *   prompt at a time by `generate`, not by the batched path under test) scores 1, the same task with some
 *   references changed scores exactly the share left, and the 'exact-match' objective's quality is −that share;
 * - pass@1 through the scoring function the metric uses (`scoreCompletions`), on MBPP reference solutions
 *   (../shared/data/mbpp, whose README says which pass their own tests): those that pass score 1, the three
 *   whose tests fail under CPython 3.11 score 0, so a mix scores exactly the passing share;
 * - pass@1 is refused without code execution allowed, and on a task without tests.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { generate } from '../../src/arch/generate.js';
import { createRunner } from '../../src/engine/runner.js';
import { GenepruneError } from '../../src/errors.js';
import { nltkMethod1MeanBleu } from '../../src/metrics/bleu.js';
import { readDataset } from '../../src/metrics/data.js';
import {
  applyPromptTemplate,
  checkPromptTemplate,
  codeProblemsOf,
  type GenerationItem,
  type GenerationTask,
  parseGenerationTask,
  prepareGenerationTask,
  readGenerationTask,
  scoreCompletions,
  scoreGeneration,
} from '../../src/metrics/generation.js';
import { parameterCount } from '../../src/model/cost.js';
import { type OpenedModel, openModel } from '../../src/model/open.js';
import { createObjective } from '../../src/search/objective.js';
import { createHeadSpace } from '../../src/spaces/heads/space.js';
import { tempDir } from '../checkpoint/helpers.js';
import { EVAL, MODEL, sharedPath, skipUnlessShared } from '../shared.js';

const MBPP = 'data/mbpp/mbpp.jsonl';
const tmp = tempDir('geneprune-genmetrics-');
after(tmp.cleanup);

function taskFile(name: string, lines: string[]): string {
  const path = join(tmp.dir, name);
  writeFileSync(path, `${lines.join('\n')}\n`);
  return path;
}

describe('task files: seq2seq lines and MBPP tests', () => {
  test('{source, target} lines, and MBPP rows whose test fields become the item’s problem', async () => {
    const path = taskFile('new.jsonl', [
      JSON.stringify({ source: 'translate: hello', target: 'bonjour' }),
      JSON.stringify({ source: 'two refs', target: ['a b', 'c d'] }),
      JSON.stringify({
        text: 'Write a function to add two numbers.',
        code: 'def add(a, b):\n    return a + b',
        task_id: 7,
        test_list: ['assert add(1, 2) == 3', 'assert add(0, 0) == 0'],
        test_setup_code: '',
        challenge_test_list: [],
      }),
      JSON.stringify({
        text: 'Square root, floored.',
        code: 'def root(n):\n    return math.isqrt(n)',
        task_id: 'x-1',
        test_list: ['assert root(17) == 4'],
        test_setup_code: 'BIG = 10 ** 6',
        test_imports: ['import math'],
      }),
      // task_id alone (no tests) makes no problem.
      JSON.stringify({ text: 'No tests here.', code: 'pass', task_id: 9 }),
    ]);
    const task = await readGenerationTask(path);
    assert.deepEqual(task.items, [
      { prompt: 'translate: hello', references: ['bonjour'] },
      { prompt: 'two refs', references: ['a b', 'c d'] },
      {
        prompt: 'Write a function to add two numbers.',
        references: ['def add(a, b):\n    return a + b'],
        problem: { task_id: 7, test_list: ['assert add(1, 2) == 3', 'assert add(0, 0) == 0'] },
      },
      {
        prompt: 'Square root, floored.',
        references: ['def root(n):\n    return math.isqrt(n)'],
        // The imports go before the setup code: the asserts and the setup may both need them.
        problem: {
          task_id: 'x-1',
          test_list: ['assert root(17) == 4'],
          test_setup_code: 'import math\nBIG = 10 ** 6',
        },
      },
      { prompt: 'No tests here.', references: ['pass'] },
    ]);
  });

  test('malformed test fields are refused in one line naming the file and line', () => {
    const mbpp = (extra: Record<string, unknown>) =>
      JSON.stringify({ text: 't', code: 'c', test_list: ['assert True'], ...extra });
    const cases: [string, RegExp][] = [
      [
        mbpp({ test_list: 'assert True' }),
        /^line 2: "test_list" must be a non-empty array of non-empty strings/,
      ],
      [mbpp({ test_list: [] }), /^line 2: "test_list" must be a non-empty array/],
      [mbpp({ test_list: ['assert True', 3] }), /^line 2: "test_list" must be a non-empty array/],
      [mbpp({ test_list: ['  '] }), /^line 2: "test_list" must be a non-empty array of non-empty strings/],
      [mbpp({ test_setup_code: ['x = 1'] }), /^line 2: "test_setup_code" must be a string$/],
      [mbpp({ test_imports: 'import math' }), /^line 2: "test_imports" must be an array of strings/],
      [mbpp({ test_imports: [1] }), /^line 2: "test_imports" must be an array of strings/],
      [mbpp({ task_id: 1.5 }), /^line 2: "task_id" must be an integer or a string$/],
      [
        JSON.stringify({ text: 't', code: 'c', test_setup_code: 'x = 1' }),
        /^line 2: has test_setup_code but no "test_list"/,
      ],
      [JSON.stringify({ source: 's' }), /^line 2: the reference \("source" and "target"\) must be a string/],
      [JSON.stringify({ source: 1, target: 't' }), /^line 2: the prompt \("source" and "target"\) must be/],
    ];
    for (const [line, message] of cases) {
      assert.throws(
        () => parseGenerationTask('t.jsonl', `${JSON.stringify({ prompt: 'a', reference: 'b' })}\n${line}\n`),
        (e: unknown) =>
          e instanceof GenepruneError &&
          e.where === 't.jsonl' &&
          message.test(e.message) &&
          !e.message.includes('\n'),
        line,
      );
    }
  });

  test('codeProblemsOf: every item’s problem, or one line naming the task (and the item without tests)', () => {
    const withTests: GenerationItem = {
      prompt: 'p',
      references: ['r'],
      problem: { test_list: ['assert 1'] },
    };
    const without: GenerationItem = { prompt: 'q', references: ['s'] };
    assert.deepEqual(codeProblemsOf({ source: 'a.jsonl', items: [withTests] }), [
      { test_list: ['assert 1'] },
    ]);
    assert.throws(
      () => codeProblemsOf({ source: 'b.jsonl', items: [withTests, without] }),
      (e: unknown) =>
        e instanceof GenepruneError && e.where === 'b.jsonl' && /^item 2 has no "test_list"/.test(e.message),
    );
    assert.throws(
      () => codeProblemsOf({ source: 'c.jsonl', items: [without] }),
      (e: unknown) =>
        e instanceof GenepruneError && e.where === 'c.jsonl' && /this task has none/.test(e.message),
    );
  });
});

describe('the prompt template', () => {
  test('needs {text} and no other field; other braces are text', () => {
    for (const ok of [
      '{text}',
      'Generate code from natural language: (from Mbpp) {text}',
      '{text} {}',
      '{ {text} }',
    ])
      assert.doesNotThrow(() => checkPromptTemplate(ok), ok);
    for (const [bad, message] of [
      ['no field', /has no \{text\}/],
      ['', /has no \{text\}/],
      ['{text} in {lang}', /unknown field \{lang\}/],
      ['{prompt}', /unknown field \{prompt\}/],
      ['{TEXT}', /unknown field \{TEXT\}/],
    ] as const) {
      assert.throws(
        () => checkPromptTemplate(bad),
        (e: unknown) =>
          e instanceof GenepruneError && e.where === '--prompt-template' && message.test(e.message),
        bad,
      );
    }
  });

  test('every {text} is the prompt, taken literally ($ patterns included)', () => {
    assert.equal(applyPromptTemplate('A {text} B {text}', 'x$&y'), 'A x$&y B x$&y');
    assert.equal(applyPromptTemplate('{text}', 'same'), 'same');
  });
});

describe('exact match on stories260K', { skip: skipUnlessShared(MODEL, EVAL) }, () => {
  let model: OpenedModel;
  const template = 'Story: {text}';
  let openings: string[];
  /** The model's own greedy continuation of each templated opening, one prompt at a time. */
  let own: string[];
  const NEW = 16;

  before(async () => {
    model = await openModel(sharedPath(MODEL));
    const docs = (await readDataset(sharedPath(EVAL)!)).documents;
    openings = docs.slice(0, 6).map((d, i) => d.slice(0, 15 + 11 * i));
    const tok = model.tokenizer;
    const runner = await createRunner(model.spec, { output: 'last_logits' });
    try {
      own = [];
      for (const text of openings) {
        const ids = tok.encode(`Story: ${text}`, { bos: true });
        const out = (await generate(runner, ids, { maxNewTokens: NEW, stopTokens: [1, 2] })).slice(
          ids.length,
        );
        own.push(
          out.map((id, k) => tok.decodeToken(k === 0 ? ids[ids.length - 1] : out[k - 1], id)).join(''),
        );
      }
    } finally {
      await runner.release();
    }
    // Non-empty and not all alike, so a changed reference is a real miss.
    assert.ok(own.every((t) => t.trim().length > 0));
    assert.ok(new Set(own).size > 1);
  });

  const taskOf = (refs: string[]): GenerationTask => ({
    source: 'self',
    items: openings.map((prompt, i) => ({ prompt, references: [refs[i]] })),
  });

  test('the model’s own continuations score 1; changed references exactly the share left; the objective agrees', async () => {
    const tok = model.tokenizer;
    const prepared = prepareGenerationTask(taskOf(own), tok, template);
    // The prompts are the template's text, encoded as any text is.
    assert.deepEqual(
      prepared.prompts,
      openings.map((t) => tok.encode(`Story: ${t}`, { bos: true })),
    );
    assert.equal(prepared.template, template);
    const runner = await createRunner(model.spec, { output: 'row_logits' });
    try {
      const dense = await scoreGeneration(runner, prepared, { maxNewTokens: NEW, batchSize: 4 });
      assert.deepEqual(dense.hypotheses, own);
      assert.equal(dense.exactMatch, 1);
      // BLEU of identical texts is 100 (0–1 scale: 1), as before; no code ran.
      assert.ok(Math.abs(dense.sentenceMeanUnit - 1) < 1e-12);
      assert.equal(dense.passAt1, undefined);

      // Two references changed by a word, one only by whitespace the normalisation removes (still a match).
      const changed = own.map((r, i) => (i === 1 || i === 4 ? `${r} zebra` : i === 2 ? `  ${r}  \r\n\n` : r));
      const r2 = await scoreGeneration(runner, prepareGenerationTask(taskOf(changed), tok, template), {
        maxNewTokens: NEW,
      });
      assert.equal(r2.exactMatch, 4 / 6);
      // The 0–1 sentence mean is NLTK's method1 mean of the same pairs.
      assert.equal(r2.sentenceMeanUnit, nltkMethod1MeanBleu(r2.hypotheses, changed));

      // Without the template the prompts differ, so do the continuations: the score is the task's, not a constant.
      const plain = await scoreGeneration(runner, prepareGenerationTask(taskOf(own), tok), {
        maxNewTokens: NEW,
      });
      const expected = plain.hypotheses.filter((h, i) => h.trim() === own[i].trim()).length / 6;
      assert.equal(plain.exactMatch, expected);
      assert.ok(plain.exactMatch < 1, 'the template changes what the model is asked');
    } finally {
      await runner.release();
    }

    // The search objective on 'exact-match': quality = −share, from the same scoring.
    const spec = model.spec;
    const space = createHeadSpace(spec.config, parameterCount(spec));
    const changed = own.map((r, i) => (i === 0 ? `${r} zebra` : r));
    const objective = await createObjective(spec, space, {
      stream: [],
      context: 0,
      metric: 'exact-match',
      bleu: {
        task: prepareGenerationTask(taskOf(changed), tok, template),
        items: 6,
        lowItems: 3,
        maxNewTokens: NEW,
      },
    });
    try {
      assert.equal((await objective.evaluate(space.full(), 'full')).quality, -5 / 6);
      assert.equal((await objective.evaluate(space.full(), 'low')).quality, -2 / 3);
    } finally {
      await objective.release();
    }
  });
});

describe('pass@1 of given completions: MBPP reference solutions', { skip: skipUnlessShared(MBPP) }, () => {
  let mbpp: GenerationTask;
  before(async () => {
    mbpp = await readGenerationTask(sharedPath(MBPP)!);
  });
  const pick = (ids: number[]): GenerationTask => ({
    source: 'mbpp-subset',
    items: ids.map((id) => mbpp.items.find((it) => it.problem?.task_id === id)!),
  });
  const exec = { allowCodeExecution: true, workers: 2 } as const;

  test('every MBPP row is read with its three asserts; the two with setup code keep it', () => {
    assert.equal(mbpp.items.length, 974);
    assert.ok(mbpp.items.every((it) => it.problem?.test_list.length === 3));
    assert.deepEqual(
      mbpp.items.filter((it) => it.problem?.test_setup_code).map((it) => it.problem?.task_id),
      [367, 927],
    );
  });

  test('solutions the README says pass score 1; with the three that fail, exactly the passing share', async () => {
    // 367 and 927 need their setup code (binary trees) to pass.
    const passing = [11, 12, 17, 42, 367, 511, 927];
    const failing = [341, 596, 642];
    const good = pick(passing);
    const ok = await scoreCompletions(
      good,
      good.items.map((it) => it.references[0]),
      { exec },
    );
    assert.equal(ok.passAt1, 1);
    assert.equal(ok.passed, passing.length);
    // The completions are the references: exact match 1 as well.
    assert.equal(ok.exactMatch, 1);

    const mixed = pick([...passing.slice(0, 3), ...failing]);
    const r = await scoreCompletions(
      mixed,
      mixed.items.map((it) => it.references[0]),
      { exec },
    );
    assert.equal(r.passed, 3);
    assert.equal(r.passAt1, 3 / 6);

    // Each problem's own asserts: a solution to another problem fails them.
    const shifted = good.items.map((_, i) => good.items[(i + 1) % good.items.length].references[0]);
    const wrong = await scoreCompletions(good, shifted, { exec });
    assert.equal(wrong.passed, 0);
    assert.equal(wrong.exactMatch, 0);
  });

  test('refused without code execution allowed, and on a task without tests; nothing runs without exec', async () => {
    const good = pick([11, 12]);
    const codes = good.items.map((it) => it.references[0]);
    await assert.rejects(
      scoreCompletions(good, codes, { exec: { allowCodeExecution: false } }),
      (e: unknown) => e instanceof GenepruneError && e.where === '--allow-code-execution',
    );
    const none: GenerationTask = { source: 'story.jsonl', items: [{ prompt: 'p', references: ['r'] }] };
    await assert.rejects(
      scoreCompletions(none, ['r'], { exec }),
      (e: unknown) => e instanceof GenepruneError && e.where === 'story.jsonl' && /has none/.test(e.message),
    );
    const plain = await scoreCompletions(good, codes);
    assert.equal(plain.passAt1, undefined);
    assert.equal(plain.exactMatch, 1);
  });
});
