/**
 * `--json` on every command: exactly one JSON object on stdout, nothing else there, and the same numbers the
 * human-readable output shows (or, for generate, the same text).
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { tempDir } from '../checkpoint/helpers.js';
import { type CliResult, runCli } from '../helpers/cli.js';
import { smallData } from '../helpers/familycli.js';
import { CALIB, EVAL, MODEL, skipUnlessShared } from '../shared.js';

const tmp = tempDir('geneprune-json-');
after(tmp.cleanup);

const skip = skipUnlessShared(MODEL, CALIB, EVAL);
/** Whole searches and exports: more time than runCli's default. */
const cli = (args: string[]) => runCli(args, { timeout: 300_000 });

/** Exit 0 and a single line on stdout that parses as a JSON object. */
function oneJson(r: CliResult): Record<string, unknown> {
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.split('\n').filter((l) => l !== '');
  assert.equal(lines.length, 1, `expected one JSON line, got:\n${r.stdout}`);
  const value = JSON.parse(lines[0]);
  assert.equal(typeof value, 'object');
  return value;
}

describe('--json output', { skip }, () => {
  test('generate --json holds the same text the plain command prints', () => {
    const args = ['generate', '--prompt', 'The dog', '-n', '24'];
    const plain = cli(args);
    assert.equal(plain.code, 0, plain.stderr);
    const j = oneJson(cli([...args, '--json']));
    assert.equal(`${j.prompt}${j.text}\n`, plain.stdout);
    assert.equal((j.tokens as number[]).length, 24);
    assert.equal(j.finish, 'length');
    assert.equal((j.promptTokens as number[])[0], 1, 'BOS first');
  });

  test('heads --json reports the run, and its mask file exists', () => {
    const out = join(tmp.dir, 'run-random');
    const j = oneJson(
      cli([
        'heads',
        '--method',
        'random',
        '--target-sparsity',
        '0.25',
        ...smallData(),
        '--out',
        out,
        '--json',
      ]),
    );
    assert.equal(j.method, 'random');
    assert.equal(j.removed, 10);
    assert.equal(j.genes, 40);
    assert.equal((j.genome as string).replace(/1/g, '').length, 10);
    const mask = JSON.parse(readFileSync(join(out, 'mask.json'), 'utf8'));
    assert.equal(mask.keep.join(''), j.genome);
    const result = JSON.parse(readFileSync(join(out, 'result.json'), 'utf8'));
    assert.equal((j.eval as { perplexity: number }).perplexity, result.eval.perplexity);
  });

  test('export --json lists the files it wrote and the parameter counts', () => {
    const mask = join(tmp.dir, 'run-random', 'mask.json');
    const out = join(tmp.dir, 'exported');
    const r = cli(['export', '--mask', mask, '--out', out, '--json']);
    const j = oneJson(r);
    assert.equal(r.stderr, '', 'no status lines with --json');
    assert.equal(j.out, out);
    for (const f of j.files as string[]) assert.ok(existsSync(join(out, f)), `${f} listed but absent`);
    assert.ok((j.files as string[]).includes('onnx/model.onnx'));
    const s = j.summary as { parametersAfter: number; parametersBefore: number; keptQueryHeads: number[] };
    assert.ok(s.parametersAfter < s.parametersBefore);
    assert.equal(
      s.keptQueryHeads.reduce((a, b) => a + b, 0),
      30,
    );
    // A compact decoder export ships the Python classes and says which loaders read it.
    assert.ok((j.files as string[]).includes('modeling_geneprune.py'));
    assert.deepEqual(j.loaders, {
      layout: 'compact',
      readers: [
        'geneprune',
        'transformers.js (onnx/)',
        'Python transformers with trust_remote_code=True (modeling_geneprune.py); the stock class refuses it',
      ],
    });
  });

  test('export states in words which loaders read the layout it wrote', () => {
    const mask = join(tmp.dir, 'run-random', 'mask.json');
    const compact = cli([
      'export',
      '--mask',
      mask,
      '--out',
      join(tmp.dir, 'exported-words'),
      '--format',
      'hf',
    ]);
    assert.equal(compact.code, 0, compact.stderr);
    assert.match(
      compact.stdout,
      /^loaded by {4}\(compact layout\) geneprune; Python transformers with trust_remote_code=True \(modeling_geneprune\.py\); the stock class refuses it$/m,
    );
    const padded = cli([
      'export',
      '--mask',
      mask,
      '--out',
      join(tmp.dir, 'exported-padded'),
      '--hf-layout',
      'padded',
    ]);
    assert.equal(padded.code, 0, padded.stderr);
    assert.match(
      padded.stdout,
      /^loaded by {4}\(padded layout\) geneprune; transformers\.js \(onnx\/\); Python transformers, any version, with the stock class \(the removed heads are zeros: no smaller, no faster\)$/m,
    );
  });
});
