/**
 * `geneprune weights --metric accuracy|macro-f1` end to end on random sequence classifiers (DistilBERT, and BERT
 * with token types read from text pairs) with a WordPiece tokenizer and labelled JSONL files:
 * - result.json's calibration and evaluation scores are those scoreClassification gives the weight mask the run
 *   wrote (and the dense model); no perplexity is reported; `eval --labels --weight-mask` quotes the same;
 * - Wanda's layer-0 masks are the lowest |W_ij|·‖X_j‖₂ of each row, with ‖X_j‖ summed over the calibration items'
 *   real tokens by the plain-TypeScript reference forward (test/reference/bert.ts);
 * - the exported model (masked weights written as zeros) predicts what the masked model predicts;
 * - --recover refits the kept weights on the labelled calibration items (reconstruction error not above masking);
 * - the block-wise searching methods are refused in one line.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createRunner } from '../../src/engine/runner.js';
import type { WeightPruneResult } from '../../src/index.js';
import { unpackBits } from '../../src/masks/bitset.js';
import { loadWeightMaskFile } from '../../src/masks/weightfile.js';
import { readClassificationData } from '../../src/metrics/classification.js';
import { prepareClassification, scoreClassification } from '../../src/metrics/classify.js';
import { loadModelSpec } from '../../src/model/load.js';
import type { ModelSpec } from '../../src/model/spec.js';
import type { LabelledEval } from '../../src/runs/data.js';
import { loadTokenizer } from '../../src/tokenizer/load.js';
import { tempDir } from '../checkpoint/helpers.js';
import { assertOneLineError, type CliResult, runCli } from '../helpers/cli.js';
import { type RandomEncoder, writeRandomEncoder } from '../helpers/encoders.js';
import { wordPieceTokenizerJson } from '../helpers/wordpiece.js';
import { referenceEncoderForward } from '../reference/bert.js';

const tmp = tempDir('geneprune-weights-encoders-');
after(tmp.cleanup);

function json<T>(r: CliResult): T {
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.split('\n').filter((l) => l !== '');
  assert.equal(lines.length, 1, r.stdout);
  return JSON.parse(lines[0]);
}

const WORDS = ['good', 'bad', 'great', 'awful', 'movie', 'plot', 'the', 'was', 'not', 'fun', 'boring'];

/** Deterministic labelled sentences (BERT's as pairs, so token type 1 occurs). */
function labelled(n: number, offset: number, pairs: boolean): string {
  const lines: string[] = [];
  for (let i = 0; i < n; i++) {
    // 2 to 5 words: items of different lengths, so batches hold padding.
    const words = Array.from(
      { length: 2 + (i % 4) },
      (_, k) => WORDS[(i * 7 + k * 3 + offset) % WORDS.length],
    );
    const pair = pairs ? { text_pair: WORDS.slice(0, 1 + ((i + offset) % 3)).join(' ') } : {};
    lines.push(
      JSON.stringify({
        text: `${words.join(' ')} ${i + offset}`,
        ...pair,
        label: `class_${(i * 5 + offset) % 2}`,
      }),
    );
  }
  return `${lines.join('\n')}\n`;
}

interface Model {
  ckpt: RandomEncoder;
  calib: string;
  eval: string;
}

/** Hugging Face tensor names of a layer's prunable linears, by the graph's role kind. */
function hfLinear(type: string, layer: number, kind: string): string {
  const names: Record<string, Record<string, string>> = {
    distilbert: {
      'attn.q': 'attention.q_lin',
      'attn.k': 'attention.k_lin',
      'attn.v': 'attention.v_lin',
      'attn.o': 'attention.out_lin',
      'mlp.up': 'ffn.lin1',
      'mlp.down': 'ffn.lin2',
    },
    bert: {
      'attn.q': 'attention.self.query',
      'attn.k': 'attention.self.key',
      'attn.v': 'attention.self.value',
      'attn.o': 'attention.output.dense',
      'mlp.up': 'intermediate.dense',
      'mlp.down': 'output.dense',
    },
  };
  const layerPrefix =
    type === 'distilbert' ? `distilbert.transformer.layer.${layer}` : `bert.encoder.layer.${layer}`;
  return `${layerPrefix}.${names[type][kind]}.weight`;
}

