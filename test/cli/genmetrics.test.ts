/**
 * The generation metrics from the command line, on stories260K with tiny tasks whose references are the model's
 * own greedy continuations under a prompt template (decoded one prompt at a time by `generate`, so the dense
 * model's exact match is 1 by construction, not by the code under test):
 * - `heads --metric exact-match --prompt-template T` searches on exact match and records it in result.json
 *   (calibration and evaluation, dense values 1) and the template in config.json and the task records; --resume
 *   refuses another template;
 * - `weights --method ga --metric exact-match` (a block-wise search) does the same;
 * - `eval --task` prints and --json carries BLEU of both kinds, exact match, and pass@1 only with
 *   --allow-code-execution, whose value equals codeexec's passAtOne run directly on the printed continuations;
 * - refusals in one line: pass@1 without --allow-code-execution, on a task without tests, a bad --exec-workers,
 *   a bad --prompt-template, and the new flags where they mean nothing.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { generate } from '../../src/arch/generate.js';
import { createRunner } from '../../src/engine/runner.js';
import {
  buildContinuationTask,
  type EvalBleu,
  evaluateBleu,
  exactMatch,
  type HeadSearchResult,
  nltkMethod1MeanBleu,
  openModel,
  passAtOne,
  readGenerationTask,
  type WeightPruneResult,
} from '../../src/index.js';
import { tempDir } from '../checkpoint/helpers.js';
import { assertOneLineError, type CliResult, runCli } from '../helpers/cli.js';
import { CALIB, EVAL, MODEL, sharedPath, skipUnlessShared } from '../shared.js';

const MBPP = 'data/mbpp/mbpp.jsonl';
const skip = skipUnlessShared(MODEL, CALIB, EVAL, MBPP);
const tmp = tempDir('geneprune-genmetrics-cli-');
after(tmp.cleanup);

const cli = (args: string[]) => runCli(args, { timeout: 120_000 });
function json<T>(r: CliResult): T {
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout.trim().split('\n').at(-1)!) as T;
}

const TEMPLATE = 'Story: {text}';
const CALIB_NEW = 8;
const EVAL_NEW = 10;
let model: string;
let calibFile: string;
let evalFile: string;
let mbppFile: string;

/** A task file of `n` story openings of `pages`, each with the model's own continuation under TEMPLATE. */
async function ownTask(pages: string, file: string, n: number, newTokens: number): Promise<string> {
  const opened = await openModel(model);
  const tok = opened.tokenizer;
  const runner = await createRunner(opened.spec, { output: 'last_logits' });
  try {
    const lines: string[] = [];
    for (const it of (await buildContinuationTask(pages)).items.slice(0, n)) {
      const ids = tok.encode(TEMPLATE.replace('{text}', it.prompt), { bos: true });
      const out = (await generate(runner, ids, { maxNewTokens: newTokens, stopTokens: [1, 2] })).slice(
        ids.length,
      );
      const text = out
        .map((id, k) => tok.decodeToken(k === 0 ? ids[ids.length - 1] : out[k - 1], id))
        .join('');
      lines.push(JSON.stringify({ prompt: it.prompt, reference: text }));
    }
    const path = join(tmp.dir, file);
    writeFileSync(path, `${lines.join('\n')}\n`);
    return path;
  } finally {
    await runner.release();
  }
}

before(async () => {
  if (skip) return;
  model = sharedPath(MODEL)!;
  calibFile = await ownTask(sharedPath(CALIB)!, 'calib.jsonl', 4, CALIB_NEW);
  evalFile = await ownTask(sharedPath(EVAL)!, 'eval.jsonl', 4, EVAL_NEW);
  // Three MBPP problems with their tests, as the file has them.
  mbppFile = join(tmp.dir, 'mbpp3.jsonl');
  const rows = readFileSync(sharedPath(MBPP)!, 'utf8').split('\n').slice(10, 13);
  writeFileSync(mbppFile, `${rows.join('\n')}\n`);
});

const runData = () => ['--model', model, '--calib', sharedPath(CALIB)!, '--eval', sharedPath(EVAL)!];
let refusedRuns = 0;
/** A run directory for a command that must be refused before it makes one. */
const refusedOut = () => ['--out', join(tmp.dir, `refused-${refusedRuns++}`)];

