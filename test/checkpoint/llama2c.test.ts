import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { llama2cFreqCis, openLlama2c, writeLlama2cLegacy } from '../../src/checkpoint/llama2c.js';
import { sharedPath } from '../shared.js';
import { blockValue, rejectsFileError, tempDir, tinyL2cBlocks, tinyL2cBytes } from './helpers.js';

const tmp = tempDir();
after(tmp.cleanup);

const range = (k: number, from: number, n: number) =>
  Array.from({ length: n }, (_, i) => blockValue(k, from + i));

for (const format of ['legacy', 'v1'] as const) {
  for (const untied of [true, false]) {
    describe(`a hand-built ${format} checkpoint (${untied ? 'untied' : 'tied'})`, () => {
      const path = join(tmp.dir, `tiny-${format}-${untied}.bin`);
      writeFileSync(path, tinyL2cBytes(format, untied));
      const blocks = tinyL2cBlocks(format, untied).map(([name]) => name);
      const k = (name: string) => blocks.indexOf(name);

      it('reads the header', async () => {
        const f = await openLlama2c(path);
        assert.equal(f.format, format);
        assert.deepEqual(f.params, {
          dim: 8,
          hiddenDim: 12,
          nLayers: 2,
          nHeads: 2,
          nKvHeads: 1,
          vocabSize: 5,
          seqLen: 4,
          sharedClassifier: !untied,
        });
        assert.equal(f.tensors.has('wcls'), untied);
      });

      it('finds every tensor at its offset with llama2.c [out, in] shapes', async () => {
        const f = await openLlama2c(path);
        const t = (name: string) => f.tensors.get(name)!;
        assert.deepEqual(t('token_embedding_table').shape, [5, 8]);
        assert.deepEqual(
          [...(await t('token_embedding_table').load())],
          range(k('token_embedding_table'), 0, 40),
        );
        // layer 1 of a per-layer block starts after layer 0's elements
        assert.deepEqual([...(await t('rms_att_weight.1').load())], range(k('rms_att_weight'), 8, 8));
        assert.deepEqual(t('wq.1').shape, [8, 8]);
        assert.deepEqual([...(await t('wq.1').load())], range(k('wq'), 64, 64));
        assert.deepEqual(t('wk.0').shape, [4, 8]);
        assert.deepEqual([...(await t('wk.1').load())], range(k('wk'), 32, 32));
        assert.deepEqual([...(await t('wv.0').load())], range(k('wv'), 0, 32));
        assert.deepEqual([...(await t('wo.1').load())], range(k('wo'), 64, 64));
        assert.deepEqual([...(await t('rms_ffn_weight.0').load())], range(k('rms_ffn_weight'), 0, 8));
        assert.deepEqual(t('w1.1').shape, [12, 8]);
        assert.deepEqual([...(await t('w1.1').load())], range(k('w1'), 96, 96));
        assert.deepEqual(t('w2.0').shape, [8, 12]);
        assert.deepEqual([...(await t('w2.1').load())], range(k('w2'), 96, 96));
        assert.deepEqual([...(await t('w3.0').load())], range(k('w3'), 0, 96));
        assert.deepEqual([...(await t('rms_final_weight').load())], range(k('rms_final_weight'), 0, 8));
        if (untied) assert.deepEqual([...(await t('wcls').load())], range(k('wcls'), 0, 40));
      });

      it('rejects the file truncated or with trailing bytes, naming both sizes', async () => {
        const bytes = tinyL2cBytes(format, untied);
        const cut = join(tmp.dir, `cut-${format}-${untied}.bin`);
        writeFileSync(cut, bytes.subarray(0, bytes.length - 4));
        await rejectsFileError(
          openLlama2c(cut),
          cut,
          new RegExp(
            `truncated: 4 bytes missing.*implies ${bytes.length} bytes, the file has ${bytes.length - 4}`,
          ),
        );
        const long = join(tmp.dir, `long-${format}-${untied}.bin`);
        writeFileSync(long, Buffer.concat([bytes, Buffer.alloc(3)]));
        await rejectsFileError(openLlama2c(long), long, /3 trailing bytes.*the file has/);
      });
    });
  }
}

