/**
 * Writes the labelled sentiment set for classification accuracy (`--metric accuracy`, issue 10): JSONL
 * `{text, label}` with labels "negative" / "positive", split into disjoint calibration and evaluation halves
 * (stratified per source and label, seed 0), from the `sentiment` package's fixtures (a dev dependency):
 *
 *   npm run data:sentiment [-- --out data/sentiment --seed 0]
 *
 * Provenance and licence are written next to the files (see bench/sentiment.ts).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { labelledJsonl, sentimentItems, splitLabelled } from './sentiment.js';

const { values } = parseArgs({
  options: {
    out: { type: 'string', default: 'data/sentiment' },
    seed: { type: 'string', default: '0' },
  },
});
const fixtures = join(
  dirname(createRequire(import.meta.url).resolve('sentiment/package.json')),
  'test/fixtures',
);
const items = await sentimentItems(fixtures);
const { calib, eval: evalItems } = splitLabelled(items, Number(values.seed));
mkdirSync(values.out, { recursive: true });
writeFileSync(join(values.out, 'calib.jsonl'), labelledJsonl(calib));
writeFileSync(join(values.out, 'eval.jsonl'), labelledJsonl(evalItems));
const count = (xs: typeof items, label: string) => xs.filter((x) => x.label === label).length;
writeFileSync(
  join(values.out, 'SOURCE.md'),
  `Sentences from the \`sentiment\` npm package's test fixtures (v5.0.2, MIT licence): the UCI "Sentiment Labelled
Sentences" data of Kotzias, Denil, de Freitas and Smyth, "From Group to Individual Labels using Deep Features"
(KDD 2015) — 1,000 Amazon, 1,000 IMDb and 1,000 Yelp review sentences labelled negative or positive. Cite that
paper when you report on it; the UCI repository page of the data set states its terms.

Made by \`npm run data:sentiment\` (seed ${values.seed}): whitespace collapsed, empty and repeated sentences
dropped (${items.length} remain), split per source and label into calib.jsonl (${calib.length}: ${count(calib, 'negative')} negative,
${count(calib, 'positive')} positive) and eval.jsonl (${evalItems.length}: ${count(evalItems, 'negative')} negative, ${count(evalItems, 'positive')} positive), disjoint.
`,
);
process.stdout.write(
  `${values.out}: calib.jsonl ${calib.length} sentences, eval.jsonl ${evalItems.length} sentences (of ${items.length})\n`,
);
