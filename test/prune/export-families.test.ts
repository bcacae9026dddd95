/**
 * Exports beyond the LLaMA layout. GPT-2: a pruned random GPT-2's Hugging Face folder (transformers' `pruned_heads` convention) and its
 * transformers.js folder give the masked model's logits; transformers.js loads it offline (model_type gpt2) and
 * its logits and greedy tokens equal ours. `--hf-layout padded`: dense shapes, zeros exactly where the mask
 * removes heads, the masked logits (GPT-2 and GQA llama). A pruned Gemma 2 through transformers.js.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { createRunner } from '../../src/engine/runner.js';
import { headMaskOf } from '../../src/masks/heads.js';
import { loadModelSpec } from '../../src/model/load.js';
import { exportModel } from '../../src/prune/export.js';
import { rejectsFileError, tempDir } from '../checkpoint/helpers.js';
import { writeGemma } from '../helpers/gemma.js';
import { writeGpt2 } from '../helpers/gpt2.js';
import { writeOpt } from '../helpers/opt.js';
import { longropeScaling, writePhi3 } from '../helpers/phi3.js';
import { writeQwen3 } from '../helpers/qwen3.js';

const tmp = tempDir('geneprune-export-gpt2-');
after(tmp.cleanup);
const int64 = (xs: number[]) => BigInt64Array.from(xs.map(BigInt));

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

test('a pruned GPT-2 exports to HF (pruned_heads) and transformers.js with the masked logits', async () => {
  const V = 43;
  const src = join(tmp.dir, 'src');
  await writeGpt2(src, { embd: 32, heads: 4, layers: 3, inner: 40, vocab: V, positions: 24 }, 11);
  const spec = await loadModelSpec(src);
  // Layer 0 loses head 2, layer 1 heads 0 and 3, layer 2 nothing.
  const genome = Uint8Array.from([1, 1, 0, 1, 0, 1, 1, 0, 1, 1, 1, 1]);
  const tokens = [5, 17, 3, 40, 22, 9, 1, 30, 12, 7];
  const masked = await createRunner(spec, { output: 'logits' });
  const expected = await masked.run(
    { batch: 1, seq: tokens.length, ids: int64(tokens) },
    { headMask: headMaskOf(spec.config, genome) },
  );
  await masked.release();

  const root = join(tmp.dir, 'out');
  const out = join(root, 'pruned');
  await exportModel({ spec, genome, out, format: 'all' });
  const config = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'));
  assert.equal(config.model_type, 'gpt2');
  assert.deepEqual(config.architectures, ['GPT2LMHeadModel']);
  // transformers' format: layer index (a string key) → the original indices of the removed heads.
  assert.deepEqual(config.pruned_heads, { '0': [2], '1': [0, 3] });
  assert.equal(config.n_head, 4);

  const reloaded = await loadModelSpec(out);
  assert.deepEqual(reloaded.config.headsPerLayer, [3, 2, 4]);
  const runner = await createRunner(reloaded, { output: 'logits' });
  const fromHf = await runner.run({ batch: 1, seq: tokens.length, ids: int64(tokens) });
  await runner.release();
  assert.ok(maxDiff(fromHf, expected) <= 1e-4, 'Hugging Face files');

  const { env: tjs, AutoModelForCausalLM, Tensor } = await import('@huggingface/transformers');
  tjs.allowRemoteModels = false;
  tjs.localModelPath = `${root}/`;
  const lm = await AutoModelForCausalLM.from_pretrained('pruned', { dtype: 'fp32' });
  const input_ids = new Tensor('int64', int64(tokens), [1, tokens.length]);
  const attention_mask = new Tensor('int64', new BigInt64Array(tokens.length).fill(1n), [1, tokens.length]);
  const { logits } = (await lm({ input_ids, attention_mask })) as { logits: { data: Float32Array } };
  assert.ok(maxDiff(logits.data, expected) <= 1e-4, 'transformers.js');

  // Greedy generation through transformers.js' KV cache equals greedy decoding on our full-sequence graph.
  const generated = (await lm.generate({
    input_ids,
    attention_mask,
    max_new_tokens: 6,
    do_sample: false,
  })) as unknown as { tolist(): bigint[][] };
  await lm.dispose();
  const ids = [...tokens];
  const full = await createRunner(reloaded, { output: 'last_logits' });
  for (let s = 0; s < 6; s++) {
    const last = await full.run({ batch: 1, seq: ids.length, ids: int64(ids) });
    let best = 0;
    for (let v = 1; v < V; v++) if (last[v] > last[best]) best = v;
    ids.push(best);
  }
  await full.release();
  assert.deepEqual(generated.tolist()[0].map(Number), ids);
});

test('--hf-layout padded keeps the dense shapes with zeros exactly where the mask removes heads', async () => {
  const V = 37;
  const src = join(tmp.dir, 'src-padded');
  const shape = { embd: 24, heads: 3, layers: 2, inner: 32, vocab: V, positions: 16 };
  const written = await writeGpt2(src, shape, 12);
  const spec = await loadModelSpec(src);
  const genome = Uint8Array.from([1, 0, 1, 0, 0, 1]); // layer 0 loses head 1, layer 1 heads 0 and 1
  const removed = [[1], [0, 1]];
  const tokens = [3, 30, 8, 14, 2, 21, 5];
  const masked = await createRunner(spec, { output: 'logits' });
  const expected = await masked.run(
    { batch: 1, seq: tokens.length, ids: int64(tokens) },
    { headMask: headMaskOf(spec.config, genome) },
  );
  await masked.release();

  const out = join(tmp.dir, 'padded');
  await exportModel({ spec, genome, out, format: 'hf', hfLayout: 'padded' });
  const config = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'));
  assert.equal(config.pruned_heads, undefined);
  const { openHfFolder } = await import('../../src/checkpoint/hf.js');
  const folder = await openHfFolder(out);
  const hd = 8;
  const E = 24;
  for (let l = 0; l < 2; l++) {
    const gone = (col: number) => removed[l].includes(Math.floor((col % E) / hd));
    // c_attn [E, 3E]: q, k, v columns of a removed head are zero, every other value is the source's.
    const cAttn = await folder.tensors.get(`transformer.h.${l}.attn.c_attn.weight`)!.load();
    const before = written.get(`transformer.h.${l}.attn.c_attn.weight`)!.data;
    assert.deepEqual(folder.tensors.get(`transformer.h.${l}.attn.c_attn.weight`)!.shape, [E, 3 * E]);
    for (let i = 0; i < cAttn.length; i++) {
      const col = i % (3 * E);
      assert.equal(cAttn[i], gone(col) ? 0 : before[i], `layer ${l} c_attn[${i}]`);
    }
    // c_proj [E, E] (Conv1D [in, out]): the input rows of a removed head are zero.
    const cProj = await folder.tensors.get(`transformer.h.${l}.attn.c_proj.weight`)!.load();
    const projBefore = written.get(`transformer.h.${l}.attn.c_proj.weight`)!.data;
    for (let i = 0; i < cProj.length; i++) {
      const row = Math.floor(i / E);
      assert.equal(cProj[i], removed[l].includes(Math.floor(row / hd)) ? 0 : projBefore[i]);
    }
  }
  const reloaded = await loadModelSpec(out);
  assert.deepEqual(reloaded.config.headsPerLayer, [3, 3]);
  const runner = await createRunner(reloaded, { output: 'logits' });
  const got = await runner.run({ batch: 1, seq: tokens.length, ids: int64(tokens) });
  await runner.release();
  assert.ok(maxDiff(got, expected) <= 1e-4, 'padded logits');
});

test('--hf-layout padded on a GQA llama: stock shapes and config, the masked logits', async () => {
  const { randomLlamaSpec } = await import('../../src/model/random.js');
  const V = 31;
  const spec = randomLlamaSpec({
    hiddenSize: 32,
    numLayers: 2,
    numHeads: 4,
    numKvHeads: 2,
    intermediateSize: 24,
    vocabSize: V,
    maxPositions: 16,
    seed: 77,
    scale: 20,
  });
  // Layer 0 drops both query heads of KV group 1 (so its k/v rows go too) ; layer 1 drops head 0 only.
  const genome = Uint8Array.from([1, 1, 0, 0, 0, 1, 1, 1]);
  const tokens = [4, 9, 27, 1, 13, 6];
  const masked = await createRunner(spec, { output: 'logits' });
  const expected = await masked.run(
    { batch: 1, seq: tokens.length, ids: int64(tokens) },
    { headMask: headMaskOf(spec.config, genome) },
  );
  await masked.release();
  const out = join(tmp.dir, 'llama-padded');
  await exportModel({ spec, genome, out, format: 'all', hfLayout: 'padded' });
  const config = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'));
  assert.equal(config.num_attention_heads_per_layer, undefined);
  const reloaded = await loadModelSpec(out);
  assert.deepEqual(reloaded.config.headsPerLayer, [4, 4]);
  assert.deepEqual(reloaded.config.kvHeadsPerLayer, [2, 2]);
  const k0 = await reloaded.tensors.get('layers.0.attn.k.weight')!.load();
  assert.ok(
    k0.subarray(8 * 32).every((v) => v === 0),
    'layer 0 KV head 1 rows are zero',
  );
  assert.ok(
    k0.subarray(0, 8 * 32).some((v) => v !== 0),
    'layer 0 KV head 0 rows are kept',
  );
  const runner = await createRunner(reloaded, { output: 'logits' });
  const got = await runner.run({ batch: 1, seq: tokens.length, ids: int64(tokens) });
  await runner.release();
  assert.ok(maxDiff(got, expected) <= 1e-4, 'padded logits');
  // The ONNX graph beside it stays compact: layer 0's cache holds one KV head, and it gives the same logits.
  const { createEngine } = await import('../../src/engine/session.js');
  const { emptyPastFeeds } = await import('../../src/engine/kvcache.js');
  const engine = await createEngine(join(out, 'onnx', 'model.onnx'));
  const compact = { ...reloaded.config, headsPerLayer: [2, 3], kvHeadsPerLayer: [1, 2] };
  const onnxOut = await engine.run({
    input_ids: { type: 'int64', dims: [1, tokens.length], data: int64(tokens) },
    attention_mask: { type: 'int64', dims: [1, tokens.length], data: int64(tokens.map(() => 1)) },
    position_ids: { type: 'int64', dims: [1, tokens.length], data: int64(tokens.map((_, t) => t)) },
    ...emptyPastFeeds(compact, 1),
  });
  await engine.release();
  assert.ok(maxDiff(onnxOut.logits.data, expected) <= 1e-4, 'compact ONNX graph');
});

for (const type of ['gemma', 'gemma2'] as const) {
  test(`a pruned ${type} exports; transformers.js gives the masked logits and tokens`, async () => {
    const V = 37;
    const src = join(tmp.dir, `${type}-src`);
    await writeGemma(
      src,
      {
        type,
        hidden: 32,
        layers: 3,
        heads: 4,
        kvHeads: type === 'gemma' ? 1 : 2,
        headDim: 8,
        inter: 48,
        vocab: V,
      },
      31,
    );
    const spec = await loadModelSpec(src);
    assert.equal(spec.config.family, 'gemma');
    const genome = Uint8Array.from([1, 0, 1, 1, 0, 0, 1, 1, 1, 1, 1, 0]);
    const tokens = [3, 8, 30, 2, 11, 19, 4, 25, 6, 14];
    const masked = await createRunner(spec, { output: 'logits' });
    const expected = await masked.run(
      { batch: 1, seq: tokens.length, ids: int64(tokens) },
      { headMask: headMaskOf(spec.config, genome) },
    );
    await masked.release();
    const root = join(tmp.dir, `${type}-out`);
    await exportModel({ spec, genome, out: join(root, 'pruned'), format: 'all' });
    const reloaded = await loadModelSpec(join(root, 'pruned'));
    assert.deepEqual(reloaded.config.headsPerLayer, [3, 2, 3]);
    const runner = await createRunner(reloaded, { output: 'logits' });
    const fromHf = await runner.run({ batch: 1, seq: tokens.length, ids: int64(tokens) });
    await runner.release();
    assert.ok(maxDiff(fromHf, expected) <= 1e-4, 'Hugging Face files');

    const { env: tjs, AutoModelForCausalLM, Tensor } = await import('@huggingface/transformers');
    tjs.allowRemoteModels = false;
    tjs.localModelPath = `${root}/`;
    const lm = await AutoModelForCausalLM.from_pretrained('pruned', { dtype: 'fp32' });
    const input_ids = new Tensor('int64', int64(tokens), [1, tokens.length]);
    const attention_mask = new Tensor('int64', new BigInt64Array(tokens.length).fill(1n), [1, tokens.length]);
    const { logits } = (await lm({ input_ids, attention_mask })) as { logits: { data: Float32Array } };
    assert.ok(maxDiff(logits.data, expected) <= 1e-4, 'transformers.js');
    // Generation runs past the sliding window (3) through transformers.js' KV cache.
    const generated = (await lm.generate({
      input_ids,
      attention_mask,
      max_new_tokens: 6,
      do_sample: false,
    })) as unknown as {
      tolist(): bigint[][];
    };
    await lm.dispose();
    const ids = [...tokens];
    const full = await createRunner(reloaded, { output: 'last_logits' });
    for (let s = 0; s < 6; s++) {
      const last = await full.run({ batch: 1, seq: ids.length, ids: int64(ids) });
      let best = 0;
      for (let v = 1; v < V; v++) if (last[v] > last[best]) best = v;
      ids.push(best);
    }
    await full.release();
    assert.deepEqual(generated.tolist()[0].map(Number), ids);
  });
}

/** The query heads a genome keeps per layer, the KV groups still read, and which kept group each kept head reads. */
function expectedPerLayer(genome: Uint8Array, layers: number, heads: number, kvHeads: number) {
  const group = heads / kvHeads;
  const q: number[] = [];
  const kv: number[] = [];
  const maps: number[][] = [];
  for (let l = 0; l < layers; l++) {
    const kept = [...Array(heads).keys()].filter((h) => genome[l * heads + h] === 1);
    const groups = [...new Set(kept.map((h) => Math.floor(h / group)))].sort((a, b) => a - b);
    q.push(kept.length);
    kv.push(groups.length);
    maps.push(kept.map((h) => groups.indexOf(Math.floor(h / group))));
  }
  return { q, kv, maps };
}

