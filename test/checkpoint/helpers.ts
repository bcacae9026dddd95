/** Shared test plumbing for checkpoint and model tests: temp folders and typed-error assertions. */
import assert from 'node:assert/strict';
import {
  chmodSync,
  closeSync,
  copyFileSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readlinkSync,
  rmSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { GenepruneError } from '../../src/errors.js';

/** A fresh temp folder and a function that removes it. */
export function tempDir(prefix = 'geneprune-test-'): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Asserts `work` rejects with a file GenepruneError at `where` whose message matches `pattern`. */
export async function rejectsFileError(
  work: Promise<unknown> | (() => unknown),
  where: string,
  pattern: RegExp,
): Promise<GenepruneError> {
  let caught: unknown;
  try {
    await (typeof work === 'function' ? work() : work);
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof GenepruneError, `expected a GenepruneError, got ${String(caught)}`);
  assert.equal(caught.kind, 'file');
  assert.equal(caught.where, where);
  assert.match(caught.message, pattern);
  return caught;
}

/** Open file descriptors of this process (Linux), to check that lazy reads do not leak them. */
/**
 * Descriptors this process holds open on `path` (undefined where /proc is absent). Counted per file, not in all:
 * the runtime opens and closes descriptors of its own meanwhile (Node 24 closed one during the test).
 */
export function openFdCount(path: string): number | undefined {
  let entries: string[];
  try {
    entries = readdirSync('/proc/self/fd');
  } catch {
    return undefined;
  }
  const target = resolve(path);
  let n = 0;
  for (const fd of entries) {
    try {
      if (readlinkSync(join('/proc/self/fd', fd)) === target) n++;
    } catch {
      // Closed between the listing and the look-up.
    }
  }
  return n;
}

/** A little-endian buffer of float32 values. */
export function f32Bytes(values: ArrayLike<number>): Buffer {
  const b = Buffer.alloc(values.length * 4);
  for (let i = 0; i < values.length; i++) b.writeFloatLE(values[i], i * 4);
  return b;
}

/** A little-endian buffer of uint16 values. */
export function u16Bytes(values: ArrayLike<number>): Buffer {
  const b = Buffer.alloc(values.length * 2);
  for (let i = 0; i < values.length; i++) b.writeUInt16LE(values[i], i * 2);
  return b;
}

/** Header of the tiny llama2.c checkpoints the tests build by hand: head size 4, GQA 2:1. */
export const TINY_L2C = { dim: 8, hidden: 12, layers: 2, heads: 2, kvHeads: 1, vocab: 5, seqLen: 4 };

/**
 * The tensor blocks of TINY_L2C in each format's file order, written out by hand from llama2.c's run.c
 * (legacy) and export.py (version 1): [name, element count].
 */
export function tinyL2cBlocks(format: 'legacy' | 'v1', untied: boolean): Array<[string, number]> {
  const { dim: D, hidden: H, layers: L, vocab: V, seqLen: S } = TINY_L2C;
  const kv = 4; // kvHeads × head size
  if (format === 'legacy') {
    const blocks: Array<[string, number]> = [
      ['token_embedding_table', V * D],
      ['rms_att_weight', L * D],
      ['wq', L * D * D],
      ['wk', L * kv * D],
      ['wv', L * kv * D],
      ['wo', L * D * D],
      ['rms_ffn_weight', L * D],
      ['w1', L * H * D],
      ['w2', L * D * H],
      ['w3', L * H * D],
      ['rms_final_weight', D],
      ['freq_cis_real', S * 2],
      ['freq_cis_imag', S * 2],
    ];
    return untied ? [...blocks, ['wcls', V * D]] : blocks;
  }
  const blocks: Array<[string, number]> = [
    ['rms_att_weight', L * D],
    ['rms_ffn_weight', L * D],
    ['rms_final_weight', D],
    ['token_embedding_table', V * D],
    ['wq', L * D * D],
    ['wk', L * kv * D],
    ['wv', L * kv * D],
    ['wo', L * D * D],
    ['w1', L * H * D],
    ['w2', L * D * H],
    ['w3', L * H * D],
  ];
  return untied ? [...blocks, ['wcls', V * D]] : blocks;
}

/** Value of element `i` of block `k`: every float in a hand-built file says where it came from. */
export const blockValue = (k: number, i: number) => k * 10000 + i;

/** Bytes of a tiny llama2.c checkpoint built with Buffer ops (not with our writer). */
export function tinyL2cBytes(format: 'legacy' | 'v1', untied: boolean): Buffer {
  const t = TINY_L2C;
  let header: Buffer;
  if (format === 'legacy') {
    header = Buffer.from(
      new Int32Array([t.dim, t.hidden, t.layers, t.heads, t.kvHeads, untied ? -t.vocab : t.vocab, t.seqLen])
        .buffer,
    );
  } else {
    header = Buffer.alloc(256);
    header.writeUInt32LE(0x616b3432, 0);
    header.writeInt32LE(1, 4);
    const ints = [t.dim, t.hidden, t.layers, t.heads, t.kvHeads, t.vocab, t.seqLen];
    for (let i = 0; i < ints.length; i++) header.writeInt32LE(ints[i], 8 + 4 * i);
    header.writeUInt8(untied ? 0 : 1, 36);
  }
  const blocks = tinyL2cBlocks(format, untied).map(([, n], k) =>
    f32Bytes(Array.from({ length: n }, (_, i) => blockValue(k, i))),
  );
  return Buffer.concat([header, ...blocks]);
}

/** Copies a checkpoint to `dest` (writable) and overwrites the fp32 at byte `offset` with `value`. */
export function pokedCheckpoint(source: string, dest: string, offset: number, value: number): string {
  copyFileSync(source, dest);
  chmodSync(dest, 0o644);
  const bytes = Buffer.alloc(4);
  bytes.writeFloatLE(value, 0);
  const fd = openSync(dest, 'r+');
  try {
    writeSync(fd, bytes, 0, 4, offset);
  } finally {
    closeSync(fd);
  }
  return dest;
}
