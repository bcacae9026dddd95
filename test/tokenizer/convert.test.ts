import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { GenepruneError } from '../../src/errors.js';
import {
  llama2cTokenizerConfig,
  llama2cToTokenizerJson,
  writeTokenizerFiles,
} from '../../src/tokenizer/convert.js';
import { llama2cTokenizer, loadLlama2cTokenizer, parseLlama2cVocab } from '../../src/tokenizer/llama2c.js';
import { loadTokenizer } from '../../src/tokenizer/load.js';
import type { Tokenizer } from '../../src/tokenizer/types.js';
import { sharedPath, skipUnlessShared } from '../shared.js';

const tmp = mkdtempSync(join(tmpdir(), 'geneprune-convert-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

/** A tokenizer.bin image from (UTF-8 piece, score) entries. */
function binOf(entries: [string, number][]): Buffer {
  const pieces = entries.map(([text, score]) => ({ bytes: Buffer.from(text, 'utf8'), score }));
  const header = Buffer.alloc(4);
  header.writeInt32LE(Math.max(1, ...pieces.map((p) => p.bytes.length)));
  const chunks = [header];
  for (const { bytes, score } of pieces) {
    const lenScore = Buffer.alloc(8);
    lenScore.writeFloatLE(score, 0);
    lenScore.writeInt32LE(bytes.length, 4);
    chunks.push(lenScore, bytes);
  }
  return Buffer.concat(chunks);
}

const byteEntries = (): [string, number][] =>
  Array.from({ length: 256 }, (_, b) => [`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`, 0]);

/** Hand-made: llama2.c's control pieces, 256 byte pieces, then ours (id in the comment). */
const HAND: [string, number][] = [
  ['<unk>', 0],
  ['\n<s>\n', 0],
  ['\n</s>\n', 0],
  ...byteEntries(),
  ['ab', -1], // 259
  ['bc', -2], // 260
  [' ab', -3], // 261: ' '+'ab' and ' a'+'b'
  ['abc', -4], // 262: 'a'+'bc' and 'ab'+'c'
  [' a', -5], // 263
  [' ', -10], // 264
  ['a', -11], // 265
  ['b', -12], // 266
  ['c', -13], // 267
  ['ca', -1e11], // 268: at or below run.c's -1e10 floor, never merged
];

/** The package's tokenizer over a converted tokenizer.json, as transformers.js would build it. */
function hfOf(json: object): HfTokenizer {
  return new HfTokenizer(json, llama2cTokenizerConfig());
}

function hfIds(hf: HfTokenizer, text: string): number[] {
  return hf.encode(text).ids;
}

describe('llama2cToTokenizerJson on a hand-made vocabulary', () => {
  const vocab = parseLlama2cVocab(binOf(HAND), 'hand.bin');
  const json = llama2cToTokenizerJson(vocab, 'hand.bin') as {
    model: { vocab: Record<string, number>; merges: string[]; byte_fallback: boolean };
    added_tokens: { id: number; content: string; special: boolean }[];
  };
  const ref = llama2cTokenizer(vocab, 'hand.bin');
  const hf = hfOf(json);

  test('vocab spells spaces ▁ and names the control tokens', () => {
    const v = json.model.vocab;
    assert.equal(Object.keys(v).length, HAND.length);
    assert.deepEqual([v['<unk>'], v['<s>'], v['</s>']], [0, 1, 2]);
    assert.equal(v['<0x00>'], 3);
    assert.equal(v['<0xFF>'], 258);
    assert.equal(v['▁ab'], 261);
    assert.equal(v['▁'], 264);
    assert.equal(v['▁a'], 263);
    assert.equal(json.model.byte_fallback, true);
    assert.deepEqual(
      json.added_tokens.map((t) => [t.id, t.content, t.special]),
      [
        [0, '<unk>', true],
        [1, '<s>', true],
        [2, '</s>', true],
      ],
    );
  });

  test('merges: every split into two pieces, by score of the result, ties by the left part id', () => {
    assert.deepEqual(json.model.merges, ['a b', 'b c', '▁a b', '▁ ab', 'ab c', 'a bc', '▁ a']);
  });

  test('encodes as llama2.c does (worked by hand)', () => {
    const cases: [string, number[]][] = [
      // ' a b c': ab(-1) first, then ' '+ab = ' ab'(-3) beats ab+c = abc(-4).
      ['abc', [1, 261, 267]],
      // bc(-2); nothing merges with a after it.
      ['bca', [1, 264, 260, 265]],
      // 'ca' is below the floor: no merge.
      ['ca', [1, 264, 267, 265]],
      // a(-11) is in the vocab as a single char; ' '+a = ' a'(-5).
      ['a a', [1, 263, 263]],
      // é is not a piece: UTF-8 bytes c3 a9 fall back to ids 0xc3+3, 0xa9+3.
      ['é', [1, 264, 198, 172]],
      ['', [1]],
    ];
    for (const [text, ids] of cases) {
      assert.deepEqual(ref.encode(text, { bos: true }), ids, `llama2.c ${JSON.stringify(text)}`);
      assert.deepEqual(hfIds(hf, text), ids, `tokenizer.json ${JSON.stringify(text)}`);
      assert.equal(hf.decode(ids, { skip_special_tokens: true }), text);
    }
  });

  test('rejects vocabularies tokenizer.json cannot express faithfully', () => {
    const noBytes: [string, number][] = [
      ['<unk>', 0],
      ['\n<s>\n', 0],
      ['\n</s>\n', 0],
      ['a', -1],
    ];
    assert.throws(
      () => llama2cToTokenizerJson(parseLlama2cVocab(binOf(noBytes), 'x.bin'), 'x.bin'),
      (err: unknown) => err instanceof GenepruneError && /byte-fallback token <0x00>/.test(err.message),
    );
    const dup: [string, number][] = [...HAND.slice(0, 259), [' x', -1], ['▁x', -2]];
    assert.throws(
      () => llama2cToTokenizerJson(parseLlama2cVocab(binOf(dup), 'x.bin'), 'x.bin'),
      (err: unknown) => err instanceof GenepruneError && /tokens 259 and 260/.test(err.message),
    );
    const bad = parseLlama2cVocab(binOf(HAND), 'x.bin');
    bad.pieces[259] = Uint8Array.of(0xff, 0x61);
    assert.throws(
      () => llama2cToTokenizerJson(bad, 'x.bin'),
      (err: unknown) => err instanceof GenepruneError && /not valid UTF-8/.test(err.message),
    );
  });
});

describe('writeTokenizerFiles', () => {
  test('writes tokenizer.json and tokenizer_config.json that loadTokenizer reads back', async () => {
    const bin = join(tmp, 'hand.bin');
    writeFileSync(bin, binOf(HAND));
    const dir = join(tmp, 'out', 'hf');
    const written = await writeTokenizerFiles(dir, bin, { vocabSize: HAND.length, modelMaxLength: 256 });
    assert.deepEqual(written, {
      tokenizerJson: join(dir, 'tokenizer.json'),
      tokenizerConfig: join(dir, 'tokenizer_config.json'),
    });
    assert.deepEqual(readdirSync(dir).sort(), ['tokenizer.json', 'tokenizer_config.json']);
    const config = JSON.parse(readFileSync(written.tokenizerConfig, 'utf8'));
    assert.equal(config.add_bos_token, true);
    assert.equal(config.add_eos_token, false);
    assert.deepEqual([config.bos_token, config.eos_token, config.unk_token], ['<s>', '</s>', '<unk>']);
    assert.equal(config.clean_up_tokenization_spaces, false);
    assert.equal(config.model_max_length, 256);
    const tok = await loadTokenizer(dir, { vocabSize: HAND.length });
    assert.equal(tok.source, written.tokenizerJson);
    assert.deepEqual([tok.bosId, tok.eosId, tok.vocabSize], [1, 2, HAND.length]);
    assert.deepEqual(tok.encode('abc'), [1, 261, 267]);
    assert.deepEqual(tok.encode('abc', { eos: true }), [1, 261, 267, 2]);
    assert.equal(tok.decode([1, 261, 267, 2]), 'abc');
  });

  test('a tokenizer.bin that does not match the model vocabulary size is an error', async () => {
    const bin = join(tmp, 'hand2.bin');
    writeFileSync(bin, binOf(HAND));
    await assert.rejects(
      writeTokenizerFiles(join(tmp, 'out2'), bin, { vocabSize: HAND.length + 1 }),
      (err: unknown) => err instanceof GenepruneError && err.where === bin,
    );
    await assert.rejects(
      writeTokenizerFiles(join(tmp, 'out3'), join(tmp, 'missing.bin')),
      (err: unknown) => err instanceof GenepruneError && /cannot read tokenizer/.test(err.message),
    );
  });
});

const TOK512 = 'models/stories260K/tok512.bin';
const CALIB_PAGES = [0, 1, 2, 3, 4].map((i) => `data/tinystories/calib/page-0${i}.txt`);

const TRICKY = [
  '',
  ' ',
  '   ',
  'hello',
  ' hello',
  'hello ',
  '  two  spaces  here  ',
  'a\nb',
  'Line one.\n\nLine two!\n',
  '\ttab\r\nCRLF',
  'café',
  'naïve façade',
  '日本',
  'emoji 😀 and 👍🏽!',
  '“Quotes” — dashes… and ’apostrophes’',
  '\u00a0non-breaking\u00a0space',
  'Lily said, "I can\'t!" Then she ran.',
  '123 + 456 = 579 $%&*',
  '~|[]{}<>\\',
];

/** A seeded generator (LCG), so the random strings are the same on every run. */
function lcg(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state * 1103515245 + 12345) & 0x7fffffff;
    return state / 0x80000000;
  };
}

