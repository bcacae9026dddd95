/**
 * Physical structured removal, tensor by tensor: pruneStructured's tensors are the rows / columns the plan keeps
 * (checked by indexing the source with the plan, not with the pruning code's helpers), skipped blocks' biases are
 * zero, the config carries the kept sizes; zeroStructured keeps dense shapes with zeros exactly where the plan
 * removes. The structured plan file round-trips and refuses foreign models and edited files.
 */
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { GenepruneError } from '../../src/errors.js';
import { fullPlan, type StructuredPlan } from '../../src/masks/structured.js';
import {
  loadStructuredPlanFile,
  makeStructuredPlanFile,
  writeStructuredPlanFile,
} from '../../src/masks/structuredfile.js';
import { parameterCount } from '../../src/model/cost.js';
import { loadModelSpec } from '../../src/model/load.js';
import { randomLlamaSpec, randomT5Spec } from '../../src/model/random.js';
import type { ModelSpec } from '../../src/model/spec.js';
import { pruneStructured, structuredSummary, zeroStructured } from '../../src/prune/structured.js';
import { rejectsFileError, tempDir } from '../checkpoint/helpers.js';
import { writeGpt2 } from '../helpers/gpt2.js';

const tmp = tempDir('geneprune-structured-');
after(tmp.cleanup);

/** Llama GQA 4:2, 3 layers, width 12: layer 1 skips attention, layer 2 skips its MLP, layer 0 keeps 5 channels. */
function gqaSpec(): ModelSpec {
  return randomLlamaSpec({
    hiddenSize: 16,
    numLayers: 3,
    numHeads: 4,
    numKvHeads: 2,
    intermediateSize: 12,
    vocabSize: 23,
    maxPositions: 16,
    attentionBias: true,
    seed: 5,
  });
}

