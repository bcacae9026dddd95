/**
 * Head-mask files: the result of a head search, accepted by `eval`, `generate`, `bench` and `export --mask`.
 *
 *   { "format": "geneprune-head-mask", "version": 2,
 *     "model": { "source": path, "modelType": ..., "fingerprint": sha256 over all weights, "shape": {...} },
 *     "geneOrder": "layer-major", "numLayers": L, "headsPerLayer": [...],
 *     "keep": [1, 0, ...],     one 0/1 per query head present, layer l's genes from Σ_{j<l} headsPerLayer[j]
 *     "removed": ["0:3", ...], "keptQueryHeads": [...], "keptKvHeads": [...], "sparsity": s, "info": {...} }
 *
 * A mask is accepted only by the model whose fingerprint it records (masks/identity.ts says why not otherwise:
 * a pruned export of the mask's model, another shape, or only other weights).
 * Version 1 recorded a fingerprint of a few sampled tensors, which let other models through: refused.
 * `keep` is the mask; every other field restates it (or the model), and a file where one contradicts it is
 * refused as corrupt rather than read with `keep` silently winning: a hand edit of `removed` or `sparsity` would
 * otherwise be believed by whoever reads the file without geneprune.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { fileError } from '../errors.js';
import { type ModelIdentity, modelIdentity } from '../model/identity.js';
import type { ModelSpec } from '../model/spec.js';
import { refuseSpecialFile } from '../util/fs.js';
import { type Genome, geneCount, keptHeads, removedList, sparsity } from './heads.js';
import { refuseForeignMask } from './identity.js';

export { type ModelIdentity, modelIdentity } from '../model/identity.js';

export const MASK_FILE_VERSION = 2;

export interface HeadMaskFile {
  format: 'geneprune-head-mask';
  version: 2;
  model: ModelIdentity & { source: string };
  geneOrder: 'layer-major';
  numLayers: number;
  /** Query heads present per layer in the model (= genes per layer). */
  headsPerLayer: number[];
  keep: number[];
  removed: string[];
  sparsity: number;
  keptQueryHeads: number[];
  keptKvHeads: number[];
  /** Free-form provenance: method, metrics, run directory. */
  info?: Record<string, unknown>;
}

export async function makeMaskFile(
  spec: ModelSpec,
  genome: Genome,
  info?: Record<string, unknown>,
): Promise<HeadMaskFile> {
  const kept = keptHeads(spec.config, genome);
  return {
    format: 'geneprune-head-mask',
    version: MASK_FILE_VERSION,
    model: { ...(await modelIdentity(spec)), source: spec.source },
    geneOrder: 'layer-major',
    numLayers: spec.config.numLayers,
    headsPerLayer: [...spec.config.headsPerLayer],
    keep: [...genome],
    removed: removedList(spec.config, genome),
    sparsity: sparsity(genome),
    keptQueryHeads: kept.query,
    keptKvHeads: kept.kv,
    ...(info ? { info } : {}),
  };
}

/** A mask file read and checked against a model. */
export interface LoadedMask {
  path: string;
  genome: Genome;
  /** sha256 of the file's bytes (what a pruned export records as the mask it applied). */
  sha256: string;
  file: HeadMaskFile;
}

/** Reads a mask file and checks it against the model; refuses a mask made for any other model. */
export async function loadMaskFile(path: string, spec: ModelSpec): Promise<LoadedMask> {
  await refuseSpecialFile(path, 'mask file');
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (e) {
    throw fileError(path, `cannot read mask file (${(e as NodeJS.ErrnoException).code ?? e})`);
  }
  let m: Partial<HeadMaskFile>;
  try {
    m = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw fileError(path, 'mask file is not valid JSON');
  }
  if (m?.format !== 'geneprune-head-mask')
    throw fileError(path, 'not a geneprune head-mask file (format field)');
  if ((m.version as number) === 1) {
    throw fileError(
      path,
      'version-1 mask file: its model fingerprint sampled only a few tensors and cannot tell models apart; run the head search again to get a version-2 mask',
    );
  }
  if (m.version !== MASK_FILE_VERSION) throw fileError(path, `unsupported mask file version ${m.version}`);
  if (!Array.isArray(m.keep) || !m.keep.every((v) => v === 0 || v === 1)) {
    throw fileError(path, '"keep" must be an array of 0/1 values');
  }
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  await refuseForeignMask(path, spec, m.model);
  const genes = geneCount(spec.config);
  if (m.keep.length !== genes) {
    throw fileError(
      path,
      `mask has ${m.keep.length} genes but the model has ${genes} heads (${spec.config.headsPerLayer.join(' ')} per layer)`,
    );
  }
  const genome = Uint8Array.from(m.keep);
  refuseContradictions(path, spec, m, genome);
  return { path, genome, sha256, file: m as HeadMaskFile };
}

/** Refuses a file whose derived fields say something other than its `keep` bits on this model. */
function refuseContradictions(path: string, spec: ModelSpec, m: Partial<HeadMaskFile>, genome: Genome): void {
  const kept = keptHeads(spec.config, genome);
  const expected: Array<[keyof HeadMaskFile, unknown]> = [
    ['numLayers', spec.config.numLayers],
    ['headsPerLayer', [...spec.config.headsPerLayer]],
    ['removed', removedList(spec.config, genome)],
    ['sparsity', sparsity(genome)],
    ['keptQueryHeads', kept.query],
    ['keptKvHeads', kept.kv],
  ];
  for (const [field, value] of expected) {
    // A share written by another tool may be removed/total rather than 1 − kept/total: equal up to rounding.
    const close =
      field === 'sparsity' &&
      typeof m.sparsity === 'number' &&
      Math.abs(m.sparsity - (value as number)) <= 1e-9;
    if (!close && JSON.stringify(m[field]) !== JSON.stringify(value)) {
      throw fileError(
        path,
        `"${field}" is ${JSON.stringify(m[field]) ?? 'missing'} but "keep" gives ${JSON.stringify(value)}: the file is corrupt or was edited`,
      );
    }
  }
}

/** Reads a mask file and checks it against the model; returns the genome. */
export async function readMaskFile(path: string, spec: ModelSpec): Promise<Genome> {
  return (await loadMaskFile(path, spec)).genome;
}
