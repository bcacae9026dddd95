/**
 * The head and weight settings' metric checks, which read the metric registry (metrics/registry.ts) instead of
 * naming metrics: for every built-in metric, the refusals (flag and message) and the --low-items bound are the
 * ones these lines write out by hand.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { GenepruneError } from '../../src/errors.js';
import { QUALITY_METRICS, type QualityMetric } from '../../src/metrics/registry.js';
import { type HeadSearchOptions, headSearchSettings } from '../../src/spaces/heads/settings.js';
import { weightPruneSettings } from '../../src/spaces/weights/settings.js';

/** The refusal a call throws, as `flag: message`; undefined when it is accepted. */
function refusal(f: () => unknown): string | undefined {
  try {
    f();
    return undefined;
  } catch (e) {
    assert.ok(e instanceof GenepruneError, String(e));
    return `${e.where}: ${e.message}`;
  }
}

const heads = (metric: QualityMetric, more: Partial<HeadSearchOptions> = {}) =>
  refusal(() =>
    headSearchSettings({ calib: 'c', eval: 'e', metric, fitness: 'lambda', ...more } as HeadSearchOptions),
  );

describe('head search settings by metric', () => {
  test('sos fitness: perplexity only', () => {
    for (const metric of QUALITY_METRICS) {
      assert.equal(
        heads(metric, { fitness: 'sos' }),
        metric === 'ppl'
          ? undefined
          : `--fitness: sos multiplies perplexity by (1 − sparsity); with --metric ${metric} use lambda or budget (or give --target-sparsity)`,
        metric,
      );
    }
  });

  test('--low-tokens: token metrics only; the others are told of --low-items', () => {
    const text: QualityMetric[] = ['ppl', 'kl'];
    for (const metric of QUALITY_METRICS) {
      assert.equal(
        heads(metric, { lowTokens: 100 }),
        text.includes(metric)
          ? undefined
          : `--low-tokens: with --metric ${metric} the cheap first pass scores fewer task items: --low-items`,
        metric,
      );
    }
  });

  test('--low-items is bounded by 32 calibration items unless the task scores all its items', () => {
    const allItems: QualityMetric[] = ['mc-accuracy', 'accuracy', 'macro-f1'];
    for (const metric of QUALITY_METRICS) {
      assert.equal(
        heads(metric, { lowItems: 40 }),
        allItems.includes(metric) ? undefined : '--low-items: must be below --calib-items (32)',
        metric,
      );
      assert.equal(
        heads(metric, { lowItems: 40, calibItems: 40 }),
        '--low-items: must be below --calib-items (40)',
      );
    }
  });

  test('--recover: refused with labelled items only', () => {
    for (const metric of QUALITY_METRICS) {
      assert.equal(
        heads(metric, { recover: true }),
        metric === 'accuracy' || metric === 'macro-f1'
          ? `--recover: refits o on calibration text; not with --metric ${metric} (labelled items)`
          : undefined,
        metric,
      );
    }
  });
});

describe('weight settings by metric', () => {
  test('--recover: refused with kl only', () => {
    for (const metric of QUALITY_METRICS) {
      assert.equal(
        refusal(() => weightPruneSettings({ calib: 'c', eval: 'e', metric, recover: true, sparsity: 0.5 })),
        metric === 'kl'
          ? '--metric: kl after --recover would compare the recovered model with itself unpruned, not with the dense model; use ppl or bleu'
          : undefined,
        metric,
      );
    }
  });
});
