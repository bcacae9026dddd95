import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseIntFlag } from '../../src/cli/options.js';
import { GenepruneError } from '../../src/errors.js';

const flagErrorFor = (flag: string, pattern: RegExp) => (e: unknown) =>
  e instanceof GenepruneError && e.kind === 'flag' && e.where === flag && pattern.test(e.message);

describe('parseIntFlag', () => {
  it('why: --seed 9007199254740993 silently became …992 — values past the exact range are refused', () => {
    assert.throws(
      () => parseIntFlag('--seed', '9007199254740993', 0),
      flagErrorFor('--seed', /^9007199254740993 is outside the exact integer range/),
    );
    assert.throws(() => parseIntFlag('--seed', '9007199254740992', 0), flagErrorFor('--seed', /outside/));
    assert.throws(
      () => parseIntFlag('--max-tokens', '1'.repeat(400)),
      flagErrorFor('--max-tokens', /outside/),
    );
  });

  it('keeps every exact integer, up to 2^53 − 1', () => {
    assert.equal(parseIntFlag('--seed', '9007199254740991', 0), 9007199254740991);
    assert.equal(parseIntFlag('--seed', ' 42 ', 0), 42);
    assert.throws(() => parseIntFlag('--ctx', '0'), flagErrorFor('--ctx', /must be ≥ 1/));
    assert.throws(() => parseIntFlag('--ctx', '1e3'), flagErrorFor('--ctx', /expected an integer/));
  });
});
