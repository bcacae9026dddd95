/**
 * The one rule that picks an NSGA-II run's mask from its front (runs/front.ts), on hand-made fronts whose answers
 * are worked out by hand: the best point at the target size; with none there, the nearest size, said so; ties
 * broken by quality, kept parameters and genome text, never by the order of the points. And `--pick` parsing.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { GenepruneError } from '../../src/errors.js';
import {
  type FrontPoint,
  frontOfArchive,
  offTargetText,
  parsePick,
  pickBySpec,
  pickFromFront,
  targetRemovedOf,
} from '../../src/runs/front.js';

/** A point of a 10-gene space removing `removed` genes (the first ones), with its quality and kept parameters. */
function point(removed: number, quality: number, kept = 100 - 10 * removed): FrontPoint {
  const genome = `${'0'.repeat(removed)}${'1'.repeat(10 - removed)}`;
  return { genome, quality, sparsity: removed / 10, keptParameters: kept };
}

describe('pickFromFront', () => {
  test('the best quality among the points at the target size', () => {
    const front = [point(5, 9), point(3, 5), point(3, 4.5, 69), point(2, 4), point(0, 3)];
    const p = pickFromFront(front, 10, 3)!;
    // Two points remove 3; 4.5 < 5.
    assert.equal(p.index, 2);
    assert.equal(p.atTarget, true);
    assert.equal(p.removed, 3);
  });

  test('no point at the target: the nearest size, flagged; equal distance goes to the better quality', () => {
    const front = [point(6, 9), point(4, 6), point(2, 4), point(0, 3)];
    // Target 3: sizes 4 and 2 are both one away; quality 4 beats 6.
    const p = pickFromFront(front, 10, 3)!;
    assert.equal(p.removed, 2);
    assert.equal(p.atTarget, false);
    assert.equal(p.targetRemoved, 3);
    // Target 5: 4 and 6 are one away; 6 beats 9.
    assert.equal(pickFromFront(front, 10, 5)!.removed, 4);
    assert.equal(
      offTargetText(pickFromFront(front, 10, 3)!, 10),
      'no front point removes 3/10 heads (the target); picked the nearest size, 2/10',
    );
  });

  test('the pick does not depend on the order of the points', () => {
    const a = { genome: '0011111111', quality: 4, sparsity: 0.2, keptParameters: 80 };
    const b = { genome: '1100111111', quality: 4, sparsity: 0.2, keptParameters: 80 };
    const c = { genome: '1111001111', quality: 4, sparsity: 0.2, keptParameters: 79 };
    // Equal quality: fewer kept parameters wins (c); without c, the smaller genome text (a).
    assert.equal(pickFromFront([a, b, c], 10, 2)!.point, c);
    assert.equal(pickFromFront([c, b, a], 10, 2)!.point, c);
    assert.equal(pickFromFront([b, a], 10, 2)!.point, a);
    assert.equal(pickFromFront([a, b], 10, 2)!.point, a);
  });

  test('a non-finite quality loses to any finite one at the same size', () => {
    const bad = { ...point(3, Number.POSITIVE_INFINITY, 60), genome: '0001111111' };
    const good = { ...point(3, 50, 70), genome: '1110001111' };
    assert.equal(pickFromFront([bad, good], 10, 3)!.point, good);
  });

  test('an empty front picks nothing; the default target is a quarter of the genes', () => {
    assert.equal(pickFromFront([], 10, 3), undefined);
    assert.equal(targetRemovedOf(undefined, 40), 10);
    assert.equal(targetRemovedOf(0.3, 40), 12);
  });
});

describe('frontOfArchive', () => {
  test('the non-dominated masks, by kept parameters; failed masks left out', () => {
    const archive = [
      point(0, 3),
      point(2, 4),
      point(2, 4.5), // same size as (2, 4), worse: dominated
      point(4, 4.2), // smaller and better than (3, 5): dominates it
      point(3, 5),
      point(8, Number.POSITIVE_INFINITY), // would be on the front for its size alone
      point(6, 9),
    ];
    const front = frontOfArchive(archive);
    assert.deepEqual(
      front.map((p) => [p.sparsity * 10, p.quality]),
      [
        [6, 9],
        [4, 4.2],
        [2, 4],
        [0, 3],
      ],
    );
  });
});

describe('--pick values', () => {
  const front = [point(6, 9), point(4, 6), point(2, 4), point(0, 3)];
  test('sparsity=S applies the run rule at round(S × genes); N is a front index', () => {
    assert.deepEqual(parsePick('sparsity=0.4'), { kind: 'sparsity', sparsity: 0.4 });
    assert.deepEqual(parsePick('3'), { kind: 'index', index: 3 });
    assert.equal(pickBySpec(front, 10, parsePick('sparsity=0.4')).index, 1);
    assert.equal(pickBySpec(front, 10, parsePick('sparsity=0.3')).atTarget, false);
    assert.equal(pickBySpec(front, 10, parsePick('2')).point, front[2]);
  });

  test('malformed values and an index past the end are refused, naming --pick', () => {
    for (const bad of ['', 'sparsity=', 'sparsity=1.5', 'sparsity=-0.1', 'half', '-1', '2.5', 'index=2']) {
      assert.throws(
        () => parsePick(bad),
        (e: GenepruneError) => e.where === '--pick',
        bad,
      );
    }
    assert.throws(
      () => pickBySpec(front, 10, { kind: 'index', index: 4 }),
      /past the front's end \(4 points: 0–3\)/,
    );
  });
});
