/**
 * Report never destroys what it reads (issue #18, round two): `report RUN --out RUN/result.json` replaced the
 * run's result with HTML, and `--out model.bin` replaced any file. Every file of the runs, the run directories,
 * names a run may still write and the runs' model (an input with --bench) are tried as `--out`, with and without
 * `--force`: one-line refusals, every byte unchanged. `--force` replaces only a report written before.
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { searchHeads } from '../../src/api/heads.js';
import { pruneWeights } from '../../src/api/weights.js';
import { tempDir } from '../checkpoint/helpers.js';
import { assertOneLineError, assertUnchanged, runCli, snapshot } from '../helpers/cli.js';
import { CALIB, EVAL, MODEL, sharedPath, skipUnlessShared, TOKENIZER } from '../shared.js';

const tmp = tempDir('geneprune-report-out-');
after(tmp.cleanup);
const skip = skipUnlessShared(MODEL, TOKENIZER, CALIB, EVAL);

describe('report: no --out, with or without --force, touches a run', { skip }, () => {
  const runsRoot = join(tmp.dir, 'runs');
  const heads = join(runsRoot, 'heads-random');
  const weights = join(runsRoot, 'weights-magnitude');
  // The runs' model: with --bench the report reads it, so it is an input too.
  const model = join(tmp.dir, 'report-model', 'stories260K.bin');

  before(async () => {
    mkdirSync(dirname(model));
    copyFileSync(sharedPath(MODEL)!, model);
    copyFileSync(sharedPath(TOKENIZER)!, join(dirname(model), 'tok512.bin'));
    const common = {
      model,
      calib: sharedPath(CALIB)!,
      eval: sharedPath(EVAL)!,
      calibTokens: 512,
      evalTokens: 512,
      threads: 1,
    };
    await searchHeads({ ...common, method: 'random', targetSparsity: 0.25, out: heads });
    await pruneWeights({ ...common, method: 'magnitude', sparsity: 0.5, out: weights });
  });

  const files = (dir: string) =>
    Object.keys(snapshot(dir))
      .filter((k) => !k.endsWith('/'))
      .map((k) => join(dir, k));

  test('why: every file of the runs, the run directories, a name a run may still write and a non-report file are refused', () => {
    const before = { runs: snapshot(runsRoot), model: snapshot(dirname(model)) };
    // bench.json is what `report --bench` writes into a head run; notes.json a name no run holds yet.
    const outs = [
      ...files(heads),
      ...files(weights),
      heads,
      weights,
      join(heads, 'bench.json'),
      join(weights, 'notes.json'),
      model,
    ];
    assert.ok(outs.includes(join(heads, 'result.json')) && outs.includes(join(heads, 'mask.json')));
    for (const out of outs) {
      for (const force of [false, true]) {
        for (const bench of [false, true]) {
          if (bench && !force) continue; // --bench only adds the model as an input; one pairing suffices.
          const r = runCli([
            'report',
            heads,
            weights,
            '--out',
            out,
            ...(force ? ['--force'] : []),
            ...(bench ? ['--bench'] : []),
          ]);
          const context = `--out ${out}${force ? ' --force' : ''}${bench ? ' --bench' : ''}`;
          const line = assertOneLineError(r, 'non-zero', out);
          if (out === heads || out === weights)
            assert.match(line, /is a directory \(give a file name\)$/, context);
          else if (out.startsWith(runsRoot)) assert.match(line, /whose files are the run's own/, context);
          else
            assert.match(
              line,
              force
                ? /is not a geneprune report: --force replaces only a previous report$/
                : /exists \(use --force to replace it\)$/,
              context,
            );
        }
      }
    }
    assertUnchanged(runsRoot, before.runs, 'every run file is byte-identical');
    assertUnchanged(dirname(model), before.model, 'the model is byte-identical');
  });

  test('a symlink into a run, or from a run to elsewhere, is judged by both its paths', () => {
    const outside = join(tmp.dir, 'outside.txt');
    writeFileSync(outside, 'not a report');
    const toRun = join(tmp.dir, 'link-to-result.html');
    symlinkSync(join(heads, 'result.json'), toRun);
    const fromRun = join(weights, 'link-out.json');
    symlinkSync(outside, fromRun);
    const before = { runs: snapshot(runsRoot), outside: snapshot(outside) };
    for (const out of [toRun, fromRun]) {
      const line = assertOneLineError(runCli(['report', heads, '--out', out, '--force']), 2, out);
      assert.match(line, /whose files are the run's own/);
    }
    assertUnchanged(runsRoot, before.runs);
    assertUnchanged(outside, before.outside);
    rmSync(fromRun);
  });

  test('a report inside a run directory (.html) leaves the run readable, and --force replaces only that report', () => {
    const page = join(heads, 'report.html');
    const first = runCli(['report', heads, weights, '--out', page]);
    assert.equal(first.code, 0, first.stderr);
    assert.match(readFileSync(page, 'utf8'), /<title>geneprune report: 2 runs<\/title>/);
    const again = runCli(['report', heads, weights, '--out', page]);
    assertOneLineError(again, 2, `--out: ${page} exists (use --force to replace it)`);
    const forced = runCli(['report', heads, '--out', page, '--force']);
    assert.equal(forced.code, 0, forced.stderr);
    assert.match(
      readFileSync(page, 'utf8'),
      new RegExp(`<title>geneprune report: ${basename(heads)}</title>`),
    );
  });
});
