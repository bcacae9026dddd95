/** Packed bitsets against a plain one-byte-per-bit reference, with seeded random contents. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  bitsetBytes,
  bitsetFromBase64,
  bitsetFromBytes,
  bitsetKey,
  bitsetToBase64,
  countOnes,
  createBitset,
  getBit,
  packBits,
  unpackBits,
} from '../../src/masks/bitset.js';
import { createRng } from '../../src/util/rng.js';

/** Lengths around every word and byte boundary, and one large enough to span many words. */
const LENGTHS = [0, 1, 7, 8, 9, 31, 32, 33, 63, 64, 65, 100, 1000, 4097];

function randomBits(n: number, seed: number, density = 0.5): Uint8Array {
  const rng = createRng(seed);
  return Uint8Array.from({ length: n }, () => (rng.nextFloat() < density ? 1 : 0));
}

describe('bitset', () => {
  test('pack then unpack gives back the plain bits, bit i read by getBit', () => {
    for (const n of LENGTHS) {
      for (const density of [0, 0.1, 0.5, 1]) {
        const plain = randomBits(n, n + 17, density);
        const b = packBits(plain);
        assert.equal(b.length, n);
        assert.equal(b.words.length, Math.ceil(n / 32));
        assert.deepEqual(unpackBits(b), plain);
        for (let i = 0; i < n; i++) assert.equal(getBit(b, i), plain[i]);
        assert.equal(
          countOnes(b),
          plain.reduce((a, x) => a + x, 0),
        );
      }
    }
  });

  test('bits past the length stay 0, so equal bits mean equal words', () => {
    for (const n of LENGTHS) {
      const full = createBitset(n, 1);
      assert.equal(countOnes(full), n);
      assert.deepEqual(full.words, packBits(new Uint8Array(n).fill(1)).words);
    }
  });

  test('bytes are little-endian by bit, whatever the machine', () => {
    const b = packBits([1, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    assert.deepEqual([...bitsetBytes(b)], [1, 2]);
    for (const n of LENGTHS) {
      const plain = randomBits(n, 3 * n + 1);
      const bytes = bitsetBytes(packBits(plain));
      assert.equal(bytes.length, Math.ceil(n / 8));
      for (let i = 0; i < n; i++) assert.equal((bytes[i >> 3] >> (i & 7)) & 1, plain[i]);
      assert.deepEqual(unpackBits(bitsetFromBytes(bytes, n)), plain);
    }
  });

  test('base64 round trip, and malformed text refused', () => {
    for (const n of LENGTHS) {
      const plain = randomBits(n, 2 * n + 9);
      const text = bitsetToBase64(packBits(plain));
      assert.equal(text.length, 4 * Math.ceil(Math.ceil(n / 8) / 3));
      assert.deepEqual(unpackBits(bitsetFromBase64(text, n)), plain);
    }
    const text = bitsetToBase64(packBits(randomBits(100, 1)));
    assert.throws(() => bitsetFromBase64(text, 99 - 8)); // wrong byte count
    assert.throws(() => bitsetFromBase64(`${text.slice(0, -2)}!=`, 100)); // not base64
    // 9 bits in 2 bytes: a bit set past the 9th is refused rather than dropped.
    assert.throws(() => bitsetFromBase64(Buffer.from([0, 2]).toString('base64'), 9));
    assert.deepEqual([...unpackBits(bitsetFromBase64(Buffer.from([0, 1]).toString('base64'), 9))].at(-1), 1);
  });

  test('keys are equal exactly when the bits are, and do not grow with the bitset', () => {
    const plain = randomBits(100_000, 8);
    const a = packBits(plain);
    assert.equal(bitsetKey(a), bitsetKey(packBits(plain.slice())));
    const flipped = plain.slice();
    flipped[99_999] ^= 1;
    assert.notEqual(bitsetKey(a), bitsetKey(packBits(flipped)));
    assert.equal(bitsetKey(a).length, 43);
    // The length is part of the key: 8 zero bits and 5 zero bits share their one byte.
    assert.notEqual(bitsetKey(createBitset(8)), bitsetKey(createBitset(5)));
  });
});
