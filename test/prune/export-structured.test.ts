/**
 * `export --structured`: the padded Hugging Face folder keeps dense shapes with zeros exactly where the plan
 * removes (read back from model.safetensors by HF name and compared with the source checkpoint's own tensors,
 * indexed by the plan alone), the summary counts MLP widths, skipped blocks and the FLOP ratio, the provenance
 * records the plan file, and the flags that do not fit are refused.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { exportModel } from '../../src/api/export.js';
import { openHfFolder } from '../../src/checkpoint/hf.js';
import { createRunner } from '../../src/engine/runner.js';
import { GenepruneError } from '../../src/errors.js';
import { type StructuredPlan, structuredMasksOf } from '../../src/masks/structured.js';
import { loadStructuredPlanFile, writeStructuredPlanFile } from '../../src/masks/structuredfile.js';
import { loadModelSpec } from '../../src/model/load.js';
import { tempDir } from '../checkpoint/helpers.js';
import { writeGemma } from '../helpers/gemma.js';
import { byteLevelTokenizerJson, writeGpt2 } from '../helpers/gpt2.js';

const tmp = tempDir('geneprune-export-structured-');
after(tmp.cleanup);

/** A byte-level tokenizer.json beside the model (257 ids; the API opens a model with its tokenizer). */
const addTokenizer = (dir: string) =>
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(byteLevelTokenizerJson()));

/** Every value of `got` is `want`'s, or 0 where `zero(i)` says the plan removes it. */
function assertZeroedWhere(
  got: Float32Array,
  want: Float32Array,
  zero: (i: number) => boolean,
  what: string,
) {
  assert.equal(got.length, want.length, what);
  for (let i = 0; i < got.length; i++) {
    if (got[i] !== (zero(i) ? 0 : want[i])) {
      assert.fail(`${what}[${i}] is ${got[i]}, expected ${zero(i) ? 0 : want[i]}`);
    }
  }
}

