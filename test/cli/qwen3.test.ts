/**
 * The search and export commands on a Qwen3 checkpoint: a small random Qwen3 (GQA, head_dim ≠ hidden/heads, per-head
 * q/k norms) written as a Hugging Face folder with a byte-level BPE tokenizer, searched on the TinyStories
 * calibration split. The head search's mask exports to a model whose perplexity is the masked model's; Wanda and the
 * block-wise GA prune q/k/v/o and the gated MLP (never the q/k norms) at the asked sparsity.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { tempDir } from '../checkpoint/helpers.js';
import { headSearchExportEval, weightsHalf } from '../helpers/familycli.js';
import { byteLevelTokenizerJson } from '../helpers/gpt2.js';
import { writeQwen3 } from '../helpers/qwen3.js';
import { CALIB, EVAL, skipUnlessShared } from '../shared.js';

const skip = skipUnlessShared(CALIB, EVAL);
const tmp = tempDir('geneprune-cli-qwen3-');
after(tmp.cleanup);

// Per layer: q 32×24, k and v 16×24, o 24×32, gate and up 40×24, down 24×40.
const PER_LAYER = 32 * 24 + 2 * 16 * 24 + 24 * 32 + 3 * 40 * 24;

describe('Qwen3 through heads, weights and export', { skip }, () => {
  const model = join(tmp.dir, 'qwen3');
  before(async () => {
    await writeQwen3(
      model,
      { hidden: 24, layers: 2, heads: 4, kvHeads: 2, headDim: 8, inter: 40, vocab: 257 },
      21,
      {
        bos_token_id: 256,
        eos_token_id: 256,
        max_position_embeddings: 256,
      },
    );
    writeFileSync(join(model, 'tokenizer.json'), JSON.stringify(byteLevelTokenizerJson()));
  });

  test('a head search exports a model with the masked model’s perplexity', () => {
    const r = headSearchExportEval(model, tmp.dir);
    assert.ok(Number.isFinite(r.searchEval) && r.searchEval > 1, JSON.stringify(r));
    assert.ok(Math.abs(r.pruned - r.masked) / r.masked < 1e-4, `${r.pruned} vs ${r.masked}`);
    assert.notEqual(r.masked, r.dense);
  });

  for (const [method, extra] of [
    ['wanda', []],
    ['ga', ['--population', '4', '--generations', '2']],
  ] as Array<[string, string[]]>) {
    test(`weights --method ${method} prunes the linears of every layer, not the q/k norms`, () => {
      const run = join(tmp.dir, `weights-${method}`);
      const r = weightsHalf(model, method, run, extra);
      assert.equal(r.prunableWeights, 2 * PER_LAYER);
      assert.deepEqual(
        r.layers.map((l) => l.weights),
        [PER_LAYER, PER_LAYER],
      );
      if (method === 'wanda') assert.equal(r.sparsity.achieved, 0.5);
      else
        assert.ok(r.sparsity.achieved > 0 && r.sparsity.achieved <= 0.5 + 1e-9, JSON.stringify(r.sparsity));
    });
  }
});
