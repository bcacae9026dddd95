/**
 * SentencePiece BPE with byte fallback, Gemma style: spaces become '▁' in the normalizer (no pre-tokenizer, no
 * dummy prefix), merges by rank, characters missing from the vocabulary become their UTF-8 bytes <0xXX>, <bos>
 * first. Expected ids are worked out by hand.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Tokenizer } from '../../src/tokenizer/types.js';
import { tempDir } from '../checkpoint/helpers.js';
import { loadWritten, specialTokens } from './helpers.js';

const [PAD, EOS, BOS, UNK] = [0, 1, 2, 3];
/** Byte b's fallback token <0xXX> has id 4 + b. */
const byteId = (b: number) => 4 + b;
const VOCAB: Record<string, number> = { '<pad>': PAD, '<eos>': EOS, '<bos>': BOS, '<unk>': UNK };
for (let b = 0; b < 256; b++) VOCAB[`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`] = byteId(b);
['▁', 'h', 'e', 'l', 'o', 'he', 'll', 'hell', 'hello', '▁hello', 'w'].forEach((piece, i) => {
  VOCAB[piece] = 260 + i;
});
const [SPACE, H, HELLO, SPACE_HELLO, W] = [260, 261, 268, 269, 270];

const GEMMA_JSON = {
  version: '1.0',
  added_tokens: specialTokens([
    ['<pad>', PAD],
    ['<eos>', EOS],
    ['<bos>', BOS],
    ['<unk>', UNK],
  ]),
  normalizer: { type: 'Replace', pattern: { String: ' ' }, content: '▁' },
  pre_tokenizer: null,
  post_processor: {
    type: 'TemplateProcessing',
    single: [{ SpecialToken: { id: '<bos>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
    pair: [
      { SpecialToken: { id: '<bos>', type_id: 0 } },
      { Sequence: { id: 'A', type_id: 0 } },
      { SpecialToken: { id: '<bos>', type_id: 1 } },
      { Sequence: { id: 'B', type_id: 1 } },
    ],
    special_tokens: { '<bos>': { id: '<bos>', ids: [BOS], tokens: ['<bos>'] } },
  },
  decoder: {
    type: 'Sequence',
    decoders: [
      { type: 'Replace', pattern: { String: '▁' }, content: ' ' },
      { type: 'ByteFallback' },
      { type: 'Fuse' },
    ],
  },
  model: {
    type: 'BPE',
    dropout: null,
    unk_token: '<unk>',
    continuing_subword_prefix: null,
    end_of_word_suffix: null,
    fuse_unk: true,
    byte_fallback: true,
    vocab: VOCAB,
    merges: ['h e', 'l l', 'he ll', 'hell o', '▁ hello'],
  },
};
const CONFIG = {
  bos_token: '<bos>',
  eos_token: '<eos>',
  pad_token: '<pad>',
  unk_token: '<unk>',
  add_bos_token: true,
  add_eos_token: false,
};

describe('SentencePiece BPE with byte fallback (Gemma style)', () => {
  const { dir, cleanup } = tempDir('geneprune-spbpe-');
  after(cleanup);
  let tok: Tokenizer;
  before(async () => {
    tok = await loadWritten(dir, 'gemma', { 'tokenizer.json': GEMMA_JSON, 'tokenizer_config.json': CONFIG });
  });

  test('merges by rank across the ▁-joined text, <bos> first', () => {
    // hello▁hello: he, ll → hell → hello (both), then ▁ hello → hello, ▁hello.
    assert.deepEqual(tok.encodeInput('hello hello'), {
      ids: [BOS, HELLO, SPACE_HELLO],
      typeIds: [0, 0, 0],
      truncated: false,
    });
    assert.deepEqual(tok.encode('hello hello'), [BOS, HELLO, SPACE_HELLO]);
    assert.deepEqual(tok.encodeInput(' w').ids, [BOS, SPACE, W]);
  });

  test('characters outside the vocabulary fall back to their UTF-8 bytes', () => {
    assert.deepEqual(tok.encodeInput('hé').ids, [BOS, H, byteId(0xc3), byteId(0xa9)]);
    assert.deepEqual(tok.encodeInput('😀').ids, [
      BOS,
      byteId(0xf0),
      byteId(0x9f),
      byteId(0x98),
      byteId(0x80),
    ]);
    assert.deepEqual(tok.encodeInput('中').ids, [BOS, byteId(0xe4), byteId(0xb8), byteId(0xad)]);
  });

  test('decode is the exact inverse, bytes reassembled into characters', () => {
    for (const text of ['hello hello', 'hé 😀 中文', '  two  spaces\tand\nlines ', '']) {
      assert.equal(tok.decode(tok.encode(text)), text);
    }
  });

  test('empty text, pairs and truncation under the add_bos_token template', () => {
    assert.deepEqual(tok.encodeInput(''), { ids: [BOS], typeIds: [0], truncated: false });
    assert.deepEqual(tok.encodeInput('hello', { pair: 'hello' }), {
      ids: [BOS, HELLO, BOS, HELLO],
      typeIds: [0, 0, 1, 1],
      truncated: false,
    });
    assert.deepEqual(tok.encodeInput('hello hello hello', { maxLength: 3 }), {
      ids: [BOS, HELLO, SPACE_HELLO],
      typeIds: [0, 0, 0],
      truncated: true,
    });
    assert.equal(tok.padId, PAD);
  });

  test('add_eos_token in tokenizer_config.json puts <eos> after each text, as transformers does', async () => {
    const withEos = await loadWritten(dir, 'gemma-eos', {
      'tokenizer.json': GEMMA_JSON,
      'tokenizer_config.json': { ...CONFIG, add_eos_token: true },
    });
    assert.deepEqual(withEos.encodeInput('hello'), {
      ids: [BOS, HELLO, EOS],
      typeIds: [0, 0, 0],
      truncated: false,
    });
    assert.deepEqual(withEos.encodeInput('hello', { pair: 'w', maxLength: 5 }), {
      ids: [BOS, EOS, BOS, W, EOS],
      typeIds: [0, 0, 1, 1, 1],
      truncated: true,
    });
  });
});
