/**
 * Recovered weights: the prunable matrices a `weights --recover` run refitted under its mask, as a safetensors
 * file (F32 tensors named by role) with `__metadata__` `geneprune.recovered-weights` = JSON
 *   { format: "geneprune-recovered-weights", version: 1, model: { fingerprint, shape }, maskSha256, damping }.
 * They belong to one model and one mask: `eval` and `export` take them with that mask (`--weight-mask M
 * --recovered R`) and refuse them, in one line naming the file, for another model or another mask.
 */

import { openSafetensors, writeSafetensors } from '../checkpoint/safetensors.js';
import { fileError, GenepruneError } from '../errors.js';
import { modelIdentity, shortFingerprint } from '../model/identity.js';
import type { ModelSpec, TensorSource } from '../model/spec.js';

export const RECOVERED_FORMAT = 'geneprune-recovered-weights';
const META_KEY = 'geneprune.recovered-weights';

export interface RecoveredWeightsInfo {
  format: typeof RECOVERED_FORMAT;
  version: 1;
  model: { fingerprint: string };
  maskSha256: string;
  damping: number;
}

/** Writes `roles` of `recovered` (the refitted model) atomically, recording the original model and the mask. */
export async function writeRecoveredWeights(
  path: string,
  original: ModelSpec,
  recovered: ModelSpec,
  roles: readonly string[],
  maskSha256: string,
  damping: number,
): Promise<void> {
  const id = await modelIdentity(original);
  const info: RecoveredWeightsInfo = {
    format: RECOVERED_FORMAT,
    version: 1,
    model: { fingerprint: id.fingerprint },
    maskSha256,
    damping,
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
 * The model with its prunable matrices replaced by the recovered ones in `path`, after checking that they were
 * recovered for this model under the mask whose file has sha256 `maskSha256`.
 */
export async function applyRecoveredWeights(
  path: string,
  spec: ModelSpec,
  maskSha256: string,
): Promise<ModelSpec> {
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
  if (info.maskSha256 !== maskSha256) {
    throw fileError(path, 'recovered under another weight mask than the one given with --weight-mask');
  }
  const tensors = new Map<string, TensorSource>(spec.tensors);
  for (const [role, t] of st.tensors) {
    const own = spec.tensors.get(role);
    if (!own) throw fileError(path, `holds ${role}, which the model does not have`);
    if (own.shape.join('x') !== t.shape.join('x')) {
      throw fileError(path, `${role} is ${t.shape.join('×')}, the model's is ${own.shape.join('×')}`);
    }
    tensors.set(role, t);
  }
  return { ...spec, tensors };
}
