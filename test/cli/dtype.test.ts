/**
 * `--dtype` on the compute commands: the JSON names the dtype used, stories260K's perplexity in fp16 and bf16
 * agrees with fp32 within the manual's tolerance (docs/scale-and-precision.md), greedy generation is unchanged,
 * and a dtype that does not exist is refused in one line naming the flag.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { assertOneLineError, type CliResult, runCli } from '../helpers/cli.js';
import { EVAL, MODEL, sharedPath, skipUnlessShared } from '../shared.js';

const skip = skipUnlessShared(MODEL, EVAL);
const cli = (args: string[]) => runCli(args, { timeout: 300_000 });

function json(r: CliResult): Record<string, unknown> {
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout);
}

describe('--dtype', () => {
  test('an unknown dtype is refused in one line on every compute command', () => {
    for (const args of [
      ['eval', '--data', 'x'],
      ['generate'],
      ['bench', '--mask', 'x'],
      ['heads', '--calib', 'x', '--eval', 'y', '--out', 'runs/never-made'],
    ]) {
      const r = runCli([...args, '--dtype', 'fp8']);
      assertOneLineError(r, 2, 'geneprune: --dtype: unknown compute dtype "fp8"', 'fp32, fp16, bf16');
    }
  });

  test('eval: fp16 and bf16 perplexity of stories260K agree with fp32; --json names the dtype', {
    skip,
  }, () => {
    const data = sharedPath(EVAL)!;
    const model = sharedPath(MODEL)!;
    const ppl: Record<string, number> = {};
    for (const dtype of ['fp32', 'fp16', 'bf16']) {
      const j = json(
        cli(['eval', '--model', model, '--data', data, '--max-tokens', '8192', '--dtype', dtype, '--json']),
      );
      assert.equal(j.dtype, dtype);
      ppl[dtype] = j.perplexity as number;
    }
    // Measured on all 38,008 evaluation tokens: fp16 −1.4e-6, bf16 −1.8e-4 relative (docs/scale-and-precision.md, Tolerance).
    assert.ok(Math.abs(ppl.fp16 / ppl.fp32 - 1) < 1e-4, `fp16 ${ppl.fp16} vs ${ppl.fp32}`);
    assert.ok(Math.abs(ppl.bf16 / ppl.fp32 - 1) < 2e-3, `bf16 ${ppl.bf16} vs ${ppl.fp32}`);
    assert.notEqual(ppl.fp16, ppl.fp32, 'fp16 computed exactly fp32: were the weights narrowed?');
  });

  test('generate: greedy text in fp16 is fp32’s; --json names the dtype', { skip }, () => {
    const args = ['generate', '--model', sharedPath(MODEL)!, '-n', '40', '--json'];
    const fp32 = json(cli(args));
    const fp16 = json(cli([...args, '--dtype', 'fp16']));
    assert.equal(fp32.dtype, 'fp32');
    assert.equal(fp16.dtype, 'fp16');
    assert.deepEqual(fp16.tokens, fp32.tokens);
  });
});