describe('weights --metric accuracy|macro-f1 on sequence classifiers', () => {
  const models = new Map<string, Model>();
  before(async () => {
    const tok = wordPieceTokenizerJson(WORDS);
    for (const [name, modelType] of [
      ['distilbert', 'distilbert'],
      ['bert', 'bert'],
    ] as const) {
      const ckpt = await writeRandomEncoder(tmp.dir, name, {
        modelType,
        labels: 2,
        vocab: tok.size,
        maxPositions: 32,
        hidden: 16,
        heads: 4,
        layers: 2,
        typeVocab: 2,
        // Seeds whose dense classifier does not predict one class for every item.
        seed: name === 'bert' ? 24 : 22,
      });
      writeFileSync(join(ckpt.dir, 'tokenizer.json'), JSON.stringify(tok.json));
      const calib = join(tmp.dir, `${name}-calib.jsonl`);
      const evalFile = join(tmp.dir, `${name}-eval.jsonl`);
      writeFileSync(calib, labelled(20, 0, modelType === 'bert'));
      writeFileSync(evalFile, labelled(26, 100, modelType === 'bert'));
      models.set(name, { ckpt, calib, eval: evalFile });
    }
  });

  const run = (m: Model, out: string, ...args: string[]) =>
    json<WeightPruneResult>(
      runCli(
        [
          'weights',
          '--model',
          m.ckpt.dir,
          '--calib',
          m.calib,
          '--eval',
          m.eval,
          '--sparsity',
          '0.5',
          '--out',
          out,
          '--json',
          ...args,
        ],
        { timeout: 300_000 },
      ),
    );

  /** The model, its tokenizer, and the run's mask as the runner's feeds. */
  async function opened(m: Model, maskFile: string) {
    const spec = await loadModelSpec(m.ckpt.dir);
    const tokenizer = await loadTokenizer(m.ckpt.dir, { vocabSize: spec.config.vocabSize });
    const mask = await loadWeightMaskFile(maskFile, spec);
    const weightMasks = new Map([...mask.masks].map(([role, bits]) => [role, unpackBits(bits)]));
    const prepared = async (file: string, s: ModelSpec = spec) =>
      prepareClassification(await readClassificationData(file, spec.config.classifier!.labels), tokenizer, s);
    return { spec, tokenizer, weightMasks, prepared };
  }

  for (const [name, method] of [
    ['distilbert', 'magnitude'],
    ['distilbert', 'wanda'],
    ['bert', 'magnitude'],
    ['bert', 'wanda'],
    ['bert', 'owl'],
  ] as const) {
    test(`${name}, ${method}: the run's scores are those of the mask it wrote; eval --labels quotes them`, async () => {
      const m = models.get(name)!;
      const out = join(tmp.dir, `${name}-${method}`);
      const r = run(m, out, '--metric', 'accuracy', '--method', method);
      assert.ok(Math.abs(r.sparsity.achieved - 0.5) < 1e-9, `sparsity ${r.sparsity.achieved}`);
      assert.equal(r.calib.metric, 'accuracy');
      assert.ok(!('perplexity' in r.calib) && !('densePerplexity' in r.calib), 'no calibration perplexity');
      assert.ok('accuracy' in r.eval, 'the evaluation is accuracy and macro-F1');
      const e = r.eval as LabelledEval;

      const { spec, weightMasks, prepared } = await opened(m, r.mask);
      assert.equal(weightMasks.size, 2 * 6);
      const runner = await createRunner(spec, {
        output: 'class_logits',
        weightMasks: [...weightMasks.keys()],
      });
      const calibItems = await prepared(m.calib);
      const evalItems = await prepared(m.eval);
      const calibPruned = await scoreClassification(runner, calibItems, { masks: { weightMasks } });
      const calibDense = await scoreClassification(runner, calibItems);
      const evalPruned = await scoreClassification(runner, evalItems, { masks: { weightMasks } });
      const evalDense = await scoreClassification(runner, evalItems);
      await runner.release();
      assert.equal(r.calib.quality, -calibPruned.accuracy);
      assert.equal(r.calib.denseQuality, -calibDense.accuracy);
      assert.equal(r.calib.accuracy, calibPruned.accuracy);
      assert.equal(r.calib.tokens, 20);
      assert.equal(r.calib.labelled?.items, 20);
      assert.equal(e.accuracy, evalPruned.accuracy);
      assert.equal(e.denseAccuracy, evalDense.accuracy);
      assert.equal(e.macroF1, evalPruned.macroF1);
      assert.equal(e.denseMacroF1, evalDense.macroF1);
      assert.equal(e.items, 26);
      // Pruning half of every matrix changes some prediction: the comparison above is not of the dense model.
      assert.notDeepEqual([...evalPruned.predictions!], [...evalDense.predictions!]);
      // result.json holds what --json printed.
      const onDisk = JSON.parse(readFileSync(join(out, 'result.json'), 'utf8'));
      assert.deepEqual(onDisk.eval, r.eval);
      assert.deepEqual(onDisk.calib, r.calib);

      const ev = json<{ accuracy: number; macroF1: number; items: number }>(
        runCli(['eval', '--model', m.ckpt.dir, '--labels', m.eval, '--weight-mask', r.mask, '--json']),
      );
      assert.equal(ev.accuracy, e.accuracy);
      assert.equal(ev.macroF1, e.macroF1);
      assert.equal(ev.items, 26);

      if (method === 'wanda') {
        // Layer 0 sees the dense model's inputs: its masks are |W|·‖X_j‖ per row over real calibration tokens.
        const sq = new Map<string, Float64Array>();
        for (const item of calibItems.items) {
          referenceEncoderForward(
            m.ckpt.config,
            (n) => m.ckpt.tensors.get(n),
            { inputIds: item.ids, tokenTypeIds: item.typeIds },
            {
              onLinearInput: (layer, input, _t, x) => {
                if (layer !== 0) return;
                const acc = sq.get(input) ?? new Float64Array(x.length);
                for (let j = 0; j < x.length; j++) acc[j] += x[j] * x[j];
                sq.set(input, acc);
              },
            },
          );
        }
        if (name === 'bert') {
          assert.ok(
            calibItems.items.some((it) => it.typeIds.includes(1)),
            'token type 1 occurs in the calibration items',
          );
        }
        const inputOf: Record<string, string> = {
          'attn.q': 'attn_in',
          'attn.k': 'attn_in',
          'attn.v': 'attn_in',
          'attn.o': 'o_in',
          'mlp.up': 'mlp_in',
          'mlp.down': 'down_in',
        };
        for (const [kind, input] of Object.entries(inputOf)) {
          const w = m.ckpt.tensors.get(hfLinear(name, 0, kind))!;
          const norms = sq.get(input)!;
          const cols = norms.length;
          const rows = w.length / cols;
          const got = weightMasks.get(`layers.0.${kind}.weight`)!;
          for (let row = 0; row < rows; row++) {
            const score = (j: number) => Math.abs(w[row * cols + j]) * Math.sqrt(norms[j]);
            const order = Array.from({ length: cols }, (_, j) => j).sort((a, b) => score(a) - score(b));
            const want = new Uint8Array(cols).fill(1);
            for (const j of order.slice(0, cols / 2)) want[j] = 0;
            assert.deepEqual(
              [...got.subarray(row * cols, (row + 1) * cols)],
              [...want],
              `layers.0.${kind} row ${row}`,
            );
          }
        }
        // Padding counted would give other norms: the calibration items differ in length, so batches are padded.
        assert.ok(new Set(calibItems.items.map((it) => it.ids.length)).size > 1);
      }

      // The export writes pruned weights as zeros; reloaded, it predicts what the masked model predicts.
      const exported = join(tmp.dir, `${name}-${method}-export`);
      const ex = runCli([
        'export',
        '--model',
        m.ckpt.dir,
        '--weight-mask',
        r.mask,
        '--out',
        exported,
        '--format',
        'hf',
      ]);
      assert.equal(ex.code, 0, ex.stderr);
      const pruned = await loadModelSpec(exported);
      const prunedRunner = await createRunner(pruned, { output: 'class_logits' });
      const fromExport = await scoreClassification(prunedRunner, await prepared(m.eval, pruned));
      await prunedRunner.release();
      assert.deepEqual([...fromExport.predictions!], [...evalPruned.predictions!]);
    });
  }

  test('macro-f1 is the calibration quality with --metric macro-f1; --calib-items limits the items', async () => {
    const m = models.get('distilbert')!;
    const r = run(m, join(tmp.dir, 'f1'), '--metric', 'macro-f1', '--method', 'wanda', '--calib-items', '12');
    const { spec, weightMasks, prepared } = await opened(m, r.mask);
    const all = await prepared(m.calib);
    const first = { ...all, items: all.items.slice(0, 12) };
    const runner = await createRunner(spec, { output: 'class_logits', weightMasks: [...weightMasks.keys()] });
    const pruned = await scoreClassification(runner, first, { masks: { weightMasks } });
    await runner.release();
    assert.equal(r.calib.metric, 'macro-f1');
    assert.equal(r.calib.quality, -pruned.macroF1);
    assert.equal(r.calib.macroF1, pruned.macroF1);
    assert.equal(r.calib.tokens, 12);
    assert.equal((r.eval as LabelledEval).metric, 'macro-f1');
    // Wanda read 12 items: its masks differ from the 20-item run's.
    const r20 = JSON.parse(readFileSync(join(tmp.dir, 'distilbert-wanda', 'result.json'), 'utf8'));
    assert.notEqual(r.maskSha256, r20.maskSha256);
  });

  test('--recover refits the kept weights on the labelled calibration items', async () => {
    const m = models.get('bert')!;
    const r = run(m, join(tmp.dir, 'recover'), '--metric', 'accuracy', '--method', 'magnitude', '--recover');
    const rec = r.recovery!;
    assert.ok(rec, 'a recovery report');
    assert.equal(rec.before.calibPerplexity, undefined);
    assert.equal(rec.reconstruction.length, 2);
    for (const l of rec.reconstruction) {
      assert.ok(
        l.recoveredError <= l.maskedError,
        `layer ${l.layer}: ${l.recoveredError} > ${l.maskedError}`,
      );
      assert.ok(l.recoveredError < l.maskedError * 0.99, `layer ${l.layer}: recovery changed the weights`);
    }
    // Before recovery the scores are the masked model's, the dense ones are the original model's.
    const plain = JSON.parse(readFileSync(join(tmp.dir, 'bert-magnitude', 'result.json'), 'utf8'));
    assert.equal(rec.before.evalAccuracy, plain.eval.accuracy);
    assert.equal(rec.before.calibQuality, plain.calib.quality);
    const e = r.eval as LabelledEval;
    assert.equal(e.denseAccuracy, plain.eval.denseAccuracy);
    assert.equal(r.calib.denseQuality, plain.calib.denseQuality);
    // The recovered model's evaluation scores are those eval --recovered gives.
    const ev = json<{ accuracy: number; macroF1: number }>(
      runCli([
        'eval',
        '--model',
        m.ckpt.dir,
        '--labels',
        m.eval,
        '--weight-mask',
        r.mask,
        '--recovered',
        rec.weights,
        '--json',
      ]),
    );
    assert.equal(ev.accuracy, e.accuracy);
    assert.equal(ev.macroF1, e.macroF1);
  });

  test('random and global-magnitude run on labelled data too', async () => {
    const m = models.get('bert')!;
    for (const method of ['random', 'global-magnitude']) {
      const r = run(m, join(tmp.dir, method), '--metric', 'accuracy', '--method', method, '--seed', '3');
      assert.ok(Math.abs(r.sparsity.achieved - 0.5) < 1e-9, `${method}: sparsity ${r.sparsity.achieved}`);
      const ev = json<{ accuracy: number; macroF1: number }>(
        runCli(['eval', '--model', m.ckpt.dir, '--labels', m.eval, '--weight-mask', r.mask, '--json']),
      );
      assert.equal(ev.accuracy, (r.eval as LabelledEval).accuracy, method);
      assert.equal(ev.macroF1, (r.eval as LabelledEval).macroF1, method);
    }
  });

  test('the block-wise searching methods are refused in one line', () => {
    const m = models.get('distilbert')!;
    for (const [method, can] of [
      ['ga', 'ppl, bleu, exact-match or pass@1'],
      ['ga-wanda', 'ppl, bleu, exact-match or pass@1'],
      ['ga-magnitude', 'ppl, bleu, exact-match or pass@1'],
      ['alloc', 'ppl'],
    ]) {
      const r = runCli([
        'weights',
        '--model',
        m.ckpt.dir,
        '--calib',
        m.calib,
        '--eval',
        m.eval,
        '--sparsity',
        '0.5',
        '--metric',
        'accuracy',
        '--method',
        method,
        '--out',
        join(tmp.dir, `no-${method}`),
      ]);
      assert.match(
        assertOneLineError(r, 'non-zero'),
        new RegExp(`--metric: the ${method} method searches on ${can}, not accuracy`),
      );
    }
  });
});
