/** Genome codecs: what a run writes for a genome reads back as the same genome, and nothing else reads back. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { countOnes, packBits, unpackBits } from '../../src/masks/bitset.js';
import { bitStringCodec, genomeKey, packedCodec } from '../../src/search/codec.js';
import { createRng } from '../../src/util/rng.js';

function randomBits(n: number, seed: number): Uint8Array {
  const rng = createRng(seed);
  return Uint8Array.from({ length: n }, () => (rng.nextFloat() < 0.3 ? 0 : 1));
}

describe('bitStringCodec (head runs)', () => {
  test('writes one 0/1 character per gene, the text head-run logs have always held, and reads it back', () => {
    const codec = bitStringCodec(6);
    const g = Uint8Array.from([1, 0, 1, 1, 0, 1]);
    assert.equal(codec.encode(g), '101101');
    assert.equal(codec.key(g), '101101');
    assert.deepEqual(codec.decode('101101'), g);
    for (let seed = 0; seed < 20; seed++) {
      const c = bitStringCodec(40);
      const x = randomBits(40, seed);
      assert.deepEqual(c.decode(c.encode(x)), x);
      assert.equal(c.encode(x), genomeKey(x));
    }
  });

  test('refuses other lengths and other characters', () => {
    const codec = bitStringCodec(4);
    for (const bad of ['', '101', '10110', '10a1', '1 01', '10-1'])
      assert.equal(codec.decode(bad), undefined);
  });
});

describe('packedCodec (genomes of one bit per weight)', () => {
  test('round trip at sizes around word and byte boundaries, up to a million bits', () => {
    for (const n of [1, 7, 8, 31, 32, 33, 1000, 1_000_003]) {
      const codec = packedCodec(n);
      const plain = randomBits(n, n);
      const g = packBits(plain);
      const text = codec.encode(g);
      // 6 bits per character, not one character per bit.
      assert.ok(text.length <= Math.ceil(n / 6) + 4, `${n} bits took ${text.length} characters`);
      const back = codec.decode(text);
      assert.ok(back);
      assert.deepEqual(unpackBits(back), plain);
      assert.equal(countOnes(back), countOnes(g));
      assert.equal(codec.key(back), codec.key(g));
    }
  });

  test('keys are fixed-size and tell genomes apart; malformed text is refused', () => {
    const codec = packedCodec(1000);
    const a = randomBits(1000, 1);
    const b = a.slice();
    b[999] ^= 1;
    assert.notEqual(codec.key(packBits(a)), codec.key(packBits(b)));
    assert.equal(codec.key(packBits(a)).length, codec.key(packBits(b)).length);
    assert.equal(codec.decode('not base64!'), undefined);
    assert.equal(codec.decode(packedCodec(999).encode(packBits(a.slice(0, 992)))), undefined);
  });
});
