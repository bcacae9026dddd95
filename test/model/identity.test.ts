/**
 * Model identity: the fingerprint covers every weight (one changed value anywhere changes it), does not depend
 * on the file format holding the weights, and is computed once per spec; shape differences are named.
 */
import assert from 'node:assert/strict';
import { isAbsolute, join, relative, resolve } from 'node:path';
import { after, describe, test } from 'node:test';
import { writeHfFolder } from '../../src/checkpoint/hf.js';
import {
  modelFingerprint,
  modelIdentity,
  modelShape,
  provenanceOfPruning,
  shapeDifference,
} from '../../src/model/identity.js';
import { llamaSpecToHf, writeLlama2cFromSpec } from '../../src/model/llama.js';
import { loadModelSpec } from '../../src/model/load.js';
import { randomLlamaSpec } from '../../src/model/random.js';
import { type ModelSpec, memoryTensor, type TensorSource } from '../../src/model/spec.js';
import { exportModel } from '../../src/prune/export.js';
import { pruneHeads } from '../../src/prune/heads.js';
import { tempDir } from '../checkpoint/helpers.js';
import { sharedPath, skipUnlessShared } from '../shared.js';

const tmp = tempDir('geneprune-identity-');
after(tmp.cleanup);

const MODEL = 'models/stories260K/stories260K.bin';

function spec(seed = 1): ModelSpec {
  return randomLlamaSpec({
    hiddenSize: 32,
    numLayers: 3,
    numHeads: 4,
    numKvHeads: 2,
    intermediateSize: 40,
    vocabSize: 25,
    maxPositions: 12,
    seed,
  });
}

/** The spec with one value of one tensor changed (a copy; the original is untouched). */
async function withOneValueChanged(s: ModelSpec, role: string, index: number): Promise<ModelSpec> {
  const t = s.tensors.get(role)!;
  const data = Float32Array.from(await t.load());
  data[index] += 1e-3;
  const tensors = new Map(s.tensors);
  tensors.set(role, memoryTensor(t.shape, data));
  return { ...s, tensors };
}

describe('model fingerprint', () => {
  test('changing one value in any one tensor changes it (o_proj, a late MLP tensor, and every other)', async () => {
    const base = spec();
    const before = await modelFingerprint(base);
    assert.match(before, /^[0-9a-f]{64}$/);
    const roles = [...base.tensors.keys()];
    assert.ok(roles.includes('layers.0.attn.o.weight') && roles.includes('layers.2.mlp.down.weight'));
    for (const role of roles) {
      const n = base.tensors.get(role)!.shape.reduce((a, b) => a * b, 1);
      // The last value too: a sampled fingerprint would miss the end of a tensor.
      const changed = await withOneValueChanged(base, role, n - 1);
      assert.notEqual(await modelFingerprint(changed), before, role);
      assert.equal(shapeDifference(modelShape(base.config), modelShape(changed.config), 'mask'), undefined);
    }
  });

  test('the same weights as a llama2.c .bin and as a Hugging Face folder give the same fingerprint', async () => {
    const s = spec(4);
    const bin = join(tmp.dir, 'same.bin');
    await writeLlama2cFromSpec(bin, s);
    const hfDir = join(tmp.dir, 'same-hf');
    const hf = llamaSpecToHf(s);
    await writeHfFolder(hfDir, { config: hf.config, tensors: hf.tensors });
    const fromBin = await loadModelSpec(bin);
    const fromHf = await loadModelSpec(hfDir);
    // llama2.c stores q/k rows interleaved; the spec (and so the hash) sees them half-split either way.
    assert.equal(await modelFingerprint(fromBin), await modelFingerprint(s));
    assert.equal(await modelFingerprint(fromHf), await modelFingerprint(s));
  });

  test('stories260K.bin and its unpruned Hugging Face export have one identity', {
    skip: skipUnlessShared(MODEL),
  }, async () => {
    const bin = await loadModelSpec(sharedPath(MODEL)!);
    const out = join(tmp.dir, 'stories-hf');
    await exportModel({ spec: bin, out, format: 'hf' });
    const hf = await loadModelSpec(out);
    const [a, b] = [await modelIdentity(bin), await modelIdentity(hf)];
    assert.equal(a.fingerprint, b.fingerprint);
    assert.deepEqual(a.shape, b.shape);
    assert.deepEqual(a.shape.queryHeads, [8, 8, 8, 8, 8]);
  });

  test('is computed once per spec object', async () => {
    const base = spec(5);
    const loads = new Map<string, number>();
    const counted = new Map<string, TensorSource>();
    for (const [role, t] of base.tensors) {
      counted.set(role, {
        shape: t.shape,
        dtype: t.dtype,
        load: () => {
          loads.set(role, (loads.get(role) ?? 0) + 1);
          return t.load();
        },
      });
    }
    const s: ModelSpec = { ...base, tensors: counted };
    const results = await Promise.all([modelFingerprint(s), modelIdentity(s), modelFingerprint(s)]);
    assert.equal((await modelIdentity(s)).fingerprint, results[0]);
    assert.equal(results[1].fingerprint, results[0]);
    assert.equal(loads.size, base.tensors.size, 'every tensor is hashed');
    for (const [role, n] of loads) assert.equal(n, 1, `${role} loaded ${n} times`);
  });

  test('a pruned spec has its own identity, whose shape lists the heads present per layer', async () => {
    const base = spec(6);
    const genome = Uint8Array.from([1, 0, 1, 1, 0, 0, 1, 1, 1, 1, 1, 0]);
    const pruned = pruneHeads(base, genome);
    const id = await modelIdentity(pruned);
    assert.notEqual(id.fingerprint, await modelFingerprint(base));
    assert.deepEqual(id.shape.queryHeads, [3, 2, 3]);
    assert.equal(
      shapeDifference(modelShape(base.config), id.shape, 'mask'),
      'mask is for 4 4 4 query heads per layer, this model has 3 2 3',
    );
  });
});

describe('provenance paths', () => {
  test('a model and mask given by relative paths are recorded absolute', {
    skip: skipUnlessShared(MODEL),
  }, async () => {
    const rel = relative(process.cwd(), sharedPath(MODEL)!);
    assert.ok(!isAbsolute(rel));
    const loaded = await loadModelSpec(rel);
    const p = await provenanceOfPruning(loaded, { path: 'package.json', removed: ['0:1'] });
    assert.equal(p.lineage[0].source.path, sharedPath(MODEL));
    assert.equal(p.lineage[0].mask.path, resolve('package.json'));
    const random = await provenanceOfPruning(spec(3), { removed: [] });
    assert.equal(random.lineage[0].source.path, spec(3).source);
  });
});
