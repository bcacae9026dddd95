/**
 * A read-only file system is reported as such. Node's recursive mkdir says ENOENT ("no such file or directory")
 * when it cannot create a folder on a read-only mount; export and the run directories of heads/weights used to
 * pass that on. Run inside a private mount namespace (root and unshare(1) needed, else skipped).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { tempDir } from '../checkpoint/helpers.js';
import { CALIB, EVAL, MODEL, REPO_ROOT, sharedPath, skipUnlessShared } from '../shared.js';

const tmp = tempDir('geneprune-readonly-');
after(tmp.cleanup);
const skip = skipUnlessShared(MODEL, CALIB, EVAL);

/** Whether this process may create a mount namespace (root, `unshare`): needed for a read-only file system. */
function canMountReadOnly(): boolean {
  if (process.getuid?.() !== 0) return false;
  const probe = join(tmp.dir, 'ro-probe');
  mkdirSync(probe, { recursive: true });
  const r = spawnSync('unshare', ['-m', 'sh', '-c', `mount -t tmpfs -o ro none '${probe}'`], {
    encoding: 'utf8',
  });
  return r.status === 0;
}

describe('a read-only file system is named as such', { skip }, () => {
  test('why: export and heads onto a read-only mount said ENOENT (no such file); now "read-only file system"', {
    skip: canMountReadOnly() ? false : 'needs root and unshare(1) to mount a read-only tmpfs',
  }, () => {
    const ro = join(tmp.dir, 'ro');
    mkdirSync(ro);
    const tsx = import.meta.resolve('tsx');
    const cli = (args: string[]) =>
      `node --import '${tsx}' '${join(REPO_ROOT, 'src/cli/main.ts')}' ${args.map((a) => `'${a}'`).join(' ')}`;
    const exportOut = join(ro, 'exported');
    const runOut = join(ro, 'runs', 'ga');
    const script = [
      `mount -t tmpfs -o ro none '${ro}'`,
      `${cli(['export', '--model', sharedPath(MODEL)!, '--out', exportOut])}; echo "exit $?" >&2`,
      `${cli(['heads', '--model', sharedPath(MODEL)!, '--calib', sharedPath(CALIB)!, '--eval', sharedPath(EVAL)!, '--method', 'random', '--target-sparsity', '0.25', '--out', runOut, '--quiet'])}; echo "exit $?" >&2`,
    ].join('\n');
    const r = spawnSync('unshare', ['-m', 'sh', '-c', script], {
      cwd: REPO_ROOT,
      encoding: 'utf8',
      env: { ...process.env, GENEPRUNE_CACHE: join(tmp.dir, 'cache'), HF_ENDPOINT: 'http://127.0.0.1:9' },
      timeout: 120_000,
    });
    const lines = r.stderr.split('\n').filter((l) => l !== '');
    assert.deepEqual(
      lines,
      [
        `geneprune: ${exportOut}: cannot create the output directory: read-only file system`,
        'exit 1',
        `geneprune: ${runOut}: cannot create run directory: read-only file system`,
        'exit 1',
      ],
      r.stderr,
    );
  });
});
