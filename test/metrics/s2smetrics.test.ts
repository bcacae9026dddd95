/**
 * The seq2seq text metrics as the GenePrune code computes them, against values worked out by hand (the arithmetic
 * is next to each case; NLTK 3.8 gives the same numbers, docs/code-generation.md — it is not needed here):
 * - `nltkMethod1SentenceBleu` / `nltkMethod1MeanBleu`: NLTK `sentence_bleu([ref.split()], hyp.split(),
 *   weights=(0.25,)*4, smoothing_function=SmoothingFunction().method1)` and its mean, 0–1;
 * - `exactMatch` with its normalisation (trailing whitespace per line, both ends of the whole text; nothing else).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { GenepruneError } from '../../src/errors.js';
import { nltkMethod1MeanBleu, nltkMethod1SentenceBleu, sentenceMeanBleu } from '../../src/metrics/bleu.js';
import { exactMatch, exactMatchRate, normalizeForExactMatch } from '../../src/metrics/exactmatch.js';

function close(actual: number, expected: number, tol = 1e-12): void {
  assert.ok(Math.abs(actual - expected) <= tol, `${actual} is not within ${tol} of ${expected}`);
}

describe('nltkMethod1SentenceBleu (NLTK sentence_bleu, BLEU-4, method1, whitespace tokens)', () => {
  test('short hypothesis: missing 4-grams get 0.1 / max(1, 0), brevity penalty against the reference', () => {
    // hyp "the cat sat" (c = 3), ref "the cat sat on the mat" (r = 6).
    // p1 = 3/3, p2 = 2/2, p3 = 1/1; no hypothesis 4-gram: denominator max(1, 0) = 1, p4 = 0.1/1.
    // geometric mean = (1·1·1·0.1)^(1/4) = 0.1^0.25 = 0.5623413251903491; BP = exp(1 − 6/3) = e^−1.
    // 0.5623413251903491 × 0.36787944117144233 = 0.20687381245863395.
    close(nltkMethod1SentenceBleu('the cat sat', 'the cat sat on the mat'), 0.20687381245863395);
  });

  test('equal lengths, zero 3- and 4-gram matches: epsilon over each order’s own denominator', () => {
    // hyp "a b c d e", ref "a b x d e": c = r = 5, BP = 1.
    // p1 = 4/5 (a b d e); bigrams ab bc cd de vs ab bx xd de: p2 = 2/4;
    // trigrams abc bcd cde, none in the reference: p3 = 0.1/3; 4-grams abcd bcde: p4 = 0.1/2.
    // (0.8 · 0.5 · 0.0333… · 0.05)^(1/4) = 0.000666…^(1/4) = 0.16068568378893036.
    close(nltkMethod1SentenceBleu('a b c d e', 'a b x d e'), 0.16068568378893036);
  });

  test('clipped counts, hypothesis longer than the reference (BP = 1)', () => {
    // hyp "a a a a" (c = 4), ref "a a" (r = 2): BP = 1.
    // p1 = min(4, 2)/4 = 1/2; p2: "a a" ×3 clipped to 1: 1/3; p3: 0 of 2: 0.1/2; p4: 0 of 1: 0.1/1.
    // (0.5 · 0.3333… · 0.05 · 0.1)^(1/4) = 0.000833…^(1/4) = 0.16990442448471227.
    close(nltkMethod1SentenceBleu('a a a a', 'a a'), 0.16990442448471227);
  });

  test('identical texts: 1 from four tokens on; two tokens pay 0.1 for each missing order', () => {
    close(nltkMethod1SentenceBleu('def f ( x ) : return x', 'def f ( x ) : return x'), 1);
    // "a b" vs "a b": p1 = p2 = 1, p3 = p4 = 0.1/1, BP = 1: 0.1^(2/4) = 0.31622776601683794.
    close(nltkMethod1SentenceBleu('a b', 'a b'), 0.31622776601683794);
  });

  test('0 when no unigram matches (before smoothing), for an empty hypothesis and an empty reference', () => {
    assert.equal(nltkMethod1SentenceBleu('x y', 'a b'), 0);
    assert.equal(nltkMethod1SentenceBleu('', 'a b c'), 0);
    assert.equal(nltkMethod1SentenceBleu('   \n', 'a'), 0);
    assert.equal(nltkMethod1SentenceBleu('a b', ''), 0);
  });

  test("tokens are Python's str.split(): any whitespace run, U+3000 and U+001C included, U+FEFF not", () => {
    close(
      nltkMethod1SentenceBleu(' the\tcat\n  sat\r\n', 'the cat\u3000sat\x1con the mat'),
      0.20687381245863395,
    );
    // "a\uFEFFb" is one token, matching nothing in "a b".
    assert.equal(nltkMethod1SentenceBleu('a\ufeffb', 'a b'), 0);
  });

  test('case-sensitive', () => {
    assert.equal(nltkMethod1SentenceBleu('The', 'the'), 0);
  });
});

describe('nltkMethod1MeanBleu (the GenePrune code’s BLEU, 0–1)', () => {
  const hyps = ['the cat sat', 'a b c d e', 'x y', 'a b'];
  const refs = ['the cat sat on the mat', 'a b x d e', 'a b', 'a b'];

  test('the plain mean of the sentence scores', () => {
    // (0.20687381245863395 + 0.16068568378893036 + 0 + 0.31622776601683794) / 4.
    close(nltkMethod1MeanBleu(hyps, refs), 0.17094681556610059);
  });

  test('sentenceMeanBleu (sacreBLEU layout, 0–100) is the same number × 100', () => {
    close(sentenceMeanBleu(hyps, [refs]), 100 * nltkMethod1MeanBleu(hyps, refs), 1e-10);
  });

  test('refuses no hypotheses and unequal lengths', () => {
    assert.throws(() => nltkMethod1MeanBleu([], []), GenepruneError);
    assert.throws(() => nltkMethod1MeanBleu(['a'], ['a', 'b']), /1 hypotheses but 2 references/);
  });
});

describe('exactMatch', () => {
  test('trailing whitespace per line and blank lines at the ends are ignored; CRLF equals LF', () => {
    const ref = 'def f(x):\n    return x + 1';
    assert.ok(exactMatch('def f(x):   \n    return x + 1\t\n\n', ref));
    assert.ok(exactMatch('\n\ndef f(x):\r\n    return x + 1\r\n', ref));
    assert.ok(exactMatch('  def f(x):\n    return x + 1', ref), 'whitespace at the start of the whole text');
    assert.equal(normalizeForExactMatch(' \n a  \n\n  b \t\n '), 'a\n\n  b');
  });

  test('nothing else is normalised: inner spaces, indentation, inner blank lines, case', () => {
    const ref = 'def f(x):\n    return x + 1';
    assert.ok(!exactMatch('def f(x):\n    return x+1', ref));
    assert.ok(!exactMatch('def f(x):\n  return x + 1', ref));
    assert.ok(!exactMatch('def f(x):\n\n    return x + 1', ref));
    assert.ok(!exactMatch('def F(x):\n    return x + 1', ref));
  });

  test('empty texts match each other and whitespace only', () => {
    assert.ok(exactMatch('', ' \n\t'));
    assert.ok(!exactMatch('', 'a'));
  });

  test('exactMatchRate is the share of matching pairs; refuses empty and ragged input', () => {
    assert.equal(exactMatchRate(['a ', 'b', 'c'], ['a', 'B', 'c\n']), 2 / 3);
    assert.throws(() => exactMatchRate([], []), GenepruneError);
    assert.throws(() => exactMatchRate(['a'], []), /1 hypotheses but 0 references/);
  });
});
