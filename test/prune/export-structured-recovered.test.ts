/**
 * `export --structured P --recovered R` with the recovered weights of a structured refit (kind "structured"):
 * every export form gives the recovered masked model — the compact and the padded Hugging Face folders reload in
 * geneprune with its logits to 1e-4 (a tiny GPT-2, whose o / down biases were refitted too, and stories260K), and
 * transformers.js reads the ONNX graph of stories260K with those logits to 1e-4. The file is refused for another
 * plan, without its plan, and --recover with a plan is refused.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { exportModel } from '../../src/api/export.js';
import type { TokenBatch } from '../../src/engine/runner.js';
import { GenepruneError } from '../../src/errors.js';
import { writeRecoveredWeights } from '../../src/masks/recovered.js';
import { fullPlan, type StructuredPlan } from '../../src/masks/structured.js';
import { writeStructuredPlanFile } from '../../src/masks/structuredfile.js';
import { loadModelSpec } from '../../src/model/load.js';
import { openModel } from '../../src/model/open.js';
import type { ModelSpec } from '../../src/model/spec.js';
import { RECOVERY_DAMPING, recoverStructuredRemoval } from '../../src/prune/recover-structured.js';
import { tempDir } from '../checkpoint/helpers.js';
import { byteLevelTokenizerJson, writeGpt2 } from '../helpers/gpt2.js';
import { maxAbsDiff, planLogits, randomTokens } from '../helpers/logits.js';
import { MODEL, sharedPath, skipUnlessShared } from '../shared.js';

const tmp = tempDir('geneprune-export-structured-recovered-');
after(tmp.cleanup);

const int64 = (xs: number[]) => BigInt64Array.from(xs.map(BigInt));

function calibration(vocab: number, seq: number, seed: number): TokenBatch[] {
  const toks = randomTokens(2 * (seq + 1), vocab, seed);
  const ids: number[] = [];
  const targets: number[] = [];
  for (let r = 0; r < 2; r++)
    for (let t = 0; t < seq; t++) {
      ids.push(toks[r * (seq + 1) + t]);
      targets.push(toks[r * (seq + 1) + t + 1]);
    }
  return [
    { batch: 2, seq, ids: int64(ids), targets: int64(targets), valid: new Uint8Array(2 * seq).fill(1) },
  ];
}

/** The plan file and the recovered-weights file of `plan`, and the recovered model. */
async function recoveredFiles(name: string, spec: ModelSpec, plan: StructuredPlan, batches: TokenBatch[]) {
  const planPath = join(tmp.dir, `${name}-plan.json`);
  await writeStructuredPlanFile(planPath, spec, plan);
  const rec = await recoverStructuredRemoval(spec, plan, { batches });
  const weights = join(tmp.dir, `${name}-recovered.safetensors`);
  await writeRecoveredWeights(
    weights,
    spec,
    rec.spec,
    rec.roles,
    { kind: 'structured', sha256: 'unused', plan },
    RECOVERY_DAMPING,
  );
  return { planPath, weights, recovered: rec.spec };
}

