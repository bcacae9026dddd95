/**
 * `geneprune weights` end to end on stories260K, as a user runs it: magnitude masks equal a plain independent
 * implementation (sort |W| per matrix) at exactly round(s·n)/n per matrix; 2:4 holds in every group of every
 * exported matrix; the sparsity counted from the exported files equals what the run reports; `eval
 * --weight-mask` gives the perplexity of the exported pruned model (also with a head mask); bad sparsities,
 * patterns and methods are refused in one line with nothing written; `--resume` gives a finished run's result
 * back and finishes an interrupted one identically; the same seed gives the same random mask.
 */
import assert from 'node:assert/strict';
import { cpSync, existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { openSafetensors, readTensorBytes } from '../../src/checkpoint/safetensors.js';
import type { EvaluateResult, PerplexityRunResult, SparsityReport } from '../../src/index.js';
import { unpackBits } from '../../src/masks/bitset.js';
import { holdsPattern } from '../../src/masks/select.js';
import { loadWeightMaskFile } from '../../src/masks/weightfile.js';
import { prunableMatrices } from '../../src/masks/weights.js';
import { hfNameOfRole } from '../../src/model/llama.js';
import { loadModelSpec } from '../../src/model/load.js';
import type { ModelSpec } from '../../src/model/spec.js';
import { tempDir } from '../checkpoint/helpers.js';
import { assertOneLineError, runCli } from '../helpers/cli.js';
import { cliJson, smallData } from '../helpers/familycli.js';
import { CALIB, EVAL, MODEL, sharedPath, skipUnlessShared } from '../shared.js';

const skip = skipUnlessShared(MODEL, CALIB, EVAL);
const tmp = tempDir('geneprune-weights-');
after(tmp.cleanup);

const cli = (args: string[]) => runCli(args, { timeout: 300_000 });
const data = () => [...smallData(1024, 2048)];

function weights(name: string, ...args: string[]): PerplexityRunResult {
  return cliJson<PerplexityRunResult>(
    cli(['weights', ...data(), '--out', join(tmp.dir, name), '--json', ...args]),
  );
}

type Exported = { weightSparsity: SparsityReport };

const maskOf = (run: string) => join(tmp.dir, run, 'weight-mask.safetensors');
const rel = (a: number, b: number) => Math.abs(a - b) / Math.abs(b);

/** Plain magnitude pruning: sort (|w|, index) ascending and prune the first round(s·n). */
function plainMagnitude(w: Float32Array, sparsity: number): Uint8Array {
  const order = Array.from(w, (v, i) => [Math.abs(v), i]).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  const keep = new Uint8Array(w.length).fill(1);
  for (let k = 0; k < Math.round(sparsity * w.length); k++) keep[order[k][1]] = 0;
  return keep;
}

describe('geneprune weights on stories260K', { skip }, () => {
  let spec: ModelSpec;
  const runs: Record<string, PerplexityRunResult> = {};
  before(() => {
    runs.mag50 = weights('mag50', '--method', 'magnitude', '--sparsity', '0.5');
    runs.mag24 = weights('mag24', '--method', 'magnitude', '--pattern', '2:4');
    runs.rand7 = weights('rand7', '--method', 'random', '--sparsity', '0.3', '--seed', '7');
    runs.wanda50 = weights('wanda50', '--method', 'wanda', '--sparsity', '0.5');
    runs.wanda50r = weights('wanda50r', '--method', 'wanda', '--sparsity', '0.5', '--recover');
  });
  before(async () => {
    spec = await loadModelSpec(sharedPath(MODEL)!);
  });

  test('wanda at 50 %: every output row of every matrix keeps half its weights; the mask file says wanda', async () => {
    const r = runs.wanda50;
    assert.equal(r.method, 'wanda');
    assert.equal(r.sparsity.achieved, 0.5);
    assert.ok(r.forwardPasses > 0, 'wanda runs the model on calibration data');
    const file = await loadWeightMaskFile(maskOf('wanda50'), spec);
    for (const m of prunableMatrices(spec)) {
      const keep = unpackBits(file.masks.get(m.role)!);
      for (let row = 0; row < m.rows; row++) {
        let kept = 0;
        for (let j = 0; j < m.cols; j++) kept += keep[row * m.cols + j];
        assert.equal(kept, m.cols / 2, `${m.role} row ${row}`);
      }
    }
    assert.ok(Number.isFinite(r.eval.perplexity) && r.eval.perplexity > r.eval.densePerplexity);
  });

  test('--recover: same mask, lower perplexity, every layer reconstructed at least as well, zeros kept', async () => {
    const plain = runs.wanda50;
    const r = runs.wanda50r;
    // Recovery does not change the mask (the files differ only in the run directory they name).
    const plainMask = await loadWeightMaskFile(maskOf('wanda50'), spec);
    assert.equal(r.recovery!.before.evalPerplexity, plain.eval.perplexity);
    assert.equal(r.recovery!.before.calibPerplexity, plain.calib.perplexity);
    assert.equal(r.eval.densePerplexity, plain.eval.densePerplexity);
    assert.ok(r.eval.perplexity < plain.eval.perplexity, `${r.eval.perplexity} vs ${plain.eval.perplexity}`);
    assert.ok(r.calib.perplexity < plain.calib.perplexity);
    for (const l of r.recovery!.reconstruction)
      assert.ok(l.recoveredError <= l.maskedError, `layer ${l.layer}`);
    const file = await openSafetensors(r.recovery!.weights);
    const mask = await loadWeightMaskFile(maskOf('wanda50r'), spec);
    for (const m of prunableMatrices(spec)) {
      const w = await file.tensors.get(m.role)!.load();
      const keep = unpackBits(mask.masks.get(m.role)!);
      assert.deepEqual(keep, unpackBits(plainMask.masks.get(m.role)!), m.role);
      for (let i = 0; i < keep.length; i++) if (!keep[i]) assert.equal(w[i], 0, m.role);
    }
  });

  test('--recovered: eval gives the run’s recovered perplexity, export writes those weights; wrong pairings refused', () => {
    const r = runs.wanda50r;
    const rec = r.recovery!.weights;
    const evalArgs = ['eval', '--data', sharedPath(EVAL)!, '--max-tokens', '2048', '--json'];
    const masked = cliJson<EvaluateResult>(
      cli([...evalArgs, '--weight-mask', maskOf('wanda50r'), '--recovered', rec]),
    );
    assert.ok(
      rel(masked.perplexity, r.eval.perplexity) < 1e-6,
      `${masked.perplexity} vs ${r.eval.perplexity}`,
    );
    const out = join(tmp.dir, 'export-wanda50r');
    cliJson(cli(['export', '--weight-mask', maskOf('wanda50r'), '--recovered', rec, '--out', out, '--json']));
    const exported = cliJson<EvaluateResult>(cli([...evalArgs, '--model', out]));
    assert.ok(
      rel(exported.perplexity, r.eval.perplexity) < 1e-4,
      `${exported.perplexity} vs ${r.eval.perplexity}`,
    );
    assertOneLineError(cli([...evalArgs, '--recovered', rec]), 2, '--recovered: needs --weight-mask');
    assertOneLineError(
      cli([...evalArgs, '--weight-mask', maskOf('wanda50'), '--recovered', rec]),
      'non-zero',
      rec,
      'recovered under another weight mask',
    );
    const other = join(tmp.dir, 'export-other');
    assertOneLineError(
      cli(['export', '--weight-mask', maskOf('mag50'), '--recovered', rec, '--out', other]),
      'non-zero',
      'recovered under another weight mask',
    );
    assert.ok(!existsSync(other), 'nothing written');
  });

  test('magnitude at 50 % equals sorting |W| per matrix, each matrix at round(s·n)/n', async () => {
    const r = runs.mag50;
    assert.equal(r.method, 'magnitude');
    assert.equal(r.pattern, 'unstructured');
    assert.equal(r.calib.data, sharedPath(CALIB));
    assert.equal(r.eval.data, sharedPath(EVAL));
    assert.ok(r.eval.perplexity > r.eval.densePerplexity);
    assert.ok(r.forwardPasses > 0 && r.seconds > 0);
    const loaded = await loadWeightMaskFile(maskOf('mag50'), spec);
    let pruned = 0;
    for (const m of prunableMatrices(spec)) {
      const w = await spec.tensors.get(m.role)!.load();
      const expected = plainMagnitude(w, 0.5);
      assert.deepEqual(unpackBits(loaded.masks.get(m.role)!), expected, m.role);
      const n = m.rows * m.cols;
      const row = loaded.file.matrices.find((x) => x.role === m.role)!;
      assert.equal(row.sparsity, Math.round(0.5 * n) / n, m.role);
      pruned += row.pruned;
    }
    assert.equal(r.sparsity.achieved, pruned / r.prunableWeights);
    assert.equal(r.sparsity.overall, pruned / r.parameters);
  });

  test('2:4 holds in every group of every exported matrix, and the written zeros are what the run reports', async () => {
    const out = join(tmp.dir, 'export-mag24');
    const e = cliJson<Exported>(cli(['export', '--weight-mask', maskOf('mag24'), '--out', out, '--json']));
    assert.equal(runs.mag24.sparsity.achieved, 0.5);
    const st = await openSafetensors(join(out, 'model.safetensors'));
    for (const m of prunableMatrices(spec)) {
      const w = await st.tensors.get(hfNameOfRole(m.role))!.load();
      const keep = Uint8Array.from(w, (v) => (v === 0 ? 0 : 1));
      assert.ok(holdsPattern(keep, m.cols, { n: 2, m: 4 }), m.role);
    }
    assert.equal(e.weightSparsity.prunable.sparsity, runs.mag24.sparsity.achieved);
    assert.deepEqual(
      e.weightSparsity.layers.map((l) => l.sparsity),
      runs.mag24.layers.map((l) => l.sparsity),
    );
  });

  test('export counts the zeros it wrote: they equal the run’s sparsity, layer by layer', async () => {
    const out = join(tmp.dir, 'export-mag50');
    const r = cli(['export', '--weight-mask', maskOf('mag50'), '--out', out]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /sparsity {5}50\.00 % of 226560 prunable weights/);
    const e = cliJson<Exported>(
      cli(['export', '--weight-mask', maskOf('mag50'), '--out', out, '--force', '--json']),
    );
    assert.equal(e.weightSparsity.prunable.pruned, Math.round(runs.mag50.sparsity.achieved * 226560));
    assert.deepEqual(
      e.weightSparsity.layers,
      runs.mag50.layers,
      'per-layer zeros in the written files = the mask (stories260K has no weight that is exactly 0)',
    );
    // Counted here too, independently, from the Hugging Face file.
    const st = await openSafetensors(join(out, 'model.safetensors'));
    let zeros = 0;
    for (const m of prunableMatrices(spec))
      for (const v of await st.tensors.get(hfNameOfRole(m.role))!.load()) zeros += v === 0 ? 1 : 0;
    assert.equal(zeros, e.weightSparsity.prunable.pruned);
  });

  test('transformers.js loads the weight-pruned export offline and generates what generate --weight-mask does', async () => {
    const dir = join(tmp.dir, 'export-mag50'); // written by the test above
    const prompt = 'Once upon a time';
    const ours = cli(['generate', '--weight-mask', maskOf('mag50'), '--prompt', prompt, '-n', '40']);
    assert.equal(ours.code, 0, ours.stderr);
    const dense = cli(['generate', '--prompt', prompt, '-n', '40']);
    assert.notEqual(ours.stdout, dense.stdout, 'the mask changes what the model says');
    const { env: tjs, AutoTokenizer, AutoModelForCausalLM } = await import('@huggingface/transformers');
    tjs.allowRemoteModels = false;
    tjs.localModelPath = `${tmp.dir}/`;
    const tokenizer = await AutoTokenizer.from_pretrained('export-mag50');
    const lm = await AutoModelForCausalLM.from_pretrained('export-mag50', { dtype: 'fp32' });
    const inputs = tokenizer(prompt);
    const generated = (await lm.generate({ ...inputs, max_new_tokens: 40, do_sample: false })) as unknown as {
      tolist(): bigint[][];
    };
    await lm.dispose();
    const ids = generated.tolist()[0].map(Number);
    assert.ok(ids.length > inputs.input_ids.dims[1], 'it generated something');
    assert.equal(tokenizer.decode(ids, { skip_special_tokens: true }), ours.stdout.replace(/\n$/, ''));
    assert.ok(existsSync(dir));
  });

  test('eval --weight-mask gives the exported model’s perplexity, with and without a head mask', () => {
    const evalData = ['--data', sharedPath(EVAL)!, '--max-tokens', '4096', '--json'];
    const masked = cliJson<EvaluateResult>(cli(['eval', ...evalData, '--weight-mask', maskOf('mag50')]));
    const exported = cliJson<EvaluateResult>(
      cli(['eval', ...evalData, '--model', join(tmp.dir, 'export-mag50')]),
    );
    assert.equal(masked.weightSparsity, 0.5);
    assert.ok(
      rel(masked.perplexity, exported.perplexity) < 1e-4,
      `${masked.perplexity} vs ${exported.perplexity}`,
    );

    const heads = cliJson<{ runDir: string }>(
      cli([
        'heads',
        ...data(),
        '--method',
        'random',
        '--target-sparsity',
        '0.25',
        '--out',
        join(tmp.dir, 'heads'),
        '--json',
      ]),
    );
    const headMask = join(heads.runDir, 'mask.json');
    const out = join(tmp.dir, 'export-both');
    cliJson(cli(['export', '--mask', headMask, '--weight-mask', maskOf('rand7'), '--out', out, '--json']));
    const both = cliJson<EvaluateResult>(
      cli(['eval', ...evalData, '--mask', headMask, '--weight-mask', maskOf('rand7')]),
    );
    const exportedBoth = cliJson<EvaluateResult>(cli(['eval', ...evalData, '--model', out]));
    assert.ok(
      rel(both.perplexity, exportedBoth.perplexity) < 1e-4,
      `${both.perplexity} vs ${exportedBoth.perplexity}`,
    );
  });

  test('a weight mask is refused on another model, naming the file and saying why', () => {
    const r = cli([
      'eval',
      '--data',
      sharedPath(EVAL)!,
      '--model',
      join(tmp.dir, 'export-mag50'),
      '--weight-mask',
      maskOf('mag50'),
    ]);
    assertOneLineError(r, 1, maskOf('mag50'), 'pruned with', 'weight mask sha256');
  });

  test('bad sparsities, patterns and methods: one line, exit 2, nothing written', () => {
    const cases: Array<[string[], string[]]> = [
      [
        ['--sparsity', '1'],
        ['--sparsity', 'must lie in [0, 1), got 1'],
      ],
      [['--sparsity=-0.1'], ['--sparsity', 'must lie in [0, 1)']],
      [[], ['--sparsity', 'required']],
      [
        ['--pattern', '3:8'],
        ['--pattern', 'layers.0.mlp.down.weight has 172 weights', 'groups of 8'],
      ],
      [
        ['--pattern', '4:2'],
        ['--pattern', 'expected N:M'],
      ],
      [
        ['--pattern', '2:4', '--sparsity', '0.3'],
        ['--sparsity', '2:4 pattern prunes 0.5'],
      ],
      [
        ['--method', 'obc', '--sparsity', '0.5'],
        ['--method', '"obc" is not one of magnitude, global-magnitude, random, wanda'],
      ],
    ];
    for (const [i, [args, mentions]] of cases.entries()) {
      const out = join(tmp.dir, `refused-${i}`);
      assertOneLineError(cli(['weights', ...data(), '--out', out, ...args]), 2, ...mentions);
      assert.ok(!existsSync(out), `${args.join(' ')} left ${out}`);
    }
  });

  test('--resume gives a finished run back, finishes an interrupted one identically, refuses changed flags', () => {
    const again = cliJson<PerplexityRunResult>(
      cli(['weights', '--resume', join(tmp.dir, 'mag50'), '--json']),
    );
    assert.deepEqual({ ...again, resumed: undefined }, { ...runs.mag50, resumed: undefined });
    assert.equal(again.resumed, true);

    // Stopped after the mask was fixed: state.json and the mask are there, result.json is not.
    const copy = join(tmp.dir, 'rand7-stopped');
    cpSync(join(tmp.dir, 'rand7'), copy, { recursive: true });
    rmSync(join(copy, 'result.json'));
    const resumed = cliJson<PerplexityRunResult>(cli(['weights', '--resume', copy, '--json']));
    assert.equal(resumed.maskSha256, runs.rand7.maskSha256);
    assert.equal(resumed.eval.perplexity, runs.rand7.eval.perplexity);
    assert.equal(resumed.calib.perplexity, runs.rand7.calib.perplexity);

    assertOneLineError(
      cli(['weights', '--resume', join(tmp.dir, 'mag50'), '--sparsity', '0.4']),
      2,
      '--sparsity: cannot change on --resume (the run was made with 0.5)',
    );
  });

  test('SIGKILL at any stage, then --resume: the same result as the run that was never interrupted', () => {
    for (const fault of ['weights:mask-fixed', 'weights:before-result']) {
      const dir = join(tmp.dir, `killed-${fault.split(':')[1]}`);
      const args = [
        'weights',
        ...data(),
        '--out',
        dir,
        '--method',
        'wanda',
        '--sparsity',
        '0.5',
        '--recover',
      ];
      const killed = runCli([...args, '--json'], { timeout: 300_000, fault });
      assert.equal(killed.signal, 'SIGKILL', `${fault}: ${killed.stderr}`);
      assert.ok(!existsSync(join(dir, 'result.json')));
      const resumed = cliJson<PerplexityRunResult>(cli(['weights', '--resume', dir, '--json']));
      const expected = runs.wanda50r;
      assert.equal(resumed.eval.perplexity, expected.eval.perplexity, fault);
      assert.equal(resumed.calib.perplexity, expected.calib.perplexity, fault);
      assert.deepEqual(resumed.recovery!.before, expected.recovery!.before, fault);
      assert.deepEqual(resumed.recovery!.reconstruction, expected.recovery!.reconstruction, fault);
      assert.deepEqual(resumed.layers, expected.layers, fault);
    }
  });

  test('the same seed gives the same random mask bytes; another seed another mask', async () => {
    weights('rand7b', '--method', 'random', '--sparsity', '0.3', '--seed', '7');
    weights('rand8', '--method', 'random', '--sparsity', '0.3', '--seed', '8');
    const bytes = async (run: string) => {
      const st = await openSafetensors(maskOf(run));
      return Promise.all([...st.tensors.values()].map(readTensorBytes));
    };
    assert.deepEqual(await bytes('rand7b'), await bytes('rand7'));
    assert.notDeepEqual(await bytes('rand8'), await bytes('rand7'));
  });
});