const GQA_PLAN: StructuredPlan = {
  heads: [
    [0, 3],
    [0, 1, 2, 3],
    [2, 3],
  ],
  channels: [
    [1, 4, 5, 9, 11],
    [0, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
    [0, 1],
  ],
  skipAttention: [false, true, false],
  skipMlp: [false, false, true],
};

async function values(spec: ModelSpec, role: string): Promise<Float32Array> {
  const t = spec.tensors.get(role);
  assert.ok(t, `${role} present`);
  return t.load();
}

/** Row r of a [rows, cols] array. */
const row = (a: Float32Array, cols: number, r: number) => Array.from(a.subarray(r * cols, (r + 1) * cols));
const column = (a: Float32Array, rows: number, cols: number, c: number) =>
  Array.from({ length: rows }, (_, r) => a[r * cols + c]);

describe('pruneStructured', () => {
  test('llama GQA: kept rows and columns, skipped biases zero, per-layer sizes in the config', async () => {
    const spec = gqaSpec();
    const pruned = pruneStructured(spec, GQA_PLAN);
    const c = pruned.config;
    assert.deepEqual(c.headsPerLayer, [2, 0, 2]);
    // Layer 0 keeps heads 0 (KV 0) and 3 (KV 1); layer 2 keeps 2 and 3 (both KV 1).
    assert.deepEqual(c.kvHeadsPerLayer, [2, 0, 1]);
    assert.deepEqual(c.intermediatePerLayer, [5, 11, 0]);
    const D = 16;
    for (let i = 0; i < 3; i++) {
      const kept = GQA_PLAN.skipMlp[i] ? [] : GQA_PLAN.channels[i];
      for (const name of ['gate', 'up']) {
        const src = await values(spec, `layers.${i}.mlp.${name}.weight`);
        const got = await values(pruned, `layers.${i}.mlp.${name}.weight`);
        assert.deepEqual(pruned.tensors.get(`layers.${i}.mlp.${name}.weight`)!.shape, [kept.length, D]);
        kept.forEach((ch, r) => {
          assert.deepEqual(row(got, D, r), row(src, D, ch));
        });
      }
      const src = await values(spec, `layers.${i}.mlp.down.weight`);
      const got = await values(pruned, `layers.${i}.mlp.down.weight`);
      assert.deepEqual(pruned.tensors.get(`layers.${i}.mlp.down.weight`)!.shape, [D, kept.length]);
      kept.forEach((ch, j) => {
        assert.deepEqual(column(got, D, kept.length, j), column(src, D, 12, ch));
      });
    }
    // The skipped attention's o bias is zero, the others are the source's; its q/k/v/o are empty.
    assert.ok((await values(pruned, 'layers.1.attn.o.bias')).every((x) => x === 0));
    assert.deepEqual(
      await values(pruned, 'layers.0.attn.o.bias'),
      await values(spec, 'layers.0.attn.o.bias'),
    );
    assert.deepEqual(pruned.tensors.get('layers.1.attn.q.weight')!.shape, [0, D]);
    assert.deepEqual(pruned.tensors.get('layers.1.attn.o.weight')!.shape, [D, 0]);
    // q rows of layer 2's kept heads 2 and 3 (head dim 4).
    const q = await values(spec, 'layers.2.attn.q.weight');
    const pq = await values(pruned, 'layers.2.attn.q.weight');
    assert.deepEqual(Array.from(pq), Array.from(q.subarray(8 * D, 16 * D)));
    // Untouched tensors are the source's own objects (nothing copied).
    assert.equal(pruned.tensors.get('embed.weight'), spec.tensors.get('embed.weight'));
  });

  test('the full plan changes nothing but leaves sizes; summary counts parameters by hand', async () => {
    const spec = gqaSpec();
    const same = pruneStructured(spec, fullPlan(spec.config));
    assert.equal(same.config.intermediatePerLayer, undefined);
    for (const [role, t] of spec.tensors) assert.equal(same.tensors.get(role), t, role);
    const s = structuredSummary(spec, GQA_PLAN, { contextLength: 8 });
    // Removed: MLP channels 7 + 1 + 12 (gate, up rows and down columns: 3·D each), heads: layer 0 2 query
    // (q rows + bias, o columns: 4·(2D+1) each), layer 1 4 query + 2 KV (k, v rows + biases: 2·4·(D+1) each),
    // layer 2 2 query + 1 KV.
    const D = 16;
    const removed = 20 * 3 * D + 8 * 4 * (2 * D + 1) + 3 * 2 * 4 * (D + 1);
    assert.equal(s.parametersBefore, parameterCount(spec));
    assert.equal(s.parametersAfter, s.parametersBefore - removed);
    assert.deepEqual(s.keptWidths, [5, 11, 0]);
    assert.deepEqual(s.widthsBefore, [12, 12, 12]);
    assert.deepEqual(s.skippedAttention, [1]);
    assert.deepEqual(s.skippedMlp, [2]);
    assert.ok(s.flopsRatio > 0 && s.flopsRatio < 1);
  });

  test('gpt2 (c_fc/c_proj loaded as mlp.up/down): fc bias rows kept, skipped MLP down bias zero', async () => {
    const dir = join(tmp.dir, 'gpt2');
    const hf = await writeGpt2(dir, { embd: 8, heads: 2, layers: 2, inner: 10, vocab: 19, positions: 16 }, 3);
    const spec = await loadModelSpec(dir);
    const plan: StructuredPlan = {
      heads: [[1], [0, 1]],
      channels: [[0, 3, 7], [2]],
      skipAttention: [false, false],
      skipMlp: [false, true],
    };
    const pruned = pruneStructured(spec, plan);
    assert.deepEqual(pruned.config.intermediatePerLayer, [3, 0]);
    // HF's c_fc is [embd, inner] (Conv1D): the kept channels are its columns, and c_fc.bias entries.
    const fcBias = hf.get('transformer.h.0.mlp.c_fc.bias')!.data;
    assert.deepEqual(
      Array.from(await values(pruned, 'layers.0.mlp.up.bias')),
      [0, 3, 7].map((j) => fcBias[j]),
    );
    const fc = hf.get('transformer.h.0.mlp.c_fc.weight')!.data;
    const up = await values(pruned, 'layers.0.mlp.up.weight');
    [0, 3, 7].forEach((j, r) => {
      assert.deepEqual(row(up, 8, r), column(fc, 8, 10, j));
    });
    const proj = hf.get('transformer.h.0.mlp.c_proj.weight')!.data; // [inner, embd]
    const down = await values(pruned, 'layers.0.mlp.down.weight');
    [0, 3, 7].forEach((j, k) => {
      assert.deepEqual(column(down, 8, 3, k), row(proj, 8, j));
    });
    assert.ok((await values(pruned, 'layers.1.mlp.down.bias')).every((x) => x === 0));
    assert.deepEqual(
      Array.from(await values(pruned, 'layers.0.mlp.down.bias')),
      Array.from(hf.get('transformer.h.0.mlp.c_proj.bias')!.data),
    );
  });

  test('zeroStructured: dense shapes, zeros exactly where the plan removes', async () => {
    const spec = gqaSpec();
    const padded = zeroStructured(spec, GQA_PLAN);
    assert.equal(padded.config, spec.config);
    const D = 16;
    for (let i = 0; i < 3; i++) {
      const kept = new Set(GQA_PLAN.skipMlp[i] ? [] : GQA_PLAN.channels[i]);
      for (const name of ['gate', 'up']) {
        const src = await values(spec, `layers.${i}.mlp.${name}.weight`);
        const got = await values(padded, `layers.${i}.mlp.${name}.weight`);
        for (let r = 0; r < 12; r++) {
          assert.deepEqual(
            row(got, D, r),
            kept.has(r) ? row(src, D, r) : Array(D).fill(0),
            `${name} ${i}:${r}`,
          );
        }
      }
      const src = await values(spec, `layers.${i}.mlp.down.weight`);
      const got = await values(padded, `layers.${i}.mlp.down.weight`);
      for (let j = 0; j < 12; j++) {
        const want = kept.has(j) ? column(src, D, 12, j) : Array(D).fill(0);
        assert.deepEqual(column(got, D, 12, j), want, `down ${i}:${j}`);
      }
    }
    // Layer 1's attention is skipped: every q row, o column and its o bias are zero.
    for (const role of ['q.weight', 'k.weight', 'v.weight', 'o.weight', 'o.bias', 'q.bias']) {
      assert.ok(
        (await values(padded, `layers.1.attn.${role}`)).every((x) => x === 0),
        role,
      );
    }
    // The source is not touched.
    assert.ok((await values(spec, 'layers.1.attn.o.bias')).some((x) => x !== 0));
  });

  test('refusals: encoder-decoders and plans that do not fit', () => {
    const t5 = randomT5Spec({
      hiddenSize: 8,
      encoderLayers: 1,
      decoderLayers: 1,
      numHeads: 2,
      headDim: 4,
      intermediateSize: 6,
      vocabSize: 11,
      seed: 1,
    });
    assert.throws(
      () => pruneStructured(t5, fullPlan(t5.config)),
      (e: unknown) => e instanceof GenepruneError && /encoder-decoders/.test(e.message),
    );
    const spec = gqaSpec();
    const bad = { ...GQA_PLAN, channels: [[3, 1], [], []] };
    assert.throws(
      () => pruneStructured(spec, bad),
      (e: unknown) => e instanceof GenepruneError && /layer 0's channels must be ascending/.test(e.message),
    );
  });
});

describe('structured plan file', () => {
  test('round trip; a foreign model, an edited file and a plan out of range are refused naming the file', async () => {
    const spec = gqaSpec();
    const path = join(tmp.dir, 'plan.json');
    const file = await writeStructuredPlanFile(path, spec, GQA_PLAN, { method: 'test' });
    assert.deepEqual(file.kept, { heads: [2, 0, 2], kvHeads: [2, 0, 1], widths: [5, 11, 0] });
    const loaded = await loadStructuredPlanFile(path, spec);
    assert.deepEqual(loaded.plan, GQA_PLAN);
    assert.match(loaded.sha256, /^[0-9a-f]{64}$/);

    const other = randomLlamaSpec({
      hiddenSize: 16,
      numLayers: 3,
      numHeads: 4,
      numKvHeads: 2,
      intermediateSize: 12,
      vocabSize: 23,
      maxPositions: 16,
      attentionBias: true,
      seed: 6,
    });
    await rejectsFileError(loadStructuredPlanFile(path, other), path, /different weights/);

    const edited = join(tmp.dir, 'edited.json');
    await writeFile(edited, JSON.stringify({ ...file, kept: { ...file.kept, widths: [5, 11, 2] } }));
    await rejectsFileError(
      loadStructuredPlanFile(edited, spec),
      edited,
      /"kept" is .* corrupt or was edited/,
    );

    const wide = join(tmp.dir, 'wide.json');
    const made = await makeStructuredPlanFile(spec, GQA_PLAN);
    made.plan.channels[0] = [1, 12];
    await writeFile(wide, JSON.stringify(made));
    await rejectsFileError(
      loadStructuredPlanFile(wide, spec),
      wide,
      /channels must be ascending indices below 12/,
    );

    const head = join(tmp.dir, 'headmask.json');
    await writeFile(head, JSON.stringify({ format: 'geneprune-head-mask', version: 2 }));
    await rejectsFileError(loadStructuredPlanFile(head, spec), head, /not a geneprune structured plan/);
  });
});
