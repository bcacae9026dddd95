/**
 * Byte-level BPE, GPT-2 and RoBERTa style: text as UTF-8 bytes, each byte a printable character, merges by rank.
 * Expected ids are worked out by hand: the byte alphabet below is built from GPT-2's published byte-to-character
 * rule, and byte b has id b.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Tokenizer } from '../../src/tokenizer/types.js';
import { tempDir } from '../checkpoint/helpers.js';
import { loadWritten, specialTokens } from './helpers.js';

/**
 * GPT-2's byte alphabet: '!'..'~', '¡'..'¬' and '®'..'ÿ' stand for themselves; the other 68 bytes, in order, take
 * the characters from U+0100 on (so space 0x20 is 'Ġ' U+0120).
 */
function byteChar(b: number): string {
  const printable = (x: number) =>
    (x >= 0x21 && x <= 0x7e) || (x >= 0xa1 && x <= 0xac) || (x >= 0xae && x <= 0xff);
  if (printable(b)) return String.fromCodePoint(b);
  let rank = 0;
  for (let x = 0; x < b; x++) if (!printable(x)) rank++;
  return String.fromCodePoint(0x100 + rank);
}

const VOCAB: Record<string, number> = {};
for (let b = 0; b < 256; b++) VOCAB[byteChar(b)] = b;
const MERGES = ['Ġ t', 'h e', 'Ġt he', 'l o', 'lo w', 'Ã ©'];
['Ġt', 'he', 'Ġthe', 'lo', 'low', 'Ã©'].forEach((piece, i) => {
  VOCAB[piece] = 256 + i;
});
const [HE, THE_SPACED, LOW, E_ACUTE] = [257, 258, 260, 261];
const [BOS, EOS, PAD] = [262, 263, 264];
Object.assign(VOCAB, { '<s>': BOS, '</s>': EOS, '<pad>': PAD });
const byte = (c: string) => c.charCodeAt(0);

const BYTE_LEVEL = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
const GPT2_JSON = {
  version: '1.0',
  added_tokens: specialTokens([
    ['<s>', BOS],
    ['</s>', EOS],
    ['<pad>', PAD],
  ]),
  normalizer: null,
  pre_tokenizer: BYTE_LEVEL,
  post_processor: BYTE_LEVEL,
  decoder: BYTE_LEVEL,
  model: { type: 'BPE', dropout: null, unk_token: null, vocab: VOCAB, merges: MERGES },
};
const ROBERTA_JSON = {
  ...GPT2_JSON,
  post_processor: {
    type: 'RobertaProcessing',
    sep: ['</s>', EOS],
    cls: ['<s>', BOS],
    trim_offsets: true,
    add_prefix_space: false,
  },
};

describe('byte-level BPE tokenizer.json (GPT-2 and RoBERTa style)', () => {
  const { dir, cleanup } = tempDir('geneprune-bytelevel-');
  after(cleanup);
  let gpt2: Tokenizer;
  let roberta: Tokenizer;
  before(async () => {
    gpt2 = await loadWritten(dir, 'gpt2', {
      'tokenizer.json': GPT2_JSON,
      'tokenizer_config.json': { clean_up_tokenization_spaces: false },
    });
    roberta = await loadWritten(dir, 'roberta', {
      'tokenizer.json': ROBERTA_JSON,
      'tokenizer_config.json': { bos_token: '<s>', eos_token: '</s>', pad_token: '<pad>' },
    });
  });

  test('merges by rank within pre-tokenized words', () => {
    // "the" → t, h e (rank 1) → no 't he' merge; " low" → Ġ, l o (3), lo w (4) → Ġ, low; " the" → Ġthe.
    assert.deepEqual(gpt2.encodeInput('the low the').ids, [byte('t'), HE, byte(' '), LOW, THE_SPACED]);
    assert.deepEqual(gpt2.encode('the low the'), [byte('t'), HE, byte(' '), LOW, THE_SPACED]);
  });

  test('unicode is bytes: accents merge when the vocabulary has them, emoji and CJK stay bytes', () => {
    // é = C3 A9 = 'Ã' '©', merged.
    assert.deepEqual(gpt2.encodeInput('café').ids, [byte('c'), byte('a'), byte('f'), E_ACUTE]);
    assert.deepEqual(gpt2.encodeInput('😀').ids, [0xf0, 0x9f, 0x98, 0x80]);
    // 中 = E4 B8 AD; 0xAD is one of the remapped bytes.
    assert.deepEqual(gpt2.encodeInput('中').ids, [0xe4, 0xb8, 0xad]);
  });

  test('decode is the exact inverse (lossless) with clean_up_tokenization_spaces false', () => {
    for (const text of ['the low the', 'café 😀 中文', ' Hello , world .  two  spaces\ttab\nline', '']) {
      assert.equal(gpt2.decode(gpt2.encode(text)), text);
    }
    // Without that setting the library tidies " ," and " ." as transformers does by default; <s> </s> carry no text.
    assert.equal(roberta.decode(roberta.encodeInput('café 😀 中文').ids), 'café 😀 中文');
    assert.equal(roberta.decode(roberta.encodeInput('Hello , world .').ids), 'Hello, world.');
  });

  test('GPT-2 style: no special tokens, a pair is the two texts one after the other', () => {
    assert.deepEqual(gpt2.encodeInput(''), { ids: [], typeIds: [], truncated: false });
    // The library's own pair encoding drops B with this post-processor; encodeInput keeps it.
    assert.deepEqual(gpt2.encodeInput('the', { pair: ' low' }), {
      ids: [byte('t'), HE, byte(' '), LOW],
      typeIds: [0, 0, 1, 1],
      truncated: false,
    });
    assert.deepEqual(gpt2.encodeInput('the low', { maxLength: 3 }), {
      ids: [byte('t'), HE, byte(' ')],
      typeIds: [0, 0, 0],
      truncated: true,
    });
    assert.equal(gpt2.padId, undefined);
  });

  test('RoBERTa style: <s> A </s></s> B </s>, every type id 0', () => {
    assert.deepEqual(roberta.encodeInput('the low'), {
      ids: [BOS, byte('t'), HE, byte(' '), LOW, EOS],
      typeIds: [0, 0, 0, 0, 0, 0],
      truncated: false,
    });
    assert.deepEqual(roberta.encodeInput(''), { ids: [BOS, EOS], typeIds: [0, 0], truncated: false });
    assert.deepEqual(roberta.encodeInput('the', { pair: 'low' }), {
      ids: [BOS, byte('t'), HE, EOS, EOS, LOW, EOS],
      typeIds: [0, 0, 0, 0, 0, 0, 0],
      truncated: false,
    });
    // 4 specials with a pair leave 2 of 6: A (t, he) and B (low, Ġ, low) are both over half, so 1 each.
    assert.deepEqual(roberta.encodeInput('the', { pair: 'low low', maxLength: 6 }), {
      ids: [BOS, byte('t'), EOS, EOS, LOW, EOS],
      typeIds: [0, 0, 0, 0, 0, 0],
      truncated: true,
    });
    assert.equal(roberta.padId, PAD);
    assert.equal(roberta.bosId, BOS);
  });
});