describe('search on exact match', { skip }, () => {
  test('heads --metric exact-match records it, dense 1; the template is recorded and fixed on --resume', async () => {
    const out = join(tmp.dir, 'heads-em');
    const r = json<HeadSearchResult>(
      cli([
        'heads',
        ...runData(),
        '--metric',
        'exact-match',
        '--calib-task',
        calibFile,
        '--calib-items',
        '4',
        '--calib-new-tokens',
        String(CALIB_NEW),
        '--prompt-template',
        TEMPLATE,
        '--target-sparsity',
        '0.25',
        '--population',
        '4',
        '--generations',
        '2',
        '--eval-tokens',
        '1024',
        '--eval-task',
        evalFile,
        '--eval-new-tokens',
        String(EVAL_NEW),
        '--out',
        out,
        '--json',
      ]),
    );
    assert.equal(r.calib.metric, 'exact-match');
    assert.equal(r.calib.denseExactMatch, 1);
    assert.equal(r.calib.denseQuality, -1);
    assert.equal(r.calib.exactMatch, -r.calib.quality);
    assert.equal(r.calib.task?.promptTemplate, TEMPLATE);
    const saved = JSON.parse(readFileSync(join(out, 'result.json'), 'utf8'));
    assert.equal(saved.calib.exactMatch, r.calib.exactMatch);
    // Every logged candidate's quality is −(share of the 4 items matched).
    const logged = readFileSync(join(out, 'evals.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    assert.ok(logged.every((l) => l.metric === 'exact-match' && [0, 1, 2, 3, 4].includes(-4 * l.quality)));
    // The evaluation task: dense 1 by construction; the pruned value is what evaluateBleu gives with mask.json.
    const b: EvalBleu = saved.evalBleu;
    assert.equal(b.denseExactMatch, 1);
    const pruned = await evaluateBleu({
      model,
      task: evalFile,
      mask: join(out, 'mask.json'),
      maxNewTokens: EVAL_NEW,
      promptTemplate: TEMPLATE,
    });
    assert.equal(b.exactMatch, pruned.exactMatch);
    assert.equal(b.sentenceMean, pruned.sentenceMean);
    assert.equal(b.passAt1, undefined);
    // config.json holds the template among the settings; --resume refuses another one.
    const config = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'));
    assert.equal(config.settings.promptTemplate, TEMPLATE);
    assert.equal(config.calibration.task.promptTemplate, TEMPLATE);
    assertOneLineError(
      cli(['heads', '--resume', out, '--prompt-template', 'Tale: {text}']),
      'non-zero',
      '--prompt-template: cannot change on --resume',
    );
  });

  test('weights --method ga --metric exact-match: the block search scores exact match; result.json records it', () => {
    const out = join(tmp.dir, 'weights-em');
    const r = json<WeightPruneResult>(
      cli([
        'weights',
        ...runData(),
        '--method',
        'ga',
        '--metric',
        'exact-match',
        '--calib-task',
        calibFile,
        '--calib-items',
        '4',
        '--calib-new-tokens',
        String(CALIB_NEW),
        '--prompt-template',
        TEMPLATE,
        '--sparsity',
        '0.2',
        '--population',
        '4',
        '--generations',
        '1',
        '--calib-tokens',
        '1024',
        '--eval-tokens',
        '1024',
        '--out',
        out,
        '--json',
      ]),
    );
    assert.equal(r.calib.metric, 'exact-match');
    assert.equal(r.calib.denseExactMatch, 1);
    assert.equal(r.calib.exactMatch, -r.calib.quality);
    assert.equal(r.calib.task?.promptTemplate, TEMPLATE);
    const report = r.methodReport as { metric: string; denseExactMatch: number; layers: unknown[] };
    assert.equal(report.metric, 'exact-match');
    assert.equal(report.denseExactMatch, 1);
    assert.equal(report.layers.length, 5);
  });
});

describe('eval --task reports every generation metric', { skip }, () => {
  test('BLEU, exact match; pass@1 only with --allow-code-execution, equal to passAtOne on the continuations', async () => {
    const base = ['eval', '--model', model, '--task', mbppFile, '--max-new-tokens', '12'];
    const text = cli(base);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /^sent\. BLEU .* on its 0–1 scale\)$/m);
    assert.match(text.stdout, /^exact match {2}0\.00 % \(0 of 3 items/m);
    assert.doesNotMatch(text.stdout, /pass@1/);

    const r = json<{
      exactMatch: number;
      sentenceMeanUnit: number;
      passAt1?: number;
      passed?: number;
      hypotheses: string[];
    }>(cli([...base, '--allow-code-execution', '--exec-workers', '2', '--json']));
    const task = await readGenerationTask(mbppFile);
    const refs = task.items.map((it) => it.references[0]);
    assert.equal(r.exactMatch, r.hypotheses.filter((h, i) => exactMatch(h, refs[i])).length / 3);
    assert.equal(r.sentenceMeanUnit, nltkMethod1MeanBleu(r.hypotheses, refs));
    const direct = await passAtOne(
      task.items.map((it) => it.problem!),
      r.hypotheses,
      { allowCodeExecution: true },
    );
    assert.equal(r.passAt1, direct.passAt1);
    assert.equal(r.passed, direct.passed);
    const printed = cli([...base, '--allow-code-execution']);
    assert.match(printed.stdout, /^pass@1 {7}\d+\.\d\d % \(\d of 3 greedy programs passed their tests\)$/m);
  });
});

describe('refusals in one line', { skip }, () => {
  test('pass@1 without --allow-code-execution, or on a task without tests', () => {
    const heads = (extra: string[]) =>
      cli([
        'heads',
        ...runData(),
        ...refusedOut(),
        '--metric',
        'pass@1',
        '--target-sparsity',
        '0.25',
        '--population',
        '4',
        '--generations',
        '1',
        ...extra,
      ]);
    assertOneLineError(heads(['--calib-task', mbppFile]), 'non-zero', '--allow-code-execution', 'pass@1');
    // Refused before the run directory is made.
    assert.equal(existsSync(join(tmp.dir, `refused-${refusedRuns - 1}`)), false);
    assertOneLineError(
      cli([
        'weights',
        ...runData(),
        ...refusedOut(),
        '--method',
        'ga',
        '--metric',
        'pass@1',
        '--sparsity',
        '0.2',
        '--calib-task',
        mbppFile,
      ]),
      'non-zero',
      '--allow-code-execution',
    );
    assertOneLineError(
      heads(['--calib-task', calibFile, '--allow-code-execution']),
      'non-zero',
      calibFile,
      'this task has none',
    );
    // Built from the --calib pages: story continuations, no tests either.
    assertOneLineError(heads(['--allow-code-execution']), 'non-zero', 'this task has none');
    // With code execution allowed, pass@1 is reported on the evaluation task: it needs tests too.
    assertOneLineError(
      cli(['eval', '--model', model, '--task', evalFile, '--allow-code-execution']),
      'non-zero',
      evalFile,
      'this task has none',
    );
  });

  test('bad --exec-workers, and --exec-workers without --allow-code-execution', () => {
    const evalTask = ['eval', '--model', model, '--task', mbppFile];
    for (const bad of ['0', '-1', 'two', '1.5'])
      assertOneLineError(
        cli([...evalTask, '--allow-code-execution', '--exec-workers', bad]),
        'non-zero',
        '--exec-workers',
      );
    assertOneLineError(
      cli([...evalTask, '--exec-workers', '2']),
      'non-zero',
      '--exec-workers: only with --allow-code-execution',
    );
    assertOneLineError(
      cli([
        'heads',
        ...runData(),
        ...refusedOut(),
        '--metric',
        'pass@1',
        '--calib-task',
        mbppFile,
        '--allow-code-execution',
        '--exec-workers',
        '0',
      ]),
      'non-zero',
      '--exec-workers',
    );
  });

  test('a template or code execution a run would not use', () => {
    const heads = (extra: string[]) =>
      cli(['heads', ...runData(), ...refusedOut(), '--target-sparsity', '0.25', ...extra]);
    assertOneLineError(
      heads(['--prompt-template', '{text}']),
      'non-zero',
      '--prompt-template: only with a generation task: --metric bleu, exact-match or pass@1, or --eval-task',
    );
    for (const extra of [['--allow-code-execution'], ['--metric', 'bleu', '--allow-code-execution']])
      assertOneLineError(
        heads(extra),
        'non-zero',
        '--allow-code-execution: nothing would run: only with --metric pass@1, or --eval-task',
      );
  });

  test('bad --prompt-template, and the flags without a task', () => {
    const evalTask = ['eval', '--model', model, '--task', evalFile];
    assertOneLineError(
      cli([...evalTask, '--prompt-template', 'no field']),
      'non-zero',
      '--prompt-template',
      'has no {text}',
    );
    assertOneLineError(
      cli([...evalTask, '--prompt-template', '{text} in {lang}']),
      'non-zero',
      '--prompt-template',
      'unknown field {lang}',
    );
    assertOneLineError(
      cli([
        'heads',
        ...runData(),
        ...refusedOut(),
        '--metric',
        'exact-match',
        '--calib-task',
        calibFile,
        '--prompt-template',
        '{prompt}',
      ]),
      'non-zero',
      '--prompt-template',
      'unknown field {prompt}',
    );
    for (const flag of [['--prompt-template', '{text}'], ['--allow-code-execution'], ['--exec-workers', '2']])
      assertOneLineError(
        cli(['eval', '--model', model, '--data', sharedPath(EVAL)!, ...flag]),
        'non-zero',
        `${flag[0]}: only with --task`,
      );
  });
});