describe('export --structured, padded', () => {
  test('gpt2: removed heads, channels and skipped blocks are zero in the Conv1D layouts, all else the source', async () => {
    const src = join(tmp.dir, 'gpt2');
    const E = 12;
    const hd = 4;
    const I = 20;
    const written = await writeGpt2(
      src,
      { embd: E, heads: 3, layers: 3, inner: I, vocab: 257, positions: 16 },
      7,
    );
    addTokenizer(src);
    const spec = await loadModelSpec(src);
    const plan: StructuredPlan = {
      heads: [[0, 2], [1], [0, 1, 2]],
      channels: [[0, 1, 5, 6, 19], [3], Array.from({ length: I }, (_, j) => j)],
      skipAttention: [false, false, true],
      skipMlp: [false, true, false],
    };
    const planPath = join(tmp.dir, 'gpt2-plan.json');
    await writeStructuredPlanFile(planPath, spec, plan);
    const out = join(tmp.dir, 'gpt2-padded');
    const result = await exportModel({
      model: src,
      structured: planPath,
      out,
      format: 'hf',
      hfLayout: 'padded',
    });
    assert.equal(result.loaders?.layout, 'padded');
    assert.ok(result.loaders?.readers.some((r) => /stock class .*MLP channels/.test(r)));
    const folder = await openHfFolder(out);
    const config = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'));
    // Dense: no per-layer keys, no pruned_heads, no remote code.
    for (const key of [
      'intermediate_size_per_layer',
      'num_attention_heads_per_layer',
      'pruned_heads',
      'auto_map',
    ]) {
      assert.equal(config[key], undefined, key);
    }
    assert.equal(config.geneprune.lineage.at(-1).mask.structured.widths.join(' '), '5 0 20');
    for (let l = 0; l < 3; l++) {
      const h = `transformer.h.${l}`;
      const heads = plan.skipAttention[l] ? [] : plan.heads[l];
      const channels = plan.skipMlp[l] ? [] : plan.channels[l];
      const headGone = (col: number) => !heads.includes(Math.floor((col % E) / hd));
      const chGone = (j: number) => !channels.includes(j);
      const check = async (name: string, shape: number[], zero: (i: number) => boolean) => {
        const t = folder.tensors.get(`${h}.${name}`)!;
        assert.deepEqual(t.shape, shape, name);
        assertZeroedWhere(await t.load(), written.get(`${h}.${name}`)!.data, zero, `${h}.${name}`);
      };
      await check('attn.c_attn.weight', [E, 3 * E], (i) => headGone(i % (3 * E)));
      await check('attn.c_attn.bias', [3 * E], (i) => headGone(i));
      await check('attn.c_proj.weight', [E, E], (i) => headGone(Math.floor(i / E)));
      await check('attn.c_proj.bias', [E], () => plan.skipAttention[l]);
      await check('mlp.c_fc.weight', [E, I], (i) => chGone(i % I));
      await check('mlp.c_fc.bias', [I], (i) => chGone(i));
      await check('mlp.c_proj.weight', [I, E], (i) => chGone(Math.floor(i / E)));
      await check('mlp.c_proj.bias', [E], () => plan.skipMlp[l]);
      await check('ln_1.weight', [E], () => false);
    }
    // The summary: parameters of the compact model, per-layer widths and skipped blocks, fewer FLOPs.
    const s = result.summary!;
    assert.ok('keptWidths' in s);
    assert.deepEqual(s.keptWidths, [5, 0, 20]);
    assert.deepEqual(s.keptQueryHeads, [2, 1, 0]);
    assert.deepEqual(s.skippedAttention, [2]);
    assert.deepEqual(s.skippedMlp, [1]);
    // Removed: channels 15 + 20 (c_fc column + bias, c_proj row: 2E + 1 each), heads 1 + 2 + 3 (q, k, v columns
    // and biases, c_proj rows: hd·(4E + 3) each).
    assert.equal(s.parametersBefore - s.parametersAfter, 35 * (2 * E + 1) + 6 * hd * (4 * E + 3));
    assert.ok(s.flopsRatio > 0 && s.flopsRatio < 1);
  });

  test('gemma2 GQA: a KV head no kept query head reads is zero, skipped blocks zero, norms untouched', async () => {
    const src = join(tmp.dir, 'gemma2');
    const shape = {
      type: 'gemma2' as const,
      hidden: 16,
      layers: 2,
      heads: 4,
      kvHeads: 2,
      headDim: 4,
      inter: 24,
      vocab: 257,
    };
    const { tensors: written } = await writeGemma(src, shape, 3);
    addTokenizer(src);
    const spec = await loadModelSpec(src);
    const plan: StructuredPlan = {
      heads: [[0, 1], [2]],
      channels: [
        [2, 3, 4, 10],
        [0, 23],
      ],
      skipAttention: [false, false],
      skipMlp: [true, false],
    };
    const planPath = join(tmp.dir, 'gemma2-plan.json');
    await writeStructuredPlanFile(planPath, spec, plan);
    const out = join(tmp.dir, 'gemma2-padded');
    await exportModel({ model: src, structured: planPath, out, format: 'hf', hfLayout: 'padded' });
    const folder = await openHfFolder(out);
    const D = 16;
    for (let l = 0; l < 2; l++) {
      const p = `model.layers.${l}`;
      const heads = plan.heads[l];
      const kv = new Set(heads.map((h) => Math.floor(h / 2)));
      const channels = plan.skipMlp[l] ? [] : plan.channels[l];
      const check = async (name: string, zero: (i: number) => boolean) => {
        const t = folder.tensors.get(`${p}.${name}`)!;
        assert.deepEqual(t.shape, written.get(`${p}.${name}`)!.shape, name);
        assertZeroedWhere(await t.load(), written.get(`${p}.${name}`)!.data, zero, `${p}.${name}`);
      };
      await check('self_attn.q_proj.weight', (i) => !heads.includes(Math.floor(i / D / 4)));
      await check('self_attn.k_proj.weight', (i) => !kv.has(Math.floor(i / D / 4)));
      await check('self_attn.v_proj.weight', (i) => !kv.has(Math.floor(i / D / 4)));
      await check('self_attn.o_proj.weight', (i) => !heads.includes(Math.floor((i % 16) / 4)));
      await check('mlp.gate_proj.weight', (i) => !channels.includes(Math.floor(i / D)));
      await check('mlp.up_proj.weight', (i) => !channels.includes(Math.floor(i / D)));
      await check('mlp.down_proj.weight', (i) => !channels.includes(i % 24));
      for (const norm of [
        'post_attention_layernorm',
        'pre_feedforward_layernorm',
        'post_feedforward_layernorm',
      ]) {
        await check(`${norm}.weight`, () => false);
      }
    }
  });

  test('gpt2 compact: per-layer sizes, a skipped attention kept as one zeroed head, reloads as the masked model', async () => {
    const src = join(tmp.dir, 'gpt2');
    const planPath = join(tmp.dir, 'gpt2-plan.json');
    const spec = await loadModelSpec(src);
    const out = join(tmp.dir, 'gpt2-compact');
    const result = await exportModel({ model: src, structured: planPath, out, format: 'hf' });
    assert.equal(result.loaders?.layout, 'compact');
    assert.ok(result.loaders?.readers.some((r) => /trust_remote_code=True/.test(r)));
    const config = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'));
    assert.deepEqual(config.intermediate_size_per_layer, [5, 0, 20]);
    // Layer 2's attention is skipped: GPT-2's config cannot say 0 heads, so one zeroed head stays.
    assert.deepEqual(config.num_attention_heads_per_layer, [2, 1, 1]);
    assert.ok(config.auto_map);
    const reloaded = await loadModelSpec(out);
    const { plan } = await loadStructuredPlanFile(planPath, spec);
    const ids = [3, 250, 17, 96, 5, 41, 200];
    const run = async (s: typeof spec, masks?: ReturnType<typeof structuredMasksOf>) => {
      const runner = await createRunner(s, { output: 'logits', ...(masks ? { structuredMasks: true } : {}) });
      try {
        return await runner.run(
          { batch: 1, seq: ids.length, ids: BigInt64Array.from(ids.map(BigInt)) },
          masks,
        );
      } finally {
        await runner.release();
      }
    };
    const masked = await run(spec, structuredMasksOf(spec.config, plan));
    const got = await run(reloaded);
    let worst = 0;
    for (let i = 0; i < got.length; i++) worst = Math.max(worst, Math.abs(got[i] - masked[i]));
    assert.ok(worst <= 1e-4, `compact GPT-2: ${worst}`);
  });

  test('refusals: with --mask, with recovery, a plan for another model', async () => {
    const src = join(tmp.dir, 'gpt2');
    const planPath = join(tmp.dir, 'gpt2-plan.json');
    const out = join(tmp.dir, 'never');
    const refused = (flag: string, pattern: RegExp) => (e: unknown) =>
      e instanceof GenepruneError && e.where === flag && pattern.test(e.message);
    await assert.rejects(
      exportModel({ model: src, structured: planPath, mask: planPath, out }),
      refused('--structured', /holds its own heads/),
    );
    await assert.rejects(
      exportModel({ model: src, structured: planPath, recover: true, calib: src, out }),
      refused('--recover', /not built/),
    );
    await assert.rejects(
      exportModel({ model: join(tmp.dir, 'gemma2'), structured: planPath, out }),
      (e: unknown) =>
        e instanceof GenepruneError &&
        e.where === planPath &&
        /is for 3 layers, this model has 2/.test(e.message),
    );
  });
});
