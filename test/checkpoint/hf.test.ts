import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { openHfFolder, writeHfFolder } from '../../src/checkpoint/hf.js';
import { writeSafetensors } from '../../src/checkpoint/safetensors.js';
import { memoryTensor } from '../../src/model/spec.js';
import { rejectsFileError, tempDir } from './helpers.js';

const tmp = tempDir();
after(tmp.cleanup);

/** Ten tensors of different sizes with values that identify them. */
function someTensors() {
  return Array.from({ length: 10 }, (_, k) => {
    const shape = [k + 1, 16];
    const data = Float32Array.from({ length: (k + 1) * 16 }, (_, i) => k * 1000 + i * 0.5);
    return { name: `block.${k}.weight`, shape, data };
  });
}
const config = { model_type: 'llama', hidden_size: 16 };

describe('HF folder: single file vs shards', () => {
  const single = join(tmp.dir, 'single');
  const sharded = join(tmp.dir, 'sharded');

  it('writes config.json and model.safetensors', async () => {
    await writeHfFolder(single, { config, tensors: someTensors() });
    assert.deepEqual(readdirSync(single).sort(), ['config.json', 'model.safetensors']);
    assert.deepEqual(JSON.parse(readFileSync(join(single, 'config.json'), 'utf8')), config);
  });

  it('writes shards no larger than asked (unless one tensor is) and an index', async () => {
    await writeHfFolder(sharded, { config, tensors: someTensors(), shardBytes: 1024 });
    const files = readdirSync(sharded).sort();
    const shards = files.filter((f) => f.endsWith('.safetensors'));
    assert.ok(shards.length >= 3, `got ${shards.join(', ')}`);
    assert.equal(shards[0], `model-00001-of-${String(shards.length).padStart(5, '0')}.safetensors`);
    const index = JSON.parse(readFileSync(join(sharded, 'model.safetensors.index.json'), 'utf8'));
    const totalBytes = someTensors().reduce((n, t) => n + t.data.length * 4, 0);
    assert.equal(index.metadata.total_size, totalBytes);
    assert.equal(Object.keys(index.weight_map).length, 10);
    assert.ok(!files.includes('model.safetensors'));
  });

  it('reads identical tensors from both', async () => {
    const a = await openHfFolder(single);
    const b = await openHfFolder(sharded);
    assert.deepEqual(a.config, config);
    assert.deepEqual(b.config, config);
    assert.deepEqual([...a.tensors.keys()].sort(), [...b.tensors.keys()].sort());
    const expected = new Map(someTensors().map((t) => [t.name, t]));
    for (const [name, t] of a.tensors) {
      const u = b.tensors.get(name)!;
      assert.deepEqual(t.shape, expected.get(name)!.shape);
      assert.deepEqual(u.shape, t.shape);
      assert.deepEqual(await t.load(), expected.get(name)!.data);
      assert.deepEqual(await u.load(), expected.get(name)!.data);
    }
    assert.notEqual(
      new Set([...b.tensors.values()].map((t) => t.file)).size,
      1,
      'tensors come from several shards',
    );
  });

  it('names a missing shard', async () => {
    const dir = join(tmp.dir, 'missing-shard');
    await writeHfFolder(dir, { config, tensors: someTensors(), shardBytes: 1024 });
    const index = JSON.parse(readFileSync(join(dir, 'model.safetensors.index.json'), 'utf8'));
    const second: string = index.weight_map['block.5.weight'];
    assert.match(second, /^model-00002-of-0000\d\.safetensors$/);
    rmSync(join(dir, second));
    await rejectsFileError(
      openHfFolder(dir),
      join(dir, 'model.safetensors.index.json'),
      new RegExp(`shard ${second.replace('.', '\\.')} \\(holding block\\.5\\.weight.*\\) is missing`),
    );
  });

  it('rejects an index naming a tensor its shard lacks, or a shard outside the folder', async () => {
    const dir = join(tmp.dir, 'lying-index');
    mkdirSync(dir);
    writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
    await writeSafetensors(join(dir, 'a.safetensors'), [
      { name: 'x', shape: [1], data: new Float32Array([1]) },
    ]);
    const index = join(dir, 'model.safetensors.index.json');
    writeFileSync(index, JSON.stringify({ weight_map: { x: 'a.safetensors', y: 'a.safetensors' } }));
    await rejectsFileError(
      openHfFolder(dir),
      join(dir, 'a.safetensors'),
      /tensor y is listed in .* but absent/,
    );
    writeFileSync(index, JSON.stringify({ weight_map: { x: '../a.safetensors' } }));
    await rejectsFileError(openHfFolder(dir), index, /outside the model folder/);
  });

  it('replaces shards with a single file (and back) without leaving the other layout behind', async () => {
    const dir = join(tmp.dir, 'switch');
    await writeHfFolder(dir, { config, tensors: someTensors(), shardBytes: 1024 });
    await writeHfFolder(dir, { config, tensors: someTensors() });
    assert.ok(!existsSync(join(dir, 'model.safetensors.index.json')));
    await writeHfFolder(dir, { config, tensors: someTensors(), shardBytes: 1024 });
    assert.ok(!existsSync(join(dir, 'model.safetensors')));
    assert.equal((await openHfFolder(dir)).tensors.size, 10);
  });

  it('accepts a Map of TensorSources and reports tokenizer.json', async () => {
    const dir = join(tmp.dir, 'from-map');
    const tensors = new Map([['w', memoryTensor([2], new Float32Array([3, 4]))]]);
    await writeHfFolder(dir, { config, tensors, dtype: 'BF16' });
    assert.equal((await openHfFolder(dir)).tokenizerPath, undefined);
    writeFileSync(join(dir, 'tokenizer.json'), '{}');
    const f = await openHfFolder(dir);
    assert.equal(f.tokenizerPath, join(dir, 'tokenizer.json'));
    assert.equal(f.tensors.get('w')!.dtype, 'BF16');
    assert.deepEqual([...(await f.tensors.get('w')!.load())], [3, 4]);
  });
});

describe('HF folder errors', () => {
  it('a missing folder', async () => {
    const dir = join(tmp.dir, 'nope');
    await rejectsFileError(openHfFolder(dir), dir, /no such file or directory/);
  });

  it('no config.json', async () => {
    const dir = join(tmp.dir, 'no-config');
    mkdirSync(dir);
    await rejectsFileError(openHfFolder(dir), dir, /no config\.json/);
  });

  it('config.json that is not JSON', async () => {
    const dir = join(tmp.dir, 'bad-config');
    mkdirSync(dir);
    writeFileSync(join(dir, 'config.json'), '{"model_type": "llama",');
    await rejectsFileError(openHfFolder(dir), join(dir, 'config.json'), /invalid JSON/);
  });

  it('no weights', async () => {
    const dir = join(tmp.dir, 'no-weights');
    mkdirSync(dir);
    writeFileSync(join(dir, 'config.json'), '{}');
    writeFileSync(join(dir, 'pytorch_model.bin'), 'x');
    await rejectsFileError(
      openHfFolder(dir),
      dir,
      /no model\.safetensors or model\.safetensors\.index\.json.*convert/,
    );
  });
});
