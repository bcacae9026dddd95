/**
 * Spec → Hugging Face files, by family: the one place export asks how a model is written. Each family file
 * (llama.ts, gpt2.ts, ...) owns its config.json mapping and tensor names; this dispatches on `config.family`.
 */
import { GenepruneError } from '../errors.js';
import { bertSpecToHf } from './bert.js';
import { gemmaSpecToHf } from './gemma.js';
import { gpt2SpecToHf } from './gpt2.js';
import { llamaSpecToHf } from './llama.js';
import { optSpecToHf } from './opt.js';
import { phi3SpecToHf } from './phi3.js';
import { qwen3SpecToHf } from './qwen3.js';
import type { ModelSpec, TensorSource } from './spec.js';
import { t5SpecToHf } from './t5.js';

export interface HfFiles {
  /** config.json, including `architectures`. */
  config: Record<string, unknown>;
  /** Tensors by Hugging Face name, in the order they are written. */
  tensors: Map<string, TensorSource>;
}

export interface SpecToHfOptions {
  /**
   * For families that record pruning in transformers' `pruned_heads` convention (GPT-2, BERT): which original
   * head indices each layer lost. Cosmetic (any indices of the right count give the same shapes and model).
   */
  prunedHeads?: readonly (readonly number[])[];
}

export function specToHf(spec: ModelSpec, opts: SpecToHfOptions = {}): HfFiles {
  switch (spec.config.family) {
    case 'llama':
      return llamaSpecToHf(spec);
    case 'gpt2':
      return gpt2SpecToHf(spec, opts.prunedHeads);
    case 'gemma':
      return gemmaSpecToHf(spec);
    case 'bert':
      return bertSpecToHf(spec, opts.prunedHeads);
    case 't5':
      return t5SpecToHf(spec);
    case 'qwen3':
      return qwen3SpecToHf(spec);
    case 'phi3':
      return phi3SpecToHf(spec);
    case 'opt':
      return optSpecToHf(spec);
    default:
      throw new GenepruneError(
        'model',
        `writing ${spec.config.family} models as Hugging Face folders is not supported yet`,
        spec.source,
      );
  }
}
