/**
 * Dev-time cross-check of the Qwen3 family against Python transformers (not a test: it needs PyTorch):
 *
 *   node --import tsx bench/qwen3-crosscheck.ts [--out tmp/qwen3-crosscheck]
 *   /work/pyx/bin/python bench/qwen3_crosscheck.py tmp/qwen3-crosscheck
 *
 * Writes one Hugging Face folder per case with case.json (token ids and geneprune's logits): random Qwen3 folders
 * as test/helpers/qwen3.ts writes them (GQA with head_dim ≠ hidden/heads and a tied head; MQA with attention_bias
 * and an untied head; sliding windows from max_window_layers; linear rotary scaling), and a head-pruned model
 * exported in the padded layout (whose expected logits are the masked source model's). The Python side loads each
 * with Qwen3ForCausalLM (fp32, eager attention) and compares logits. Results go in docs/notes-qwen3.md.
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { createRunner } from '../src/engine/runner.js';
import { headMaskOf } from '../src/masks/heads.js';
import { loadModelSpec } from '../src/model/load.js';
import type { ModelSpec } from '../src/model/spec.js';
import { exportModel } from '../src/prune/export.js';
import { createRng } from '../src/util/rng.js';
import { type Qwen3Shape, writeQwen3 } from '../test/helpers/qwen3.js';

const { values } = parseArgs({ options: { out: { type: 'string', default: 'tmp/qwen3-crosscheck' } } });
const OUT = resolve(values.out);
rmSync(OUT, { recursive: true, force: true });
mkdirSync(OUT, { recursive: true });

const SHAPE: Qwen3Shape = { hidden: 24, layers: 3, heads: 4, kvHeads: 2, headDim: 8, inter: 40, vocab: 37 };

function ids(rows: number, seq: number, vocab: number, seed: number): number[][] {
  const rng = createRng(seed);
  return Array.from({ length: rows }, () => Array.from({ length: seq }, () => rng.nextInt(vocab)));
}

async function logits(spec: ModelSpec, rows: number[][], headMask?: Float32Array): Promise<number[]> {
  const runner = await createRunner(spec, { output: 'logits', attention: 'explicit' });
  const out = await runner.run(
    { batch: rows.length, seq: rows[0].length, ids: BigInt64Array.from(rows.flat().map(BigInt)) },
    { headMask },
  );
  await runner.release();
  return [...out];
}

async function writeCase(name: string, dir: string, rows: number[][], expected: number[], vocab: number) {
  writeFileSync(
    join(dir, 'case.json'),
    JSON.stringify({ name, ids: rows, expected, shape: [rows.length, rows[0].length, vocab] }),
  );
  console.log(`wrote ${name}`);
}

const dense: Array<[string, Qwen3Shape, Record<string, unknown>]> = [
  ['gqa-headdim-tied', SHAPE, {}],
  ['mqa-bias-untied', { ...SHAPE, kvHeads: 1, attentionBias: true, tied: false }, {}],
  ['sliding-window', SHAPE, { use_sliding_window: true, sliding_window: 3, max_window_layers: 1 }],
  ['rope-linear', SHAPE, { rope_scaling: { rope_type: 'linear', factor: 2 } }],
];
let seed = 1;
for (const [name, shape, extra] of dense) {
  const dir = join(OUT, name);
  await writeQwen3(dir, shape, seed++, extra);
  const spec = await loadModelSpec(dir);
  const rows = ids(2, 12, shape.vocab, seed);
  await writeCase(name, dir, rows, await logits(spec, rows), shape.vocab);
}

// A head-pruned model, padded layout: layer 1 loses KV group 1 entirely.
const src = join(OUT, '.source');
await writeQwen3(src, SHAPE, 99);
const spec = await loadModelSpec(src);
const genome = Uint8Array.from([1, 0, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1]);
const rows = ids(2, 12, SHAPE.vocab, 7);
const expected = await logits(spec, rows, headMaskOf(spec.config, genome));
for (const layout of ['padded', 'compact'] as const) {
  const out = join(OUT, `pruned-${layout}`);
  await exportModel({ spec, genome, out, format: 'hf', hfLayout: layout });
  await writeCase(`pruned-${layout}`, out, rows, expected, SHAPE.vocab);
}
