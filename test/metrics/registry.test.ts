/**
 * The metric registry (metrics/registry.ts):
 * - every QualityMetric has an entry, with the label, direction, scale and data kind written out by hand here;
 * - qualities and reported values round-trip, a better reported value is always a lower quality, and the
 *   fitness's normalisation, the quoted values and the result.json records match hand-computed numbers;
 * - a toy metric registered from this file alone is usable by an objective: `createObjective` builds it from its
 *   entry, caches and counts it, the fitness normalises with it, the non-finite refusal names it, and its
 *   score under real masks on a real (random) model agrees with the built-in perplexity objective's
 *   (mean NLL = log perplexity).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createRunner } from '../../src/engine/runner.js';
import { GenepruneError } from '../../src/errors.js';
import { evaluatePerplexity, makeWindows } from '../../src/metrics/perplexity.js';
import {
  amountUnit,
  blockSearchMetrics,
  calibRecord,
  findMetric,
  generationMetrics,
  isClassificationMetric,
  isNegatedMetric,
  isPerplexity,
  type MetricEntry,
  metricEntry,
  metricLabel,
  metricNames,
  metricsScoredOn,
  orList,
  QUALITY_METRICS,
  type QualityMetric,
  qualityOfValue,
  quoteValue,
  registerMetric,
  reportedQuality,
} from '../../src/metrics/registry.js';
import { parameterCount } from '../../src/model/cost.js';
import { randomLlamaSpec } from '../../src/model/random.js';
import { normalisedQuality } from '../../src/search/fitness.js';
import { createObjective } from '../../src/search/objective.js';
import { createHeadSpace } from '../../src/spaces/heads/space.js';

/** What each built-in metric is, written out by hand (a Record over QualityMetric: a metric left out fails tsc). */
const EXPECTED: Record<
  QualityMetric,
  { label: string; direction: 'lower' | 'higher'; scale?: number; data: string; unit: 'tokens' | 'items' }
> = {
  ppl: { label: 'ppl', direction: 'lower', data: 'text', unit: 'tokens' },
  kl: { label: 'KL', direction: 'lower', data: 'text', unit: 'tokens' },
  bleu: { label: 'BLEU', direction: 'higher', scale: 100, data: 'task', unit: 'items' },
  'exact-match': { label: 'exact match', direction: 'higher', scale: 1, data: 'task', unit: 'items' },
  'pass@1': { label: 'pass@1', direction: 'higher', scale: 1, data: 'task', unit: 'items' },
  'mc-accuracy': { label: 'accuracy', direction: 'higher', scale: 1, data: 'choices', unit: 'items' },
  accuracy: { label: 'accuracy', direction: 'higher', scale: 1, data: 'labels', unit: 'items' },
  'macro-f1': { label: 'macro-F1', direction: 'higher', scale: 1, data: 'labels', unit: 'items' },
};

