/** `geneprune structured --method evopress | nsga` end to end on stories260K with tiny settings. */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { assertOneLineError, runCli } from '../helpers/cli.js';
import { CALIB, EVAL, MODEL, sharedPath, skipUnlessShared } from '../shared.js';

const skip = skipUnlessShared(MODEL, CALIB, EVAL);
const tmp = mkdtempSync(join(tmpdir(), 'geneprune-structured-algorithms-cli-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

const data = () => ['--calib', sharedPath(CALIB)!, '--eval', sharedPath(EVAL)!];
const small = [
  '--width-step',
  '16',
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
  '--budget',
  'params:0.85',
];

describe('geneprune structured --method evopress | nsga (CLI)', { skip }, () => {
  it('runs EvoPress with multi-fidelity, within the budget, and resumes the finished run to the same plan', () => {
    const out = join(tmp, 'evo');
    const args = ['structured', ...data(), ...small, '--method', 'evopress', '--offspring', '3'];
    const r = runCli([...args, '--low-tokens', '128', '--out', out, '--json'], { timeout: 300_000 });
    assert.equal(r.code, 0, r.stderr);
    const result = JSON.parse(r.stdout);
    assert.equal(result.method, 'evopress');
    assert.ok(result.budget.cost <= result.budget.limit);
    assert.ok(existsSync(join(out, 'plan.json')));
    const evals = readFileSync(join(out, 'evals.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    // Generation 0: the start on all tokens; generation 1: three children cheaply, the best two again on all.
    assert.deepEqual(
      evals.map((e) => `${e.generation} ${e.fidelity}`),
      ['0 full', '1 low', '1 low', '1 low', '1 full', '1 full'],
    );
    assert.ok(result.calib.quality <= evals[0].quality);
    const again = runCli(['structured', '--resume', out, '--json'], { timeout: 300_000 });
    assert.equal(again.code, 0, again.stderr);
    assert.equal(JSON.parse(again.stdout).genome, result.genome);
  });

  it('runs NSGA-II and writes the front, plan.json its best member within the budget', () => {
    const out = join(tmp, 'nsga');
    const r = runCli(
      ['structured', ...data(), ...small, '--method', 'nsga', '--population', '4', '--out', out, '--json'],
      { timeout: 300_000 },
    );
    assert.equal(r.code, 0, r.stderr);
    const result = JSON.parse(r.stdout);
    assert.equal(result.method, 'nsga');
    assert.ok(result.budget.cost <= result.budget.limit);
    const front = JSON.parse(readFileSync(join(out, 'front.json'), 'utf8'));
    assert.ok(front.length >= 1);
    assert.deepEqual(result.front, { file: join(out, 'front.json'), members: front.length });
    const within = front.filter((m: { cost: number }) => m.cost <= result.budget.limit);
    const best = within.reduce((a: { quality: number }, b: { quality: number }) =>
      b.quality < a.quality ? b : a,
    );
    assert.equal(result.genome, best.genome);
    assert.deepEqual(result.plan, best.plan);
  });

  it('refuses --offspring outside evopress and --low-tokens with nsga, in one line', () => {
    const out = join(tmp, 'refused');
    assertOneLineError(
      runCli(['structured', ...data(), ...small, '--offspring', '4', '--out', out]),
      2,
      '--offspring',
      '--method ga',
    );
    assertOneLineError(
      runCli(['structured', ...data(), ...small, '--method', 'nsga', '--low-tokens', '64', '--out', out]),
      2,
      '--low-tokens',
    );
    assert.ok(!existsSync(join(out, 'config.json')));
  });
});
