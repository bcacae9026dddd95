/**
 * Storage dtypes of checkpoint tensors and their conversion to and from fp32. Tensors are widened to fp32 on
 * load; with fp16/bf16 compute (graph/weights.ts) the matrices are then narrowed again into the session's data.
 */

export type Dtype = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

export const DTYPE_BYTES: Readonly<Record<Dtype, number>> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
};

export function isDtype(s: unknown): s is Dtype {
  return typeof s === 'string' && Object.hasOwn(DTYPE_BYTES, s);
}

/**
 * The dtypes a model's weights may have. Integer and boolean tensors (quantized or corrupted checkpoints) would
 * be cast to float and evaluated as if they were weights, giving numbers without meaning, so they are refused.
 */
export const WEIGHT_DTYPES: readonly Dtype[] = ['F32', 'F16', 'BF16'];

/** Why a tensor of `dtype` cannot be a weight, or undefined when it can. */
export function weightDtypeProblem(name: string, dtype: Dtype): string | undefined {
  if (WEIGHT_DTYPES.includes(dtype)) return undefined;
  return `tensor ${name} is ${dtype}: weights must be ${WEIGHT_DTYPES.join(', ')} (quantized or integer checkpoints are not supported)`;
}

// Typed-array views below read checkpoint bytes in platform order; every checkpoint format here is little-endian.
if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) {
  throw new Error('geneprune needs a little-endian platform to read checkpoints');
}

let f16Table: Uint32Array | undefined;

/** fp32 bit pattern of every fp16 value; one table lookup per element is the fastest widening in JS. */
function f16ToF32Table(): Uint32Array {
  if (f16Table) return f16Table;
  const table = new Uint32Array(65536);
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  for (let h = 0; h < 65536; h++) {
    const sign = (h & 0x8000) << 16;
    const exp = (h >> 10) & 0x1f;
    const mant = h & 0x3ff;
    if (exp === 0) {
      // zero or subnormal: mant · 2^-24, exact in fp32
      f[0] = mant * 2 ** -24;
      table[h] = (sign | u[0]) >>> 0;
    } else if (exp === 31) {
      table[h] = (sign | 0x7f800000 | (mant << 13)) >>> 0; // inf, or NaN keeping its payload
    } else {
      table[h] = (sign | ((exp - 15 + 127) << 23) | (mant << 13)) >>> 0;
    }
  }
  f16Table = table;
  return table;
}

/** Converts raw little-endian storage bytes of `dtype` to fp32 values. */
export function toFloat32(dtype: Dtype, bytes: Uint8Array): Float32Array {
  const n = bytes.length / DTYPE_BYTES[dtype];
  if (dtype === 'F32' && bytes.byteOffset % 4 === 0)
    return new Float32Array(bytes.buffer, bytes.byteOffset, n);
  const out = new Float32Array(n);
  convertInto(dtype, bytes, out);
  return out;
}

/**
 * Converts raw little-endian storage bytes of `dtype` into `out` (exactly bytes / element size values), so a
 * tensor can be widened chunk by chunk straight into the buffer that keeps it.
 */
export function convertInto(dtype: Dtype, bytes: Uint8Array, out: Float32Array): void {
  const n = bytes.length / DTYPE_BYTES[dtype];
  if (out.length !== n) throw new Error(`convertInto: ${n} ${dtype} values for ${out.length} outputs`);
  // Copy to a fresh aligned buffer when the typed views below could not be laid over `bytes` directly.
  const aligned =
    bytes.byteOffset % DTYPE_BYTES[dtype] === 0
      ? bytes
      : new Uint8Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length));
  const buf = aligned.buffer;
  const off = aligned.byteOffset;
  switch (dtype) {
    case 'F32':
      out.set(new Float32Array(buf, off, n));
      return;
    case 'F16': {
      const src = new Uint16Array(buf, off, n);
      const bits = new Uint32Array(out.buffer, out.byteOffset, n);
      const table = f16ToF32Table();
      for (let i = 0; i < n; i++) bits[i] = table[src[i]];
      return;
    }
    case 'BF16': {
      // bf16 is the top half of an fp32.
      const src = new Uint16Array(buf, off, n);
      const bits = new Uint32Array(out.buffer, out.byteOffset, n);
      for (let i = 0; i < n; i++) bits[i] = src[i] << 16;
      return;
    }
    case 'F64':
      out.set(new Float64Array(buf, off, n));
      return;
    case 'I64': {
      const src = new BigInt64Array(buf, off, n);
      for (let i = 0; i < n; i++) out[i] = Number(src[i]);
      return;
    }
    case 'I32':
      out.set(new Int32Array(buf, off, n));
      return;
    case 'I16':
      out.set(new Int16Array(buf, off, n));
      return;
    case 'I8':
      out.set(new Int8Array(buf, off, n));
      return;
    case 'U8':
      out.set(new Uint8Array(buf, off, n));
      return;
    case 'BOOL': {
      const src = new Uint8Array(buf, off, n);
      for (let i = 0; i < n; i++) out[i] = src[i] ? 1 : 0;
      return;
    }
  }
}

/**
 * Index of the first NaN or ±Inf in `values`, or −1. A plain loop (x − x is 0 exactly for finite x), cheap next
 * to reading the bytes; every tensor loaded from a file passes through it so no command computes on garbage.
 */
export function firstNonFinite(values: Float32Array): number {
  for (let i = 0; i < values.length; i++) {
    const x = values[i];
    if (x - x !== 0) return i;
  }
  return -1;
}

