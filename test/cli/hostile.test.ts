/**
 * Hostile inputs from the second hardening audit: data sets of many documents, absurd configs, huge thread
 * counts, FIFOs, weights fp16 cannot hold, integer weights, huge context lengths and short data. Each used to
 * crash, hang or print a wrong number silently; now each ends within seconds with one line or a correct result.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { readDataset } from '../../src/metrics/data.js';
import { tempDir } from '../checkpoint/helpers.js';
import { runCli } from '../helpers/cli.js';
import { EVAL, MODEL, sharedPath, skipUnlessShared } from '../shared.js';

const tmp = tempDir('geneprune-hostile-');
after(tmp.cleanup);

const needs = skipUnlessShared(MODEL, EVAL);

describe('a calibration set of many documents', () => {
  // More documents than V8 lets one call take as arguments (~120k): push(...docs) threw a RangeError here.
  const DOCS = 200_000;
  let many: string;
  let few: string;
  before(() => {
    const line = (i: number) => JSON.stringify({ text: i % 2 === 0 ? 'a' : 'b' });
    many = join(tmp.dir, 'many.jsonl');
    writeFileSync(many, `${Array.from({ length: DOCS }, (_, i) => line(i)).join('\n')}\n`);
    // The same first documents, enough for 512 calibration tokens (each document is BOS + one token).
    few = join(tmp.dir, 'few.jsonl');
    writeFileSync(few, `${Array.from({ length: 400 }, (_, i) => line(i)).join('\n')}\n`);
  });

  test('readDataset returns every document, in order', async () => {
    const d = await readDataset(many);
    assert.equal(d.documents.length, DOCS);
    assert.equal(d.documents[0], 'a');
    assert.equal(d.documents[DOCS - 1], 'b');
  });

  const run = (cmd: string[], out: string) => {
    const r = runCli([...cmd, '--out', join(tmp.dir, out), '--json']);
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout);
  };

  test('why: heads crashed with "Maximum call stack size exceeded" — it scores the calibration data as a short file with the same first documents does', {
    skip: needs,
  }, () => {
    const heads = (calib: string, out: string) =>
      run(
        [
          'heads',
          '--model',
          sharedPath(MODEL)!,
          '--calib',
          calib,
          '--eval',
          sharedPath(EVAL)!,
          '--method',
          'norm',
          '--target-sparsity',
          '0.25',
          '--calib-tokens',
          '512',
          '--eval-tokens',
          '256',
        ],
        out,
      );
    const big = heads(many, 'heads-many');
    const small = heads(few, 'heads-few');
    assert.equal(big.calib.tokens, 512);
    assert.equal(big.calib.quality, small.calib.quality);
    assert.equal(big.calib.denseQuality, small.calib.denseQuality);
  });

  test('why: weights and export --recover crashed the same way — both finish', { skip: needs }, () => {
    const w = run(
      [
        'weights',
        '--model',
        sharedPath(MODEL)!,
        '--calib',
        many,
        '--eval',
        sharedPath(EVAL)!,
        '--method',
        'magnitude',
        '--sparsity',
        '0.3',
        '--calib-tokens',
        '512',
        '--eval-tokens',
        '256',
      ],
      'weights-many',
    );
    assert.equal(w.calib.tokens, 512);
    assert.ok(Number.isFinite(w.calib.perplexity));
    const heads = join(tmp.dir, 'heads-for-export');
    const h = runCli([
      'heads',
      '--model',
      sharedPath(MODEL)!,
      '--calib',
      few,
      '--eval',
      sharedPath(EVAL)!,
      '--method',
      'norm',
      '--target-sparsity',
      '0.25',
      '--calib-tokens',
      '512',
      '--eval-tokens',
      '256',
      '--out',
      heads,
      '--quiet',
    ]);
    assert.equal(h.code, 0, h.stderr);
    const e = run(
      [
        'export',
        '--model',
        sharedPath(MODEL)!,
        '--mask',
        join(heads, 'mask.json'),
        '--recover',
        '--calib',
        many,
        '--calib-tokens',
        '512',
        '--format',
        'hf',
      ],
      'export-many',
    );
    assert.ok(e.files.length > 0);
  });
});
