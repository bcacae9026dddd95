/**
 * Data must be text, and `--max-tokens N` reads and tokenizes only what N tokens need: tokenizePrefix streams
 * documents and cuts long ones at spaces, and must give exactly the prefix of tokenizing everything whole.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { GenepruneError } from '../../src/errors.js';
import { firstNonTextByte, readDataset, streamDocuments } from '../../src/metrics/data.js';
import { tokenizeDocuments, tokenizePrefix } from '../../src/metrics/perplexity.js';
import { writeTokenizerFiles } from '../../src/tokenizer/convert.js';
import { parseLlama2cVocab } from '../../src/tokenizer/llama2c.js';
import { loadTokenizer, type Tokenizer } from '../../src/tokenizer/load.js';
import { tempDir } from '../checkpoint/helpers.js';
import { sharedPath, skipUnlessShared } from '../shared.js';

const tmp = tempDir('geneprune-prefix-');
after(tmp.cleanup);

const TOK512 = 'models/stories260K/tok512.bin';
const CALIB = 'data/tinystories/calib';

function write(name: string, content: string | Uint8Array): string {
  const path = join(tmp.dir, name);
  writeFileSync(path, content);
  return path;
}

/** Documents as streamDocuments delivers them, trimmed and without empty ones (readDataset's view). */
async function streamedDocuments(path: string, chunkBytes: number): Promise<string[]> {
  const docs: string[] = [];
  let current = '';
  for await (const e of streamDocuments(path, { chunkBytes })) {
    if (e.kind === 'text') current += e.text;
    else {
      if (current.trim()) docs.push(current.trim());
      current = '';
    }
  }
  return docs;
}

async function rejectsNotText(work: Promise<unknown>, path: string, offset: number, what: RegExp) {
  await assert.rejects(work, (e: unknown) => {
    assert.ok(e instanceof GenepruneError, String(e));
    assert.equal(e.where, path);
    assert.match(e.message, what);
    assert.match(e.message, new RegExp(`at byte offset ${offset} `));
    return true;
  });
}

describe('firstNonTextByte', () => {
  const at = (bytes: number[]) => firstNonTextByte(Uint8Array.from(bytes));
  test('accepts text: ASCII, tab, LF, CR, form feed, 2- to 4-byte UTF-8', () => {
    assert.equal(firstNonTextByte(Buffer.from('a\tb\nc\r\nd\fe é € 𝄞 日本')), -1);
  });
  test('finds control bytes (DEL too) and invalid UTF-8 at their offset', () => {
    assert.equal(at([0x61, 0x00]), 1);
    assert.equal(at([0x61, 0x62, 0x0b]), 2); // vertical tab
    assert.equal(at([0x1b, 0x5b]), 0); // escape
    assert.equal(at([0x61, 0x7f]), 1);
    assert.equal(at([0x61, 0x80]), 1); // lone continuation
    assert.equal(at([0xc0, 0xaf]), 0); // overlong '/'
    assert.equal(at([0x61, 0xe0, 0x80, 0xaf]), 1); // overlong 3-byte
    assert.equal(at([0xed, 0xa0, 0x80]), 0); // surrogate U+D800
    assert.equal(at([0xf4, 0x90, 0x80, 0x80]), 0); // past U+10FFFF
    assert.equal(at([0x61, 0x62, 0xe2, 0x82]), 2); // truncated €
    assert.equal(at([0xe2, 0x41, 0x41]), 0); // lead without continuations
    assert.equal(at([0xff]), 0);
  });
});

