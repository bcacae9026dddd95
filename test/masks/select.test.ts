/**
 * Score-based weight selection against masks worked out by hand on small matrices: magnitude and Wanda scores,
 * per-row, per-matrix and global budgets, N:M patterns, ties, and refusals.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  holdsPattern,
  magnitudeScores,
  parsePattern,
  prunedCount,
  selectGlobal,
  selectNm,
  selectPerMatrix,
  selectPerRow,
  wandaScores,
} from '../../src/masks/select.js';

// A 2×4 weight, row-major [out, in].
const W = Float32Array.from([0.5, -2, 0.1, 1, -0.3, 0.2, 4, -0.05]);

describe('score-based selection', () => {
  test('magnitude per matrix at 50 %: the four smallest |w| go (0.05, 0.1, 0.2, 0.3)', () => {
    const keep = selectPerMatrix(magnitudeScores(W), 0.5);
    assert.deepEqual([...keep], [1, 1, 0, 1, 0, 0, 1, 0]);
  });

  test('magnitude per row at 50 %: each row loses its two smallest', () => {
    // Row 0 |w| = .5 2 .1 1 → drop .1 and .5; row 1 |w| = .3 .2 4 .05 → drop .05 and .2.
    assert.deepEqual([...selectPerRow(magnitudeScores(W), 2, 4, 0.5)], [0, 1, 0, 1, 1, 0, 1, 0]);
  });

  test('Wanda: |W_ij|·‖X_j‖₂ changes the choice when one input column is large', () => {
    // Squared column norms 1, 1, 100, 1 → norms 1 1 10 1: row 0 scores .5 2 1 1, row 1 .3 .2 40 .05.
    const scores = wandaScores(W, 2, 4, [1, 1, 100, 1]);
    assert.deepEqual(
      [...scores].map((v) => Number(v.toFixed(6))),
      [0.5, 2, 1, 1, 0.3, 0.2, 40, 0.05],
    );
    // Row 0: lowest .5 (j0), then a tie 1 = 1 at j2 and j3 broken by position → j2 goes.
    assert.deepEqual([...selectPerRow(scores, 2, 4, 0.5)], [0, 1, 0, 1, 1, 0, 1, 0]);
    // Magnitude alone would have kept j0 over j2 in row 0 at 25 %: |.1| < |.5|.
    assert.deepEqual([...selectPerRow(magnitudeScores(W), 2, 4, 0.25)].slice(0, 4), [1, 1, 0, 1]);
    assert.deepEqual([...selectPerRow(scores, 2, 4, 0.25)].slice(0, 4), [0, 1, 1, 1]);
  });

  test('2:4 keeps the two largest of each group of four; 1:2 one of each pair', () => {
    // Row 0 |w| = .5 2 .1 1 keeps 2 and 1; row 1 |w| = .3 .2 4 .05 keeps 4 and .3.
    const keep = selectNm(magnitudeScores(W), 2, 4, { n: 2, m: 4 });
    assert.deepEqual([...keep], [0, 1, 0, 1, 1, 0, 1, 0]);
    assert.ok(holdsPattern(keep, 4, { n: 2, m: 4 }));
    // Pairs (.5, 2) (.1, 1) | (.3, .2) (4, .05).
    const half = selectNm(magnitudeScores(W), 2, 4, { n: 1, m: 2 });
    assert.deepEqual([...half], [0, 1, 0, 1, 1, 0, 1, 0]);
    assert.ok(!holdsPattern(Uint8Array.from([1, 1, 1, 0, 0, 0, 0, 0]), 4, { n: 2, m: 4 }));
    assert.throws(
      () => selectNm(magnitudeScores(W), 2, 4, { n: 2, m: 3 }),
      /does not divide into groups of 3/,
    );
  });

  test('global: one threshold over two matrices that end at different sparsities', () => {
    const a = Float32Array.from([1, 2, 3, 4]);
    const b = Float32Array.from([0.5, 5, 6, 0.7, 8, 9]);
    // Ten weights at 40 %: the four lowest are b0 (.5), b3 (.7), a0 (1), a1 (2).
    const [ka, kb] = selectGlobal([a, b], 0.4);
    assert.deepEqual([...ka], [0, 0, 1, 1]);
    assert.deepEqual([...kb], [0, 1, 1, 0, 1, 1]);
  });

  test('pruned counts round to the nearest weight; ties go by position; bad input is refused', () => {
    assert.equal(prunedCount(64, 0.3), 19); // 19.2
    assert.equal(prunedCount(10, 0.25), 3); // 2.5 rounds up
    assert.deepEqual([...selectPerMatrix([1, 1, 1, 1], 0.5)], [0, 0, 1, 1]);
    assert.throws(() => selectPerMatrix([1, 2], 1), /outside \[0, 1\)/);
    assert.throws(() => selectPerMatrix([1, 2], -0.1), /outside \[0, 1\)/);
    assert.throws(() => selectPerMatrix([1, Number.NaN], 0.5), /score 1 is NaN/);
    assert.throws(() => wandaScores(W, 2, 4, [1, 1, 1]), /3 input norms for 4 inputs/);
  });

  test('patterns parse as N:M with 0 < N < M', () => {
    assert.deepEqual(parsePattern('2:4'), { n: 2, m: 4 });
    assert.deepEqual(parsePattern('4:8'), { n: 4, m: 8 });
    for (const bad of ['4:4', '0:4', '2-4', '2:', ' 2:4']) assert.equal(parsePattern(bad), undefined, bad);
  });
});
