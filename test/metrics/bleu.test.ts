/**
 * BLEU against published values, not against itself:
 * - sacreBLEU's own test suite (github.com/mjpost/sacrebleu, test/test_bleu.py and test/test_sentence_bleu.py,
 *   v2.x) and its README (the corpus example and the variable-number-of-references example);
 * - NLTK's documented examples (nltk/translate/bleu_score.py docstrings of sentence_bleu, corpus_bleu and
 *   SmoothingFunction; NLTK 3.6+), for the sentence-mean BLEU the GenePrune code reports;
 * - small cases computed by hand (the arithmetic is written out next to each).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { GenepruneError } from '../../src/errors.js';
import {
  bleuFromStatistics,
  bleuSegmentStatistics,
  closestRefLength,
  corpusBleu,
  nltkSentenceBleu,
  sentenceBleu,
  sentenceMeanBleu,
  splitWhitespace,
  tokenize13a,
} from '../../src/metrics/bleu.js';

function close(actual: number, expected: number, tol: number, what = ''): void {
  assert.ok(Math.abs(actual - expected) <= tol, `${what} ${actual} is not within ${tol} of ${expected}`);
}

// sacreBLEU README / test_bleu.py: two reference sets, three segments.
const REFS = [
  ['The dog bit the man.', 'It was not unexpected.', 'The man bit him first.'],
  ['The dog had bit the man.', 'No one was surprised.', 'The man had bitten the dog.'],
];
const HYPS = ['The dog bit the man.', "It wasn't surprising.", 'The man had just bitten him.'];

describe('corpus BLEU equals sacreBLEU (test/test_bleu.py, README)', () => {
  test('default settings (13a, exp smoothing, 4-grams): 48.530827', () => {
    const s = corpusBleu(HYPS, REFS);
    close(s.score, 48.530827, 1e-6);
    // README: BLEU = 48.53 82.4/50.0/45.5/37.5 (BP = 0.943 ratio = 0.944 hyp_len = 17 ref_len = 18)
    assert.deepEqual(
      s.precisions.map((p) => p.toFixed(1)),
      ['82.4', '50.0', '45.5', '37.5'],
    );
    assert.equal(s.bp.toFixed(3), '0.943');
    assert.equal(s.sysLen, 17);
    assert.equal(s.refLen, 18);
  });
  test("empty hypotheses are scored, not removed: ('', '', '') gives 0.0", () => {
    assert.equal(corpusBleu(['', '', ''], REFS).score, 0);
  });
  test('tokenize none 49.1919566, 13a 48.530827, intl 43.91623493; smooth none 48.530827', () => {
    close(corpusBleu(HYPS, REFS, { tokenize: 'none' }).score, 49.1919566, 1e-6);
    close(corpusBleu(HYPS, REFS, { tokenize: '13a' }).score, 48.530827, 1e-6);
    close(corpusBleu(HYPS, REFS, { tokenize: 'intl' }).score, 43.91623493, 1e-6);
    close(corpusBleu(HYPS, REFS, { smoothMethod: 'none' }).score, 48.530827, 1e-6);
  });
  test('max n-gram order 1..6: 77.65 60.50 53.93 48.53 46.14 43.28', () => {
    const expected = ['77.65', '60.50', '53.93', '48.53', '46.14', '43.28'];
    for (let order = 1; order <= 6; order++) {
      assert.equal(corpusBleu(HYPS, REFS, { maxNgramOrder: order }).score.toFixed(2), expected[order - 1]);
    }
  });
  test('variable number of references (README): 29.44 82.4/42.9/27.3/12.5, BP 0.889, ref_len 19', () => {
    const refs = [['', REFS[0][1], REFS[0][2]], REFS[1]];
    const s = corpusBleu(HYPS, refs);
    assert.equal(s.score.toFixed(2), '29.44');
    assert.deepEqual(
      s.precisions.map((p) => p.toFixed(1)),
      ['82.4', '42.9', '27.3', '12.5'],
    );
    assert.equal(s.bp.toFixed(3), '0.889');
    assert.equal(s.sysLen, 17);
    assert.equal(s.refLen, 19);
    // null means the same as '' there.
    assert.equal(corpusBleu(HYPS, [[null, REFS[0][1], REFS[0][2]], REFS[1]]).score, s.score);
  });

  // raw_corpus_bleu(hyps, refs, v) = corpus_bleu(..., smooth_method='floor', smooth_value=v, tokenize='none',
  // use_effective_order=True); test values are on the 0–1 scale.
  const raw = { smoothMethod: 'floor', tokenize: 'none', effectiveOrder: true } as const;
  test('raw BLEU cases: 0.0, 1.0, 0.223606797749979', () => {
    assert.equal(
      corpusBleu(['this is a test', 'another test'], [['ref1', 'ref2']], { ...raw, smoothValue: 0.01 }).score,
      0,
    );
    close(
      corpusBleu(['this is a test'], [['this is a test']], { ...raw, smoothValue: 0.01 }).score / 100,
      1,
      1e-8,
    );
    close(
      corpusBleu(['this is a fest'], [['this is a test']], { ...raw, smoothValue: 0.01 }).score / 100,
      0.223606797749979,
      1e-8,
    );
  });
  test('effective order cases: 0.3678794411714425, 1.0, 0.03218297948685433', () => {
    const o = { ...raw, smoothValue: 0.01 };
    close(corpusBleu(['test'], [['a test']], o).score / 100, 0.3678794411714425, 1e-8);
    close(corpusBleu(['a test'], [['a test']], o).score / 100, 1.0, 1e-8);
    close(corpusBleu(['a little test'], [['a test']], o).score / 100, 0.03218297948685433, 1e-8);
  });
  test('statistics: counts [4, 2, 1, 0], totals [6, 5, 4, 3]', () => {
    const s = corpusBleu(['am I am a character sequence'], [['I am a symbol string sequence a a']], raw);
    assert.deepEqual(s.counts, [4, 2, 1, 0]);
    assert.deepEqual(s.totals, [6, 5, 4, 3]);
  });
  test('offset: floor 0 gives 0, floor default (0.1) gives 0.1555722182', () => {
    const args = [['am I am a character sequence'], [['I am a symbol string sequence a a']]] as const;
    assert.equal(corpusBleu(...args, { ...raw, smoothValue: 0 }).score, 0);
    close(corpusBleu(...args, raw).score / 100, 0.1555722182, 1e-8);
  });
  test('scoring from statistics: [9,7,5,3] / [10,8,6,4], lengths 11/11 gives 0.8375922397', () => {
    close(bleuFromStatistics([9, 7, 5, 3], [10, 8, 6, 4], 11, 11).score / 100, 0.8375922397, 1e-8);
  });
  test('degenerate statistics give exactly 0.0', () => {
    const cases: [number[], number[], number, number, number][] = [
      [[0, 0, 0, 0], [4, 4, 2, 1], 0, 1, 0.0],
      [[0, 0, 0, 0], [10, 11, 12, 0], 14, 10, 0.0],
      [[0, 0, 0, 0], [0, 0, 0, 0], 0, 0, 0.0],
      [[6, 5, 4, 0], [6, 5, 4, 3], 6, 6, 0.0],
      [[0, 0, 0, 0], [0, 0, 0, 0], 0, 0, 0.1],
      [[0, 0, 0, 0], [0, 0, 0, 0], 1, 5, 0.01],
    ];
    for (const [c, t, sys, ref, offset] of cases) {
      assert.equal(
        bleuFromStatistics(c, t, sys, ref, { smoothMethod: 'floor', smoothValue: offset }).score,
        0,
      );
    }
  });
});

describe('sentence BLEU equals sacreBLEU (test/test_sentence_bleu.py)', () => {
  // Example from sacreBLEU issue #98.
  const REF = 'producţia de zahăr brut se exprimă în zahăr alb;';
  const SYS = 'Producția de zahăr primă va fi exprimată în ceea ce privește zahărul alb;';
  const cases: [string, number | undefined, boolean, string, number][] = [
    ['exp', undefined, false, '13a', 8.493],
    ['none', undefined, false, '13a', 0.0],
    ['floor', undefined, false, '13a', 4.51688],
    ['floor', 0.1, false, '13a', 4.51688],
    ['floor', 0.5, false, '13a', 10.1],
    ['add-k', undefined, false, '13a', 14.882],
    ['add-k', 1, false, '13a', 14.882],
    ['add-k', 2, false, '13a', 21.389],
    ['exp', undefined, false, 'none', 7.347],
    ['exp', undefined, false, 'intl', 8.493],
    ['exp', undefined, false, 'char', 40.8759],
    ['exp', undefined, true, 'char', 42.0267],
  ];
  for (const [smooth, value, lowercase, tok, expected] of cases) {
    test(`${smooth}${value === undefined ? '' : `(${value})`} ${tok}${lowercase ? ' lowercase' : ''}: ${expected}`, () => {
      const s = sentenceBleu(SYS, [REF], {
        smoothMethod: smooth as 'exp',
        smoothValue: value,
        lowercase,
        tokenize: tok as '13a',
      });
      close(s.score, expected, 1e-3);
    });
  }
  test('no match at all (issue #141) gives 0.0 under every smoothing', () => {
    for (const smoothMethod of ['exp', 'none', 'floor', 'add-k'] as const) {
      assert.equal(sentenceBleu('this is a cat', ['okay thanks'], { smoothMethod }).score, 0);
    }
  });
});

describe('13a tokenization (mteval-v13a rules, hand-traced)', () => {
  test('punctuation, periods and commas next to digits, dashes after digits, entities', () => {
    assert.equal(tokenize13a('Hello, world.'), 'Hello , world .');
    assert.equal(
      tokenize13a('It costs 3.14, or 1,000 in 5-6 days.'),
      'It costs 3.14 , or 1,000 in 5 - 6 days .',
    );
    assert.equal(tokenize13a("don't (stop) x/y a-b"), "don't ( stop ) x / y a-b");
    assert.equal(tokenize13a('Tom &amp; Jerry &quot;hi&quot; &lt;b&gt;'), 'Tom & Jerry " hi " < b >');
    assert.equal(tokenize13a('line-\nbreak\nhere<skipped>'), 'linebreak here');
    assert.equal(tokenize13a('  '), '');
  });
  test('whitespace is Python str.split(): U+00A0 and U+3000 separate, U+FEFF does not', () => {
    assert.deepEqual(splitWhitespace('a\u00a0b\u3000c\ufeffd\x1ce'), ['a', 'b', 'c\ufeffd', 'e']);
  });
});

describe('hand-computed corpus cases', () => {
  test("exp smoothing: the 4-gram order's zero count becomes 1/(2·total)", () => {
    // hyp "a b c d e", ref "a b c x e f": 1-grams 4/5, 2-grams 2/4 (ab bc), 3-grams 1/3 (abc), 4-grams 0/2 →
    // 100/(2·2) = 25; BP = exp(1 − 6/5). BLEU = exp(−0.2)·(80·50·33.33·25)^(1/4).
    const s = corpusBleu(['a b c d e'], [['a b c x e f']], { tokenize: 'none' });
    assert.deepEqual(s.counts, [4, 2, 1, 0]);
    assert.deepEqual(s.totals, [5, 4, 3, 2]);
    close(s.score, Math.exp(-0.2) * (80 * 50 * (100 / 3) * 25) ** 0.25, 1e-9);
  });
  test('a corpus whose hypotheses have no 4-grams scores 0 (no effective order in corpus BLEU)', () => {
    assert.equal(corpusBleu(['the cat sat'], [['the cat sat on the mat']]).score, 0);
    // With effective order (sacreBLEU's sentence_bleu) the same pair is BP · 100 = exp(1 − 6/3) · 100.
    close(sentenceBleu('the cat sat', ['the cat sat on the mat']).score, 100 * Math.exp(-1), 1e-9);
  });
  test('segment statistics sum to the corpus statistics; closest reference length breaks ties downward', () => {
    const stats = bleuSegmentStatistics(HYPS, REFS);
    assert.equal(
      stats.reduce((a, s) => a + s.sysLen, 0),
      17,
    );
    assert.equal(closestRefLength(12, [13, 11]), 11);
    assert.equal(closestRefLength(7, [11, 8, 6, 7]), 7);
    assert.equal(closestRefLength(12, [13, 2]), 13);
  });
  test('bad input is refused with a GenepruneError', () => {
    assert.throws(() => corpusBleu(['a', 'b'], [['a']]), GenepruneError);
    assert.throws(() => corpusBleu(['a'], [['']]), /segment 1 has no reference/);
    assert.throws(() => corpusBleu(['a'], [['a']], { maxNgramOrder: 0 }), GenepruneError);
  });
});

describe('sentence-mean BLEU equals NLTK sentence_bleu (bleu_score.py docstrings)', () => {
  const hyp1 =
    'It is a guide to action which ensures that the military always obeys the commands of the party'.split(
      ' ',
    );
  const hyp2 = 'It is to insure the troops forever hearing the activity guidebook that party direct'.split(
    ' ',
  );
  const ref1 =
    'It is a guide to action that ensures that the military will forever heed Party commands'.split(' ');
  const ref2 =
    'It is the guiding principle which guarantees the military forces always being under the command of the Party'.split(
      ' ',
    );
  const ref3 = 'It is the practical guide for the army always to heed the directions of the party'.split(' ');
  test('sentence_bleu([ref1, ref2, ref3], hyp1) = 0.5045...; BLEU-5 = 0.3920...', () => {
    assert.ok(String(nltkSentenceBleu([ref1, ref2, ref3], hyp1)).startsWith('0.5045'));
    const w5 = [0.2, 0.2, 0.2, 0.2, 0.2];
    assert.ok(String(nltkSentenceBleu([ref1, ref2, ref3], hyp1, { weights: w5 })).startsWith('0.3920'));
  });
  test('hyp2 without smoothing rounds to 0.0; with method1 it is 0.0370...', () => {
    assert.equal(Math.round(nltkSentenceBleu([ref1, ref2, ref3], hyp2) * 1e4) / 1e4, 0);
    const m1 = nltkSentenceBleu([ref1, ref2, ref3], hyp2, { smoothing: 'method1' });
    assert.ok(String(m1).startsWith('0.0370'), String(m1));
  });
  test('SmoothingFunction doc: sentence_bleu([reference1], hypothesis1, method0/method1) = 0.4118...', () => {
    assert.ok(String(nltkSentenceBleu([ref1], hyp1)).startsWith('0.4118'));
    assert.ok(String(nltkSentenceBleu([ref1], hyp1, { smoothing: 'method1' })).startsWith('0.4118'));
  });
  test('corpus_bleu doc: mean of the two sentence BLEUs is 0.6223...', () => {
    const hyp = 'he read the book because he was interested in world history';
    const ref = 'he was interested in world history because he read the book';
    // sentence-mean takes strings in sacreBLEU's reference layout: set k holds each segment's k-th reference.
    const mean = sentenceMeanBleu(
      [hyp1.join(' '), hyp],
      [
        [ref1.join(' '), ref],
        [ref2.join(' '), null],
        [ref3.join(' '), null],
      ],
    );
    assert.ok(String(mean / 100).startsWith('0.6223'), String(mean));
  });
  test('hand-computed method1 case and zero cases', () => {
    // 'John loves Mary who loves Mike' vs 'John loves Mary': p1 = 3/6, p2 = 2/5, p3 = 1/4, p4 = 0/3 → 0.1/3;
    // c = 6 > r = 3, so BP = 1.
    close(
      sentenceMeanBleu(['John loves Mary who loves Mike'], [['John loves Mary']]),
      100 * (0.5 * 0.4 * 0.25 * (0.1 / 3)) ** 0.25,
      1e-9,
    );
    assert.equal(sentenceMeanBleu([''], [['John loves Mary']]), 0);
    assert.equal(sentenceMeanBleu(['John loves Mary'], [['the candidate has no alignment']]), 0);
    assert.equal(
      sentenceMeanBleu(['John loves Mary very much', ''], [['John loves Mary very much', 'x']]),
      50,
    );
    // Three tokens have no 4-gram: method1 gives that order 0.1/max(1, 0), so a perfect match scores 0.1^(1/4).
    close(sentenceMeanBleu(['John loves Mary'], [['John loves Mary']]), 100 * 0.1 ** 0.25, 1e-9);
    // Whitespace tokens, case-sensitive: "Mary." and "mary" do not match "Mary".
    assert.equal(sentenceMeanBleu(['mary Mary.'], [['Mary']]), 0);
  });
});
