import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { GenepruneError } from '../../src/errors.js';
import { loadTokenizer } from '../../src/tokenizer/load.js';

// A llama-style BPE: Metaspace (▁ for spaces, prefix on the first word), merges by rank, <s> template.
const VOCAB = {
  '<unk>': 0,
  '<s>': 1,
  '</s>': 2,
  '▁': 3,
  h: 4,
  e: 5,
  l: 6,
  o: 7,
  w: 8,
  r: 9,
  d: 10,
  he: 11,
  ll: 12,
  hell: 13,
  hello: 14,
  '▁hello': 15,
};
const TOKENIZER_JSON = {
  version: '1.0',
  added_tokens: [
    {
      id: 0,
      content: '<unk>',
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    },
    {
      id: 1,
      content: '<s>',
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    },
    {
      id: 2,
      content: '</s>',
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    },
  ],
  normalizer: null,
  pre_tokenizer: { type: 'Metaspace', replacement: '▁', prepend_scheme: 'always', split: false },
  post_processor: {
    type: 'TemplateProcessing',
    single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
    pair: [{ Sequence: { id: 'A', type_id: 0 } }, { Sequence: { id: 'B', type_id: 1 } }],
    special_tokens: { '<s>': { id: '<s>', ids: [1], tokens: ['<s>'] } },
  },
  decoder: { type: 'Metaspace', replacement: '▁', prepend_scheme: 'always', split: false },
  model: {
    type: 'BPE',
    unk_token: '<unk>',
    vocab: VOCAB,
    merges: ['h e', 'l l', 'he ll', 'hell o', '▁ hello'],
  },
};

const root = mkdtempSync(join(tmpdir(), 'geneprune-hftok-'));
after(() => rmSync(root, { recursive: true, force: true }));
function folder(name: string, files: Record<string, unknown>): string {
  const d = join(root, name);
  mkdirSync(d);
  for (const [f, v] of Object.entries(files))
    writeFileSync(join(d, f), typeof v === 'string' ? v : JSON.stringify(v));
  return d;
}

// "hello world" → "▁hello▁world"; h+e, l+l, he+ll, hell+o, ▁+hello; "▁ w o r l d" has no merges.
const HELLO_WORLD = [15, 3, 8, 7, 9, 6, 10];

