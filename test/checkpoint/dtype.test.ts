import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { f32ToBf16Bits, f32ToF16Bits, fromFloat32, toFloat32 } from '../../src/checkpoint/dtype.js';
import { u16Bytes } from './helpers.js';

const f16 = (bits: number) => toFloat32('F16', new Uint8Array(u16Bytes([bits])))[0];
const bf16 = (bits: number) => toFloat32('BF16', new Uint8Array(u16Bytes([bits])))[0];

describe('fp16 → fp32', () => {
  it('decodes hand-computed bit patterns', () => {
    assert.equal(f16(0x3c00), 1);
    assert.equal(f16(0xc000), -2);
    assert.equal(f16(0x3555), 1365 / 4096);
    assert.equal(f16(0x7bff), 65504); // largest finite
    assert.equal(f16(0x0400), 2 ** -14); // smallest normal
    assert.equal(f16(0x0001), 2 ** -24); // smallest subnormal
    assert.equal(f16(0x03ff), 1023 * 2 ** -24); // largest subnormal
    assert.equal(f16(0x8001), -(2 ** -24));
    assert.ok(Object.is(f16(0x0000), 0));
    assert.ok(Object.is(f16(0x8000), -0));
    assert.equal(f16(0x7c00), Infinity);
    assert.equal(f16(0xfc00), -Infinity);
    assert.ok(Number.isNaN(f16(0x7e00)));
    assert.ok(Number.isNaN(f16(0x7c01)));
  });

  it('decodes every non-NaN pattern to the value its fields define', () => {
    const all = new Uint16Array(65536).map((_, i) => i);
    const out = toFloat32('F16', new Uint8Array(all.buffer));
    for (let h = 0; h < 65536; h++) {
      const e = (h >> 10) & 31;
      if (e === 31) continue;
      const m = h & 1023;
      const v = (e === 0 ? m * 2 ** -24 : (1 + m / 1024) * 2 ** (e - 15)) * (h & 0x8000 ? -1 : 1);
      if (out[h] !== v) assert.fail(`0x${h.toString(16)} → ${out[h]}, expected ${v}`);
    }
  });
});

describe('bf16 → fp32', () => {
  it('decodes hand-computed bit patterns', () => {
    assert.equal(bf16(0x3f80), 1);
    assert.equal(bf16(0xc000), -2);
    assert.equal(bf16(0x4049), 3.140625);
    assert.equal(bf16(0x0001), 2 ** -133); // subnormal
    assert.equal(bf16(0x7f80), Infinity);
    assert.equal(bf16(0xff80), -Infinity);
    assert.ok(Number.isNaN(bf16(0x7fc0)));
    assert.ok(Object.is(bf16(0x8000), -0));
  });
});

describe('fp32 → fp16 (round to nearest even)', () => {
  it('encodes exact values', () => {
    assert.equal(f32ToF16Bits(1), 0x3c00);
    assert.equal(f32ToF16Bits(-2), 0xc000);
    assert.equal(f32ToF16Bits(65504), 0x7bff);
    assert.equal(f32ToF16Bits(2 ** -24), 0x0001);
    assert.equal(f32ToF16Bits(2 ** -14), 0x0400);
    assert.equal(f32ToF16Bits(-0), 0x8000);
    assert.equal(f32ToF16Bits(Infinity), 0x7c00);
    assert.equal(f32ToF16Bits(-Infinity), 0xfc00);
  });
  it('rounds ties to even and overflows to infinity', () => {
    assert.equal(f32ToF16Bits(1 + 2 ** -11), 0x3c00); // halfway between 0x3c00 and 0x3c01 → even
    assert.equal(f32ToF16Bits(1 + 3 * 2 ** -11), 0x3c02); // halfway between 0x3c01 and 0x3c02 → even
    assert.equal(f32ToF16Bits(1 + 2 ** -11 + 2 ** -20), 0x3c01); // just above halfway
    assert.equal(f32ToF16Bits(65519), 0x7bff);
    assert.equal(f32ToF16Bits(65520), 0x7c00); // halfway to 2^16 rounds to even = inf
    assert.equal(f32ToF16Bits(1e6), 0x7c00);
  });
  it('rounds into and out of subnormals', () => {
    assert.equal(f32ToF16Bits(2 ** -25), 0x0000); // half the smallest subnormal → even 0
    assert.equal(f32ToF16Bits(1.5 * 2 ** -25), 0x0001);
    assert.equal(f32ToF16Bits(3 * 2 ** -25), 0x0002); // 1.5 units → even 2
    assert.equal(f32ToF16Bits(1e-8), 0x0000);
    assert.equal(f32ToF16Bits(-1e-30), 0x8000);
    assert.equal(f32ToF16Bits(2 ** -14 - 2 ** -25), 0x0400); // 1023.5 units → 1024 = smallest normal
  });
  it('keeps NaN a NaN', () => {
    const bits = f32ToF16Bits(Number.NaN);
    assert.equal(bits & 0x7c00, 0x7c00);
    assert.notEqual(bits & 0x3ff, 0);
  });
  it('round-trips every finite fp16 value', () => {
    for (let h = 0; h < 65536; h++) {
      if (((h >> 10) & 31) === 31) continue;
      const back = f32ToF16Bits(f16(h));
      if (back !== h) assert.fail(`0x${h.toString(16)} → ${f16(h)} → 0x${back.toString(16)}`);
    }
  });
});

describe('fp32 → bf16 (round to nearest even)', () => {
  it('encodes and rounds', () => {
    assert.equal(f32ToBf16Bits(1), 0x3f80);
    assert.equal(f32ToBf16Bits(-2), 0xc000);
    assert.equal(f32ToBf16Bits(1 + 2 ** -7), 0x3f81); // exact
    assert.equal(f32ToBf16Bits(1 + 2 ** -8), 0x3f80); // tie → even
    assert.equal(f32ToBf16Bits(1 + 3 * 2 ** -8), 0x3f82); // tie → even
    assert.equal(f32ToBf16Bits(3.4028234663852886e38), 0x7f80); // fp32 max rounds up to inf
    assert.equal(f32ToBf16Bits(-Infinity), 0xff80);
    assert.equal(f32ToBf16Bits(Number.NaN) & 0x7fc0, 0x7fc0);
  });
});

describe('fromFloat32', () => {
  it('writes little-endian storage bytes', () => {
    const data = new Float32Array([1, -2]);
    assert.deepEqual([...fromFloat32('F16', data)], [0x00, 0x3c, 0x00, 0xc0]);
    assert.deepEqual([...fromFloat32('BF16', data)], [0x80, 0x3f, 0x00, 0xc0]);
    assert.deepEqual([...fromFloat32('F32', new Float32Array([1]))], [0x00, 0x00, 0x80, 0x3f]);
  });
  it('widens integer dtypes', () => {
    const i64 = Buffer.alloc(16);
    i64.writeBigInt64LE(-5n, 0);
    i64.writeBigInt64LE(1n << 40n, 8);
    assert.deepEqual([...toFloat32('I64', new Uint8Array(i64))], [-5, 2 ** 40]);
    assert.deepEqual([...toFloat32('I8', new Uint8Array([0xff, 0x02]))], [-1, 2]);
    assert.deepEqual([...toFloat32('BOOL', new Uint8Array([0, 1, 7]))], [0, 1, 1]);
  });
});
