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
import type { EvaluateResult, HeadSearchResult } from '../../src/index.js';
import { tempDir } from '../checkpoint/helpers.js';
import { type CliResult, runCli } from '../helpers/cli.js';
import { byteLevelTokenizerJson } from '../helpers/gpt2.js';
import { writeQwen3 } from '../helpers/qwen3.js';
import { CALIB, EVAL, sharedPath, skipUnlessShared } from '../shared.js';

const skip = skipUnlessShared(CALIB, EVAL);
const tmp = tempDir('geneprune-cli-qwen3-');
after(tmp.cleanup);

function json<T = Record<string, unknown>>(r: CliResult): T {
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.split('\n').filter((l) => l !== '');
  assert.equal(lines.length, 1, r.stdout);
  return JSON.parse(lines[0]);
}

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
  const data = () => [
    '--calib',
    sharedPath(CALIB)!,
    '--eval',
    sharedPath(EVAL)!,
    '--calib-tokens',
    '1024',
    '--eval-tokens',
    '1024',
  ];
  const ppl = (r: EvaluateResult) => (r as unknown as { perplexity: number }).perplexity;

  test('a head search exports a model with the masked model’s perplexity', () => {
    const run = join(tmp.dir, 'heads');
    const result = json<HeadSearchResult>(
      runCli(
        [
          'heads',
          '--model',
          model,
          ...data(),
          '--target-sparsity',
          '0.25',
          '--population',
          '4',
          '--generations',
          '2',
          '--out',
          run,
          '--json',
        ],
        { timeout: 300_000 },
      ),
    );
    const evalPpl = (result as unknown as { eval: { perplexity: number } }).eval.perplexity;
    assert.ok(Number.isFinite(evalPpl) && evalPpl > 1, JSON.stringify(result));
    const out = join(tmp.dir, 'exported');
    const exported = runCli(['export', '--model', model, '--mask', join(run, 'mask.json'), '--out', out]);
    assert.equal(exported.code, 0, exported.stderr);
    const evalArgs = ['--data', sharedPath(EVAL)!, '--max-tokens', '1024', '--json'];
    const pruned = json<EvaluateResult>(runCli(['eval', '--model', out, ...evalArgs]));
    const masked = json<EvaluateResult>(
      runCli(['eval', '--model', model, '--mask', join(run, 'mask.json'), ...evalArgs]),
    );
    const dense = json<EvaluateResult>(runCli(['eval', '--model', model, ...evalArgs]));
    assert.ok(Math.abs(ppl(pruned) - ppl(masked)) / ppl(masked) < 1e-4, `${ppl(pruned)} vs ${ppl(masked)}`);
    assert.notEqual(ppl(masked), ppl(dense));
  });

  for (const [method, extra] of [
    ['wanda', []],
    ['ga', ['--population', '4', '--generations', '2']],
  ] as Array<[string, string[]]>) {
    test(`weights --method ${method} prunes the linears of every layer, not the q/k norms`, () => {
      const run = join(tmp.dir, `weights-${method}`);
      const r = json<{
        prunableWeights: number;
        sparsity: { achieved: number };
        layers: { weights: number }[];
      }>(
        runCli(
          [
            'weights',
            '--model',
            model,
            ...data(),
            '--method',
            method,
            '--sparsity',
            '0.5',
            ...extra,
            '--out',
            run,
            '--json',
          ],
          { timeout: 300_000 },
        ),
      );
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
