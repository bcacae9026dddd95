import assert from 'node:assert/strict';
import { readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { openSafetensors, writeSafetensors } from '../../src/checkpoint/safetensors.js';
import { f32Bytes, openFdCount, rejectsFileError, tempDir, u16Bytes } from './helpers.js';

const tmp = tempDir();
after(tmp.cleanup);
let counter = 0;

/** A safetensors file assembled byte by byte (independent of our writer). */
function handBuilt(header: object | string, data: Buffer, declaredLength?: bigint): string {
  const json = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header), 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(declaredLength ?? BigInt(json.length));
  const path = join(tmp.dir, `hand-${counter++}.safetensors`);
  writeFileSync(path, Buffer.concat([len, json, data]));
  return path;
}

describe('openSafetensors on a hand-built file', () => {
  // Data section: a F32 [2,2] @0..16, b F16 [3] @16..22, c BF16 [2] @22..26, d I32 [2] @26..34.
  const data = Buffer.concat([
    f32Bytes([1, -2, 0.5, 3.25]),
    u16Bytes([0x3c00, 0xc000, 0x7c00]),
    u16Bytes([0x3f80, 0xc0a0]),
    Buffer.from(new Int32Array([7, -9]).buffer),
  ]);
  // Entries deliberately out of data order: reads must follow the offsets.
  const header = {
    d: { dtype: 'I32', shape: [2], data_offsets: [26, 34] },
    __metadata__: { format: 'pt', note: 'hand' },
    c: { dtype: 'BF16', shape: [2], data_offsets: [22, 26] },
    a: { dtype: 'F32', shape: [2, 2], data_offsets: [0, 16] },
    b: { dtype: 'F16', shape: [3], data_offsets: [16, 22] },
    empty: { dtype: 'F32', shape: [0, 4], data_offsets: [34, 34] },
  };
  const path = handBuilt(header, data);

  it('reads metadata, shapes, dtypes and values', async () => {
    const f = await openSafetensors(path);
    assert.equal(f.path, path);
    assert.deepEqual(f.metadata, { format: 'pt', note: 'hand' });
    assert.deepEqual([...f.tensors.keys()], ['d', 'c', 'a', 'b', 'empty']);
    const a = f.tensors.get('a')!;
    assert.deepEqual(a.shape, [2, 2]);
    assert.equal(a.dtype, 'F32');
    assert.deepEqual([...(await a.load())], [1, -2, 0.5, 3.25]);
    // b stores an F16 infinity: weights must be finite, so loading it names the tensor and the element.
    await rejectsFileError(f.tensors.get('b')!.load(), path, /^tensor b \[3\] holds Infinity at element 2: /);
    assert.deepEqual([...(await f.tensors.get('c')!.load())], [1, -5]);
    assert.deepEqual([...(await f.tensors.get('d')!.load())], [7, -9]);
    assert.equal((await f.tensors.get('empty')!.load()).length, 0);
  });

  it('does not keep file descriptors open', async () => {
    const f = await openSafetensors(path);
    // b (an infinity) is refused: its failing loads must not leak descriptors either.
    for (let i = 0; i < 50; i++) for (const t of f.tensors.values()) await t.load().catch(() => undefined);
    const held = openFdCount(path);
    if (held !== undefined) assert.equal(held, 0, `descriptors left open on ${path}`);
  });
});

describe('writeSafetensors', () => {
  it('round-trips F32 exactly and pads the header to 8 bytes with spaces', async () => {
    const path = join(tmp.dir, 'rt.safetensors');
    const a = new Float32Array([Math.PI, -1e-30, 3e38, 0, -0, 1 / 3]);
    const b = new Float32Array(Array.from({ length: 35 }, (_, i) => i * 0.1 - 1.7));
    await writeSafetensors(
      path,
      [
        { name: 'x.weight', shape: [2, 3], data: a },
        { name: 'y', shape: [5, 7], data: async () => b },
      ],
      { source: 'test' },
    );
    const bytes = readFileSync(path);
    const headerLen = Number(bytes.readBigUInt64LE(0));
    assert.equal(headerLen % 8, 0);
    const headerText = bytes.subarray(8, 8 + headerLen).toString('utf8');
    assert.match(headerText, /^\{.*\} *$/);
    assert.equal(bytes.length, 8 + headerLen + (6 + 35) * 4);
    const f = await openSafetensors(path);
    assert.deepEqual(f.metadata, { source: 'test' });
    assert.deepEqual(await f.tensors.get('x.weight')!.load(), a);
    assert.deepEqual(await f.tensors.get('y')!.load(), b);
    assert.deepEqual(f.tensors.get('y')!.shape, [5, 7]);
  });

  it('writes F16 and BF16 with the expected bit patterns', async () => {
    const values = new Float32Array([1, -2, 0.5, 65504]);
    for (const [dtype, bits] of [
      ['F16', [0x3c00, 0xc000, 0x3800, 0x7bff]],
      ['BF16', [0x3f80, 0xc000, 0x3f00, 0x4780]],
    ] as const) {
      const path = join(tmp.dir, `w-${dtype}.safetensors`);
      await writeSafetensors(path, [{ name: 't', shape: [4], data: values }], undefined, { dtype });
      const bytes = readFileSync(path);
      const start = 8 + Number(bytes.readBigUInt64LE(0));
      assert.deepEqual(
        Array.from({ length: 4 }, (_, i) => bytes.readUInt16LE(start + 2 * i)),
        [...bits],
      );
      const t = (await openSafetensors(path)).tensors.get('t')!;
      assert.equal(t.dtype, dtype);
      // 65504 = 0x477fe000: bf16 keeps 8 mantissa bits and rounds up to 65536
      assert.deepEqual([...(await t.load())], dtype === 'F16' ? [...values] : [1, -2, 0.5, 65536]);
    }
  });

  it('rejects a data length that does not match the shape, leaving no file behind', async () => {
    const path = join(tmp.dir, 'bad-shape.safetensors');
    await rejectsFileError(
      writeSafetensors(path, [{ name: 't', shape: [3], data: new Float32Array(2) }]),
      path,
      /tensor t: shape \[3\] needs 3 values, got 2/,
    );
    assert.throws(() => readFileSync(path), /ENOENT/);
  });
});

