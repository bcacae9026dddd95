/**
 * The commands on an encoder-decoder (the shared codet5-tiny with data/codegen), as a user runs them, checked
 * against its README's published dense numbers and against the library's own scoring of the same masks:
 * - `eval --data TASK` is the reference targets' NLL given their sources (README: 0.00438 per token);
 * - `eval --task TASK --allow-code-execution` gives the README's pass@1 (194/200) and sentence BLEU (0.9867);
 * - `generate` prints the generated code alone (not appended to the prompt), equal to the task's reference code
 *   for an eval problem the README counts as solved;
 * - `heads` searches over the 36 heads of the three stacks on the calibration pairs (calibration items the eval
 *   task also holds are left out, said in a note and recorded), and its result's evaluation perplexity and BLEU
 *   equal `eval` with the written mask;
 * - text-data flags are refused in one line.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { tempDir } from '../checkpoint/helpers.js';
import { assertOneLineError, runCli } from '../helpers/cli.js';
import { sharedPath, skipUnlessShared } from '../shared.js';

const CODET5 = 'models/codet5-tiny';
const CALIB_TASK = 'data/codegen/calib.jsonl';
const EVAL_TASK = 'data/codegen/eval.jsonl';
const skip = skipUnlessShared(CODET5, CALIB_TASK, EVAL_TASK);
const tmp = tempDir('geneprune-seq2seq-cli-');
after(tmp.cleanup);

describe('encoder-decoder commands on codet5-tiny', { skip }, () => {
  const model = () => sharedPath(CODET5)!;
  const calib = () => sharedPath(CALIB_TASK)!;
  const evalTask = () => sharedPath(EVAL_TASK)!;

  test("eval --data: the reference targets' NLL given their sources is the README's", () => {
    const r = runCli(['eval', '--model', model(), '--data', evalTask(), '--json']);
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout);
    assert.equal(j.scored, 'pairs');
    assert.equal(j.documents, 200);
    assert.ok(Math.abs(j.meanNll - 0.00438) <= 5e-6, `NLL/token ${j.meanNll}`);
    assert.ok(Math.abs(j.perplexity - Math.exp(j.meanNll)) < 1e-12);
  });

  test("eval --task --allow-code-execution: the README's pass@1 and sentence BLEU", () => {
    const r = runCli(['eval', '--model', model(), '--task', evalTask(), '--allow-code-execution', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout);
    assert.equal(j.items, 200);
    assert.equal(j.passed, 194); // README: pass@1 0.970 (194/200)
    assert.equal(Number(j.sentenceMeanUnit.toFixed(4)), 0.9867); // README: sentence BLEU (mean) 0.9867
  });

  test('generate prints the generated code alone', () => {
    const row = JSON.parse(readFileSync(evalTask(), 'utf8').split('\n')[1]) as { text: string; code: string };
    const r = runCli(['generate', '--model', model(), '--prompt', row.text]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `${row.code}\n`);
  });

  test('heads: a search over the three stacks, its evaluation equal to eval with the mask', () => {
    const out = join(tmp.dir, 'heads');
    const r = runCli([
      'heads',
      '--model',
      model(),
      '--calib',
      calib(),
      '--eval',
      evalTask(),
      '--target-sparsity',
      '0.25',
      '--generations',
      '2',
      '--population',
      '6',
      '--out',
      out,
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stderr,
      /7 calibration items are also evaluation items .*left out of the calibration set \(193 remain\)/,
    );
    assert.match(r.stderr, /36 heads; calibration 193 source\/target pairs/);
    const config = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'));
    assert.equal(config.calibration.pairs, 193);
    assert.equal(config.calibration.sharedItemsLeftOut, 7);
    const result = JSON.parse(readFileSync(join(out, 'result.json'), 'utf8'));
    assert.equal(result.scored, 'pairs');
    const removed: string[] = result.removedHeads;
    assert.equal(result.removed, 9);
    assert.equal(removed.length, 9);
    // Removed heads are named by stack (encoder, decoder, cross).
    assert.ok(
      removed.every((h) => /^(encoder|decoder|cross)\.\d+:\d+$/.test(h)),
      removed.join(' '),
    );
    // The report reads the run: its head mask over the three stacks' 36 heads.
    const rep = runCli(['report', out, '--out', join(tmp.dir, 'heads.html')]);
    assert.equal(rep.code, 0, rep.stderr);
    assert.match(readFileSync(join(tmp.dir, 'heads.html'), 'utf8'), /9 of 36 heads removed/);
    const e = runCli([
      'eval',
      '--model',
      model(),
      '--data',
      evalTask(),
      '--mask',
      join(out, 'mask.json'),
      '--json',
    ]);
    assert.equal(e.code, 0, e.stderr);
    assert.ok(
      Math.abs(JSON.parse(e.stdout).perplexity - result.eval.perplexity) < 1e-9,
      `${JSON.parse(e.stdout).perplexity} vs ${result.eval.perplexity}`,
    );
  });

  test('text-data flags are refused in one line', () => {
    const base = ['heads', '--model', model(), '--calib', calib(), '--eval', evalTask()];
    assertOneLineError(
      runCli([...base, '--ctx', '64', '--out', join(tmp.dir, 'x1')]),
      2,
      '--ctx',
      'not for an encoder-decoder',
    );
    assertOneLineError(
      runCli([
        ...base,
        '--calib-task',
        calib(),
        '--metric',
        'bleu',
        '--fitness',
        'lambda',
        '--out',
        join(tmp.dir, 'x2'),
      ]),
      2,
      '--calib-task',
    );
    const recoverOut = join(tmp.dir, 'x3');
    assertOneLineError(
      runCli([...base, '--target-sparsity', '0.25', '--recover', '--out', recoverOut]),
      2,
      '--recover',
      'not for an encoder-decoder yet',
    );
    assert.ok(!existsSync(recoverOut), 'no run directory is left behind');
    assertOneLineError(
      runCli(['eval', '--model', model(), '--data', evalTask(), '--ctx', '64']),
      2,
      '--ctx',
      'not for an encoder-decoder',
    );
  });
});
