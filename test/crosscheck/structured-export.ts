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
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createRunner } from '../../src/engine/runner.js';
import { type StructuredPlan, structuredMasksOf } from '../../src/masks/structured.js';
import { intermediateOf, type ModelSpec } from '../../src/model/spec.js';
import { exportModel, type HfLayout } from '../../src/prune/export.js';
import { createRng } from '../../src/util/rng.js';
import {
  type CrosscheckCase,
  crosscheckOut,
  familySource,
  LLAMA_SOURCE,
  llamaSource,
  randomIds,
  writeCase,
} from '../helpers/crosscheck.js';

const { values } = parseArgs({
  options: {
    out: { type: 'string', default: 'tmp/crosscheck-structured' },
    layouts: { type: 'string', default: 'padded,compact' },
  },
});
const LAYOUTS = values.layouts.split(',') as HfLayout[];
const { OUT, sources } = crosscheckOut(values.out);

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

async function addCase(name: string, spec: ModelSpec, seed: number): Promise<void> {
  const plan = planFor(spec, seed);
  const ids = randomIds(2, 10, spec.config.vocabSize, 0, seed);
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
    const c: CrosscheckCase = {
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
    writeCase(dir, c, `plan ${JSON.stringify(plan.skipAttention)} ...`);
  }
}

// Llama GQA with q/k/v/o biases (the o bias of the skipped attention must go), and qwen2 (q/k/v biases).
for (const [name, modelType, bias] of [
  ['llama-gqa-bias', 'llama', true],
  ['qwen2', 'qwen2', false],
] as const) {
  const spec = await llamaSource(join(sources, name), { ...LLAMA_SOURCE, modelType, attentionBias: bias });
  await addCase(name, spec, 3);
}
await addCase('gpt2', await familySource.gpt2(join(sources, 'gpt2')), 4);
for (const type of ['gemma', 'gemma2'] as const) {
  await addCase(type, await familySource.gemma(join(sources, type), type, 31), 5);
}
await addCase('qwen3', await familySource.qwen3(join(sources, 'qwen3')), 6);
await addCase('phi3', await familySource.phi3(join(sources, 'phi3')), 7);
await addCase('opt', await familySource.opt(join(sources, 'opt')), 8);
