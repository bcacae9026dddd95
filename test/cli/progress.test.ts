/**
 * One progress-line format for every search: each head method and each weight method runs briefly on the real
 * stories260K model with a plain line per update (GENEPRUNE_PROGRESS_INTERVAL=0), and every progress line it
 * prints must read `METHOD · STEP · best METRIC VALUE at S % · RATE UNIT/s · ETA T`, with the method's own name,
 * the metric by name, and its step counted to the end. Off a terminal nothing is redrawn in place.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { searchProgressText } from '../../src/cli/progress.js';
import type { SearchProgress } from '../../src/index.js';
import { runCli } from '../helpers/cli.js';
import { storiesArgs } from '../helpers/familycli.js';
import { CALIB, EVAL, MODEL, skipUnlessShared, TOKENIZER } from '../shared.js';

const skip = skipUnlessShared(MODEL, TOKENIZER, CALIB, EVAL);

const LINE =
  /^(?<method>[a-z-]+) · (?<step>[^·]+) · best (?:–|(?<metric>ppl|KL|BLEU|accuracy|macro-F1) (?:-?\d+\.\d+|\d+\.\d %) at \d+\.\d %(?: \([^()·]+\))?) · \d+\.\d (?:evals|layers|matrices)\/s · ETA (?:\?|\d+s|\d+m\d\ds|\d+\.\dh)$/;

/** The old per-method formats, none of which may remain. */
const OLD = [
  /^\d+\/\d+ \w+/,
  /^gen \d+\/\d+ /,
  /^generation \d+\/\d+: front of/,
  /^block \d+\/\d+ · generation/,
];

const root = mkdtempSync(join(tmpdir(), 'geneprune-progress-'));
after(() => rmSync(root, { recursive: true, force: true }));

/** Small windows and few tokens: every method finishes in seconds. */
const data = () => [...storiesArgs(), '--ctx', '64', '--calib-tokens', '256', '--eval-tokens', '256'];

interface Case {
  name: string;
  args: string[];
  method: string;
  /** A step every run of the method must reach, e.g. its last generation. */
  reaches: RegExp;
  metric?: string;
}

const HEADS: Case[] = [
  {
    name: 'heads ga',
    args: ['--method', 'ga', '--population', '4', '--generations', '2'],
    method: 'ga',
    reaches: /^generation 2\/2$/,
  },
  {
    name: 'heads ga --metric kl',
    args: ['--method', 'ga', '--population', '4', '--generations', '2', '--metric', 'kl'],
    method: 'ga',
    reaches: /^generation 2\/2$/,
    metric: 'KL',
  },
  {
    name: 'heads nsga',
    args: ['--method', 'nsga', '--population', '4', '--generations', '2'],
    method: 'nsga',
    reaches: /^generation 2\/2, front of \d+$/,
  },
  { name: 'heads greedy', args: ['--method', 'greedy'], method: 'greedy', reaches: /^evaluation 40\/40$/ },
  {
    name: 'heads regression',
    args: ['--method', 'regression', '--samples', '6'],
    method: 'regression',
    reaches: /^evaluation 6\/6$/,
  },
  {
    name: 'heads ablation',
    args: ['--method', 'ablation'],
    method: 'ablation',
    reaches: /^evaluation 40\/40$/,
  },
  { name: 'heads norm', args: ['--method', 'norm'], method: 'norm', reaches: /^mask of 1\/40 heads chosen$/ },
  {
    name: 'heads random --recover',
    args: ['--method', 'random', '--recover'],
    method: 'random',
    reaches: /^recovery, layer 5\/5$/,
  },
].map((c) => ({ ...c, args: ['heads', ...c.args, '--target-sparsity', '0.025'] }));

const WEIGHTS: Case[] = [
  {
    name: 'weights ga',
    args: ['--method', 'ga', '--population', '4', '--generations', '1'],
    method: 'ga',
    reaches: /^block 5\/5, generation 1\/1$/,
  },
  {
    name: 'weights ga-wanda',
    args: ['--method', 'ga-wanda', '--population', '4', '--generations', '1'],
    method: 'ga-wanda',
    reaches: /^block 5\/5, generation 1\/1$/,
  },
  {
    name: 'weights ga-magnitude',
    args: ['--method', 'ga-magnitude', '--population', '4', '--generations', '1'],
    method: 'ga-magnitude',
    reaches: /^block 5\/5, generation 1\/1$/,
  },
  {
    name: 'weights alloc',
    args: ['--method', 'alloc', '--population', '4', '--generations', '2'],
    method: 'alloc',
    reaches: /^generation 2\/2$/,
  },
  {
    name: 'weights magnitude --recover',
    args: ['--method', 'magnitude', '--recover'],
    method: 'magnitude',
    reaches: /^recovery, layer 5\/5$/,
  },
  {
    name: 'weights wanda --recover',
    args: ['--method', 'wanda', '--recover'],
    method: 'wanda',
    reaches: /^recovery, layer 5\/5$/,
  },
  {
    name: 'weights sparsegpt',
    args: ['--method', 'sparsegpt'],
    method: 'sparsegpt',
    reaches: /^layer 5\/5$/,
  },
].map((c) => ({ ...c, args: ['weights', ...c.args, '--sparsity', '0.3'] }));

