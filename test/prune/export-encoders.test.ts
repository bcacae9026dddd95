/**
 * Exports of pruned BERT-family encoders. For each case a head genome is exported ('all'); then (a) the Hugging
 * Face folder read back gives the masked model's outputs, (b) transformers.js loads the folder offline and gives
 * the same logits / last_hidden_state on a right-padded batch of two rows, (c) config.json records the removed
 * heads in transformers' `pruned_heads` format and keeps id2label, (d) `--hf-layout padded` keeps the dense shapes
 * with zeros exactly where the genome removes heads and gives the same outputs. A text-classification pipeline
 * on an exported folder with a hand-written WordPiece tokenizer names the label our logits' argmax names. One
 * base model has its ONNX weights in onnx/model.onnx_data; one genome empties a layer (padded layout only).
 *
 * Expected outputs come from the unpruned source model's evaluation graph with the genome as its head mask
 * (checked against an independent reference in test/graph/encoder.test.ts); the tensors of the padded folder are
 * checked against the random checkpoint's own values, by the tensor names transformers saves.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { buildGraph } from '../../src/arch/registry.js';
import { openHfFolder } from '../../src/checkpoint/hf.js';
import { createEngine, type Feed } from '../../src/engine/session.js';
import type { EncoderOutputMode } from '../../src/graph/encoder.js';
import { loadWeights } from '../../src/graph/weights.js';
import { type Genome, headMaskOf } from '../../src/masks/heads.js';
import { loadModelSpec } from '../../src/model/load.js';
import type { ModelSpec } from '../../src/model/spec.js';
import { exportModel } from '../../src/prune/export.js';
import { tempDir } from '../checkpoint/helpers.js';
import { type EncoderType, type RandomEncoderOptions, writeRandomEncoder } from '../helpers/encoders.js';
import { bertTokenizerJson } from '../helpers/wordpiece.js';

const tmp = tempDir('geneprune-export-encoders-');
after(tmp.cleanup);

const TOLERANCE = 1e-4;
const HEADS = 4;
const HEAD_DIM = 4; // hidden 16 / 4 heads (the helper's defaults)

/** Two right-padded rows: real ids (never the pad id) then padding; token types given per position. */
interface Rows {
  ids: number[][];
  lengths: number[];
  types: number[][];
}

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    m = Math.max(m, Number.isNaN(d) ? Number.POSITIVE_INFINITY : d);
  }
  return m;
}

/** A genome from per-layer lists of removed heads. */
function genomeRemoving(removed: number[][]): Genome {
  const g = new Uint8Array(removed.length * HEADS).fill(1);
  removed.forEach((hs, l) => {
    for (const h of hs) g[l * HEADS + h] = 0;
  });
  return g;
}

const int64 = (rows: number[][]) => BigInt64Array.from(rows.flat().map(BigInt));
const maskOf = (rows: Rows) => rows.ids.map((r, b) => r.map((_, t) => (t < rows.lengths[b] ? 1 : 0)));

/** Runs a spec's evaluation graph (head mask: the genome's, else every head kept) and returns `out`. */
async function evalOutput(
  spec: ModelSpec,
  output: EncoderOutputMode,
  rows: Rows,
  genome?: Genome,
): Promise<Float32Array> {
  const c = spec.config;
  const B = rows.ids.length;
  const S = rows.ids[0].length;
  const maxHeads = Math.max(...c.headsPerLayer);
  const feeds: Record<string, Feed> = {
    input_ids: { type: 'int64', dims: [B, S], data: int64(rows.ids) },
    attention_mask: { type: 'int64', dims: [B, S], data: int64(maskOf(rows)) },
    head_mask: {
      type: 'float32',
      dims: [c.numLayers, maxHeads],
      data: genome ? headMaskOf(c, genome) : new Float32Array(c.numLayers * maxHeads).fill(1),
    },
  };
  if ((c.typeVocabSize ?? 0) > 0)
    feeds.token_type_ids = { type: 'int64', dims: [B, S], data: int64(rows.types) };
  const engine = await createEngine(buildGraph(spec, await loadWeights(spec), { output }));
  try {
    const out = await engine.run(feeds);
    return out[output === 'hidden' ? 'last_hidden_state' : 'logits'].data;
  } finally {
    await engine.release();
  }
}

