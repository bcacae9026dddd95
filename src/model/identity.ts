/**
 * Model identity: what a mask, a run directory or a pruned export records about the model it belongs to.
 *
 * - `fingerprint`: a sha256 over every tensor of the spec (role name, shape, then its fp32 values in the spec's
 *   layout), in sorted role order, plus the per-layer attention layout. It reads the spec, never a file, so the
 *   same function has the same fingerprint whether it is held by a llama2.c .bin or a Hugging Face folder (the
 *   rotary permutation of llama2.c q/k rows happens on load, before hashing). Tensors are loaded one at a time
 *   and dropped after hashing; the result is memoised per spec object (no cache files).
 * - `shape`: layers, hidden size, head dim, vocabulary, query and KV heads per layer and, when the model has
 *   an explicit query→KV map, that map. Kept apart from the fingerprint so a refusal can say which differs.
 *
 * Provenance: a pruned export records where it came from (the source's identity and path, the mask applied),
 * in config.json (`geneprune`) and in the safetensors `__metadata__`. `lineage` lists every pruning step,
 * oldest first, so a mask made for any ancestor is recognised.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { ropeScalingText } from './rope.js';
import { kvMapOfLayer, type ModelConfig, type ModelSpec } from './spec.js';

export interface ModelShape {
  numLayers: number;
  hiddenSize: number;
  headDim: number;
  vocabSize: number;
  /** Query heads present in each layer. */
  queryHeads: number[];
  /** KV heads present in each layer. */
  kvHeads: number[];
  /** The KV head each query head reads, per layer; only when the model states it explicitly. */
  kvHeadOfQuery?: number[][];
  /** Encoder-decoders: blocks of the encoder, and cross-attention heads present in each decoder block. */
  encoderLayers?: number;
  crossHeads?: number[];
}

export interface ModelIdentity {
  modelType: string;
  /** sha256 (hex) over every tensor and the attention layout; see the module comment. */
  fingerprint: string;
  shape: ModelShape;
}

export function modelShape(config: ModelConfig): ModelShape {
  return {
    numLayers: config.numLayers,
    hiddenSize: config.hiddenSize,
    headDim: config.headDim,
    vocabSize: config.vocabSize,
    queryHeads: [...config.headsPerLayer],
    kvHeads: [...config.kvHeadsPerLayer],
    ...(config.kvHeadOfQuery ? { kvHeadOfQuery: config.kvHeadOfQuery.map((m) => [...m]) } : {}),
    ...(config.encdec
      ? { encoderLayers: config.encdec.encoderLayers, crossHeads: [...config.encdec.crossHeadsPerLayer] }
      : {}),
  };
}

const fingerprints = new WeakMap<ModelSpec, Promise<string>>();

/** The full-weight fingerprint of a spec, computed once per spec object. */
export function modelFingerprint(spec: ModelSpec): Promise<string> {
  let f = fingerprints.get(spec);
  if (!f) {
    f = computeFingerprint(spec);
    // A failed read must not poison later calls.
    f.catch(() => fingerprints.delete(spec));
    fingerprints.set(spec, f);
  }
  return f;
}

