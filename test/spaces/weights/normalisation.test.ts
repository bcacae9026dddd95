/**
 * The one normalisation (search/fitness.ts `relativeQuality`) gives, bit for bit, the quality the block-wise
 * weight searches have always weighed — −ppl/ppl_dense, BLEU/BLEU_dense, or BLEU/100 when the dense model
 * scores 0 — and the head fitness's normalised quality it always had: ppl/ppl_dense and
 * (quality − dense)/|dense| for BLEU (quality −BLEU), −BLEU/100 at a dense BLEU of 0.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { normalisedQuality, relativeQuality } from '../../../src/search/fitness.js';
import { createRng } from '../../../src/util/rng.js';

test('relativeQuality reproduces both former normalisations exactly', () => {
  const rng = createRng(4);
  for (let k = 0; k < 2000; k++) {
    const v = 1 + 50 * rng.nextFloat();
    const d = 1 + 20 * rng.nextFloat();
    const b = 100 * rng.nextFloat();
    const B = k % 10 === 0 ? 0 : 100 * rng.nextFloat();
    // The block searches (higher is better): their former formula, written out.
    assert.equal(-relativeQuality('ppl', v, d), -v / d);
    assert.equal(-relativeQuality('bleu', -b, -B), B > 0 ? b / B : b / 100);
    // The head fitness (lower is better): its former formula, written out.
    const ppl = { kind: 'lambda' as const, metric: 'ppl' as const, lambda: 0, denseQuality: d };
    assert.equal(normalisedQuality(ppl, v), v / d);
    const bleu = { kind: 'lambda' as const, metric: 'bleu' as const, lambda: 0, denseQuality: -B };
    assert.equal(normalisedQuality(bleu, -b), B === 0 ? -b / 100 : (-b - -B) / Math.abs(-B));
  }
  assert.equal(relativeQuality('mc-accuracy', -0.25, 0), -0.25);
  assert.equal(relativeQuality('bleu', -30, -60), -0.5);
  assert.equal(relativeQuality('ppl', 12, 4), 3);
});