/** The attention tensors of layer l as transformers names them: q/k/v (rows by head), o (columns by head). */
function attentionNames(type: EncoderType, prefix: string, l: number): { rows: string[]; o: string } {
  if (type === 'distilbert') {
    const p = `${prefix}transformer.layer.${l}.attention`;
    return {
      rows: ['q_lin', 'k_lin', 'v_lin'].flatMap((n) => [`${p}.${n}.weight`, `${p}.${n}.bias`]),
      o: `${p}.out_lin.weight`,
    };
  }
  const p = `${prefix}encoder.layer.${l}.attention`;
  return {
    rows: ['query', 'key', 'value'].flatMap((n) => [`${p}.self.${n}.weight`, `${p}.self.${n}.bias`]),
    o: `${p}.output.dense.weight`,
  };
}

interface Case {
  name: string;
  opts: Omit<RandomEncoderOptions, 'seed'>;
  removed: number[][];
  /** Non-zero token types fed to both sides (else none is given to transformers.js, which fills zeros). */
  types?: boolean;
  /** Weights to onnx/model.onnx_data (threshold 0), as large models get them. */
  external?: boolean;
}

const CASES: Case[] = [
  {
    name: 'bert-cls',
    opts: { modelType: 'bert', labels: 3, typeVocab: 3, activation: 'gelu_new' },
    removed: [[1], [0, 3]],
    types: true,
  },
  {
    name: 'roberta-cls',
    opts: { modelType: 'roberta', labels: 2, typeVocab: 1, maxPositions: 26 },
    removed: [[2, 3], [1]],
  },
  {
    name: 'distilbert-cls',
    opts: { modelType: 'distilbert', labels: 4, activation: 'relu' },
    removed: [[0], [1, 2]],
  },
  { name: 'bert-base', opts: { modelType: 'bert' }, removed: [[3], [0, 1]], external: true },
];

function rowsFor(spec: ModelSpec, seed: number, types: boolean): Rows {
  const c = spec.config;
  const pad = c.padTokenId ?? 0;
  const lengths = [9, 5];
  let x = seed;
  const next = (n: number) => {
    x = (x * 1103515245 + 12345) % 2147483648;
    return x % n;
  };
  const ids = lengths.map((len) =>
    Array.from({ length: 9 }, (_, t) => {
      if (t >= len) return pad;
      let id = pad;
      while (id === pad) id = next(c.vocabSize);
      return id;
    }),
  );
  const typeRows = lengths.map((len) =>
    Array.from({ length: 9 }, (_, t) => (types && t < len ? next(c.typeVocabSize ?? 1) : 0)),
  );
  return { ids, lengths, types: typeRows };
}

