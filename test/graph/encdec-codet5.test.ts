/**
 * The encoder-decoder graphs on the shared trained codet5-tiny (T5 v1.0 layout, loaded by the T5 loader) with
 * its own eval problems in the README's format (source `<s> text </s>`, labels `code </s>`, decoder input
 * `[0] + labels[:-1]`): the teacher-forced 'nll' graph gives the README's dense NLL/token of the reference code,
 * and greedy generation on the encoder + KV-cache graphs equals the plain reference's greedy decoding token for
 * token — dense on every problem, and with heads masked in each of the three stacks on some — and reproduces the
 * reference code as often as the README's scores imply.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { decodeLoopOf, headMaskShape } from '../../src/arch/registry.js';
import { createRunner, IGNORE_INDEX } from '../../src/engine/runner.js';
import { loadModelSpec } from '../../src/model/load.js';
import { loadTokenizer } from '../../src/tokenizer/load.js';
import { t5Reference } from '../reference/t5.js';
import { sharedPath, skipUnlessShared } from '../shared.js';

const CODET5 = 'models/codet5-tiny';
const EVAL = 'data/codegen/eval.jsonl';

describe('encoder-decoder graphs on codet5-tiny', { skip: skipUnlessShared(CODET5, EVAL) }, async () => {
  const dir = sharedPath(CODET5)!;
  const spec = await loadModelSpec(dir);
  const tok = await loadTokenizer(join(dir, 'tokenizer.json'));
  const rows = readFileSync(sharedPath(EVAL)!, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { text: string; code: string });
  const sources = rows.map((r) => tok.encodeInput(r.text).ids);
  const labels = rows.map((r) => [...tok.encode(r.code, { bos: false, eos: false }), 2]);

  it("'nll' gives the README's NLL/token of the reference code on all 200 eval problems (0.00438)", async () => {
    const runner = await createRunner(spec, { output: 'nll' });
    let sum = 0;
    let count = 0;
    try {
      for (let at = 0; at < rows.length; at += 25) {
        const src = sources.slice(at, at + 25);
        const lab = labels.slice(at, at + 25);
        const B = src.length;
        const S = Math.max(...src.map((s) => s.length));
        const T = Math.max(...lab.map((l) => l.length));
        const ids = new BigInt64Array(B * S);
        const attentionMask = new BigInt64Array(B * S);
        const decoderIds = new BigInt64Array(B * T);
        const targets = new BigInt64Array(B * T).fill(BigInt(IGNORE_INDEX));
        src.forEach((s, b) => {
          s.forEach((id, t) => {
            ids[b * S + t] = BigInt(id);
            attentionMask[b * S + t] = 1n;
          });
          lab[b].forEach((id, t) => {
            decoderIds[b * T + t] = BigInt(t === 0 ? 0 : lab[b][t - 1]);
            targets[b * T + t] = BigInt(id);
          });
        });
        const nll = await runner.run({
          batch: B,
          seq: S,
          ids,
          attentionMask,
          decoderIds,
          decoderSeq: T,
          targets,
        });
        for (let i = 0; i < nll.length; i++) sum += nll[i];
        count += lab.reduce((n, l) => n + l.length, 0);
      }
    } finally {
      await runner.release();
    }
    // README: 0.00438, printed to 5 decimals; fp32 sums stay far inside the half-unit.
    assert.ok(Math.abs(sum / count - 0.00438) <= 5e-6, `NLL/token ${sum / count}`);
  });

  it("greedy on the KV-cache graphs equals the reference's, dense and with heads masked in each stack", async () => {
    const runner = await createRunner(spec, { output: 'row_logits' });
    const loop = decodeLoopOf(spec.config);
    const eos = spec.config.eosTokenId!;
    const ref = await t5Reference(spec);
    const refGreedy = (idx: number[], headMask?: Float32Array) => {
      const src = idx.map((i) => sources[i]);
      const S = Math.max(...src.map((s) => s.length));
      return ref.greedy(
        src.map((s) => [...s, ...Array(S - s.length).fill(0)]),
        src.map((s) => Array.from({ length: S }, (_, t) => (t < s.length ? 1 : 0))),
        64,
        headMask,
      );
    };
    try {
      const dense = await loop.greedyBatch(runner, sources, {
        maxNewTokens: 64,
        batchSize: 16,
        stopTokens: [eos],
      });
      // The README's greedy scores (pass@1 194/200, sentence BLEU 0.9867) mean nearly every output is the code.
      const exact = dense.tokens.filter((t, i) => tok.decode(t) === rows[i].code).length;
      assert.ok(exact >= 190, `${exact}/200 greedy outputs equal the reference code`);
      const some = Array.from({ length: 24 }, (_, k) => k * 8);
      assert.deepEqual(
        some.map((i) => dense.tokens[i]),
        refGreedy(some),
      );
      const [maskRows, maxHeads] = headMaskShape(spec.config);
      const few = some.slice(0, 8);
      // One head of each stack: encoder layer 0 head 1, decoder layer 4 head 2, cross of decoder block 1 head 0;
      // and a whole cross layer.
      for (const cells of [
        [
          [0, 1],
          [4, 2],
          [7, 0],
        ],
        [
          [6, 0],
          [6, 1],
          [6, 2],
          [6, 3],
        ],
      ]) {
        const headMask = new Float32Array(maskRows * maxHeads).fill(1);
        for (const [r, h] of cells) headMask[r * maxHeads + h] = 0;
        const got = await loop.greedyBatch(
          runner,
          few.map((i) => sources[i]),
          { maxNewTokens: 64, batchSize: 8, masks: { headMask }, stopTokens: [eos] },
        );
        assert.deepEqual(got.tokens, refGreedy(few, headMask), JSON.stringify(cells));
      }
    } finally {
      await runner.release();
    }
  });
});
