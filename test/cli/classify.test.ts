/**
 * `geneprune heads --metric accuracy|macro-f1` end to end on a random DistilBERT sequence classifier with a
 * WordPiece tokenizer and labelled JSONL files: the run's calibration and evaluation scores are those
 * scoreClassification gives the mask it wrote (and the dense model), the exported pruned model scores the masked
 * model's evaluation accuracy; misuse is refused in one line (a perplexity metric on an encoder, accuracy on a
 * model without a classifier, a label the model lacks, evaluation items shared with calibration, --recover).
 * `eval --labels --mask` quotes the run's evaluation scores. (weights on labelled data: weights-encoders.test.ts.)
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createRunner } from '../../src/engine/runner.js';
import type { HeadSearchResult } from '../../src/index.js';
import { loadMaskFile } from '../../src/masks/headfile.js';
import { headMaskOf } from '../../src/masks/heads.js';
import { readClassificationData } from '../../src/metrics/classification.js';
import { prepareClassification, scoreClassification } from '../../src/metrics/classify.js';
import { loadModelSpec } from '../../src/model/load.js';
import { loadTokenizer } from '../../src/tokenizer/load.js';
import { tempDir } from '../checkpoint/helpers.js';
import { assertOneLineError, type CliResult, runCli } from '../helpers/cli.js';
import { writeTinyModel } from '../helpers/tinylm.js';
import { writeWordPieceClassifier } from '../helpers/wordpiece.js';

const tmp = tempDir('geneprune-classify-cli-');
after(tmp.cleanup);

/** A one-line refusal matching `re`. */
function refused(r: CliResult, re: RegExp): void {
  assert.match(assertOneLineError(r, 'non-zero'), re);
}

function json<T = Record<string, unknown>>(r: CliResult): T {
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.split('\n').filter((l) => l !== '');
  assert.equal(lines.length, 1, r.stdout);
  return JSON.parse(lines[0]);
}

const WORDS = ['good', 'bad', 'great', 'awful', 'movie', 'plot', 'the', 'was', 'not', 'fun', 'boring'];

/** Deterministic labelled sentences from the word list (label by name for even lines, by index for odd). */
function labelled(n: number, offset: number): string {
  const lines: string[] = [];
  for (let i = 0; i < n; i++) {
    const words = [0, 1, 2, 3].map((k) => WORDS[(i * 7 + k * 3 + offset) % WORDS.length]);
    const label = (i * 5 + offset) % 3;
    lines.push(
      JSON.stringify({ text: `${words.join(' ')} ${i + offset}`, label: i % 2 ? label : `class_${label}` }),
    );
  }
  return `${lines.join('\n')}\n`;
}