describe('pruned encoders export to Hugging Face and transformers.js', () => {
  CASES.forEach((k, i) => {
    it(`${k.name}: reloaded, in transformers.js, pruned_heads, padded`, async () => {
      const src = await writeRandomEncoder(tmp.dir, `src-${k.name}`, { ...k.opts, seed: 40 + i });
      const spec = await loadModelSpec(src.dir);
      const c = spec.config;
      const classify = c.classifier !== undefined;
      const output: EncoderOutputMode = classify ? 'class_logits' : 'hidden';
      const genome = genomeRemoving(k.removed);
      const rows = rowsFor(spec, 7 + i, k.types === true);
      const expected = await evalOutput(spec, output, rows, genome);
      const dense = await evalOutput(spec, output, rows);
      assert.ok(maxDiff(expected, dense) > 100 * TOLERANCE, 'the genome changes the outputs');

      const root = join(tmp.dir, `out-${k.name}`);
      const out = join(root, 'pruned');
      const result = await exportModel({
        spec,
        genome,
        out,
        format: 'all',
        externalDataThreshold: k.external ? 0 : undefined,
      });
      assert.equal(result.files.includes('onnx/model.onnx_data'), k.external === true);
      assert.ok(!existsSync(join(out, 'generation_config.json')), 'no generation_config.json for an encoder');
      assert.ok(!result.files.includes('generation_config.json'));

      // (c) transformers' format: layer (string key) → original indices of the removed heads; labels kept.
      const config = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'));
      const pruned = Object.fromEntries(
        k.removed.flatMap((hs, l) => (hs.length > 0 ? [[String(l), hs]] : [])),
      );
      assert.deepEqual(config.pruned_heads, pruned);
      assert.deepEqual(config.id2label, src.config.id2label);
      // No remote code for encoders: the summary points to transformers 4.x's pruned_heads, or the padded layout.
      assert.ok(!existsSync(join(out, 'modeling_geneprune.py')));
      assert.equal(config.auto_map, undefined);
      assert.deepEqual(result.loaders?.readers.slice(2), [
        'Python transformers 4.x through pruned_heads (5.x refuses it: use --hf-layout padded)',
      ]);
      assert.deepEqual(config.architectures, src.config.architectures);

      // (a) the Hugging Face folder read back computes the masked model.
      const reloaded = await loadModelSpec(out);
      assert.deepEqual(
        reloaded.config.headsPerLayer,
        k.removed.map((hs) => HEADS - hs.length),
      );
      const fromHf = await evalOutput(reloaded, output, rows);
      assert.ok(maxDiff(fromHf, expected) <= TOLERANCE, `Hugging Face folder: ${maxDiff(fromHf, expected)}`);

      // The ONNX graph takes exactly what transformers.js feeds an encoder.
      const engine = await createEngine(join(out, 'onnx', 'model.onnx'));
      const types = (c.typeVocabSize ?? 0) > 0 ? ['token_type_ids'] : [];
      assert.deepEqual([...engine.inputNames].sort(), ['attention_mask', 'input_ids', ...types]);
      assert.deepEqual([...engine.outputNames], [classify ? 'logits' : 'last_hidden_state']);
      await engine.release();

      // (b) transformers.js, offline, on the padded batch.
      const tjs = await import('@huggingface/transformers');
      tjs.env.allowRemoteModels = false;
      tjs.env.localModelPath = `${root}/`;
      const Auto = classify ? tjs.AutoModelForSequenceClassification : tjs.AutoModel;
      const model = await Auto.from_pretrained('pruned', { dtype: 'fp32' });
      const dims = [rows.ids.length, rows.ids[0].length];
      const inputs: Record<string, unknown> = {
        input_ids: new tjs.Tensor('int64', int64(rows.ids), dims),
        attention_mask: new tjs.Tensor('int64', int64(maskOf(rows)), dims),
      };
      if (k.types) inputs.token_type_ids = new tjs.Tensor('int64', int64(rows.types), dims);
      const got = (await model(inputs)) as Record<string, { data: Float32Array; dims: number[] }>;
      await model.dispose();
      const tensor = classify ? got.logits : got.last_hidden_state;
      assert.deepEqual(tensor.dims, classify ? [2, c.classifier!.labels.length] : [2, 9, c.hiddenSize]);
      assert.ok(
        maxDiff(tensor.data, expected) <= TOLERANCE,
        `transformers.js: ${maxDiff(tensor.data, expected)}`,
      );

      // (d) padded: the source's shapes, zeros exactly at the removed heads' rows and columns, same outputs.
      const paddedOut = join(tmp.dir, `padded-${k.name}`);
      await exportModel({ spec, genome, out: paddedOut, format: 'hf', hfLayout: 'padded' });
      const paddedConfig = JSON.parse(readFileSync(join(paddedOut, 'config.json'), 'utf8'));
      assert.equal(paddedConfig.pruned_heads, undefined);
      const folder = await openHfFolder(paddedOut);
      const prefix = classify ? `${k.opts.modelType}.` : '';
      const zeroRows = new Map<string, number[]>();
      const zeroCols = new Map<string, number[]>();
      k.removed.forEach((hs, l) => {
        const names = attentionNames(k.opts.modelType, prefix, l);
        for (const n of names.rows) zeroRows.set(n, hs);
        zeroCols.set(names.o, hs);
      });
      let checked = 0;
      for (const [name, t] of folder.tensors) {
        const before = src.tensors.get(name);
        assert.ok(before, `padded folder holds ${name}, which the source does not`);
        assert.equal(
          t.shape.reduce((a, b) => a * b, 1),
          before.length,
          `${name} keeps its size`,
        );
        const data = await t.load();
        const cols = t.shape.length > 1 ? t.shape[1] : 1;
        const headOf = (j: number) =>
          zeroCols.has(name)
            ? Math.floor((j % cols) / HEAD_DIM)
            : Math.floor(Math.floor(j / cols) / HEAD_DIM);
        const removed = zeroCols.get(name) ?? zeroRows.get(name) ?? [];
        let wrong = 0;
        for (let j = 0; j < data.length; j++) {
          if (data[j] !== (removed.includes(headOf(j)) ? 0 : before[j])) wrong++;
        }
        assert.equal(
          wrong,
          0,
          `${name}: ${wrong} values differ from the source with the removed heads zeroed`,
        );
        checked++;
      }
      assert.ok(checked >= 16 + 10 * c.numLayers, `${checked} tensors checked`);
      const fromPadded = await evalOutput(await loadModelSpec(paddedOut), output, rows);
      assert.ok(
        maxDiff(fromPadded, expected) <= TOLERANCE,
        `padded folder: ${maxDiff(fromPadded, expected)}`,
      );
    });
  });

  it('a layer losing every head: compact HF refused in one line; padded + transformers.js add the o bias alone', async () => {
    const src = await writeRandomEncoder(tmp.dir, 'src-empty', {
      modelType: 'roberta',
      typeVocab: 1,
      seed: 60,
    });
    const spec = await loadModelSpec(src.dir);
    const genome = genomeRemoving([[0, 1, 2, 3], [2]]);
    const rows = rowsFor(spec, 61, false);
    const expected = await evalOutput(spec, 'hidden', rows, genome);
    await assert.rejects(
      exportModel({ spec, genome, out: join(tmp.dir, 'empty-compact'), format: 'all' }),
      (e: Error) =>
        /^layer 0 keeps no heads.*--hf-layout padded/.test(e.message) && !e.message.includes('\n'),
    );
    assert.ok(!existsSync(join(tmp.dir, 'empty-compact')), 'nothing written');

    const root = join(tmp.dir, 'out-empty');
    await exportModel({ spec, genome, out: join(root, 'pruned'), format: 'all', hfLayout: 'padded' });
    const fromPadded = await evalOutput(await loadModelSpec(join(root, 'pruned')), 'hidden', rows);
    assert.ok(maxDiff(fromPadded, expected) <= TOLERANCE, `padded folder: ${maxDiff(fromPadded, expected)}`);
    const tjs = await import('@huggingface/transformers');
    tjs.env.allowRemoteModels = false;
    tjs.env.localModelPath = `${root}/`;
    const model = await tjs.AutoModel.from_pretrained('pruned', { dtype: 'fp32' });
    const dims = [2, 9];
    const got = (await model({
      input_ids: new tjs.Tensor('int64', int64(rows.ids), dims),
      attention_mask: new tjs.Tensor('int64', int64(maskOf(rows)), dims),
    })) as Record<string, { data: Float32Array }>;
    await model.dispose();
    const d = maxDiff(got.last_hidden_state.data, expected);
    assert.ok(d <= TOLERANCE, `transformers.js: ${d}`);
  });
});

