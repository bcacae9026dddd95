/**
 * A small seeded PRNG (xoshiro128**, 32-bit state words so it stays in fast integer arithmetic). Every random
 * choice in the project takes an Rng that the caller created from a seed; nothing calls Math.random.
 */
import { GenepruneError } from '../errors.js';

export interface Rng {
  /** Uniform integer in [0, 2^32). */
  nextUint32(): number;
  /** Uniform float in [0, 1) with 32 random bits. */
  nextFloat(): number;
  /** Uniform integer in [0, n), n ≤ 2^32, without modulo bias. */
  nextInt(n: number): number;
  /** The four state words, to save a run and resume it exactly. */
  getState(): [number, number, number, number];
  setState(state: readonly number[]): void;
}

/** splitmix32: spreads a small seed over the whole state so nearby seeds give unrelated streams. */
function splitmix32(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return (z ^ (z >>> 16)) >>> 0;
  };
}

export function createRng(seed: number): Rng {
  // A fraction or a value past 2^53 would be rounded to some other seed without a word: refuse instead.
  if (!Number.isSafeInteger(seed)) {
    throw new GenepruneError(
      'flag',
      `must be an integer in ±${Number.MAX_SAFE_INTEGER}, got ${seed}`,
      'seed',
    );
  }
  const mix = splitmix32(Math.floor(seed) ^ Math.floor(seed / 2 ** 32));
  let a = mix();
  let b = mix();
  let c = mix();
  let d = mix();
  if ((a | b | c | d) === 0) a = 1; // the all-zero state is a fixed point

  const nextUint32 = (): number => {
    const result = Math.imul(rotl(Math.imul(b, 5), 7), 9) >>> 0;
    const t = b << 9;
    c ^= a;
    d ^= b;
    b ^= c;
    a ^= d;
    c ^= t;
    d = rotl(d, 11);
    return result;
  };

  return {
    nextUint32,
    nextFloat: () => nextUint32() / 4294967296,
    nextInt(n: number): number {
      if (!(n >= 1 && n <= 4294967296 && Number.isInteger(n))) throw new Error(`nextInt: bad bound ${n}`);
      // Reject the top sliver of the range that would make low values more likely.
      const limit = 4294967296 - (4294967296 % n);
      for (;;) {
        const x = nextUint32();
        if (x < limit) return x % n;
      }
    },
    getState: () => [a >>> 0, b >>> 0, c >>> 0, d >>> 0],
    setState(state: readonly number[]): void {
      if (state.length !== 4 || state.every((w) => (w | 0) === 0))
        throw new Error('setState: need 4 words, not all zero');
      [a, b, c, d] = state.map((w) => w | 0);
    },
  };
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}
