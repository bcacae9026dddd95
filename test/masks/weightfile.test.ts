/**
 * Weight masks on small random models: the prunable matrices and the weight space (genome ↔ per-matrix masks,
 * sparsity over prunable weights and over all parameters), the streaming global selection against
 * `selectGlobal`, and the weight-mask file: a round trip, and one-line refusals naming the file for a truncated
 * or corrupt file, a mask for another model, and masks of the wrong shape.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { openSafetensors, readTensorBytes, writeSafetensors } from '../../src/checkpoint/safetensors.js';
import { type Bitset, countOnes, packBits, unpackBits } from '../../src/masks/bitset.js';
import { holdsPattern, selectGlobal, selectGlobalStreaming } from '../../src/masks/select.js';
import {
  loadWeightMaskFile,
  WEIGHT_MASK_METADATA_KEY,
  writeWeightMaskFile,
} from '../../src/masks/weightfile.js';
import { weightMasksFromKeeps } from '../../src/masks/weights.js';
import { parameterCount } from '../../src/model/cost.js';
import { randomLlamaSpec } from '../../src/model/random.js';
import type { ModelSpec } from '../../src/model/spec.js';
import { RANDOM } from '../../src/spaces/weights/baselines.js';
import { createWeightSpace } from '../../src/spaces/weights/space.js';
import { createRng } from '../../src/util/rng.js';
import { rejectsFileError, tempDir } from '../checkpoint/helpers.js';

/** Equal bits (packed bitsets keep the bits past their length 0, so equal bits are equal words). */
function sameBits(a: Bitset, b: Bitset): boolean {
  return a.length === b.length && a.words.every((w, i) => w === b.words[i]);
}

const tmp = tempDir('geneprune-weightfile-');
after(tmp.cleanup);

function spec(seed = 1, numLayers = 2): ModelSpec {
  return randomLlamaSpec({
    hiddenSize: 16,
    numLayers,
    numHeads: 4,
    numKvHeads: 2,
    intermediateSize: 12,
    vocabSize: 23,
    maxPositions: 8,
    seed,
  });
}

/** A seeded random mask of `spec` at `sparsity` per matrix (or 2:4 with `pattern`). */
async function randomMasks(s: ModelSpec, sparsity: number, seed = 3, pattern = false) {
  const space = createWeightSpace(s);
  const { keeps } = await RANDOM.select({
    spec: s,
    matrices: space.matrices,
    sparsity,
    rng: createRng(seed),
    calibration: { stream: [], context: 1, tokens: 0 },
    ...(pattern ? { pattern: { n: 2, m: 4 } } : {}),
  });
  return weightMasksFromKeeps(space.matrices, keeps);
}

describe('the weight space', () => {
  test('prunable matrices are q k v o gate up down of every layer; genomes split and join', async () => {
    const s = spec();
    const space = createWeightSpace(s);
    assert.deepEqual(
      space.matrices.slice(0, 7).map((m) => `${m.role} ${m.rows}x${m.cols}`),
      [
        'layers.0.attn.q.weight 16x16',
        'layers.0.attn.k.weight 8x16',
        'layers.0.attn.v.weight 8x16',
        'layers.0.attn.o.weight 16x16',
        'layers.0.mlp.gate.weight 12x16',
        'layers.0.mlp.up.weight 12x16',
        'layers.0.mlp.down.weight 16x12',
      ],
    );
    assert.equal(space.genes, 2 * (256 + 128 + 128 + 256 + 3 * 192));
    const masks = await randomMasks(s, 0.3);
    const g = space.join(masks);
    const back = space.split(g);
    for (const [role, bits] of masks) assert.ok(sameBits(bits, back.get(role)!), role);
    // Feeds: one byte per weight, the same bits.
    const feeds = space.masks(g).weightMasks!;
    for (const [role, bits] of masks) assert.equal(countOnes(packBits(feeds.get(role)!)), countOnes(bits));
    const report = space.report(g);
    // Each matrix at round(0.3 · n) pruned.
    for (const m of report.matrices) assert.equal(m.pruned, Math.round(0.3 * m.weights), m.role);
    assert.equal(report.prunable.pruned, space.genes - countOnes(g));
    assert.equal(report.overall.parameters, parameterCount(s));
    assert.equal(space.keptParameters(g), parameterCount(s) - report.prunable.pruned);
    assert.ok(report.overall.sparsity < report.prunable.sparsity);
  });

  test('the streaming global selection equals selectGlobal, ties included', async () => {
    const rng = createRng(5);
    // Few distinct values, so many ties straddle the threshold.
    const scores = [37, 64, 5, 128].map((n) => Float32Array.from({ length: n }, () => rng.nextInt(9) / 4));
    for (const s of [0, 0.1, 0.37, 0.5, 0.93]) {
      const expected = selectGlobal(scores, s);
      const got: Uint8Array[] = [];
      await selectGlobalStreaming(
        scores.map((x) => x.length),
        s,
        async (i) => scores[i],
        (i, keep) => {
          got[i] = keep;
        },
      );
      assert.deepEqual(got, expected, `sparsity ${s}`);
    }
  });
});

