/**
 * Cross-check of structured exports (`export --structured`) against Python transformers: a dev-time check, not
 * part of `npm test` (it needs PyTorch and transformers).
 *
 *   node --import tsx test/crosscheck/structured-export.ts [--out tmp/crosscheck-structured] [--layouts padded,compact]
 *   python3 test/crosscheck/hf_export.py tmp/crosscheck-structured
 *
 * Writes one folder per case in hf-export.ts's case format, which hf_export.py reads: a random decoder of each
 * family with a structured plan — heads and MLP channels thinned, one attention block and one MLP block skipped, one
 * MLP left without channels — exported padded (loaded by the stock class) and compact (per-layer head counts and
 * `intermediate_size_per_layer`, loaded through modeling_geneprune.py with trust_remote_code=True), and the logits
 * geneprune computes for the masked source model (the full graph with structuredMasksOf(plan)).
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { writeHfFolder } from '../../src/checkpoint/hf.js';
import { createRunner } from '../../src/engine/runner.js';
import { type StructuredPlan, structuredMasksOf } from '../../src/masks/structured.js';
import { llamaSpecToHf } from '../../src/model/llama.js';
import { loadModelSpec } from '../../src/model/load.js';
import { randomLlamaSpec } from '../../src/model/random.js';
import { intermediateOf, type ModelSpec } from '../../src/model/spec.js';
import { exportModel, type HfLayout } from '../../src/prune/export.js';
import { createRng } from '../../src/util/rng.js';
import { writeGemma } from '../helpers/gemma.js';
import { writeGpt2 } from '../helpers/gpt2.js';
import { writeOpt } from '../helpers/opt.js';
import { writePhi3 } from '../helpers/phi3.js';
import { writeQwen3 } from '../helpers/qwen3.js';

const { values } = parseArgs({
  options: {
    out: { type: 'string', default: 'tmp/crosscheck-structured' },
    layouts: { type: 'string', default: 'padded,compact' },
  },
});
const OUT = resolve(values.out);
const LAYOUTS = values.layouts.split(',') as HfLayout[];
rmSync(OUT, { recursive: true, force: true });
mkdirSync(OUT, { recursive: true });
const sources = join(OUT, '.sources');

/**
 * A plan thinning every layer (at least one head kept), layer 0's MLP skipped, layer 1's attention skipped and its
 * MLP emptied; the last layer keeps an MLP (hf_export.py's per-layer width check slices it).
 */
function planFor(spec: ModelSpec, seed: number): StructuredPlan {
  const c = spec.config;
  const rng = createRng(seed);
  const thin = (n: number) => {
    const kept = Array.from({ length: n }, (_, j) => j).filter(() => rng.nextFloat() < 0.6);
    return kept.length ? kept : [0];
  };
  const L = c.numLayers;
  return {
    heads: c.headsPerLayer.map((h) => thin(h)),
    channels: Array.from({ length: L }, (_, i) => (i === 1 ? [] : thin(intermediateOf(c, i)))),
    skipAttention: Array.from({ length: L }, (_, i) => i === 1),
    skipMlp: Array.from({ length: L }, (_, i) => i === 0),
  };
}

function randomIds(rows: number, seq: number, vocab: number, seed: number): number[][] {
  const rng = createRng(seed);
  return Array.from({ length: rows }, () =>
    Array.from({ length: seq }, () => Math.floor(rng.nextFloat() * vocab)),
  );
}

async function addCase(name: string, spec: ModelSpec, seed: number): Promise<void> {
  const plan = planFor(spec, seed);
  const ids = randomIds(2, 10, spec.config.vocabSize, seed);
  const seq = ids[0].length;
  const runner = await createRunner(spec, { output: 'logits', structuredMasks: true });
  const out = await runner.run(
    { batch: ids.length, seq, ids: BigInt64Array.from(ids.flat().map(BigInt)) },
    structuredMasksOf(spec.config, plan),
  );
  await runner.release();
  const removed = spec.config.headsPerLayer.map((h, i) =>
    Array.from({ length: h }, (_, j) => j).filter((j) => plan.skipAttention[i] || !plan.heads[i].includes(j)),
  );
  for (const layout of LAYOUTS) {
    const dir = join(OUT, `${name}-structured-${layout}`);
    await exportModel({ spec, plan, out: join(dir, 'model'), format: 'hf', hfLayout: layout });
    const remoteCode = layout === 'compact';
    const c = {
      name: `${name}-structured-${layout}`,
      family: spec.config.modelType,
      layout,
      task: 'causal-lm',
      ids,
      expected: Array.from(out),
      shape: [ids.length, seq, spec.config.vocabSize],
      removed,
      remoteCode,
      mustLoad: true,
    };
    writeFileSync(join(dir, 'case.json'), `${JSON.stringify(c)}\n`);
    process.stderr.write(`crosscheck: ${c.name} (plan ${JSON.stringify(plan.skipAttention)} ...)\n`);
  }
}

{
  // Llama GQA with q/k/v/o biases (the o bias of the skipped attention must go), and qwen2 (q/k/v biases).
  for (const [name, modelType, bias] of [
    ['llama-gqa-bias', 'llama', true],
    ['qwen2', 'qwen2', false],
  ] as const) {
    const spec = randomLlamaSpec({
      modelType,
      hiddenSize: 48,
      numLayers: 3,
      numHeads: 6,
      numKvHeads: 2,
      intermediateSize: 64,
      vocabSize: 97,
      maxPositions: 64,
      attentionBias: bias,
      seed: 21,
      scale: 20,
    });
    const dir = join(sources, name);
    const hf = llamaSpecToHf(spec);
    await writeHfFolder(dir, { config: hf.config, tensors: hf.tensors });
    await addCase(name, await loadModelSpec(dir), 3);
  }
}
{
  const dir = join(sources, 'gpt2');
  await writeGpt2(dir, { embd: 32, heads: 4, layers: 3, inner: 40, vocab: 43, positions: 24 }, 11);
  await addCase('gpt2', await loadModelSpec(dir), 4);
}
for (const type of ['gemma', 'gemma2'] as const) {
  const dir = join(sources, type);
  await writeGemma(
    dir,
    { type, hidden: 32, layers: 3, heads: 4, kvHeads: 2, headDim: 8, inter: 48, vocab: 61 },
    31,
  );
  await addCase(type, await loadModelSpec(dir), 5);
}
{
  const dir = join(sources, 'qwen3');
  await writeQwen3(
    dir,
    { hidden: 32, layers: 3, heads: 4, kvHeads: 2, headDim: 16, inter: 48, vocab: 61 },
    33,
  );
  await addCase('qwen3', await loadModelSpec(dir), 6);
}
{
  const dir = join(sources, 'phi3');
  await writePhi3(
    dir,
    { hidden: 32, layers: 3, heads: 4, kvHeads: 2, headDim: 8, inter: 48, vocab: 61, maxPositions: 32 },
    21,
  );
  await addCase('phi3', await loadModelSpec(dir), 7);
}
{
  const dir = join(sources, 'opt');
  await writeOpt(dir, { hidden: 32, heads: 4, layers: 3, ffn: 48, vocab: 61, positions: 24 }, 34);
  await addCase('opt', await loadModelSpec(dir), 8);
}
