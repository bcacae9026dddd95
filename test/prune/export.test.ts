/**
 * Exported folders: the Hugging Face files and the transformers.js ONNX graph of a pruned model give the masked
 * model's logits; stories260K with half its heads removed loads in @huggingface/transformers offline and
 * generates exactly what `geneprune generate --mask` does; bad masks and outputs fail cleanly, leaving nothing.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { emptyPastFeeds } from '../../src/engine/kvcache.js';
import { createRunner } from '../../src/engine/runner.js';
import { createEngine, type Feed } from '../../src/engine/session.js';
import { makeMaskFile } from '../../src/masks/headfile.js';
import { headMaskOf } from '../../src/masks/heads.js';
import { loadModelSpec } from '../../src/model/load.js';
import { openModel } from '../../src/model/open.js';
import { randomLlamaSpec } from '../../src/model/random.js';
import { exportModel } from '../../src/prune/export.js';
import { createRng } from '../../src/util/rng.js';
import { tempDir } from '../checkpoint/helpers.js';
import { assertOneLineError, runCli } from '../helpers/cli.js';
import { MODEL, sharedPath, skipUnlessShared } from '../shared.js';

const tmp = tempDir('geneprune-export-');
after(tmp.cleanup);
const int64 = (xs: number[]) => BigInt64Array.from(xs.map(BigInt));

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

describe('exported random models equal the masked model', () => {
  const cases = [
    { name: 'llama GQA 4:2, untied, uneven groups', modelType: 'llama', kv: 2, tie: false, bias: false },
    { name: 'qwen2 biases, GQA 4:2, tied', modelType: 'qwen2', kv: 2, tie: true, bias: true },
    { name: 'llama MHA, tied', modelType: 'llama', kv: 4, tie: true, bias: false },
  ];
  for (const [i, c] of cases.entries()) {
    test(c.name, async () => {
      const V = 29;
      const spec = randomLlamaSpec({
        hiddenSize: 32,
        numLayers: 2,
        numHeads: 4,
        numKvHeads: c.kv,
        intermediateSize: 24,
        vocabSize: V,
        maxPositions: 16,
        attentionBias: c.bias,
        tieEmbeddings: c.tie,
        modelType: c.modelType,
        seed: 50 + i,
        scale: 20,
      });
      // Layer 0 keeps heads 0, 1, 3 (KV group 1 keeps one of its two query heads); layer 1 keeps heads 1, 2.
      const genome = Uint8Array.from([1, 1, 0, 1, 0, 1, 1, 0]);
      const tokens = Array.from({ length: 9 }, (_, t) => (t * 7 + i) % V);
      const masked = await createRunner(spec, { output: 'logits' });
      const expected = await masked.run(
        { batch: 1, seq: tokens.length, ids: int64(tokens) },
        { headMask: headMaskOf(spec.config, genome) },
      );
      await masked.release();

      const out = join(tmp.dir, `random-${i}`);
      await exportModel({ spec, genome, out, format: 'all' });
      const reloaded = await loadModelSpec(out);
      assert.deepEqual(reloaded.config.headsPerLayer, [3, 2]);
      const runner = await createRunner(reloaded, { output: 'logits' });
      const fromHf = await runner.run({ batch: 1, seq: tokens.length, ids: int64(tokens) });
      await runner.release();
      assert.ok(maxDiff(fromHf, expected) <= 1e-4, 'Hugging Face files');

      const engine = await createEngine(join(out, 'onnx', 'model.onnx'));
      const feeds: Record<string, Feed> = {
        input_ids: { type: 'int64', dims: [1, tokens.length], data: int64(tokens) },
        attention_mask: { type: 'int64', dims: [1, tokens.length], data: int64(tokens.map(() => 1)) },
        position_ids: { type: 'int64', dims: [1, tokens.length], data: int64(tokens.map((_, t) => t)) },
        ...emptyPastFeeds(reloaded.config, 1),
      };
      const onnxOut = await engine.run(feeds);
      await engine.release();
      assert.ok(maxDiff(onnxOut.logits.data, expected) <= 1e-4, 'transformers.js ONNX graph');
    });
  }
});

test('a model past the threshold exports onnx/model.onnx_data, and transformers.js gives the inline logits', async () => {
  const V = 41;
  const spec = randomLlamaSpec({
    hiddenSize: 32,
    numLayers: 2,
    numHeads: 4,
    numKvHeads: 2,
    intermediateSize: 24,
    vocabSize: V,
    maxPositions: 32,
    modelType: 'qwen2',
    tieEmbeddings: true,
    seed: 77,
    scale: 20,
  });
  // The same heads removed in both: a physically pruned export takes the same path.
  const genome = Uint8Array.from([1, 0, 1, 1, 1, 1, 0, 1]);
  const root = join(tmp.dir, 'tjs-external');
  await exportModel({ spec, genome, out: join(root, 'inline'), format: 'transformersjs' });
  const ext = await exportModel({
    spec,
    genome,
    out: join(root, 'external'),
    format: 'transformersjs',
    externalDataThreshold: 0,
  });
  assert.ok(ext.files.includes('onnx/model.onnx_data'), ext.files.join(' '));
  assert.ok(!existsSync(join(root, 'inline', 'onnx', 'model.onnx_data')));
  const config = JSON.parse(readFileSync(join(root, 'external', 'config.json'), 'utf8'));
  assert.deepEqual(config['transformers.js_config'], { use_external_data_format: { 'model.onnx': 1 } });
  assert.ok(
    statSync(join(root, 'external', 'onnx', 'model.onnx')).size < 20_000,
    'the graph file holds no weights',
  );

  const { env: tjs, AutoModelForCausalLM, Tensor } = await import('@huggingface/transformers');
  tjs.allowRemoteModels = false;
  tjs.localModelPath = `${root}/`;
  const prompt = [1, 5, 9, 2, 33, 17];
  const outputs: Array<{ logits: number[]; ids: number[] }> = [];
  for (const name of ['inline', 'external']) {
    const lm = await AutoModelForCausalLM.from_pretrained(name, { dtype: 'fp32' });
    const input_ids = new Tensor('int64', BigInt64Array.from(prompt.map(BigInt)), [1, prompt.length]);
    const attention_mask = new Tensor('int64', new BigInt64Array(prompt.length).fill(1n), [1, prompt.length]);
    const { logits } = (await lm({ input_ids, attention_mask })) as { logits: { data: Float32Array } };
    const generated = (await lm.generate({
      input_ids,
      attention_mask,
      max_new_tokens: 8,
      do_sample: false,
    })) as unknown as { tolist(): bigint[][] };
    outputs.push({ logits: [...logits.data], ids: generated.tolist()[0].map(Number) });
    await lm.dispose();
  }
  assert.equal(outputs[0].logits.length, prompt.length * V);
  assert.ok(maxDiff(outputs[1].logits, outputs[0].logits) <= 1e-6, 'logits');
  assert.deepEqual(outputs[1].ids, outputs[0].ids, 'greedy tokens');
});

describe('stories260K with half its heads removed', { skip: skipUnlessShared(MODEL) }, () => {
  const dir = join(tmp.dir, 'stories');
  const maskPath = join(tmp.dir, 'mask50.json');
  const out = join(dir, 'pruned');

  test('transformers.js generates exactly what geneprune generate --mask does', async () => {
    mkdirSync(dir, { recursive: true });
    const model = await openModel(sharedPath(MODEL));
    // 20 of 40 heads; in every layer one KV group loses both its query heads and another loses one.
    const pattern = [1, 1, 0, 1, 0, 0, 1, 0];
    const genome = Uint8Array.from({ length: 40 }, (_, g) => pattern[g % 8]);
    writeFileSync(maskPath, JSON.stringify(await makeMaskFile(model.spec, genome)));
    const exported = runCli(['export', '--mask', maskPath, '--out', out]);
    assert.equal(exported.code, 0, exported.stderr);
    assert.match(exported.stdout, /query heads {2}4 4 4 4 4/);
    assert.match(exported.stdout, /KV heads {5}3 3 3 3 3/);

    const prompt = 'Once upon a time';
    const ours = runCli(['generate', '--mask', maskPath, '--prompt', prompt, '-n', '40']);
    assert.equal(ours.code, 0, ours.stderr);

    const { env: tjs, AutoTokenizer, AutoModelForCausalLM } = await import('@huggingface/transformers');
    tjs.allowRemoteModels = false;
    tjs.localModelPath = `${dir}/`;
    const tokenizer = await AutoTokenizer.from_pretrained('pruned');
    const lm = await AutoModelForCausalLM.from_pretrained('pruned', { dtype: 'fp32' });
    const inputs = tokenizer(prompt);
    const generated = (await lm.generate({ ...inputs, max_new_tokens: 40, do_sample: false })) as unknown as {
      tolist(): bigint[][];
    };
    const ids = generated.tolist()[0].map(Number);
    const text = tokenizer.decode(ids, { skip_special_tokens: true });
    assert.ok(ids.length > inputs.input_ids.dims[1], 'it generated something');
    assert.equal(text, ours.stdout.replace(/\n$/, ''));
  });

  test('bad masks and outputs give one clear line and leave no partial output', async () => {
    const rng = createRng(1);
    const wrongLength = join(tmp.dir, 'short.json');
    writeFileSync(
      wrongLength,
      JSON.stringify({ format: 'geneprune-head-mask', version: 1, keep: [1, 0, 1] }),
    );
    const corrupt = join(tmp.dir, 'corrupt.json');
    writeFileSync(corrupt, '{"format": "geneprune-head-mask", "keep": [1, 0');
    const other = randomLlamaSpec({
      hiddenSize: 64,
      numLayers: 5,
      numHeads: 8,
      numKvHeads: 4,
      intermediateSize: 16,
      vocabSize: 512,
      maxPositions: 16,
      seed: 9,
    });
    const foreign = join(tmp.dir, 'foreign.json');
    const g = Uint8Array.from({ length: 40 }, () => (rng.nextFloat() < 0.5 ? 1 : 0));
    writeFileSync(foreign, JSON.stringify(await makeMaskFile(other, g)));
    const blocker = join(tmp.dir, 'a-file');
    writeFileSync(blocker, 'not a folder');
    const cases: Array<[string[], string]> = [
      [['--mask', wrongLength, '--out', join(tmp.dir, 'o1')], wrongLength],
      [['--mask', corrupt, '--out', join(tmp.dir, 'o2')], corrupt],
      [['--mask', foreign, '--out', join(tmp.dir, 'o3')], foreign],
      [['--mask', maskPath, '--out', join(blocker, 'sub', 'out')], blocker],
      [['--mask', maskPath, '--out', out], '--out'],
      [['--mask', maskPath, '--out', join(tmp.dir, 'o4'), '--format', 'onnx'], '--format'],
    ];
    const before = readdirSync(tmp.dir).sort();
    const beforeOut = readdirSync(out).sort();
    for (const [args, mention] of cases) {
      assertOneLineError(runCli(['export', ...args]), 'non-zero', mention);
    }
    assert.deepEqual(readdirSync(tmp.dir).sort(), before, 'no new (partial) folders');
    assert.deepEqual(readdirSync(out).sort(), beforeOut, 'the existing export is untouched without --force');
    assert.ok(!existsSync(join(tmp.dir, 'o1')));
    const forced = runCli(['export', '--mask', maskPath, '--out', out, '--force', '--format', 'hf']);
    assert.equal(forced.code, 0, forced.stderr);
    assert.ok(!existsSync(join(out, 'onnx')), '--force replaced the folder');
  });
});