describe('built-in metrics', () => {
  test('every QualityMetric has an entry with its label, direction, scale and data kind', () => {
    assert.deepEqual([...QUALITY_METRICS].sort(), Object.keys(EXPECTED).sort());
    assert.deepEqual(metricNames().slice(0, QUALITY_METRICS.length), [...QUALITY_METRICS]);
    for (const name of QUALITY_METRICS) {
      const e = metricEntry(name);
      const want = EXPECTED[name];
      assert.equal(e.name, name);
      assert.equal(e.label, want.label, name);
      assert.equal(metricLabel(name), want.label, name);
      assert.equal(e.direction, want.direction, name);
      assert.equal(e.scale, want.scale, name);
      assert.equal(e.data, want.data, name);
      assert.equal(amountUnit(e), want.unit, name);
      assert.equal(isNegatedMetric(name), want.direction === 'higher', name);
      assert.equal(isClassificationMetric(name), want.data === 'labels', name);
      assert.equal(typeof e.objective, 'function', name);
    }
    // Only perplexity is meant for sos; only KL is scored against the dense model's own outputs.
    assert.deepEqual(
      QUALITY_METRICS.filter((m) => metricEntry(m).sos),
      ['ppl'],
    );
    assert.deepEqual(
      QUALITY_METRICS.filter((m) => metricEntry(m).denseReference),
      ['kl'],
    );
  });

  test('unknown names: findMetric says undefined, metricEntry refuses in one line', () => {
    assert.equal(findMetric('pass@k'), undefined);
    assert.equal(findMetric(undefined), undefined);
    assert.equal(findMetric(42), undefined);
    assert.throws(
      () => metricEntry('pass@k'),
      (e: unknown) => e instanceof GenepruneError && !e.message.includes('\n') && /pass@k/.test(e.message),
    );
    // Lookups that tolerate a run file's unknown metric treat it as lower-is-better, not negated.
    assert.equal(isNegatedMetric('pass@k' as QualityMetric), false);
    assert.equal(reportedQuality('pass@k' as QualityMetric, 3), 3);
  });

  test('reported values and qualities round-trip; a better value is always a lower quality', () => {
    const hand: Array<[QualityMetric, number, number]> = [
      // metric, reported value, the objective's quality for it
      ['ppl', 12.5, 12.5],
      ['kl', 0.031, 0.031],
      ['bleu', 9.1, -9.1],
      ['mc-accuracy', 0.62, -0.62],
      ['accuracy', 0.875, -0.875],
      ['macro-f1', 0.4, -0.4],
    ];
    for (const [m, value, quality] of hand) {
      assert.equal(qualityOfValue(m, value), quality, m);
      assert.equal(reportedQuality(m, quality), value, m);
      assert.equal(reportedQuality(m, qualityOfValue(m, value)), value, m);
    }
    for (const m of QUALITY_METRICS) {
      const [better, worse] = metricEntry(m).direction === 'lower' ? [2, 3] : [0.75, 0.5];
      assert.ok(qualityOfValue(m, better) < qualityOfValue(m, worse), m);
    }
  });

  test('the fitness normalises each metric as its entry says (hand values)', () => {
    const hand: Array<[QualityMetric, number, number, number]> = [
      // metric, quality, dense quality, normalised (dense model at 1 for ppl, 0 for the others)
      ['ppl', 15, 10, 1.5],
      ['ppl', 10, 10, 1],
      ['kl', 0.2, 0, 0.2],
      ['bleu', -4.55, -9.1, 0.5],
      ['bleu', -9.1, -9.1, 0],
      ['bleu', -5, 0, -0.05], // dense BLEU 0: −BLEU/100
      ['mc-accuracy', -0.31, -0.62, 0.5],
      ['accuracy', -0.25, 0, -0.25], // dense accuracy 0: −accuracy
      ['macro-f1', -0.6, -0.8, 0.25],
    ];
    for (const [metric, q, dense, want] of hand) {
      const got = normalisedQuality({ kind: 'budget', metric, lambda: 0, denseQuality: dense }, q);
      assert.ok(Math.abs(got - want) < 1e-12, `${metric} ${q}/${dense}: ${got} ≠ ${want}`);
    }
  });

  test('values are quoted and recorded as the CLI and result.json have them', () => {
    assert.equal(quoteValue(metricEntry('ppl'), 12.345678), '12.3457');
    assert.equal(quoteValue(metricEntry('kl'), 0.0123456), '0.0123');
    assert.equal(quoteValue(metricEntry('bleu'), 9.1234), '9.12');
    assert.equal(quoteValue(metricEntry('mc-accuracy'), 0.6194), '61.9 %');
    assert.equal(quoteValue(metricEntry('macro-f1'), 0.5), '50.0 %');
    assert.deepEqual(calibRecord('bleu', -9.1, -12.3), { bleu: 9.1, denseBleu: 12.3 });
    assert.deepEqual(calibRecord('mc-accuracy', -0.5, -0.75), { accuracy: 0.5, denseAccuracy: 0.75 });
    assert.deepEqual(calibRecord('macro-f1', -0.5, -0.75), { macroF1: 0.5, denseMacroF1: 0.75 });
    assert.deepEqual(calibRecord('ppl', 12, 10), { perplexity: 12, densePerplexity: 10 });
    assert.deepEqual(calibRecord('kl', 0.1, 0), {});
  });

  test("refusals list the metrics of a data kind as the runs' flag checks word them", () => {
    assert.deepEqual(metricsScoredOn(['text']), ['ppl', 'kl']);
    assert.deepEqual(metricsScoredOn(['task']), ['bleu', 'exact-match', 'pass@1']);
    assert.deepEqual(metricsScoredOn(['choices']), ['mc-accuracy']);
    assert.equal(orList(metricsScoredOn(['task'])), 'bleu, exact-match or pass@1');
    assert.equal(orList(metricsScoredOn(['labels'])), 'accuracy or macro-f1');
    // runs/tasks.ts: --calib-items is "only with --metric bleu, …, accuracy or macro-f1".
    assert.equal(
      orList(metricsScoredOn(['task', 'choices', 'labels'])),
      'bleu, exact-match, pass@1, mc-accuracy, accuracy or macro-f1',
    );
    assert.equal(orList([]), '');
  });

  test('the perplexity, and what the block-wise weight searches score, by entry', () => {
    assert.equal(isPerplexity(undefined), true);
    assert.deepEqual(
      QUALITY_METRICS.filter((m) => isPerplexity(m)),
      ['ppl'],
    );
    assert.deepEqual(
      QUALITY_METRICS.map((m) => metricEntry(m).blockSearch),
      ['suffix', undefined, 'generation', 'generation', 'generation', undefined, undefined, undefined],
    );
    // spaces/weights/ga.ts: "block-wise searches score ppl, bleu, exact-match or pass@1, not …".
    assert.equal(orList(blockSearchMetrics()), 'ppl, bleu, exact-match or pass@1');
    // The generation metrics, each read from the same generations; only pass@1 runs code.
    assert.deepEqual(generationMetrics(), ['bleu', 'exact-match', 'pass@1']);
    assert.deepEqual(
      QUALITY_METRICS.filter((m) => metricEntry(m).executesCode),
      ['pass@1'],
    );
  });
});

