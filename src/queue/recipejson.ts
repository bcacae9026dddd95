/**
 * Recipes (search/backend.ts) and job payloads as JSON text, for Redis: what a `geneprune worker` on another
 * machine reads to rebuild the search's scorer. Plain JSON cannot hold typed arrays, Maps, bigints or non-finite
 * numbers, which prepared data may contain, so those are written as tagged objects (`{"$typed": "Int32Array",
 * "base64": …}`, `{"$map": [[k, v], …]}`, `{"$bigint": "…"}`, `{"$number": "Infinity"}`) and rebuilt exactly on
 * reading: `fromJson(toJson(x))` is structurally equal to `x` (tested). Only data is ever written — never a
 * function (refused) — so what travels on the queue is data, never code.
 */
import { GenepruneError } from '../errors.js';
import type { Recipe } from '../search/backend.js';

const TYPED = {
  Int8Array,
  Uint8Array,
  Uint8ClampedArray,
  Int16Array,
  Uint16Array,
  Int32Array,
  Uint32Array,
  Float32Array,
  Float64Array,
  BigInt64Array,
  BigUint64Array,
} as const;
type TypedName = keyof typeof TYPED;

function encodeValue(v: unknown, path: string): unknown {
  if (v === null || typeof v === 'string' || typeof v === 'boolean') return v;
  if (typeof v === 'number') return Number.isFinite(v) ? v : { $number: String(v) };
  if (typeof v === 'bigint') return { $bigint: v.toString() };
  if (typeof v === 'undefined') return undefined;
  if (typeof v === 'function' || typeof v === 'symbol')
    throw new GenepruneError('internal', `a recipe holds a ${typeof v} at ${path}: only data can travel`);
  if (ArrayBuffer.isView(v) && !(v instanceof DataView)) {
    const name = v.constructor.name as TypedName;
    if (!(name in TYPED)) throw new GenepruneError('internal', `a recipe holds a ${name} at ${path}`);
    return { $typed: name, base64: Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64') };
  }
  if (v instanceof Map)
    return {
      $map: [...v.entries()].map(([k, x], i) => [
        encodeValue(k, `${path}.key${i}`),
        encodeValue(x, `${path}[${i}]`),
      ]),
    };
  if (Array.isArray(v)) return v.map((x, i) => (x === undefined ? null : encodeValue(x, `${path}[${i}]`)));
  if (typeof v === 'object') {
    const proto = Object.getPrototypeOf(v);
    if (proto !== Object.prototype && proto !== null)
      throw new GenepruneError(
        'internal',
        `a recipe holds a ${proto?.constructor?.name ?? 'class'} object at ${path}`,
      );
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) {
      if (k.startsWith('$'))
        throw new GenepruneError('internal', `a recipe key starts with $ at ${path}.${k}`);
      const e = encodeValue(x, `${path}.${k}`);
      if (e !== undefined) out[k] = e;
    }
    return out;
  }
  throw new GenepruneError('internal', `a recipe holds an unknown value at ${path}`);
}

function decodeValue(v: unknown, where: string): unknown {
  if (v === null || typeof v !== 'object') return v;
  if (Array.isArray(v)) return v.map((x) => decodeValue(x, where));
  const o = v as Record<string, unknown>;
  if ('$typed' in o) {
    const name = o.$typed as TypedName;
    const Ctor = TYPED[name];
    if (!Ctor || typeof o.base64 !== 'string')
      throw new GenepruneError('data', `a bad typed array (${String(name)})`, where);
    const bytes = Buffer.from(o.base64, 'base64');
    const per = Ctor.BYTES_PER_ELEMENT;
    if (bytes.byteLength % per !== 0)
      throw new GenepruneError('data', `a ${name} of ${bytes.byteLength} bytes`, where);
    // Copied into a fresh, aligned buffer: Buffer.from may hand back a slice of a shared pool.
    const copy = new ArrayBuffer(bytes.byteLength);
    new Uint8Array(copy).set(bytes);
    return new Ctor(copy);
  }
  if ('$map' in o) {
    if (!Array.isArray(o.$map)) throw new GenepruneError('data', 'a bad map', where);
    return new Map((o.$map as unknown[][]).map(([k, x]) => [decodeValue(k, where), decodeValue(x, where)]));
  }
  if ('$bigint' in o) return BigInt(String(o.$bigint));
  if ('$number' in o) return Number(o.$number);
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(o)) out[k] = decodeValue(x, where);
  return out;
}

/** Any plain data (objects, arrays, typed arrays, Maps) as JSON text. */
export function toJson(value: unknown): string {
  return JSON.stringify(encodeValue(value, '$'));
}

/** What `toJson` wrote, rebuilt; `where` names the source in errors (a Redis key). */
export function fromJson(text: string, where: string): unknown {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new GenepruneError('data', 'not valid JSON', where);
  }
  return decodeValue(parsed, where);
}

/** A recipe as JSON text. */
export function recipeToJson(recipe: Recipe): string {
  return toJson(recipe);
}

/** A recipe read back, its shape checked (what a worker is given may come from anyone who can write to Redis). */
export function recipeFromJson(text: string, where: string): Recipe {
  const r = fromJson(text, where) as Record<string, unknown> | null;
  const common = !!r && typeof r === 'object' && typeof r.model === 'string' && typeof r.config === 'string';
  const options = r?.options as Record<string, unknown> | null | undefined;
  const calibration =
    common &&
    r.kind === 'calibration' &&
    typeof r.target === 'object' &&
    typeof options === 'object' &&
    options !== null &&
    typeof options.metric === 'string';
  const block =
    common &&
    r.kind === 'block' &&
    typeof r.metric === 'string' &&
    Number.isInteger(r.layer) &&
    Array.isArray(r.matrices) &&
    Array.isArray(r.batches) &&
    Array.isArray(r.fixed) &&
    typeof r.engine === 'object';
  if (!calibration && !block) throw new GenepruneError('data', 'not a geneprune recipe', where);
  return r as unknown as Recipe;
}