describe('weight-mask files', () => {
  test('a round trip keeps every bit, the model identity, the pattern and the counts', async () => {
    const s = spec();
    const masks = await randomMasks(s, 0, 3, true);
    const path = join(tmp.dir, 'round.safetensors');
    const written = await writeWeightMaskFile(path, s, masks, {
      pattern: { n: 2, m: 4 },
      info: { method: 'random' },
    });
    const loaded = await loadWeightMaskFile(path, s);
    assert.equal(loaded.sha256, written.sha256);
    assert.equal(loaded.file.pattern, '2:4');
    assert.deepEqual(loaded.pattern, { n: 2, m: 4 });
    assert.equal(loaded.file.prunable.sparsity, 0.5);
    assert.equal(loaded.file.info?.method, 'random');
    assert.equal(loaded.file.layers.length, 2);
    for (const [role, bits] of masks) assert.ok(sameBits(bits, loaded.masks.get(role)!), role);
    // Any safetensors reader sees U8 tensors named by role.
    const st = await openSafetensors(path);
    const q = st.tensors.get('layers.0.attn.q.weight')!;
    assert.equal(q.dtype, 'U8');
    assert.deepEqual(q.shape, [32]);
    assert.equal((await readTensorBytes(q)).length, 32);
    for (const m of createWeightSpace(s).matrices) {
      assert.ok(holdsPattern(unpackBits(loaded.masks.get(m.role)!), m.cols, { n: 2, m: 4 }), m.role);
    }
  });

  test('a truncated or corrupt file, or not a mask file, is refused naming it', async () => {
    const s = spec();
    const good = join(tmp.dir, 'good.safetensors');
    await writeWeightMaskFile(good, s, await randomMasks(s, 0.5));
    const bytes = readFileSync(good);

    const truncated = join(tmp.dir, 'truncated.safetensors');
    writeFileSync(truncated, bytes);
    truncateSync(truncated, bytes.length - 5);
    await rejectsFileError(loadWeightMaskFile(truncated, s), truncated, /out of range|exceeds/);

    const tiny = join(tmp.dir, 'tiny.safetensors');
    writeFileSync(tiny, bytes.subarray(0, 4));
    await rejectsFileError(loadWeightMaskFile(tiny, s), tiny, /truncated/);

    // One bit flipped in the last byte of data: the counts no longer match the description.
    const flipped = join(tmp.dir, 'flipped.safetensors');
    const copy = Buffer.from(bytes);
    copy[copy.length - 1] ^= 0x01;
    writeFileSync(flipped, copy);
    await rejectsFileError(loadWeightMaskFile(flipped, s), flipped, /corrupt/);

    const json = join(tmp.dir, 'mask.json');
    writeFileSync(json, '{"format": "geneprune-head-mask"}');
    await rejectsFileError(loadWeightMaskFile(json, s), json, /safetensors|truncated/);

    const missing = join(tmp.dir, 'missing.safetensors');
    await rejectsFileError(loadWeightMaskFile(missing, s), missing, /no such file/);

    const plain = join(tmp.dir, 'plain.safetensors');
    await writeSafetensors(plain, [{ name: 'x', shape: [2], data: new Float32Array(2) }]);
    await rejectsFileError(loadWeightMaskFile(plain, s), plain, /not a geneprune weight-mask file/);
  });

  test('a mask for another model is refused: other weights, other shape', async () => {
    const s = spec();
    const path = join(tmp.dir, 'for-1.safetensors');
    await writeWeightMaskFile(path, s, await randomMasks(s, 0.5));
    await rejectsFileError(loadWeightMaskFile(path, spec(2)), path, /same shape, different weights/);
    await rejectsFileError(
      loadWeightMaskFile(path, spec(1, 3)),
      path,
      /mask is for 2 layers, this model has 3/,
    );
  });

  test('masks of the wrong shape, missing or extra, are refused naming the matrix', async () => {
    const s = spec();
    const good = join(tmp.dir, 'shapes.safetensors');
    await writeWeightMaskFile(good, s, await randomMasks(s, 0.5));
    const st = await openSafetensors(good);
    const description = JSON.parse(st.metadata[WEIGHT_MASK_METADATA_KEY]);
    const tensors = await Promise.all(
      [...st.tensors].map(async ([name, t]) => ({
        name,
        shape: t.shape,
        dtype: 'U8' as const,
        bytes: await readTensorBytes(t),
      })),
    );
    const rewrite = async (name: string, d: unknown, ts = tensors) => {
      const path = join(tmp.dir, name);
      await writeSafetensors(path, ts, { [WEIGHT_MASK_METADATA_KEY]: JSON.stringify(d) });
      return path;
    };
    const q = 'layers.0.attn.q.weight';
    const wrongRows = structuredClone(description);
    wrongRows.matrices[0].rows = 8;
    const p1 = await rewrite('rows.safetensors', wrongRows);
    await rejectsFileError(
      loadWeightMaskFile(p1, s),
      p1,
      new RegExp(`${q} is \\[8, 16\\], the model's matrix is \\[16, 16\\]`),
    );

    const short = tensors.map((t) =>
      t.name === q ? { ...t, shape: [16], bytes: t.bytes.subarray(0, 16) } : t,
    );
    const p2 = await rewrite('short.safetensors', description, short);
    await rejectsFileError(
      loadWeightMaskFile(p2, s),
      p2,
      /tensor layers\.0\.attn\.q\.weight is U8 \[16\], a packed \[16, 16\] mask is U8 \[32\]/,
    );

    const p3 = await rewrite('missing.safetensors', description, tensors.slice(1));
    await rejectsFileError(loadWeightMaskFile(p3, s), p3, /holds no mask for layers\.0\.attn\.q\.weight/);

    const extra = [
      ...tensors,
      { name: 'lm_head.weight', shape: [1], dtype: 'U8' as const, bytes: new Uint8Array(1) },
    ];
    const p4 = await rewrite('extra.safetensors', description, extra);
    await rejectsFileError(loadWeightMaskFile(p4, s), p4, /lm_head\.weight, which is not a prunable matrix/);

    const badPattern = { ...description, pattern: '2:4' };
    const p5 = await rewrite('pattern.safetensors', badPattern);
    await rejectsFileError(loadWeightMaskFile(p5, s), p5, /breaks the 2:4 pattern/);
  });

  /** The file's tensors and description, and a writer of edited copies. */
  async function parts(path: string) {
    const st = await openSafetensors(path);
    const description = JSON.parse(st.metadata[WEIGHT_MASK_METADATA_KEY]);
    const tensors = await Promise.all(
      [...st.tensors].map(async ([name, t]) => ({
        name,
        shape: t.shape,
        dtype: 'U8' as const,
        bytes: Uint8Array.from(await readTensorBytes(t)),
      })),
    );
    const rewrite = async (name: string, d: unknown, ts = tensors) => {
      const out = join(tmp.dir, name);
      await writeSafetensors(out, ts, { [WEIGHT_MASK_METADATA_KEY]: JSON.stringify(d) });
      return out;
    };
    return { description, tensors, rewrite };
  }

  test('the counts a reader gets are the bits’ own: a 100 % mask recorded as 50 % reads as 100 %', async () => {
    const s = spec();
    const space = createWeightSpace(s);
    const all = weightMasksFromKeeps(
      space.matrices,
      space.matrices.map((m) => new Uint8Array(m.rows * m.cols)),
    );
    const path = join(tmp.dir, 'all-pruned.safetensors');
    await writeWeightMaskFile(path, s, all);
    const { description, rewrite } = await parts(path);
    // Every prunable weight: 2 layers × (256 + 128 + 128 + 256 + 3·192), counted by hand.
    assert.equal(description.prunable.pruned, 2 * 1344);
    const lying = structuredClone(description);
    lying.prunable.sparsity = 0.5;
    lying.overall.sparsity = 0.01;
    for (const l of lying.layers) l.sparsity = 0.5;
    const p = await rewrite('lying-shares.safetensors', lying);
    const loaded = await loadWeightMaskFile(p, s);
    assert.equal(loaded.file.prunable.sparsity, 1);
    assert.equal(loaded.file.prunable.pruned, 2688);
    assert.equal(loaded.file.overall.sparsity, 2688 / parameterCount(s));
    assert.deepEqual(
      loaded.file.layers.map((l) => l.sparsity),
      [1, 1],
    );
    // Recorded totals that are not the sum of the bits are refused.
    const wrongTotal = structuredClone(description);
    wrongTotal.prunable.pruned = 1344;
    const p2 = await rewrite('wrong-total.safetensors', wrongTotal);
    await rejectsFileError(
      loadWeightMaskFile(p2, s),
      p2,
      /prune 2688 weights in all, its description says 1344/,
    );
    const wrongLayer = structuredClone(description);
    wrongLayer.layers[1].pruned = 1;
    const p3 = await rewrite('wrong-layer.safetensors', wrongLayer);
    await rejectsFileError(
      loadWeightMaskFile(p3, s),
      p3,
      /layer 1 prune 1344 weights, its description says 1/,
    );
  });

  test('the bits’ checksum catches a flip that keeps every count; a file without one is read on its counts', async () => {
    const s = spec();
    const path = join(tmp.dir, 'checksummed.safetensors');
    const masks = await randomMasks(s, 0.5);
    await writeWeightMaskFile(path, s, masks);
    const { description, tensors, rewrite } = await parts(path);
    // The checksum is sha256 over the tensors' bytes in the model's matrix order, computed here independently.
    const h = createHash('sha256');
    for (const m of createWeightSpace(s).matrices) h.update(tensors.find((t) => t.name === m.role)!.bytes);
    assert.equal(description.bitsSha256, h.digest('hex'));
    assert.equal((await loadWeightMaskFile(path, s)).checksum, true);

    // Swap a kept and a pruned weight inside one byte of q: every count stays, the bits differ.
    const q = tensors.find((t) => t.name === 'layers.0.attn.q.weight')!;
    const at = q.bytes.findIndex((b) => b !== 0 && b !== 0xff);
    assert.ok(at >= 0, 'a byte holding both kept and pruned weights');
    const byte = q.bytes[at];
    const one = byte & -byte; // its lowest kept bit
    const cleared = ~byte & 0xff;
    const zero = cleared & -cleared; // its lowest pruned bit
    const swapped = tensors.map((t) =>
      t === q ? { ...t, bytes: Uint8Array.from(t.bytes, (b, i) => (i === at ? b ^ one ^ zero : b)) } : t,
    );
    const flipped = await rewrite('swap.safetensors', description, swapped);
    await rejectsFileError(
      loadWeightMaskFile(flipped, s),
      flipped,
      /bits have sha256 .* the file records .*corrupt/,
    );

    // An older file (no bitsSha256): accepted, its counts still checked, and said to carry no checksum.
    const { bitsSha256: _gone, ...older } = description;
    const old = await rewrite('older.safetensors', older);
    const loaded = await loadWeightMaskFile(old, s);
    assert.equal(loaded.checksum, false);
    for (const [role, bits] of masks) assert.ok(sameBits(bits, loaded.masks.get(role)!), role);
    const oldFlipped = await rewrite('older-swap.safetensors', older, swapped);
    assert.equal((await loadWeightMaskFile(oldFlipped, s)).checksum, false, 'what older files cannot catch');
  });
});