async function computeFingerprint(spec: ModelSpec): Promise<string> {
  const c = spec.config;
  const h = createHash('sha256');
  // What the weights alone do not pin down: the attention layout (canonical maps, explicit or derived) and the
  // hyperparameters every format carries. The model_type name is left out (llama2c and llama are one function).
  const layout = {
    headDim: c.headDim,
    heads: c.headsPerLayer,
    kvHeads: c.kvHeadsPerLayer,
    kvMaps: Array.from({ length: c.numLayers }, (_, l) => kvMapOfLayer(c, l)),
    norm: [c.normKind, c.normPlacement, c.normEps],
    mlp: [c.mlpKind, c.activation],
    positions: [c.positionKind, c.ropeTheta],
    // Only scaled models carry the key, so every unscaled model keeps the fingerprint it had.
    ...(c.ropeScaling ? { ropeScaling: ropeScalingText(c.ropeScaling) } : {}),
    // Partial rotary (Phi-4-mini) is another function of the same weights; whole-head models keep their fingerprint.
    ...(c.rotaryDim !== undefined ? { rotaryDim: c.rotaryDim } : {}),
    // Likewise only encoder-decoders carry their own fields (stack split, cross heads, bias tables, output scale).
    ...(c.encdec ? { encdec: { ...c.encdec, relColumns: c.encdec.relColumnOfQuery ?? null } } : {}),
  };
  h.update(`geneprune-fingerprint-1\0${JSON.stringify(layout)}\0`);
  for (const role of [...spec.tensors.keys()].sort()) {
    const t = spec.tensors.get(role)!;
    h.update(`${role}\0${t.shape.join('x')}\0`);
    // One tensor at a time; the array is dropped when this iteration ends.
    const data = await t.load();
    h.update(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  }
  return h.digest('hex');
}

export async function modelIdentity(spec: ModelSpec): Promise<ModelIdentity> {
  return {
    modelType: spec.config.modelType,
    fingerprint: await modelFingerprint(spec),
    shape: modelShape(spec.config),
  };
}

/** A fingerprint shortened for messages. */
export function shortFingerprint(f: string): string {
  return `${f.slice(0, 12)}…`;
}

function canonicalMaps(s: ModelShape): number[][] {
  return s.queryHeads.map((heads, l) => {
    const explicit = s.kvHeadOfQuery?.[l];
    if (explicit) return explicit;
    const kv = s.kvHeads[l];
    return Array.from({ length: heads }, (_, h) => Math.floor(h / (heads / kv)));
  });
}

const list = (xs: readonly number[]) => xs.join(' ');

/**
 * The first way shape `actual` differs from `expected`, as "X is for A, this model has B" text; undefined when
 * they are the same.
 */
export function shapeDifference(expected: ModelShape, actual: ModelShape, what: string): string | undefined {
  const scalar: Array<[keyof ModelShape, string]> = [
    ['numLayers', 'layers'],
    ['hiddenSize', 'hidden size'],
    ['headDim', 'head dim'],
    ['vocabSize', 'vocabulary size'],
  ];
  if (expected.numLayers !== actual.numLayers) {
    return `${what} is for ${expected.numLayers} layers, this model has ${actual.numLayers}`;
  }
  const perLayer: Array<[number[], number[], string]> = [
    [expected.queryHeads, actual.queryHeads, 'query heads per layer'],
    [expected.kvHeads, actual.kvHeads, 'KV heads per layer'],
  ];
  for (const [e, a, name] of perLayer) {
    if (list(e) !== list(a)) return `${what} is for ${list(e)} ${name}, this model has ${list(a)}`;
  }
  if (expected.encoderLayers !== actual.encoderLayers) {
    const side = (s: ModelShape) =>
      s.encoderLayers === undefined ? 'no encoder-decoder split' : `${s.encoderLayers} encoder layers`;
    return `${what} is for ${side(expected)}, this model has ${side(actual)}`;
  }
  if (list(expected.crossHeads ?? []) !== list(actual.crossHeads ?? [])) {
    return `${what} is for ${list(expected.crossHeads ?? [])} cross-attention heads per decoder layer, this model has ${list(actual.crossHeads ?? [])}`;
  }
  for (const [key, name] of scalar) {
    if (expected[key] !== actual[key]) {
      return `${what} is for ${name} ${expected[key]}, this model has ${actual[key]}`;
    }
  }
  const e = canonicalMaps(expected);
  const a = canonicalMaps(actual);
  const layer = e.findIndex((m, l) => list(m) !== list(a[l]));
  if (layer >= 0) {
    return `${what} is for query heads reading KV heads ${list(e[layer])} in layer ${layer}, this model has ${list(a[layer])}`;
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------------------
// provenance of pruned exports

export interface AppliedMask {
  /** sha256 of the mask file's bytes; absent when a genome was given without a file. */
  sha256?: string;
  /** The mask file's path when it was written, for messages. */
  path?: string;
  /** Removed heads, `L:H` in the source's numbering. */
  removed: string[];
  /** The weight mask applied (weights zeroed where it prunes), when there was one. */
  weightMask?: AppliedWeightMask;
  /**
   * Least-squares recovery under the mask, when its matrices were refitted: o after heads were removed ('head')
   * or the prunable matrices under the weight mask ('weight') or o and down after a structured plan's removal
   * ('structured'), read from a recovered-weights file (`path`, made
   * absolute) or computed at export time on calibration data (`calibration`, `tokens`).
   */
  recovered?: {
    kind: 'head' | 'weight' | 'structured';
    path?: string;
    calibration?: string;
    tokens?: number;
  };
  /**
   * A structured plan applied (export --structured; `sha256` / `path` are then the plan file's): each layer's MLP
   * width kept and the layers whose attention / MLP block was skipped. `removed` lists the heads it removed.
   */
  structured?: { widths: number[]; skippedAttention: number[]; skippedMlp: number[] };
}

export interface AppliedWeightMask {
  /** sha256 of the weight-mask file's bytes. */
  sha256: string;
  path?: string;
  /** Share of the prunable weights the mask prunes. */
  sparsity: number;
}

export interface PruningStep {
  /** The model the heads were removed from. */
  source: { path: string; fingerprint: string; shape: ModelShape };
  mask: AppliedMask;
}

export interface Provenance {
  format: 'geneprune-provenance';
  version: 1;
  /** Every pruning that led to this model, oldest first; the last one's source is the direct parent. */
  lineage: PruningStep[];
}

/** The provenance of `source` pruned with `mask`: the source's own lineage plus this step. */
export async function provenanceOfPruning(source: ModelSpec, mask: AppliedMask): Promise<Provenance> {
  // Paths as typed would mean nothing from another working directory: files on disk are recorded absolute
  // (a random model's `random:…` source is not a path and stays as it is).
  const absolute = (p: string) => (existsSync(p) ? resolve(p) : p);
  const step: PruningStep = {
    source: {
      path: absolute(source.source),
      fingerprint: await modelFingerprint(source),
      shape: modelShape(source.config),
    },
    mask: {
      ...mask,
      ...(mask.path ? { path: absolute(mask.path) } : {}),
      removed: [...mask.removed],
      ...(mask.recovered
        ? {
            recovered: {
              ...mask.recovered,
              ...(mask.recovered.path ? { path: absolute(mask.recovered.path) } : {}),
            },
          }
        : {}),
      ...(mask.weightMask
        ? {
            weightMask: {
              ...mask.weightMask,
              ...(mask.weightMask.path ? { path: absolute(mask.weightMask.path) } : {}),
            },
          }
        : {}),
    },
  };
  return {
    format: 'geneprune-provenance',
    version: 1,
    lineage: [...(source.provenance?.lineage ?? []), step],
  };
}

/** The pruning step whose source has fingerprint `fingerprint`, if this model descends from it. */
export function prunedFrom(spec: ModelSpec, fingerprint: string): PruningStep | undefined {
  return spec.provenance?.lineage.find((s) => s.source.fingerprint === fingerprint);
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);
const isCounts = (v: unknown): v is number[] =>
  Array.isArray(v) && v.every((n) => Number.isInteger(n) && n >= 0);

/** True when `v` has every field of a ModelShape with the right types (for shapes read from files). */
export function isModelShape(v: unknown): v is ModelShape {
  if (!isObject(v)) return false;
  const scalars = ['numLayers', 'hiddenSize', 'headDim', 'vocabSize'] as const;
  if (!scalars.every((k) => Number.isInteger(v[k]))) return false;
  if (!isCounts(v.queryHeads) || !isCounts(v.kvHeads)) return false;
  return v.kvHeadOfQuery === undefined || (Array.isArray(v.kvHeadOfQuery) && v.kvHeadOfQuery.every(isCounts));
}

/** Checks a parsed provenance object; returns a reason when it is malformed. */
export function provenanceProblem(v: unknown): string | undefined {
  if (!isObject(v) || v.format !== 'geneprune-provenance') return 'not a geneprune provenance record';
  if (v.version !== 1) return `unsupported provenance version ${JSON.stringify(v.version)}`;
  if (!Array.isArray(v.lineage)) return 'provenance has no "lineage" list';
  for (const step of v.lineage) {
    const ok =
      isObject(step) &&
      isObject(step.source) &&
      typeof step.source.path === 'string' &&
      typeof step.source.fingerprint === 'string' &&
      isModelShape(step.source.shape) &&
      isObject(step.mask) &&
      Array.isArray(step.mask.removed) &&
      step.mask.removed.every((r) => typeof r === 'string') &&
      (step.mask.sha256 === undefined || typeof step.mask.sha256 === 'string') &&
      (step.mask.weightMask === undefined ||
        (isObject(step.mask.weightMask) &&
          typeof step.mask.weightMask.sha256 === 'string' &&
          typeof step.mask.weightMask.sparsity === 'number'));
    if (!ok) return 'provenance lineage holds a malformed step';
  }
  return undefined;
}
