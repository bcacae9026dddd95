/**
 * Multiple-choice accuracy from the command line, on a random decoder with a hand-made tokenizer (nothing from
 * ../shared), and once on the real stories260K:
 * - `heads --metric mc-accuracy` searches end to end: every logged quality is −accuracy, result.json's
 *   calibration accuracy equals `evaluateChoices` on the calibration file with the run's mask.json, and its
 *   evaluation accuracy (dense and pruned) equals `evaluateChoices` on the evaluation file;
 * - `weights --metric mc-accuracy` with a one-shot method records the calibration accuracy of its weight mask;
 *   the block-wise searches refuse the metric in one line;
 * - `eval --choices` prints what `evaluateChoices` returns;
 * - misuse is refused in one line.
 */
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  type EvaluateChoicesResult,
  evaluateChoices,
  generate,
  type HeadSearchResult,
  parseChoiceTask,
  type WeightPruneResult,
} from '../../src/index.js';
import { tempDir } from '../checkpoint/helpers.js';
import { assertOneLineError, type CliResult, runCli } from '../helpers/cli.js';
import { writeTinyModel } from '../helpers/tinylm.js';
import { CALIB, EVAL, MODEL, sharedPath, skipUnlessShared } from '../shared.js';

const tmp = tempDir('geneprune-cli-choices-');
after(tmp.cleanup);

function json<T>(r: CliResult): T {
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout.trim().split('\n').at(-1)!) as T;
}

const WORDS = [' cat', ' dog', ' ab', ' at', ' bed', ' cab'];

/** `n` items whose contexts differ by number, three or four choices each, labels spread over the choices. */
function itemsJsonl(n: number, offset: number): string {
  return Array.from({ length: n }, (_, i) => {
    const j = i + offset;
    const choices = WORDS.slice(j % 3, (j % 3) + 3 + (j % 2));
    return JSON.stringify({ context: `the ${j} ${'ab'.repeat(j % 4)}`, choices, label: j % choices.length });
  })
    .map((l) => `${l}\n`)
    .join('');
}

let model: string;
let tokenizer: string;
let calib: string;
let evalData: string;
let calibChoices: string;
let evalChoices: string;

before(async () => {
  ({ model, tokenizer } = await writeTinyModel(tmp.dir, 11));
  calib = join(tmp.dir, 'calib');
  evalData = join(tmp.dir, 'eval');
  mkdirSync(calib);
  mkdirSync(evalData);
  writeFileSync(join(calib, 'a.txt'), 'the cat sat on a mat\n<|endoftext|>\na dog ran to the cat bed\n');
  writeFileSync(join(evalData, 'b.txt'), 'a cat and a dog sat at a cab\n<|endoftext|>\nthe dog ate\n');
  calibChoices = join(tmp.dir, 'calib-mc.jsonl');
  evalChoices = join(tmp.dir, 'eval-mc.jsonl');
  writeFileSync(calibChoices, itemsJsonl(16, 0));
  writeFileSync(evalChoices, itemsJsonl(10, 100));
});

const base = () => ['--model', model, '--tokenizer', tokenizer, '--calib', calib, '--eval', evalData];

