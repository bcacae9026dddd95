/** Windowing, batching and data reading, checked against hand-worked examples. */
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { GenepruneError } from '../../src/errors.js';
import { readDataset } from '../../src/metrics/data.js';
import { batches, makeWindows } from '../../src/metrics/perplexity.js';
import { tempDir } from '../checkpoint/helpers.js';

const tmp = tempDir('geneprune-metrics-');
after(tmp.cleanup);

describe('makeWindows', () => {
  test('windows of C+1 tokens overlap by one; every token after the first is predicted once', () => {
    const stream = Array.from({ length: 11 }, (_, i) => i); // 0..10
    const w = makeWindows(stream, 4);
    assert.deepEqual(
      w.rows.map((r) => [...r]),
      [
        [0, 1, 2, 3, 4],
        [4, 5, 6, 7, 8],
        [8, 9, 10],
      ],
    );
    assert.equal(w.tokens, 10);
  });

  test('an exact multiple leaves no 1-token tail', () => {
    const w = makeWindows([0, 1, 2, 3, 4, 5, 6, 7, 8], 4);
    assert.deepEqual(
      w.rows.map((r) => r.length),
      [5, 5],
    );
    assert.equal(w.tokens, 8);
  });

  test('maxTokens caps the predicted tokens', () => {
    const w = makeWindows(
      Array.from({ length: 100 }, (_, i) => i),
      8,
      13,
    );
    assert.equal(w.tokens, 13);
    assert.deepEqual([...w.rows[1]], [8, 9, 10, 11, 12, 13]);
  });

  test('too little data is an error', () => {
    assert.throws(() => makeWindows([5], 4), GenepruneError);
  });
});

describe('batches', () => {
  test('pads the short row, ignores its padded targets', () => {
    const w = makeWindows([10, 11, 12, 13, 14, 15, 16], 4); // rows [10..14], [14,15,16]
    const [b] = [...batches(w, 2)];
    assert.equal(b.batch, 2);
    assert.equal(b.seq, 4);
    assert.deepEqual([...b.ids].map(Number), [10, 11, 12, 13, 14, 15, 0, 0]);
    assert.deepEqual([...b.targets!].map(Number), [11, 12, 13, 14, 15, 16, -100, -100]);
    assert.deepEqual([...b.valid], [1, 1, 1, 1, 1, 1, 0, 0]);
  });
});

describe('readDataset', () => {
  test('text with <|endoftext|> lines, JSONL, and a folder in name order', async () => {
    const dir = join(tmp.dir, 'data');
    mkdirSync(dir);
    writeFileSync(join(dir, 'b.txt'), 'first story.\n<|endoftext|>\n  second story.  \n<|endoftext|>\n');
    writeFileSync(join(dir, 'a.jsonl'), '{"text": "from jsonl"}\n\n{"text": "  "}\n{"text": "again"}\n');
    writeFileSync(join(dir, 'notes.bin'), 'ignored');
    const d = await readDataset(dir);
    assert.deepEqual(d.documents, ['from jsonl', 'again', 'first story.', 'second story.']);
    assert.deepEqual(
      d.files.map((f) => f.slice(dir.length + 1)),
      ['a.jsonl', 'b.txt'],
    );
  });

  test('a separator inside a line does not split', async () => {
    const f = join(tmp.dir, 'inline.txt');
    writeFileSync(f, 'a <|endoftext|> b\n<|endoftext|>\nc');
    assert.deepEqual((await readDataset(f)).documents, ['a <|endoftext|> b', 'c']);
  });

  test('empty inputs are errors naming the path', async () => {
    const empty = join(tmp.dir, 'empty.txt');
    writeFileSync(empty, '   \n');
    await assert.rejects(
      readDataset(empty),
      (e: GenepruneError) => e.where === empty && /empty/.test(e.message),
    );
    const emptyDir = join(tmp.dir, 'emptydir');
    mkdirSync(emptyDir);
    await assert.rejects(readDataset(emptyDir), (e: GenepruneError) => e.where === emptyDir);
  });
});