describe('data that is not text is refused', () => {
  test('why: 200 KB of random bytes was scored as data (ppl 1.5e9) — refused naming file and offset', async () => {
    // A fixed LCG so the bytes are the same every run; the first non-text byte is found independently.
    const bytes = new Uint8Array(200_000);
    let x = 12345;
    for (let i = 0; i < bytes.length; i++) {
      x = (Math.imul(x, 1103515245) + 12345) >>> 0;
      bytes[i] = x >>> 24;
    }
    const path = write('random.txt', bytes);
    const expected = new TextDecoder('utf-8', { fatal: true });
    let offset = 0;
    while (offset < bytes.length) {
      const c = bytes[offset];
      if (c < 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0c && c !== 0x0d) break;
      if (c === 0x7f) break;
      if (c >= 0x80) {
        // A valid multi-byte character would decode alone; random bytes rarely make one.
        let ok = false;
        for (const len of [2, 3, 4]) {
          try {
            expected.decode(bytes.subarray(offset, offset + len));
            offset += len;
            ok = true;
            break;
          } catch {}
        }
        if (!ok) break;
        continue;
      }
      offset++;
    }
    assert.ok(offset < 50, `random bytes break text within a few bytes (at ${offset})`);
    await rejectsNotText(readDataset(path), path, offset, /^not text: /);
    await rejectsNotText(tokenizePrefix(path, fakeTokenizer(), 10), path, offset, /^not text: /);
  });

  test('a NUL deep in a text file, a bad UTF-8 byte in a JSONL file, DEL: each named with its offset', async () => {
    const text = 'Once upon a time.\n'.repeat(1000);
    const nul = write('nul.txt', `${text}x\u0000y`);
    await rejectsNotText(readDataset(nul), nul, text.length + 1, /^not text: control byte 0x00 /);
    const jsonl = Buffer.concat([
      Buffer.from('{"text": "ok"}\n{"text": "caf'),
      Buffer.from([0xe9]),
      Buffer.from('"}\n'),
    ]);
    const jsonlPath = write('latin1.jsonl', jsonl);
    await rejectsNotText(readDataset(jsonlPath), jsonlPath, 28, /^not text: invalid UTF-8 \(byte 0xe9\)/);
    const del = write('del.txt', 'abc\u007f');
    await rejectsNotText(readDataset(del), del, 3, /control byte 0x7f/);
  });

  test('form feed, tab and CRLF pass; a character cut by every chunk boundary passes', async () => {
    const content = 'Page one.\f\nPage\ttwo: café €5 𝄞.\r\n<|endoftext|>\r\nNext story 日本.\n';
    const path = write('ff.txt', content);
    const whole = (await readDataset(path)).documents;
    assert.deepEqual(whole, ['Page one.\f\nPage\ttwo: café €5 𝄞.', 'Next story 日本.']);
    for (const chunk of [1, 2, 3, 5, 7]) assert.deepEqual(await streamedDocuments(path, chunk), whole);
  });

  test('the streaming path checks only what it read: a bad byte past the needed tokens is not reached', async () => {
    const path = write('late-bad.txt', `${'word '.repeat(20_000)}\u0000`);
    const r = await tokenizePrefix(path, fakeTokenizer(), 100, { chunkBytes: 4096, pieceChars: 1000 });
    assert.equal(r.tokens.length, 100);
    assert.ok(r.bytesRead <= 8192, `read ${r.bytesRead} bytes`);
    await assert.rejects(
      tokenizePrefix(path, fakeTokenizer(), 1e9, { chunkBytes: 4096 }),
      /control byte 0x00/,
    );
  });
});

describe('streamDocuments splits documents exactly as readDataset does', () => {
  const cases: Record<string, string> = {
    separators: 'A story.\n<|endoftext|>\nB story.\n<|endoftext|>  \t\nC.\n<|endoftext|>',
    'mid-line marker stays text': 'x <|endoftext|>\n<|endoftext|>x\n<|endoftext|>\ny',
    'CR and CRLF line ends': 'one\r<|endoftext|>\rtwo\r\n<|endoftext|>\r\nthree',
    'U+2028 line end': 'one\u2028<|endoftext|>\u2029two',
    'empty and blank documents': '<|endoftext|>\n\n  \n<|endoftext|>\n<|endoftext|>\nlast',
    'no trailing newline, long line': `${'long line '.repeat(300)}end`,
  };
  for (const [name, content] of Object.entries(cases)) {
    test(name, async () => {
      const path = write(`split-${name.replace(/\W+/g, '-')}.txt`, content);
      const whole = (await readDataset(path)).documents;
      for (const chunk of [1, 2, 3, 4, 13, 14, 64, 1 << 16]) {
        assert.deepEqual(await streamedDocuments(path, chunk), whole, `chunk ${chunk}`);
      }
    });
  }

  test('JSONL, and a folder read in name order', async () => {
    const dir = join(tmp.dir, 'folder');
    const { mkdirSync } = await import('node:fs');
    mkdirSync(dir);
    writeFileSync(join(dir, 'b.jsonl'), '{"text": " j1 "}\n\n{"text": "j2\\nline"}\n{"text": "   "}');
    writeFileSync(join(dir, 'a.txt'), 't1\n<|endoftext|>\nt2\n');
    const whole = (await readDataset(dir)).documents;
    assert.deepEqual(whole, ['t1', 't2', 'j1', 'j2\nline']);
    for (const chunk of [1, 5, 1024]) assert.deepEqual(await streamedDocuments(dir, chunk), whole);
  });
});

