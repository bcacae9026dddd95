/** The speed harness: FLOP counts by hand, and a real (small) interleaved run through the library and the CLI. */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { GenepruneError } from '../../src/errors.js';
import { forwardFlopsPerToken, parameterCount } from '../../src/model/cost.js';
import { randomLlamaSpec } from '../../src/model/random.js';
import { benchModels, fastestSession } from '../../src/prune/bench.js';
import { pruneHeads } from '../../src/prune/heads.js';
import { QUICK_BENCH, storiesWithMask } from '../helpers/benchcli.js';
import { runCli } from '../helpers/cli.js';
import { MODEL, skipUnlessShared } from '../shared.js';

const spec = randomLlamaSpec({
  hiddenSize: 16,
  numLayers: 2,
  numHeads: 4,
  numKvHeads: 2,
  intermediateSize: 24,
  vocabSize: 10,
  maxPositions: 32,
  seed: 1,
});

describe('bench', () => {
  test('FLOPs per token, worked by hand', () => {
    // Per layer: 2·16·(2·16 + 2·8) q,o,k,v = 1536; MLP 2·3·16·24 = 2304; attention 2·2·S·16 = 64·S.
    // Head: 2·16·10 = 320. At S = 8: 2·(1536 + 2304 + 512) + 320 = 9024.
    assert.equal(forwardFlopsPerToken(spec, 8), 9024);
    // Layer 0 keeps heads 0 and 1 (one KV head), layer 1 keeps all: layer 0 q,o = 2·16·(16 + 8) = 768,
    // attention 2·2·8·8 = 256.
    const pruned = pruneHeads(spec, Uint8Array.from([1, 1, 0, 0, 1, 1, 1, 1]));
    assert.equal(forwardFlopsPerToken(pruned, 8), 768 + 2304 + 256 + 1536 + 2304 + 512 + 320);
  });

  test('an interleaved run reports every timed run and positive rates', async () => {
    const pruned = pruneHeads(spec, Uint8Array.from([1, 0, 1, 0, 0, 1, 1, 1]));
    const opts = { batch: 2, seq: 8, prompt: 3, generate: 4, runs: 3, warmup: 1, seed: 0 };
    const [a, b] = await benchModels(spec, pruned, opts);
    for (const s of [a, b]) {
      assert.equal(s.prefillMs.length, 3);
      assert.equal(s.generateMs.length, 3);
      assert.ok(s.prefillTokensPerSecond > 0 && s.generateTokensPerSecond > 0);
    }
    assert.ok(b.parameters < a.parameters);
  });

  test('the fastest session is the lowest median prefill, ties by generation, then the earlier', () => {
    const t = (prefillMs: number[], generateMs: number[]) => ({ prefillMs, generateMs });
    // medians 20, 11 (a slow first session, 2x), 12
    const slow = t([19, 20, 40], [5, 5, 5]);
    const fast = t([10, 11, 30], [9, 9, 9]);
    const mid = t([12, 12, 12], [1, 1, 1]);
    assert.equal(fastestSession([slow, fast, mid]), fast);
    const tie = t([1, 11, 99], [8, 8, 8]);
    assert.equal(fastestSession([fast, tie]), tie, 'equal prefill medians: the faster generation');
    assert.equal(fastestSession([fast, t([11, 11, 11], [9, 9, 9])]), fast, 'all equal: the earlier');
    assert.throws(() => fastestSession([]), /no sessions/);
  });

  test('several sessions: every session timed, the reported runs are one session of each model', async () => {
    const pruned = pruneHeads(spec, Uint8Array.from([1, 0, 1, 0, 0, 1, 1, 1]));
    const lines: string[] = [];
    const opts = { batch: 2, seq: 8, prompt: 3, generate: 4, runs: 2, warmup: 1, seed: 0, sessions: 3 };
    const [a, b] = await benchModels(spec, pruned, opts, (l) => lines.push(l));
    assert.equal(lines.length, 3 * 3);
    assert.match(lines.at(-1)!, /run 3\/3 of session 3\/3/);
    for (const s of [a, b]) assert.equal(s.prefillMs.length, 2);
    await assert.rejects(
      benchModels(spec, pruned, { ...opts, sessions: 0 }),
      (e: unknown) =>
        e instanceof GenepruneError &&
        e.where === '--sessions' &&
        /must be a positive integer/.test(e.message),
    );
  });

  test('geneprune bench --mask prints speedups next to the FLOP ratio', {
    skip: skipUnlessShared(MODEL),
  }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'geneprune-bench-'));
    try {
      const mask = join(dir, 'mask.json');
      const genome = Uint8Array.from({ length: 40 }, (_, g) => (g % 2 ? 1 : 0));
      const model = await storiesWithMask(mask, genome);
      const run = (args: string[]) => runCli(['bench', ...args]);
      const ok = run(['--mask', mask, ...QUICK_BENCH, '--json']);
      assert.equal(ok.code, 0, ok.stderr);
      const report = JSON.parse(ok.stdout);
      assert.ok(report.flopRatio > 1 && report.prefillSpeedup > 0 && report.generateSpeedup > 0);
      assert.equal(report.b.parameters, parameterCount(pruneHeads(model.spec, genome)));
      const bad = run(['--mask', join(dir, 'none.json'), '--runs', '1']);
      assert.notEqual(bad.code, 0);
      assert.match(bad.stderr, /^geneprune: .*none\.json: /);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
