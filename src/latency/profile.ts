/**
 * The latency model: what a decoder's prefill forward costs on one device, as measured tables (latency/calibrate.ts
 * measures them), and the prediction for any structured shape of the model (a StructuredPlan's LayerShapes):
 *
 *   seconds(shapes) = base + layerScale · (Σ_i attention(heads_i, kvHeads_i) + Σ_i mlp(width_i))
 *
 * attention(h) and mlp(w) are read from the tables (the measured times made non-decreasing: monotoneFit) by linear
 * interpolation between levels (a level past
 * the last measured one extrapolates the last segment), 0 for a block that does not run (a skipped block, no heads,
 * no channels: physical removal drops it). A layer's attention is measured with the KV heads a uniform GQA keep of
 * its heads implies (`kvHeadsOfUniformKeep`); a shape with other KV counts is corrected by `kvHeadSeconds` per KV
 * head (the k and v projections of one KV head). `base` is everything that is not a layer: embedding, final norm,
 * output head and loss, and the session's per-run overhead. `layerScale` is what a layer costs inside the whole model
 * over what it costs timed alone (1 with the difference base; see PrefillTables.baseMethod).
 *
 * A profile is plain JSON, stored with a run (so a search's latency budget is priced by the numbers the run
 * measured) and read back only for the model shape, device, threads and dtype it was measured on.
 */
import { readFile } from 'node:fs/promises';
import { fileError, GenepruneError } from '../errors.js';
import { type LayerShapes, layerShapes, type StructuredPlan } from '../masks/structured.js';
import { intermediateOf, type ModelConfig } from '../model/spec.js';
import { writeJsonAtomic } from '../util/fs.js';

export const LATENCY_PROFILE_FORMAT = 'geneprune-latency-profile';
export const LATENCY_PROFILE_VERSION = 1;

/** The shape a profile prices: what must match for its tables to apply to a model. */
export interface ProfileShape {
  family: string;
  modelType: string;
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  /** The dense MLP width of each layer. */
  intermediate: number[];
  vocabSize: number;
  tieEmbeddings: boolean;
}

export type BaseMethod = 'difference' | 'direct';

export interface AttentionLevel {
  /** Query heads kept in the layer, and the KV heads that keep implies (kvHeadsOfUniformKeep). */
  heads: number;
  kvHeads: number;
  /** What the model prices: the measured times made non-decreasing (monotoneFit). */
  seconds: number;
  /** The time measured at this level (absent in profiles written by hand). */
  measured?: number;
}

export interface MlpLevel {
  width: number;
  seconds: number;
  measured?: number;
}

/** Prefill tables: one forward of `batch` rows of `seq` tokens. */
export interface PrefillTables {
  /** Seconds of everything that is not a layer (see the module comment). */
  base: number;
  /**
   * How base and layerScale were found. 'difference': base = dense forward − Σ layer tables, layerScale 1.
   * 'direct': base = a model without layers (one layer of no heads and width 1, less that layer), layerScale =
   * (dense forward − base) / Σ layer tables. Both make the dense prediction the measured dense forward.
   */
  baseMethod: BaseMethod;
  layerScale: number;
  /** Ascending heads, 0 … numHeads (0 costs 0). */
  attention: AttentionLevel[];
  /** Seconds one KV head's k and v projections add to a layer (corrects shapes with other KV counts). */
  kvHeadSeconds: number;
  /** Ascending widths, 0 … the dense width (0 costs 0). */
  mlp: MlpLevel[];
  /** The dense model's measured forward, for reference (the difference method makes its prediction equal it). */
  denseSeconds: number;
  /** Σ of the layer tables for the dense model (what layerScale scales). */
  denseLayerSeconds: number;
  /** The base a model without layers measured ('direct'), whichever method is used. */
  directBase: number;
  /** Other measured numbers kept for the record (per-run block overhead, ...). */
  notes?: Record<string, number>;
}

