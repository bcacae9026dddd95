import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { GenepruneError } from '../../src/errors.js';
import { loadLlama2cTokenizer } from '../../src/tokenizer/llama2c.js';
import { loadTokenizer } from '../../src/tokenizer/load.js';
import { sharedPath, skipUnlessShared } from '../shared.js';

/** Write a llama2.c tokenizer.bin image: int32 max_token_length, then (float32 score, int32 len, bytes) each. */
function tokenizerBin(pieces: [string, number][]): Buffer {
  const encoded = pieces.map(([p, s]) => [Buffer.from(p, 'latin1'), s] as const);
  const maxLen = Math.max(...encoded.map(([b]) => b.length));
  const parts: Buffer[] = [];
  const head = Buffer.alloc(4);
  head.writeInt32LE(maxLen);
  parts.push(head);
  for (const [bytes, score] of encoded) {
    const h = Buffer.alloc(8);
    h.writeFloatLE(score, 0);
    h.writeInt32LE(bytes.length, 4);
    parts.push(h, bytes);
  }
  return Buffer.concat(parts);
}

const hex = (b: number) => `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`;
const utf8 = (s: string) => Buffer.from(s, 'utf8').toString('latin1');

// ids 0..2 control, 3..258 byte tokens, then hand-chosen pieces and merge scores.
const TINY: [string, number][] = [
  ['<unk>', 0],
  ['\n<s>\n', 0],
  ['\n</s>\n', 0],
  ...Array.from({ length: 256 }, (_, b) => [hex(b), 0] as [string, number]),
  [' ', -100], // 259
  ['a', -100], // 260
  ['b', -100], // 261
  ['c', -100], // 262
  ['ab', 5], // 263
  ['bc', 5], // 264: ties with 'ab'
  [' a', 3], // 265
  ['abc', 1], // 266
  [' ab', 4], // 267
  [utf8('é'), -100], // 268: a non-ASCII character present as a whole
  ['ca', -2e10], // 269: below run.c's -1e10 floor, so never merged
];

