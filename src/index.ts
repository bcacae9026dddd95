/**
 * geneprune's library API. The CLI is a thin client of these functions.
 */

export { openHfFolder, writeHfFolder } from './checkpoint/hf.js';
export { cacheDir, downloadHfModel, parseModelRef, resolveModelRef } from './checkpoint/hub.js';
export { openLlama2c, writeLlama2cLegacy } from './checkpoint/llama2c.js';
export { openSafetensors, writeSafetensors } from './checkpoint/safetensors.js';
export { generate } from './engine/generate.js';
export {
  allKeptHeadMask,
  type CandidateMasks,
  createRunner,
  type ModelRunner,
  type RunnerOptions,
  type TokenBatch,
} from './engine/runner.js';
export { availableDevices, createEngine, type Device, type Engine } from './engine/session.js';
export { GenepruneError } from './errors.js';
export { buildDecoderGraph, type GraphOutputMode, loadWeights } from './graph/decoder.js';
export { type Dataset, readDataset } from './metrics/data.js';
export {
  computeKlReference,
  evaluateKl,
  evaluatePerplexity,
  makeWindows,
  type PerplexityResult,
  tokenizeDocuments,
  type Windows,
} from './metrics/perplexity.js';
export {
  type ModelIdentity,
  type ModelShape,
  modelFingerprint,
  modelIdentity,
  type Provenance,
} from './model/identity.js';
export { llamaSpecToHf, writeLlama2cFromSpec } from './model/llama.js';
export { loadModelSpec } from './model/load.js';
export { type OpenedModel, openModel } from './model/open.js';
export { randomLlamaSpec } from './model/random.js';
export {
  kvGroupOf,
  type ModelConfig,
  type ModelSpec,
  parameterCount,
  type TensorSource,
} from './model/spec.js';
export { loadTokenizer } from './tokenizer/load.js';
export type { Tokenizer } from './tokenizer/types.js';
export { createRng, type Rng } from './util/rng.js';
