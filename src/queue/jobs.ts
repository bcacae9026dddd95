/**
 * What travels on the queue, and how both ends name it. A search stores each recipe once, under its identity
 * (`geneprune:recipe:<identity>`), beside a manifest of what decides a score: the model's identity (fingerprint
 * and shape, model/identity.ts), the weight roles the masks go to, the metric, the sha256 of the prepared data and
 * the settings that change a number (not the device or threads, which are the evaluator's own). The identity is
 * the sha256 of that manifest. A job then carries only `{ identity, fidelity, masks }` — head, weight and
 * structured (channel, block) masks bit-packed when they are 0/1 — and its result is a RawEvaluation (a non-finite quality written as null
 * with what it was). A worker checks a stored recipe against its manifest and the manifest against the identity
 * (`recipeRefusal`) before it builds anything, so altered data or another model is refused, never scored.
 *
 * Job ids are deterministic — run, identity, fidelity, sha256 of the masks — so posting a job twice is a no-op
 * and a resumed search finds the results of the jobs its killed predecessor posted.
 */
import { createHash } from 'node:crypto';
import type { CandidateMasks } from '../engine/runner.js';
import type { Device } from '../engine/session.js';
import { GenepruneError } from '../errors.js';
import { metricEntry, type QualityMetric } from '../metrics/registry.js';
import type { RawEvaluation } from '../metrics/scorers.js';
import { type ModelIdentity, shapeDifference } from '../model/identity.js';
import { tokenizerPathFor } from '../model/load.js';
import { type Recipe, recipeMetric } from '../search/backend.js';
import type { Fidelity } from '../search/objective.js';
import { toJson } from './recipejson.js';

/** BullMQ's key prefix and queue name: every key geneprune writes starts with `geneprune:`. */
export const QUEUE_PREFIX = 'geneprune';
export const QUEUE_NAME = 'evaluations';
/** The Redis key of a recipe (its manifest beside it). */
export const recipeKey = (identity: string) => `${QUEUE_PREFIX}:recipe:${identity}`;

/** What decides a score, hashed into the identity. */
export interface RecipeManifest {
  version: 1;
  model: ModelIdentity;
  target: { weightRoles?: string[]; structuredMasks?: boolean };
  metric: string;
  /** A block recipe's block (the block-wise weight search's layer). */
  block?: number;
  /** sha256 of the prepared data the scorer reads (token stream, source/target pairs, encoded tasks). */
  data: string;
  /** The options that change a number, as JSON (data, device and threads left out). */
  settings: string;
}

/** What is stored under `recipeKey(identity)`. */
export interface StoredRecipe {
  manifest: RecipeManifest;
  recipe: Recipe;
}

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

/** Drops `key` from an object (undefined stays undefined). */
function without<T extends object>(o: T | undefined, key: keyof T): Omit<T, typeof key> | undefined {
  if (!o) return undefined;
  const { [key]: _x, ...kept } = o;
  return kept;
}

/**
 * What of a recipe is data (hashed apart, so a refusal can say "data" rather than "settings"): a calibration
 * recipe's token stream, pairs and prepared tasks; a block recipe's calibration batches and fixed masks.
 */
function dataOf(recipe: Recipe): unknown {
  if (recipe.kind === 'block')
    return { batches: recipe.batches, fixed: recipe.fixed, bleu: recipe.bleu?.task };
  const o = recipe.options;
  return {
    stream: o.stream,
    pairs: o.pairs,
    bleu: o.bleu?.task,
    choices: o.choices?.task,
    labelled: o.labelled?.prepared,
  };
}

/**
 * What of a recipe changes a number but is not data, as JSON: everything but the data, the model's path and
 * configuration (the fingerprint stands for them) and the engine's device and threads (the evaluator's own).
 */
function settingsOf(recipe: Recipe): string {
  if (recipe.kind === 'block') {
    const { batches: _b, fixed: _f, model: _m, config: _c, engine: _e, bleu, ...rest } = recipe;
    return toJson({ ...rest, bleu: without(bleu, 'task') });
  }
  const { model: _m, config: _c, options, ...rest } = recipe;
  const { stream: _s, pairs: _p, device: _d, threads: _t, bleu, choices, labelled, ...kept } = options;
  return toJson({
    ...rest,
    options: {
      ...kept,
      bleu: without(bleu, 'task'),
      choices: without(choices, 'task'),
      labelled: without(labelled, 'prepared'),
    },
  });
}

/** The recipe as it travels: without the search's device and threads (a worker uses its own). */
export function travellingRecipe(recipe: Recipe): Recipe {
  if (recipe.kind === 'block') return { ...recipe, engine: {} };
  const { device: _d, threads: _t, ...options } = recipe.options;
  return { ...recipe, options };
}

