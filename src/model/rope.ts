/**
 * Rotary scaling (Hugging Face `rope_scaling`, or `rope_parameters` in newer transformers): what config.json says,
 * checked, and the inverse frequencies and cos/sin factor each kind gives.
 *
 * Kinds, with θ = rope_theta, d = head_dim, f_j = θ^(−2j/d) for j < d/2 (the unscaled frequencies):
 *   linear   f_j / factor (positions squeezed by factor).
 *   dynamic  NTK: θ' = θ·(factor·L/max − (factor − 1))^(d/(d−2)) once the sequence length L exceeds
 *            max_position_embeddings, f_j otherwise. Graphs here never run positions past max_position_embeddings,
 *            so dynamic is exactly the unscaled frequencies everywhere it runs.
 *   llama3   Llama 3.1+: wavelength λ_j = 2π/f_j against the original context C: λ < C/high_freq_factor keeps f_j,
 *            λ > C/low_freq_factor divides it by factor, and between them s = (C/λ − low)/(high − low) blends
 *            (1 − s)·f_j/factor + s·f_j.
 *   yarn     each dimension blends f_j/factor and f_j by a ramp over the dimensions between the correction
 *            dimensions of beta_fast and beta_slow rotations in the original context; cos and sin are also multiplied
 *            by an attention factor (0.1·ln(factor) + 1 unless given).
 *   longrope LongRoPE (Phi-3 / Phi-3.5 / Phi-4-mini; `su` is its old name; read by phi3.ts through
 *            longropeScalingFromHf, refused by ropeSettingsFromHf for every other family): f_j / s_j with s the
 *            short_factor list while the sequence (the largest position + 1) stays within the original context,
 *            the long_factor list for every position once it exceeds it; cos and sin are multiplied by an attention
 *            factor (given, else √(1 + ln(factor)/ln(original)) when factor > 1, else 1). The switch depends on the
 *            run's length, so graphs hold both tables and choose at run time (decoder.ts).
 *
 * With partial rotary (ModelConfig.rotaryDim < headDim, Phi-4-mini) d above is rotaryDim: only the first rotaryDim
 * dimensions of each head rotate.
 */
import type { GenepruneError } from '../errors.js';

export const ROPE_SCALING_KINDS = ['linear', 'dynamic', 'llama3', 'yarn'] as const;

/** Where config.json held the scaling, and its object as read: an export writes it back unchanged. */
export interface RopeScalingSource {
  key: 'rope_scaling' | 'rope_parameters';
  value: Record<string, unknown>;
}

export type RopeScaling =
  | { kind: 'linear'; factor: number; source: RopeScalingSource }
  | { kind: 'dynamic'; factor: number; source: RopeScalingSource }
  | {
      kind: 'llama3';
      factor: number;
      lowFreqFactor: number;
      highFreqFactor: number;
      originalMaxPositions: number;
      source: RopeScalingSource;
    }
  | {
      kind: 'yarn';
      factor: number;
      originalMaxPositions: number;
      betaFast: number;
      betaSlow: number;
      /** The cos/sin multiplier, resolved (given, from mscale / mscale_all_dim, or 0.1·ln(factor) + 1). */
      attentionFactor: number;
      /** Round the correction range outward to whole dimensions (transformers' default). */
      truncate: boolean;
      source: RopeScalingSource;
    }
  | {
      kind: 'longrope';
      /** The context scale: given, else max_position_embeddings / original (only the attention factor reads it). */
      factor: number;
      /** Per-frequency divisors (rotaryDim/2 each): short within the original context, long beyond it. */
      shortFactor: number[];
      longFactor: number[];
      /** The original context: sequences longer than this use longFactor. */
      originalMaxPositions: number;
      /** The cos/sin multiplier, resolved. */
      attentionFactor: number;
      source: RopeScalingSource;
    };

/** What a family's config.json says about rotary embeddings: the base and the scaling, if any. */
export interface RopeSettings {
  theta: number;
  scaling?: RopeScaling;
}

/**
 * Reads rope_theta, rope_scaling and rope_parameters (and refuses partial_rotary_factor ≠ 1: these families rotate
 * whole heads). `maxPositions` is max_position_embeddings (yarn's defaults come from it).
 */
