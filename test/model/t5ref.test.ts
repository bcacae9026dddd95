/**
 * The plain T5 reference forward (test/reference/t5.ts) against properties that follow from the T5 definition and
 * not from the code under test: hand-computed relative-position buckets, a masked head equal to that head's output
 * columns zeroed, source padding that changes nothing, teacher forcing consistent with greedy decoding. Its numbers
 * are checked against the trained codet5-tiny's published NLL and outputs in t5.test.ts.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { randomT5Spec } from '../../src/model/random.js';
import { type ModelSpec, memoryTensor } from '../../src/model/spec.js';
import { relativeBucket, t5Reference } from '../reference/t5.js';

const SIZES = {
  hiddenSize: 16,
  headDim: 4,
  numHeads: 3,
  intermediateSize: 24,
  encoderLayers: 2,
  decoderLayers: 2,
};
const BUCKETS = { relativeBuckets: 8, relativeMaxDistance: 12 };
const spec10 = () => randomT5Spec({ ...SIZES, ...BUCKETS, vocabSize: 40, seed: 7, scale: 20 });
const spec11 = () =>
  randomT5Spec({ ...SIZES, ...BUCKETS, vocabSize: 40, seed: 8, scale: 20, feedForward: 'gated-gelu' });
const specSilu = () =>
  randomT5Spec({ ...SIZES, ...BUCKETS, vocabSize: 40, seed: 9, scale: 20, feedForward: 'gated-silu' });

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

describe('T5 relative position buckets', () => {
  it('match values worked out by hand from the definition (32 buckets, max distance 128)', () => {
    // Bidirectional: 16 per direction, 8 exact; keys after the query in 16..31.
    const bi = (r: number) => relativeBucket(r, true, 32, 128);
    assert.deepEqual([0, -1, -7, 1, 7].map(bi), [0, 1, 7, 17, 23]);
    // dist 8 → 8 + trunc(log(1)·…) = 8; dist 16 → 8 + trunc(log 2 / log 16 · 8) = 10; dist 127 → 8 + trunc(7.98) = 15.
    assert.deepEqual([-8, -16, -127, -128, -5000].map(bi), [8, 10, 15, 15, 15]);
    assert.deepEqual([8, 16, 127, 5000].map(bi), [24, 26, 31, 31]);
    // dist 11: 8 + trunc(log(11/8)/log(16)·8) = 8 + trunc(0.919) = 8; dist 12: log(1.5)/log(16)·8 = 1.17 → 9.
    assert.deepEqual([-11, -12].map(bi), [8, 9]);
    // Causal: 32 buckets, 16 exact, only rel ≤ 0 counts; dist 32 → 16 + trunc(log 2 / log 8 · 16) = 21.
    const ca = (r: number) => relativeBucket(r, false, 32, 128);
    assert.deepEqual(
      [0, 3, -1, -15, -16, -32, -64, -127, -128, -999].map(ca),
      [0, 0, 1, 15, 16, 21, 26, 31, 31, 31],
    );
  });
});

describe('T5 reference forward', () => {
  for (const [name, make] of [
    ['v1.0 relu tied', spec10],
    ['v1.1 gated-gelu untied', spec11],
    ['gated-silu untied', specSilu],
  ] as const) {
    it(`${name}: a masked head equals its output columns zeroed in o`, async () => {
      const spec = make();
      const c = spec.config;
      const ref = await t5Reference(spec);
      const src = [[5, 9, 3, 12, 1]];
      const mask = [[1, 1, 1, 1, 1]];
      const dec = [[0, 7, 8, 2]];
      const rows = c.numLayers + 2;
      const plain = ref.decodeLogits(src, mask, dec)[0];
      // Rows of the contract: 1 = encoder self layer 1, 2 = decoder self layer 2 (decoder block 0), 5 = cross of
      // decoder block 1 (layer 3).
      for (const [row, role] of [
        [1, 'layers.1.attn.o.weight'],
        [2, 'layers.2.attn.o.weight'],
        [5, 'layers.3.cross.o.weight'],
      ] as const) {
        const hm = new Float32Array(rows * 3).fill(1);
        hm[row * 3 + 1] = 0;
        const masked = ref.decodeLogits(src, mask, dec, hm)[0];
        const source = spec.tensors.get(role);
        assert.ok(source);
        const cut = (await source.load()).slice();
        for (let r = 0; r < c.hiddenSize; r++) for (let d = 4; d < 8; d++) cut[r * 12 + d] = 0;
        const edited: ModelSpec = { ...spec, tensors: new Map(spec.tensors) };
        edited.tensors.set(role, memoryTensor([c.hiddenSize, 12], cut));
        const zeroed = (await t5Reference(edited)).decodeLogits(src, mask, dec)[0];
        for (let t = 0; t < dec[0].length; t++) {
          assert.ok(maxDiff(masked[t], zeroed[t]) < 1e-12, `row ${row} position ${t}`);
        }
        assert.ok(maxDiff(masked[3], plain[3]) > 1e-3, `masking row ${row} must change the logits`);
      }
    });

    it(`${name}: source padding changes nothing, and greedy equals the argmax of teacher forcing`, async () => {
      const ref = await t5Reference(make());
      const src = [
        [5, 9, 3, 12, 1],
        [5, 9, 3, 12, 1, 0, 0, 0],
      ];
      const mask = [
        [1, 1, 1, 1, 1],
        [1, 1, 1, 1, 1, 0, 0, 0],
      ];
      const enc = ref.encode(src, mask);
      for (let t = 0; t < 5; t++) assert.ok(maxDiff(enc[0][t], enc[1][t]) < 1e-12);
      const gen = ref.greedy(src, mask, 6);
      assert.deepEqual(gen[0], gen[1]);
      const logits = ref.decodeLogits([src[0]], [mask[0]], [[0, ...gen[0]]])[0];
      for (let t = 0; t < gen[0].length; t++) {
        let best = 0;
        for (let v = 1; v < logits[t].length; v++) if (logits[t][v] > logits[t][best]) best = v;
        assert.equal(best, gen[0][t]);
      }
      // Unmasked padding does change the output: the mask is honoured, not ignored.
      const unmasked = ref.encode([src[1]], [[1, 1, 1, 1, 1, 1, 1, 1]]);
      assert.ok(maxDiff(unmasked[0][0], enc[0][0]) > 1e-6);
    });
  }
});