// A small WordPiece vocabulary (BERT style); ids below the test model's vocabulary of 40.
const VOCAB: Record<string, number> = {
  '[PAD]': 0,
  '[UNK]': 1,
  '[CLS]': 2,
  '[SEP]': 3,
  '[MASK]': 4,
  the: 5,
  un: 6,
  '##aff': 7,
  '##able': 8,
  cafe: 9,
  good: 10,
  movie: 11,
  '!': 12,
  '.': 13,
  bad: 14,
  run: 15,
  '##ning': 16,
};

const TOKENIZER_JSON = bertTokenizerJson(VOCAB);

const TOKENIZER_CONFIG = {
  tokenizer_class: 'BertTokenizer',
  do_lower_case: true,
  pad_token: '[PAD]',
  cls_token: '[CLS]',
  sep_token: '[SEP]',
  unk_token: '[UNK]',
  mask_token: '[MASK]',
  model_max_length: 24,
};

it("text-classification pipeline on an exported folder names our logits' argmax label", async () => {
  const src = await writeRandomEncoder(tmp.dir, 'src-pipe', { modelType: 'bert', labels: 3, seed: 78 });
  const spec = await loadModelSpec(src.dir);
  const genome = genomeRemoving([[2], [0, 1]]);
  const tokDir = join(tmp.dir, 'tok');
  await (await import('node:fs/promises')).mkdir(tokDir);
  writeFileSync(join(tokDir, 'tokenizer.json'), JSON.stringify(TOKENIZER_JSON));
  writeFileSync(join(tokDir, 'tokenizer_config.json'), JSON.stringify(TOKENIZER_CONFIG));
  const root = join(tmp.dir, 'out-pipe');
  await exportModel({
    spec,
    genome,
    out: join(root, 'pruned'),
    format: 'all',
    tokenizerPath: join(tokDir, 'tokenizer.json'),
  });
  // Worked out by hand: "was" is not in the vocabulary; "unaffable" is un ##aff ##able, "running" run ##ning.
  const texts = ['The movie was good!', 'Unaffable running.'];
  const encoded = [
    [2, 5, 11, 1, 10, 12, 3],
    [2, 6, 7, 8, 15, 16, 13, 3],
  ];
  const labels = spec.config.classifier!.labels;
  const expected: Array<{ label: string; score: number }> = [];
  for (const ids of encoded) {
    const row = { ids: [ids], lengths: [ids.length], types: [ids.map(() => 0)] };
    const logits = await evalOutput(spec, 'class_logits', row, genome);
    let best = 0;
    for (let j = 1; j < logits.length; j++) if (logits[j] > logits[best]) best = j;
    const z = [...logits].reduce((s, v) => s + Math.exp(v - logits[best]), 0);
    expected.push({ label: labels[best], score: 1 / z });
  }

  // This seed's model labels the two texts differently: a label read from the wrong row would show.
  assert.notEqual(expected[0].label, expected[1].label);

  const tjs = await import('@huggingface/transformers');
  tjs.env.allowRemoteModels = false;
  tjs.env.localModelPath = `${root}/`;
  const classify = await tjs.pipeline('text-classification', 'pruned', { dtype: 'fp32' });
  const tokenized = classify.tokenizer(texts, { padding: true }) as { input_ids: { tolist(): bigint[][] } };
  assert.deepEqual(
    tokenized.input_ids.tolist().map((r) => r.map(Number)),
    [[...encoded[0], 0], encoded[1]],
  );
  const got = (await classify(texts)) as Array<{ label: string; score: number }>;
  await classify.dispose();
  assert.equal(got.length, 2);
  got.forEach((g, b) => {
    assert.equal(g.label, expected[b].label, `text ${b}`);
    assert.ok(
      Math.abs(g.score - expected[b].score) <= TOLERANCE,
      `text ${b}: score ${g.score} vs ${expected[b].score}`,
    );
  });
});
