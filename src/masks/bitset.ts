/**
 * Packed bitsets: one bit per gene or per weight, 32 to a word, so a mask over millions of weights takes an
 * eighth of a byte each and compares, hashes and serialises without a per-bit string.
 *
 * Bit i lives in words[i >>> 5] at bit (i & 31). Bits past `length` are always 0, so two bitsets with the same
 * bits have the same words, bytes, text and key. Serialised bytes are little-endian by bit (byte k holds bits
 * 8k … 8k+7, bit 8k in its lowest place), whatever the machine's byte order.
 *
 * A weight mask is a bitset over one linear's weights in the checkpoint's `[out, in]` layout: bit
 * row · in + col is weight [row, col]; 1 keeps the weight, 0 prunes it.
 */
import { createHash } from 'node:crypto';
import { GenepruneError } from '../errors.js';

export interface Bitset {
  readonly length: number;
  readonly words: Uint32Array;
}

function wordCount(length: number): number {
  return Math.ceil(length / 32);
}

function checkLength(length: number): void {
  if (!Number.isSafeInteger(length) || length < 0) {
    throw new GenepruneError('internal', `bitset length must be a non-negative integer, got ${length}`);
  }
}

/** A bitset of `length` bits, all `fill`. */
export function createBitset(length: number, fill: 0 | 1 = 0): Bitset {
  checkLength(length);
  const words = new Uint32Array(wordCount(length));
  if (fill === 1) {
    words.fill(0xffffffff);
    clearTail(words, length);
  }
  return { length, words };
}

/** Zeroes the bits of the last word past `length` (the invariant every function here keeps). */
function clearTail(words: Uint32Array, length: number): void {
  const used = length & 31;
  if (used !== 0) words[words.length - 1] &= 0xffffffff >>> (32 - used);
}

export function getBit(b: Bitset, i: number): 0 | 1 {
  return ((b.words[i >>> 5] >>> (i & 31)) & 1) as 0 | 1;
}

/** Number of 1 bits. */
export function countOnes(b: Bitset): number {
  let n = 0;
  for (let w = 0; w < b.words.length; w++) {
    let x = b.words[w];
    x -= (x >>> 1) & 0x55555555;
    x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
    n += Math.imul((x + (x >>> 4)) & 0x0f0f0f0f, 0x01010101) >>> 24;
  }
  return n;
}

/** Packs one 0/1 value per element (any non-zero counts as 1). */
export function packBits(values: ArrayLike<number>): Bitset {
  const b = createBitset(values.length);
  for (let i = 0; i < values.length; i++) if (values[i]) b.words[i >>> 5] |= 1 << (i & 31);
  return b;
}

/** One 0/1 byte per bit (the form the engine's boolean weight-mask feeds take). */
export function unpackBits(b: Bitset): Uint8Array {
  const out = new Uint8Array(b.length);
  for (let i = 0; i < b.length; i++) out[i] = (b.words[i >>> 5] >>> (i & 31)) & 1;
  return out;
}

/** One 0/1 byte per bit of bits [from, from + length): a slice of a larger bitset, unpacked. */
export function unpackRange(b: Bitset, from: number, length: number): Uint8Array {
  if (!(from >= 0 && length >= 0 && from + length <= b.length)) {
    throw new GenepruneError('internal', `bits [${from}, ${from + length}) outside [0, ${b.length})`);
  }
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) {
    const j = from + i;
    out[i] = (b.words[j >>> 5] >>> (j & 31)) & 1;
  }
  return out;
}

/** Copies `length` bits of `src` from `srcFrom` into `dst` at `dstFrom` (whole words when both are aligned). */
export function copyBits(src: Bitset, srcFrom: number, dst: Bitset, dstFrom: number, length: number): void {
  if (srcFrom + length > src.length || dstFrom + length > dst.length || srcFrom < 0 || dstFrom < 0) {
    throw new GenepruneError('internal', `cannot copy ${length} bits from ${srcFrom} to ${dstFrom}`);
  }
  let i = 0;
  if ((srcFrom & 31) === 0 && (dstFrom & 31) === 0) {
    const words = length >>> 5;
    dst.words.set(src.words.subarray(srcFrom >>> 5, (srcFrom >>> 5) + words), dstFrom >>> 5);
    i = words * 32;
  }
  for (; i < length; i++) {
    const s = srcFrom + i;
    const d = dstFrom + i;
    if ((src.words[s >>> 5] >>> (s & 31)) & 1) dst.words[d >>> 5] |= 1 << (d & 31);
    else dst.words[d >>> 5] &= ~(1 << (d & 31));
  }
}

/** The bits as ceil(length / 8) bytes, bit 8k + j in bit j of byte k. */
export function bitsetBytes(b: Bitset): Uint8Array {
  const out = new Uint8Array(Math.ceil(b.length / 8));
  for (let k = 0; k < out.length; k++) out[k] = (b.words[k >>> 2] >>> ((k & 3) * 8)) & 0xff;
  return out;
}

/** The inverse of bitsetBytes; refuses a wrong byte count or bits set past `length`. */
export function bitsetFromBytes(bytes: Uint8Array, length: number): Bitset {
  checkLength(length);
  if (bytes.length !== Math.ceil(length / 8)) {
    throw new GenepruneError('data', `${bytes.length} bytes cannot hold exactly ${length} bits`);
  }
  const b = createBitset(length);
  for (let k = 0; k < bytes.length; k++) b.words[k >>> 2] |= bytes[k] << ((k & 3) * 8);
  const tail = b.words.length > 0 ? b.words[b.words.length - 1] : 0;
  clearTail(b.words, length);
  if (b.words.length > 0 && b.words[b.words.length - 1] !== tail) {
    throw new GenepruneError('data', `bits set past the end of a ${length}-bit set`);
  }
  return b;
}

/** Base64 of bitsetBytes: 4 characters per 24 bits, for logs, state files and mask files. */
export function bitsetToBase64(b: Bitset): string {
  return Buffer.from(bitsetBytes(b)).toString('base64');
}

/** The inverse of bitsetToBase64; refuses text that is not canonical base64 of exactly `length` bits. */
export function bitsetFromBase64(text: string, length: number): Bitset {
  const bytes = Buffer.from(text, 'base64');
  // Buffer skips characters it does not know: only a text that re-encodes to itself was valid base64.
  if (bytes.toString('base64') !== text) throw new GenepruneError('data', 'bitset text is not base64');
  return bitsetFromBytes(new Uint8Array(bytes), length);
}

/**
 * A fixed-size cache key: sha256 over the length and the bytes (base64url). Two bitsets share a key only when
 * their bits are equal (short of a sha256 collision), whatever their size.
 */
export function bitsetKey(b: Bitset): string {
  const h = createHash('sha256');
  h.update(`${b.length}:`);
  h.update(bitsetBytes(b));
  return h.digest('base64url');
}
