/**
 * The calibration record of a result (runs/results.ts `calibrationRecord`), which both spaces' result.json carry:
 * for each metric, the exact bytes it serialises to — the leading fields in their order, then the metric's own
 * numbers and the data they were scored on — written out by hand here from the result.json files runs have
 * always written (test/prune and test/cli check those files end to end). Key order is part of the file's bytes,
 * so the checks compare JSON text, not objects.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { RunChoices } from '../../src/runs/choices.js';
import type { RunLabelled } from '../../src/runs/labels.js';
import { calibrationRecord } from '../../src/runs/results.js';
import type { RunTask } from '../../src/runs/tasks.js';
import type { QualityMetric } from '../../src/search/objective.js';

// Only what the records read of each data set: its names, hashes and sizes.
const calibTask = {
  from: 'pages',
  source: 'calib/',
  prepared: { task: { items: [{}, {}, {}, {}, {}] } },
} as unknown as RunTask;
const calibChoices = {
  source: 'mc.jsonl',
  sha256: 'c0ffee',
  prepared: { task: { items: [{}, {}, {}] } },
} as unknown as RunChoices;
const calibLabelled = {
  source: 'labelled.jsonl',
  sha256: 'beef',
  prepared: { items: [{}, {}, {}, {}], truncated: 1, data: { labels: ['neg', 'pos'] } },
} as unknown as RunLabelled;
const all = { calibTask, calibChoices, calibLabelled };

/** A weight run's leading fields (spaces/weights/scoring.ts), in their order. */
const weightLeading = (metric: QualityMetric) => ({
  data: 'calib/',
  tokens: 1024,
  perplexity: 12.5,
  densePerplexity: 10.25,
  metric,
  quality: -0.5,
  denseQuality: -0.75,
});
const scored = { quality: -0.5, denseQuality: -0.75, tokens: 3 };
const record = (metric: QualityMetric, data: Parameters<typeof calibrationRecord>[3]) =>
  JSON.stringify(calibrationRecord(weightLeading(metric), metric, scored, data));
const lead = (metric: string) =>
  `"data":"calib/","tokens":1024,"perplexity":12.5,"densePerplexity":10.25,"metric":"${metric}","quality":-0.5,"denseQuality":-0.75`;

describe('calibrationRecord', () => {
  test('text metrics add nothing to the leading fields (the perplexity is among them)', () => {
    assert.equal(record('ppl', all), `{${lead('ppl')}}`);
    assert.equal(record('kl', all), `{${lead('kl')}}`);
  });

  test('bleu: BLEU and dense BLEU, then the calibration task (none without one)', () => {
    assert.equal(
      record('bleu', { calibTask }),
      `{${lead('bleu')},"bleu":0.5,"denseBleu":0.75,"task":{"from":"pages","source":"calib/","items":3,"taskItems":5}}`,
    );
    assert.equal(record('bleu', {}), `{${lead('bleu')},"bleu":0.5,"denseBleu":0.75}`);
  });

  test('mc-accuracy: accuracy and dense accuracy, then the multiple-choice file (none without one)', () => {
    assert.equal(
      record('mc-accuracy', { calibChoices }),
      `{${lead('mc-accuracy')},"accuracy":0.5,"denseAccuracy":0.75,"choices":{"source":"mc.jsonl","sha256":"c0ffee","items":3,"taskItems":3}}`,
    );
    assert.equal(record('mc-accuracy', {}), `{${lead('mc-accuracy')},"accuracy":0.5,"denseAccuracy":0.75}`);
  });

  test('accuracy and macro-f1: their score and its dense one, then the labelled file; nothing without it', () => {
    const labelled =
      '"labelled":{"source":"labelled.jsonl","sha256":"beef","items":3,"fileItems":4,"truncated":1,"labels":["neg","pos"]}';
    assert.equal(
      record('accuracy', { calibLabelled }),
      `{${lead('accuracy')},"accuracy":0.5,"denseAccuracy":0.75,${labelled}}`,
    );
    assert.equal(
      record('macro-f1', { calibLabelled }),
      `{${lead('macro-f1')},"macroF1":0.5,"denseMacroF1":0.75,${labelled}}`,
    );
    assert.equal(record('macro-f1', {}), `{${lead('macro-f1')}}`);
  });

  test("a head run's leading fields keep their own order", () => {
    const r = calibrationRecord(
      { quality: -9, denseQuality: -12, metric: 'bleu' as const, tokens: 4 },
      'bleu',
      { quality: -9, denseQuality: -12, tokens: 4 },
      { calibTask: { ...calibTask, from: 'file', sha256: 'abc' } as RunTask },
    );
    assert.equal(
      JSON.stringify(r),
      '{"quality":-9,"denseQuality":-12,"metric":"bleu","tokens":4,"bleu":9,"denseBleu":12,"task":{"from":"file","source":"calib/","sha256":"abc","items":4,"taskItems":5}}',
    );
  });

  test('a name the registry does not know adds nothing', () => {
    assert.equal(record('nope' as QualityMetric, all), `{${lead('nope')}}`);
  });
});
