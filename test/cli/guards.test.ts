/**
 * The audit's "silent wrong result" cases, run as a user meets them: each used to exit 0 with a wrong answer
 * (or a stack trace); now each fails with one line naming what is at fault, or ends quietly.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { tempDir } from '../checkpoint/helpers.js';
import { sharedPath, skipUnlessShared } from '../shared.js';
import { assertOneLineError, runCli, runCliClosingStdout } from './helpers.js';

const tmp = tempDir('geneprune-guards-');
after(tmp.cleanup);
const cache = join(tmp.dir, 'cache');

const MODEL = 'models/stories260K/stories260K.bin';

describe('broken pipes end quietly', () => {
  test('why: `geneprune --help | head -1` printed an EPIPE stack trace — exit 0, nothing on stderr', async () => {
    const r = await runCliClosingStdout(['--help'], cache, 0);
    assert.deepEqual(
      { code: r.code, signal: r.signal, stderr: r.stderr },
      { code: 0, signal: null, stderr: '' },
    );
  });

  test('why: `geneprune eval --help | head -1` — exit 0, nothing on stderr', async () => {
    const r = await runCliClosingStdout(['eval', '--help'], cache, 0);
    assert.deepEqual(
      { code: r.code, signal: r.signal, stderr: r.stderr },
      { code: 0, signal: null, stderr: '' },
    );
  });

  test('why: `geneprune generate | head -c 10` printed an EPIPE stack trace — exit 0, nothing on stderr', {
    skip: skipUnlessShared(MODEL),
  }, async () => {
    for (const readBytes of [10, 0]) {
      const r = await runCliClosingStdout(
        ['generate', '--model', sharedPath(MODEL)!, '--prompt', 'Once upon a time', '-n', '200'],
        cache,
        readBytes,
      );
      assert.deepEqual(
        { code: r.code, signal: r.signal, stderr: r.stderr },
        { code: 0, signal: null, stderr: '' },
        `closing stdout after ${readBytes} bytes`,
      );
      if (readBytes > 0) assert.ok(r.read >= readBytes);
    }
  });
});

describe('integer flags', () => {
  test('why: --seed 9007199254740993 silently became …992 — exit 2 naming --seed', () => {
    const r = runCli(['generate', '--seed', '9007199254740993', '--temperature', '1'], cache);
    const line = assertOneLineError(r, 2, '--seed');
    assert.equal(
      line,
      'geneprune: --seed: 9007199254740993 is outside the exact integer range (±9007199254740991)',
    );
  });
});
