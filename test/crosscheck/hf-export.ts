/**
 * Cross-check of exported Hugging Face folders against Python transformers (a dev-time check, not part of
 * `npm test`: it needs PyTorch and transformers, which CI does not have).
 *
 *   node --import tsx test/crosscheck/hf-export.ts [--out tmp/crosscheck]
 *   python3 test/crosscheck/hf_export.py tmp/crosscheck [--device cpu|cuda]
 *
 * This script writes one folder per case: a pruned model exported with `--format hf` (or `all`), and case.json
 * with the token ids to feed and the outputs geneprune computes for the masked source model (the unpruned
 * model's own graph with the genome as its head mask, checked elsewhere against independent references). The
 * Python side loads each folder with transformers' Auto classes and compares. Cases: random llama (GQA, uneven
 * pruning, and a layer left without heads), qwen2 (biases, likewise), rotary scaling (llama3, linear, yarn,
 * dynamic), GPT-2, Gemma, Gemma 2, Qwen3, Phi-3 (partial rotary, LongRoPE), OPT, BERT,
 * RoBERTa and DistilBERT classifiers, each exported `padded` (which any
 * transformers version loads with the stock class) and, all but the rotary-scaling ones, `compact`:
 * a compact decoder folder ships python/modeling_geneprune.py and is loaded with trust_remote_code=True (the
 * Python side also checks the stock class refuses it, one KV-cache step, and per-layer MLP widths); compact
 * encoders keep `pruned_heads` (transformers 4.x only); and the real stories260K, dense and 25 % pruned (padded
 * and compact), whose tokenizer.json must give llama2.c's ids and whose eval perplexity must equal geneprune's;
 * and stories260K with half its weights pruned by Wanda and recovered, exported with the zeros and the recovered
 * weights. Needs ../shared for stories260K (skipped with a message if absent).
 */
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createRunner } from '../../src/engine/runner.js';
import { evaluate, exportModel as exportApi, pruneWeights } from '../../src/index.js';
import { type Genome, headMaskOf } from '../../src/masks/heads.js';
import { readDataset } from '../../src/metrics/data.js';
import { batches, makeWindows, tokenizeDocuments } from '../../src/metrics/perplexity.js';
import { loadModelSpec } from '../../src/model/load.js';
import { openModel } from '../../src/model/open.js';
import { MODELING_FILE } from '../../src/model/remote-code.js';
import type { ModelSpec } from '../../src/model/spec.js';
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
import { writeRandomEncoder } from '../helpers/encoders.js';
import { longropeScaling } from '../helpers/phi3.js';
import { CALIB, EVAL, MODEL, sharedPath } from '../shared.js';

const { values } = parseArgs({ options: { out: { type: 'string', default: 'tmp/crosscheck' } } });
const { OUT, sources } = crosscheckOut(values.out);

type Task = CrosscheckCase['task'];

function removedOf(spec: ModelSpec, genome: Genome): number[][] {
  const H = Math.max(...spec.config.headsPerLayer);
  return spec.config.headsPerLayer.map((n, l) =>
    Array.from({ length: n }, (_, h) => h).filter((h) => genome[l * H + h] === 0),
  );
}

/** A genome removing `count` heads per layer at random (at least one head kept per layer). */
function genomeRemoving(spec: ModelSpec, perLayer: number[], seed: number): Genome {
  const rng = createRng(seed);
  const H = Math.max(...spec.config.headsPerLayer);
  const g = new Uint8Array(spec.config.numLayers * H).fill(1);
  perLayer.forEach((count, l) => {
    const heads = Array.from({ length: spec.config.headsPerLayer[l] }, (_, h) => h);
    for (let i = heads.length - 1; i > 0; i--) {
      const j = Math.floor(rng.nextFloat() * (i + 1));
      [heads[i], heads[j]] = [heads[j], heads[i]];
    }
    for (const h of heads.slice(0, count)) g[l * H + h] = 0;
  });
  return g;
}

async function expectedOutputs(spec: ModelSpec, genome: Genome, task: Task, ids: number[][]) {
  const seq = ids[0].length;
  const runner = await createRunner(spec, { output: task === 'causal-lm' ? 'logits' : 'class_logits' });
  try {
    const flat = BigInt64Array.from(ids.flat().map(BigInt));
    const out = await runner.run(
      {
        batch: ids.length,
        seq,
        ids: flat,
        ...(task === 'seq-cls' ? { attentionMask: new BigInt64Array(flat.length).fill(1n) } : {}),
      },
      { headMask: headMaskOf(spec.config, genome) },
    );
    const last = out.length / (task === 'causal-lm' ? ids.length * seq : ids.length);
    return {
      expected: Array.from(out),
      shape: task === 'causal-lm' ? [ids.length, seq, last] : [ids.length, last],
    };
  } finally {
    await runner.release();
  }
}

