/**
 * One quality normalisation (search/fitness.ts `normalisedQuality`) serves the head fitness and the block
 * searches: both give, to the last bit, what their own formulas gave before (written out here), over perplexities
 * and BLEU values on a seeded grid, dense BLEU 0, non-finite values included.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { normalisedQuality } from '../../src/search/fitness.js';
import { normalizedQuality } from '../../src/spaces/weights/blockwise.js';
import { createRng } from '../../src/util/rng.js';

/** The block searches' formula as it was: higher is better, the dense model at −1 (ppl) or +1 (BLEU). */
function blockFormula(metric: 'ppl' | 'bleu', value: number, dense: number): number {
  const q = metric === 'ppl' ? -value / dense : dense > 0 ? value / dense : value / 100;
  return Number.isNaN(q) ? Number.NEGATIVE_INFINITY : q;
}

/** The head fitness's formula as it was (quality −BLEU for bleu): lower is better, the dense model at 1 or 0. */
function headFormula(metric: 'ppl' | 'bleu' | 'kl', quality: number, dense: number): number {
  if (metric === 'ppl') return quality / dense;
  if (metric === 'bleu') return dense === 0 ? quality / 100 : (quality - dense) / Math.abs(dense);
  return quality;
}

const rng = createRng(17);
const specials = [0, 1, 100, 1e-300, 7.3, Number.POSITIVE_INFINITY, Number.NaN];
const values = [...specials, ...Array.from({ length: 400 }, () => rng.nextFloat() * 100)];
const denses = [0, 1, 3.6464, 9.1, 42, ...Array.from({ length: 20 }, () => rng.nextFloat() * 60 + 0.5)];

describe('one quality normalisation', () => {
  test("the block searches' normalised quality is the 'ratio' form negated, bit for bit", () => {
    for (const metric of ['ppl', 'bleu'] as const) {
      for (const dense of denses) {
        if (metric === 'ppl' && dense === 0) continue;
        for (const v of values) {
          const want = blockFormula(metric, v, dense);
          assert.ok(Object.is(normalizedQuality(metric, v, dense), want), `${metric} ${v} / ${dense}`);
        }
      }
    }
    assert.equal(normalizedQuality('ppl', 3.6464, 3.6464), -1, 'the dense model at −1');
    assert.equal(normalizedQuality('bleu', 9.1, 9.1), 1, 'the dense model at +1');
  });

  test("the head fitness's normalised quality is the 'shifted' form, unchanged", () => {
    for (const metric of ['ppl', 'bleu', 'kl'] as const) {
      for (const dense of denses) {
        if (metric === 'ppl' && dense === 0) continue;
        const d = metric === 'bleu' ? -dense : dense;
        for (const v of values) {
          const q = metric === 'bleu' ? -v : v;
          const want = headFormula(metric, q, d);
          assert.ok(
            Object.is(normalisedQuality({ metric, denseQuality: d }, q), want),
            `${metric} ${q} / ${d}`,
          );
        }
      }
    }
    assert.equal(normalisedQuality({ metric: 'ppl', denseQuality: 4 }, 4), 1);
    assert.equal(normalisedQuality({ metric: 'bleu', denseQuality: -9 }, -9), 0);
    assert.equal(normalisedQuality({ metric: 'bleu', denseQuality: -9 }, -9, 'ratio'), -1);
  });
});