describe('a toy metric registered from a test file', () => {
  const spec = randomLlamaSpec({
    hiddenSize: 16,
    numLayers: 2,
    numHeads: 2,
    numKvHeads: 2,
    intermediateSize: 16,
    vocabSize: 64,
    maxPositions: 32,
    seed: 3,
  });
  const stream = Array.from({ length: 80 }, (_, i) => (i * 11 + 5) % 64);

  /** Mean NLL per token (log perplexity), lower is better, with its own 'nll' runner. */
  const toy: MetricEntry = {
    name: 'toy-nll',
    label: 'NLL',
    noun: 'toy NLL',
    title: 'mean NLL',
    direction: 'lower',
    unit: 'nats/token',
    digits: 3,
    data: 'text',
    denseReference: false,
    sos: false,
    normalise: (quality, dense) => quality - dense,
    async objective(model, target, opts) {
      const windows = makeWindows(opts.stream, opts.context, opts.tokens, 'toy data');
      const runner = await createRunner(model, { output: 'nll', weightMasks: target.weightRoles?.slice() });
      return {
        runner,
        async score(masks) {
          const r = await evaluatePerplexity(runner, windows, { masks, batchSize: 2, nonFinite: 'infinite' });
          return { quality: r.meanNll, tokens: r.tokens, forwards: 3, source: windows.source };
        },
      };
    },
  };
  // Registered only while this suite runs: the built-in suite above sees the registry as shipped.
  let unregister = () => {};
  before(() => {
    unregister = registerMetric(toy);
  });
  after(() => unregister());
  const toyMetric = 'toy-nll' as QualityMetric;

  test('createObjective builds it from its entry; caches, counts and normalises it like any metric', async () => {
    const space = createHeadSpace(spec.config, parameterCount(spec));
    const opts = { stream, context: 16 };
    const objective = await createObjective(spec, space, { ...opts, metric: toyMetric });
    const ppl = await createObjective(spec, space, { ...opts, metric: 'ppl' });
    try {
      assert.equal(objective.metric, 'toy-nll');
      const cut = space.full();
      cut[1] = 0;
      for (const g of [space.full(), cut]) {
        const nll = await objective.evaluate(g);
        const p = await ppl.evaluate(g);
        assert.equal(nll.tokens, p.tokens);
        // The toy's mean NLL under the same masks is the log of the built-in objective's perplexity.
        assert.ok(Math.abs(nll.quality - Math.log(p.quality)) < 1e-9, `${nll.quality} vs log ${p.quality}`);
      }
      const full = (await objective.evaluate(space.full())).quality;
      const pruned = (await objective.evaluate(cut)).quality;
      assert.notEqual(pruned, full);
      // Two distinct evaluations, the repeats from the cache; forward passes as the toy's scorer counted them.
      assert.equal(objective.evaluations(), 2);
      assert.equal(objective.forwardPasses(), 6);
      assert.equal((await objective.evaluate(cut)).ms, 0);
      assert.equal(metricLabel(toyMetric), 'NLL');
      assert.equal(
        normalisedQuality({ kind: 'budget', metric: toyMetric, lambda: 0, denseQuality: full }, pruned),
        pruned - full,
      );
    } finally {
      await objective.release();
      await ppl.release();
    }
  });

  test("the non-finite refusal names the toy's value and amounts", async () => {
    const broken: MetricEntry = {
      ...toy,
      name: 'toy-broken',
      async objective() {
        return {
          runner: { release: async () => {} },
          score: async () => ({ quality: Number.NaN, tokens: 48, forwards: 1, source: 'toy.txt' }),
        };
      },
    };
    const remove = registerMetric(broken);
    try {
      const space = createHeadSpace(spec.config, parameterCount(spec));
      const objective = await createObjective(spec, space, {
        stream,
        context: 16,
        metric: 'toy-broken' as QualityMetric,
      });
      await assert.rejects(objective.evaluate(space.full()), (e: unknown) => {
        assert.ok(e instanceof GenepruneError);
        assert.match(
          e.message,
          /the unpruned model scores a non-finite toy NLL on the calibration data \(full fidelity, 48 tokens\): nothing to search/,
        );
        assert.equal(e.where, 'toy.txt');
        return true;
      });
      const cut = space.full();
      cut[0] = 0;
      assert.equal((await objective.evaluate(cut)).quality, Number.POSITIVE_INFINITY);
    } finally {
      remove();
    }
  });

  test('a taken name is refused; an unregistered toy is gone', () => {
    assert.throws(() => registerMetric({ ...toy }), /already registered/);
    assert.throws(() => registerMetric({ ...metricEntry('ppl') }), /already registered/);
    const remove = registerMetric({ ...toy, name: 'toy-gone' });
    assert.equal(findMetric('toy-gone')?.label, 'NLL');
    remove();
    assert.equal(findMetric('toy-gone'), undefined);
    assert.equal(findMetric('ppl')?.label, 'ppl');
  });
});