async function addCase(
  name: string,
  spec: ModelSpec,
  genome: Genome,
  task: Task,
  ids: number[][],
  layouts: HfLayout[],
  family = spec.config.modelType,
): Promise<void> {
  const { expected, shape } = await expectedOutputs(spec, genome, task, ids);
  for (const layout of layouts) {
    const dir = join(OUT, `${name}-${layout}`);
    await exportModel({ spec, genome, out: join(dir, 'model'), format: 'hf', hfLayout: layout });
    const remoteCode = existsSync(join(dir, 'model', MODELING_FILE));
    if (layout === 'compact' && !['bert', 't5'].includes(spec.config.family) && !remoteCode) {
      throw new Error(`${name}: the compact decoder folder has no ${MODELING_FILE}`);
    }
    const c: CrosscheckCase = {
      name: `${name}-${layout}`,
      family,
      layout,
      task,
      ids,
      expected,
      shape,
      removed: removedOf(spec, genome),
      remoteCode,
      mustLoad: layout === 'padded' || remoteCode,
    };
    writeCase(dir, c, `${family}, removed ${JSON.stringify(c.removed)}`);
  }
}

/**
 * A decoder case: `perLayer` heads removed at random (seed `genomeSeed`) from `spec`, fed two rows of `seq` ids
 * (seed `idsSeed`), exported in `layouts`.
 */
function decoderCase(
  name: string,
  spec: ModelSpec,
  perLayer: number[],
  genomeSeed: number,
  seq: number,
  idsSeed: number,
  layouts: HfLayout[] = ['padded', 'compact'],
): Promise<void> {
  const ids = randomIds(2, seq, spec.config.vocabSize, 0, idsSeed);
  return addCase(name, spec, genomeRemoving(spec, perLayer, genomeSeed), 'causal-lm', ids, layouts);
}

// Decoders with rotary positions: llama GQA (2 KV heads for 6 query heads, pruned unevenly), qwen2 with biases;
// each also with a layer left without heads.
for (const [name, modelType, extra] of [
  ['llama-gqa', 'llama', {}],
  ['qwen2', 'qwen2', { tieEmbeddings: true }],
] as const) {
  const reloaded = await llamaSource(join(sources, name), { ...LLAMA_SOURCE, modelType, ...extra });
  await decoderCase(name, reloaded, [2, 4, 1], 5, 12, 3);
  // Every head of the middle layer removed: it adds nothing (llama) or its o bias alone, and its KV cache is empty.
  await decoderCase(`${name}-headless`, reloaded, [1, 6, 3], 6, 12, 4);
}

// Rotary scaling (docs/families.md): each kind in config.json on a GQA decoder, positions 0–11 where it changes
// the rotation (llama3: head_dim 8 puts pairs in all three bands). yarn's factor equals max_position_embeddings /
// original_max_position_embeddings, the one case where every transformers release reads yarn the same way.
for (const [name, modelType, ropeScaling] of [
  [
    'llama-rope-llama3',
    'llama',
    {
      rope_type: 'llama3',
      factor: 8,
      low_freq_factor: 1,
      high_freq_factor: 4,
      original_max_position_embeddings: 64,
    },
  ],
  ['mistral-rope-linear', 'mistral', { type: 'linear', factor: 4 }],
  ['qwen2-rope-yarn', 'qwen2', { type: 'yarn', factor: 4, original_max_position_embeddings: 64 }],
  ['llama-rope-dynamic', 'llama', { type: 'dynamic', factor: 2 }],
] as const) {
  const reloaded = await llamaSource(join(sources, name), {
    ...LLAMA_SOURCE,
    numLayers: 2,
    maxPositions: 256,
    seed: 23,
    scale: 12,
    modelType,
    ropeScaling,
  });
  await decoderCase(name, reloaded, [2, 1], 8, 12, 9, ['padded']);
}

{
  const spec = await familySource.gpt2(join(sources, 'gpt2'));
  await decoderCase('gpt2', spec, [1, 2, 0], 6, 10, 4);
}

for (const type of ['gemma', 'gemma2'] as const) {
  const spec = await familySource.gemma(join(sources, type), type, type === 'gemma' ? 31 : 32);
  await decoderCase(type, spec, [1, 3, 2], 7, 9, 5);
}

// Qwen3 (q/k norms, explicit head_dim), Phi-3 (fused projections, partial rotary, LongRoPE with 12 tokens past an
// original context of 8) and OPT (learned positions at offset 2, biases).
{
  const spec = await familySource.qwen3(join(sources, 'qwen3'));
  await decoderCase('qwen3', spec, [1, 4, 2], 7, 9, 5);
}
{
  const spec = await familySource.phi3(join(sources, 'phi3'), {
    partial_rotary_factor: 0.75,
    original_max_position_embeddings: 8,
    rope_scaling: longropeScaling(6, 21),
  });
  await decoderCase('phi3', spec, [1, 2, 0], 8, 12, 6);
}
{
  const spec = await familySource.opt(join(sources, 'opt'));
  await decoderCase('opt', spec, [1, 3, 2], 9, 10, 7);
}