describe('openSafetensors rejects malformed files', () => {
  const ok = { t: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } };
  const eight = f32Bytes([1, 2]);

  it('a file shorter than the length prefix', async () => {
    const path = join(tmp.dir, 'short.safetensors');
    writeFileSync(path, Buffer.from([1, 2, 3, 4, 5]));
    await rejectsFileError(openSafetensors(path), path, /truncated: 5 bytes/);
  });

  it('a header length longer than the file', async () => {
    const path = handBuilt(ok, eight, 1_000_000_000_000n);
    await rejectsFileError(openSafetensors(path), path, /header length 1000000000000 exceeds file size \d+/);
  });

  it('a header length over the 100 MB bound', async () => {
    const path = join(tmp.dir, 'huge-header.safetensors');
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(150_000_000n);
    writeFileSync(path, len);
    truncateSync(path, 150_000_100); // sparse: no real disk use
    await rejectsFileError(
      openSafetensors(path),
      path,
      /header length 150000000 exceeds the 100000000-byte limit/,
    );
  });

  it('a header that is not JSON', async () => {
    const path = handBuilt('{"t": {"dtype": "F32",', eight);
    await rejectsFileError(openSafetensors(path), path, /header is not valid JSON/);
  });

  it('a header that is not an object', async () => {
    const path = handBuilt('[1,2]', eight);
    await rejectsFileError(openSafetensors(path), path, /not a JSON object/);
  });

  it('offsets beyond the data section', async () => {
    const path = handBuilt({ 'model.x': { dtype: 'F32', shape: [16], data_offsets: [0, 64] } }, eight);
    await rejectsFileError(openSafetensors(path), path, /tensor model\.x data_offsets \[0,64\] out of range/);
  });

  it('offsets whose size does not match shape and dtype', async () => {
    const path = handBuilt({ t: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, eight);
    await rejectsFileError(
      openSafetensors(path),
      path,
      /tensor t data_offsets \[0,8\] hold 8 bytes, but F32 \[3\] needs 12/,
    );
  });

  it('an unknown dtype', async () => {
    const path = handBuilt({ t: { dtype: 'Q4_K', shape: [2], data_offsets: [0, 8] } }, eight);
    await rejectsFileError(openSafetensors(path), path, /tensor t has unknown dtype "Q4_K"/);
  });

  it('a negative or fractional shape', async () => {
    const p1 = handBuilt({ t: { dtype: 'F32', shape: [-2], data_offsets: [0, 8] } }, eight);
    await rejectsFileError(openSafetensors(p1), p1, /tensor t has invalid shape \[-2\]/);
    const p2 = handBuilt({ t: { dtype: 'F32', shape: [1.5], data_offsets: [0, 8] } }, eight);
    await rejectsFileError(openSafetensors(p2), p2, /invalid shape/);
  });

  it('overlapping tensors', async () => {
    const path = handBuilt(
      {
        a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
        b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] },
      },
      f32Bytes([1, 2, 3]),
    );
    await rejectsFileError(openSafetensors(path), path, /tensors a \[0,8\] and b \[4,12\] overlap/);
  });

  it('non-string metadata', async () => {
    const path = handBuilt({ __metadata__: { n: 1 }, ...ok }, eight);
    await rejectsFileError(openSafetensors(path), path, /__metadata__ value for "n" is not a string/);
  });

  it('a missing file', async () => {
    const path = join(tmp.dir, 'nope.safetensors');
    await rejectsFileError(openSafetensors(path), path, /no such file/);
  });

  it('a file truncated after it was opened', async () => {
    const path = handBuilt(ok, eight);
    const f = await openSafetensors(path);
    truncateSync(path, readFileSync(path).length - 4);
    await rejectsFileError(f.tensors.get('t')!.load(), path, /truncated/);
  });
});
