/**
 * WordPiece, BERT style: BertNormalizer (lowercase, accents stripped, CJK spaced), BertPreTokenizer, [CLS] … [SEP]
 * template. Expected ids are worked out by hand with WordPiece's greedy longest-match-first rule.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { GenepruneError } from '../../src/errors.js';
import type { Tokenizer } from '../../src/tokenizer/types.js';
import { tempDir } from '../checkpoint/helpers.js';
import { bertTokenizerJson } from '../helpers/wordpiece.js';
import { loadWritten } from './helpers.js';

const VOCAB: Record<string, number> = {
  '[PAD]': 0,
  '[UNK]': 1,
  '[CLS]': 2,
  '[SEP]': 3,
  '[MASK]': 4,
  the: 5,
  un: 6,
  '##aff': 7,
  '##able': 8,
  '##a': 9, // shorter than ##aff: longest match must win
  cafe: 10,
  '!': 11,
  ',': 12,
  中: 13,
  文: 14,
  run: 15,
  '##ning': 16,
  '##n': 17,
  hello: 18,
  '.': 19,
};
const [PAD, UNK, CLS, SEP] = [0, 1, 2, 3];
const [THE, UN, AFF, ABLE, CAFE, BANG, ZHONG, WEN, RUN, NING, HELLO, DOT] = [
  5, 6, 7, 8, 10, 11, 13, 14, 15, 16, 18, 19,
];

const BERT_JSON = bertTokenizerJson(VOCAB);
const CONFIG = {
  do_lower_case: true,
  pad_token: '[PAD]',
  cls_token: '[CLS]',
  sep_token: '[SEP]',
  unk_token: '[UNK]',
};

const zeros = (n: number) => new Array<number>(n).fill(0);
const ones = (n: number) => new Array<number>(n).fill(1);

describe('WordPiece tokenizer.json (BERT style)', () => {
  const { dir, cleanup } = tempDir('geneprune-wordpiece-');
  after(cleanup);
  let tok: Tokenizer;
  before(async () => {
    tok = await loadWritten(dir, 'bert', { 'tokenizer.json': BERT_JSON, 'tokenizer_config.json': CONFIG });
  });

  test('greedy longest match first, ## for word-internal pieces, [CLS] … [SEP] around', () => {
    // unaffable: un, then ##aff (not ##a), then ##able; running: run, then ##ning (not ##n).
    const input = tok.encodeInput('Unaffable running');
    assert.deepEqual(input.ids, [CLS, UN, AFF, ABLE, RUN, NING, SEP]);
    assert.deepEqual(input.typeIds, zeros(7));
    assert.equal(input.truncated, false);
    // The plain encode uses the same template.
    assert.deepEqual(tok.encode('Unaffable running'), input.ids);
  });

  test('a word with no full segmentation is one [UNK], not a partial match', () => {
    // "unx": un matches, ##x does not exist, so the whole word is unknown.
    assert.deepEqual(tok.encodeInput('unx the').ids, [CLS, UNK, THE, SEP]);
    assert.deepEqual(tok.encodeInput('xyz').ids, [CLS, UNK, SEP]);
  });

  test('unicode: accents stripped after lowercasing, CJK split per character, emoji unknown', () => {
    // É → é → e; "!" is punctuation, split off.
    assert.deepEqual(tok.encodeInput('CAFÉ!').ids, [CLS, CAFE, BANG, SEP]);
    assert.deepEqual(tok.encodeInput('café').ids, [CLS, CAFE, SEP]);
    // No spaces between the CJK characters or before them: each is its own word.
    assert.deepEqual(tok.encodeInput('hello中文').ids, [CLS, HELLO, ZHONG, WEN, SEP]);
    assert.deepEqual(tok.encodeInput('hello 😀').ids, [CLS, HELLO, UNK, SEP]);
  });

  test('empty text is just the special tokens', () => {
    assert.deepEqual(tok.encodeInput(''), { ids: [CLS, SEP], typeIds: [0, 0], truncated: false });
    assert.deepEqual(tok.encodeInput('', { pair: '' }), {
      ids: [CLS, SEP, SEP],
      typeIds: [0, 0, 1],
      truncated: false,
    });
  });

  test('pairs: [CLS] A [SEP] B [SEP], type 1 from B through its [SEP]', () => {
    const input = tok.encodeInput('hello', { pair: 'the cafe.' });
    assert.deepEqual(input.ids, [CLS, HELLO, SEP, THE, CAFE, DOT, SEP]);
    assert.deepEqual(input.typeIds, [0, 0, 0, 1, 1, 1, 1]);
    assert.equal(input.truncated, false);
  });

  test('maxLength keeps the special tokens and cuts text from the end', () => {
    const five = 'the the the the the';
    assert.deepEqual(tok.encodeInput(five, { maxLength: 7 }), {
      ids: [CLS, THE, THE, THE, THE, THE, SEP],
      typeIds: zeros(7),
      truncated: false,
    });
    assert.deepEqual(tok.encodeInput(five, { maxLength: 4 }), {
      ids: [CLS, THE, THE, SEP],
      typeIds: zeros(4),
      truncated: true,
    });
    // A word's pieces can be cut apart, as in Hugging Face: un ##aff | ##able.
    assert.deepEqual(tok.encodeInput('unaffable', { maxLength: 4 }).ids, [CLS, UN, AFF, SEP]);
    assert.deepEqual(tok.encodeInput(five, { maxLength: 2 }).ids, [CLS, SEP]);
  });

  test('pairs truncate the longer text first (longest_first)', () => {
    const six = 'the the the the the the';
    // Budget 7 - 3 specials = 4: B (2 tokens) stays whole, A keeps 2.
    assert.deepEqual(tok.encodeInput(six, { pair: 'hello hello', maxLength: 7 }), {
      ids: [CLS, THE, THE, SEP, HELLO, HELLO, SEP],
      typeIds: [...zeros(4), ...ones(3)],
      truncated: true,
    });
    // Budget 8 - 3 = 5 with 6 and 5 tokens: both longer than half, so 3 (the longer A) and 2.
    const b5 = 'hello hello hello hello hello';
    assert.deepEqual(tok.encodeInput(six, { pair: b5, maxLength: 8 }).ids, [
      CLS,
      THE,
      THE,
      THE,
      SEP,
      HELLO,
      HELLO,
      SEP,
    ]);
    // Equal lengths: the odd token goes to B.
    assert.deepEqual(
      tok.encodeInput('the the the the', { pair: 'hello hello hello hello', maxLength: 10 }).ids,
      [CLS, THE, THE, THE, SEP, HELLO, HELLO, HELLO, HELLO, SEP],
    );
    // Only the specials fit.
    assert.deepEqual(tok.encodeInput('the', { pair: 'hello', maxLength: 3 }), {
      ids: [CLS, SEP, SEP],
      typeIds: [0, 0, 1],
      truncated: true,
    });
  });

  test('maxLength below the specials, or not a positive integer, is a one-line error naming the file', () => {
    for (const [maxLength, re] of [
      [2, /maxLength 2 cannot hold the 3 special tokens/],
      [0, /positive integer/],
      [2.5, /positive integer/],
    ] as const) {
      assert.throws(
        () => tok.encodeInput('the', { pair: 'hello', maxLength }),
        (err: unknown) => {
          assert.ok(err instanceof GenepruneError);
          assert.equal(err.where, tok.source);
          assert.match(err.message, re);
          return true;
        },
      );
    }
  });

  test('decode joins ## pieces and tidies punctuation spacing (lowercased: not a round trip)', () => {
    assert.equal(tok.decode([UN, AFF, ABLE, RUN, NING]), 'unaffable running');
    assert.equal(tok.decode([CAFE, BANG]), 'cafe!');
  });

  test('pad id: from tokenizer_config.json, else from the padding section, else unknown', async () => {
    assert.equal(tok.padId, PAD);
    const fromPadding = await loadWritten(dir, 'bert-padding', {
      'tokenizer.json': {
        ...BERT_JSON,
        padding: {
          strategy: 'BatchLongest',
          direction: 'Right',
          pad_id: 0,
          pad_type_id: 0,
          pad_token: '[PAD]',
        },
      },
    });
    assert.equal(fromPadding.padId, PAD);
    const idOnly = await loadWritten(dir, 'bert-padid', {
      'tokenizer.json': { ...BERT_JSON, padding: { pad_id: 4 } },
    });
    assert.equal(idOnly.padId, 4);
    const none = await loadWritten(dir, 'bert-nopad', { 'tokenizer.json': BERT_JSON });
    assert.equal(none.padId, undefined);
  });
});