describe('openLlama2c rejects bad headers', () => {
  const withInt = (format: 'legacy' | 'v1', index: number, value: number) => {
    const bytes = tinyL2cBytes(format, true);
    bytes.writeInt32LE(value, (format === 'v1' ? 8 : 0) + 4 * index);
    const path = join(tmp.dir, `bad-${format}-${index}-${value}.bin`);
    writeFileSync(path, bytes);
    return path;
  };

  it('zero or negative sizes', async () => {
    const p = withInt('legacy', 2, 0);
    await rejectsFileError(openLlama2c(p), p, /nLayers = 0 is not in 1\.\./);
    const q = withInt('legacy', 0, -8);
    await rejectsFileError(openLlama2c(q), q, /dim = -8/);
  });

  it('heads that do not divide', async () => {
    const p = withInt('legacy', 3, 3);
    await rejectsFileError(openLlama2c(p), p, /dim 8 is not a multiple of n_heads 3/);
    const q = withInt('v1', 4, 3); // n_kv_heads 3 with n_heads 2
    await rejectsFileError(openLlama2c(q), q, /n_heads 2 is not a multiple of n_kv_heads 3/);
  });

  it('an unsupported version', async () => {
    const bytes = tinyL2cBytes('v1', true);
    bytes.writeInt32LE(2, 4);
    const p = join(tmp.dir, 'v2.bin');
    writeFileSync(p, bytes);
    await rejectsFileError(openLlama2c(p), p, /version 2 is not supported \(int8-quantized/);
  });

  it('a file shorter than a header', async () => {
    const p = join(tmp.dir, 'tiny.bin');
    writeFileSync(p, Buffer.alloc(10));
    await rejectsFileError(openLlama2c(p), p, /truncated: 10 bytes/);
  });

  it('a zip (PyTorch) file', async () => {
    const p = join(tmp.dir, 'pytorch_model.bin');
    writeFileSync(p, Buffer.concat([Buffer.from('PK\x03\x04'), Buffer.alloc(60)]));
    await rejectsFileError(openLlama2c(p), p, /zip archive/);
  });
});

describe('writeLlama2cLegacy', () => {
  it('reproduces a hand-built legacy file byte for byte apart from the rotary tables', async () => {
    const src = join(tmp.dir, 'tiny-legacy-true.bin');
    const f = await openLlama2c(src);
    const out = join(tmp.dir, 'rewritten.bin');
    await writeLlama2cLegacy(out, f.params, f.tensors);
    const g = await openLlama2c(out);
    for (const [name, t] of f.tensors) {
      if (name.startsWith('freq_cis')) continue;
      assert.deepEqual(await g.tensors.get(name)!.load(), await t.load(), name);
    }
    assert.equal(statSync(out).size, statSync(src).size);
  });

  it('computes rotary tables as llama2.c does (theta 10000)', () => {
    const { real, imag } = llama2cFreqCis(4, 3);
    // head size 4: frequencies 1 and 10000^-0.5 = 0.01; rows are positions 0, 1, 2
    const expected = [
      [1, 1, 0, 0],
      [Math.cos(1), Math.cos(0.01), Math.sin(1), Math.sin(0.01)],
      [Math.cos(2), Math.cos(0.02), Math.sin(2), Math.sin(0.02)],
    ];
    expected.forEach(([c0, c1, s0, s1], t) => {
      for (const [got, want] of [
        [real[2 * t], c0],
        [real[2 * t + 1], c1],
        [imag[2 * t], s0],
        [imag[2 * t + 1], s1],
      ]) {
        assert.ok(Math.abs(got - want) < 1e-6, `t=${t}: ${got} vs ${want}`);
      }
    });
  });
});

const STORIES = sharedPath('models/stories260K/stories260K.bin');
describe('stories260K.bin (real llama2.c checkpoint)', {
  skip: STORIES ? false : 'shared model absent',
}, () => {
  it('is the published file', () => {
    const hash = createHash('sha256').update(readFileSync(STORIES!)).digest('hex');
    assert.equal(hash, 'b0a507e7ad0f626624f17112325e66691f9076d622e1d3274d103d00299f2696');
  });

  it('loads as legacy with the published shape, and its size is what the header implies', async () => {
    const f = await openLlama2c(STORIES!);
    assert.equal(f.format, 'legacy');
    assert.deepEqual(f.params, {
      dim: 64,
      hiddenDim: 172,
      nLayers: 5,
      nHeads: 8,
      nKvHeads: 4,
      vocabSize: 512,
      seqLen: 512,
      sharedClassifier: true,
    });
    // 28-byte header + fp32 tensors, counted independently of llama2cLayout
    const D = 64;
    const perLayer = D + D * D + 2 * 32 * D + D * D + D + 3 * 172 * D;
    const floats = 512 * D + 5 * perLayer + D + 2 * 512 * 4;
    assert.equal(statSync(STORIES!).size, 28 + 4 * floats);
    assert.equal(f.tensors.size, 1 + 9 * 5 + 1 + 2);
  });

  it('stores the rotary tables llama2.c computes', async () => {
    const f = await openLlama2c(STORIES!);
    const ours = llama2cFreqCis(8, 512);
    const real = await f.tensors.get('freq_cis_real')!.load();
    const imag = await f.tensors.get('freq_cis_imag')!.load();
    for (let i = 0; i < real.length; i++) {
      assert.ok(
        Math.abs(real[i] - ours.real[i]) < 1e-6 && Math.abs(imag[i] - ours.imag[i]) < 1e-6,
        `entry ${i}`,
      );
    }
  });

  it('has trained (non-degenerate) weights', async () => {
    const f = await openLlama2c(STORIES!);
    const norm = await f.tensors.get('rms_final_weight')!.load();
    assert.ok(norm.every(Number.isFinite));
    assert.ok(
      norm.some((v) => Math.abs(v - 1) > 0.1),
      'final norm weights moved away from their init',
    );
  });
});