export interface LatencyProfile {
  format: typeof LATENCY_PROFILE_FORMAT;
  version: typeof LATENCY_PROFILE_VERSION;
  /** The geneprune version that measured it, and when (ISO 8601). */
  geneprune: string;
  measuredAt: string;
  device: string;
  /** Intra-op threads the sessions ran with (0 = ONNX Runtime's default: every physical core). */
  threads: number;
  dtype: string;
  batch: number;
  seq: number;
  /** Timed rounds (every level once each) after warm-up rounds; each level's runs reduced to median or minimum. */
  runs: number;
  warmup: number;
  statistic: 'median' | 'min';
  /** Independently built sessions each level was timed in, median kept (absent: 1, profiles measured before). */
  replicas?: number;
  shape: ProfileShape;
  prefill: PrefillTables;
}

/** The profile shape of a (dense) model config. */
export function profileShapeOf(config: ModelConfig): ProfileShape {
  return {
    family: config.family,
    modelType: config.modelType,
    hiddenSize: config.hiddenSize,
    numLayers: config.numLayers,
    numHeads: config.numHeads,
    numKvHeads: config.numKvHeads,
    headDim: config.headDim,
    intermediate: Array.from({ length: config.numLayers }, (_, i) => intermediateOf(config, i)),
    vocabSize: config.vocabSize,
    tieEmbeddings: config.tieEmbeddings,
  };
}

/**
 * KV heads a layer of `heads` query heads over `kvHeads` KV heads keeps when `kept` query heads are kept spread
 * evenly over the KV groups: every group keeps one before any keeps two, so min(kept, kvHeads).
 */
export function kvHeadsOfUniformKeep(kept: number, kvHeads: number): number {
  return Math.min(kept, kvHeads);
}

/**
 * The non-decreasing sequence nearest to `ys` in least squares (pool-adjacent-violators): more heads or channels
 * never cost less, so a level measured below a smaller one is noise (the machine's load), pooled with its
 * neighbours rather than priced as a saving.
 */
export function monotoneFit(ys: readonly number[]): number[] {
  const blocks: Array<{ sum: number; count: number }> = [];
  for (const y of ys) {
    blocks.push({ sum: y, count: 1 });
    while (blocks.length > 1) {
      const b = blocks[blocks.length - 1];
      const a = blocks[blocks.length - 2];
      if (a.sum / a.count <= b.sum / b.count) break;
      blocks.splice(-2, 2, { sum: a.sum + b.sum, count: a.count + b.count });
    }
  }
  return blocks.flatMap((b) => Array<number>(b.count).fill(b.sum / b.count));
}

/** y at x on the polyline through (xs, ys) (xs ascending); past the ends the end segments extend. */
export function interpolate(xs: readonly number[], ys: readonly number[], x: number): number {
  const n = xs.length;
  if (n === 0) throw new GenepruneError('internal', 'interpolate: no levels');
  if (n === 1) return ys[0];
  let j = 1;
  while (j < n - 1 && xs[j] < x) j++;
  const t = (x - xs[j - 1]) / (xs[j] - xs[j - 1]);
  return ys[j - 1] + t * (ys[j] - ys[j - 1]);
}

/** Seconds of one layer's attention block with `heads` query and `kvHeads` KV heads (0 heads: 0). */
export function attentionSeconds(tables: PrefillTables, heads: number, kvHeads: number): number {
  if (heads <= 0) return 0;
  const at = tables.attention;
  const s = interpolate(
    at.map((l) => l.heads),
    at.map((l) => l.seconds),
    heads,
  );
  const kvAt = interpolate(
    at.map((l) => l.heads),
    at.map((l) => l.kvHeads),
    heads,
  );
  return Math.max(0, s + (kvHeads - kvAt) * tables.kvHeadSeconds);
}

