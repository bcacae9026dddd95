/**
 * The search, evaluation and export commands on a Phi-3 checkpoint: a small random Phi-3 (GQA, partial rotary,
 * LongRoPE with an original context of 32, shorter than the 64-token windows, so every window runs the long
 * factors) written as a Hugging Face folder with a byte-level BPE tokenizer, searched on the TinyStories
 * calibration split. The head search's mask exports to a model whose perplexity is the masked model's; Wanda and
 * the block-wise GA seeded with Wanda's mask (ga-wanda) prune q, k, v, o, gate, up and down at the asked sparsity,
 * and the weight mask exports to fused tensors holding the masked weights' zeros.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { openHfFolder } from '../../src/checkpoint/hf.js';
import { tempDir } from '../checkpoint/helpers.js';
import { runCli } from '../helpers/cli.js';
import { headSearchExportEval, weightsHalf } from '../helpers/familycli.js';
import { byteLevelTokenizerJson } from '../helpers/gpt2.js';
import { longropeScaling, writePhi3 } from '../helpers/phi3.js';
import { CALIB, EVAL, skipUnlessShared } from '../shared.js';

const skip = skipUnlessShared(CALIB, EVAL);
const tmp = tempDir('geneprune-cli-phi3-');
after(tmp.cleanup);

const D = 32;
const I = 48;
const HD = 8;

describe('Phi-3 through heads, weights, eval and export', { skip }, () => {
  const model = join(tmp.dir, 'phi3');
  before(async () => {
    await writePhi3(
      model,
      { hidden: D, layers: 2, heads: 4, kvHeads: 2, headDim: HD, inter: I, vocab: 257, maxPositions: 128 },
      31,
      {
        bos_token_id: 256,
        eos_token_id: 256,
        partial_rotary_factor: 0.75,
        original_max_position_embeddings: 32,
        rope_scaling: longropeScaling(6, 31),
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

  for (const method of ['wanda', 'ga-wanda']) {
    test(`a ${method} weight search prunes q, k, v, o, gate, up and down at the asked sparsity; its export writes the zeros into the fused tensors`, async () => {
      const run = join(tmp.dir, `weights-${method}`);
      const searchArgs = method === 'ga-wanda' ? ['--population', '4', '--generations', '1'] : [];
      const result = weightsHalf(model, method, run, searchArgs);
      const r = result as {
        prunableWeights: number;
        sparsity: { achieved: number };
        layers: { weights: number }[];
      };
      // Per layer q (32·32), k and v (16·32 each), o (32·32), gate, up and down (48·32 each).
      const perLayer = 4 * HD * D + 2 * 2 * HD * D + 4 * HD * D + 3 * I * D;
      assert.equal(r.prunableWeights, 2 * perLayer);
      assert.deepEqual(
        r.layers.map((l) => l.weights),
        [perLayer, perLayer],
      );
      assert.ok(Math.abs(r.sparsity.achieved - 0.5) < 0.01, JSON.stringify(r.sparsity));
      const out = join(tmp.dir, `weights-${method}-out`);
      const exported = runCli([
        'export',
        '--model',
        model,
        '--weight-mask',
        join(run, 'weight-mask.safetensors'),
        '--out',
        out,
        '--format',
        'hf',
      ]);
      assert.equal(exported.code, 0, exported.stderr);
      // The fused tensors carry the zeros of their parts (the random weights have none of their own): Wanda keeps
      // exactly half of every row, the GA's blocks keep the seed's count, about half per tensor.
      const folder = await openHfFolder(out);
      for (const name of [
        'model.layers.0.self_attn.qkv_proj.weight',
        'model.layers.1.mlp.gate_up_proj.weight',
      ]) {
        const data = await folder.tensors.get(name)!.load();
        const zeros = data.reduce((n, x) => n + (x === 0 ? 1 : 0), 0) / data.length;
        if (method === 'wanda') assert.equal(zeros, 0.5, name);
        else assert.ok(zeros > 0.3 && zeros < 0.7, `${name}: ${zeros} zeros`);
      }
    });
  }
});