/** The recipe with a worker's own model path, device and threads. */
export function localRecipe(recipe: Recipe, model: string, device?: Device, threads?: number): Recipe {
  const engine = {
    ...(device !== undefined ? { device } : {}),
    ...(threads !== undefined ? { threads } : {}),
  };
  // A generation metric's tokenizer: the one beside this machine's copy of the model, as openModel finds it
  // (the evaluator still checks it decodes the first prompt as the search's did).
  const local = recipe.tokenizer && model !== recipe.model ? tokenizerPathFor(model) : undefined;
  const tokenizer = recipe.tokenizer && local ? { tokenizer: { ...recipe.tokenizer, path: local } } : {};
  if (recipe.kind === 'block')
    return { ...recipe, model, ...tokenizer, engine: { ...recipe.engine, ...engine } };
  return { ...recipe, model, ...tokenizer, options: { ...recipe.options, ...engine } };
}

export function recipeManifest(recipe: Recipe, model: ModelIdentity): RecipeManifest {
  const roles = recipe.kind === 'calibration' ? recipe.target.weightRoles : undefined;
  const structured = recipe.kind === 'calibration' && recipe.target.structuredMasks === true;
  return {
    version: 1,
    model,
    target: {
      ...(roles ? { weightRoles: [...roles] } : {}),
      ...(structured ? { structuredMasks: true } : {}),
    },
    metric: recipeMetric(recipe),
    ...(recipe.kind === 'block' ? { block: recipe.layer } : {}),
    data: sha256(toJson(dataOf(recipe))),
    settings: settingsOf(recipe),
  };
}

/** sha256 of the manifest's JSON, with its fields in a fixed order. */
export function identityOf(m: RecipeManifest): string {
  return sha256(
    toJson({
      version: m.version,
      model: { modelType: m.model.modelType, fingerprint: m.model.fingerprint, shape: m.model.shape },
      target: m.target,
      metric: m.metric,
      ...(m.block !== undefined ? { block: m.block } : {}),
      data: m.data,
      settings: m.settings,
    }),
  );
}

const short = (h: string) => `${h.slice(0, 12)}…`;

/**
 * Why a worker must not score with a stored recipe, or undefined when it may: the recipe's data or settings
 * no longer match the manifest, the manifest does not hash to the job's identity (altered in Redis), or the
 * worker's model is another one (`model`: the identity of what it opened, `modelPath` for the message).
 */
export function recipeRefusal(
  identity: string,
  stored: StoredRecipe,
  model: ModelIdentity,
  modelPath: string,
): string | undefined {
  const m = stored.manifest;
  const code = unqueuedMetric(recipeMetric(stored.recipe));
  if (code) return code;
  const data = sha256(toJson(dataOf(stored.recipe)));
  if (data !== m.data)
    return `data sha256 differs: the recipe's data hash to ${short(data)}, its manifest says ${short(m.data)} (altered in Redis?)`;
  if (settingsOf(stored.recipe) !== m.settings)
    return "settings differ: the recipe's settings are not those of its manifest (altered in Redis?)";
  if (recipeMetric(stored.recipe) !== m.metric)
    return "settings differ: the recipe's metric is not its manifest's";
  const id = identityOf(m);
  if (id !== identity)
    return `the stored manifest hashes to ${short(id)}, not to the job's identity ${short(identity)} (altered in Redis?)`;
  if (model.fingerprint !== m.model.fingerprint) {
    const shape = shapeDifference(m.model.shape, model.shape, 'the search');
    return `model fingerprint differs: the search's ${short(m.model.fingerprint)}, this worker's ${short(model.fingerprint)} (${modelPath}${shape ? `: ${shape}` : ': same shape, different weights'})`;
  }
  return undefined;
}

/**
 * Why a metric cannot go over a queue, or undefined: pass@1 runs the programs the model writes against tests that
 * come with the recipe, so a worker would run code taken from Redis; it stays with `--workers` (this machine).
 */
export function unqueuedMetric(metric: QualityMetric): string | undefined {
  if (!metricEntry(metric).executesCode) return undefined;
  return `--metric ${metric} runs generated programs against the task's tests: not over a queue (workers would run code read from Redis); use --workers`;
}

/** A 0/1 array bit-packed (LSB first), or a float array as its bytes when it holds anything else. */
type PackedArray = { n: number; bits: string } | { n: number; f32: string } | { n: number; u8: string };

export interface EncodedMasks {
  head?: PackedArray;
  weights?: Array<[string, PackedArray]>;
  /** A structured plan's channel_mask and block_mask (masks/structured.ts). */
  channel?: PackedArray;
  block?: PackedArray;
}

