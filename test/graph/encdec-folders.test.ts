/**
 * Random T5 v1.0 (relu, tied) and v1.1 (gated-gelu, untied) Hugging Face *folders* — written in transformers'
 * layout, then loaded as a user's checkpoint is — against the plain-TypeScript T5 reference (test/reference/t5.ts)
 * on the spec read back: teacher-forced logits to 1e-4 with every head and with heads masked in each stack, and
 * greedy generation through the KV-cache graphs token for token.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { decodeLoopOf, headMaskShape } from '../../src/arch/registry.js';
import { createRunner } from '../../src/engine/runner.js';
import { loadModelSpec } from '../../src/model/load.js';
import { tempDir } from '../checkpoint/helpers.js';
import { writeRandomT5 } from '../helpers/t5.js';
import { t5Reference } from '../reference/t5.js';

const tmp = tempDir('geneprune-t5-folders-');
after(tmp.cleanup);

const int64 = (rows: number[][]) => BigInt64Array.from(rows.flat().map((v) => BigInt(v)));

describe('random T5 folders against the reference forward', () => {
  for (const [i, version] of (['v1.0', 'v1.1'] as const).entries()) {
    it(`${version}: logits (dense and heads masked per stack) and greedy generation`, async () => {
      const dir = join(tmp.dir, version);
      await writeRandomT5(dir, version, 40 + i);
      const spec = await loadModelSpec(dir);
      const c = spec.config;
      assert.equal(c.mlpKind, version === 'v1.0' ? 'plain' : 'gated');
      assert.equal(c.tieEmbeddings, version === 'v1.0');
      const ref = await t5Reference(spec);
      // Two sources, the second right-padded; decoder rows start with the start token.
      const src = [
        [5, 9, 3, 11, 7, 1],
        [6, 4, 1, 0, 0, 0],
      ];
      const mask = src.map((r, b) => r.map((_, t) => (b === 1 && t >= 3 ? 0 : 1)));
      const dec = [
        [0, 12, 8, 3],
        [0, 2, 14, 6],
      ];
      const [rows, maxHeads] = headMaskShape(c);
      const E = c.encdec!.encoderLayers;
      const L = c.numLayers;
      const masks: Array<[string, Float32Array | undefined]> = [['dense', undefined]];
      for (const [name, row] of [
        ['encoder', 0],
        ['decoder', E + 1],
        ['cross', L],
      ] as const) {
        const m = new Float32Array(rows * maxHeads).fill(1);
        m[row * maxHeads + 1] = 0;
        masks.push([`${name} head masked`, m]);
      }
      const runner = await createRunner(spec, { output: 'logits' });
      try {
        for (const [name, headMask] of masks) {
          const got = await runner.run(
            {
              batch: 2,
              seq: 6,
              ids: int64(src),
              attentionMask: int64(mask),
              decoderIds: int64(dec),
              decoderSeq: 4,
            },
            headMask ? { headMask } : undefined,
          );
          const want = ref.decodeLogits(src, mask, dec, headMask);
          let worst = 0;
          for (let b = 0; b < 2; b++)
            for (let t = 0; t < 4; t++)
              for (let v = 0; v < c.vocabSize; v++)
                worst = Math.max(worst, Math.abs(got[(b * 4 + t) * c.vocabSize + v] - want[b][t][v]));
          assert.ok(worst <= 1e-4, `${version} ${name}: largest logit difference ${worst}`);
        }
      } finally {
        await runner.release();
      }
      const gen = await createRunner(spec, { output: 'row_logits' });
      try {
        const sources = [src[0], src[1].slice(0, 3)];
        const out = await decodeLoopOf(c).greedyBatch(gen, sources, {
          maxNewTokens: 8,
          batchSize: 2,
          stopTokens: [c.eosTokenId!],
        });
        const want = ref.greedy(
          sources,
          sources.map((s) => s.map(() => 1)),
          8,
        );
        assert.deepEqual(out.tokens, want);
        // Not a trivial agreement: the rows generate tokens before any stop.
        assert.ok(
          out.tokens.every((t) => t.length >= 3),
          JSON.stringify(out.tokens),
        );
      } finally {
        await gen.release();
      }
    });
  }
});
