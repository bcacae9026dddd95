/**
 * The encoder-decoder descriptor (arch/encdec.ts) as the code above the graph sees it: three named head stacks in
 * gene order (encoder, decoder, cross) over head_mask rows 0 … E−1, E … L−1, L … L+Dd−1; a genome's mask, a
 * `--prune-heads` list and the runner's feeds all land on those rows; decoders keep their [layers, maxHeads]
 * shape. A physically pruned T5 (fewer heads in some layers, bias columns picked per head) runs and equals the
 * reference, and equals the full model with the removed heads masked.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { headMaskFromList } from '../../src/api/masks.js';
import { archOf, headMaskShape } from '../../src/arch/registry.js';
import { allKeptHeadMask, createRunner } from '../../src/engine/runner.js';
import { geneCount, headLayers, headMaskOf, removedList } from '../../src/masks/heads.js';
import { randomLlamaSpec } from '../../src/model/random.js';
import type { ModelSpec } from '../../src/model/spec.js';
import { randomT5 } from '../helpers/t5.js';
import { pruned } from '../helpers/t5pruned.js';
import { t5Reference } from '../reference/t5.js';

describe('encoder-decoder head stacks', () => {
  const spec = randomT5('v1.0', 31);
  const c = spec.config;

  it('are encoder, decoder, cross in that order, on rows 0…E−1, E…L−1, L…L+Dd−1', () => {
    const stacks = archOf(c).headStacks(c);
    assert.deepEqual(
      stacks.map((s) => [s.name, s.firstMaskRow, [...s.headsPerLayer]]),
      [
        ['encoder', 0, [3, 3]],
        ['decoder', 2, [3, 3]],
        ['cross', 4, [3, 3]],
      ],
    );
    assert.deepEqual(headMaskShape(c), [6, 3]);
    assert.equal(allKeptHeadMask(spec).length, 18);
    assert.equal(geneCount(c), 18);
    assert.deepEqual(
      headLayers(c).map((l) => [l.stack, l.layer, l.row]),
      [
        ['encoder', 0, 0],
        ['encoder', 1, 1],
        ['decoder', 0, 2],
        ['decoder', 1, 3],
        ['cross', 0, 4],
        ['cross', 1, 5],
      ],
    );
  });

  it('a genome, a --prune-heads list and the removed-head names agree on the rows', () => {
    // Genes: encoder 0..5, decoder 6..11, cross 12..17. Drop encoder 1:2, decoder 0:1, cross 1:0.
    const genome = new Uint8Array(18).fill(1);
    for (const gene of [5, 7, 15]) genome[gene] = 0;
    const mask = headMaskOf(c, genome);
    const zeros = [...mask.keys()].filter((i) => mask[i] === 0);
    assert.deepEqual(zeros, [1 * 3 + 2, 2 * 3 + 1, 5 * 3 + 0]);
    assert.deepEqual(removedList(c, genome), ['encoder.1:2', 'decoder.0:1', 'cross.1:0']);
    // The list's layer counts head layers over the stacks: 1 encoder 1, 2 decoder 0, 5 cross 1.
    const listed = headMaskFromList(c, [
      [1, 2],
      [2, 1],
      [5, 0],
    ]);
    assert.deepEqual([...listed], [...mask]);
    assert.throws(
      () => headMaskFromList(c, [[6, 0]]),
      /layer 6 does not exist \(the model has layers 0\.\.5\)/,
    );
  });

  it("leave a decoder's head mask shape as it was: [layers, maxHeads]", () => {
    const llama = randomLlamaSpec({
      hiddenSize: 16,
      numLayers: 3,
      numHeads: 4,
      numKvHeads: 2,
      intermediateSize: 24,
      vocabSize: 32,
      maxPositions: 16,
      seed: 1,
    });
    assert.deepEqual(headMaskShape(llama.config), [3, 4]);
    const m = headMaskFromList(llama.config, [[2, 3]]);
    assert.equal(m.length, 12);
    assert.equal(m[11], 0);
  });

  it('the runner refuses an encoder-decoder batch without decoder ids, and a head mask of the wrong size', async () => {
    const runner = await createRunner(spec, { output: 'logits' });
    try {
      const ids = BigInt64Array.from([5n, 6n, 7n]);
      await assert.rejects(runner.run({ batch: 1, seq: 3, ids }), /needs decoder input ids/);
      const batch = { batch: 1, seq: 3, ids, decoderIds: BigInt64Array.from([0n, 9n]), decoderSeq: 2 };
      assert.equal((await runner.run(batch)).length, 2 * c.vocabSize);
      await assert.rejects(
        runner.run(batch, { headMask: new Float32Array(c.numLayers * 3) }),
        /head mask has 12 entries, model needs 18/,
      );
      await assert.rejects(
        runner.run({ ...batch, decoderIds: BigInt64Array.from([0n, 99n]) }),
        /decoder input id 99 at position 1 is outside the model's vocabulary of 40/,
      );
    } finally {
      await runner.release();
    }
  });
});

describe('a physically pruned encoder-decoder', () => {
  const full = randomT5('v1.1', 32);
  const src = [
    [4, 9, 13, 2, 7],
    [5, 8, 3, 0, 0],
  ];
  const mask = src.map((r, b) => r.map((_, t) => (b === 1 && t >= 3 ? 0 : 1)));
  const dec = [
    [0, 11, 12, 6],
    [0, 3, 3, 9],
  ];
  const int64 = (rows: number[][]) => BigInt64Array.from(rows.flat().map(BigInt));
  const batch = {
    batch: 2,
    seq: 5,
    ids: int64(src),
    attentionMask: int64(mask),
    decoderIds: int64(dec),
    decoderSeq: 4,
  };
  /** The full model's head mask with heads [row, head] removed. */
  const removed = (cells: number[][]) => {
    const m = new Float32Array(18).fill(1);
    for (const [row, h] of cells) m[row * 3 + h] = 0;
    return m;
  };
  const flat = (logits: Float64Array[][]) => logits.flatMap((r) => r.flatMap((p) => [...p]));

  async function worst(spec: ModelSpec, want: ArrayLike<number>[]): Promise<number> {
    const runner = await createRunner(spec, { output: 'logits' });
    try {
      const got = await runner.run(batch);
      let w = 0;
      for (const other of want)
        for (let i = 0; i < got.length; i++) w = Math.max(w, Math.abs(got[i] - other[i]));
      return w;
    } finally {
      await runner.release();
    }
  }

  it('equals the reference and the full model with those heads masked (bias columns picked per head)', async () => {
    // Encoder layer 1 keeps heads 0 and 2 (bias columns 0, 2); decoder layer 3 keeps head 1; cross 1 keeps head 2.
    const spec = await pruned(full, { 1: [0, 2], 3: [1] }, { 1: [2] });
    assert.deepEqual(headMaskShape(spec.config), [6, 3]);
    const headMask = removed([
      [1, 1],
      [3, 0],
      [3, 2],
      [5, 0],
      [5, 1],
    ]);
    const maskedFull = (await t5Reference(full)).decodeLogits(src, mask, dec, headMask);
    const own = (await t5Reference(spec)).decodeLogits(src, mask, dec);
    assert.ok((await worst(spec, [flat(own), flat(maskedFull)])) < 1e-4);
  });

  it('with a headless encoder layer and a headless cross layer equals the full model with them masked', async () => {
    const spec = await pruned(full, { 0: [] }, { 0: [] });
    assert.deepEqual(headMaskShape(spec.config), [6, 3]);
    const headMask = removed([
      [0, 0],
      [0, 1],
      [0, 2],
      [4, 0],
      [4, 1],
      [4, 2],
    ]);
    const maskedFull = (await t5Reference(full)).decodeLogits(src, mask, dec, headMask);
    assert.ok((await worst(spec, [flat(maskedFull)])) < 1e-4);
  });
});
