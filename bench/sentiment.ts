/**
 * A labelled sentiment set for classification accuracy, made from text that ships on npm: the `sentiment`
 * package's test fixtures (v5.0.2, MIT) hold 3 × 1,000 review sentences labelled 0 (negative) / 1 (positive) —
 * the UCI "Sentiment Labelled Sentences" data (Kotzias et al., KDD 2015: Amazon, IMDb and Yelp reviews).
 *
 * `sentimentItems` reads them (whitespace collapsed; the files' closing empty rows, empty and repeated sentences
 * dropped, the first occurrence kept), `splitLabelled` divides them into disjoint calibration and evaluation halves, per source and label
 * (stratified), shuffled with a seeded rng, and `labelledJsonl` writes JSONL `{text, label}` with label names.
 * Only `npm run data:sentiment` (bench/sentiment-data.ts) uses it, so it lives here, outside the shipped package.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { dataError, fileError } from '../src/errors.js';
import { sampleIndices } from '../src/search/selection.js';
import { createRng } from '../src/util/rng.js';

export const SENTIMENT_SOURCES = ['amazon', 'imdb', 'yelp'] as const;
export const SENTIMENT_LABELS = ['negative', 'positive'] as const;

export interface LabelledItem {
  text: string;
  label: (typeof SENTIMENT_LABELS)[number];
  source: string;
}

/** The fixtures' sentences, labelled by name, in file order, without empty or repeated sentences. */
export async function sentimentItems(fixturesDir: string): Promise<LabelledItem[]> {
  const seen = new Set<string>();
  const items: LabelledItem[] = [];
  for (const source of SENTIMENT_SOURCES) {
    const path = join(fixturesDir, `${source}.json`);
    let rows: unknown;
    try {
      rows = JSON.parse(await readFile(path, 'utf8'));
    } catch (err) {
      throw fileError(path, `cannot read the sentiment fixtures: ${(err as Error).message}`, err);
    }
    if (!Array.isArray(rows)) throw dataError(path, 'expected a JSON array of {text, class}');
    for (const row of rows as Array<{ text?: unknown; class?: unknown }>) {
      // Each file ends with an empty row ({"text": "", "class": null}): nothing to label.
      if (row?.text === '' && row.class === null) continue;
      if (typeof row?.text !== 'string' || (row.class !== 0 && row.class !== 1)) {
        throw dataError(path, `an item is not {text: string, class: 0 | 1}: ${JSON.stringify(row)}`);
      }
      const text = row.text.replace(/\s+/g, ' ').trim();
      if (text === '' || seen.has(text)) continue;
      seen.add(text);
      items.push({ text, label: SENTIMENT_LABELS[row.class], source });
    }
  }
  return items;
}

/**
 * Disjoint halves: within each (source, label) group, a seeded shuffle, the first round(share · n) to
 * calibration and the rest to evaluation; both lists keep the items' original order.
 */
export function splitLabelled(
  items: readonly LabelledItem[],
  seed: number,
  share = 0.5,
): { calib: LabelledItem[]; eval: LabelledItem[] } {
  const rng = createRng(seed);
  const toCalib = new Set<number>();
  const groups = new Map<string, number[]>();
  items.forEach((it, i) => {
    const key = `${it.source}\u0000${it.label}`;
    const g = groups.get(key) ?? [];
    g.push(i);
    groups.set(key, g);
  });
  for (const key of [...groups.keys()].sort()) {
    const g = groups.get(key)!;
    for (const k of sampleIndices(g.length, Math.round(share * g.length), rng)) toCalib.add(g[k]);
  }
  return {
    calib: items.filter((_, i) => toCalib.has(i)),
    eval: items.filter((_, i) => !toCalib.has(i)),
  };
}

/** JSONL lines `{"text": …, "label": "negative"|"positive"}`. */
export function labelledJsonl(items: readonly LabelledItem[]): string {
  return items.map((it) => `${JSON.stringify({ text: it.text, label: it.label })}\n`).join('');
}
