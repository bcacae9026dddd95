import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { assertOneLineError, runCli } from '../helpers/cli.js';
import { CALIB, EVAL, MODEL, sharedPath, skipUnlessShared } from '../shared.js';

const skip = skipUnlessShared(MODEL, CALIB, EVAL);
const tmp = mkdtempSync(join(tmpdir(), 'geneprune-structured-cli-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

const data = () => ['--calib', sharedPath(CALIB)!, '--eval', sharedPath(EVAL)!];
const small = [
  '--width-step',
  '16',
  '--population',
  '4',
  '--generations',
  '2',
  '--calib-tokens',
  '256',
  '--score-tokens',
  '256',
  '--eval-tokens',
  '256',
  '--ctx',
  '64',
];

describe('geneprune structured (CLI)', () => {
  it('teaches the budgets in --help', () => {
    const r = runCli(['structured', '--help']);
    assert.equal(r.code, 0);
    for (const s of ['params:R', 'flops:R', 'speedup:S', '--space', '--method', 'shortgpt'])
      assert.ok(r.stdout.includes(s), s);
  });

  it('refuses a bad budget, a missing one, two backends and a metric it cannot serve, in one line', {
    skip,
  }, () => {
    const out = join(tmp, 'refused');
    assertOneLineError(
      runCli(['structured', ...data(), '--budget', 'params:2', '--out', out]),
      2,
      '--budget',
    );
    assertOneLineError(
      runCli(['structured', ...data(), '--budget', 'size:0.5', '--out', out]),
      2,
      '--budget',
    );
    assertOneLineError(runCli(['structured', ...data(), '--out', out]), 2, '--budget');
    // Both backends at once, and a classifier's metrics (the scores need calibration text), are refused.
    assertOneLineError(
      runCli([
        'structured',
        ...data(),
        '--budget',
        'params:0.8',
        '--workers',
        '2',
        '--queue',
        'redis://127.0.0.1:1',
        '--out',
        out,
      ]),
      2,
      '--queue',
    );
    assertOneLineError(
      runCli(['structured', ...data(), '--budget', 'params:0.8', '--metric', 'accuracy', '--out', out]),
      2,
      '--metric',
      'calibration text',
    );
    assertOneLineError(
      runCli(['structured', ...data(), '--budget', 'params:0.8', '--metric', 'mc-accuracy', '--out', out]),
      2,
      '--calib-choices',
    );
    // pass@1 runs generated code: never from a queue (workers would run code read from Redis), refused up front.
    assertOneLineError(
      runCli([
        'structured',
        ...data(),
        '--budget',
        'params:0.8',
        '--metric',
        'pass@1',
        '--allow-code-execution',
        '--queue',
        'redis://127.0.0.1:1',
        '--out',
        out,
      ]),
      2,
      '--queue',
      'pass@1',
    );
    // --seed-plan is repeatable, seeds GA runs only, and an unreadable plan file is refused naming it.
    assertOneLineError(
      runCli([
        'structured',
        ...data(),
        '--budget',
        'params:0.8',
        '--method',
        'uniform',
        '--seed-plan',
        'a.json',
        '--seed-plan',
        'b.json',
        '--out',
        out,
      ]),
      2,
      '--seed-plan',
      '--method uniform',
    );
    const missing = join(tmp, 'no-such-plan.json');
    assertOneLineError(
      runCli(['structured', ...data(), '--budget', 'params:0.8', '--seed-plan', missing, '--out', out]),
      'non-zero',
      missing,
    );
    assert.ok(!existsSync(join(out, 'config.json')));
  });

  it('searches heads at a measured-latency budget, stores the profile, and resumes a finished run to the same result', {
    skip,
  }, () => {
    const out = join(tmp, 'sos');
    const args = ['structured', ...data(), '--space', 'heads', '--budget', 'speedup:1.2', ...small];
    const r = runCli([...args, '--latency-runs', '2', '--threads', '1', '--out', out, '--json'], {
      timeout: 300_000,
    });
    assert.equal(r.code, 0, r.stderr);
    const result = JSON.parse(r.stdout);
    assert.ok(existsSync(join(out, 'latency-profile.json')));
    assert.ok(existsSync(join(out, 'plan.json')));
    assert.ok(result.predictedSpeedup >= 1.2 - 1e-9, String(result.predictedSpeedup));
    assert.ok(result.budget.cost <= result.budget.limit);
    // Heads only: every MLP keeps its full width, nothing is skipped.
    assert.deepEqual(result.kept.widths, [172, 172, 172, 172, 172]);
    assert.ok(result.plan.skipAttention.every((s: boolean) => !s));
    const again = runCli(['structured', '--resume', out, '--json'], { timeout: 300_000 });
    assert.equal(again.code, 0, again.stderr);
    const resumed = JSON.parse(again.stdout);
    assert.equal(resumed.genome, result.genome);
    assert.equal(resumed.eval.perplexity, result.eval.perplexity);
    assert.equal(resumed.predictedSpeedup, result.predictedSpeedup);
    assertOneLineError(runCli(['structured', '--resume', out, '--budget', 'params:0.5']), 2, '--budget');
    // Scores that do not fit the model are refused naming the file, before anything is computed.
    const broken = join(tmp, 'broken');
    cpSync(out, broken, { recursive: true });
    const scores = JSON.parse(readFileSync(join(broken, 'scores.json'), 'utf8'));
    scores.heads[0].pop();
    writeFileSync(join(broken, 'scores.json'), JSON.stringify(scores));
    assertOneLineError(runCli(['structured', '--resume', broken]), 'non-zero', 'scores.json');
    // Reports do not read structured runs yet: said in one line, not a confusing field error.
    assertOneLineError(
      runCli(['report', out, '--out', join(tmp, 'r.html')]),
      'non-zero',
      'structured search run',
    );
  });
});
