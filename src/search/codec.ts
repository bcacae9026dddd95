/**
 * Genome codecs. Two ways to write a genome of bits:
 * - `bitStringCodec`: one '0'/'1' character per gene, the text head runs have always logged (readable, and
 *   fine for tens of genes); the text is its own cache key.
 * - `packedCodec`: a packed bitset written as base64 (6 bits per character), keyed by a fixed-size sha256, for
 *   genomes of millions of bits (one bit per weight), where a character per bit in every cache key and log line
 *   would cost megabytes each.
 */
import { type Bitset, bitsetFromBase64, bitsetKey, bitsetToBase64 } from '../masks/bitset.js';
import type { GenomeCodec } from './space.js';

/** The genes as a 0/1 string: an exact key, and the genome text of head-search logs. */
export function genomeKey(g: Uint8Array): string {
  let s = '';
  for (let i = 0; i < g.length; i++) s += g[i] ? '1' : '0';
  return s;
}

export function genomeFromKey(key: string): Uint8Array {
  return Uint8Array.from(key, (ch) => (ch === '1' ? 1 : 0));
}

/** One byte per gene, written as '0'/'1' characters; decode refuses other characters and other lengths. */
export function bitStringCodec(genes: number): GenomeCodec<Uint8Array> {
  return {
    encode: genomeKey,
    decode: (text) => (text.length === genes && /^[01]*$/.test(text) ? genomeFromKey(text) : undefined),
    key: genomeKey,
  };
}

/** Packed bitsets of `genes` bits, written as base64 and keyed by sha256; decode refuses anything else. */
export function packedCodec(genes: number): GenomeCodec<Bitset> {
  return {
    encode: bitsetToBase64,
    decode: (text) => {
      try {
        return bitsetFromBase64(text, genes);
      } catch {
        return undefined;
      }
    },
    key: bitsetKey,
  };
}