/** Characters as tokens, a space only ever starting one: enough to test the streaming plumbing quickly. */
function fakeTokenizer(): Tokenizer {
  return {
    vocabSize: 1 << 16,
    bosId: 1,
    encode: (text, opts = {}) => [
      ...(opts.bos ? [1] : []),
      ...Array.from(` ${text}`, (c) => c.codePointAt(0)!),
    ],
    decode: () => '',
    decodeToken: () => '',
    encodeInput: () => {
      throw new Error('tokenizePrefix does not build model inputs');
    },
    source: 'fake',
  };
}

describe('tokenizePrefix on the real tokenizers and data', {
  skip: skipUnlessShared(TOK512) || skipUnlessShared(CALIB),
}, () => {
  const tokenizers: Array<[string, Tokenizer]> = [];
  let docs: string[];
  before(async () => {
    const bin = sharedPath(TOK512)!;
    tokenizers.push(['tokenizer.bin', await loadTokenizer(bin, { vocabSize: 512 })]);
    const { tokenizerJson } = await writeTokenizerFiles(join(tmp.dir, 'tok512'), bin, { vocabSize: 512 });
    tokenizers.push(['tokenizer.json', await loadTokenizer(tokenizerJson, { vocabSize: 512 })]);
    docs = (await readDataset(sharedPath(CALIB)!)).documents;
  });

  test('the claim the cuts rest on: no tok512 piece holds a space after a non-space', () => {
    const bin = sharedPath(TOK512)!;
    const pieces = parseLlama2cVocab(readFileSync(bin), bin, 512).pieces;
    const offenders = pieces.map((p) => Buffer.from(p).toString('latin1')).filter((p) => /[^\s] /.test(p));
    assert.deepEqual(offenders, []);
    assert.ok(
      pieces.some((p) => p[0] === 0x20 && p.length > 1),
      'pieces do start with a space',
    );
  });

  test('many documents (the calib folder): equals the prefix of tokenizing everything, for several N', async () => {
    for (const [name, tok] of tokenizers) {
      const full = tokenizeDocuments(docs, tok);
      for (const n of [1, 2, 3, 100, 4097, full.length - 1, full.length, full.length + 50]) {
        for (const opts of [{}, { chunkBytes: 777, pieceChars: 40 }]) {
          const r = await tokenizePrefix(sharedPath(CALIB)!, tok, n, opts);
          assert.deepEqual(r.tokens, full.slice(0, n), `${name}, N = ${n}, ${JSON.stringify(opts)}`);
        }
      }
    }
  });

  test('one enormous document (all stories on one line): cut in pieces, equals tokenizing it whole', async () => {
    const line = docs.join(' ').replace(/\s+/g, ' ');
    const path = write('one-line.txt', line);
    for (const [name, tok] of tokenizers) {
      const full = tok.encode(line, { bos: true });
      for (const n of [5, 1000, full.length]) {
        for (const pieceChars of [17, 200, 5000]) {
          const r = await tokenizePrefix(path, tok, n, { chunkBytes: 1000, pieceChars });
          assert.deepEqual(r.tokens, full.slice(0, n), `${name}, N = ${n}, pieces of ${pieceChars}`);
        }
      }
    }
  });

  test('why: --max-tokens 4096 on a 30 MB one-line file read it all — reads a few hundred KB', async () => {
    const line = docs.join(' ').replace(/\s+/g, ' ');
    const big = `${line} `.repeat(Math.ceil(30e6 / (line.length + 1)));
    const path = write('thirty-mb.txt', big);
    const [, tok] = tokenizers[0];
    const r = await tokenizePrefix(path, tok, 4097);
    // Independent expectation: tokenizing a 100 KB head of the line, cut at a space, whole.
    const head = big.slice(0, big.lastIndexOf(' ', 100_000));
    assert.deepEqual(r.tokens, tok.encode(head, { bos: true }).slice(0, 4097));
    assert.ok(big.length >= 30e6);
    assert.ok(r.bytesRead < 300_000, `read ${r.bytesRead} bytes of ${big.length}`);
    assert.equal(r.documents, 1);
  });
});
