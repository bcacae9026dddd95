/**
 * Recovered weights: the matrices a `--recover` run refitted under its mask, as a safetensors file (F32 tensors
 * named by role) with `__metadata__` `geneprune.recovered-weights` = JSON
 *   { format: "geneprune-recovered-weights", version: 1, model: { fingerprint }, maskSha256, damping,
 *     maskKind?: "head", removedHeads?: ["L:H", ...] }.
 * Two kinds: `weights --recover` refits every prunable matrix under a weight mask (maskKind absent: the
 * weight-mask file's sha256 is the mask's identity); `heads --recover` refits o after heads are removed
 * (maskKind "head": the removed heads are the identity, since o's refit depends on nothing else of mask.json,
 * and maskSha256 names the mask.json it came with). They belong to one model and one mask: `eval`, `generate`
 * and `export` take them with that mask (`--weight-mask M --recovered R` or `--mask M --recovered R`) and refuse
 * them, in one line naming the file, for another model, another mask, or without their mask.
 * A third kind, maskKind "structured" (`structured --recover`), refits o and down after a structured plan's heads,
 * channels and blocks are removed (prune/recover-structured.ts); its identity is `planDigest`, the sha256 of the
 * plan's units (planDigest below), so the plan.json it came with may be copied or re-annotated; `export
 * --structured P --recovered R` takes it.
 */

import { createHash } from 'node:crypto';
import { weightDtypeProblem } from '../checkpoint/dtype.js';
import { openSafetensors, writeSafetensors } from '../checkpoint/safetensors.js';
import { fileError, flagError, GenepruneError } from '../errors.js';
import { modelIdentity, shortFingerprint } from '../model/identity.js';
import type { ModelSpec, TensorSource } from '../model/spec.js';
import type { StructuredPlan } from './structured.js';

export const RECOVERED_FORMAT = 'geneprune-recovered-weights';
const META_KEY = 'geneprune.recovered-weights';

export interface RecoveredWeightsInfo {
  format: typeof RECOVERED_FORMAT;
  version: 1;
  model: { fingerprint: string };
  maskSha256: string;
  damping: number;
  /** Absent for a weight mask. */
  maskKind?: 'head' | 'structured';
  /** maskKind "head": the removed heads, `L:H`. */
  removedHeads?: string[];
  /** maskKind "structured": planDigest of the plan. */
  planDigest?: string;
}

/** The identity of a structured plan's units: sha256 of its heads, channels and skipped blocks, in that order. */
export function planDigest(plan: StructuredPlan): string {
  const units = [plan.heads, plan.channels, plan.skipAttention, plan.skipMlp];
  return createHash('sha256').update(JSON.stringify(units)).digest('hex');
}

/** The mask recovered weights were made under, as the file records it. */
export type RecoveredMask =
  | { kind: 'weight'; sha256: string }
  | { kind: 'head'; sha256: string; removed: readonly string[] }
  | { kind: 'structured'; sha256: string; plan: StructuredPlan };

/** The masks a command was given, which a recovered file must match. */
export interface GivenMasks {
  /** The weight-mask file's sha256 (--weight-mask). */
  weight?: { sha256: string };
  /** The head-mask file (--mask): its sha256 and removed heads. */
  head?: { sha256: string; removed: readonly string[] };
  /** The structured plan (--structured). */
  structured?: { plan: StructuredPlan };
}

/** Refuses --recovered given with neither mask, before any file is read. */
export function refuseRecoveredWithoutMask(
  recovered: string | undefined,
  given: { weightMask?: string; mask?: string },
): void {
  if (recovered && !given.weightMask && !given.mask) {
    throw flagError(
      '--recovered',
      'needs --weight-mask or --mask: the mask the weights were recovered under',
    );
  }
}

function headListShort(removed: readonly string[]): string {
  if (removed.length === 0) return 'none';
  return removed.length <= 8 ? removed.join(',') : `${removed.slice(0, 8).join(',')},… (${removed.length})`;
}