describe('tok512 (stories260K) converted', { skip: skipUnlessShared(TOK512) }, () => {
  let ref: Tokenizer;
  let ours: Tokenizer;
  let hf: HfTokenizer;
  let pieces: string[];

  const setup = async (): Promise<void> => {
    if (ref) return;
    const bin = sharedPath(TOK512)!;
    ref = await loadLlama2cTokenizer(bin, { vocabSize: 512 });
    const dir = join(tmp, 'tok512');
    const { tokenizerJson, tokenizerConfig } = await writeTokenizerFiles(dir, bin, { vocabSize: 512 });
    ours = await loadTokenizer(tokenizerJson, { vocabSize: 512 });
    hf = new HfTokenizer(
      JSON.parse(readFileSync(tokenizerJson, 'utf8')),
      JSON.parse(readFileSync(tokenizerConfig, 'utf8')),
    );
    pieces = parseLlama2cVocab(readFileSync(bin), bin)
      .pieces.slice(3)
      .map((p) => Buffer.from(p).toString('utf8'));
  };

  const assertSame = (text: string): void => {
    const expected = ref.encode(text, { bos: true });
    assert.deepEqual(hf.encode(text).ids, expected, `package ids for ${JSON.stringify(text)}`);
    assert.deepEqual(ours.encode(text), expected, `loadTokenizer ids for ${JSON.stringify(text)}`);
    assert.equal(ours.decode(expected), text);
    assert.equal(hf.decode(expected, { skip_special_tokens: true }), text);
  };

  test('identical ids and round-trip text on every calibration document', async () => {
    await setup();
    let docs = 0;
    let tokens = 0;
    for (const page of CALIB_PAGES) {
      const path = sharedPath(page);
      if (!path) continue;
      const texts = readFileSync(path, 'utf8')
        .split(/^<\|endoftext\|>$/m)
        .map((d) => d.trim())
        .filter((d) => d.length > 0);
      for (const text of texts) {
        assertSame(text);
        docs++;
        tokens += ref.encode(text, { bos: true }).length;
      }
    }
    assert.ok(docs > 0 || !sharedPath(CALIB_PAGES[0]), 'no documents read');
    if (docs > 0) assert.ok(tokens > docs * 10, `only ${tokens} tokens in ${docs} documents`);
  });

  test('identical ids on tricky strings (spaces, newlines, non-ASCII, byte fallback, empty)', async () => {
    await setup();
    for (const text of TRICKY) assertSame(text);
    // Byte fallback really happened (日 is no piece of this 512-token vocabulary).
    assert.deepEqual(ref.encode('日'), [ref.encode(' ')[0], 0xe6 + 3, 0x97 + 3, 0xa5 + 3]);
  });

  test('identical ids on 3000 random mixes of pieces and characters', async () => {
    await setup();
    const rand = lcg(20240611);
    const chars = [...'thervdskoanu h.,!?\n', 'é', '’', '😀', '\u00a0'];
    for (let i = 0; i < 3000; i++) {
      let text = '';
      const parts = 1 + Math.floor(rand() * 12);
      for (let j = 0; j < parts; j++) {
        text +=
          rand() < 0.6
            ? pieces[Math.floor(rand() * pieces.length)]
            : chars[Math.floor(rand() * chars.length)];
      }
      assert.deepEqual(hf.encode(text).ids, ref.encode(text, { bos: true }), JSON.stringify(text));
    }
  });

  test('documented difference: literal special-token text becomes the special token', async () => {
    await setup();
    assert.deepEqual(hf.encode('a<s>b').ids.includes(1), true);
    assert.equal(ref.encode('a<s>b', { bos: true }).lastIndexOf(1), 0);
  });
});
