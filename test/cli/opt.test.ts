/**
 * The search, evaluation, generation and export commands on an OPT checkpoint: a small random OPT written as a
 * Hugging Face folder (OPTForCausalLM names, learned positions at offset 2) with a byte-level BPE tokenizer,
 * searched on the TinyStories calibration split. The head search's mask exports to a model whose perplexity is
 * the masked model's; Wanda prunes q/k/v/o, fc1 and fc2 (no gate) at half of each output row, and its exported
 * zeros give the run's perplexity; a block-wise GA (ga-wanda) runs to its target.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { unpackBits } from '../../src/masks/bitset.js';
import { loadWeightMaskFile } from '../../src/masks/weightfile.js';
import { prunableMatrices } from '../../src/masks/weights.js';
import { loadModelSpec } from '../../src/model/load.js';
import { tempDir } from '../checkpoint/helpers.js';
import { runCli } from '../helpers/cli.js';
import { cliJson, headSearchExportEval, weightsHalf } from '../helpers/familycli.js';
import { byteLevelTokenizerJson } from '../helpers/gpt2.js';
import { writeOpt } from '../helpers/opt.js';
import { CALIB, EVAL, sharedPath, skipUnlessShared } from '../shared.js';

const skip = skipUnlessShared(CALIB, EVAL);
const tmp = tempDir('geneprune-cli-opt-');
after(tmp.cleanup);

const D = 32;
const F = 64;

describe('OPT through heads, weights, eval, generate and export', { skip }, () => {
  const model = join(tmp.dir, 'opt');
  before(async () => {
    await writeOpt(model, { hidden: D, heads: 4, layers: 2, ffn: F, vocab: 257, positions: 256 }, 21, {
      bos_token_id: 256,
      eos_token_id: 256,
      pad_token_id: 256,
    });
    writeFileSync(join(model, 'tokenizer.json'), JSON.stringify(byteLevelTokenizerJson()));
  });
  const evalPpl = (args: string[]) =>
    cliJson<{ perplexity: number }>(
      runCli(['eval', ...args, '--data', sharedPath(EVAL)!, '--max-tokens', '1024', '--json']),
    ).perplexity;

  test('a head search exports a model with the masked model’s perplexity; generate runs on it', () => {
    const r = headSearchExportEval(model, tmp.dir);
    assert.ok(Number.isFinite(r.searchEval) && r.searchEval > 1, JSON.stringify(r));
    assert.ok(Math.abs(r.pruned - r.masked) / r.masked < 1e-4, `${r.pruned} vs ${r.masked}`);
    const gen = runCli(['generate', '--model', r.out, '--prompt', 'Once upon', '-n', '8']);
    assert.equal(gen.code, 0, gen.stderr);
  });

  test('Wanda prunes q, k, v, o, fc1, fc2 at half of every output row; the exported zeros give its perplexity', async () => {
    const run = join(tmp.dir, 'wanda');
    const r = weightsHalf(model, 'wanda', run);
    // Per layer q, k, v, o (4 × D × D) plus fc1 and fc2 (2 × F × D): OPT's MLP has no gate.
    assert.equal(r.prunableWeights, 2 * (4 * D * D + 2 * F * D));
    assert.deepEqual(
      r.layers.map((l) => l.weights),
      [4 * D * D + 2 * F * D, 4 * D * D + 2 * F * D],
    );
    assert.equal(r.sparsity.achieved, 0.5);
    // Wanda compares weights within each output row: every row keeps exactly half.
    const spec = await loadModelSpec(model);
    const mask = await loadWeightMaskFile(join(run, 'weight-mask.safetensors'), spec);
    for (const m of prunableMatrices(spec)) {
      const bits = unpackBits(mask.masks.get(m.role)!);
      for (let row = 0; row < m.rows; row++) {
        let kept = 0;
        for (let c = 0; c < m.cols; c++) kept += bits[row * m.cols + c];
        assert.equal(kept, m.cols / 2, `${m.role} row ${row}`);
      }
    }
    const out = join(tmp.dir, 'wanda-export');
    const e = runCli([
      'export',
      '--model',
      model,
      '--weight-mask',
      join(run, 'weight-mask.safetensors'),
      '--out',
      out,
    ]);
    assert.equal(e.code, 0, e.stderr);
    const exported = evalPpl(['--model', out]);
    assert.ok(
      Math.abs(exported - r.eval.perplexity) / r.eval.perplexity < 1e-4,
      `${exported} vs ${r.eval.perplexity}`,
    );
  });

  test('a block-wise GA (ga-wanda) runs to its sparsity with a finite perplexity', () => {
    const run = join(tmp.dir, 'ga-wanda');
    const r = weightsHalf(model, 'ga-wanda', run, ['--population', '4', '--generations', '2']);
    assert.equal(r.prunableWeights, 2 * (4 * D * D + 2 * F * D));
    assert.ok(Math.abs(r.sparsity.achieved - 0.5) < 0.01, JSON.stringify(r.sparsity));
    assert.ok(Number.isFinite(r.eval.perplexity) && r.eval.perplexity >= 1, JSON.stringify(r.eval));
  });
});
