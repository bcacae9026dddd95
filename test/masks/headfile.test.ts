/**
 * Mask files (version 2) and pruned-export provenance through the library, on small random models: genes over
 * the heads present, which of shape / weights / lineage a refusal names, version-1 files refused, provenance
 * written and read back from either file of an export.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { GenepruneError } from '../../src/errors.js';
import { loadMaskFile, makeMaskFile } from '../../src/masks/headfile.js';
import {
  geneCount,
  geneIndex,
  geneOffsets,
  headMaskOf,
  headOfGene,
  keptHeads,
  removedList,
} from '../../src/masks/heads.js';
import { modelFingerprint } from '../../src/model/identity.js';
import { loadModelSpec } from '../../src/model/load.js';
import { randomLlamaSpec } from '../../src/model/random.js';
import type { ModelSpec } from '../../src/model/spec.js';
import { exportModel } from '../../src/prune/export.js';
import { pruneHeads } from '../../src/prune/heads.js';
import { tempDir } from '../checkpoint/helpers.js';

const tmp = tempDir('geneprune-maskfile-');
after(tmp.cleanup);

function spec(seed = 1): ModelSpec {
  return randomLlamaSpec({
    hiddenSize: 32,
    numLayers: 3,
    numHeads: 4,
    numKvHeads: 2,
    intermediateSize: 24,
    vocabSize: 19,
    maxPositions: 12,
    seed,
  });
}

/** Layer 0 keeps heads 0 1 3, layer 1 keeps 2, layer 2 keeps all: 3 1 4 heads left. */
const FIRST = Uint8Array.from([1, 1, 0, 1, 0, 0, 1, 0, 1, 1, 1, 1]);

async function writeMask(name: string, s: ModelSpec, genome: Uint8Array): Promise<string> {
  const path = join(tmp.dir, name);
  writeFileSync(path, JSON.stringify(await makeMaskFile(s, genome)));
  return path;
}

async function refusal(work: Promise<unknown>, where: string): Promise<string> {
  const err = await work.then(
    () => undefined,
    (e: unknown) => e,
  );
  assert.ok(err instanceof GenepruneError, `expected a refusal, got ${String(err)}`);
  assert.equal(err.where, where);
  return err.message;
}

describe('genomes over the heads present', () => {
  test('layer offsets, indices and lists follow each layer’s own head count', () => {
    const pruned = pruneHeads(spec(), FIRST).config;
    assert.deepEqual(pruned.headsPerLayer, [3, 1, 4]);
    assert.deepEqual(geneOffsets(pruned), [0, 3, 4, 8]);
    assert.equal(geneCount(pruned), 8);
    assert.equal(geneIndex(pruned, 2, 1), 5);
    assert.deepEqual(headOfGene(pruned, 5), [2, 1]);
    assert.deepEqual(headOfGene(pruned, 3), [1, 0]);
    const g = Uint8Array.from([1, 0, 1, 0, 1, 1, 0, 1]);
    assert.deepEqual(removedList(pruned, g), ['0:1', '1:0', '2:2']);
    assert.deepEqual(keptHeads(pruned, g).query, [2, 0, 3]);
    // The engine's feed is [layers, max heads]: gene offset(l) + h lands on row l, column h.
    assert.deepEqual([...headMaskOf(pruned, g)], [1, 0, 1, 1, 0, 1, 1, 1, 1, 1, 0, 1]);
    // An unpruned model keeps gene = layer × heads + head.
    assert.equal(geneIndex(spec().config, 2, 3), 11);
  });
});

