/**
 * The memory estimate from the header alone, and the budget it is checked against: a tiny budget refuses in
 * one line naming the estimate and the budget, before anything is loaded (library and CLI).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { evaluate } from '../../src/api/evaluate.js';
import { estimatePeakMemory, parseByteSize, weightBytesOf } from '../../src/engine/memory.js';
import { GenepruneError } from '../../src/errors.js';
import { randomLlamaSpec } from '../../src/model/random.js';
import { REPO_ROOT, SHARED_DIR, skipUnlessShared } from '../shared.js';

const sharedPath = (rel: string) => join(SHARED_DIR, rel);

describe('memory estimate', () => {
  const spec = randomLlamaSpec({
    hiddenSize: 64,
    numLayers: 2,
    numHeads: 4,
    numKvHeads: 2,
    intermediateSize: 96,
    vocabSize: 1000,
    maxPositions: 256,
    seed: 1,
    lazy: true,
  });

  test('weights count 4 bytes per parameter; activations grow with tokens and vocabulary', () => {
    // embed + lm_head 2·1000·64, per layer q,o 64·64, k,v 32·64, 3·96·64 MLP, 2 norms; final norm.
    const params = 2 * 1000 * 64 + 2 * (2 * 64 * 64 + 2 * 32 * 64 + 3 * 96 * 64 + 2 * 64) + 64;
    assert.equal(weightBytesOf(spec), 4 * params);
    const small = estimatePeakMemory(spec, { batch: 1, seq: 128 });
    const large = estimatePeakMemory(spec, { batch: 4, seq: 128 });
    assert.ok(large.activationBytes >= 4 * small.activationBytes * 0.99);
    // The logits alone: fp32 [tokens, vocab].
    assert.ok(small.activationBytes > 4 * 128 * 1000);
    assert.ok(large.totalBytes > large.weightBytes + large.activationBytes - 1);
  });

  test('sizes parse with units', () => {
    assert.equal(parseByteSize('--memory-budget', '20G'), 20 * 2 ** 30);
    assert.equal(parseByteSize('--memory-budget', '512m'), 512 * 2 ** 20);
    assert.equal(parseByteSize('--memory-budget', '1.5GiB'), 1.5 * 2 ** 30);
    assert.equal(parseByteSize('--memory-budget', '4096'), 4096);
    assert.throws(() => parseByteSize('--memory-budget', '20 apples'), /--memory-budget|not a size/);
  });
});

const MODEL = 'models/stories260K/stories260K.bin';
const DATA = 'data/tinystories/eval';

describe('a tiny budget is refused before loading', { skip: skipUnlessShared(MODEL) }, () => {
  test('library: evaluate throws a GenepruneError naming the flag, estimate and budget', async () => {
    await assert.rejects(
      evaluate({ model: sharedPath(MODEL), data: sharedPath(DATA), maxTokens: 256, memoryBudget: 2 ** 20 }),
      (e: unknown) =>
        e instanceof GenepruneError &&
        e.where === '--memory-budget' &&
        /eval would need about [\d.]+ GiB .* over the budget of 0\.0 GiB/.test(e.message),
    );
  });

  test('CLI: eval, heads, export and bench fail with one line', () => {
    const env = { ...process.env, GENEPRUNE_MODELS: join(SHARED_DIR, 'models') };
    const runs = [
      ['eval', '--data', sharedPath(DATA), '--max-tokens', '64'],
      [
        'heads',
        '--calib',
        sharedPath('data/tinystories/calib'),
        '--eval',
        sharedPath(DATA),
        '--out',
        join(REPO_ROOT, 'tmp', 'never'),
      ],
      ['export', '--out', join(REPO_ROOT, 'tmp', 'never-export')],
      ['bench', '--model', sharedPath(MODEL), '--model', sharedPath(MODEL)],
    ];
    for (const args of runs) {
      const r = spawnSync(
        process.execPath,
        ['--import', 'tsx', join(REPO_ROOT, 'src/cli/main.ts'), ...args, '--memory-budget', '1K'],
        { cwd: REPO_ROOT, env, encoding: 'utf8', timeout: 120_000 },
      );
      assert.notEqual(r.status, 0, args[0]);
      const lines = r.stderr.split('\n').filter(Boolean);
      assert.equal(lines.length, 1, r.stderr);
      assert.match(lines[0], /^geneprune: --memory-budget: \w+ would need about [\d.]+ GiB/, args[0]);
    }
  });
});
