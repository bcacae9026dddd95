/**
 * Random Hugging Face folders of checkpoints that load as the LLaMA kind under their own config.json (SmolLM2's
 * llama, Mistral's mistral, Qwen2's qwen2): the config a test writes — shaped like a real release's, keys and
 * proportions, scaled down — is written as given, with random weights of the sizes it names. The reference
 * weights are the ones drawn, read through the config's own keys, never through src/model.
 */
import { writeHfFolder } from '../../src/checkpoint/hf.js';
import type { RunnerOptions } from '../../src/engine/runner.js';
import { llamaSpecToHf } from '../../src/model/llama.js';
import { randomLlamaSpec } from '../../src/model/random.js';
import type { ModelSpec } from '../../src/model/spec.js';
import { createRng } from '../../src/util/rng.js';
import { type ReferenceWeights, referenceForward } from '../reference/llama.js';
import { maxDiffToReference, type ReferenceForward, twoRows } from './logits.js';

/** A config.json's integer, which the folder needs. */
function int(config: Record<string, unknown>, key: string): number {
  const v = config[key];
  if (typeof v !== 'number' || !Number.isInteger(v))
    throw new Error(`llamalike: config ${key} is not an integer`);
  return v;
}

/**
 * Writes `config` and random weights of its sizes to `dir`. The weights' std is 0.02·20, so attention is sharp
 * and a wrong mask or rotation shows in the logits. Returns the reference's view of the model, without windows.
 */
export async function writeLlamaLikeFolder(
  dir: string,
  config: Record<string, unknown>,
  seed: number,
): Promise<ReferenceWeights> {
  const hidden = int(config, 'hidden_size');
  const heads = int(config, 'num_attention_heads');
  const spec = randomLlamaSpec({
    hiddenSize: hidden,
    numLayers: int(config, 'num_hidden_layers'),
    numHeads: heads,
    numKvHeads: int(config, 'num_key_value_heads'),
    headDim: typeof config.head_dim === 'number' ? config.head_dim : hidden / heads,
    intermediateSize: int(config, 'intermediate_size'),
    vocabSize: int(config, 'vocab_size'),
    maxPositions: int(config, 'max_position_embeddings'),
    tieEmbeddings: config.tie_word_embeddings === true,
    modelType: String(config.model_type),
    ropeTheta: Number(config.rope_theta),
    attentionBias: config.model_type === 'qwen2',
    seed,
    scale: 20,
  });
  // The random model's norm epsilon is fixed; the config must say the same for the reference to hold.
  if (config.rms_norm_eps !== spec.config.normEps) {
    throw new Error(`llamalike: rms_norm_eps must be ${spec.config.normEps}`);
  }
  await writeHfFolder(dir, { config, tensors: llamaSpecToHf(spec).tensors });
  return llamaReference(spec);
}

/** The plain reference's view of a LLaMA-like spec: its sizes and every tensor, loaded. */
export async function llamaReference(spec: ModelSpec): Promise<ReferenceWeights> {
  const c = spec.config;
  const weights = new Map<string, Float32Array>();
  for (const [role, t] of spec.tensors) weights.set(role, await t.load());
  return {
    hiddenSize: c.hiddenSize,
    numLayers: c.numLayers,
    headDim: c.headDim,
    headsPerLayer: c.headsPerLayer,
    kvHeadsPerLayer: c.kvHeadsPerLayer,
    intermediateSize: c.intermediateSize,
    vocabSize: c.vocabSize,
    normEps: c.normEps,
    ropeTheta: c.ropeTheta ?? 10000,
    tieEmbeddings: c.tieEmbeddings,
    get: (role) => weights.get(role),
  };
}

export { randomTokens } from './logits.js';

/**
 * The largest |logit − reference logit| over two random sequences of `seq` tokens run as one batch on ONNX
 * Runtime, optionally with heads masked (`rows[layer][head]`, 0 = dropped).
 */
export function maxLogitDiff(
  loaded: ModelSpec,
  ref: ReferenceWeights,
  rotary: 'half' | 'interleaved',
  headMask?: { rows: number[][]; flat: Float32Array },
  seq = 11,
  runnerOptions: Omit<RunnerOptions, 'output'> = {},
): Promise<number> {
  // The engine is fed the rows (padded to the widest layer), which for these models are the flat mask itself.
  const forward: ReferenceForward = (tokens, rows) =>
    referenceForward(ref, tokens, { rotary, headMask: rows });
  return maxDiffToReference(
    loaded,
    forward,
    twoRows(seq, loaded.config.vocabSize),
    headMask?.rows,
    runnerOptions,
  );
}

/** A head mask with about a third of the heads dropped (at least one kept per layer), plus its flat form. */
export function someHeadMask(
  layers: number,
  heads: number,
  seed: number,
): { rows: number[][]; flat: Float32Array } {
  const rng = createRng(seed);
  const rows = Array.from({ length: layers }, () =>
    Array.from({ length: heads }, () => (rng.nextFloat() < 0.35 ? 0 : 1)),
  );
  rows[0][0] = 0;
  rows[layers - 1][heads - 1] = 1;
  return { rows, flat: Float32Array.from(rows.flat()) };
}
