/**
 * Head masks as the commands take them: a list of heads to drop (`pruneHeads`, 0-based layer and head within
 * the layer's present heads) and/or a mask file from a head search. A head is kept only if both keep it.
 */
import { flagError } from '../errors.js';
import { readMaskFile } from '../masks/headfile.js';
import { headMaskOf } from '../masks/heads.js';
import { applyRecoveredWeights } from '../masks/recovered.js';
import { loadWeightMaskFile } from '../masks/weightfile.js';
import { weightMaskFeeds } from '../masks/weights.js';
import type { ModelConfig, ModelSpec } from '../model/spec.js';

/** [layer, head] pairs, 0-based. */
export type HeadList = ReadonlyArray<readonly [number, number]>;

/** The engine's head mask [layers * maxHeads] with the listed heads set to 0. */
export function headMaskFromList(config: ModelConfig, pairs: HeadList): Float32Array {
  const maxHeads = Math.max(0, ...config.headsPerLayer);
  const mask = new Float32Array(config.numLayers * maxHeads).fill(1);
  for (const [l, h] of pairs) {
    if (!Number.isInteger(l) || l < 0 || l >= config.numLayers) {
      throw flagError(
        '--prune-heads',
        `layer ${l} does not exist (the model has layers 0..${config.numLayers - 1})`,
      );
    }
    if (!Number.isInteger(h) || h < 0 || h >= config.headsPerLayer[l]) {
      throw flagError(
        '--prune-heads',
        `head ${h} does not exist in layer ${l} (heads 0..${config.headsPerLayer[l] - 1})`,
      );
    }
    mask[l * maxHeads + h] = 0;
  }
  return mask;
}

export interface HeadMaskChoice {
  /** Heads to drop, [layer, head] (0-based). */
  pruneHeads?: HeadList;
  /** A head-mask file (`mask.json` from a head search), checked against the model. */
  mask?: string;
}

/** The head mask for a model from a head list and a mask file together. */
export async function resolveHeadMask(spec: ModelSpec, choice: HeadMaskChoice): Promise<Float32Array> {
  const mask = headMaskFromList(spec.config, choice.pruneHeads ?? []);
  if (choice.mask) {
    const fromFile = headMaskOf(spec.config, await readMaskFile(choice.mask, spec));
    for (let i = 0; i < mask.length; i++) mask[i] *= fromFile[i];
  }
  return mask;
}

/** `L:H` strings for reports. */
export function headListText(pairs: HeadList): string[] {
  return pairs.map(([l, h]) => `${l}:${h}`);
}

export interface WeightMaskChoice {
  /** A weight-mask file (`weight-mask.safetensors` from `geneprune weights`), checked against the model. */
  weightMask?: string;
  /**
   * Recovered weights (`recovered-weights.safetensors` from `geneprune weights --recover`) for that mask: the
   * model's prunable matrices are replaced by them. Needs `weightMask`.
   */
  recovered?: string;
}

/** The runner's weight-mask roles and feeds for a weight-mask file (none without one). */
export async function resolveWeightMask(
  spec: ModelSpec,
  choice: WeightMaskChoice,
): Promise<{ roles?: string[]; feeds?: Map<string, Uint8Array>; sparsity?: number; spec: ModelSpec }> {
  if (!choice.weightMask) {
    if (choice.recovered) {
      throw flagError('--recovered', 'needs --weight-mask: the mask the weights were recovered under');
    }
    return { spec };
  }
  const loaded = await loadWeightMaskFile(choice.weightMask, spec);
  const feeds = weightMaskFeeds(loaded.masks);
  const recovered = choice.recovered
    ? await applyRecoveredWeights(choice.recovered, spec, loaded.sha256)
    : spec;
  return { roles: [...feeds.keys()], feeds, sparsity: loaded.file.prunable.sparsity, spec: recovered };
}
