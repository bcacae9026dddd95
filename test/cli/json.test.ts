/**
 * `--json` on every command: exactly one JSON object on stdout, nothing else there, and the same numbers the
 * human-readable output shows (or, for generate, the same text).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { tempDir } from '../checkpoint/helpers.js';
import { REPO_ROOT, SHARED_DIR, sharedPath, skipUnlessShared } from '../shared.js';

const tmp = tempDir('geneprune-json-');
after(tmp.cleanup);

const MODEL = 'models/stories260K/stories260K.bin';
const CALIB = 'data/tinystories/calib';
const EVAL = 'data/tinystories/eval';
const skip = skipUnlessShared(MODEL) || skipUnlessShared(CALIB) || skipUnlessShared(EVAL);

function runCli(args: string[]) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'src/cli/main.ts'), ...args], {
    cwd: REPO_ROOT,
    encoding: 'utf8',
    env: {
      ...process.env,
      GENEPRUNE_MODELS: join(SHARED_DIR, 'models'),
      GENEPRUNE_CACHE: join(tmp.dir, 'cache'),
      HF_ENDPOINT: 'http://127.0.0.1:9',
    },
    timeout: 300_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Exit 0 and a single line on stdout that parses as a JSON object. */
function oneJson(r: ReturnType<typeof runCli>): Record<string, unknown> {
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
    const plain = runCli(args);
    assert.equal(plain.code, 0, plain.stderr);
    const j = oneJson(runCli([...args, '--json']));
    assert.equal(`${j.prompt}${j.text}\n`, plain.stdout);
    assert.equal((j.tokens as number[]).length, 24);
    assert.equal(j.finish, 'length');
    assert.equal((j.promptTokens as number[])[0], 1, 'BOS first');
  });

  test('heads --json reports the run, and its mask file exists', () => {
    const out = join(tmp.dir, 'run-random');
    const j = oneJson(
      runCli([
        'heads',
        '--method',
        'random',
        '--target-sparsity',
        '0.25',
        '--calib',
        sharedPath(CALIB)!,
        '--eval',
        sharedPath(EVAL)!,
        '--calib-tokens',
        '1024',
        '--eval-tokens',
        '1024',
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
    const r = runCli(['export', '--mask', mask, '--out', out, '--json']);
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
  });
});