describe('heads --metric mc-accuracy', () => {
  test('searches on −accuracy; result.json agrees with evaluateChoices on both files', async () => {
    const out = join(tmp.dir, 'heads-mc');
    const r = json<HeadSearchResult>(
      runCli([
        'heads',
        ...base(),
        '--metric',
        'mc-accuracy',
        '--calib-choices',
        calibChoices,
        '--calib-items',
        '12',
        '--eval-choices',
        evalChoices,
        '--target-sparsity',
        '0.25',
        '--population',
        '6',
        '--generations',
        '3',
        '--out',
        out,
        '--json',
      ]),
    );
    assert.equal(r.calib.metric, 'mc-accuracy');
    assert.equal(r.calib.tokens, 12);
    assert.equal(r.removed, 2);
    assert.equal(r.calib.quality, -r.calib.accuracy!);
    assert.equal(r.calib.denseQuality, -r.calib.denseAccuracy!);
    assert.deepEqual(r.calib.choices, {
      source: calibChoices,
      sha256: r.calib.choices!.sha256,
      items: 12,
      taskItems: 16,
    });
    // Every logged quality is −(a share of 12 items).
    const logged = readFileSync(join(out, 'evals.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { quality: number; metric: string; tokens: number });
    assert.ok(logged.length >= 6);
    for (const e of logged) {
      assert.equal(e.metric, 'mc-accuracy');
      assert.equal(e.tokens, 12);
      assert.ok(e.quality <= 0 && e.quality >= -1);
      assert.ok(Math.abs(e.quality * 12 - Math.round(e.quality * 12)) < 1e-9, `${e.quality}`);
    }
    // The calibration accuracy is the mask's on the file's first 12 items, scored in a session of its own.
    const task = parseChoiceTask(calibChoices, readFileSync(calibChoices, 'utf8'));
    const first12 = { source: calibChoices, items: task.items.slice(0, 12) };
    const mask = join(out, 'mask.json');
    const calibMasked = await evaluateChoices({ model, tokenizer, task: first12, mask });
    const calibDense = await evaluateChoices({ model, tokenizer, task: first12 });
    assert.equal(r.calib.accuracy, calibMasked.accuracy);
    assert.equal(r.calib.denseAccuracy, calibDense.accuracy);
    // The evaluation file: every item, dense and pruned, acc and acc_norm.
    const evalMasked = await evaluateChoices({ model, tokenizer, task: evalChoices, mask });
    const evalDense = await evaluateChoices({ model, tokenizer, task: evalChoices });
    assert.equal(r.evalChoices!.items, 10);
    assert.equal(r.evalChoices!.accuracy, evalMasked.accuracy);
    assert.equal(r.evalChoices!.accuracyNorm, evalMasked.accuracyNorm);
    assert.equal(r.evalChoices!.denseAccuracy, evalDense.accuracy);
    assert.equal(r.evalChoices!.denseAccuracyNorm, evalDense.accuracyNorm);
    const config = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'));
    assert.equal(config.settings.calibChoices, calibChoices);
    assert.equal(config.evaluation.choices.source, evalChoices);
  });

  test('--choice-norm chars searches on acc_norm', async () => {
    const out = join(tmp.dir, 'heads-mc-norm');
    const r = json<HeadSearchResult>(
      runCli([
        'heads',
        ...base(),
        '--metric',
        'mc-accuracy',
        '--calib-choices',
        calibChoices,
        '--choice-norm',
        'chars',
        '--method',
        'random',
        '--target-sparsity',
        '0.5',
        '--out',
        out,
        '--json',
      ]),
    );
    const mask = join(out, 'mask.json');
    const masked = await evaluateChoices({ model, tokenizer, task: calibChoices, mask });
    const dense = await evaluateChoices({ model, tokenizer, task: calibChoices });
    assert.equal(r.calib.tokens, 16);
    assert.equal(r.calib.accuracy, masked.accuracyNorm);
    assert.equal(r.calib.denseAccuracy, dense.accuracyNorm);
  });
});

describe('weights --metric mc-accuracy', () => {
  test('a one-shot method records the calibration accuracy of its mask', async () => {
    const out = join(tmp.dir, 'weights-mc');
    const r = json<WeightPruneResult>(
      runCli([
        'weights',
        ...base(),
        '--method',
        'magnitude',
        '--sparsity',
        '0.5',
        '--metric',
        'mc-accuracy',
        '--calib-choices',
        calibChoices,
        '--eval-choices',
        evalChoices,
        '--out',
        out,
        '--json',
      ]),
    );
    const weightMask = join(out, 'weight-mask.safetensors');
    const masked = await evaluateChoices({ model, tokenizer, task: calibChoices, weightMask });
    assert.equal(r.calib.metric, 'mc-accuracy');
    assert.equal(r.calib.accuracy, masked.accuracy);
    assert.equal(r.calib.quality, -masked.accuracy);
    const evalMasked = await evaluateChoices({ model, tokenizer, task: evalChoices, weightMask });
    assert.equal(r.evalChoices!.accuracy, evalMasked.accuracy);
    assert.equal(r.evalChoices!.accuracyNorm, evalMasked.accuracyNorm);
  });

  test('the block-wise searches refuse it in one line', () => {
    const r = runCli([
      'weights',
      ...base(),
      '--method',
      'ga-wanda',
      '--sparsity',
      '0.5',
      '--metric',
      'mc-accuracy',
      '--calib-choices',
      calibChoices,
      '--out',
      join(tmp.dir, 'weights-mc-ga'),
    ]);
    assertOneLineError(
      r,
      'non-zero',
      '--metric',
      'the ga-wanda method searches on ppl, bleu, exact-match or pass@1, not mc-accuracy',
    );
  });
});

describe('eval --choices', () => {
  test('prints what evaluateChoices returns, with and without a mask', async () => {
    const r = json<EvaluateChoicesResult>(
      runCli(['eval', '--model', model, '--tokenizer', tokenizer, '--choices', evalChoices, '--json']),
    );
    const lib = await evaluateChoices({ model, tokenizer, task: evalChoices });
    assert.equal(r.items, 10);
    assert.equal(r.accuracy, lib.accuracy);
    assert.equal(r.accuracyNorm, lib.accuracyNorm);
    const text = runCli([
      'eval',
      '--model',
      model,
      '--tokenizer',
      tokenizer,
      '--choices',
      evalChoices,
      '--prune-heads',
      '0:1,1:2',
    ]);
    assert.equal(text.code, 0, text.stderr);
    const pruned = await evaluateChoices({
      model,
      tokenizer,
      task: evalChoices,
      pruneHeads: [
        [0, 1],
        [1, 2],
      ],
    });
    assert.match(text.stdout, new RegExp(`accuracy +${(100 * pruned.accuracy).toFixed(2)} %`));
    assert.match(text.stdout, new RegExp(`acc_norm +${(100 * pruned.accuracyNorm).toFixed(2)} %`));
  });
});

describe('misuse is refused in one line', () => {
  const heads = (...args: string[]) =>
    runCli(['heads', ...base(), '--target-sparsity', '0.25', '--out', join(tmp.dir, 'refused'), ...args]);

  test('mc-accuracy without a calibration file, and the choice flags without mc-accuracy', () => {
    assertOneLineError(
      heads('--metric', 'mc-accuracy'),
      'non-zero',
      '--calib-choices',
      'needs a calibration',
    );
    assertOneLineError(
      heads('--calib-choices', calibChoices),
      'non-zero',
      '--calib-choices',
      'only with --metric mc-accuracy',
    );
    assertOneLineError(
      heads('--choice-norm', 'chars'),
      'non-zero',
      '--choice-norm',
      'only with --metric mc-accuracy',
    );
    assertOneLineError(
      heads('--metric', 'mc-accuracy', '--calib-choices', calibChoices, '--choice-norm', 'tokens'),
      'non-zero',
      '--choice-norm',
      '"tokens" is not one of none, chars',
    );
  });

  test('sos fitness, --low-tokens, a calibration file reused or sharing an item, a bad file', () => {
    const mc = ['--metric', 'mc-accuracy', '--calib-choices', calibChoices];
    assertOneLineError(
      runCli(['heads', ...base(), ...mc, '--fitness', 'sos', '--out', join(tmp.dir, 'refused')]),
      'non-zero',
      '--fitness',
      'with --metric mc-accuracy use lambda or budget',
    );
    assertOneLineError(heads(...mc, '--low-tokens', '8'), 'non-zero', '--low-tokens', '--low-items');
    assertOneLineError(
      heads(...mc, '--eval-choices', calibChoices),
      'non-zero',
      '--eval-choices',
      'is also the calibration file',
    );
    const sharing = join(tmp.dir, 'sharing.jsonl');
    writeFileSync(sharing, `${itemsJsonl(3, 100)}${itemsJsonl(16, 0).split('\n')[5]}\n`);
    assertOneLineError(
      heads(...mc, '--eval-choices', sharing),
      'non-zero',
      `${sharing}: line 4: the item is also in the calibration file`,
    );
    const bad = join(tmp.dir, 'bad.jsonl');
    writeFileSync(bad, `${itemsJsonl(2, 0)}{"context": "x", "choices": [" a", " b"], "label": 5}\n`);
    assertOneLineError(
      heads('--metric', 'mc-accuracy', '--calib-choices', bad),
      'non-zero',
      `${bad}: line 3: label 5 is not a choice index (0 to 1)`,
    );
    assertOneLineError(
      runCli(['eval', '--model', model, '--tokenizer', tokenizer, '--choices', evalChoices, '--kl']),
      'non-zero',
      '--kl',
      'does not combine with --choices',
    );
  });
});

describe('stories260K', { skip: skipUnlessShared(MODEL, CALIB, EVAL) }, () => {
  test('eval --choices: the model prefers its own greedy continuation over made-up ones', async () => {
    // Each right choice is the next word of the model's own greedy story; the wrong ones are other words.
    const story = await generate({ model: sharedPath(MODEL)!, prompt: 'Once upon a time', maxNewTokens: 40 });
    const words = story.text.split(/(?= )/);
    assert.ok(words.length > 12, story.text);
    const wrong = [' spoon', ' purple', ' eleven', ' quickly', ' seventeen'];
    const lines: string[] = [];
    for (let i = 3; i < 11; i++) {
      const context = `Once upon a time${words.slice(0, i).join('')}`;
      const choices = [...wrong.slice(0, 2 + (i % 3)), words[i]];
      if (new Set(choices).size < choices.length) continue;
      lines.push(JSON.stringify({ context, choices, label: words[i] }));
    }
    const file = join(tmp.dir, 'stories-mc.jsonl');
    writeFileSync(file, `${lines.join('\n')}\n`);
    const r = json<EvaluateChoicesResult>(runCli(['eval', '--choices', file, '--json']));
    assert.equal(r.items, lines.length);
    assert.ok(r.accuracy >= 0.75, `accuracy ${r.accuracy} on ${lines.length} items`);
  });
});