describe('heads --metric accuracy on a sequence classifier', () => {
  let model: string;
  const calib = join(tmp.dir, 'calib.jsonl');
  const evalFile = join(tmp.dir, 'eval.jsonl');
  before(async () => {
    model = await writeWordPieceClassifier(tmp.dir, 'distil', WORDS);
    writeFileSync(calib, labelled(24, 0));
    writeFileSync(evalFile, labelled(30, 100));
  });

  for (const metric of ['accuracy', 'macro-f1'] as const) {
    test(`${metric}: the run's scores are its mask's; the export scores the same`, async () => {
      const run = join(tmp.dir, `run-${metric}`);
      const r = json<HeadSearchResult>(
        runCli(
          [
            'heads',
            '--model',
            model,
            '--metric',
            metric,
            '--calib',
            calib,
            '--eval',
            evalFile,
            '--target-sparsity',
            '0.25',
            '--population',
            '4',
            '--generations',
            '2',
            '--out',
            run,
            '--json',
          ],
          { timeout: 300_000 },
        ),
      );
      assert.equal(r.removed, 2);
      const spec = await loadModelSpec(model);
      const tokenizer = await loadTokenizer(model, { vocabSize: spec.config.vocabSize });
      const mask = await loadMaskFile(join(run, 'mask.json'), spec);
      const masks = { headMask: headMaskOf(spec.config, mask.genome) };
      const labels = spec.config.classifier!.labels;
      const runner = await createRunner(spec, { output: 'class_logits' });
      const score = async (file: string, withMask: boolean) =>
        scoreClassification(
          runner,
          prepareClassification(await readClassificationData(file, labels), tokenizer, spec),
          {
            masks: withMask ? masks : {},
          },
        );
      const calibPruned = await score(calib, true);
      const calibDense = await score(calib, false);
      const evalPruned = await score(evalFile, true);
      const evalDense = await score(evalFile, false);
      await runner.release();
      const key = metric === 'accuracy' ? 'accuracy' : 'macroF1';
      assert.equal(r.calib.quality, -calibPruned[key]);
      assert.equal(r.calib.denseQuality, -calibDense[key]);
      assert.ok('accuracy' in r.eval);
      assert.equal(r.eval.accuracy, evalPruned.accuracy);
      assert.equal(r.eval.denseAccuracy, evalDense.accuracy);
      assert.equal(r.eval.macroF1, evalPruned.macroF1);
      assert.equal(r.eval.items, 30);

      // eval --labels with the run's mask quotes the run's evaluation scores.
      const ev = json<{ accuracy: number; macroF1: number; items: number }>(
        runCli(['eval', '--model', model, '--labels', evalFile, '--mask', join(run, 'mask.json'), '--json']),
      );
      assert.equal(ev.accuracy, r.eval.accuracy);
      assert.equal(ev.macroF1, r.eval.macroF1);
      assert.equal(ev.items, 30);

      const out = join(tmp.dir, `exported-${metric}`);
      const exported = runCli([
        'export',
        '--model',
        model,
        '--mask',
        join(run, 'mask.json'),
        '--out',
        out,
        '--format',
        'hf',
      ]);
      assert.equal(exported.code, 0, exported.stderr);
      const pruned = await loadModelSpec(out);
      assert.equal(
        pruned.config.headsPerLayer.reduce((a, b) => a + b, 0),
        6,
      );
      const prunedRunner = await createRunner(pruned, { output: 'class_logits' });
      const fromExport = await scoreClassification(
        prunedRunner,
        prepareClassification(await readClassificationData(evalFile, labels), tokenizer, pruned),
      );
      await prunedRunner.release();
      assert.deepEqual([...fromExport.predictions!], [...evalPruned.predictions!]);
    });
  }

  test('misuse is refused in one line', async () => {
    const base = [
      'heads',
      '--model',
      model,
      '--calib',
      calib,
      '--eval',
      evalFile,
      '--target-sparsity',
      '0.25',
      '--out',
    ];
    refused(
      runCli([...base, join(tmp.dir, 'no1')]),
      /ppl needs a language model.*distilbert encoder: use --metric accuracy or macro-f1/,
    );
    const badLabel = join(tmp.dir, 'bad-label.jsonl');
    writeFileSync(badLabel, '{"text": "good movie", "label": "positive"}\n');
    refused(
      runCli([
        'heads',
        '--model',
        model,
        '--metric',
        'accuracy',
        '--target-sparsity',
        '0.25',
        '--calib',
        badLabel,
        '--eval',
        evalFile,
        '--out',
        join(tmp.dir, 'no2'),
      ]),
      /bad-label\.jsonl: line 1: label "positive" is not one of the model's labels/,
    );
    const shared = join(tmp.dir, 'shared.jsonl');
    writeFileSync(shared, labelled(3, 0));
    refused(
      runCli([
        'heads',
        '--model',
        model,
        '--metric',
        'accuracy',
        '--target-sparsity',
        '0.25',
        '--calib',
        calib,
        '--eval',
        shared,
        '--out',
        join(tmp.dir, 'no3'),
      ]),
      /shared\.jsonl: line 1: the item is also in the calibration file/,
    );
    refused(
      runCli([
        'heads',
        '--model',
        model,
        '--metric',
        'accuracy',
        '--target-sparsity',
        '0.25',
        '--calib',
        calib,
        '--eval',
        evalFile,
        '--recover',
        '--out',
        join(tmp.dir, 'no4'),
      ]),
      /--recover: refits o on calibration text; not with --metric accuracy/,
    );
    refused(
      runCli(['eval', '--model', model, '--labels', evalFile, '--data', calib]),
      /--data: does not combine with --labels/,
    );
    const lm = await writeTinyModel(join(tmp.dir, 'lm'), 3);
    refused(
      runCli([
        'heads',
        '--model',
        lm.model,
        '--tokenizer',
        lm.tokenizer,
        '--metric',
        'accuracy',
        '--target-sparsity',
        '0.25',
        '--calib',
        calib,
        '--eval',
        evalFile,
        '--out',
        join(tmp.dir, 'no5'),
      ]),
      /--metric accuracy needs a sequence-classification model/,
    );
  });
});
