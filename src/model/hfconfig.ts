/**
 * Typed reads of a Hugging Face config.json, each failing in one line that names the file and the key; the
 * `layer_types` list the sliding-window families share (llama.ts's qwen2, gemma2, qwen3); and two tensor helpers
 * for checkpoints laid out unlike the spec (`derivedTensor`, `transposedColumns`). Every Hugging Face family maps
 * its config through these (the rotary decoders also through llama.ts's decoderSizesFromHf, perLayerHeadsFromHf
 * and rotaryDecoderConfigFromHf, which read the keys they share).
 */
import { fileError, type GenepruneError } from '../errors.js';
import type { Activation } from './spec.js';

/** transformers' activation names → the spec's. */
export const HF_ACTIVATIONS: Readonly<Record<string, Activation>> = {
  silu: 'silu',
  swish: 'silu',
  gelu: 'gelu',
  gelu_pytorch_tanh: 'gelu_tanh',
  gelu_new: 'gelu_tanh',
  relu: 'relu',
};

/** The spec's activations → the names the rotary decoders' config.json write (gelu_tanh as transformers' own). */
export const ACTIVATION_TO_HF: Readonly<Record<Activation, string>> = {
  silu: 'silu',
  gelu: 'gelu',
  gelu_tanh: 'gelu_pytorch_tanh',
  relu: 'relu',
};

export interface ConfigReader {
  readonly json: Record<string, unknown>;
  readonly path: string;
  fail(message: string): GenepruneError;
  present(key: string): boolean;
  /**
   * An integer ≥ min; the fallback when absent (missing without a fallback is an error). Only exact (safe)
   * integers: 1e300 is an integer to JavaScript but no size a checkpoint can have.
   */
  int(key: string, fallback?: number, min?: number): number;
  /** A positive finite number. */
  positive(key: string, fallback: number): number;
  bool(key: string, fallback: boolean): boolean;
  /** A string among `allowed` (all strings when omitted). */
  string(key: string, fallback: string, allowed?: readonly string[]): string;
  /** The spec activation of a transformers activation key. */
  activation(key: string, fallback: string): Activation;
  /** A token id (first of a list), undefined when absent or not an id. */
  tokenId(key: string): number | undefined;
}

export function configReader(json: Record<string, unknown>, path: string): ConfigReader {
  const fail = (message: string) => fileError(path, message);
  const present = (key: string) => json[key] !== undefined && json[key] !== null;
  const string = (key: string, fallback: string, allowed?: readonly string[]): string => {
    const v = present(key) ? json[key] : fallback;
    if (typeof v !== 'string') throw fail(`"${key}" must be a string, got ${JSON.stringify(v)}`);
    if (allowed && !allowed.includes(v)) {
      throw fail(`"${key}" ${JSON.stringify(v)} is not supported (supported: ${allowed.join(', ')})`);
    }
    return v;
  };
  return {
    json,
    path,
    fail,
    present,
    int(key, fallback, min = 1) {
      if (!present(key)) {
        if (fallback === undefined) throw fail(`"${key}" is missing`);
        return fallback;
      }
      const v = json[key];
      if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) {
        throw fail(`"${key}" must be an integer ≥ ${min}, got ${JSON.stringify(v)}`);
      }
      return v;
    },
    positive(key, fallback) {
      if (!present(key)) return fallback;
      const v = json[key];
      if (typeof v !== 'number' || !(v > 0) || !Number.isFinite(v)) {
        throw fail(`"${key}" must be a positive number, got ${JSON.stringify(v)}`);
      }
      return v;
    },
    bool(key, fallback) {
      if (!present(key)) return fallback;
      if (typeof json[key] !== 'boolean') {
        throw fail(`"${key}" must be true or false, got ${JSON.stringify(json[key])}`);
      }
      return json[key] as boolean;
    },
    string,
    activation(key, fallback) {
      const name = string(key, fallback);
      const act = HF_ACTIVATIONS[name];
      if (!act) {
        throw fail(
          `${key} ${JSON.stringify(name)} is not supported (supported: ${Object.keys(HF_ACTIVATIONS).join(', ')})`,
        );
      }
      return act;
    },
    tokenId(key) {
      const v = json[key];
      const id = Array.isArray(v) ? v[0] : v;
      return Number.isInteger(id) && (id as number) >= 0 ? (id as number) : undefined;
    },
  };
}

const SLIDING = 'sliding_attention';
const FULL = 'full_attention';

/**
 * config.json's `layer_types` (newer transformers write it for models that mix sliding-window and global layers) as
 * one flag a layer, true where it says sliding_attention; undefined when the key is absent or null, so that each
 * family applies its own rule then. Other entries (chunked_attention …) are refused: no graph here runs them.
 */
export function layerTypes(r: ConfigReader, numLayers: number): boolean[] | undefined {
  if (!r.present('layer_types')) return undefined;
  const types = r.json.layer_types;
  if (!Array.isArray(types) || types.length !== numLayers) {
    throw r.fail(`"layer_types" must list ${numLayers} layer types, one per layer`);
  }
  return types.map((t, l) => {
    if (t !== SLIDING && t !== FULL) {
      throw r.fail(
        `"layer_types"[${l}] ${JSON.stringify(t)} is not supported (supported: ${SLIDING}, ${FULL})`,
      );
    }
    return t === SLIDING;
  });
}

/** The inverse of layerTypes: config.json's layer_types for per-layer sliding flags. */
export function layerTypesOf(sliding: readonly boolean[]): string[] {
  return sliding.map((s) => (s ? SLIDING : FULL));
}

/** A tensor derived from another on load (a slice, a transpose), keeping its storage dtype. */
export function derivedTensor(
  shape: readonly number[],
  base: { readonly dtype: string; load(): Promise<Float32Array> },
  transform: (data: Float32Array) => Float32Array,
): { shape: readonly number[]; dtype: string; load(): Promise<Float32Array> } {
  return { shape, dtype: base.dtype, load: async () => transform(await base.load()) };
}

/** Columns [c0, c1) of a row-major [rows, cols] matrix, transposed: [c1 − c0, rows]. */
export function transposedColumns(
  data: Float32Array,
  rows: number,
  cols: number,
  c0: number,
  c1: number,
): Float32Array {
  const out = new Float32Array((c1 - c0) * rows);
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    for (let j = c0; j < c1; j++) out[(j - c0) * rows + r] = data[base + j];
  }
  return out;
}
