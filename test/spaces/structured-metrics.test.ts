/**
 * A structured search scored with a registry metric beyond the text ones: multiple-choice accuracy on a tiny
 * random llama. The run keeps the plan its metric ranks best among every plan it scored at full fidelity, and the
 * accuracy it reports (and the dense model's) equals a plain reference — each choice's summed log-likelihood on a
 * fresh 'nll' runner, the item right when its label's choice is the likeliest — run on the physically pruned
 * model. The same run from the CLI on --workers 2 writes the same logs and result. And BLEU on stories260K: the
 * BLEU reported for the kept plan is the one the physically pruned model's greedy continuations get.
 */
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createRunner } from '../../src/engine/runner.js';
import { prepareChoiceTask, readChoiceTask } from '../../src/metrics/choices.js';
import { prepareGenerationTask, scoreGeneration, slicePreparedTask } from '../../src/metrics/generation.js';
import { buildContinuationTask } from '../../src/metrics/storytask.js';
import { openModel } from '../../src/model/open.js';
import type { ModelSpec } from '../../src/model/spec.js';
import { pruneStructured } from '../../src/prune/structured.js';
import { runStructuredSearch, type StructuredSearchResult } from '../../src/spaces/structured/run.js';
import { structuredSearchSettings } from '../../src/spaces/structured/settings.js';
import { tempDir } from '../checkpoint/helpers.js';
import { runCli } from '../helpers/cli.js';
import { logWithoutTimes, readRunJson, withoutRunFields } from '../helpers/rundir.js';
import { writeTinyModel } from '../helpers/tinylm.js';
import { CALIB, EVAL, MODEL, sharedPath, skipUnlessShared } from '../shared.js';

const tmp = tempDir('geneprune-smetric-');
after(tmp.cleanup);

/** The reference accuracy: per item, the choice with the largest summed log-likelihood of its own tokens. */
async function referenceAccuracy(
  spec: ModelSpec,
  rows: Int32Array[],
  scoreFrom: number[],
  firstRow: number[],
  labels: number[],
): Promise<number> {
  const runner = await createRunner(spec, { output: 'nll' });
  try {
    const logLik: number[] = [];
    for (let r = 0; r < rows.length; r++) {
      const row = rows[r];
      const seq = row.length - 1;
      const ids = BigInt64Array.from(Array.from(row.subarray(0, seq), BigInt));
      const targets = BigInt64Array.from(Array.from(row.subarray(1), BigInt));
      // nll[t] = −log p(row[t + 1] | row[..t]); the choice's tokens are row[scoreFrom ..].
      const nll = await runner.run({ batch: 1, seq, ids, targets });
      let sum = 0;
      for (let t = scoreFrom[r] - 1; t < seq; t++) sum -= nll[t];
      logLik.push(sum);
    }
    let right = 0;
    for (let i = 0; i < labels.length; i++) {
      const end = i + 1 < firstRow.length ? firstRow[i + 1] : rows.length;
      let best = firstRow[i];
      for (let r = firstRow[i] + 1; r < end; r++) if (logLik[r] > logLik[best]) best = r;
      if (best - firstRow[i] === labels[i]) right++;
    }
    return right / labels.length;
  } finally {
    await runner.release();
  }
}

