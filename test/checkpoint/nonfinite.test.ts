/**
 * NaN/Inf weights are refused where every checkpoint tensor is loaded (fileTensor), naming the file, the
 * tensor and the element, so no command computes a NaN perplexity or generates garbage from them.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { describeElement, firstNonFinite } from '../../src/checkpoint/dtype.js';
import { openLlama2c } from '../../src/checkpoint/llama2c.js';
import { openSafetensors, writeSafetensors } from '../../src/checkpoint/safetensors.js';
import { loadWeights } from '../../src/graph/weights.js';
import { loadModelSpec } from '../../src/model/load.js';
import { sharedPath, skipUnlessShared } from '../shared.js';
import { pokedCheckpoint, rejectsFileError, tempDir } from './helpers.js';

const tmp = tempDir('geneprune-nonfinite-');
after(tmp.cleanup);

const MODEL = 'models/stories260K/stories260K.bin';
/** stories260K.bin is legacy format: 7 int32 of header, then token_embedding_table [512, 64]. */
const EMBEDDING_AT = 28;

describe('firstNonFinite', () => {
  it('finds the first NaN or ±Inf and nothing in finite data', () => {
    assert.equal(firstNonFinite(new Float32Array(0)), -1);
    assert.equal(firstNonFinite(new Float32Array([0, -0, 3.4e38, -3.4e38, 1e-45])), -1);
    assert.equal(firstNonFinite(new Float32Array([1, 2, Number.NaN, Infinity])), 2);
    assert.equal(firstNonFinite(new Float32Array([1, -Infinity])), 1);
    assert.equal(firstNonFinite(new Float32Array([Infinity])), 0);
  });

  it('describes where an element sits', () => {
    assert.equal(describeElement([5], 3), 'element 3');
    assert.equal(describeElement([512, 64], 7 * 64 + 3), 'element 451 (row 7, column 3)');
    assert.equal(describeElement([2, 3, 4], 23), 'element 23 (index [1,2,3])');
  });
});

describe('non-finite weights in stories260K.bin', { skip: skipUnlessShared(MODEL) }, () => {
  it('one NaN in one embedding row: the tensor load names file, tensor, row and column', async () => {
    const path = pokedCheckpoint(
      sharedPath(MODEL)!,
      join(tmp.dir, 'nan.bin'),
      EMBEDDING_AT + 4 * (7 * 64 + 3),
      Number.NaN,
    );
    const f = await openLlama2c(path);
    await rejectsFileError(
      f.tensors.get('token_embedding_table')!.load(),
      path,
      /^tensor token_embedding_table \[512,64\] holds NaN at element 451 \(row 7, column 3\): /,
    );
    // Other tensors of the same file are unaffected.
    assert.equal((await f.tensors.get('wq.0')!.load()).length, 64 * 64);
  });

  it('an Inf reaches every consumer through the model spec (weights for the engine)', async () => {
    const path = pokedCheckpoint(
      sharedPath(MODEL)!,
      join(tmp.dir, 'inf.bin'),
      EMBEDDING_AT + 4 * 100 * 64,
      -Infinity,
    );
    const spec = await loadModelSpec(path);
    await rejectsFileError(
      loadWeights(spec),
      path,
      /token_embedding_table .*-Infinity at .*row 100, column 0/,
    );
  });

  it('the untouched checkpoint loads', async () => {
    const spec = await loadModelSpec(sharedPath(MODEL)!);
    const w = await loadWeights(spec);
    assert.ok(w.size > 0);
  });
});

describe('non-finite weights in safetensors', () => {
  for (const dtype of ['F32', 'F16', 'BF16'] as const) {
    it(`a NaN stored as ${dtype} is refused`, async () => {
      const path = join(tmp.dir, `nan-${dtype}.safetensors`);
      const data = new Float32Array([0.5, 1, 2, 3, 4, Number.NaN]);
      await writeSafetensors(path, [{ name: 'w', shape: [2, 3], data }], undefined, { dtype });
      const f = await openSafetensors(path);
      await rejectsFileError(
        f.tensors.get('w')!.load(),
        path,
        /^tensor w \[2,3\] holds NaN at element 5 \(row 1, column 2\)/,
      );
    });
  }

  it('large finite values pass', async () => {
    const path = join(tmp.dir, 'big.safetensors');
    writeFileSync(path, '');
    await writeSafetensors(path, [{ name: 'w', shape: [2], data: new Float32Array([3e38, -3e38]) }]);
    const f = await openSafetensors(path);
    assert.deepEqual([...(await f.tensors.get('w')!.load())], [Math.fround(3e38), Math.fround(-3e38)]);
  });
});
