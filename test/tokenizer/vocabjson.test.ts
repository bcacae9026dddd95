/**
 * Byte-level BPE from vocab.json + merges.txt (CodeT5's, RoBERTa's files without tokenizer.json): hand-worked ids on
 * a tiny vocabulary (merge order, ByteLevel's Ġ for spaces, RobertaProcessing's <s> … </s>, the mask token taking the
 * space before it); on codet5-tiny, the same ids as its tokenizer.json for every text and code of data/codegen and
 * the texts back on decoding; folder discovery, export, and one-line refusals.
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { loadModelSpec, tokenizerPathFor } from '../../src/model/load.js';
import { exportModel } from '../../src/prune/export.js';
import { loadHfTokenizer } from '../../src/tokenizer/hf.js';
import { loadTokenizer } from '../../src/tokenizer/load.js';
import { rejectsFileError, tempDir } from '../checkpoint/helpers.js';
import { writeRandomEncoder } from '../helpers/encoders.js';
import { sharedPath, skipUnlessShared } from '../shared.js';

const tmp = tempDir('geneprune-vocabjson-');
after(tmp.cleanup);
let count = 0;

/** A folder with the given vocab.json, merges.txt text and optional tokenizer_config.json. */
function bpeFolder(vocab: Record<string, number>, merges: string, config?: Record<string, unknown>): string {
  const dir = join(tmp.dir, `t${count++}`);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'vocab.json'), JSON.stringify(vocab));
  writeFileSync(join(dir, 'merges.txt'), merges);
  if (config) writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify(config));
  return dir;
}

const TINY = { '<s>': 0, '<pad>': 1, '</s>': 2, '<unk>': 3, a: 4, b: 5, Ġ: 6, ab: 7, Ġab: 8, '<mask>': 9 };
const TINY_MERGES = '#version: 0.2\na b\nĠ ab\n';
const TINY_CONFIG = { bos_token: '<s>', eos_token: '</s>' };

describe('vocab.json + merges.txt', () => {
  test('hand-worked ids on a tiny vocabulary', async () => {
    const tok = await loadTokenizer(bpeFolder(TINY, TINY_MERGES, TINY_CONFIG));
    // "ab" → a b → (rank 0) ab; " ab" → Ġ a b → Ġ ab → (rank 1) Ġab; wrapped in <s> … </s>.
    assert.deepEqual(tok.encodeInput('ab ab').ids, [0, 7, 8, 2]);
    assert.deepEqual(tok.encodeInput('ba').ids, [0, 5, 4, 2]);
    // The mask token is never split and takes the space to its left (lstrip).
    assert.deepEqual(tok.encodeInput('ab <mask>').ids, [0, 7, 9, 2]);
    assert.deepEqual(tok.encode('ab ab', { bos: false, eos: false }), [7, 8]);
    assert.equal(tok.decode([0, 7, 8, 2]), 'ab ab');
  });

  test('codet5-tiny: the ids of its tokenizer.json on all of data/codegen, and the texts back', {
    skip: skipUnlessShared('models/codet5-tiny', 'data/codegen/calib.jsonl', 'data/codegen/eval.jsonl'),
  }, async () => {
    const model = sharedPath('models/codet5-tiny')!;
    const dir = join(tmp.dir, 'codet5-slow');
    mkdirSync(dir);
    for (const name of ['vocab.json', 'merges.txt', 'tokenizer_config.json', 'special_tokens_map.json']) {
      copyFileSync(join(model, name), join(dir, name));
    }
    assert.equal(tokenizerPathFor(dir), join(dir, 'vocab.json'));
    const slow = await loadTokenizer(dir, { vocabSize: 1252 });
    assert.equal(slow.source, join(dir, 'vocab.json'));
    const fast = await loadTokenizer(join(model, 'tokenizer.json'));
    assert.deepEqual([slow.bosId, slow.eosId, slow.padId], [fast.bosId, fast.eosId, fast.padId]);
    let checked = 0;
    for (const split of ['calib', 'eval']) {
      const rows = readFileSync(sharedPath(`data/codegen/${split}.jsonl`)!, 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { text: string; code: string });
      for (const { text, code } of rows) {
        const src = slow.encodeInput(text).ids;
        assert.deepEqual(src, fast.encodeInput(text).ids, text);
        assert.deepEqual(slow.encode(text), fast.encode(text), text);
        const target = slow.encode(code, { bos: false, eos: false });
        assert.deepEqual(target, fast.encode(code, { bos: false, eos: false }), code);
        assert.equal(slow.decode(src), text);
        assert.equal(slow.decode([...target, 2]), code);
        checked++;
      }
    }
    assert.equal(checked, 400);
  });

  test('an export writes the equivalent tokenizer.json', {
    skip: skipUnlessShared('models/codet5-tiny'),
  }, async () => {
    const model = sharedPath('models/codet5-tiny')!;
    const dir = join(tmp.dir, 'export-src');
    mkdirSync(dir);
    for (const name of ['vocab.json', 'merges.txt', 'tokenizer_config.json']) {
      copyFileSync(join(model, name), join(dir, name));
    }
    const encoder = await writeRandomEncoder(tmp.dir, 'roberta', {
      modelType: 'roberta',
      vocab: 1252,
      seed: 3,
    });
    const spec = await loadModelSpec(encoder.dir);
    const out = join(tmp.dir, 'exported');
    const result = await exportModel({ spec, out, format: 'hf', tokenizerPath: join(dir, 'vocab.json') });
    assert.ok(result.files.includes('tokenizer.json'), result.files.join());
    const written = await loadHfTokenizer(join(out, 'tokenizer.json'));
    const original = await loadTokenizer(join(model, 'tokenizer.json'));
    for (const text of ['Write a function to add two numbers.', 'def f(x):\n    return x * 2']) {
      assert.deepEqual(written.encodeInput(text).ids, original.encodeInput(text).ids, text);
    }
  });

  test('bad files fail in one line naming the file', async () => {
    const noHeader = bpeFolder(TINY, 'a b\nĠ ab\n', TINY_CONFIG);
    await rejectsFileError(
      loadTokenizer(noHeader),
      join(noHeader, 'merges.txt'),
      /^merges\.txt has no "#version" first line: transformers skips the first line, so its first merge would be lost$/,
    );
    const badLine = bpeFolder(TINY, '#version: 0.2\na b c\n', TINY_CONFIG);
    await rejectsFileError(
      loadTokenizer(badLine),
      join(badLine, 'merges.txt'),
      /^merges\.txt line 2 is "a b c", not two symbols "a b"$/,
    );
    const { '<mask>': _mask, ...noMask } = TINY;
    const missing = bpeFolder(noMask, TINY_MERGES, TINY_CONFIG);
    await rejectsFileError(
      loadTokenizer(missing),
      join(missing, 'vocab.json'),
      /^special token "<mask>" has no id in vocab\.json \(transformers would append it; this reader does not\)$/,
    );
    const alone = join(tmp.dir, 'alone');
    mkdirSync(alone);
    writeFileSync(join(alone, 'vocab.json'), JSON.stringify(TINY));
    await rejectsFileError(
      loadTokenizer(alone),
      join(alone, 'vocab.json'),
      /^vocab\.json without merges\.txt beside it: a byte-level BPE tokenizer needs both$/,
    );
  });
});