/** Seconds of one layer's MLP block of width `width` (0: 0). */
export function mlpSeconds(tables: PrefillTables, width: number): number {
  if (width <= 0) return 0;
  return Math.max(
    0,
    interpolate(
      tables.mlp.map((l) => l.width),
      tables.mlp.map((l) => l.seconds),
      width,
    ),
  );
}

/** The predicted prefill seconds of a model of these layer shapes (one forward of the profile's batch × seq). */
export function predictSeconds(profile: LatencyProfile, shapes: LayerShapes): number {
  const t = profile.prefill;
  const L = shapes.heads.length;
  if (L !== profile.shape.numLayers || shapes.widths.length !== L) {
    throw new GenepruneError(
      'internal',
      `latency model: shapes of ${L} layers, profile measured for ${profile.shape.numLayers}`,
    );
  }
  let layers = 0;
  for (let i = 0; i < L; i++) {
    if (shapes.attentionRuns[i]) layers += attentionSeconds(t, shapes.heads[i], shapes.kvHeads[i]);
    if (shapes.mlpRuns[i]) layers += mlpSeconds(t, shapes.widths[i]);
  }
  return t.base + t.layerScale * layers;
}

/** The predicted prefill seconds of a structured plan of the model (a latency budget's price). */
export function planSeconds(profile: LatencyProfile, config: ModelConfig, plan: StructuredPlan): number {
  return predictSeconds(profile, layerShapes(config, plan));
}

/** The profile with base and layerScale found by `method` (from the numbers it holds; see PrefillTables). */
export function withBaseMethod(profile: LatencyProfile, method: BaseMethod): LatencyProfile {
  const t = profile.prefill;
  const base = method === 'difference' ? t.denseSeconds - t.denseLayerSeconds : t.directBase;
  const layerScale =
    method === 'difference' || t.denseLayerSeconds <= 0 ? 1 : (t.denseSeconds - base) / t.denseLayerSeconds;
  return { ...profile, prefill: { ...t, baseMethod: method, base, layerScale } };
}

/** Dense time over pruned time, as the latency model predicts it. */
export function predictedSpeedup(profile: LatencyProfile, dense: LayerShapes, pruned: LayerShapes): number {
  return predictSeconds(profile, dense) / predictSeconds(profile, pruned);
}

/**
 * The layer shapes of a model config as it stands (a physically pruned model's per-layer heads and widths): what
 * predictSeconds prices for a pruned model read from disk. `layers` pads the list with empty layers (no heads, no
 * MLP) up to the dense model's count, for a pruned model whose removed layers are gone: the dense layers all cost
 * the same, so which ones went does not change the price.
 */
export function layerShapesOfConfig(config: ModelConfig, layers = config.numLayers): LayerShapes {
  const L = config.numLayers;
  if (layers < L) throw new GenepruneError('internal', `cannot pad ${L} layers down to ${layers}`);
  const pad = <T>(v: T[], empty: T): T[] => [...v, ...Array<T>(layers - L).fill(empty)];
  const widths = Array.from({ length: L }, (_, i) => intermediateOf(config, i));
  return {
    heads: pad([...config.headsPerLayer], 0),
    kvHeads: pad([...config.kvHeadsPerLayer], 0),
    widths: pad(widths, 0),
    attentionRuns: pad(
      config.headsPerLayer.map((h) => h > 0),
      false,
    ),
    mlpRuns: pad(
      widths.map((w) => w > 0),
      false,
    ),
  };
}

/** What a profile must have been measured for to price a model here. */
export interface ProfileExpectation {
  config: ModelConfig;
  device?: string;
  threads?: number;
  dtype?: string;
  batch?: number;
  seq?: number;
}

