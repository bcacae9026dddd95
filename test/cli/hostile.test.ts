/**
 * Hostile inputs from the second hardening audit: data sets of many documents, absurd configs, huge thread
 * counts, FIFOs, weights fp16 cannot hold, integer weights, huge context lengths and short data. Each used to
 * crash, hang or print a wrong number silently; now each ends within seconds with one line or a correct result.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parseThreadsFlag } from '../../src/cli/options.js';
import { readChoiceTask } from '../../src/metrics/choices.js';
import { readClassificationData } from '../../src/metrics/classification.js';
import { readDataset } from '../../src/metrics/data.js';
import { readGenerationTask } from '../../src/metrics/generation.js';
import { rejectsFileError, tempDir } from '../checkpoint/helpers.js';
import { assertOneLineError, runCli } from '../helpers/cli.js';
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

describe('a FIFO as data', () => {
  // A named pipe with no writer: opening it for reading blocks forever, so each case has a short timeout.
  let fifo: string;
  let folder: string;
  before(() => {
    fifo = join(tmp.dir, 'pipe.txt');
    execFileSync('mkfifo', [fifo]);
    folder = join(tmp.dir, 'pages');
    mkdirSync(folder);
    writeFileSync(join(folder, 'a.txt'), 'Once upon a time there was a cat.\n');
    execFileSync('mkfifo', [join(folder, 'b.txt')]);
  });
  const pipeLine = (path: string, what: string) =>
    `geneprune: ${path}: ${what} is a named pipe (FIFO), not a regular file`;

  test('why: eval --data FIFO blocked forever — one line, at once', { skip: needs }, () => {
    for (const extra of [[], ['--max-tokens', '100']]) {
      const r = runCli(['eval', '--model', sharedPath(MODEL)!, '--data', fifo, ...extra], {
        timeout: 30_000,
      });
      assert.equal(assertOneLineError(r, 1), pipeLine(fifo, 'data path'));
    }
  });

  test('why: a FIFO inside a data folder blocked forever — one line naming it', { skip: needs }, () => {
    const r = runCli(['eval', '--model', sharedPath(MODEL)!, '--data', folder], { timeout: 30_000 });
    assert.equal(assertOneLineError(r, 1), pipeLine(join(folder, 'b.txt'), 'data file'));
  });

  test('heads --calib FIFO and --eval FIFO are refused before a run directory exists', {
    skip: needs,
  }, () => {
    for (const [calib, evalData] of [
      [fifo, sharedPath(EVAL)!],
      [join(folder, 'a.txt'), fifo],
    ]) {
      const out = join(tmp.dir, 'heads-fifo');
      const r = runCli(
        ['heads', '--model', sharedPath(MODEL)!, '--calib', calib, '--eval', evalData, '--out', out],
        { timeout: 30_000 },
      );
      assert.equal(r.code, 1, r.stderr);
      assert.equal(r.stderr.trim().split('\n').at(-1), pipeLine(fifo, 'data path'));
      assert.equal(existsSync(out), false);
    }
  });

  test('task, multiple-choice and labelled files that are FIFOs are refused', async () => {
    await rejectsFileError(readGenerationTask(fifo), fifo, /^task file is a named pipe \(FIFO\)/);
    await rejectsFileError(readChoiceTask(fifo), fifo, /^multiple-choice file is a named pipe \(FIFO\)/);
    await rejectsFileError(
      readClassificationData(fifo, ['a', 'b']),
      fifo,
      /^labelled data is a named pipe \(FIFO\)/,
    );
  });
});

describe('--threads beyond the cores', () => {
  const cores = availableParallelism();

  test('parseThreadsFlag keeps counts up to the cores, caps larger ones with a note, refuses 0', () => {
    const notes: string[] = [];
    assert.equal(
      parseThreadsFlag(String(cores), (l) => notes.push(l)),
      cores,
    );
    assert.equal(
      parseThreadsFlag('1', (l) => notes.push(l)),
      1,
    );
    assert.equal(notes.length, 0);
    assert.equal(
      parseThreadsFlag(String(cores + 1), (l) => notes.push(l)),
      cores,
    );
    assert.deepEqual(notes, [
      `note: --threads ${cores + 1} exceeds the ${cores} CPU cores this machine offers: using ${cores}`,
    ]);
    assert.throws(() => parseThreadsFlag('0'), /must be ≥ 1/);
  });

  test('why: eval --threads 100000 ran for hours — it runs on the cores, with a note, and scores the same', {
    skip: needs,
  }, () => {
    const evalWith = (threads: string) =>
      runCli(
        [
          'eval',
          '--model',
          sharedPath(MODEL)!,
          '--data',
          sharedPath(EVAL)!,
          '--max-tokens',
          '256',
          '--threads',
          threads,
          '--json',
        ],
        { timeout: 60_000 },
      );
    const many = evalWith('100000');
    assert.equal(many.code, 0, many.stderr);
    assert.equal(
      many.stderr,
      `note: --threads 100000 exceeds the ${cores} CPU cores this machine offers: using ${cores}\n`,
    );
    const exact = evalWith(String(cores));
    assert.equal(exact.stderr, '');
    assert.equal(JSON.parse(many.stdout).meanNll, JSON.parse(exact.stdout).meanNll);
  });
});
