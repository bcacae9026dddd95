/**
 * Exports keep the checkpoint's storage dtype: a bf16 (or fp16) model exported without a dtype is written in
 * bf16 (fp16), bit for bit the source's values for every tensor pruning leaves or slices; asking for fp32
 * widens them exactly.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { writeHfFolder } from '../../src/checkpoint/hf.js';
import { openSafetensors, type StoredFloat } from '../../src/checkpoint/safetensors.js';
import { llamaSpecToHf } from '../../src/model/llama.js';
import { loadModelSpec } from '../../src/model/load.js';
import { randomLlamaSpec } from '../../src/model/random.js';
import { exportModel } from '../../src/prune/export.js';
import { tempDir } from '../checkpoint/helpers.js';

const tmp = tempDir('geneprune-export-dtype-');
after(tmp.cleanup);

/** dtype of every tensor in a safetensors file's header, read independently of our reader. */
function headerDtypes(path: string): Record<string, string> {
  const bytes = readFileSync(path);
  const len = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + len).toString('utf8'));
  delete header.__metadata__;
  return Object.fromEntries(Object.entries(header).map(([k, v]) => [k, (v as { dtype: string }).dtype]));
}

async function sourceFolder(name: string, dtype: StoredFloat): Promise<string> {
  const spec = randomLlamaSpec({
    hiddenSize: 32,
    numLayers: 2,
    numHeads: 4,
    numKvHeads: 2,
    intermediateSize: 48,
    vocabSize: 40,
    maxPositions: 16,
    seed: 11,
  });
  const dir = join(tmp.dir, name);
  const hf = llamaSpecToHf(spec);
  await writeHfFolder(dir, { config: hf.config, tensors: hf.tensors, dtype });
  return dir;
}

/** Raw rows [from, to) of a 2-D tensor in a safetensors file, as bytes. */
async function rawRows(file: string, name: string, from: number, to: number): Promise<Buffer> {
  const t = (await openSafetensors(file)).tensors.get(name)!;
  const rowBytes = t.byteLength / t.shape[0];
  const all = readFileSync(file);
  return all.subarray(t.byteOffset + from * rowBytes, t.byteOffset + to * rowBytes);
}

describe('export keeps the storage dtype', () => {
  for (const dtype of ['BF16', 'F16'] as const) {
    test(`a ${dtype} checkpoint exported without a dtype stays ${dtype}, bit for bit`, async () => {
      const src = await sourceFolder(`src-${dtype}`, dtype);
      const spec = await loadModelSpec(src);
      // Remove head 1 of layer 0 (KV head 0 stays: head 0 still reads it).
      const genome = Uint8Array.from([1, 0, 1, 1, 1, 1, 1, 1]);
      const out = join(tmp.dir, `out-${dtype}`);
      await exportModel({ spec, genome, out, format: 'hf' });
      const file = join(out, 'model.safetensors');
      const dtypes = Object.values(headerDtypes(file));
      assert.ok(dtypes.length > 10);
      assert.deepEqual([...new Set(dtypes)], [dtype]);
      assert.equal(
        JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')).torch_dtype,
        dtype === 'BF16' ? 'bfloat16' : 'float16',
      );
      const srcFile = join(src, 'model.safetensors');
      // A whole tensor: same bytes.
      const name = 'model.layers.1.mlp.down_proj.weight';
      const a = (await openSafetensors(srcFile)).tensors.get(name)!;
      const b = (await openSafetensors(file)).tensors.get(name)!;
      assert.deepEqual(await rawRows(file, name, 0, b.shape[0]), await rawRows(srcFile, name, 0, a.shape[0]));
      // A sliced tensor: q rows of heads 0, 2, 3 (head size 8) are the source's rows, byte for byte.
      const q = 'model.layers.0.self_attn.q_proj.weight';
      const kept = Buffer.concat([await rawRows(srcFile, q, 0, 8), await rawRows(srcFile, q, 16, 32)]);
      assert.deepEqual(await rawRows(file, q, 0, 24), kept);
    });
  }

  test('dtype F32 widens a bf16 checkpoint exactly', async () => {
    const src = await sourceFolder('src-widen', 'BF16');
    const spec = await loadModelSpec(src);
    const out = join(tmp.dir, 'out-widen');
    await exportModel({ spec, out, format: 'hf', dtype: 'F32' });
    const file = join(out, 'model.safetensors');
    assert.deepEqual([...new Set(Object.values(headerDtypes(file)))], ['F32']);
    const before = await loadModelSpec(src);
    const after = await loadModelSpec(out);
    for (const [role, t] of before.tensors) {
      assert.deepEqual(await after.tensors.get(role)!.load(), await t.load(), role);
    }
  });
});
