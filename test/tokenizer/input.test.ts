import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { longestFirstLengths } from '../../src/tokenizer/input.js';

describe('longest_first truncation lengths', () => {
  test('lengths of 0, 2, 4 and 8 tokens in every order within a budget of 7', () => {
    // [first, second] → kept, worked out from the rule: the shorter stays whole when it is at most half the budget
    // (the longer gets the rest); otherwise 3 and 4, the 4 to the text that was longer (to the second on a tie).
    const cases: [number, number, number, number][] = [
      [0, 0, 0, 0],
      [0, 8, 0, 7],
      [2, 2, 2, 2],
      [2, 4, 2, 4],
      [2, 8, 2, 5],
      [4, 2, 4, 2],
      [4, 4, 3, 4],
      [4, 8, 3, 4],
      [8, 0, 7, 0],
      [8, 2, 5, 2],
      [8, 4, 4, 3],
      [8, 8, 3, 4],
    ];
    for (const [first, second, keepFirst, keepSecond] of cases) {
      assert.deepEqual(longestFirstLengths(first, second, 7), [keepFirst, keepSecond], `${first}, ${second}`);
    }
  });

  test('a budget of 0 keeps nothing; an unlimited budget keeps everything', () => {
    assert.deepEqual(longestFirstLengths(4, 4, 0), [0, 0]);
    assert.deepEqual(longestFirstLengths(5, 0, 0), [0, 0]);
    assert.deepEqual(longestFirstLengths(1000, 3, Number.POSITIVE_INFINITY), [1000, 3]);
  });
});
