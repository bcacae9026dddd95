/**
 * BERT vocab.txt without a tokenizer.json: the WordPiece tokenizer built from it (and tokenizer_config.json's
 * do_lower_case) gives the ids a hand-written BERT tokenizer.json over the same vocabulary gives, and hand-worked
 * ids (greedy longest-match-first, ## continuations, [UNK] for what no piece covers); a folder with only vocab.txt
 * loads; an export writes the equivalent tokenizer.json; bad files fail in one line.
 */
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import type { GenepruneError } from '../../src/errors.js';
import { loadModelSpec } from '../../src/model/load.js';
import { exportModel } from '../../src/prune/export.js';
import { loadHfTokenizer } from '../../src/tokenizer/hf.js';
import { loadTokenizer } from '../../src/tokenizer/load.js';
import { tempDir } from '../checkpoint/helpers.js';
import { writeRandomEncoder } from '../helpers/encoders.js';
import { wordPieceTokenizerJson } from '../helpers/wordpiece.js';

const tmp = tempDir('geneprune-vocabtxt-');
after(tmp.cleanup);

const WORDS = ['good', 'movie', 'un', '##believ', '##able', 'the'];

/** A folder holding vocab.txt (the helper's vocabulary, one token per line in id order) and maybe a config. */
function vocabFolder(
  name: string,
  config?: Record<string, unknown>,
): { dir: string; json: Record<string, unknown> } {
  const { json } = wordPieceTokenizerJson(WORDS);
  const vocab = (json.model as { vocab: Record<string, number> }).vocab;
  const lines = Object.entries(vocab)
    .sort((a, b) => a[1] - b[1])
    .map(([t]) => t);
  const dir = join(tmp.dir, name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'vocab.txt'), `${lines.join('\n')}\n`);
  if (config) writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify(config));
  return { dir, json };
}

describe('vocab.txt', () => {
  test('gives the ids of the equivalent tokenizer.json and hand-worked ids', async () => {
    const { dir, json } = vocabFolder('plain');
    const fromVocab = await loadTokenizer(dir);
    const jsonPath = join(tmp.dir, 'reference-tokenizer.json');
    writeFileSync(jsonPath, JSON.stringify(json));
    const reference = await loadHfTokenizer(jsonPath);
    const vocab = (json.model as { vocab: Record<string, number> }).vocab;
    for (const text of ['The GOOD movie', 'unbelievable!', 'Café, naïve 中文 😀', '', 'x'.repeat(150)]) {
      assert.deepEqual(fromVocab.encode(text), reference.encode(text), text);
      assert.deepEqual(
        fromVocab.encodeInput(text, { pair: 'good' }),
        reference.encodeInput(text, { pair: 'good' }),
        text,
      );
    }
    // [CLS] un ##believ ##able [SEP]: longest pieces first; "the" lowercased.
    const v = (t: string) => vocab[t];
    assert.deepEqual(fromVocab.encode('Unbelievable the'), [
      v('[CLS]'),
      v('un'),
      v('##believ'),
      v('##able'),
      v('the'),
      v('[SEP]'),
    ]);
    // A word over 100 characters is [UNK], as WordPiece defines it.
    assert.deepEqual(fromVocab.encode('a'.repeat(101)), [v('[CLS]'), v('[UNK]'), v('[SEP]')]);
  });

  test('do_lower_case false keeps case: GOOD is spelled letter by letter from pieces it has', async () => {
    const { dir, json } = vocabFolder('cased', { do_lower_case: false });
    const vocab = (json.model as { vocab: Record<string, number> }).vocab;
    const tok = await loadTokenizer(join(dir, 'vocab.txt'));
    // No uppercase pieces: each uppercase word is [UNK]; lowercase "good" is one piece.
    assert.deepEqual(tok.encode('GOOD good'), [vocab['[CLS]'], vocab['[UNK]'], vocab.good, vocab['[SEP]']]);
  });

  test('an export writes the equivalent tokenizer.json beside vocab.txt', async () => {
    const { dir, json } = vocabFolder('export', { do_lower_case: true, model_max_length: 512 });
    const size = Object.keys((json.model as { vocab: Record<string, number> }).vocab).length;
    const encoder = await writeRandomEncoder(tmp.dir, 'bert', {
      modelType: 'bert',
      labels: 2,
      vocab: size,
      seed: 3,
    });
    const spec = await loadModelSpec(encoder.dir);
    const out = join(tmp.dir, 'exported');
    const result = await exportModel({ spec, out, format: 'hf', tokenizerPath: join(dir, 'vocab.txt') });
    assert.ok(
      result.files.includes('tokenizer.json') && result.files.includes('vocab.txt'),
      result.files.join(),
    );
    const written = await loadHfTokenizer(join(out, 'tokenizer.json'));
    const original = await loadTokenizer(dir);
    for (const text of ['The good movie', 'unbelievable', 'naïve']) {
      assert.deepEqual(written.encode(text), original.encode(text), text);
    }
  });

  test('bad files fail in one line naming the file', async () => {
    const empty = join(tmp.dir, 'empty');
    mkdirSync(empty);
    writeFileSync(join(empty, 'vocab.txt'), '');
    await assert.rejects(loadTokenizer(empty), (e: GenepruneError) =>
      /vocab\.txt: vocab\.txt is empty$/.test(e.oneLine()),
    );
    const noCls = join(tmp.dir, 'nocls');
    mkdirSync(noCls);
    writeFileSync(join(noCls, 'vocab.txt'), '[PAD]\n[UNK]\n[SEP]\nhello\n');
    await assert.rejects(loadTokenizer(noCls), (e: GenepruneError) =>
      /has no \[CLS\] token/.test(e.oneLine()),
    );
  });
});