describe('tokenizer.json through @huggingface/tokenizers', () => {
  test('without tokenizer_config.json: the template decides, no BOS id known', async () => {
    const d = folder('plain', { 'tokenizer.json': TOKENIZER_JSON });
    const tok = await loadTokenizer(join(d, 'tokenizer.json'));
    assert.equal(tok.vocabSize, 16);
    assert.equal(tok.bosId, undefined);
    assert.deepEqual(tok.encode('hello world'), [1, ...HELLO_WORLD]);
    assert.deepEqual(tok.encode('hello world', { bos: false }), HELLO_WORLD);
    assert.deepEqual(tok.encode('hz', { bos: false }), [3, 4, 0]); // z is unknown
    assert.equal(tok.decode(HELLO_WORLD), 'hello world');
  });

  test('with tokenizer_config.json: bos/eos tokens and add_bos/add_eos defaults', async () => {
    const d = folder('configured', {
      'tokenizer.json': TOKENIZER_JSON,
      'tokenizer_config.json': { bos_token: '<s>', eos_token: { content: '</s>' }, add_bos_token: true },
    });
    const tok = await loadTokenizer(d); // a folder finds tokenizer.json
    assert.equal(tok.bosId, 1);
    assert.equal(tok.eosId, 2);
    assert.deepEqual(tok.encode('hello world'), [1, ...HELLO_WORLD]);
    assert.deepEqual(tok.encode('hello world', { bos: false }), HELLO_WORLD);
    assert.deepEqual(tok.encode('hello world', { eos: true }), [1, ...HELLO_WORLD, 2]);
    assert.deepEqual(tok.encode('hello', { bos: true, eos: true }), [1, 15, 2]);
    // Model inputs follow add_bos_token: <s> before each text of a pair, B's part type 1.
    assert.deepEqual(tok.encodeInput('hello world', { maxLength: 3 }), {
      ids: [1, 15, 3],
      typeIds: [0, 0, 0],
      truncated: true,
    });
    assert.deepEqual(tok.encodeInput('hello', { pair: 'hello' }), {
      ids: [1, 15, 1, 15],
      typeIds: [0, 0, 1, 1],
      truncated: false,
    });
    assert.equal(tok.padId, undefined);
    assert.equal(tok.decode([1, ...HELLO_WORLD, 2]), 'hello world');
    assert.equal(tok.decode([]), '');
    assert.equal(tok.decodeToken(undefined, 15), 'hello');
    assert.equal(tok.decodeToken(1, 15), 'hello');
    assert.equal(tok.decodeToken(15, 3), ' ');
    assert.equal(tok.decodeToken(3, 8), 'w');
    assert.equal(tok.decodeToken(7, 15), ' hello');
    assert.throws(() => tok.decode([99]), GenepruneError);

    const offTemplate = folder('no-bos', {
      'tokenizer.json': TOKENIZER_JSON,
      'tokenizer_config.json': { bos_token: '<s>', add_bos_token: false },
    });
    assert.deepEqual(
      (await loadTokenizer(join(offTemplate, 'tokenizer.json'))).encode('hello world'),
      HELLO_WORLD,
    );
  });

  test('model vocabulary may be padded, not smaller', async () => {
    const d = folder('vocab', { 'tokenizer.json': TOKENIZER_JSON });
    assert.equal((await loadTokenizer(join(d, 'tokenizer.json'), { vocabSize: 64 })).vocabSize, 16);
    await assert.rejects(loadTokenizer(join(d, 'tokenizer.json'), { vocabSize: 8 }), /vocabulary has 8/);
  });

  test('missing or invalid files name the file', async () => {
    const d = folder('bad', {
      'broken.json': '{ "model": ',
      'list.json': '[1, 2]',
      'nomodel.json': { version: '1.0' },
      'badmodel.json': { model: { type: 'Nonsense' } },
      // The library would build these as something else without a word (a pass-through model; <unk> for bytes).
      'wordlevel.json': { model: { type: 'WordLevel', vocab: { a: 0, '[UNK]': 1 }, unk_token: '[UNK]' } },
      'unigram-bytes.json': {
        model: {
          type: 'Unigram',
          unk_id: 0,
          vocab: [
            ['<unk>', 0],
            ['a', -1],
          ],
          byte_fallback: true,
        },
      },
      'badnormalizer.json': { ...TOKENIZER_JSON, normalizer: { type: 'Nonsense' } },
    });
    const cases: [string, RegExp][] = [
      [join(d, 'absent.json'), /tokenizer not found/],
      [join(d, 'broken.json'), /not valid JSON/],
      [join(d, 'list.json'), /JSON object/],
      [join(d, 'nomodel.json'), /no "model"/],
      [join(d, 'badmodel.json'), /model type "Nonsense" is not supported \(BPE, WordPiece, Unigram are\)/],
      [join(d, 'wordlevel.json'), /model type "WordLevel" is not supported/],
      [join(d, 'unigram-bytes.json'), /Unigram with byte_fallback is not supported/],
      [join(d, 'badnormalizer.json'), /not a usable tokenizer.json: .*Nonsense/],
    ];
    for (const [p, re] of cases) {
      await assert.rejects(loadTokenizer(p), (err: unknown) => {
        assert.ok(err instanceof GenepruneError, String(err));
        assert.equal(err.kind, 'file');
        assert.equal(err.where, p);
        assert.match(err.message, re);
        assert.doesNotMatch(err.oneLine(), /\n/);
        return true;
      });
    }
    const badConfig = folder('badconfig', { 'tokenizer.json': TOKENIZER_JSON, 'tokenizer_config.json': '{' });
    await assert.rejects(
      loadTokenizer(join(badConfig, 'tokenizer.json')),
      /tokenizer_config.json is not valid JSON/,
    );
  });
});

