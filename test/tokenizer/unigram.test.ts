/**
 * Unigram, T5 style: words split on whitespace, '▁' prepended (Metaspace), each word segmented by Viterbi into the
 * pieces whose log-probabilities sum highest; </s> after each text. Expected ids are hand-computed from the scores.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Tokenizer } from '../../src/tokenizer/types.js';
import { tempDir } from '../checkpoint/helpers.js';
import { loadWritten, specialTokens } from './helpers.js';

const PIECES: [string, number][] = [
  ['<pad>', 0], // 0
  ['</s>', 0], // 1
  ['<unk>', 0], // 2
  ['▁', -2.0], // 3
  ['▁the', -1.0], // 4
  ['▁th', -3.0], // 5
  ['e', -2.5], // 6
  ['▁h', -2.0], // 7
  ['at', -2.2], // 8
  ['▁hat', -4.9], // 9: the lowest score, so <unk> scores -4.9 - 10
  ['h', -3.0], // 10
  ['a', -3.0], // 11
  ['t', -3.0], // 12
  ['▁c', -3.0], // 13
  ['é', -3.0], // 14
  ['▁ca', -2.0], // 15
  ['fé', -2.0], // 16
  ['f', -3.5], // 17
];
const [PAD, EOS, UNK, SPACE, THE, H_, AT, A, CA, FE] = [0, 1, 2, 3, 4, 7, 8, 11, 15, 16];

const METASPACE = { type: 'Metaspace', replacement: '▁', prepend_scheme: 'always', split: true };
const T5_JSON = {
  version: '1.0',
  added_tokens: specialTokens([
    ['<pad>', PAD],
    ['</s>', EOS],
    ['<unk>', UNK],
  ]),
  normalizer: null,
  pre_tokenizer: { type: 'Sequence', pretokenizers: [{ type: 'WhitespaceSplit' }, METASPACE] },
  post_processor: {
    type: 'TemplateProcessing',
    single: [{ Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '</s>', type_id: 0 } }],
    pair: [
      { Sequence: { id: 'A', type_id: 0 } },
      { SpecialToken: { id: '</s>', type_id: 0 } },
      { Sequence: { id: 'B', type_id: 0 } },
      { SpecialToken: { id: '</s>', type_id: 0 } },
    ],
    special_tokens: { '</s>': { id: '</s>', ids: [EOS], tokens: ['</s>'] } },
  },
  decoder: METASPACE,
  model: { type: 'Unigram', unk_id: UNK, vocab: PIECES, byte_fallback: false },
};
const CONFIG = { eos_token: '</s>', unk_token: '<unk>', pad_token: '<pad>' };

describe('Unigram tokenizer.json (T5 style)', () => {
  const { dir, cleanup } = tempDir('geneprune-unigram-');
  after(cleanup);
  let tok: Tokenizer;
  before(async () => {
    tok = await loadWritten(dir, 't5', { 'tokenizer.json': T5_JSON, 'tokenizer_config.json': CONFIG });
  });

  test('Viterbi picks the best-scoring segmentation, not the longest piece', () => {
    // ▁hat: ▁h+at = -4.2 beats ▁hat = -4.9, ▁+h+at = -7.2, ▁h+a+t = -8.
    // ▁the: ▁the = -1.0 beats ▁th+e = -5.5.
    assert.deepEqual(tok.encodeInput('the hat'), {
      ids: [THE, H_, AT, EOS],
      typeIds: [0, 0, 0, 0],
      truncated: false,
    });
    assert.deepEqual(tok.encode('the hat'), [THE, H_, AT, EOS]);
  });

  test('unicode: pieces with accents, unknown characters as one fused <unk>', () => {
    // ▁café: ▁ca+fé = -4.0 beats ▁c+a+fé = -8.0 and ▁ca+f+é = -8.5.
    assert.deepEqual(tok.encodeInput('café').ids, [CA, FE, EOS]);
    // ▁hxy: ▁h, then x and y unknown (each -14.9), fused into one <unk>.
    assert.deepEqual(tok.encodeInput('hxy').ids, [H_, UNK, EOS]);
    // ▁hax: ▁h + a + <unk> (-19.9) beats ▁ + h + a + <unk> (-22.9).
    assert.deepEqual(tok.encodeInput('hax').ids, [H_, A, UNK, EOS]);
    assert.deepEqual(tok.encodeInput('😀').ids, [SPACE, UNK, EOS]);
  });

  test('empty text is just </s>; pairs are A </s> B </s>', () => {
    assert.deepEqual(tok.encodeInput(''), { ids: [EOS], typeIds: [0], truncated: false });
    assert.deepEqual(tok.encodeInput('the', { pair: 'hat' }), {
      ids: [THE, EOS, H_, AT, EOS],
      typeIds: [0, 0, 0, 0, 0],
      truncated: false,
    });
  });

  test('maxLength keeps </s> and may cut a word between its pieces', () => {
    assert.deepEqual(tok.encodeInput('the hat the hat', { maxLength: 4 }), {
      ids: [THE, H_, AT, EOS],
      typeIds: [0, 0, 0, 0],
      truncated: true,
    });
    assert.deepEqual(tok.encodeInput('the hat', { maxLength: 3 }).ids, [THE, H_, EOS]);
    assert.deepEqual(tok.encodeInput('the hat', { maxLength: 4 }).truncated, false);
  });

  test('decode restores words and spaces (</s> carries no text)', () => {
    assert.equal(tok.decode(tok.encode('the hat café')), 'the hat café');
    assert.equal(tok.padId, PAD);
    assert.equal(tok.eosId, EOS);
  });
});
