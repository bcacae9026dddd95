/**
 * Seeded random LLaMA-family models in memory, for tests and for speed work at real shapes (speed does not
 * depend on the weights). Linear weights are uniform with std 0.02·scale (normal-ish is all that matters and
 * uniform is several times faster to draw); norm weights lie in [0.8, 1.2] so a dropped norm changes outputs.
 */
import { GenepruneError } from '../errors.js';
import { createRng, type Rng } from '../util/rng.js';
import { llamaBiasFlags, llamaRoleShapes } from './llama.js';
import { ropeSettingsFromHf } from './rope.js';
import {
  type Activation,
  type ModelConfig,
  type ModelSpec,
  memoryTensor,
  type TensorSource,
} from './spec.js';
import { type T5FeedForward, t5ConfigOf, t5RoleShapes } from './t5.js';

export interface RandomLlamaOptions {
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  intermediateSize: number;
  /**
   * Each layer's MLP width, 0 … intermediateSize (0: no MLP in that layer); default intermediateSize everywhere.
   * Uniform full widths leave ModelConfig.intermediatePerLayer absent, as a loaded config would.
   */
  intermediatePerLayer?: number[];
  vocabSize: number;
  maxPositions: number;
  /** Default hiddenSize / numHeads. */
  headDim?: number;
  /** q/k/v/o biases for llama (HF attention_bias); qwen2 always has q/k/v biases, mistral none. */
  attentionBias?: boolean;
  tieEmbeddings?: boolean;
  /** llama (default), mistral or qwen2. */
  modelType?: string;
  /** The MLP activation (default silu). */
  activation?: Activation;
  /** rope_theta (default 10000). */
  ropeTheta?: number;
  /** A config.json rope_scaling object (checked as a loaded config.json's is); default none. */
  ropeScaling?: Record<string, unknown>;
  seed: number;
  /** Multiplies the weight std (default 1 → std 0.02). */
  scale?: number;
  /**
   * Draw each tensor when it is loaded (from its own seed, so other values than the eager model's) and keep
   * nothing: a 1B-parameter shape can then be written to disk tensor by tensor.
   */
  lazy?: boolean;
}

const WEIGHT_STD = 0.02;

export function randomLlamaSpec(opts: RandomLlamaOptions): ModelSpec {
  const modelType = opts.modelType ?? 'llama';
  const headDim = opts.headDim ?? opts.hiddenSize / opts.numHeads;
  const counts = {
    hiddenSize: opts.hiddenSize,
    numLayers: opts.numLayers,
    numHeads: opts.numHeads,
    numKvHeads: opts.numKvHeads,
    intermediateSize: opts.intermediateSize,
    vocabSize: opts.vocabSize,
    maxPositions: opts.maxPositions,
    headDim,
  };
  for (const [key, v] of Object.entries(counts)) {
    if (!Number.isInteger(v) || v <= 0)
      throw new GenepruneError('model', `randomLlamaSpec: ${key} must be a positive integer, got ${v}`);
  }
  if (opts.numHeads % opts.numKvHeads !== 0 || headDim % 2 !== 0) {
    throw new GenepruneError(
      'model',
      'randomLlamaSpec: numHeads must be a multiple of numKvHeads and headDim even',
    );
  }
  const widths = opts.intermediatePerLayer;
  if (
    widths &&
    (widths.length !== opts.numLayers ||
      widths.some((w) => !Number.isInteger(w) || w < 0 || w > opts.intermediateSize))
  ) {
    throw new GenepruneError(
      'model',
      `randomLlamaSpec: intermediatePerLayer must be ${opts.numLayers} integers in 0..${opts.intermediateSize}`,
    );
  }
  const rope = ropeSettingsFromHf(
    { rope_theta: opts.ropeTheta, rope_scaling: opts.ropeScaling },
    opts.maxPositions,
    (message) => new GenepruneError('model', `randomLlamaSpec: ${message}`),
  );
  const config: ModelConfig = {
    family: 'llama',
    modelType,
    ...counts,
    ...(widths?.some((w) => w !== opts.intermediateSize) ? { intermediatePerLayer: [...widths] } : {}),
    headsPerLayer: Array(opts.numLayers).fill(opts.numHeads),
    kvHeadsPerLayer: Array(opts.numLayers).fill(opts.numKvHeads),
    normKind: 'rms',
    normPlacement: 'pre',
    normEps: 1e-5,
    activation: opts.activation ?? 'silu',
    mlpKind: 'gated',
    positionKind: 'rope',
    ropeTheta: rope.theta,
    ...(rope.scaling ? { ropeScaling: rope.scaling } : {}),
    ...llamaBiasFlags(modelType, opts.attentionBias ?? false, false),
    tieEmbeddings: opts.tieEmbeddings ?? false,
  };

  const rng = createRng(opts.seed);
  const std = WEIGHT_STD * (opts.scale ?? 1);
  const tensors = new Map<string, TensorSource>();
  for (const [index, [role, shape]] of llamaRoleShapes(config).entries()) {
    const n = shape.reduce((a, b) => a * b, 1);
    const isNorm = role.endsWith('norm.weight');
    // A uniform on [-a, a] has std a/√3.
    const draw = (r: Rng) =>
      isNorm ? uniform(r, n, 0.8, 1.2) : uniform(r, n, -std * Math.sqrt(3), std * Math.sqrt(3));
    if (opts.lazy) {
      const seed = opts.seed * 100_003 + index;
      tensors.set(role, { shape, dtype: 'F32', load: async () => draw(createRng(seed)) });
    } else tensors.set(role, memoryTensor(shape, draw(rng)));
  }
  return { config, tensors, source: `random:llama(seed=${opts.seed})` };
}