/** Writes `roles` of `recovered` (the refitted model) atomically, recording the original model and the mask. */
export async function writeRecoveredWeights(
  path: string,
  original: ModelSpec,
  recovered: ModelSpec,
  roles: readonly string[],
  mask: RecoveredMask,
  damping: number,
): Promise<void> {
  const id = await modelIdentity(original);
  const info: RecoveredWeightsInfo = {
    format: RECOVERED_FORMAT,
    version: 1,
    model: { fingerprint: id.fingerprint },
    maskSha256: mask.sha256,
    damping,
    ...(mask.kind === 'head' ? { maskKind: 'head' as const, removedHeads: [...mask.removed] } : {}),
    ...(mask.kind === 'structured'
      ? { maskKind: 'structured' as const, planDigest: planDigest(mask.plan) }
      : {}),
  };
  await writeSafetensors(
    path,
    roles.map((role) => {
      const t = recovered.tensors.get(role);
      if (!t) throw new GenepruneError('internal', `no recovered tensor ${role}`);
      return { name: role, shape: t.shape, data: () => t.load() };
    }),
    { [META_KEY]: JSON.stringify(info) },
  );
}

/**
 * The model with its matrices replaced by the recovered ones in `path`, after checking that they were recovered
 * for this model under the mask given: the weight mask whose file has the recorded sha256, or a head mask
 * removing the recorded heads.
 */
export async function applyRecoveredWeights(
  path: string,
  spec: ModelSpec,
  given: GivenMasks,
): Promise<ModelSpec> {
  return (await readRecoveredWeights(path, spec, given)).spec;
}

/** applyRecoveredWeights, also saying which kind of mask the weights were recovered under. */
export async function readRecoveredWeights(
  path: string,
  spec: ModelSpec,
  given: GivenMasks,
): Promise<{ spec: ModelSpec; kind: 'head' | 'weight' | 'structured' }> {
  const st = await openSafetensors(path);
  let info: Partial<RecoveredWeightsInfo>;
  try {
    info = JSON.parse(st.metadata[META_KEY] ?? 'null') ?? {};
  } catch {
    throw fileError(path, 'recovered-weights metadata is not valid JSON');
  }
  if (info.format !== RECOVERED_FORMAT) {
    throw fileError(path, `not a recovered-weights file (no ${META_KEY} metadata)`);
  }
  if (info.version !== 1) throw fileError(path, `unsupported recovered-weights version ${info.version}`);
  const id = await modelIdentity(spec);
  if (info.model?.fingerprint !== id.fingerprint) {
    throw fileError(
      path,
      `recovered for another model (fingerprint ${shortFingerprint(String(info.model?.fingerprint))} vs this model's ${shortFingerprint(id.fingerprint)})`,
    );
  }
  if (info.maskKind === 'head') {
    const recorded = Array.isArray(info.removedHeads) ? info.removedHeads.map(String) : [];
    if (!given.head) {
      throw fileError(
        path,
        `recovered after heads ${headListShort(recorded)} were removed: give that head mask with --mask`,
      );
    }
    if (recorded.join(',') !== given.head.removed.join(',')) {
      throw fileError(
        path,
        `recovered after heads ${headListShort(recorded)} were removed, but --mask removes ${headListShort(given.head.removed)}`,
      );
    }
  } else if (info.maskKind === 'structured') {
    if (!given.structured) {
      throw fileError(path, 'recovered after a structured removal: give its plan with --structured');
    }
    if (info.planDigest !== planDigest(given.structured.plan)) {
      throw fileError(path, 'recovered under another structured plan than the one given with --structured');
    }
  } else if (info.maskKind !== undefined) {
    throw fileError(path, `unknown recovered-weights mask kind ${JSON.stringify(info.maskKind)}`);
  } else {
    if (!given.weight) {
      throw fileError(path, 'recovered under a weight mask: give that mask with --weight-mask');
    }
    if (info.maskSha256 !== given.weight.sha256) {
      throw fileError(path, 'recovered under another weight mask than the one given with --weight-mask');
    }
  }
  const tensors = new Map<string, TensorSource>(spec.tensors);
  for (const [role, t] of st.tensors) {
    const own = spec.tensors.get(role);
    if (!own) throw fileError(path, `holds ${role}, which the model does not have`);
    const problem = weightDtypeProblem(role, t.dtype);
    if (problem) throw fileError(path, problem);
    if (own.shape.join('x') !== t.shape.join('x')) {
      throw fileError(path, `${role} is ${t.shape.join('×')}, the model's is ${own.shape.join('×')}`);
    }
    tensors.set(role, t);
  }
  return { spec: { ...spec, tensors }, kind: info.maskKind ?? 'weight' };
}
