/**
 * The calibration-data flags of a run (runs/tasks.ts `calibrationTask`, runs/choices.ts `calibrationChoices`)
 * follow the metric's data kind in the registry: each refusal is worded as runs have always worded it for the
 * built-in metrics (the same lines test/cli checks end to end), and a metric registered from this file alone
 * joins the lists of the kind it declares.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { GenepruneError } from '../../src/errors.js';
import { type MetricEntry, metricEntry, registerMetric } from '../../src/metrics/registry.js';
import { calibrationChoices } from '../../src/runs/choices.js';
import { calibrationTask } from '../../src/runs/tasks.js';
import type { QualityMetric } from '../../src/search/objective.js';
import type { Tokenizer } from '../../src/tokenizer/types.js';

// The refusals come before any data is read: no tokenizer is used.
const tokenizer = {} as Tokenizer;
/** The one line the CLI prints for the refusal (GenepruneError.oneLine: "--flag: words"). */
const refusal = (flag: string, words: string) => (e: unknown) => {
  assert.ok(e instanceof GenepruneError, String(e));
  assert.equal(e.oneLine(), `${flag}: ${words}`);
  return true;
};
// The run's text data (a task is built from the calibration pages when no task file is given).
const DATA = { calib: 'calib/', eval: 'eval/' };
const ITEMS =
  'only with --metric bleu, exact-match, pass@1, mc-accuracy, accuracy or macro-f1 (calibration items)';
const TASK = 'only with --metric bleu, exact-match or pass@1 (a calibration generation task)';

describe('calibration flags by the metric’s data kind', () => {
  test('task flags without a task metric are refused in the runs’ words', async () => {
    for (const metric of [undefined, 'ppl', 'kl'] as const) {
      await assert.rejects(
        calibrationTask({ ...DATA, metric, calibItems: 4 }, tokenizer),
        refusal('--calib-items', ITEMS),
      );
      await assert.rejects(
        calibrationTask({ ...DATA, metric, lowItems: 2 }, tokenizer),
        refusal('--low-items', ITEMS),
      );
      await assert.rejects(
        calibrationTask({ ...DATA, metric, calibNewTokens: 4 }, tokenizer),
        refusal('--calib-new-tokens', TASK),
      );
      await assert.rejects(
        calibrationTask({ ...DATA, metric, bleu: 'corpus' }, tokenizer),
        refusal('--bleu', TASK),
      );
    }
  });

  test('item counts also size choices and labelled items; the other task flags stay refused there', async () => {
    for (const metric of ['mc-accuracy', 'accuracy', 'macro-f1'] as const) {
      assert.equal(
        await calibrationTask({ ...DATA, metric, calibItems: 4, lowItems: 2 }, tokenizer),
        undefined,
      );
      await assert.rejects(
        calibrationTask({ ...DATA, metric, calibTask: 'x.jsonl' }, tokenizer),
        refusal('--calib-task', TASK),
      );
    }
  });

  test('choice flags without a multiple-choice metric are refused', async () => {
    for (const metric of [undefined, 'ppl', 'bleu', 'accuracy'] as const) {
      await assert.rejects(
        calibrationChoices({ metric, choiceNorm: 'chars' }, tokenizer, 64),
        refusal('--choice-norm', 'only with --metric mc-accuracy'),
      );
      await assert.rejects(
        calibrationChoices({ metric, calibChoices: 'mc.jsonl' }, tokenizer, 64),
        refusal('--calib-choices', 'only with --metric mc-accuracy'),
      );
    }
    assert.equal(await calibrationChoices({ metric: 'ppl' }, tokenizer, 64), undefined);
  });
});

describe('a metric registered from a test file', () => {
  // Copies of built-in entries under new names, on a generation task and on multiple choice.
  const toys: MetricEntry[] = [
    { ...metricEntry('bleu'), name: 'toy-task' },
    { ...metricEntry('mc-accuracy'), name: 'toy-choice' },
  ];
  const removers: (() => void)[] = [];
  before(() => {
    for (const t of toys) removers.push(registerMetric(t));
  });
  after(() => {
    for (const r of removers) r();
  });

  test('joins the refusal lists of its data kind', async () => {
    await assert.rejects(
      calibrationTask({ ...DATA, metric: 'ppl', calibItems: 4 }, tokenizer),
      refusal(
        '--calib-items',
        'only with --metric bleu, exact-match, pass@1, mc-accuracy, accuracy, macro-f1, toy-task or toy-choice (calibration items)',
      ),
    );
    await assert.rejects(
      calibrationTask({ ...DATA, metric: 'ppl', bleu: 'corpus' }, tokenizer),
      refusal(
        '--bleu',
        'only with --metric bleu, exact-match, pass@1 or toy-task (a calibration generation task)',
      ),
    );
    await assert.rejects(
      calibrationChoices({ metric: 'ppl', choiceNorm: 'chars' }, tokenizer, 64),
      refusal('--choice-norm', 'only with --metric mc-accuracy or toy-choice'),
    );
  });

  test('its own kind’s flags are taken', async () => {
    const toyChoice = 'toy-choice' as QualityMetric;
    assert.equal(await calibrationTask({ ...DATA, metric: toyChoice, calibItems: 4 }, tokenizer), undefined);
    // A multiple-choice metric needs its file: the refusal past the flag checks.
    await assert.rejects(
      calibrationChoices({ metric: toyChoice }, tokenizer, 64),
      refusal(
        '--calib-choices',
        '--metric mc-accuracy needs a calibration multiple-choice file: JSONL {"context", "choices", "label"} per line',
      ),
    );
    await assert.rejects(
      calibrationTask({ ...DATA, metric: 'toy-task' as QualityMetric, bleu: 'nope' as never }, tokenizer),
      refusal('--bleu', '"nope" is not one of corpus, sentence-mean'),
    );
  });
});