for (const [name, modelType, labels] of [
  ['bert-cls', 'bert', 3],
  ['roberta-cls', 'roberta', 2],
  ['distilbert-cls', 'distilbert', 4],
] as const) {
  const enc = await writeRandomEncoder(sources, name, {
    modelType,
    labels,
    seed: 41,
    vocab: 50,
    ...(modelType === 'roberta' ? { typeVocab: 1, maxPositions: 26 } : {}),
  });
  const spec = await loadModelSpec(enc.dir);
  // Ids from 3 up: never a pad id (RoBERTa derives positions from which ids are padding).
  const layers = spec.config.numLayers;
  await addCase(
    name,
    spec,
    genomeRemoving(
      spec,
      Array.from({ length: layers }, (_, l) => (l % 3) + 1),
      8,
    ),
    'seq-cls',
    randomIds(2, 11, 50, 3, 6),
    ['padded', 'compact'],
  );
}

// The real model: dense and 25 % of its heads removed, tokenizer and eval perplexity.
const modelPath = sharedPath(MODEL);
const evalPath = sharedPath(EVAL);
if (!modelPath || !evalPath) {
  process.stderr.write('crosscheck: ../shared is absent: the stories260K cases are skipped\n');
} else {
  const model = await openModel(modelPath);
  const spec = model.spec;
  const data = await readDataset(evalPath);
  const stream = tokenizeDocuments(data.documents, model.tokenizer);
  const perDoc = data.documents.map((d) => model.tokenizer.encode(d, { bos: false }));
  const context = 512;
  const windows = makeWindows(stream, context);
  /** case.json of a stories260K folder: PyTorch's eval mean NLL must equal `meanNll`, its tokenizer the ids. */
  const writePerplexityCase = (
    name: string,
    layout: string,
    meanNll: number,
    tokens: number,
    removed: number[][],
  ) => {
    const c = {
      name,
      family: 'llama',
      layout,
      task: 'perplexity',
      context,
      stream,
      documents: data.documents,
      documentIds: perDoc,
      bos: model.tokenizer.bosId,
      meanNll,
      tokens,
      removed,
      remoteCode: existsSync(join(OUT, name, 'model', MODELING_FILE)),
      mustLoad: true,
    };
    writeFileSync(join(OUT, name, 'case.json'), `${JSON.stringify(c)}\n`);
    process.stderr.write(
      `crosscheck: ${name}: geneprune mean NLL ${meanNll.toFixed(6)} over ${tokens} tokens (ppl ${Math.exp(meanNll).toFixed(4)})\n`,
    );
  };
  const H = Math.max(...spec.config.headsPerLayer);
  const dense = new Uint8Array(spec.config.numLayers * H).fill(1);
  const pruned = genomeRemoving(spec, [2, 2, 2, 2, 2], 9);
  for (const [name, genome, layout] of [
    ['stories260K-dense', dense, 'dense'],
    ['stories260K-25', pruned, 'padded'],
    ['stories260K-25-compact', pruned, 'compact'],
  ] as const) {
    const runner = await createRunner(spec, { output: 'nll' });
    let sum = 0;
    let count = 0;
    for (const b of batches(windows, 4)) {
      const nll = await runner.run(b, { headMask: headMaskOf(spec.config, genome) });
      for (let i = 0; i < nll.length; i++) {
        if (b.valid[i]) {
          sum += nll[i];
          count++;
        }
      }
    }
    await runner.release();
    const dir = join(OUT, name);
    await exportModel({
      spec,
      genome,
      out: join(dir, 'model'),
      format: 'all',
      tokenizerPath: model.tokenizerPath,
      ...(layout === 'padded' ? { hfLayout: 'padded' as const } : {}),
    });
    writePerplexityCase(name, layout, sum / count, count, removedOf(spec, genome));
  }
  // Weight pruning: Wanda at 50 % with recovery, exported with the mask's zeros and the recovered weights; the
  // expectation is `evaluate` on the source model with the mask and the recovered weights.
  const run = join(sources, 'wanda-50');
  await pruneWeights({
    model: modelPath,
    calib: sharedPath(CALIB)!,
    eval: evalPath,
    method: 'wanda',
    sparsity: 0.5,
    recover: true,
    evalTokens: 1024,
    out: run,
  });
  const weightMask = join(run, 'weight-mask.safetensors');
  const recovered = join(run, 'recovered-weights.safetensors');
  const expected = await evaluate({ model: modelPath, data: evalPath, weightMask, recovered });
  const name = 'stories260K-wanda50-recovered';
  await exportApi({ model: modelPath, weightMask, recovered, out: join(OUT, name, 'model'), format: 'all' });
  writePerplexityCase(name, 'weights', expected.meanNll, expected.tokens, []);
}
rmSync(sources, { recursive: true, force: true });
process.stderr.write(`crosscheck: cases in ${OUT}\n`);
