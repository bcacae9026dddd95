/**
 * The context length a perplexity was scored at, on a copy of stories260K whose header says context 1024 (so a
 * run's default, the model's context capped at 512, differs from the model's own): every summary and --json
 * output states it, result.json and the mask files record it, and `eval --mask` / `--weight-mask` of a run
 * default to the run's context (with a note), reproducing the run's evaluation perplexity exactly; an explicit
 * --ctx wins. Also: the heads summary prints kept parameters, `weights --preset geneprune` runs, and a result far
 * below its target sparsity is flagged on stderr, in the summary and in result.json.
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { openLlama2c, writeLlama2cLegacy } from '../../src/checkpoint/llama2c.js';
import { SPARSITY_SHORTFALL, sparsityWarnings } from '../../src/runs/results.js';
import { tempDir } from '../checkpoint/helpers.js';
import { type CliResult, runCli } from '../helpers/cli.js';
import { smallData } from '../helpers/familycli.js';
import { CALIB, EVAL, MODEL, sharedPath, skipUnlessShared, TOKENIZER } from '../shared.js';

const skip = skipUnlessShared(MODEL, TOKENIZER, CALIB, EVAL);
const tmp = tempDir('geneprune-ctx-');
after(tmp.cleanup);

const cli = (args: string[]) => runCli(args, { timeout: 300_000 });
const json = (r: CliResult) => {
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout);
};
const readJson = (path: string) => JSON.parse(readFileSync(path, 'utf8'));

describe('sparsityWarnings', () => {
  test('flags an achieved sparsity below 90 % of the target, and nothing else', () => {
    assert.equal(SPARSITY_SHORTFALL, 0.9);
    const [line] = sparsityWarnings('ga', 0.5, 0.05);
    assert.match(
      line,
      /^achieved sparsity 5\.0 % is far below the 50\.0 % asked: the ga method takes --sparsity as its stop threshold/,
    );
    assert.deepEqual(sparsityWarnings('ga', 0.5, 0.46), []);
    assert.deepEqual(sparsityWarnings('ga', 0.5, 0.45), []);
    assert.equal(sparsityWarnings('magnitude', 0.5, 0.449).length, 1);
    assert.doesNotMatch(sparsityWarnings('magnitude', 0.5, 0.449)[0], /threshold/);
    assert.deepEqual(sparsityWarnings('magnitude', 0, 0), []);
    assert.deepEqual(sparsityWarnings('magnitude', 0.5, 0.7), []);
  });
});

describe('ctx on a model whose context (1024) is not the runs’ default (512)', { skip }, () => {
  const model = join(tmp.dir, 'stories1024', 'stories1024.bin');
  const data = () => ['--model', model, ...smallData(1024, 2048)];
  const heads = join(tmp.dir, 'heads');
  const weights = join(tmp.dir, 'weights');

  before(async () => {
    const f = await openLlama2c(sharedPath(MODEL)!);
    assert.equal(f.params.seqLen, 512);
    mkdirSync(join(tmp.dir, 'stories1024'));
    await writeLlama2cLegacy(model, { ...f.params, seqLen: 1024 }, f.tensors);
    copyFileSync(sharedPath(TOKENIZER)!, join(tmp.dir, 'stories1024', 'tok512.bin'));
  });

  test('heads: the summary prints ctx and kept parameters; result.json and mask.json record ctx', () => {
    const r = cli([
      'heads',
      ...data(),
      '--method',
      'random',
      '--target-sparsity',
      '0.25',
      '--out',
      heads,
      '--quiet',
    ]);
    assert.equal(r.code, 0, r.stderr);
    const result = readJson(join(heads, 'result.json'));
    assert.equal(result.context, 512);
    assert.equal(readJson(join(heads, 'mask.json')).info.context, 512);
    assert.match(r.stdout, /^calibration {2}ppl [\d.]+ \(dense [\d.]+, 1024 tokens, ctx 512\)$/m);
    assert.match(
      r.stdout,
      new RegExp(`^evaluation {3}ppl ${result.eval.perplexity.toFixed(4)} \\(.*, ctx 512\\)$`, 'm'),
    );
    // 10 of 40 heads removed: the kept count is the run's own, printed against the total.
    assert.ok(result.keptParameters < result.totalParameters);
    assert.match(
      r.stdout,
      new RegExp(`^parameters {3}${result.totalParameters} → ${result.keptParameters} kept`, 'm'),
    );
    // One vocabulary with weight runs: calib.perplexity is the perplexity (here also the ppl metric's quality).
    assert.equal(result.calib.perplexity, result.calib.quality);
    assert.equal(result.calib.densePerplexity, result.calib.denseQuality);
  });

  test('eval --mask of the run defaults to its ctx (noted) and reproduces its perplexity exactly; --ctx wins', () => {
    const result = readJson(join(heads, 'result.json'));
    const base = ['eval', '--model', model, '--data', sharedPath(EVAL)!, '--max-tokens', '2048'];
    const r = cli([...base, '--mask', join(heads, 'mask.json'), '--json']);
    const e = json(r);
    assert.equal(e.context, 512);
    assert.equal(e.contextFrom, 'run');
    assert.equal(e.tokens, result.eval.tokens);
    assert.equal(e.perplexity, result.eval.perplexity);
    assert.match(
      r.stderr,
      /^note: context 512, as the run that wrote .*mask\.json scored it \(give --ctx to choose another\)$/m,
    );
    const wide = json(cli([...base, '--mask', join(heads, 'mask.json'), '--ctx', '1024', '--json']));
    assert.equal(wide.context, 1024);
    assert.equal(wide.contextFrom, 'given');
    assert.notEqual(wide.perplexity, result.eval.perplexity);
    // No mask: the model's own context, as before.
    const dense = json(cli([...base, '--json']));
    assert.equal(dense.context, 1024);
    assert.equal(dense.contextFrom, 'model');
    const text = cli([...base, '--mask', join(heads, 'mask.json')]);
    assert.match(text.stdout, /^perplexity {3}[\d.]+ \(ctx 512\)$/m);
  });

  test('weights: ctx printed and recorded; eval --weight-mask reproduces the run exactly', () => {
    const r = cli([
      'weights',
      ...data(),
      '--method',
      'magnitude',
      '--sparsity',
      '0.3',
      '--out',
      weights,
      '--quiet',
    ]);
    assert.equal(r.code, 0, r.stderr);
    const result = readJson(join(weights, 'result.json'));
    assert.equal(result.context, 512);
    assert.equal(result.warnings, undefined, 'magnitude lands on its target');
    assert.match(r.stdout, /^evaluation {3}ppl [\d.]+ \(.*, ctx 512\)$/m);
    assert.match(r.stdout, /^calibration {2}ppl [\d.]+ \(.*, ctx 512\)$/m);
    const mask = join(weights, 'weight-mask.safetensors');
    const e = json(
      cli([
        'eval',
        '--model',
        model,
        '--data',
        sharedPath(EVAL)!,
        '--max-tokens',
        '2048',
        '--weight-mask',
        mask,
        '--json',
      ]),
    );
    assert.equal(e.context, 512);
    assert.equal(e.perplexity, result.eval.perplexity);
    const again = json(cli(['weights', '--resume', weights, '--json']));
    assert.equal(again.context, 512);
  });

  test('weights --preset geneprune runs the paper’s GA; far below its target, it is flagged everywhere', () => {
    const out = join(tmp.dir, 'preset');
    const r = cli([
      'weights',
      ...data(),
      '--preset',
      'geneprune',
      '--sparsity',
      '0.5',
      '--out',
      out,
      '--quiet',
    ]);
    assert.equal(r.code, 0, r.stderr);
    const result = readJson(join(out, 'result.json'));
    assert.equal(result.method, 'ga');
    assert.equal(readJson(join(out, 'config.json')).settings.method, 'ga');
    // The paper's GA stops far short of a 50 % threshold on this model (the audit's "asked 50 %, got 5 %").
    assert.ok(result.sparsity.achieved < 0.45, `achieved ${result.sparsity.achieved}`);
    const [warning] = result.warnings;
    assert.match(warning, /^achieved sparsity [\d.]+ % is far below the 50\.0 % asked/);
    assert.ok(r.stderr.split('\n').includes(`warning: ${warning}`), r.stderr);
    assert.ok(r.stdout.split('\n').includes(`warning      ${warning}`), r.stdout);
    // --preset with the method it stands for is accepted; with another method, refused naming both.
    const other = cli([
      'weights',
      ...data(),
      '--preset',
      'geneprune',
      '--method',
      'wanda',
      '--out',
      join(tmp.dir, 'x'),
    ]);
    assert.notEqual(other.code, 0);
    assert.match(other.stderr, /--preset: .*does not combine with --method wanda/);
  });
});
