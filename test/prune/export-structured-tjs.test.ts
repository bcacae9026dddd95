/**
 * `export --structured` of stories260K for transformers.js (offline): the exported ONNX graph, loaded by
 * @huggingface/transformers, gives the masked full model's logits (the runner with structuredMasksOf(plan)) to 1e-4
 * and generates the masked model's greedy tokens — each step the argmax of a full masked forward over the tokens so
 * far, no KV cache — and the compact Hugging Face folder beside it loads back in geneprune with the same logits.
 */
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import type { StructuredPlan } from '../../src/masks/structured.js';
import { writeStructuredPlanFile } from '../../src/masks/structuredfile.js';
import { loadModelSpec } from '../../src/model/load.js';
import { openModel } from '../../src/model/open.js';
import { createRng } from '../../src/util/rng.js';
import { tempDir } from '../checkpoint/helpers.js';
import { runCli } from '../helpers/cli.js';
import { maxAbsDiff, planLogits } from '../helpers/logits.js';
import { MODEL, sharedPath, skipUnlessShared } from '../shared.js';

const tmp = tempDir('geneprune-export-structured-tjs-');
after(tmp.cleanup);

const int64 = (xs: number[]) => BigInt64Array.from(xs.map(BigInt));

/** A random subset of 0..n-1 keeping about `share` of it, ascending. */
function subset(n: number, share: number, seed: number): number[] {
  const rng = createRng(seed);
  return Array.from({ length: n }, (_, j) => j).filter(() => rng.nextFloat() < share);
}

describe('stories260K, structured plan, transformers.js', { skip: skipUnlessShared(MODEL) }, () => {
  test('logits to 1e-4 and the greedy tokens of the masked model; the compact folder reloads equal', async () => {
    const model = await openModel(sharedPath(MODEL));
    const c = model.spec.config;
    const W = c.intermediateSize;
    // Layer 0 skips attention, layer 2 its MLP, layer 3's MLP keeps no channel; heads and channels thinned.
    const plan: StructuredPlan = {
      heads: c.headsPerLayer.map((h, i) => subset(h, 0.6, 10 + i)),
      channels: Array.from({ length: c.numLayers }, (_, i) => (i === 3 ? [] : subset(W, 0.5, 20 + i))),
      skipAttention: c.headsPerLayer.map((_, i) => i === 0),
      skipMlp: c.headsPerLayer.map((_, i) => i === 2),
    };
    const dir = join(tmp.dir, 'exports');
    mkdirSync(dir, { recursive: true });
    const planPath = join(tmp.dir, 'plan.json');
    await writeStructuredPlanFile(planPath, model.spec, plan);
    const exported = runCli(['export', '--structured', planPath, '--out', join(dir, 'pruned')]);
    assert.equal(exported.code, 0, exported.stderr);
    assert.match(exported.stdout, /MLP widths {3}\d+ \d+ 0 0 \d+ \(of/);
    assert.match(exported.stdout, /skipped {6}attention in layers 0; MLP in layers 2/);
    assert.match(exported.stdout, /FLOPs {8}\d+\.\d % of the dense model's/);

    const prompt = [1, 403, 407, 261, 378, 1241 % c.vocabSize];
    const expected = await planLogits(model.spec, prompt, plan);
    // The masked model's greedy continuation, one full forward per token.
    const greedy = [...prompt];
    for (let step = 0; step < 12; step++) {
      const out = await planLogits(model.spec, greedy, plan);
      const last = out.subarray(out.length - c.vocabSize);
      greedy.push(last.indexOf(Math.max(...last)));
    }

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
        `transformers.js logits: ${maxAbsDiff(logits.data, expected)}`,
      );
      const generated = (await lm.generate({
        input_ids,
        attention_mask,
        max_new_tokens: 12,
        min_new_tokens: 12,
        do_sample: false,
      })) as unknown as { tolist(): bigint[][] };
      assert.deepEqual(generated.tolist()[0].map(Number), greedy);
    } finally {
      await lm.dispose();
    }

    const reloaded = await loadModelSpec(join(dir, 'pruned'));
    assert.equal(reloaded.config.intermediatePerLayer?.[3], 0);
    const fromHf = await planLogits(reloaded, prompt);
    assert.ok(maxAbsDiff(fromHf, expected) <= 1e-4, `compact folder: ${maxAbsDiff(fromHf, expected)}`);
  });
});
