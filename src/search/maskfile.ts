/**
 * Head-mask files: the result of a head search, accepted by `eval --mask` and `export`.
 *
 *   { "format": "geneprune-head-mask", "version": 1,
 *     "model": { identity: shape + a fingerprint of its weights },
 *     "geneOrder": "layer-major", "numLayers": L, "numHeads": H,
 *     "keep": [1, 0, ...],              one 0/1 per query head, gene g = layer * H + head, 1 = kept
 *     "removed": ["0:3", ...], "keptHeads": {...}, ... }
 *
 * A mask made for another model (different shape or weights) is refused.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { fileError } from '../errors.js';
import type { ModelSpec } from '../model/spec.js';
import { type Genome, geneCount, keptHeads, removedList, sparsity } from './genome.js';

export interface ModelIdentity {
  modelType: string;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  hiddenSize: number;
  vocabSize: number;
  /** sha256 over the shape and a sample of the weights (norm vectors and the first embedding rows). */
  fingerprint: string;
}

export async function modelIdentity(spec: ModelSpec): Promise<ModelIdentity> {
  const c = spec.config;
  const h = createHash('sha256');
  h.update(JSON.stringify([c.numLayers, c.numHeads, c.numKvHeads, c.hiddenSize, c.vocabSize, c.headDim]));
  const sample = [
    'final_norm.weight',
    'layers.0.attn_norm.weight',
    `layers.${c.numLayers - 1}.mlp_norm.weight`,
  ];
  for (const role of sample) {
    const t = spec.tensors.get(role);
    if (t) h.update(Buffer.from((await t.load()).buffer));
  }
  const emb = await spec.tensors.get('embed.tokens')?.load();
  if (emb) {
    const head = emb.subarray(0, Math.min(emb.length, 65536));
    h.update(Buffer.from(head.buffer, head.byteOffset, head.byteLength));
  }
  return {
    modelType: c.modelType,
    numLayers: c.numLayers,
    numHeads: c.numHeads,
    numKvHeads: c.numKvHeads,
    hiddenSize: c.hiddenSize,
    vocabSize: c.vocabSize,
    fingerprint: h.digest('hex').slice(0, 32),
  };
}

export interface HeadMaskFile {
  format: 'geneprune-head-mask';
  version: 1;
  model: ModelIdentity & { source: string };
  geneOrder: 'layer-major';
  numLayers: number;
  numHeads: number;
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
    version: 1,
    model: { ...(await modelIdentity(spec)), source: spec.source },
    geneOrder: 'layer-major',
    numLayers: spec.config.numLayers,
    numHeads: spec.config.numHeads,
    keep: [...genome],
    removed: removedList(spec.config, genome),
    sparsity: sparsity(genome),
    keptQueryHeads: kept.query,
    keptKvHeads: kept.kv,
    ...(info ? { info } : {}),
  };
}

/** Reads a mask file and checks it against the model; returns the genome. */
export async function readMaskFile(path: string, spec: ModelSpec): Promise<Genome> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw fileError(path, `cannot read mask file (${(e as NodeJS.ErrnoException).code ?? e})`);
  }
  let m: Partial<HeadMaskFile>;
  try {
    m = JSON.parse(text);
  } catch {
    throw fileError(path, 'mask file is not valid JSON');
  }
  if (m?.format !== 'geneprune-head-mask')
    throw fileError(path, 'not a geneprune head-mask file (format field)');
  if (m.version !== 1) throw fileError(path, `unsupported mask file version ${m.version}`);
  if (!Array.isArray(m.keep) || !m.keep.every((v) => v === 0 || v === 1)) {
    throw fileError(path, '"keep" must be an array of 0/1 values');
  }
  const genes = geneCount(spec.config);
  if (m.keep.length !== genes) {
    throw fileError(
      path,
      `mask has ${m.keep.length} genes but the model has ${genes} heads (${spec.config.numLayers} layers × ${spec.config.numHeads})`,
    );
  }
  const id = await modelIdentity(spec);
  if (!m.model || m.model.fingerprint !== id.fingerprint) {
    throw fileError(
      path,
      `mask was made for another model (${m.model?.source ?? 'unknown'}), not ${spec.source}`,
    );
  }
  return Uint8Array.from(m.keep);
}