function uniform(rng: Rng, n: number, lo: number, hi: number): Float32Array {
  const out = new Float32Array(n);
  const next = rng.nextUint32;
  const step = (hi - lo) / 4294967296;
  for (let i = 0; i < n; i++) out[i] = lo + next() * step;
  return out;
}

export interface RandomT5Options {
  hiddenSize: number;
  headDim: number;
  numHeads: number;
  intermediateSize: number;
  encoderLayers: number;
  decoderLayers: number;
  vocabSize: number;
  /** Default 32 buckets, max distance 128 (T5's). */
  relativeBuckets?: number;
  relativeMaxDistance?: number;
  /** v1.0 'relu' (default, tied) or v1.1 'gated-gelu' / 'gated-silu' (untied unless tieEmbeddings says otherwise). */
  feedForward?: T5FeedForward;
  tieEmbeddings?: boolean;
  maxPositions?: number;
  seed: number;
  /** Multiplies the weight std (default 1 → std 0.02; T5 does not scale scores by 1/√d, so tests use more). */
  scale?: number;
}

/**
 * A seeded random T5 in memory (ids: pad 0, eos 1, decoder start 0, as T5's). Relative-bias tables are uniform on
 * [−1, 1] so the position terms matter; norms as randomLlamaSpec's.
 */
export function randomT5Spec(opts: RandomT5Options): ModelSpec {
  const feedForward = opts.feedForward ?? 'relu';
  const config = t5ConfigOf({
    hiddenSize: opts.hiddenSize,
    headDim: opts.headDim,
    numHeads: opts.numHeads,
    intermediateSize: opts.intermediateSize,
    encoderLayers: opts.encoderLayers,
    decoderLayers: opts.decoderLayers,
    vocabSize: opts.vocabSize,
    relativeBuckets: opts.relativeBuckets ?? 32,
    relativeMaxDistance: opts.relativeMaxDistance ?? 128,
    feedForward,
    tieEmbeddings: opts.tieEmbeddings ?? feedForward === 'relu',
    normEps: 1e-6,
    maxPositions: opts.maxPositions ?? 512,
    padTokenId: 0,
    eosTokenId: 1,
    decoderStartTokenId: 0,
  });
  const rng = createRng(opts.seed);
  const std = WEIGHT_STD * (opts.scale ?? 1);
  const tensors = new Map<string, TensorSource>();
  for (const [role, shape] of t5RoleShapes(config)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = role.endsWith('norm.weight')
      ? uniform(rng, n, 0.8, 1.2)
      : role.startsWith('rel_bias.')
        ? uniform(rng, n, -1, 1)
        : uniform(rng, n, -std * Math.sqrt(3), std * Math.sqrt(3));
    tensors.set(role, memoryTensor(shape, data));
  }
  return { config, tensors, source: `random:t5(seed=${opts.seed})` };
}