function pack(a: Float32Array | Uint8Array): PackedArray {
  // One pass that packs and checks at once, eight entries a byte: this runs for every candidate posted, on
  // masks of millions of entries (a per-entry callback cost ~140 ms a block of a 135M model).
  const n = a.length;
  const bits = new Uint8Array(Math.ceil(n / 8));
  let other = false;
  for (let byte = 0, i = 0; i < n && !other; byte++) {
    let b = 0;
    for (let k = 0; k < 8 && i < n; k++, i++) {
      const x = a[i];
      if (x === 1) b |= 1 << k;
      else if (x !== 0) other = true;
    }
    bits[byte] = b;
  }
  if (other) {
    const bytes = Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('base64');
    return a instanceof Float32Array ? { n, f32: bytes } : { n, u8: bytes };
  }
  return { n, bits: Buffer.from(bits.buffer, bits.byteOffset, bits.byteLength).toString('base64') };
}

function unpack<T extends Float32Array | Uint8Array>(
  p: PackedArray,
  Ctor: new (n: number) => T,
  where: string,
): T {
  if (!Number.isInteger(p?.n) || p.n < 0) throw new GenepruneError('data', 'a bad mask', where);
  const out = new Ctor(p.n);
  if ('bits' in p) {
    const bits = Buffer.from(p.bits, 'base64');
    if (bits.length !== Math.ceil(p.n / 8))
      throw new GenepruneError('data', 'a mask of the wrong length', where);
    for (let i = 0; i < p.n; i++) out[i] = (bits[i >> 3] >> (i & 7)) & 1;
    return out;
  }
  const raw = Buffer.from('f32' in p ? p.f32 : p.u8, 'base64');
  if (raw.length !== p.n * out.BYTES_PER_ELEMENT)
    throw new GenepruneError('data', 'a mask of the wrong length', where);
  new Uint8Array(out.buffer).set(raw);
  return out;
}

export function encodeMasks(m: CandidateMasks): EncodedMasks {
  return {
    ...(m.headMask ? { head: pack(m.headMask) } : {}),
    ...(m.weightMasks
      ? { weights: [...m.weightMasks.entries()].map(([r, w]) => [r, pack(w)] as [string, PackedArray]) }
      : {}),
    ...(m.channelMask ? { channel: pack(m.channelMask) } : {}),
    ...(m.blockMask ? { block: pack(m.blockMask) } : {}),
  };
}

export function decodeMasks(e: EncodedMasks, where: string): CandidateMasks {
  return {
    ...(e.head ? { headMask: unpack(e.head, Float32Array, where) } : {}),
    ...(e.weights
      ? { weightMasks: new Map(e.weights.map(([r, p]) => [r, unpack(p, Uint8Array, where)])) }
      : {}),
    ...(e.channel ? { channelMask: unpack(e.channel, Float32Array, where) } : {}),
    ...(e.block ? { blockMask: unpack(e.block, Float32Array, where) } : {}),
  };
}

/** A job's data: which recipe, which fidelity, which masks. */
export interface JobData {
  identity: string;
  fidelity: Fidelity;
  masks: EncodedMasks;
}

/** A job's result: the RawEvaluation, JSON-safe, and who computed it. */
export interface JobResult {
  /** null when not finite (`nonFinite` says what it was). */
  quality: number | null;
  nonFinite?: string;
  tokens: number;
  forwards: number;
  ms?: number;
  source?: string;
  /** `host:pid` of the worker. */
  worker: string;
}

export function jobResult(r: RawEvaluation, worker: string): JobResult {
  return {
    quality: Number.isFinite(r.quality) ? r.quality : null,
    ...(Number.isFinite(r.quality) ? {} : { nonFinite: String(r.quality) }),
    tokens: r.tokens,
    forwards: r.forwards,
    ...(r.ms !== undefined ? { ms: r.ms } : {}),
    ...(r.source !== undefined ? { source: r.source } : {}),
    worker,
  };
}

export function rawEvaluation(r: JobResult, where: string): RawEvaluation {
  if (!r || typeof r !== 'object' || typeof r.tokens !== 'number' || typeof r.forwards !== 'number')
    throw new GenepruneError('data', 'a job result that is not an evaluation', where);
  const quality = r.quality === null ? Number(r.nonFinite ?? 'NaN') : Number(r.quality);
  return {
    quality,
    tokens: r.tokens,
    forwards: r.forwards,
    ...(r.ms !== undefined ? { ms: r.ms } : {}),
    ...(r.source !== undefined ? { source: r.source } : {}),
  };
}

/**
 * A job's id: run, identity, fidelity and the masks' sha256. BullMQ refuses ids that are whole numbers or hold
 * ':' (the 'g' prefix and '-' separators keep clear of both).
 */
export function jobId(runId: string, identity: string, fidelity: Fidelity, masks: EncodedMasks): string {
  return `g${runId}-${identity.slice(0, 32)}-${fidelity}-${sha256(JSON.stringify(masks)).slice(0, 32)}`;
}

/** A run id from what names a run for --resume (see backend.ts): 16 hex digits. */
export function runIdOf(text: string): string {
  return sha256(text).slice(0, 16);
}