describe('export --structured --recovered', () => {
  test('gpt2: compact and padded folders give the recovered masked logits, biases refitted', async () => {
    const src = join(tmp.dir, 'gpt2');
    await writeGpt2(src, { embd: 12, heads: 3, layers: 3, inner: 20, vocab: 257, positions: 32 }, 9);
    writeFileSync(join(src, 'tokenizer.json'), JSON.stringify(byteLevelTokenizerJson()));
    const spec = await loadModelSpec(src);
    const plan: StructuredPlan = {
      heads: [[0, 2], [1], [0, 1, 2]],
      channels: [
        [0, 1, 5, 6, 19],
        [3, 4, 8, 9, 15],
        [1, 2, 3, 10, 11, 12, 13, 14],
      ],
      skipAttention: [false, false, true],
      skipMlp: [false, true, false],
    };
    const { planPath, weights, recovered } = await recoveredFiles(
      'gpt2',
      spec,
      plan,
      calibration(257, 16, 2),
    );
    const ids = [3, 250, 17, 96, 5, 41, 200];
    const expected = await planLogits(recovered, ids, plan);
    // Recovery changed the model's output (else the test would prove nothing).
    assert.ok(maxAbsDiff(await planLogits(spec, ids, plan), expected) > 1e-3);
    for (const hfLayout of ['compact', 'padded'] as const) {
      const out = join(tmp.dir, `gpt2-${hfLayout}`);
      const r = await exportModel({
        model: src,
        structured: planPath,
        recovered: weights,
        out,
        format: 'hf',
        hfLayout,
      });
      assert.equal(r.recovered, weights);
      const reloaded = await loadModelSpec(out);
      const got = await planLogits(reloaded, ids);
      assert.ok(maxAbsDiff(got, expected) <= 1e-4, `${hfLayout}: ${maxAbsDiff(got, expected)}`);
    }
  });

  test('refusals: another plan, no plan, --recover with a plan', async () => {
    const src = join(tmp.dir, 'gpt2');
    const spec = await loadModelSpec(src);
    const planPath = join(tmp.dir, 'gpt2-plan.json');
    const weights = join(tmp.dir, 'gpt2-recovered.safetensors');
    const other = { ...fullPlan(spec.config), heads: [[0], [0, 1, 2], [0, 1, 2]] };
    const otherPath = join(tmp.dir, 'other-plan.json');
    await writeStructuredPlanFile(otherPath, spec, other);
    const out = join(tmp.dir, 'never');
    await assert.rejects(
      exportModel({ model: src, structured: otherPath, recovered: weights, out }),
      (e: unknown) =>
        e instanceof GenepruneError && e.where === weights && /another structured plan/.test(e.message),
    );
    await assert.rejects(
      exportModel({ model: src, recovered: weights, out }),
      (e: unknown) => e instanceof GenepruneError && e.where === '--recovered',
    );
    await assert.rejects(
      exportModel({ model: src, structured: planPath, recover: true, calib: src, out }),
      (e: unknown) =>
        e instanceof GenepruneError && e.where === '--recover' && /structured --recover/.test(e.message),
    );
    // Exporting the plan alone says the refit beside it is not applied.
    const notes: string[] = [];
    const beside = join(tmp.dir, 'recovered-weights.safetensors');
    writeFileSync(beside, '');
    await exportModel({
      model: src,
      structured: planPath,
      out: join(tmp.dir, 'plain'),
      format: 'hf',
      onNote: (l) => notes.push(l),
    });
    assert.ok(
      notes.some((l) => l.includes(beside) && /not applied/.test(l)),
      notes.join('\n'),
    );
  });
});

describe('stories260K, export --structured --recovered', { skip: skipUnlessShared(MODEL) }, () => {
  test('transformers.js and the compact folder give the recovered masked logits to 1e-4', async () => {
    const model = await openModel(sharedPath(MODEL)!);
    const c = model.spec.config;
    const plan = fullPlan(c);
    for (let l = 0; l < c.numLayers; l++) {
      plan.heads[l] = plan.heads[l].filter((h) => (h + l) % 3 !== 0);
      plan.channels[l] = plan.channels[l].filter((j) => j % 3 !== 0);
    }
    plan.skipAttention[1] = true;
    const { planPath, weights, recovered } = await recoveredFiles(
      'stories',
      model.spec,
      plan,
      calibration(c.vocabSize, 64, 4),
    );
    const dir = join(tmp.dir, 'exports');
    await exportModel({
      model: sharedPath(MODEL)!,
      structured: planPath,
      recovered: weights,
      out: join(dir, 'pruned'),
    });
    const prompt = [1, 403, 407, 261, 378, 123];
    const expected = await planLogits(recovered, prompt, plan);
    assert.ok(maxAbsDiff(await planLogits(model.spec, prompt, plan), expected) > 1e-3);
    const { env: tjs, AutoModelForCausalLM, Tensor } = await import('@huggingface/transformers');
    tjs.allowRemoteModels = false;
    tjs.localModelPath = `${dir}/`;
    const lm = await AutoModelForCausalLM.from_pretrained('pruned', { dtype: 'fp32' });
    try {
      const input_ids = new Tensor('int64', int64(prompt), [1, prompt.length]);
      const attention_mask = new Tensor('int64', new BigInt64Array(prompt.length).fill(1n), [
        1,
        prompt.length,
      ]);
      const { logits } = (await lm({ input_ids, attention_mask })) as { logits: { data: Float32Array } };
      assert.ok(
        maxAbsDiff(logits.data, expected) <= 1e-4,
        `transformers.js: ${maxAbsDiff(logits.data, expected)}`,
      );
    } finally {
      await lm.dispose();
    }
    const fromHf = await planLogits(await loadModelSpec(join(dir, 'pruned')), prompt);
    assert.ok(maxAbsDiff(fromHf, expected) <= 1e-4, `compact folder: ${maxAbsDiff(fromHf, expected)}`);
  });
});
