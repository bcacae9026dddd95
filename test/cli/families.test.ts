/**
 * The search, evaluation, generation and export commands on a GPT-2 checkpoint, unchanged from LLaMA: a small
 * random GPT-2 written as a Hugging Face folder with a byte-level BPE tokenizer, searched on the TinyStories
 * calibration split. The head search's mask exports to a model whose perplexity is the search's; a weight
 * search runs too (gate-less MLP: only up/down are prunable there).
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { tempDir } from '../checkpoint/helpers.js';
import { runCli } from '../helpers/cli.js';
import { headSearchExportEval, weightsHalf } from '../helpers/familycli.js';
import { byteLevelTokenizerJson, writeGpt2 } from '../helpers/gpt2.js';
import { CALIB, EVAL, skipUnlessShared } from '../shared.js';

const skip = skipUnlessShared(CALIB, EVAL);
const tmp = tempDir('geneprune-families-');
after(tmp.cleanup);

describe('GPT-2 through heads, weights, eval, generate and export', { skip }, () => {
  const model = join(tmp.dir, 'gpt2');
  before(async () => {
    await writeGpt2(model, { embd: 32, heads: 4, layers: 2, inner: 64, vocab: 257, positions: 256 }, 21, {
      bos_token_id: 256,
      eos_token_id: 256,
    });
    writeFileSync(join(model, 'tokenizer.json'), JSON.stringify(byteLevelTokenizerJson()));
  });

  test('a head search exports a model with the search’s perplexity', () => {
    const r = headSearchExportEval(model, tmp.dir);
    assert.ok(Number.isFinite(r.searchEval) && r.searchEval > 1, JSON.stringify(r));
    assert.ok(Math.abs(r.pruned - r.masked) / r.masked < 1e-4, `${r.pruned} vs ${r.masked}`);
    const gen = runCli(['generate', '--model', r.out, '--prompt', 'Once upon', '-n', '8']);
    assert.equal(gen.code, 0, gen.stderr);
  });

  test('a Wanda weight search prunes up and down only (no gate) at the asked sparsity', () => {
    const run = join(tmp.dir, 'weights');
    const result = weightsHalf(model, 'wanda', run);
    // Per layer q, k, v, o (4 × 32 × 32) plus up and down (2 × 64 × 32): no gate in GPT-2's MLP.
    const r = result as {
      prunableWeights: number;
      sparsity: { achieved: number };
      layers: { weights: number }[];
    };
    assert.equal(r.prunableWeights, 2 * (4 * 32 * 32 + 2 * 64 * 32));
    assert.deepEqual(
      r.layers.map((l) => l.weights),
      [8192, 8192],
    );
    assert.equal(r.sparsity.achieved, 0.5);
  });
});
