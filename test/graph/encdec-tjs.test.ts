/**
 * The encoder-decoder deployment graphs (graph/encdec.ts with `deploy`) written as onnx/encoder_model.onnx and
 * onnx/decoder_model_merged.onnx beside a T5 config.json run in transformers.js v4 offline
 * (AutoModelForSeq2SeqLM, its own seq2seq forward, empty caches made from the graph's input shapes, the cross
 * cache passed through after the first step) and generate the tokens geneprune's decode loop generates: on a
 * physically pruned random T5 (per-layer self and cross head counts in the cache shapes) and on the shared
 * codet5-tiny.
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { decodeLoopOf } from '../../src/arch/registry.js';
import { writeOnnxModel } from '../../src/checkpoint/onnx.js';
import { createRunner } from '../../src/engine/runner.js';
import { buildEncDecEncoderGraph, buildEncDecStepGraph } from '../../src/graph/encdec.js';
import { loadWeights } from '../../src/graph/weights.js';
import { loadModelSpec } from '../../src/model/load.js';
import type { ModelSpec } from '../../src/model/spec.js';
import { t5SpecToHf } from '../../src/model/t5.js';
import { loadTokenizer } from '../../src/tokenizer/load.js';
import { tempDir } from '../checkpoint/helpers.js';
import { randomT5 } from '../helpers/t5.js';
import { pruned } from '../helpers/t5pruned.js';
import { sharedPath, skipUnlessShared } from '../shared.js';

const tmp = tempDir('geneprune-encdec-tjs-');
after(tmp.cleanup);

/** Writes the two deployment graphs of `spec` into root/name/onnx; config.json from `config`. */
async function writeFolder(root: string, name: string, spec: ModelSpec, config: Record<string, unknown>) {
  const dir = join(root, name);
  mkdirSync(join(dir, 'onnx'), { recursive: true });
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
  const weights = await loadWeights(spec);
  await writeOnnxModel(
    join(dir, 'onnx'),
    'encoder_model.onnx',
    buildEncDecEncoderGraph(spec, weights, { deploy: true }),
  );
  await writeOnnxModel(
    join(dir, 'onnx'),
    'decoder_model_merged.onnx',
    buildEncDecStepGraph(spec, weights, { deploy: true }),
  );
  return dir;
}

/** transformers.js greedy generation from each source (start token first, eos last when it stopped). */
async function tjsGenerate(
  root: string,
  name: string,
  sources: number[][],
  maxNew: number,
): Promise<number[][]> {
  const tjs = await import('@huggingface/transformers');
  tjs.env.allowRemoteModels = false;
  tjs.env.localModelPath = `${root}/`;
  const model = await tjs.AutoModelForSeq2SeqLM.from_pretrained(name, { dtype: 'fp32' });
  try {
    const out: number[][] = [];
    for (const s of sources) {
      const dims = [1, s.length];
      const generated = (await model.generate({
        input_ids: new tjs.Tensor('int64', BigInt64Array.from(s.map(BigInt)), dims),
        attention_mask: new tjs.Tensor('int64', BigInt64Array.from(s.map(() => 1n)), dims),
        max_new_tokens: maxNew,
        do_sample: false,
      } as never)) as unknown as { data: BigInt64Array };
      out.push(Array.from(generated.data, Number));
    }
    return out;
  } finally {
    await model.dispose();
  }
}

/** geneprune's greedy tokens in transformers.js's form: start token, the tokens, eos when the row stopped. */
async function ours(spec: ModelSpec, sources: number[][], maxNew: number): Promise<number[][]> {
  const runner = await createRunner(spec, { output: 'row_logits' });
  try {
    const c = spec.config;
    const eos = c.eosTokenId!;
    const out = await decodeLoopOf(c).greedyBatch(runner, sources, {
      maxNewTokens: maxNew,
      stopTokens: [eos],
    });
    return out.tokens.map((t, i) => [
      c.encdec!.decoderStartTokenId,
      ...t,
      ...(out.finish[i] === 'stop' ? [eos] : []),
    ]);
  } finally {
    await runner.release();
  }
}

describe('encoder-decoder deployment graphs in transformers.js v4', () => {
  it('a physically pruned random T5 generates the same tokens', async () => {
    const full = randomT5('v1.1', 51);
    // Encoder layer 1 keeps heads 0 and 2, decoder layer 3 keeps head 1, cross 0 keeps heads 1 and 2, cross 1 one.
    const spec = await pruned(full, { 1: [0, 2], 3: [1] }, { 0: [1, 2], 1: [0] });
    await writeFolder(tmp.dir, 'pruned-t5', spec, t5SpecToHf(full).config);
    const sources = [
      [4, 9, 13, 2, 7, 1],
      [5, 8, 3, 1],
      [30, 31, 32, 33, 34, 35, 36, 1],
    ];
    assert.deepEqual(await tjsGenerate(tmp.dir, 'pruned-t5', sources, 12), await ours(spec, sources, 12));
  });

  it('codet5-tiny generates the same tokens on eval problems', {
    skip: skipUnlessShared('models/codet5-tiny'),
  }, async () => {
    const src = sharedPath('models/codet5-tiny')!;
    const spec = await loadModelSpec(src);
    const config = JSON.parse(readFileSync(join(src, 'config.json'), 'utf8'));
    const dir = await writeFolder(tmp.dir, 'codet5', spec, config);
    for (const f of ['generation_config.json', 'tokenizer.json', 'tokenizer_config.json']) {
      copyFileSync(join(src, f), join(dir, f));
    }
    const tok = await loadTokenizer(join(src, 'tokenizer.json'));
    const texts = readFileSync(sharedPath('data/codegen/eval.jsonl')!, 'utf8')
      .trim()
      .split('\n')
      .slice(0, 6)
      .map((l) => (JSON.parse(l) as { text: string }).text);
    const sources = texts.map((t) => tok.encodeInput(t).ids);
    assert.deepEqual(await tjsGenerate(tmp.dir, 'codet5', sources, 64), await ours(spec, sources, 64));
  });
});
