/**
 * The TinyStories continuation task: story openings only (never a page's first, possibly mid-story, document),
 * whole sentences only, deterministic, and round-tripping through its JSONL file.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { parseGenerationTask } from '../../src/metrics/generation.js';
import {
  buildContinuationTask,
  continuationItems,
  generationTaskJsonl,
  sentenceSpans,
} from '../../src/metrics/storytask.js';
import { tempDir } from '../checkpoint/helpers.js';
import { CALIB, EVAL, sharedPath, skipUnlessShared } from '../shared.js';

const tmp = tempDir('geneprune-storytask-');
after(tmp.cleanup);

const PAGE = [
  'end of a story that began on the previous page. It is not an opening.',
  '<|endoftext|>',
  'Once upon a time, there was a cat. She liked milk!',
  'One day, she asked, "Can I have more?" Her mom said yes. They were happy.',
  '<|endoftext|>',
  'Too short. Only three. Sentences here.',
  '<|endoftext|>',
  'Tom had a red ball. He threw it high. It flew over the fence. Then the page ends in the mid',
].join('\n');

describe('continuation items', () => {
  test('sentences are whole: closing quotes belong to them, a cut-off fragment is none', () => {
    const text = 'She asked, "Can I?" Mom said no. The end of the pa';
    assert.deepEqual(
      sentenceSpans(text).map(([a, b]) => text.slice(a, b)),
      ['She asked, "Can I?"', 'Mom said no.'],
    );
  });
  test('openings after a separator only; 2 sentences of prompt, the next 2 as reference; short stories skipped', () => {
    assert.deepEqual(continuationItems(PAGE), [
      {
        prompt: 'Once upon a time, there was a cat. She liked milk!',
        references: ['One day, she asked, "Can I have more?" Her mom said yes.'],
      },
    ]);
    assert.deepEqual(continuationItems(PAGE, { promptSentences: 1, referenceSentences: 1 }), [
      { prompt: 'Once upon a time, there was a cat.', references: ['She liked milk!'] },
      { prompt: 'Too short.', references: ['Only three.'] },
      { prompt: 'Tom had a red ball.', references: ['He threw it high.'] },
    ]);
    assert.throws(() => continuationItems(PAGE, { promptSentences: 0 }), /must be a positive integer/);
  });
  test('the JSONL file reads back as the same task', async () => {
    const page = join(tmp.dir, 'page.txt');
    writeFileSync(page, PAGE);
    const task = await buildContinuationTask(page, {
      promptSentences: 1,
      referenceSentences: 1,
      maxItems: 2,
    });
    assert.equal(task.items.length, 2);
    const back = parseGenerationTask('t.jsonl', generationTaskJsonl(task));
    assert.deepEqual(back.items, task.items);
  });
});

describe('the task from tinystories/eval', { skip: skipUnlessShared(EVAL, CALIB) }, () => {
  test('88 openings, deterministic, none of them from the calibration pages', async () => {
    const a = await buildContinuationTask(sharedPath(EVAL)!);
    const b = await buildContinuationTask(sharedPath(EVAL)!);
    assert.equal(generationTaskJsonl(a), generationTaskJsonl(b));
    assert.equal(a.items.length, 88);
    const calibText = ['page-00.txt', 'page-01.txt', 'page-02.txt', 'page-03.txt', 'page-04.txt']
      .map((f) => readFileSync(join(sharedPath(CALIB)!, f), 'utf8'))
      .join('\n');
    const evalText = ['page-05.txt', 'page-06.txt', 'page-07.txt', 'page-08.txt', 'page-09.txt']
      .map((f) => readFileSync(join(sharedPath(EVAL)!, f), 'utf8'))
      .join('\n');
    for (const it of a.items) {
      assert.ok(evalText.includes(`${it.prompt}`), it.prompt);
      assert.ok(evalText.includes(`${it.prompt} ${it.references[0]}`) || evalText.includes(it.references[0]));
      assert.ok(!calibText.includes(`${it.prompt} ${it.references[0]}`), 'a calibration story');
    }
  });
});