test('compact decoder folders ship modeling_geneprune.py, auto_map and the per-layer sizes; geneprune reads them back', async () => {
  const { randomLlamaSpec } = await import('../../src/model/random.js');
  const shipped = readFileSync(new URL('../../python/modeling_geneprune.py', import.meta.url), 'utf8');
  const classes = new Set([...shipped.matchAll(/^class (\w+)\(/gm)].map((m) => m[1]));
  const gemmaSrc = async (type: 'gemma' | 'gemma2') => {
    const dir = join(tmp.dir, `remote-${type}-src`);
    await writeGemma(
      dir,
      { type, hidden: 32, layers: 3, heads: 4, kvHeads: 2, headDim: 8, inter: 40, vocab: 29 },
      5,
    );
    return loadModelSpec(dir);
  };
  const gpt2Src = async () => {
    const dir = join(tmp.dir, 'remote-gpt2-src');
    await writeGpt2(dir, { embd: 24, heads: 4, layers: 3, inner: 36, vocab: 29, positions: 16 }, 6);
    return loadModelSpec(dir);
  };
  const llama = (modelType: 'llama' | 'mistral' | 'qwen2') =>
    randomLlamaSpec({
      modelType,
      hiddenSize: 48,
      numLayers: 3,
      numHeads: 6,
      numKvHeads: 2,
      intermediateSize: 40,
      vocabSize: 29,
      maxPositions: 32,
      seed: 9,
      scale: 20,
      ...(modelType === 'qwen2' ? { tieEmbeddings: true } : {}),
    });
  const qwen3Src = async () => {
    const dir = join(tmp.dir, 'remote-qwen3-src');
    await writeQwen3(
      dir,
      { hidden: 32, layers: 3, heads: 4, kvHeads: 2, headDim: 16, inter: 40, vocab: 29 },
      7,
    );
    return loadModelSpec(dir);
  };
  const phi3Src = async () => {
    // Partial rotary (6 of 8 dimensions) and LongRoPE with an original context shorter than the tokens below.
    const dir = join(tmp.dir, 'remote-phi3-src');
    await writePhi3(
      dir,
      { hidden: 32, layers: 3, heads: 4, kvHeads: 2, headDim: 8, inter: 40, vocab: 29, maxPositions: 32 },
      8,
      {
        partial_rotary_factor: 0.75,
        original_max_position_embeddings: 4,
        rope_scaling: longropeScaling(6, 8),
      },
    );
    return loadModelSpec(dir);
  };
  const optSrc = async () => {
    const dir = join(tmp.dir, 'remote-opt-src');
    await writeOpt(dir, { hidden: 32, heads: 4, layers: 3, ffn: 40, vocab: 29, positions: 16 }, 9);
    return loadModelSpec(dir);
  };
  // 6 heads in 2 KV groups: layer 0 keeps 2+2 (even), layer 1 2+1 (uneven), layer 2 nothing of group 0.
  const g6 = Uint8Array.from([1, 0, 1, 0, 1, 1, 0, 1, 1, 1, 0, 0, 0, 0, 0, 1, 1, 0]);
  // 4 heads in 2 groups: layer 0 keeps 1+2 (uneven), layer 1 2+0, layer 2 1+1.
  const g4 = Uint8Array.from([1, 0, 1, 1, 1, 1, 0, 0, 0, 1, 1, 0]);
  const cases = [
    { name: 'llama', spec: llama('llama'), genome: g6, cls: 'GenepruneLlamaForCausalLM' },
    { name: 'mistral', spec: llama('mistral'), genome: g6, cls: 'GenepruneMistralForCausalLM' },
    { name: 'qwen2', spec: llama('qwen2'), genome: g6, cls: 'GenepruneQwen2ForCausalLM' },
    { name: 'gemma', spec: await gemmaSrc('gemma'), genome: g4, cls: 'GenepruneGemmaForCausalLM' },
    { name: 'gemma2', spec: await gemmaSrc('gemma2'), genome: g4, cls: 'GenepruneGemma2ForCausalLM' },
    { name: 'qwen3', spec: await qwen3Src(), genome: g4, cls: 'GenepruneQwen3ForCausalLM' },
    { name: 'phi3', spec: await phi3Src(), genome: g4, cls: 'GeneprunePhi3ForCausalLM' },
    // OPT has no grouped KV heads: its KV counts follow the query heads, with no map.
    { name: 'opt', spec: await optSrc(), genome: g4, cls: 'GenepruneOPTForCausalLM' },
    // GPT-2 has no grouped KV heads and no layer without heads.
    {
      name: 'gpt2',
      spec: await gpt2Src(),
      genome: g4.map((v, i) => (i === 7 ? 1 : v)),
      cls: 'GenepruneGPT2LMHeadModel',
    },
  ];
  const tokens = [3, 8, 21, 2, 11, 19, 4];
  for (const { name, spec, genome, cls } of cases) {
    const c = spec.config;
    const masked = await createRunner(spec, { output: 'logits' });
    const expected = await masked.run(
      { batch: 1, seq: tokens.length, ids: int64(tokens) },
      { headMask: headMaskOf(c, genome) },
    );
    await masked.release();

    const out = join(tmp.dir, `remote-${name}`);
    const result = await exportModel({ spec, genome, out, format: 'hf' });
    assert.ok(result.files.includes('modeling_geneprune.py'), name);
    assert.equal(
      readFileSync(join(out, 'modeling_geneprune.py'), 'utf8'),
      shipped,
      `${name}: the shipped file`,
    );
    const config = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'));
    assert.equal(config.model_type, name, 'model_type stays the stock one');
    assert.deepEqual(config.auto_map, { AutoModelForCausalLM: `modeling_geneprune.${cls}` });
    assert.ok(classes.has(cls), `${cls} is defined in modeling_geneprune.py`);
    const want = expectedPerLayer(genome, c.numLayers, c.numHeads, c.numKvHeads);
    assert.deepEqual(config.num_attention_heads_per_layer, want.q, name);
    assert.deepEqual(config.intermediate_size_per_layer, Array(c.numLayers).fill(c.intermediateSize), name);
    if (name === 'gpt2') {
      assert.equal(config.num_key_value_heads_per_layer, undefined);
      assert.deepEqual(config.pruned_heads, { '0': [1], '1': [2], '2': [0, 3] }, 'kept for transformers 4.x');
      assert.ok(result.loaders!.readers.includes('Python transformers 4.x also through pruned_heads'));
    } else if (name === 'opt') {
      assert.deepEqual(config.num_key_value_heads_per_layer, want.q);
      assert.equal(config.kv_head_of_query_per_layer, undefined);
    } else {
      assert.deepEqual(config.num_key_value_heads_per_layer, want.kv, name);
      assert.deepEqual(config.kv_head_of_query_per_layer, want.maps, name);
    }
    assert.equal(result.loaders?.layout, 'compact');
    assert.match(result.loaders!.readers.join('; '), /trust_remote_code=True \(modeling_geneprune\.py\)/);

    const reloaded = await loadModelSpec(out);
    assert.deepEqual(reloaded.config.headsPerLayer, want.q);
    const runner = await createRunner(reloaded, { output: 'logits' });
    const got = await runner.run({ batch: 1, seq: tokens.length, ids: int64(tokens) });
    await runner.release();
    assert.ok(maxDiff(got, expected) <= 1e-4, `${name}: the compact folder gives the masked logits`);

    // The padded layout is stock-shaped: no remote code, no per-layer keys.
    const padded = join(tmp.dir, `remote-${name}-padded`);
    const p = await exportModel({ spec, genome, out: padded, format: 'hf', hfLayout: 'padded' });
    assert.ok(!p.files.includes('modeling_geneprune.py'));
    assert.ok(!existsSync(join(padded, 'modeling_geneprune.py')));
    const pc = JSON.parse(readFileSync(join(padded, 'config.json'), 'utf8'));
    assert.equal(pc.auto_map, undefined);
    assert.equal(pc.intermediate_size_per_layer, undefined);
    assert.deepEqual(p.loaders, {
      layout: 'padded',
      readers: [
        'geneprune',
        'Python transformers, any version, with the stock class (the removed heads are zeros: no smaller, no faster)',
      ],
    });
  }
  // Nothing removed: a stock folder, no remote code needed.
  const whole = join(tmp.dir, 'remote-whole');
  const w = await exportModel({ spec: cases[0].spec, out: whole, format: 'hf' });
  assert.ok(!existsSync(join(whole, 'modeling_geneprune.py')));
  assert.equal(JSON.parse(readFileSync(join(whole, 'config.json'), 'utf8')).auto_map, undefined);
  assert.match(w.loaders!.readers.join('; '), /with the stock class \(nothing removed\)/);
});

test('intermediate_size_per_layer is read back when uniform and refused in one line past intermediate_size', async () => {
  const { randomLlamaSpec } = await import('../../src/model/random.js');
  const spec = randomLlamaSpec({
    hiddenSize: 16,
    numLayers: 2,
    numHeads: 2,
    numKvHeads: 2,
    intermediateSize: 24,
    vocabSize: 11,
    maxPositions: 8,
    seed: 3,
  });
  const out = join(tmp.dir, 'mlp-per-layer');
  await exportModel({ spec, genome: Uint8Array.from([1, 0, 1, 1]), out, format: 'hf' });
  const path = join(out, 'config.json');
  const config = JSON.parse(readFileSync(path, 'utf8'));
  assert.deepEqual(config.intermediate_size_per_layer, [24, 24]);
  assert.equal((await loadModelSpec(out)).config.intermediateSize, 24);
  assert.equal((await loadModelSpec(out)).config.intermediatePerLayer, undefined);
  writeFileSync(path, JSON.stringify({ ...config, intermediate_size_per_layer: [24, 25] }));
  await rejectsFileError(
    loadModelSpec(out),
    path,
    /^"intermediate_size_per_layer" gives layer 1 25 MLP units: each must be an integer in 0\.\.24 \(intermediate_size\)$/,
  );
});
