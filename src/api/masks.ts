/**
 * Head masks as the commands take them: a list of heads to drop (`pruneHeads`, 0-based layer and head within
 * the layer's present heads) and/or a mask file from a head search. A head is kept only if both keep it.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { headMaskShape } from '../arch/registry.js';
import { flagError } from '../errors.js';
import { type LoadedMask, loadMaskFile, readMaskFile } from '../masks/headfile.js';
import { headLayers, headMaskOf, removedList } from '../masks/heads.js';
import { applyRecoveredWeights, refuseRecoveredWithoutMask } from '../masks/recovered.js';
import { loadWeightMaskFile } from '../masks/weightfile.js';
import { weightMaskFeeds } from '../masks/weights.js';
import type { ModelConfig, ModelSpec } from '../model/spec.js';
import { RUN_FILES } from '../runs/files.js';

/**
 * [layer, head] pairs, 0-based. The layer counts head layers over the model's head stacks in gene order
 * (masks/heads.ts headLayers): a decoder's or encoder's layers; an encoder-decoder's encoder blocks, then its
 * decoder blocks' self-attention, then their cross-attention.
 */
export type HeadList = ReadonlyArray<readonly [number, number]>;

/** The engine's head mask [rows * maxHeads] (arch headMaskShape) with the listed heads set to 0. */
export function headMaskFromList(config: ModelConfig, pairs: HeadList): Float32Array {
  const layers = headLayers(config);
  const [rows, maxHeads] = headMaskShape(config);
  const mask = new Float32Array(rows * Math.max(0, maxHeads)).fill(1);
  for (const [l, h] of pairs) {
    if (!Number.isInteger(l) || l < 0 || l >= layers.length) {
      throw flagError(
        '--prune-heads',
        `layer ${l} does not exist (the model has layers 0..${layers.length - 1})`,
      );
    }
    if (!Number.isInteger(h) || h < 0 || h >= layers[l].heads) {
      throw flagError(
        '--prune-heads',
        `head ${h} does not exist in layer ${l} (heads 0..${layers[l].heads - 1})`,
      );
    }
    mask[layers[l].row * maxHeads + h] = 0;
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
   * Recovered weights (`recovered-weights.safetensors`) for the mask they were recovered under: from `geneprune
   * weights --recover` with `weightMask`, from `geneprune heads --recover` with the head mask file `mask`. The
   * model's matrices are replaced by them.
   */
  recovered?: string;
}

/** The runner's weight-mask roles and feeds for a weight-mask file (none without one); no recovered weights. */
export async function resolveWeightMask(
  spec: ModelSpec,
  choice: Pick<WeightMaskChoice, 'weightMask'>,
): Promise<{
  roles?: string[];
  feeds?: Map<string, Uint8Array>;
  sparsity?: number;
  sha256?: string;
  info?: Record<string, unknown>;
}> {
  if (!choice.weightMask) return {};
  const loaded = await loadWeightMaskFile(choice.weightMask, spec);
  const feeds = weightMaskFeeds(loaded.masks);
  return {
    roles: [...feeds.keys()],
    feeds,
    sparsity: loaded.file.prunable.sparsity,
    sha256: loaded.sha256,
    ...(loaded.file.info ? { info: loaded.file.info } : {}),
  };
}

/** The context a mask's run scored it at, and the mask file that says so. */
export interface RunContext {
  context: number;
  file: string;
}

/**
 * The context length the run that wrote a mask file evaluated it at: `info.context` (recorded since runs print
 * it), or for a mask of an older run, its run directory's --ctx, else what every run then used, the model's
 * context capped at 512. Undefined for a file that no run wrote (or whose run can no longer be read).
 */
async function runContextOf(
  file: string,
  info: Record<string, unknown> | undefined,
  spec: ModelSpec,
): Promise<RunContext | undefined> {
  if (Number.isSafeInteger(info?.context)) return { context: info!.context as number, file };
  if (typeof info?.runDir !== 'string') return undefined;
  try {
    const config = JSON.parse(await readFile(join(info.runDir, RUN_FILES.config), 'utf8'));
    const given = config?.settings?.context;
    return { context: Number.isSafeInteger(given) ? given : Math.min(spec.config.maxPositions, 512), file };
  } catch {
    return undefined;
  }
}

/** Every mask a command takes, and the model with recovered weights in place when `recovered` is given. */
export interface ResolvedMasks {
  headMask: Float32Array;
  /** Weight-mask roles and feeds (absent without a weight mask). */
  roles?: string[];
  feeds?: Map<string, Uint8Array>;
  sparsity?: number;
  /** The model to run: `spec` itself, or with the recovered matrices in place. */
  spec: ModelSpec;
  /** The context the masks' run evaluated them at, when a mask file came from a run. */
  runContext?: RunContext;
}

/**
 * Head list, head-mask file, weight-mask file and recovered weights together. Recovered weights need the mask
 * they were recovered under (refused in one line otherwise, before anything runs).
 */
export async function resolveMasks(
  spec: ModelSpec,
  choice: HeadMaskChoice & WeightMaskChoice,
): Promise<ResolvedMasks> {
  refuseRecoveredWithoutMask(choice.recovered, choice);
  const headMask = headMaskFromList(spec.config, choice.pruneHeads ?? []);
  let head: LoadedMask | undefined;
  if (choice.mask) {
    head = await loadMaskFile(choice.mask, spec);
    const fromFile = headMaskOf(spec.config, head.genome);
    for (let i = 0; i < headMask.length; i++) headMask[i] *= fromFile[i];
  }
  const weights = await resolveWeightMask(spec, choice);
  const recovered = choice.recovered
    ? await applyRecoveredWeights(choice.recovered, spec, {
        ...(weights.sha256 ? { weight: { sha256: weights.sha256 } } : {}),
        ...(head ? { head: { sha256: head.sha256, removed: removedList(spec.config, head.genome) } } : {}),
      })
    : spec;
  const { sha256: _s, info: weightInfo, ...rest } = weights;
  const contexts = [
    ...(head && choice.mask ? [await runContextOf(choice.mask, head.file.info, spec)] : []),
    ...(choice.weightMask ? [await runContextOf(choice.weightMask, weightInfo, spec)] : []),
  ].filter((c): c is RunContext => c !== undefined);
  if (contexts.length === 2 && contexts[0].context !== contexts[1].context) {
    throw flagError(
      '--ctx',
      `required: ${contexts[0].file} was scored at context ${contexts[0].context}, ${contexts[1].file} at ${contexts[1].context}`,
    );
  }
  return { headMask, ...rest, spec: recovered, ...(contexts[0] ? { runContext: contexts[0] } : {}) };
}
