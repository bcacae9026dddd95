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
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { writeHfFolder } from '../../src/checkpoint/hf.js';
import { createRunner } from '../../src/engine/runner.js';
import { evaluate, exportModel as exportApi, pruneWeights } from '../../src/index.js';
import { type Genome, headMaskOf } from '../../src/masks/heads.js';
import { readDataset } from '../../src/metrics/data.js';
import { batches, makeWindows, tokenizeDocuments } from '../../src/metrics/perplexity.js';
import { llamaSpecToHf } from '../../src/model/llama.js';
import { loadModelSpec } from '../../src/model/load.js';
import { openModel } from '../../src/model/open.js';
import { randomLlamaSpec } from '../../src/model/random.js';
import { MODELING_FILE } from '../../src/model/remote-code.js';
import type { ModelSpec } from '../../src/model/spec.js';
import { exportModel, type HfLayout } from '../../src/prune/export.js';
import { createRng } from '../../src/util/rng.js';
import { writeRandomEncoder } from '../helpers/encoders.js';
import { writeGemma } from '../helpers/gemma.js';
import { writeGpt2 } from '../helpers/gpt2.js';
import { writeOpt } from '../helpers/opt.js';
import { longropeScaling, writePhi3 } from '../helpers/phi3.js';
import { writeQwen3 } from '../helpers/qwen3.js';
import { CALIB, EVAL, MODEL, sharedPath } from '../shared.js';

const { values } = parseArgs({ options: { out: { type: 'string', default: 'tmp/crosscheck' } } });
const OUT = resolve(values.out);
rmSync(OUT, { recursive: true, force: true });
mkdirSync(OUT, { recursive: true });
const sources = join(OUT, '.sources');

type Task = 'causal-lm' | 'seq-cls';
interface Case {
  name: string;
  family: string;
  layout: HfLayout | 'dense';
  task: Task;
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

function randomIds(rows: number, seq: number, vocab: number, low: number, seed: number): number[][] {
  const rng = createRng(seed);
  return Array.from({ length: rows }, () =>
    Array.from({ length: seq }, () => low + Math.floor(rng.nextFloat() * (vocab - low))),
  );
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
    const c: Case = {
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
    writeFileSync(join(dir, 'case.json'), `${JSON.stringify(c)}\n`);
    process.stderr.write(`crosscheck: ${c.name} (${family}, removed ${JSON.stringify(c.removed)})\n`);
  }
}

// Decoders with rotary positions: llama GQA (2 KV heads for 6 query heads, pruned unevenly), qwen2 with biases;
// each also with a layer left without heads.
for (const [name, modelType, extra] of [
  ['llama-gqa', 'llama', {}],
  ['qwen2', 'qwen2', { tieEmbeddings: true }],
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
    seed: 21,
    scale: 20,
    ...extra,
  });
  const dir = join(sources, name);
  const hf = llamaSpecToHf(spec);
  await writeHfFolder(dir, { config: hf.config, tensors: hf.tensors });
  const reloaded = await loadModelSpec(dir);
  await addCase(
    name,
    reloaded,
    genomeRemoving(reloaded, [2, 4, 1], 5),
    'causal-lm',
    randomIds(2, 12, 97, 0, 3),
    ['padded', 'compact'],
  );
  // Every head of the middle layer removed: it adds nothing (llama) or its o bias alone, and its KV cache is empty.
  await addCase(
    `${name}-headless`,
    reloaded,
    genomeRemoving(reloaded, [1, 6, 3], 6),
    'causal-lm',
    randomIds(2, 12, 97, 0, 4),
    ['padded', 'compact'],
  );
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
  const spec = randomLlamaSpec({
    modelType,
    hiddenSize: 48,
    numLayers: 2,
    numHeads: 6,
    numKvHeads: 2,
    intermediateSize: 64,
    vocabSize: 97,
    maxPositions: 256,
    seed: 23,
    scale: 12,
    ropeScaling,
  });
  const dir = join(sources, name);
  const hf = llamaSpecToHf(spec);
  await writeHfFolder(dir, { config: hf.config, tensors: hf.tensors });
  const reloaded = await loadModelSpec(dir);
  await addCase(
    name,
    reloaded,
    genomeRemoving(reloaded, [2, 1], 8),
    'causal-lm',
    randomIds(2, 12, 97, 0, 9),
    ['padded'],
  );
}

{
  const dir = join(sources, 'gpt2');
  await writeGpt2(dir, { embd: 32, heads: 4, layers: 3, inner: 40, vocab: 43, positions: 24 }, 11);
  const spec = await loadModelSpec(dir);
  await addCase('gpt2', spec, genomeRemoving(spec, [1, 2, 0], 6), 'causal-lm', randomIds(2, 10, 43, 0, 4), [
    'padded',
    'compact',
  ]);
}

for (const type of ['gemma', 'gemma2'] as const) {
  const dir = join(sources, type);
  await writeGemma(
    dir,
    { type, hidden: 32, layers: 3, heads: 4, kvHeads: 2, headDim: 8, inter: 48, vocab: 61 },
    type === 'gemma' ? 31 : 32,
  );
  const spec = await loadModelSpec(dir);
  await addCase(type, spec, genomeRemoving(spec, [1, 3, 2], 7), 'causal-lm', randomIds(2, 9, 61, 0, 5), [
    'padded',
    'compact',
  ]);
}

// Qwen3 (q/k norms, explicit head_dim), Phi-3 (fused projections, partial rotary, LongRoPE with 12 tokens past an
// original context of 8) and OPT (learned positions at offset 2, biases).
{
  const dir = join(sources, 'qwen3');
  await writeQwen3(
    dir,
    { hidden: 32, layers: 3, heads: 4, kvHeads: 2, headDim: 16, inter: 48, vocab: 61 },
    33,
  );
  const spec = await loadModelSpec(dir);
  await addCase('qwen3', spec, genomeRemoving(spec, [1, 4, 2], 7), 'causal-lm', randomIds(2, 9, 61, 0, 5), [
    'padded',
    'compact',
  ]);
}
{
  const dir = join(sources, 'phi3');
  await writePhi3(
    dir,
    { hidden: 32, layers: 3, heads: 4, kvHeads: 2, headDim: 8, inter: 48, vocab: 61, maxPositions: 32 },
    21,
    {
      partial_rotary_factor: 0.75,
      original_max_position_embeddings: 8,
      rope_scaling: longropeScaling(6, 21),
    },
  );
  const spec = await loadModelSpec(dir);
  await addCase('phi3', spec, genomeRemoving(spec, [1, 2, 0], 8), 'causal-lm', randomIds(2, 12, 61, 0, 6), [
    'padded',
    'compact',
  ]);
}
{
  const dir = join(sources, 'opt');
  await writeOpt(dir, { hidden: 32, heads: 4, layers: 3, ffn: 48, vocab: 61, positions: 24 }, 34);
  const spec = await loadModelSpec(dir);
  await addCase('opt', spec, genomeRemoving(spec, [1, 3, 2], 9), 'causal-lm', randomIds(2, 10, 61, 0, 7), [
    'padded',
    'compact',
  ]);
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