describe('mask files', () => {
  test('a mask is accepted by its own model, and names shape, weights or lineage when refused', async () => {
    const source = spec(1);
    const path = await writeMask('first.json', source, FIRST);
    assert.deepEqual([...(await loadMaskFile(path, source)).genome], [...FIRST]);
    const sha = (await loadMaskFile(path, source)).sha256;
    assert.match(sha, /^[0-9a-f]{64}$/);

    const pruned = pruneHeads(source, FIRST);
    assert.match(
      await refusal(loadMaskFile(path, pruned), path),
      /^mask is for 4 4 4 query heads per layer, this model has 3 1 4 \(made for /,
    );
    const sibling = spec(2);
    const fp = (await modelFingerprint(source)).slice(0, 12);
    const message = await refusal(loadMaskFile(path, sibling), path);
    assert.match(
      message,
      /same shape, different weights \(fingerprint ([0-9a-f]{12})… vs ([0-9a-f]{12})…\)$/,
    );
    assert.ok(message.includes(`fingerprint ${fp}…`));
  });

  test('version-1 files are refused with a reason and a remedy', async () => {
    const s = spec(3);
    const path = join(tmp.dir, 'v1.json');
    const v2 = await makeMaskFile(s, new Uint8Array(12).fill(1));
    writeFileSync(path, JSON.stringify({ ...v2, version: 1 }));
    assert.match(await refusal(loadMaskFile(path, s), path), /version-1 .*run the head search again/);
  });
});

describe('a head mask whose fields contradict its keep bits', () => {
  test('is refused naming the file and the field; the untouched file is accepted', async () => {
    const s = spec(6);
    const good = await makeMaskFile(s, FIRST);
    const path = join(tmp.dir, 'contradicts.json');
    writeFileSync(path, JSON.stringify(good));
    assert.deepEqual([...(await loadMaskFile(path, s)).genome], [...FIRST]);
    // FIRST removes 4 of 12 heads: 0:2, 1:0, 1:1, 1:3 (written out by hand, not by removedList).
    assert.deepEqual(good.removed, ['0:2', '1:0', '1:1', '1:3']);
    const edits: Array<[string, unknown]> = [
      ['removed', ['0:2', '1:0', '1:1']],
      ['removed', undefined],
      ['sparsity', 0.5],
      ['headsPerLayer', [4, 4, 3]],
      ['numLayers', 2],
      ['keptQueryHeads', [4, 1, 4]],
      ['keptKvHeads', [1, 1, 1]],
    ];
    for (const [field, value] of edits) {
      writeFileSync(path, JSON.stringify({ ...good, [field]: value }));
      const message = await refusal(loadMaskFile(path, s), path);
      assert.match(message, new RegExp(`^"${field}" is .* but "keep" gives .*corrupt or was edited$`), field);
    }
    // A share computed as removed/total (4/12) instead of 1 − kept/total differs only by rounding: accepted.
    writeFileSync(path, JSON.stringify({ ...good, sparsity: 4 / 12 }));
    assert.deepEqual([...(await loadMaskFile(path, s)).genome], [...FIRST]);
    // keep edited alone (a head put back) contradicts the recorded removed list and sparsity.
    writeFileSync(path, JSON.stringify({ ...good, keep: [...FIRST].map((v, i) => (i === 2 ? 1 : v)) }));
    assert.match(await refusal(loadMaskFile(path, s), path), /^"removed" is/);
  });
});

describe('provenance of pruned exports', () => {
  test('is written to config.json and the weights, read back, and extended by a second pruning', async () => {
    const source = spec(4);
    const maskPath = await writeMask('for-source.json', source, FIRST);
    const mask = await loadMaskFile(maskPath, source);
    const once = join(tmp.dir, 'once');
    await exportModel({
      spec: source,
      genome: mask.genome,
      maskFile: { path: maskPath, sha256: mask.sha256 },
      out: once,
      format: 'hf',
    });
    const onceSpec = await loadModelSpec(once);
    const [step] = onceSpec.provenance!.lineage;
    assert.equal(step.source.fingerprint, await modelFingerprint(source));
    assert.deepEqual(step.source.shape.queryHeads, [4, 4, 4]);
    assert.deepEqual(step.mask, {
      path: maskPath,
      sha256: mask.sha256,
      removed: ['0:2', '1:0', '1:1', '1:3'],
    });
    assert.match(
      await refusal(loadMaskFile(maskPath, onceSpec), maskPath),
      new RegExp(`pruned with mask sha256 ${mask.sha256.slice(0, 16)}… \\(${maskPath}\\), 4 heads removed`),
    );

    // Prune the export again, with a mask made for it; the lineage grows, and both masks are refused there.
    const second = await writeMask('for-once.json', onceSpec, Uint8Array.from([1, 0, 1, 1, 1, 0, 1, 1]));
    const loaded = await loadMaskFile(second, onceSpec);
    const twice = join(tmp.dir, 'twice');
    await exportModel({ spec: onceSpec, genome: loaded.genome, out: twice, format: 'transformersjs' });
    // A transformers.js-only export has no safetensors: its config.json carries the record alone.
    const twiceSpec = pruneHeads(onceSpec, loaded.genome);
    const config = JSON.parse(readFileSync(join(twice, 'config.json'), 'utf8'));
    assert.equal(config.geneprune.lineage.length, 2);
    const read = { ...twiceSpec, provenance: config.geneprune };
    for (const p of [maskPath, second]) {
      assert.match(await refusal(loadMaskFile(p, read), p), /apply the mask to the source model/);
    }
  });

  test('a malformed record is refused naming the file that holds it', async () => {
    const out = join(tmp.dir, 'plain');
    await exportModel({ spec: spec(5), out, format: 'hf' });
    assert.equal((await loadModelSpec(out)).provenance, undefined, 'an unpruned export has no lineage');
    const configPath = join(out, 'config.json');
    const config = JSON.parse(readFileSync(configPath, 'utf8'));
    writeFileSync(configPath, JSON.stringify({ ...config, geneprune: { format: 'geneprune-provenance' } }));
    assert.match(await refusal(loadModelSpec(out), configPath), /unsupported provenance version/);
  });
});