export function ropeSettingsFromHf(
  json: Record<string, unknown>,
  maxPositions: number,
  fail: (message: string) => GenepruneError,
): RopeSettings {
  const present = (v: unknown) => v !== undefined && v !== null;
  const positiveNumber = (v: unknown, what: string): number => {
    if (typeof v !== 'number' || !(v > 0) || !Number.isFinite(v)) {
      throw fail(`${what} must be a positive number, got ${JSON.stringify(v)}`);
    }
    return v;
  };
  let theta = present(json.rope_theta) ? positiveNumber(json.rope_theta, '"rope_theta"') : 10000;
  let scaling: RopeScaling | undefined;
  for (const key of ['rope_scaling', 'rope_parameters'] as const) {
    const value = json[key];
    if (!present(value)) continue;
    if (typeof value !== 'object' || Array.isArray(value)) throw fail(`"${key}" must be an object or null`);
    const r = value as Record<string, unknown>;
    if (key === 'rope_parameters' && present(r.rope_theta)) {
      theta = positiveNumber(r.rope_theta, 'rope_parameters.rope_theta');
    }
    if (key === 'rope_parameters' && present(r.partial_rotary_factor)) {
      refusePartial(r.partial_rotary_factor, 'rope_parameters.partial_rotary_factor', fail);
    }
    const kind = r.rope_type ?? r.type ?? 'default';
    if (kind === 'default') continue;
    if (typeof kind !== 'string' || !(ROPE_SCALING_KINDS as readonly string[]).includes(kind)) {
      throw fail(
        `${key} type ${JSON.stringify(kind)} is not supported (supported: default, ${ROPE_SCALING_KINDS.join(', ')})`,
      );
    }
    if (scaling) {
      throw fail(
        `both rope_scaling and rope_parameters scale the rotary embedding: give one (transformers would read only one of them)`,
      );
    }
    scaling = parseScaling(
      kind as (typeof ROPE_SCALING_KINDS)[number],
      { key, value: r },
      maxPositions,
      fail,
    );
  }
  if (present(json.partial_rotary_factor)) {
    refusePartial(json.partial_rotary_factor, '"partial_rotary_factor"', fail);
  }
  return scaling ? { theta, scaling } : { theta };
}

function refusePartial(v: unknown, what: string, fail: (message: string) => GenepruneError): void {
  if (v !== 1) {
    throw fail(`${what} ${JSON.stringify(v)} is not supported (rotary embedding over whole heads only, 1)`);
  }
}

function parseScaling(
  kind: (typeof ROPE_SCALING_KINDS)[number],
  source: RopeScalingSource,
  maxPositions: number,
  fail: (message: string) => GenepruneError,
): RopeScaling {
  const r = source.value;
  const where = (field: string) => `${source.key}.${field} (${kind})`;
  const has = (field: string) => r[field] !== undefined && r[field] !== null;
  const positive = (field: string, fallback?: number): number => {
    if (!has(field)) {
      if (fallback === undefined) throw fail(`${where(field)} is missing`);
      return fallback;
    }
    const v = r[field];
    if (typeof v !== 'number' || !(v > 0) || !Number.isFinite(v)) {
      throw fail(`${where(field)} must be a positive number, got ${JSON.stringify(v)}`);
    }
    return v;
  };
  const positiveInt = (field: string, fallback?: number): number => {
    const v = positive(field, fallback);
    if (!Number.isInteger(v)) throw fail(`${where(field)} must be an integer, got ${JSON.stringify(v)}`);
    return v;
  };
  switch (kind) {
    case 'linear':
    case 'dynamic':
      return { kind, factor: positive('factor'), source };
    case 'llama3': {
      const lowFreqFactor = positive('low_freq_factor');
      const highFreqFactor = positive('high_freq_factor');
      if (!(highFreqFactor > lowFreqFactor)) {
        throw fail(
          `${where('high_freq_factor')} ${highFreqFactor} must exceed low_freq_factor ${lowFreqFactor} (the smoothed band lies between them)`,
        );
      }
      return {
        kind,
        factor: positive('factor'),
        lowFreqFactor,
        highFreqFactor,
        originalMaxPositions: positiveInt('original_max_position_embeddings'),
        source,
      };
    }
    case 'yarn': {
      const originalMaxPositions = positiveInt('original_max_position_embeddings', maxPositions);
      // Taken as given, as transformers ≥ 5 and the YaRN paper do (4.4x–4.5x replaced it by max_position_embeddings /
      // original_max_position_embeddings whenever the latter was set: a different model when the two disagree).
      const factor = positive('factor');
      // transformers reads beta_fast/beta_slow with `or`: 0 (or absent) means the paper's 32 and 1.
      const beta = (field: string, fallback: number) =>
        r[field] === 0 ? fallback : positive(field, fallback);
      const betaFast = beta('beta_fast', 32);
      const betaSlow = beta('beta_slow', 1);
      if (has('truncate') && typeof r.truncate !== 'boolean') {
        throw fail(`${where('truncate')} must be true or false, got ${JSON.stringify(r.truncate)}`);
      }
      let attentionFactor: number;
      if (has('attention_factor')) attentionFactor = positive('attention_factor');
      else {
        // mscale / mscale_all_dim count only when both are set and non-zero (DeepSeek style), as in transformers.
        const mscale = has('mscale') && r.mscale !== 0 ? positive('mscale') : 0;
        const mscaleAllDim = has('mscale_all_dim') && r.mscale_all_dim !== 0 ? positive('mscale_all_dim') : 0;
        attentionFactor =
          mscale && mscaleAllDim
            ? yarnMscale(factor, mscale) / yarnMscale(factor, mscaleAllDim)
            : yarnMscale(factor, 1);
      }
      return {
        kind,
        factor,
        originalMaxPositions,
        betaFast,
        betaSlow,
        attentionFactor,
        truncate: r.truncate !== false,
        source,
      };
    }
  }
}

/** YaRN's attention temperature correction for a context scale s. */
function yarnMscale(scale: number, mscale: number): number {
  return scale <= 1 ? 1 : 0.1 * mscale * Math.log(scale) + 1;
}