describe('malformed tokenizer.json: one sentence naming the field, never the library’s TypeError', () => {
  const model = TOKENIZER_JSON.model;
  /** Asserts `path` is refused as a file error at `path` whose message matches `re` and holds no JS error text. */
  async function refused(path: string, re: RegExp) {
    await assert.rejects(loadTokenizer(path), (err: unknown) => {
      assert.ok(err instanceof GenepruneError, String(err));
      assert.equal(err.where, path);
      assert.match(err.message, re);
      assert.doesNotMatch(err.message, /TypeError|Cannot read properties|is not a function|undefined/);
      return true;
    });
  }

  test('why: a bad vocab, merges or added token used to surface as "x.split is not a function" and the like', async () => {
    const d = folder('malformed', {
      'vocab-list.json': { ...TOKENIZER_JSON, model: { ...model, vocab: [1, 2] } },
      'vocab-float.json': { ...TOKENIZER_JSON, model: { ...model, vocab: { ...VOCAB, x: 1.5 } } },
      'merge-number.json': { ...TOKENIZER_JSON, model: { ...model, merges: ['h e', 7] } },
      'merge-nospace.json': { ...TOKENIZER_JSON, model: { ...model, merges: ['h e', 'll'] } },
      'merge-mixed.json': { ...TOKENIZER_JSON, model: { ...model, merges: [['h', 'e'], 'l l'] } },
      'no-merges.json': { ...TOKENIZER_JSON, model: { ...model, merges: undefined } },
      'unigram-pairs.json': {
        ...TOKENIZER_JSON,
        model: { type: 'Unigram', unk_id: 0, vocab: [['a', -1], 'b'] },
      },
      'unigram-unk.json': { ...TOKENIZER_JSON, model: { type: 'Unigram', unk_id: 5, vocab: [['a', -1]] } },
      'added-token.json': { ...TOKENIZER_JSON, added_tokens: [{ content: '<s>' }] },
      'decoder.json': { ...TOKENIZER_JSON, decoder: { type: 'Sequence', decoders: 5 } },
      'pre-tokenizer.json': { ...TOKENIZER_JSON, pre_tokenizer: { type: 'Sequence', pretokenizers: 7 } },
    });
    const cases: Array<[string, RegExp]> = [
      [
        'vocab-list.json',
        /^not a valid tokenizer.json: "model.vocab" must be an object mapping each token to its id$/,
      ],
      ['vocab-float.json', /"model.vocab" must map each token to a non-negative integer id \("x" has 1.5\)$/],
      ['merge-number.json', /"model.merges" entry 1 is 7, not a string "a b"$/],
      ['merge-nospace.json', /"model.merges" entry 1 is "ll", not a string "a b"$/],
      [
        'merge-mixed.json',
        /"model.merges" entry 1 is "l l", not a pair \["a", "b"\] \(the form of entry 0\)$/,
      ],
      ['no-merges.json', /"model.merges" must be a list$/],
      ['unigram-pairs.json', /"model.vocab" entry 1 is "b", not a \[token, score\] pair$/],
      ['unigram-unk.json', /"model.unk_id" 5 is not an index into "model.vocab" \(0..0\)$/],
      ['added-token.json', /"added_tokens" entry 0 is \{"content":"<s>"\}, not \{"id": non-negative integer/],
      [
        'decoder.json',
        /^not a usable tokenizer.json: its "decoder" section is malformed \(the tokenizers library cannot read it\)$/,
      ],
      ['pre-tokenizer.json', /its "pre_tokenizer" section is malformed/],
    ];
    for (const [name, re] of cases) await refused(join(d, name), re);
    // The well-formed original still loads (the checks refuse only what is broken).
    const ok = folder('wellformed', { 'tokenizer.json': TOKENIZER_JSON });
    assert.deepEqual(
      (await loadTokenizer(join(ok, 'tokenizer.json'))).encode('hello world', { bos: false }),
      HELLO_WORLD,
    );
  });

  test('why: a tokenizer.json that is a directory said "tokenizer not found"; now "is a directory"', async () => {
    const d = folder('dir-named-json', {});
    const named = join(d, 'tokenizer.json');
    mkdirSync(named);
    writeFileSync(join(named, 'tokenizer.json'), JSON.stringify(TOKENIZER_JSON));
    await assert.rejects(loadTokenizer(named), (err: unknown) => {
      assert.ok(err instanceof GenepruneError);
      assert.equal(err.oneLine(), `${named}: is a directory, not a tokenizer file`);
      return true;
    });
    // A model folder whose tokenizer.json is a directory: named as such, not skipped as if absent.
    await assert.rejects(loadTokenizer(d), (err: unknown) => {
      assert.ok(err instanceof GenepruneError);
      assert.equal(err.oneLine(), `${named}: is a directory, not a tokenizer file`);
      return true;
    });
    // tokenizer_config.json that is a directory: the fs reason in words, not the raw EISDIR text.
    const withConfigDir = folder('config-dir', { 'tokenizer.json': TOKENIZER_JSON });
    mkdirSync(join(withConfigDir, 'tokenizer_config.json'));
    await assert.rejects(loadTokenizer(join(withConfigDir, 'tokenizer.json')), (err: unknown) => {
      assert.ok(err instanceof GenepruneError);
      assert.equal(
        err.oneLine(),
        `${join(withConfigDir, 'tokenizer_config.json')}: cannot read tokenizer_config.json: is a directory`,
      );
      return true;
    });
  });
});
