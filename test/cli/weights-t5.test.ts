/**
 * `geneprune weights` on encoder-decoders, as a user runs it (--calib and --eval are task files of source/target
 * pairs):
 * - on a random T5 folder (codet5-tiny's tokenizer) and small slices of data/codegen, every method, unstructured
 *   and 2:4 (where it takes a pattern), with and without --recover, completes, and its result's evaluation
 *   perplexity equals `geneprune eval --weight-mask` of the mask it wrote (with `--recovered` after recovery);
 *   the GA also searches on BLEU, exact match and pass@1 of the calibration task;
 * - `--layers encoder.0` prunes only encoder block 0's matrices (the mask file keeps the others whole), and is
 *   recorded, shown and held on --resume;
 * - on codet5-tiny: magnitude's mask equals a per-matrix sort of the checkpoint's own weights, and
 *   `--preset geneprune` runs the GenePrune code's setup and records its fitness 0.98·b + 0.02·s (×0.1 below
 *   b = 0.09) for every scored block;
 * - refusals in one line, with no run directory left behind.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { unpackBits } from '../../src/masks/bitset.js';
import { loadWeightMaskFile } from '../../src/masks/weightfile.js';
import { prunableMatrices } from '../../src/masks/weights.js';
import { openModel } from '../../src/model/open.js';
import { tempDir } from '../checkpoint/helpers.js';
import { assertOneLineError, runCli } from '../helpers/cli.js';
import { writeRandomT5 } from '../helpers/t5.js';
import { sharedPath, skipUnlessShared } from '../shared.js';

const CODET5 = 'models/codet5-tiny';
const CALIB_TASK = 'data/codegen/calib.jsonl';
const EVAL_TASK = 'data/codegen/eval.jsonl';
const skip = skipUnlessShared(CODET5, CALIB_TASK, EVAL_TASK);
const tmp = tempDir('geneprune-weights-t5-');
after(tmp.cleanup);

/** The first n lines of a task file, written to the temporary folder. */
function slice(from: string, n: number, name: string): string {
  const lines = readFileSync(from, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '');
  const path = join(tmp.dir, name);
  writeFileSync(path, `${lines.slice(0, n).join('\n')}\n`);
  return path;
}

function evalPerplexity(model: string, data: string, mask: string, recovered?: string): number {
  const r = runCli([
    'eval',
    '--model',
    model,
    '--data',
    data,
    '--weight-mask',
    mask,
    ...(recovered ? ['--recovered', recovered] : []),
    '--json',
  ]);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout).perplexity;
}

const close = (a: number, b: number, what: string) =>
  assert.ok(Math.abs(a - b) <= 1e-6 * b, `${what}: ${a} vs eval's ${b}`);