describe('structured search with --metric mc-accuracy (a tiny llama)', () => {
  let model: string;
  let tokenizer: string;
  let result: StructuredSearchResult;
  const settings = () =>
    structuredSearchSettings({
      model,
      tokenizer,
      calib: join(tmp.dir, 'calib'),
      eval: join(tmp.dir, 'eval'),
      budget: 'params:0.8',
      metric: 'mc-accuracy',
      calibChoices: join(tmp.dir, 'calib-mc.jsonl'),
      widthStep: 8,
      population: 6,
      generations: 3,
      scoreTokens: 128,
      calibTokens: 128,
      context: 32,
      seed: 2,
    });
  before(async () => {
    ({ model, tokenizer } = await writeTinyModel(tmp.dir, 11));
    mkdirSync(join(tmp.dir, 'calib'));
    mkdirSync(join(tmp.dir, 'eval'));
    const page = (words: string[], n: number) =>
      Array.from({ length: n }, (_, i) => words.slice(i % 3).join(' ')).join('\n<|endoftext|>\n');
    writeFileSync(join(tmp.dir, 'calib', 'a.txt'), page(['the', 'cat', 'sat', 'on', 'a', 'mat', 'dog'], 12));
    writeFileSync(join(tmp.dir, 'eval', 'b.txt'), page(['a', 'dog', 'and', 'a', 'cat', 'at', 'cab'], 12));
    const words = [' cat', ' dog', ' ab', ' at', ' bed', ' cab'];
    const items = (n: number, offset: number) =>
      Array.from({ length: n }, (_, i) => {
        const j = i + offset;
        const choices = words.slice(j % 3, (j % 3) + 3 + (j % 2));
        return `${JSON.stringify({ context: `the ${j} ${'ab'.repeat(j % 4)}`, choices, label: j % choices.length })}\n`;
      }).join('');
    writeFileSync(join(tmp.dir, 'calib-mc.jsonl'), items(20, 0));
    result = await runStructuredSearch(join(tmp.dir, 'one'), settings());
  });

  test('keeps the plan the metric ranks best among the plans it scored', () => {
    assert.equal(result.calib.metric, 'mc-accuracy');
    assert.equal(result.calib.tokens, 20, 'every calibration item');
    assert.equal(result.calib.accuracy, -result.calib.quality);
    assert.equal(result.calib.denseAccuracy, -result.calib.denseQuality);
    const scored = (logWithoutTimes(result.runDir, 'evals.jsonl') as Array<Record<string, unknown>>).filter(
      (e) => e.fidelity === 'full',
    );
    assert.ok(scored.filter((e) => !e.cached).length >= 4, `${scored.length} plans scored`);
    const best = Math.min(...scored.map((e) => Number(e.quality)));
    assert.equal(result.calib.quality, best);
    const own = scored.filter((e) => e.genome === result.genome);
    assert.ok(own.length > 0 && own.every((e) => e.quality === best), result.genome);
  });

  test('reports the accuracy the physically pruned model gives, and the dense one', async () => {
    const opened = await openModel(model, { tokenizer });
    const task = await readChoiceTask(join(tmp.dir, 'calib-mc.jsonl'));
    const prepared = prepareChoiceTask(task, opened.tokenizer, opened.spec.config.maxPositions);
    const labels = task.items.map((it) => it.label);
    const pruned = pruneStructured(opened.spec, result.plan);
    const args = [prepared.rows, prepared.scoreFrom, prepared.firstRow, labels] as const;
    const accuracy = await referenceAccuracy(pruned, ...args);
    const dense = await referenceAccuracy(opened.spec, ...args);
    assert.equal(result.calib.accuracy, accuracy);
    assert.equal(result.calib.denseAccuracy, dense);
    // The plan is smaller than the dense model: a real removal, scored as such.
    assert.ok(result.keptParameters <= 0.8 * result.totalParameters);
  });

  test('geneprune structured --workers 2 (the CLI) gives the same run', () => {
    const two = join(tmp.dir, 'two');
    const r = runCli(
      [
        'structured',
        '--model',
        model,
        '--tokenizer',
        tokenizer,
        '--calib',
        join(tmp.dir, 'calib'),
        '--eval',
        join(tmp.dir, 'eval'),
        '--budget',
        'params:0.8',
        '--metric',
        'mc-accuracy',
        '--calib-choices',
        join(tmp.dir, 'calib-mc.jsonl'),
        ...['--width-step', '8', '--population', '6', '--generations', '3', '--score-tokens', '128'],
        ...['--calib-tokens', '128', '--ctx', '32', '--seed', '2', '--workers', '2', '--threads', '1'],
        ...['--quiet', '--out', two],
      ],
      { timeout: 120_000 },
    );
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /calibration {2}accuracy \d+\.\d %/, r.stdout);
    assert.deepEqual(logWithoutTimes(two, 'evals.jsonl'), logWithoutTimes(result.runDir, 'evals.jsonl'));
    assert.deepEqual(clean(two), clean(result.runDir));
  });
});

/** result.json without what names the run's directory or measures time. */
function clean(dir: string) {
  const { planFile: _p, ...r } = withoutRunFields(readRunJson(dir, 'result.json'));
  return r;
}

describe('structured search with --metric bleu (stories260K)', {
  skip: skipUnlessShared(MODEL, CALIB, EVAL),
}, () => {
  test('keeps the best-ranked plan, and reports the BLEU the physically pruned model writes', async () => {
    const s = structuredSearchSettings({
      model: sharedPath(MODEL)!,
      calib: sharedPath(CALIB)!,
      eval: sharedPath(EVAL)!,
      budget: 'params:0.7',
      metric: 'bleu',
      calibItems: 4,
      calibNewTokens: 8,
      widthStep: 16,
      population: 4,
      generations: 2,
      scoreTokens: 256,
      calibTokens: 256,
      evalTokens: 256,
      context: 64,
      seed: 1,
    });
    const r = await runStructuredSearch(join(tmp.dir, 'bleu'), s);
    assert.equal(r.calib.tokens, 4, 'calibration items');
    const scored = (logWithoutTimes(r.runDir, 'evals.jsonl') as Array<Record<string, unknown>>).filter(
      (e) => e.fidelity === 'full',
    );
    assert.equal(r.calib.quality, Math.min(...scored.map((e) => Number(e.quality))));
    const opened = await openModel(sharedPath(MODEL)!);
    const task = slicePreparedTask(
      prepareGenerationTask(await buildContinuationTask(sharedPath(CALIB)!), opened.tokenizer),
      4,
    );
    const bleuOf = async (spec: ModelSpec) => {
      const runner = await createRunner(spec, { output: 'row_logits' });
      try {
        return (await scoreGeneration(runner, task, { maxNewTokens: 8 })).bleu;
      } finally {
        await runner.release();
      }
    };
    assert.equal(r.calib.bleu, await bleuOf(pruneStructured(opened.spec, r.plan)));
    assert.equal(r.calib.denseBleu, await bleuOf(opened.spec));
    assert.notEqual(
      r.calib.bleu,
      r.calib.denseBleu,
      'the plan writes other continuations than the dense model',
    );
  });
});