/** Where element `index` sits in a tensor of `shape`: "row r, column c" for matrices, else the index tuple. */
export function describeElement(shape: readonly number[], index: number): string {
  if (shape.length <= 1) return `element ${index}`;
  const at = new Array<number>(shape.length);
  let rest = index;
  for (let d = shape.length - 1; d >= 0; d--) {
    at[d] = rest % shape[d];
    rest = Math.floor(rest / shape[d]);
  }
  if (shape.length === 2) return `element ${index} (row ${at[0]}, column ${at[1]})`;
  return `element ${index} (index [${at.join(',')}])`;
}

const scratchF = new Float32Array(1);
const scratchU = new Uint32Array(scratchF.buffer);

/** fp16 bits of an fp32 value, rounding to nearest even; overflow goes to ±inf, NaN stays NaN. */
export function f32ToF16Bits(x: number): number {
  scratchF[0] = x;
  const b = scratchU[0];
  const sign = (b >>> 16) & 0x8000;
  const exp = (b >>> 23) & 0xff;
  const mant = b & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 | (mant >>> 13) : 0);
  const e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    // fp16 subnormal: units of 2^-24; the shift also drops the implicit bit into the mantissa.
    const shift = 126 - exp;
    if (shift > 24) return sign; // below half the smallest subnormal (ties to even 0 at exactly half)
    const full = mant | 0x800000;
    const half = full >>> shift;
    const rest = full & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    return sign | (half + (rest > mid || (rest === mid && half & 1) ? 1 : 0));
  }
  const half = (e << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  // A carry out of the mantissa bumps the exponent, up to inf: exactly what the bit layout gives.
  return sign | (half + (rest > 0x1000 || (rest === 0x1000 && half & 1) ? 1 : 0));
}

/** bf16 bits of an fp32 value, rounding to nearest even; NaN stays a (quiet) NaN. */
export function f32ToBf16Bits(x: number): number {
  scratchF[0] = x;
  const b = scratchU[0];
  if ((b & 0x7f800000) === 0x7f800000 && b & 0x7fffff) return (b >>> 16) | 0x40;
  return (b + 0x7fff + ((b >>> 16) & 1)) >>> 16;
}

/** Encodes fp32 values as little-endian storage bytes of F32, F16 or BF16. */
export function fromFloat32(dtype: 'F32' | 'F16' | 'BF16', data: Float32Array): Uint8Array {
  if (dtype === 'F32') return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const out = new Uint16Array(data.length);
  const conv = dtype === 'F16' ? f32ToF16Bits : f32ToBf16Bits;
  for (let i = 0; i < data.length; i++) out[i] = conv(data[i]);
  return new Uint8Array(out.buffer);
}

/**
 * Narrows fp32 values to fp16 or bf16 bits in `out` (same length), rounding to nearest even; a bulk loop over
 * the bit patterns, several times faster than calling f32ToF16Bits per element. Returns the index of the first
 * finite value that became ±inf (beyond fp16's ±65504), or −1.
 */
export function narrowInto(dtype: 'F16' | 'BF16', src: Float32Array, out: Uint16Array): number {
  if (out.length !== src.length)
    throw new Error(`narrowInto: ${src.length} values for ${out.length} outputs`);
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  let overflow = -1;
  if (dtype === 'BF16') {
    for (let i = 0; i < bits.length; i++) {
      const b = bits[i];
      out[i] =
        (b & 0x7f800000) === 0x7f800000 && b & 0x7fffff
          ? (b >>> 16) | 0x40
          : (b + 0x7fff + ((b >>> 16) & 1)) >>> 16;
      if (overflow < 0 && (out[i] & 0x7fff) === 0x7f80 && (b & 0x7f800000) !== 0x7f800000) overflow = i;
    }
    return overflow;
  }
  for (let i = 0; i < bits.length; i++) {
    const b = bits[i];
    const exp = (b >>> 23) & 0xff;
    // Normal fp16 range without overflow: the common case, inlined; the rest (subnormals, inf, NaN, overflow)
    // goes through the exact per-element routine.
    if (exp > 112 && exp < 142) {
      const mant = b & 0x7fffff;
      const half = ((b >>> 16) & 0x8000) | ((exp - 112) << 10) | (mant >>> 13);
      const rest = mant & 0x1fff;
      out[i] = half + (rest > 0x1000 || (rest === 0x1000 && half & 1) ? 1 : 0);
    } else {
      out[i] = f32ToF16Bits(src[i]);
      if (overflow < 0 && exp !== 0xff && (out[i] & 0x7fff) === 0x7c00) overflow = i;
    }
  }
  return overflow;
}

/** The message for a finite value at `at` that narrowing to `dtype` would turn into infinity. */
export function overflowText(name: string, dtype: 'F16' | 'BF16', values: Float32Array, at: number): string {
  const range = dtype === 'F16' ? "fp16's range (±65504)" : "bf16's range";
  return `tensor ${name} holds ${values[at]} (element ${at}), beyond ${range}: it would be stored as infinity`;
}

/** Why fp32 `values` cannot be stored as `dtype` without turning a finite value into infinity, or undefined. */
export function narrowingProblem(
  name: string,
  dtype: 'F32' | 'F16' | 'BF16',
  values: Float32Array,
): string | undefined {
  if (dtype === 'F32') return undefined;
  const at = narrowInto(dtype, values, new Uint16Array(values.length));
  return at < 0 ? undefined : overflowText(name, dtype, values, at);
}