/**
 * The inverse frequencies f_j (j < headDim/2) after scaling; see the file's comment. `headDim` is the rotated width
 * (rotaryDim under partial rotary). longrope: the short factors, or the long ones when `long` is set.
 */
export function ropeInverseFrequencies(
  theta: number,
  headDim: number,
  scaling?: RopeScaling,
  long = false,
): Float64Array {
  const half = headDim / 2;
  const inv = new Float64Array(half);
  for (let j = 0; j < half; j++) inv[j] = 1 / theta ** ((2 * j) / headDim);
  if (!scaling || scaling.kind === 'dynamic') return inv;
  if (scaling.kind === 'longrope') {
    const factors = long ? scaling.longFactor : scaling.shortFactor;
    return inv.map((f, j) => f / factors[j]);
  }
  if (scaling.kind === 'linear') return inv.map((f) => f / scaling.factor);
  if (scaling.kind === 'llama3') {
    const { factor, lowFreqFactor: low, highFreqFactor: high, originalMaxPositions: context } = scaling;
    return inv.map((f) => {
      const wavelength = (2 * Math.PI) / f;
      if (wavelength < context / high) return f;
      if (wavelength > context / low) return f / factor;
      const s = (context / wavelength - low) / (high - low);
      return ((1 - s) * f) / factor + s * f;
    });
  }
  // yarn: the dimension index (of headDim/2) at which a frequency turns `rotations` times over the original context.
  const { factor, betaFast, betaSlow, originalMaxPositions: context, truncate } = scaling;
  const correctionDim = (rotations: number) =>
    (headDim * Math.log(context / (rotations * 2 * Math.PI))) / (2 * Math.log(theta));
  let lo = correctionDim(betaFast);
  let hi = correctionDim(betaSlow);
  if (truncate) {
    lo = Math.floor(lo);
    hi = Math.ceil(hi);
  }
  lo = Math.max(lo, 0);
  hi = Math.min(hi, headDim - 1);
  if (lo === hi) hi += 0.001; // transformers' guard against a zero-width ramp
  return inv.map((f, j) => {
    const ramp = Math.min(1, Math.max(0, (j - lo) / (hi - lo)));
    // ramp 0 (fast dimensions) keeps f; ramp 1 (slow ones) interpolates f / factor.
    return (f / factor) * ramp + f * (1 - ramp);
  });
}

/** The factor cos and sin are multiplied by (yarn's attention factor; 1 for every other kind). */
export function ropeCosSinFactor(scaling?: RopeScaling): number {
  return scaling?.kind === 'yarn' || scaling?.kind === 'longrope' ? scaling.attentionFactor : 1;
}

/**
 * A longrope scaling object (rope_type or type "longrope" / "su") as Phi-3's config gives it, checked:
 * short_factor and long_factor of rotaryDim/2 positive numbers; `originalMaxPositions` is the original context the
 * family resolved (phi3.ts: config.json's original_max_position_embeddings); factor given, else
 * max_position_embeddings / original; attention_factor given, else √(1 + ln(factor)/ln(original)) when factor > 1,
 * else 1 — what transformers 5.18 computes.
 */
export function longropeScalingFromHf(
  source: RopeScalingSource,
  dims: { rotaryDim: number; maxPositions: number; originalMaxPositions: number },
  fail: (message: string) => GenepruneError,
): RopeScaling {
  const r = source.value;
  const where = (field: string) => `${source.key}.${field} (longrope)`;
  const has = (field: string) => r[field] !== undefined && r[field] !== null;
  const positive = (field: string): number => {
    const v = r[field];
    if (typeof v !== 'number' || !(v > 0) || !Number.isFinite(v)) {
      throw fail(`${where(field)} must be a positive number, got ${JSON.stringify(v)}`);
    }
    return v;
  };
  const factors = (field: string): number[] => {
    const v = r[field];
    const n = dims.rotaryDim / 2;
    if (!Array.isArray(v) || v.length !== n) {
      throw fail(
        `${where(field)} must list ${n} numbers (one per rotary frequency: rotary dims ${dims.rotaryDim} / 2)`,
      );
    }
    for (const x of v) {
      if (typeof x !== 'number' || !(x > 0) || !Number.isFinite(x)) {
        throw fail(`${where(field)} holds ${JSON.stringify(x)}, not a positive number`);
      }
    }
    return [...(v as number[])];
  };
  const original = dims.originalMaxPositions;
  const factor = has('factor') ? positive('factor') : dims.maxPositions / original;
  const attentionFactor = has('attention_factor')
    ? positive('attention_factor')
    : factor <= 1
      ? 1
      : Math.sqrt(1 + Math.log(factor) / Math.log(original));
  return {
    kind: 'longrope',
    factor,
    shortFactor: factors('short_factor'),
    longFactor: factors('long_factor'),
    originalMaxPositions: original,
    attentionFactor,
    source,
  };
}

/** A one-line description for messages and fingerprints. */
export function ropeScalingText(scaling: RopeScaling): string {
  const { source: _source, ...fields } = scaling;
  return JSON.stringify(fields);
}
