/**
 * Which model a mask file belongs to, for every kind of mask file (head masks, weight masks): the file records
 * the model's identity (`model/identity.ts`: a fingerprint over all its weights and its per-layer shape), and a
 * mask is accepted only by the model with that fingerprint. Otherwise the refusal says why, in one line naming
 * the file: the model is a pruned export of the mask's model (its provenance says so), the shape differs, or
 * only the weights do.
 */
import { fileError } from '../errors.js';
import {
  isModelShape,
  type ModelIdentity,
  type ModelShape,
  modelIdentity,
  prunedFrom,
  shapeDifference,
  shortFingerprint,
} from '../model/identity.js';
import type { ModelSpec } from '../model/spec.js';

/** The model identity a mask file records, as read from the file (untrusted). */
export type RecordedModel = Partial<ModelIdentity> & { source?: string };

/**
 * Refuses, naming `path`, a mask whose recorded model is missing, malformed or not `spec`; returns the model's
 * identity when the mask is its own.
 */
export async function refuseForeignMask(
  path: string,
  spec: ModelSpec,
  recorded: RecordedModel | undefined,
): Promise<ModelIdentity> {
  if (typeof recorded?.fingerprint !== 'string' || !isModelShape(recorded.shape)) {
    throw fileError(path, 'mask file does not record the model it was made for ("model" field)');
  }
  const fingerprint = recorded.fingerprint;
  const id = await modelIdentity(spec);
  if (fingerprint !== id.fingerprint) {
    throw fileError(path, whyForeign(spec, { ...recorded, fingerprint, shape: recorded.shape }, id));
  }
  return id;
}

/** One line saying which of provenance, shape or weights makes the mask foreign to `spec`. */
function whyForeign(
  spec: ModelSpec,
  recorded: { fingerprint: string; shape: ModelShape; source?: string },
  id: ModelIdentity,
): string {
  const step = prunedFrom(spec, recorded.fingerprint);
  if (step) {
    const mask = step.mask.sha256 ? `mask sha256 ${step.mask.sha256.slice(0, 16)}…` : 'a mask';
    const where = step.mask.path ? ` (${step.mask.path})` : '';
    const weights = step.mask.weightMask
      ? `, weights pruned with weight mask sha256 ${step.mask.weightMask.sha256.slice(0, 16)}… (${(100 * step.mask.weightMask.sparsity).toFixed(1)} % of the prunable weights)`
      : '';
    const heads =
      step.mask.weightMask && step.mask.removed.length === 0
        ? 'no heads removed'
        : `${step.mask.removed.length} heads removed`;
    const what = step.mask.sha256 || !step.mask.weightMask ? `${mask}${where}, ${heads}` : heads;
    return `this model is ${step.source.path} pruned with ${what}${weights}, and this mask was made for ${step.source.path}; apply the mask to the source model, or search again on the pruned one`;
  }
  const made = recorded.source ? ` (made for ${recorded.source})` : '';
  const shape = shapeDifference(recorded.shape, id.shape, 'mask');
  if (shape) return `${shape}${made}`;
  return `mask is for another model${made}: same shape, different weights (fingerprint ${shortFingerprint(recorded.fingerprint)} vs ${shortFingerprint(id.fingerprint)})`;
}