const dir = mkdtempSync(join(tmpdir(), 'geneprune-tok-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const tinyPath = join(dir, 'tiny.bin');
writeFileSync(tinyPath, tokenizerBin(TINY));

describe('llama2.c tokenizer on a hand-made vocabulary', async () => {
  const tok = await loadLlama2cTokenizer(tinyPath, { vocabSize: TINY.length });

  test('header facts', () => {
    assert.equal(tok.vocabSize, 270);
    assert.equal(tok.bosId, 1);
    assert.equal(tok.eosId, 2);
    assert.equal(tok.source, tinyPath);
  });

  test('merges: the highest score first, the leftmost pair on ties', () => {
    // ' ','a','b','c' → ab (5, left of bc 5) → ' ab' (4) → ' ab','c'
    assert.deepEqual(tok.encode('abc'), [267, 262]);
    // ' ','b','c' → bc; ' bc' is not a piece
    assert.deepEqual(tok.encode('bc'), [259, 264]);
    // 'ca' exists but its score is below run.c's starting best score
    assert.deepEqual(tok.encode('ca'), [259, 262, 260]);
  });

  test('empty text, BOS and EOS', () => {
    assert.deepEqual(tok.encode(''), []);
    assert.deepEqual(tok.encode('', { bos: true, eos: true }), [1, 2]);
    assert.deepEqual(tok.encode('abc', { bos: true }), [1, 267, 262]);
    assert.deepEqual(tok.encode('abc', { eos: true }), [267, 262, 2]);
  });

  test('non-ASCII: whole-character lookup, else UTF-8 byte fallback (byte + 3)', () => {
    assert.deepEqual(tok.encode('é'), [259, 268]);
    // ø = C3 B8
    assert.deepEqual(tok.encode('aø'), [265, 0xc3 + 3, 0xb8 + 3]);
    // 😀 = F0 9F 98 80
    assert.deepEqual(tok.encode('😀'), [259, 0xf0 + 3, 0x9f + 3, 0x98 + 3, 0x80 + 3]);
  });

  test('decode: leading space dropped at the start / after BOS, byte tokens become raw bytes', () => {
    assert.equal(tok.decode([267, 262]), 'abc');
    assert.equal(tok.decode([1, 267, 262, 2]), 'abc');
    assert.equal(tok.decode([265, 0xc3 + 3, 0xb8 + 3]), 'aø');
    assert.equal(tok.decode([259, 0xf0 + 3, 0x9f + 3, 0x98 + 3, 0x80 + 3]), '😀');
    assert.equal(tok.decode([262, 267]), 'c ab');
    assert.equal(tok.decode([]), '');
  });

  test('decodeToken streams token text', () => {
    assert.equal(tok.decodeToken(undefined, 267), 'ab');
    assert.equal(tok.decodeToken(1, 267), 'ab');
    assert.equal(tok.decodeToken(262, 267), ' ab');
    assert.equal(tok.decodeToken(1, 259), '');
    assert.equal(tok.decodeToken(267, 'A'.charCodeAt(0) + 3), 'A');
    assert.equal(tok.decodeToken(1, 2), '');
    assert.throws(() => tok.decodeToken(1, 270), GenepruneError);
  });

  test('encodeInput: BOS then the text, as run.c prompts; no pairs, no pad token', () => {
    assert.deepEqual(tok.encodeInput('abc'), { ids: [1, 267, 262], typeIds: [0, 0, 0], truncated: false });
    assert.deepEqual(tok.encodeInput(''), { ids: [1], typeIds: [0], truncated: false });
    assert.deepEqual(tok.encodeInput('abc', { maxLength: 3 }).truncated, false);
    assert.deepEqual(tok.encodeInput('abc', { maxLength: 2 }), {
      ids: [1, 267],
      typeIds: [0, 0],
      truncated: true,
    });
    assert.deepEqual(tok.encodeInput('abc', { maxLength: 1 }), { ids: [1], typeIds: [0], truncated: true });
    assert.equal(tok.padId, undefined);
    for (const [opts, re] of [
      [{ pair: 'b' }, /no template for text pairs/],
      [{ maxLength: 0 }, /maxLength must be a positive integer/],
    ] as const) {
      assert.throws(
        () => tok.encodeInput('abc', opts),
        (err: unknown) => {
          assert.ok(err instanceof GenepruneError);
          assert.equal(err.where, tinyPath);
          assert.match(err.message, re);
          return true;
        },
      );
    }
  });

  test('round trip on TinyStories text', {
    skip: skipUnlessShared('data/tinystories/calib/page-00.txt'),
  }, () => {
    const text = readFileSync(sharedPath('data/tinystories/calib/page-00.txt')!, 'utf8');
    for (const sample of [text.slice(0, 3000), ' two  spaces\tand tab ', 'naïve café — “quotes” 😀\n']) {
      assert.equal(tok.decode(tok.encode(sample)), sample);
      assert.equal(tok.decode(tok.encode(sample, { bos: true, eos: true })), sample);
    }
  });
});

describe('llama2.c tokenizer.bin validation', () => {
  const good = tokenizerBin(TINY);
  const expectFileError = async (bytes: Buffer, re: RegExp, vocabSize?: number) => {
    const p = join(dir, `bad-${Math.random().toString(36).slice(2)}.bin`);
    writeFileSync(p, bytes);
    await assert.rejects(loadTokenizer(p, { vocabSize }), (err: unknown) => {
      assert.ok(err instanceof GenepruneError);
      assert.equal(err.kind, 'file');
      assert.equal(err.where, p);
      assert.match(err.message, re);
      return true;
    });
  };

  test('truncated file', async () => {
    await expectFileError(good.subarray(0, good.length - 1), /truncated/);
    await expectFileError(good.subarray(0, good.length - 1), /truncated/, TINY.length);
    await expectFileError(good.subarray(0, 2), /too short/);
  });

  test('negative or absurd lengths', async () => {
    const neg = Buffer.from(good);
    neg.writeInt32LE(-5, 4 + 4); // first token's length
    await expectFileError(neg, /length -5/);
    const long = Buffer.from(good);
    long.writeInt32LE(1000, 4 + 4);
    await expectFileError(long, /length 1000/);
    const header = Buffer.from(good);
    header.writeInt32LE(0x7fffffff, 0);
    await expectFileError(header, /max_token_length/);
  });

  test('token count must match the model vocabulary', async () => {
    await expectFileError(good, /model's vocabulary has 300/, 300);
    await expectFileError(good, /more tokens than the model has/, 100);
  });

  test('missing file', async () => {
    const p = join(dir, 'nope', 'tok.bin');
    await assert.rejects(loadTokenizer(p), (err: unknown) => {
      assert.ok(err instanceof GenepruneError);
      assert.equal(err.where, p);
      assert.match(err.message, /tokenizer not found/);
      return true;
    });
  });
});

/**
 * Independent reference for run.c's encoder: pieces as hex strings, every round a full scan over all adjacent
 * pairs for the best strictly-greater score. Quadratic, fine for a few thousand characters.
 */
function referenceEncode(pieces: Buffer[], scores: number[], text: string): number[] {
  const byHex = new Map<string, number>();
  for (let i = pieces.length - 1; i >= 0; i--) byHex.set(pieces[i].toString('hex'), i);
  const seq: number[] = [];
  const add = (bytes: Buffer) => {
    const whole = byHex.get(bytes.toString('hex'));
    if (whole !== undefined) seq.push(whole);
    else for (const b of bytes) seq.push(b + 3);
  };
  if (text === '') return [];
  add(Buffer.from(' '));
  for (const ch of Array.from(text)) add(Buffer.from(ch, 'utf8'));
  for (;;) {
    let bestScore = -1e10;
    let bestAt = -1;
    let bestId = -1;
    for (let i = 0; i + 1 < seq.length; i++) {
      const joined = Buffer.concat([pieces[seq[i]], pieces[seq[i + 1]]]).toString('hex');
      const id = byHex.get(joined);
      if (id !== undefined && scores[id] > bestScore) {
        bestScore = scores[id];
        bestAt = i;
        bestId = id;
      }
    }
    if (bestAt < 0) return seq;
    seq.splice(bestAt, 2, bestId);
  }
}

function readPieces(bytes: Buffer): { pieces: Buffer[]; scores: number[] } {
  const pieces: Buffer[] = [];
  const scores: number[] = [];
  for (let at = 4; at < bytes.length; ) {
    scores.push(bytes.readFloatLE(at));
    const n = bytes.readInt32LE(at + 4);
    pieces.push(bytes.subarray(at + 8, at + 8 + n));
    at += 8 + n;
  }
  return { pieces, scores };
}

describe('stories260K tokenizer (tok512.bin)', {
  skip: skipUnlessShared('models/stories260K/tok512.bin'),
}, () => {
  const tokPath = sharedPath('models/stories260K/tok512.bin')!;
  const pagePath = sharedPath('data/tinystories/calib/page-00.txt');

  test('vocabulary of 512, wrong model vocab rejected', async () => {
    const tok = await loadTokenizer(tokPath, { vocabSize: 512 });
    assert.equal(tok.vocabSize, 512);
    assert.equal((await loadTokenizer(tokPath)).vocabSize, 512);
    await assert.rejects(loadTokenizer(tokPath, { vocabSize: 32000 }), /32000/);
  });

  test('round trip on every calib document', { skip: !pagePath && 'calib text absent' }, async () => {
    const tok = await loadTokenizer(tokPath, { vocabSize: 512 });
    const docs = readFileSync(pagePath!, 'utf8').split(/^<\|endoftext\|>$/m);
    assert.ok(docs.length > 5);
    for (const doc of docs) {
      const ids = tok.encode(doc, { bos: true });
      assert.ok(ids.every((id) => id >= 0 && id < 512));
      assert.equal(tok.decode(ids), doc);
      const streamed = ids.map((id, i) => tok.decodeToken(i === 0 ? undefined : ids[i - 1], id)).join('');
      if (!ids.some((id) => id >= 3 && id < 259)) assert.equal(streamed, doc);
    }
  });

  test('matches a naive reference encoder on real text', {
    skip: !pagePath && 'calib text absent',
  }, async () => {
    const tok = await loadTokenizer(tokPath, { vocabSize: 512 });
    const { pieces, scores } = readPieces(readFileSync(tokPath));
    const docs = readFileSync(pagePath!, 'utf8').split(/^<\|endoftext\|>$/m);
    let chars = 0;
    for (const doc of docs) {
      if (chars > 4000) break;
      chars += doc.length;
      assert.deepEqual(tok.encode(doc), referenceEncode(pieces, scores, doc));
    }
    const odd = 'Ünïcödé “mixed” — 😀 text\twith\ttabs  and  doubles.';
    assert.deepEqual(tok.encode(odd), referenceEncode(pieces, scores, odd));
    assert.ok(chars > 2000);
  });
});
