/**
 * A tiny language model that needs nothing from ../shared: a hand-made llama2.c tokenizer (control tokens, the
 * 256 byte-fallback tokens, the letters, a space and a few merges) and a seeded random LLaMA over its
 * vocabulary, written as a Hugging Face folder (the tokenizer is passed with --tokenizer).
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeHfFolder } from '../../src/checkpoint/hf.js';
import { llamaSpecToHf } from '../../src/model/llama.js';
import { randomLlamaSpec } from '../../src/model/random.js';
import type { ModelSpec } from '../../src/model/spec.js';

const hex = (b: number) => `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`;

/** (piece, score): ids 0..2 control, 3..258 bytes, then ' ', a–z and merges ranked by score. */
export const TINY_PIECES: [string, number][] = [
  ['<unk>', 0],
  ['\n<s>\n', 0],
  ['\n</s>\n', 0],
  ...Array.from({ length: 256 }, (_, b) => [hex(b), 0] as [string, number]),
  [' ', -100],
  ...Array.from({ length: 26 }, (_, i) => [String.fromCharCode(97 + i), -100] as [string, number]),
  [' a', 3],
  ['ab', 5],
  [' ab', 4],
  ['at', 2],
  [' c', 2],
  [' cat', 1],
  [' d', 2],
  ['og', 2],
  [' dog', 1],
];

/** The tokenizer.bin image: int32 max_token_length, then (float32 score, int32 length, bytes) per piece. */
export function tinyTokenizerBin(pieces: [string, number][] = TINY_PIECES): Buffer {
  const encoded = pieces.map(([p, s]) => [Buffer.from(p, 'latin1'), s] as const);
  const head = Buffer.alloc(4);
  head.writeInt32LE(Math.max(...encoded.map(([b]) => b.length)));
  const parts: Buffer[] = [head];
  for (const [bytes, score] of encoded) {
    const h = Buffer.alloc(8);
    h.writeFloatLE(score, 0);
    h.writeInt32LE(bytes.length, 4);
    parts.push(h, bytes);
  }
  return Buffer.concat(parts);
}

/** A random LLaMA over the tiny vocabulary; scale 20 gives confident, clearly different logits. */
export function tinySpec(seed: number, opts: { maxPositions?: number; scale?: number } = {}): ModelSpec {
  return randomLlamaSpec({
    hiddenSize: 32,
    numLayers: 2,
    numHeads: 4,
    numKvHeads: 2,
    intermediateSize: 48,
    vocabSize: TINY_PIECES.length,
    maxPositions: opts.maxPositions ?? 64,
    seed,
    scale: opts.scale ?? 20,
  });
}

/** Writes `<dir>/model` (HF folder) and `<dir>/tok.bin`; returns their paths and the spec written. */
export async function writeTinyModel(
  dir: string,
  seed: number,
  opts: { maxPositions?: number; scale?: number } = {},
): Promise<{ model: string; tokenizer: string; spec: ModelSpec }> {
  const spec = tinySpec(seed, opts);
  const model = join(dir, 'model');
  const hf = llamaSpecToHf(spec);
  await writeHfFolder(model, { config: hf.config, tensors: hf.tensors });
  const tokenizer = join(dir, 'tok.bin');
  writeFileSync(tokenizer, tinyTokenizerBin());
  return { model, tokenizer, spec };
}
