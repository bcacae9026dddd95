import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { writeSafetensors } from '../../src/checkpoint/safetensors.js';
import { loadModelSpec, SUPPORTED_MODEL_TYPES, tokenizerPathFor } from '../../src/model/load.js';
import { rejectsFileError, tempDir, tinyL2cBytes } from '../checkpoint/helpers.js';
import { sharedPath } from '../shared.js';

const tmp = tempDir();
after(tmp.cleanup);

describe('loadModelSpec dispatch', () => {
  it('reads a .bin as llama2.c', async () => {
    const path = join(tmp.dir, 'tiny.bin');
    writeFileSync(path, tinyL2cBytes('v1', false));
    const spec = await loadModelSpec(path);
    assert.equal(spec.config.modelType, 'llama2c');
    assert.equal(spec.source, path);
  });

  it('names a path that does not exist', async () => {
    const path = join(tmp.dir, 'absent-model');
    await rejectsFileError(loadModelSpec(path), path, /cannot open model: no such file or directory/);
  });

  it('asks for the folder when given a lone .safetensors file', async () => {
    const path = join(tmp.dir, 'model.safetensors');
    await writeSafetensors(path, [{ name: 'x', shape: [1], data: new Float32Array(1) }]);
    await rejectsFileError(loadModelSpec(path), path, /pass the folder holding it and config\.json/);
  });

  it('rejects other files', async () => {
    const path = join(tmp.dir, 'weights.onnx');
    writeFileSync(path, 'x');
    await rejectsFileError(loadModelSpec(path), path, /not a model/);
  });

  it('dispatches on model_type and names unsupported ones', async () => {
    for (const type of ['gpt2', 'llama', 'mistral', 'qwen2'])
      assert.ok(SUPPORTED_MODEL_TYPES.includes(type), type);
    const dir = join(tmp.dir, 'gptj');
    mkdirSync(dir);
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ model_type: 'gptj' }));
    await writeSafetensors(join(dir, 'model.safetensors'), []);
    await rejectsFileError(
      loadModelSpec(dir),
      join(dir, 'config.json'),
      new RegExp(`^model_type "gptj" is not supported \\(supported: ${SUPPORTED_MODEL_TYPES.join(', ')}\\)$`),
    );
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ hidden_size: 3 }));
    await rejectsFileError(loadModelSpec(dir), join(dir, 'config.json'), /no "model_type"/);
  });
});

describe('tokenizerPathFor', () => {
  it('finds tokenizer.json in a folder', () => {
    const dir = join(tmp.dir, 'with-tok');
    mkdirSync(dir);
    assert.equal(tokenizerPathFor(dir), undefined);
    writeFileSync(join(dir, 'tokenizer.json'), '{}');
    assert.equal(tokenizerPathFor(dir), join(dir, 'tokenizer.json'));
  });

  it('finds tokenizer.bin or tok*.bin beside a .bin', () => {
    const dir = join(tmp.dir, 'l2c');
    mkdirSync(dir);
    const model = join(dir, 'model.bin');
    writeFileSync(model, 'x');
    assert.equal(tokenizerPathFor(model), undefined);
    writeFileSync(join(dir, 'tok512.bin'), 'x');
    assert.equal(tokenizerPathFor(model), join(dir, 'tok512.bin'));
    writeFileSync(join(dir, 'tok4096.bin'), 'x');
    assert.equal(tokenizerPathFor(model), undefined, 'two candidates: no guess');
    assert.equal(tokenizerPathFor(model, 4096), join(dir, 'tok4096.bin'));
    writeFileSync(join(dir, 'tokenizer.bin'), 'x');
    assert.equal(tokenizerPathFor(model, 4096), join(dir, 'tokenizer.bin'));
    assert.equal(tokenizerPathFor(join(dir, 'absent.bin')), undefined);
  });

  const STORIES = sharedPath('models/stories260K/stories260K.bin');
  it('pairs stories260K.bin with tok512.bin', { skip: STORIES ? false : 'shared model absent' }, () => {
    assert.equal(tokenizerPathFor(STORIES!), sharedPath('models/stories260K/tok512.bin'));
    // a copy beside no tokenizer finds none
    const lone = join(tmp.dir, 'lone');
    mkdirSync(lone);
    copyFileSync(STORIES!, join(lone, 'stories260K.bin'));
    assert.equal(tokenizerPathFor(join(lone, 'stories260K.bin')), undefined);
  });
});
