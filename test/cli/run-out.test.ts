/**
 * heads and weights never make a run directory of an input (issue #18, round two: "check every other command that
 * writes"). A run's --out must be new or empty, so every input (model, calibration and evaluation data) and every
 * folder holding one is refused in one line, and every input file is byte-identical afterwards.
 */
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { tempDir } from '../checkpoint/helpers.js';
import { assertOneLineError, assertUnchanged, runCli, snapshot } from '../helpers/cli.js';
import { CALIB, EVAL, MODEL, sharedPath, skipUnlessShared, TOKENIZER } from '../shared.js';

const tmp = tempDir('geneprune-run-out-');
after(tmp.cleanup);

describe('heads/weights --out is never an input', {
  skip: skipUnlessShared(MODEL, TOKENIZER, CALIB, EVAL),
}, () => {
  const root = join(tmp.dir, 'inputs');
  const model = join(root, 'model', 'stories260K.bin');
  const calib = join(root, 'calib', 'page-00.txt');
  const evalDir = join(root, 'eval');

  before(() => {
    for (const d of ['model', 'calib', 'eval']) mkdirSync(join(root, d), { recursive: true });
    copyFileSync(sharedPath(MODEL)!, model);
    copyFileSync(sharedPath(TOKENIZER)!, join(root, 'model', 'tok512.bin'));
    copyFileSync(join(sharedPath(CALIB)!, 'page-00.txt'), calib);
    copyFileSync(join(sharedPath(EVAL)!, 'page-05.txt'), join(evalDir, 'page-05.txt'));
  });

  const data = [
    '--model',
    model,
    '--calib',
    calib,
    '--eval',
    evalDir,
    '--calib-tokens',
    '256',
    '--eval-tokens',
    '256',
  ];
  const commands: Array<[string, string[]]> = [
    ['heads', ['heads', ...data, '--method', 'random', '--target-sparsity', '0.25', '--quiet']],
    ['weights', ['weights', ...data, '--method', 'magnitude', '--sparsity', '0.5', '--quiet']],
  ];

  test('setup: each command makes a run in a fresh --out', () => {
    for (const [name, args] of commands) {
      const out = join(tmp.dir, `fresh-${name}`);
      const r = runCli([...args, '--out', out]);
      assert.equal(r.code, 0, r.stderr);
      assert.ok(existsSync(join(out, 'result.json')));
    }
  });

  test('every input file, its folder and the folder holding them all are refused, untouched', () => {
    const before = snapshot(root);
    const outs = [model, dirname(model), calib, dirname(calib), evalDir, root];
    for (const [name, args] of commands) {
      for (const out of outs) {
        const line = assertOneLineError(runCli([...args, '--out', out]), 'non-zero', out);
        assert.match(
          line,
          out.endsWith('.bin') || out.endsWith('.txt')
            ? /exists and is not a directory$/
            : /run directory is not empty \(choose another --out\)$/,
          `${name} --out ${out}`,
        );
      }
    }
    assertUnchanged(root, before, 'every input file is byte-identical');
  });
});
