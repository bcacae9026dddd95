/**
 * The labelled sentiment set (`npm run data:sentiment`): reading the fixtures (whitespace, repeats, the closing
 * empty rows, malformed rows), the stratified seeded split (hand-checked counts, disjoint, deterministic), and the
 * real fixtures of the `sentiment` dev dependency end to end.
 */
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { after, describe, test } from 'node:test';
import {
  type LabelledItem,
  labelledJsonl,
  SENTIMENT_SOURCES,
  sentimentItems,
  splitLabelled,
} from '../../bench/sentiment.js';
import { tempDir } from '../checkpoint/helpers.js';

const tmp = tempDir('geneprune-sentiment-');
after(tmp.cleanup);

function fixtures(name: string, rows: Record<string, unknown[]>): string {
  const dir = join(tmp.dir, name);
  mkdirSync(dir, { recursive: true });
  for (const source of SENTIMENT_SOURCES)
    writeFileSync(join(dir, `${source}.json`), JSON.stringify(rows[source] ?? []));
  return dir;
}

describe('sentiment fixtures', () => {
  test('whitespace collapsed, repeats and the closing empty rows dropped, labels named', async () => {
    const dir = fixtures('small', {
      amazon: [
        { text: '  Great   phone. ', class: 1 },
        { text: 'Broke in a day.', class: 0 },
        { text: '', class: null },
      ],
      imdb: [
        { text: 'Great phone.', class: 1 },
        { text: 'Dull\tfilm.', class: 0 },
      ],
      yelp: [{ text: 'Tasty.', class: 1 }],
    });
    assert.deepEqual(await sentimentItems(dir), [
      { text: 'Great phone.', label: 'positive', source: 'amazon' },
      { text: 'Broke in a day.', label: 'negative', source: 'amazon' },
      { text: 'Dull film.', label: 'negative', source: 'imdb' },
      { text: 'Tasty.', label: 'positive', source: 'yelp' },
    ]);
  });

  test('a malformed row or file is refused in one line naming the file', async () => {
    const bad = fixtures('bad', { yelp: [{ text: 'Fine.', class: 2 }] });
    await assert.rejects(
      () => sentimentItems(bad),
      (e: Error & { where?: string }) =>
        String(e.where).endsWith('yelp.json') && /class: 0 \| 1/.test(e.message) && !e.message.includes('\n'),
    );
    const broken = fixtures('broken', {});
    writeFileSync(join(broken, 'imdb.json'), '[{"text": ');
    await assert.rejects(() => sentimentItems(broken), /cannot read the sentiment fixtures/);
  });
});

describe('stratified split', () => {
  const items: LabelledItem[] = [
    ...Array.from({ length: 6 }, (_, i) => ({ text: `a+${i}`, label: 'positive' as const, source: 'a' })),
    ...Array.from({ length: 3 }, (_, i) => ({ text: `a-${i}`, label: 'negative' as const, source: 'a' })),
    ...Array.from({ length: 4 }, (_, i) => ({ text: `b-${i}`, label: 'negative' as const, source: 'b' })),
  ];

  test('round(share·n) of every (source, label) group to calibration, the rest to evaluation, order kept', () => {
    const { calib, eval: ev } = splitLabelled(items, 3);
    const count = (xs: LabelledItem[], p: string) => xs.filter((x) => x.text.startsWith(p)).length;
    assert.deepEqual([count(calib, 'a+'), count(calib, 'a-'), count(calib, 'b-')], [3, 2, 2]);
    assert.deepEqual([count(ev, 'a+'), count(ev, 'a-'), count(ev, 'b-')], [3, 1, 2]);
    assert.deepEqual([...calib, ...ev].map((x) => x.text).sort(), items.map((x) => x.text).sort());
    const at = (x: LabelledItem) => items.indexOf(x);
    for (const xs of [calib, ev]) for (let i = 1; i < xs.length; i++) assert.ok(at(xs[i - 1]) < at(xs[i]));
  });

  test('the same seed gives the same split, another seed another', () => {
    const texts = (seed: number) => splitLabelled(items, seed).calib.map((x) => x.text);
    assert.deepEqual(texts(3), texts(3));
    assert.ok([4, 5, 6, 7].some((s) => texts(s).join() !== texts(3).join()));
  });
});

describe('the sentiment package’s fixtures', () => {
  test('every sentence once, in exactly one half; both labels and all sources in both; JSONL {text, label}', async () => {
    const dir = join(
      dirname(createRequire(import.meta.url).resolve('sentiment/package.json')),
      'test/fixtures',
    );
    const items = await sentimentItems(dir);
    const raw = SENTIMENT_SOURCES.flatMap(
      (s) => JSON.parse(readFileSync(join(dir, `${s}.json`), 'utf8')) as Array<{ text: string }>,
    );
    const distinct = new Set(raw.map((r) => r.text.replace(/\s+/g, ' ').trim()).filter((t) => t !== ''));
    assert.equal(items.length, distinct.size);
    assert.ok(items.length > 2900 && items.length <= 3000, `${items.length}`);
    const { calib, eval: ev } = splitLabelled(items, 0);
    const inCalib = new Set(calib.map((x) => x.text));
    assert.ok(ev.every((x) => !inCalib.has(x.text)));
    assert.equal(calib.length + ev.length, items.length);
    for (const xs of [calib, ev]) {
      for (const label of ['negative', 'positive'])
        assert.ok(xs.filter((x) => x.label === label).length > 700);
      for (const s of SENTIMENT_SOURCES) assert.ok(xs.some((x) => x.source === s));
    }
    const lines = labelledJsonl(ev).trimEnd().split('\n');
    assert.equal(lines.length, ev.length);
    assert.deepEqual(JSON.parse(lines[0]), { text: ev[0].text, label: ev[0].label });
  });
});
