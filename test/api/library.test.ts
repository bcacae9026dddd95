/**
 * The library as a user gets it: the package is packed (`npm pack`, which builds dist/), installed into a fresh
 * project with the CUDA download skipped, and the manual's library example (docs/library.md) runs against it
 * through the package's public entry (`import ... from 'geneprune'`), with nothing from src/.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { tempDir } from '../checkpoint/helpers.js';
import { CALIB, EVAL, MODEL, REPO_ROOT, skipUnlessShared } from '../shared.js';

const tmp = tempDir('geneprune-library-');
after(tmp.cleanup);

const skip = skipUnlessShared(MODEL, CALIB, EVAL);

/** The fenced block after `<!-- library-example -->` in docs/library.md. */
function libraryExample(): string {
  const page = readFileSync(join(REPO_ROOT, 'docs', 'library.md'), 'utf8');
  const m = /<!-- library-example -->\s*```js\n([\s\S]*?)```/.exec(page);
  assert.ok(m, 'docs/library.md has no library example block');
  return m[1];
}

function run(cmd: string, args: string[], cwd: string, env: Record<string, string> = {}) {
  const r = spawnSync(cmd, args, {
    cwd,
    encoding: 'utf8',
    env: { ...process.env, ...env },
    timeout: 300_000,
  });
  return { code: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

describe('the library example (docs/library.md) through the published package', { skip }, () => {
  test('why: the library exported no search, prune, export or bench function — the manual example runs through the packed package', () => {
    const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
    const packed = run(npm, ['pack', '--json', '--pack-destination', tmp.dir], REPO_ROOT);
    assert.equal(packed.code, 0, packed.stderr);
    const [info] = JSON.parse(packed.stdout.slice(packed.stdout.indexOf('['))) as Array<{
      filename: string;
      files: Array<{ path: string }>;
    }>;
    const files = info.files.map((f) => f.path);
    for (const f of [
      'LICENSE',
      'README.md',
      'package.json',
      'dist/index.js',
      'dist/index.d.ts',
      'dist/cli/main.js',
    ]) {
      assert.ok(files.includes(f), `the package lacks ${f}`);
    }
    assert.ok(
      !files.some((f) => f.startsWith('test/') || f.startsWith('src/')),
      'tests or sources were packed',
    );

    const project = join(tmp.dir, 'project');
    run('mkdir', ['-p', project], tmp.dir);
    writeFileSync(
      join(project, 'package.json'),
      '{"name":"library-example","private":true,"type":"module"}\n',
    );
    const installed = run(
      npm,
      ['install', '--prefer-offline', '--no-audit', '--no-fund', join(tmp.dir, info.filename)],
      project,
      { ONNXRUNTIME_NODE_INSTALL: 'skip' },
    );
    assert.equal(installed.code, 0, installed.stderr);

    const script = join(project, 'example.mjs');
    writeFileSync(script, libraryExample());
    // The example names ../shared relative to the repository root, as docs/library.md says.
    const r = run(process.execPath, [script], REPO_ROOT);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trim().split('\n');
    const m = /^removed (\d+)\/(\d+) heads: ppl ([\d.]+) -> ([\d.]+)$/.exec(lines[0]);
    assert.ok(m, `unexpected first line: ${lines[0]}`);
    assert.equal(Number(m[1]), 10, "a quarter of stories260K's 40 heads");
    assert.equal(Number(m[2]), 40);
    const [dense, pruned] = [Number(m[3]), Number(m[4])];
    // stories260K on the first 4,096 evaluation tokens: dense perplexity near the full-set 3.74.
    assert.ok(dense > 3 && dense < 4.5, `dense ppl ${dense}`);
    assert.ok(pruned > dense, `removing heads must cost perplexity (${dense} -> ${pruned})`);
    assert.ok(lines[1].length > 20, `generated text: ${lines[1]}`);
    const p = /^(\d+) of (\d+) parameters in (.+)$/.exec(lines.at(-1) ?? '');
    assert.ok(p, `unexpected last line: ${lines.at(-1)}`);
    assert.ok(Number(p[1]) < Number(p[2]));
  });
});