describe('weights on a random T5 folder', { skip }, () => {
  let model = '';
  let calib = '';
  let evalTask = '';
  before(async () => {
    model = join(tmp.dir, 't5');
    mkdirSync(model);
    await writeRandomT5(model, 'v1.1', 7, { tokenizer: true });
    calib = slice(sharedPath(CALIB_TASK)!, 12, 'calib.jsonl');
    evalTask = slice(sharedPath(EVAL_TASK)!, 6, 'eval.jsonl');
  });
  const base = () => ['--model', model, '--calib', calib, '--eval', evalTask, '--eval-new-tokens', '8'];

  const methods: [string, string[], boolean][] = [
    ['magnitude', [], true],
    ['global-magnitude', [], true],
    ['random', [], true],
    ['wanda', [], true],
    ['ga', ['--population', '4', '--generations', '1'], true],
    ['ga-wanda', ['--population', '4', '--generations', '1'], true],
    ['ga-magnitude', ['--population', '4', '--generations', '1'], true],
    ['alloc', ['--generations', '2'], false],
    ['owl', [], false],
  ];
  for (const [method, extra, takesPattern] of methods) {
    for (const pattern of takesPattern ? [undefined, '2:4'] : [undefined]) {
      for (const recover of [false, true]) {
        const name = `${method}${pattern ? '-24' : ''}${recover ? '-rec' : ''}`;
        test(`${method}${pattern ? ' --pattern 2:4' : ''}${recover ? ' --recover' : ''}: evaluation = eval --weight-mask`, () => {
          const out = join(tmp.dir, name);
          const r = runCli([
            'weights',
            ...base(),
            '--method',
            method,
            ...(pattern ? ['--pattern', pattern] : ['--sparsity', '0.4']),
            ...(recover ? ['--recover'] : []),
            ...extra,
            '--json',
            '--out',
            out,
          ]);
          assert.equal(r.code, 0, r.stderr);
          const j = JSON.parse(r.stdout);
          assert.equal(j.method, method);
          // 36 matrices: 2 encoder blocks × 7, 2 decoder blocks × 11 (self, cross, gated MLP).
          const result = JSON.parse(readFileSync(join(out, 'result.json'), 'utf8'));
          assert.equal(result.matrices.length, 36);
          assert.ok(result.matrices.some((m: { role: string }) => m.role === 'layers.3.cross.v.weight'));
          if (method !== 'ga') assert.ok(j.sparsity.achieved > 0.3, `${j.sparsity.achieved}`);
          const mask = join(out, 'weight-mask.safetensors');
          if (recover) {
            assert.ok(j.recovery);
            close(
              j.eval.perplexity,
              evalPerplexity(model, evalTask, mask, join(out, 'recovered-weights.safetensors')),
              'recovered',
            );
            close(j.recovery.before.evalPerplexity, evalPerplexity(model, evalTask, mask), 'masked');
          } else close(j.eval.perplexity, evalPerplexity(model, evalTask, mask), 'masked');
        });
      }
    }
  }

  for (const [method, metric] of [
    ['ga', 'bleu'],
    ['ga', 'exact-match'],
    ['ga', 'pass@1'],
    ['ga-wanda', 'bleu'],
  ] as const) {
    test(`${method} --metric ${metric}: searches on the calibration task's generations`, () => {
      const out = join(tmp.dir, `${method}-${metric.replace('@', '')}`);
      const r = runCli([
        'weights',
        ...base(),
        '--method',
        method,
        '--metric',
        metric,
        '--sparsity',
        '0.3',
        '--population',
        '4',
        '--generations',
        '1',
        '--calib-items',
        '3',
        '--calib-new-tokens',
        '8',
        ...(metric === 'pass@1' ? ['--allow-code-execution'] : []),
        '--json',
        '--out',
        out,
      ]);
      assert.equal(r.code, 0, r.stderr);
      const j = JSON.parse(r.stdout);
      assert.equal(j.calib.metric, metric);
      assert.equal(j.methodReport.metric, metric);
      // Every block of both stacks was searched.
      assert.deepEqual(
        j.methodReport.layers.map((l: { layer: number }) => l.layer),
        [0, 1, 2, 3],
      );
      close(j.eval.perplexity, evalPerplexity(model, evalTask, join(out, 'weight-mask.safetensors')), metric);
    });
  }

  test('--layers encoder.0: only encoder block 0 is pruned; recorded, shown, held on --resume', async () => {
    const out = join(tmp.dir, 'layers-wanda');
    const r = runCli([
      'weights',
      ...base(),
      '--method',
      'wanda',
      '--sparsity',
      '0.5',
      '--layers',
      'encoder.0',
      '--out',
      out,
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^layers {7}encoder\.0: 7 of 36 prunable matrices \(the others dense\)$/m);
    const config = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'));
    assert.equal(config.settings.layers, 'encoder.0');
    const spec = (await openModel(model)).spec;
    const { masks } = await loadWeightMaskFile(join(out, 'weight-mask.safetensors'), spec);
    for (const m of prunableMatrices(spec)) {
      const keep = unpackBits(masks.get(m.role)!);
      const off = keep.reduce((a, b) => a + (b ? 0 : 1), 0);
      if (m.layer === 0) assert.equal(off, keep.length / 2, m.role);
      else assert.equal(off, 0, `${m.role} is outside --layers`);
    }
    const again = runCli(['weights', '--resume', out, '--layers', 'encoder.1']);
    assertOneLineError(again, 'non-zero', '--layers', 'encoder.0');
  });

  test('refusals: a stack the model lacks, a block past its stack, an entry matching nothing, the code fitness off BLEU', () => {
    for (const [args, ...mentions] of [
      [['--layers', 'layers.0'], '--layers', 'no stack "layers"', 'encoder, decoder'],
      [['--layers', 'decoder.2'], '--layers', 'decoder.0 … decoder.1'],
      [['--layers', 'encoder.*.cross'], '--layers', 'matches no prunable matrix'],
      [['--layers', 'encoder.0.ffn'], '--layers', 'unknown module'],
      [['--preset', 'geneprune', '--metric', 'ppl'], '--metric', 'sentence-mean BLEU'],
      [['--preset', 'geneprune', '--bleu', 'corpus'], '--metric', 'sentence-mean BLEU'],
    ] as [string[], ...string[]][]) {
      const out = join(tmp.dir, 'refused');
      // --calib-tokens within the slice: no note about short calibration data before the refusal.
      const r = runCli([
        'weights',
        ...base(),
        '--sparsity',
        '0.5',
        '--calib-tokens',
        '200',
        ...args,
        '--out',
        out,
      ]);
      assertOneLineError(r, 'non-zero', ...mentions);
      assert.ok(!existsSync(out), `${args.join(' ')} left ${out}`);
    }
  });
});

describe('weights on codet5-tiny', { skip }, () => {
  const model = () => sharedPath(CODET5)!;
  const base = () => [
    '--model',
    model(),
    '--calib',
    sharedPath(CALIB_TASK)!,
    '--eval',
    sharedPath(EVAL_TASK)!,
  ];

  test('magnitude: each of the 48 matrices loses its own smallest |W|; evaluation = eval --weight-mask', async () => {
    const out = join(tmp.dir, 'codet5-mag');
    const r = runCli([
      'weights',
      ...base(),
      '--method',
      'magnitude',
      '--sparsity',
      '0.3',
      '--eval-items',
      '10',
      '--json',
      '--out',
      out,
    ]);
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout);
    const spec = (await openModel(model())).spec;
    const matrices = prunableMatrices(spec);
    assert.equal(matrices.length, 48); // 3 encoder blocks × 6, 3 decoder blocks × 10 (relu MLP: up, down)
    const { masks } = await loadWeightMaskFile(join(out, 'weight-mask.safetensors'), spec);
    for (const m of matrices) {
      const w = await spec.tensors.get(m.role)!.load();
      const order = Array.from({ length: w.length }, (_, i) => i).sort(
        (a, b) => Math.abs(w[a]) - Math.abs(w[b]),
      );
      const expected = new Uint8Array(w.length).fill(1);
      for (const i of order.slice(0, Math.round(0.3 * w.length))) expected[i] = 0;
      assert.deepEqual(unpackBits(masks.get(m.role)!), expected, m.role);
    }
    close(
      j.eval.perplexity,
      evalPerplexity(model(), sharedPath(EVAL_TASK)!, join(out, 'weight-mask.safetensors')),
      'codet5-tiny',
    );
  });

  test("--preset geneprune: the GenePrune code's setup, its fitness recorded per block", () => {
    const out = join(tmp.dir, 'codet5-preset');
    const r = runCli([
      'weights',
      ...base(),
      '--preset',
      'geneprune',
      '--layers',
      'encoder.0',
      '--calib-items',
      '4',
      '--eval-items',
      '10',
      '--json',
      '--out',
      out,
    ]);
    assert.equal(r.code, 0, r.stderr);
    const config = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'));
    const s = config.settings;
    assert.equal(s.method, 'ga');
    assert.equal(s.metric, 'bleu');
    assert.equal(s.bleu, 'sentence-mean');
    assert.equal(s.fitness, 'geneprune-code');
    assert.equal(s.promptTemplate, 'Generate code from natural language: (from Mbpp) {text}');
    assert.deepEqual([s.sparsity, s.lambda, s.population, s.generations], [0.2, 0.02, 10, 5]);
    assert.match(config.methodDescription.fitness, /times 0\.1 when b < 0\.09/);
    const j = JSON.parse(r.stdout);
    assert.equal(j.methodReport.fitness, 'geneprune-code');
    assert.deepEqual(
      j.methodReport.layers.map((l: { layer: number }) => l.layer),
      [0],
    );
    const code = (b: number, sp: number) => {
      const f = 0.98 * b + 0.02 * sp;
      return b < 0.09 ? 0.1 * f : f;
    };
    for (const l of j.methodReport.layers) {
      for (const x of [l.initialBest, l.best]) {
        assert.ok(Math.abs(x.fitness - code(x.bleu / 100, x.sparsity)) < 1e-12, JSON.stringify(x));
      }
    }
    // Only encoder block 0 was pruned, as far as the threshold took it.
    assert.equal(j.layers.length, 1);
    assert.ok(j.sparsity.achieved > 0.04 && j.sparsity.achieved < 0.25, `${j.sparsity.achieved}`);
  });

  test('--preset geneprune --pattern 2:4: the pattern fixes the sparsity the preset would stop at', () => {
    const out = join(tmp.dir, 'codet5-preset-24');
    const r = runCli([
      'weights',
      ...base(),
      '--preset',
      'geneprune',
      '--pattern',
      '2:4',
      '--layers',
      'encoder.0.attn.q',
      '--calib-items',
      '2',
      '--eval-items',
      '4',
      '--json',
      '--out',
      out,
    ]);
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout);
    assert.equal(j.sparsity.target, 0.5);
    assert.equal(j.sparsity.achieved, 0.5);
    // A --sparsity the user gives must still agree with the pattern.
    assertOneLineError(
      runCli([
        'weights',
        ...base(),
        '--preset',
        'geneprune',
        '--pattern',
        '2:4',
        '--sparsity',
        '0.2',
        '--out',
        join(tmp.dir, 'x24'),
      ]),
      2,
      '--sparsity',
      'the 2:4 pattern prunes 0.5',
    );
  });
});