describe('every search prints one progress-line format', { skip }, () => {
  for (const c of [...HEADS, ...WEIGHTS]) {
    test(c.name, () => {
      const out = join(root, c.name.replace(/[^a-z-]+/g, '_'));
      const r = runCli([...c.args, ...data(), '--out', out], {
        env: { GENEPRUNE_PROGRESS_INTERVAL: '0' },
        timeout: 300_000,
      });
      assert.equal(r.code, 0, r.stderr);
      const redraw = ['\r', String.fromCharCode(27)].filter((c) => r.stderr.includes(c));
      assert.deepEqual(redraw, [], 'off a terminal nothing is redrawn in place');
      const lines = r.stderr.split('\n').filter(Boolean);
      for (const old of OLD)
        assert.ok(!lines.some((l) => old.test(l)), `an old-format line: ${lines.find((l) => old.test(l))}`);
      const progress = lines.filter((l) => l.includes(' · '));
      assert.ok(progress.length > 0, `no progress line in:\n${r.stderr}`);
      for (const l of progress) {
        const m = LINE.exec(l);
        assert.ok(m, `not the progress format: ${l}`);
        assert.equal(m.groups!.method, c.method, l);
        if (m.groups!.metric) assert.equal(m.groups!.metric, c.metric ?? 'ppl', l);
      }
      const steps = progress.map((l) => LINE.exec(l)!.groups!.step);
      assert.ok(
        steps.some((s) => c.reaches.test(s)),
        `no step reads ${c.reaches}: ${steps.join(' | ')}`,
      );
      // A search's lines name the best so far, by the metric's name.
      if (!/magnitude --recover|wanda --recover/.test(c.name))
        assert.ok(
          progress.some((l) => LINE.exec(l)!.groups!.metric !== undefined),
          'no line gives a best',
        );
    });
  }
});

describe('searchProgressText', () => {
  const report = (over: Partial<SearchProgress>): SearchProgress => ({
    method: 'ga',
    phase: 'search',
    step: 'generation 5/10',
    fraction: 0.5,
    count: 20,
    unit: 'evals',
    ...over,
  });

  test('rate and ETA from the command start: half done in 10 s, 20 evaluations', () => {
    let t = 10_000;
    const text = searchProgressText(0, false, () => t);
    const best = { metric: 'ppl', value: 3.83761, sparsity: 0.25, note: 'fitness -1.1039' };
    assert.equal(
      text(report({ best })),
      'ga · generation 5/10 · best ppl 3.8376 at 25.0 % (fitness -1.1039) · 2.0 evals/s · ETA 10s',
    );
    // 3/4 done after 15 s: 15 / 0.75 × 0.25 = 5 s left; 36 evaluations in 15 s.
    t = 15_000;
    assert.equal(
      text(report({ step: 'generation 8/10', fraction: 0.75, count: 36 })),
      'ga · generation 8/10 · best – · 2.4 evals/s · ETA 5s',
    );
  });

  test('a resumed run and a new phase count from their first line, which has no ETA', () => {
    let t = 50_000;
    const text = searchProgressText(0, true, () => t);
    assert.equal(
      text(report({ fraction: 0.5, count: 100 })),
      'ga · generation 5/10 · best – · 0.0 evals/s · ETA ?',
    );
    t = 60_000;
    // From 0.5 to 0.6 in 10 s: 40 s left; 10 evaluations in 10 s.
    assert.equal(
      text(report({ step: 'generation 6/10', fraction: 0.6, count: 110 })),
      'ga · generation 6/10 · best – · 1.0 evals/s · ETA 40s',
    );
    t = 61_000;
    const line = text(
      report({ phase: 'recovery', step: 'recovery, layer 1/5', fraction: 0.2, count: 1, unit: 'layers' }),
    );
    assert.equal(line, 'ga · recovery, layer 1/5 · best – · 0.0 layers/s · ETA ?');
  });

  test('metrics as quoted: BLEU with 2 decimals, accuracies in per cent', () => {
    const text = searchProgressText(0, false, () => 1000);
    assert.match(
      text(report({ best: { metric: 'BLEU', value: 21.456, sparsity: 0.1 } })),
      / best BLEU 21\.46 at 10\.0 % /,
    );
    assert.match(
      text(report({ best: { metric: 'accuracy', value: 0.8125, sparsity: 0.5 } })),
      / best accuracy 81\.3 % at 50\.0 % /,
    );
  });
});
