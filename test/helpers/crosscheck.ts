/**
 * The setup the two dev-time cross-checks against Python transformers (test/crosscheck/hf-export.ts and
 * structured-export.ts) share: the emptied output folder, the random source decoders of each family they export —
 * written as Hugging Face folders and loaded back, so the export starts from what a user's folder gives — the token
 * rows they feed, and case.json, the record hf_export.py reads for each exported folder.
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { writeHfFolder } from '../../src/checkpoint/hf.js';
import { llamaSpecToHf } from '../../src/model/llama.js';
import { loadModelSpec } from '../../src/model/load.js';
import { type RandomLlamaOptions, randomLlamaSpec } from '../../src/model/random.js';
import type { ModelSpec } from '../../src/model/spec.js';
import type { HfLayout } from '../../src/prune/export.js';
import { createRng } from '../../src/util/rng.js';
import { writeGemma } from './gemma.js';
import { writeGpt2 } from './gpt2.js';
import { writeOpt } from './opt.js';
import { writePhi3 } from './phi3.js';
import { writeQwen3 } from './qwen3.js';

/** The folder `out` resolved and emptied, and `.sources` inside it for the source models (removed at the end). */
export function crosscheckOut(out: string): { OUT: string; sources: string } {
  const OUT = resolve(out);
  rmSync(OUT, { recursive: true, force: true });
  mkdirSync(OUT, { recursive: true });
  return { OUT, sources: join(OUT, '.sources') };
}

/** `rows` rows of `seq` token ids drawn from [low, vocab) by `seed`'s stream. */
export function randomIds(rows: number, seq: number, vocab: number, low: number, seed: number): number[][] {
  const rng = createRng(seed);
  return Array.from({ length: rows }, () =>
    Array.from({ length: seq }, () => low + Math.floor(rng.nextFloat() * (vocab - low))),
  );
}

/** The LLaMA-kind source shape both export: GQA (6 query heads over 2 KV heads), three layers, sharp weights. */
export const LLAMA_SOURCE = {
  hiddenSize: 48,
  numLayers: 3,
  numHeads: 6,
  numKvHeads: 2,
  intermediateSize: 64,
  vocabSize: 97,
  maxPositions: 64,
  seed: 21,
  scale: 20,
} as const;

/** A random LLaMA-kind decoder (llama, qwen2, mistral) written as a Hugging Face folder at `dir` and loaded back. */
export async function llamaSource(dir: string, opts: RandomLlamaOptions): Promise<ModelSpec> {
  const hf = llamaSpecToHf(randomLlamaSpec(opts));
  await writeHfFolder(dir, { config: hf.config, tensors: hf.tensors });
  return loadModelSpec(dir);
}

/**
 * The family sources both cross-checks export, each written at `dir` and loaded back: GPT-2, Gemma / Gemma 2
 * (`seed` chosen by the caller), Qwen3 (explicit head_dim 16), Phi-3 (`extra` config keys) and OPT, three layers each.
 */
export const familySource = {
  async gpt2(dir: string): Promise<ModelSpec> {
    await writeGpt2(dir, { embd: 32, heads: 4, layers: 3, inner: 40, vocab: 43, positions: 24 }, 11);
    return loadModelSpec(dir);
  },
  async gemma(dir: string, type: 'gemma' | 'gemma2', seed: number): Promise<ModelSpec> {
    await writeGemma(
      dir,
      { type, hidden: 32, layers: 3, heads: 4, kvHeads: 2, headDim: 8, inter: 48, vocab: 61 },
      seed,
    );
    return loadModelSpec(dir);
  },
  async qwen3(dir: string): Promise<ModelSpec> {
    await writeQwen3(
      dir,
      { hidden: 32, layers: 3, heads: 4, kvHeads: 2, headDim: 16, inter: 48, vocab: 61 },
      33,
    );
    return loadModelSpec(dir);
  },
  async phi3(dir: string, extra: Record<string, unknown> = {}): Promise<ModelSpec> {
    await writePhi3(
      dir,
      { hidden: 32, layers: 3, heads: 4, kvHeads: 2, headDim: 8, inter: 48, vocab: 61, maxPositions: 32 },
      21,
      extra,
    );
    return loadModelSpec(dir);
  },
  async opt(dir: string): Promise<ModelSpec> {
    await writeOpt(dir, { hidden: 32, heads: 4, layers: 3, ffn: 48, vocab: 61, positions: 24 }, 34);
    return loadModelSpec(dir);
  },
};

/** What hf_export.py reads of one exported folder (beside its `model/`), and what it compares. */
export interface CrosscheckCase {
  name: string;
  family: string;
  layout: HfLayout | 'dense';
  task: 'causal-lm' | 'seq-cls';
  /** Rows of equal length, no padding. */
  ids: number[][];
  /** The masked source model's logits, flattened row-major ([rows, seq, vocab] or [rows, labels]). */
  expected: number[];
  shape: number[];
  /** Heads removed per layer (original indices). */
  removed: number[][];
  /** Whether the folder ships modeling_geneprune.py (compact decoders): loaded with trust_remote_code=True. */
  remoteCode: boolean;
  /**
   * Whether transformers is meant to load the folder: padded and dense with the stock class, compact decoders with
   * their remote code; compact encoders (pruned_heads, gone in transformers 5) are informational.
   */
  mustLoad: boolean;
}

/** Writes `c` as `dir`/case.json (one line) and says so on stderr, with `detail`. */
export function writeCase(dir: string, c: CrosscheckCase, detail: string): void {
  writeFileSync(join(dir, 'case.json'), `${JSON.stringify(c)}\n`);
  process.stderr.write(`crosscheck: ${c.name} (${detail})\n`);
}