/** Throws (naming `where`) when the profile was measured for another model shape or other settings. */
export function checkProfileFits(profile: LatencyProfile, expect: ProfileExpectation, where: string): void {
  const want = profileShapeOf(expect.config);
  for (const key of Object.keys(want) as (keyof ProfileShape)[]) {
    if (JSON.stringify(profile.shape[key]) !== JSON.stringify(want[key])) {
      throw fileError(
        where,
        `latency profile measured for another model shape (${key} ${JSON.stringify(profile.shape[key])}, this model has ${JSON.stringify(want[key])})`,
      );
    }
  }
  for (const key of ['device', 'threads', 'dtype', 'batch', 'seq'] as const) {
    const v = expect[key];
    if (v !== undefined && profile[key] !== v) {
      throw fileError(
        where,
        `latency profile measured with ${key} ${JSON.stringify(profile[key])}, this run uses ${JSON.stringify(v)}`,
      );
    }
  }
}

const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

/** Checks a parsed profile's structure; throws naming `where` at the first problem. */
export function validateProfile(value: unknown, where: string): LatencyProfile {
  const bad = (what: string): never => {
    throw fileError(where, `not a latency profile: ${what}`);
  };
  if (typeof value !== 'object' || value === null) bad('not a JSON object');
  const p = value as Record<string, unknown>;
  if (p.format !== LATENCY_PROFILE_FORMAT) bad(`format must be "${LATENCY_PROFILE_FORMAT}"`);
  if (p.version !== LATENCY_PROFILE_VERSION) bad(`version ${JSON.stringify(p.version)} is not supported`);
  for (const k of ['threads', 'batch', 'seq', 'runs', 'warmup'])
    if (!isNum(p[k])) bad(`${k} must be a number`);
  if (p.replicas !== undefined && !(isNum(p.replicas) && p.replicas >= 1))
    bad('replicas must be a number ≥ 1');
  for (const k of ['geneprune', 'measuredAt', 'device', 'dtype'])
    if (typeof p[k] !== 'string') bad(`${k} must be a string`);
  const shape = p.shape as Record<string, unknown> | undefined;
  if (typeof shape !== 'object' || shape === null) bad('shape missing');
  const s = shape as Record<string, unknown>;
  for (const k of ['hiddenSize', 'numLayers', 'numHeads', 'numKvHeads', 'headDim', 'vocabSize'])
    if (!isNum(s[k])) bad(`shape.${k} must be a number`);
  if (!Array.isArray(s.intermediate) || s.intermediate.length !== s.numLayers || !s.intermediate.every(isNum))
    bad('shape.intermediate must give every layer a width');
  const t = p.prefill as Record<string, unknown> | undefined;
  if (typeof t !== 'object' || t === null) bad('prefill tables missing');
  const tb = t as Record<string, unknown>;
  for (const k of ['base', 'kvHeadSeconds', 'denseSeconds'])
    if (!isNum(tb[k])) bad(`prefill.${k} must be a number`);
  const levels = (name: string, x: string, keys: string[]) => {
    const v = tb[name];
    if (!Array.isArray(v) || v.length < 2) bad(`prefill.${name} must list at least two levels`);
    let last = Number.NEGATIVE_INFINITY;
    for (const l of v as Record<string, unknown>[]) {
      if (typeof l !== 'object' || l === null || !keys.every((k) => isNum(l[k])))
        bad(`prefill.${name} levels need ${keys.join(', ')}`);
      if ((l[x] as number) <= last) bad(`prefill.${name} levels must ascend in ${x}`);
      last = l[x] as number;
    }
  };
  levels('attention', 'heads', ['heads', 'kvHeads', 'seconds']);
  levels('mlp', 'width', ['width', 'seconds']);
  return value as LatencyProfile;
}

/** Reads a stored profile; when `expect` is given, refuses one measured for another shape or settings. */
export async function readLatencyProfile(path: string, expect?: ProfileExpectation): Promise<LatencyProfile> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw fileError(path, 'cannot read the latency profile', e);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw fileError(path, 'the latency profile is not valid JSON');
  }
  const profile = validateProfile(parsed, path);
  if (expect) checkProfileFits(profile, expect, path);
  return profile;
}

export async function writeLatencyProfile(path: string, profile: LatencyProfile): Promise<void> {
  await writeJsonAtomic(path, profile);
}
