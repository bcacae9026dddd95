/**
 * `geneprune heads --recover` end to end on stories260K, as a user runs it: the mask is the one the same run
 * finds without --recover, the perplexities before recovery are that run's, recovery lowers both and never
 * raises a layer's reconstruction error; the recovered file holds o of the layers that lose heads, zero on their
 * columns; `eval --mask M --recovered R` gives the run's recovered perplexity, the export (heads physically
 * removed, recovered o's kept columns written) gives it to 1e-4, and so does `export --recover --calib` computed
 * at export time; `generate --mask M --recovered R` writes what the exported model writes; wrong pairings are
 * refused in one line with nothing written; a run killed before or after recovery resumes to the same result.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { openSafetensors } from '../../src/checkpoint/safetensors.js';
import type { EvaluateResult, GenerateResult, HeadSearchResult } from '../../src/index.js';
import { loadMaskFile } from '../../src/masks/headfile.js';
import { applyRecoveredWeights } from '../../src/masks/recovered.js';
import { loadModelSpec } from '../../src/model/load.js';
import { memoryTensor } from '../../src/model/spec.js';
import { tempDir } from '../checkpoint/helpers.js';
import { assertOneLineError, runCli } from '../helpers/cli.js';
import { cliJson, smallData } from '../helpers/familycli.js';
import { CALIB, EVAL, MODEL, sharedPath, skipUnlessShared } from '../shared.js';

const skip = skipUnlessShared(MODEL, CALIB, EVAL);
/** A perplexity run's result (its eval is perplexity, not a classification score). */
type PplRun = HeadSearchResult & { eval: { perplexity: number; densePerplexity: number } };
const tmp = tempDir('geneprune-heads-recover-');
after(tmp.cleanup);

const cli = (args: string[], fault?: string) =>
  runCli(args, { timeout: 300_000, ...(fault ? { fault } : {}) });
const data = () => [...smallData(1024, 2048), '--target-sparsity', '0.25'];

const heads = (name: string, ...args: string[]) =>
  cliJson<PplRun>(cli(['heads', ...data(), '--out', join(tmp.dir, name), '--json', ...args]));
const maskOf = (run: string) => join(tmp.dir, run, 'mask.json');
const recOf = (run: string) => join(tmp.dir, run, 'recovered-weights.safetensors');
const rel = (a: number, b: number) => Math.abs(a - b) / Math.abs(b);
const evalArgs = () => ['eval', '--data', sharedPath(EVAL)!, '--max-tokens', '2048', '--json'];
const GA = ['--population', '4', '--generations', '2'];

describe('geneprune heads --recover on stories260K', { skip }, () => {
  const runs: Record<string, PplRun> = {};
  before(() => {
    runs.abl = heads('abl', '--method', 'ablation');
    runs.ablr = heads('ablr', '--method', 'ablation', '--recover');
    runs.rand = heads('rand', '--method', 'random', '--seed', '3');
  });

  test('same mask, the plain run’s perplexities before, lower after; no layer’s error grows; o zero on removed heads', async () => {
    const plain = runs.abl;
    const r = runs.ablr;
    assert.deepEqual(r.genome, plain.genome);
    assert.equal(r.eval.perplexity, plain.eval.perplexity, 'eval stays the mask’s own');
    const rec = r.recovery!;
    assert.equal(rec.before.evalPerplexity, plain.eval.perplexity);
    assert.equal(rec.before.calibPerplexity, plain.calib.quality);
    assert.ok(rec.after.evalPerplexity < rec.before.evalPerplexity, JSON.stringify(rec));
    assert.ok(rec.after.calibPerplexity < rec.before.calibPerplexity, JSON.stringify(rec));
    assert.equal(rec.reconstruction.length, 5);
    for (const l of rec.reconstruction) {
      assert.ok(
        l.recoveredError <= l.maskedError,
        `layer ${l.layer}: ${l.recoveredError} > ${l.maskedError}`,
      );
      if (l.removedHeads > 0) assert.ok(l.recovered && l.recoveredError < l.maskedError, `layer ${l.layer}`);
    }
    const spec = await loadModelSpec(sharedPath(MODEL)!);
    const mask = await loadMaskFile(maskOf('ablr'), spec);
    const file = await openSafetensors(rec.weights);
    const touched = rec.reconstruction
      .filter((l) => l.removedHeads > 0)
      .map((l) => `layers.${l.layer}.attn.o.weight`);
    assert.deepEqual([...file.tensors.keys()].sort(), touched.sort());
    const hd = spec.config.headDim;
    for (const name of touched) {
      const layer = Number(name.split('.')[1]);
      const w = await file.tensors.get(name)!.load();
      const cols = 8 * hd;
      for (let h = 0; h < 8; h++) {
        if (mask.genome[layer * 8 + h]) continue;
        for (let r = 0; r < spec.config.hiddenSize; r++)
          for (let j = h * hd; j < (h + 1) * hd; j++) assert.equal(w[r * cols + j], 0, `${name} head ${h}`);
      }
    }
  });

  test('eval --mask --recovered gives the run’s perplexity; export --recovered and export --recover give it to 1e-4', () => {
    const r = runs.ablr;
    const after = r.recovery!.after.evalPerplexity;
    const masked = cliJson<EvaluateResult>(
      cli([...evalArgs(), '--mask', maskOf('ablr'), '--recovered', recOf('ablr')]),
    );
    assert.ok(rel(masked.perplexity, after) < 1e-6, `${masked.perplexity} vs ${after}`);
    assert.equal(masked.recovered, recOf('ablr'));
    const out = join(tmp.dir, 'export-ablr');
    cliJson(cli(['export', '--mask', maskOf('ablr'), '--recovered', recOf('ablr'), '--out', out, '--json']));
    const exported = cliJson<EvaluateResult>(cli([...evalArgs(), '--model', out]));
    assert.ok(rel(exported.perplexity, after) < 1e-4, `${exported.perplexity} vs ${after}`);
    const now = join(tmp.dir, 'export-now');
    const e = cliJson<{ recovery: { tokens: number } }>(
      cli([
        'export',
        '--mask',
        maskOf('ablr'),
        '--recover',
        '--calib',
        sharedPath(CALIB)!,
        '--calib-tokens',
        '1024',
        '--out',
        now,
        '--json',
      ]),
    );
    assert.equal(e.recovery.tokens, 1024);
    const atExport = cliJson<EvaluateResult>(cli([...evalArgs(), '--model', now]));
    assert.ok(rel(atExport.perplexity, after) < 1e-4, `${atExport.perplexity} vs ${after}`);
  });

  test('generate --mask --recovered writes what the exported recovered model writes', () => {
    const args = ['generate', '--prompt', 'Once upon a time', '-n', '48', '--json'];
    const masked = cliJson<GenerateResult>(
      cli([...args, '--mask', maskOf('ablr'), '--recovered', recOf('ablr')]),
    );
    const exported = cliJson<GenerateResult>(cli([...args, '--model', join(tmp.dir, 'export-ablr')]));
    assert.equal(masked.tokens.length, 48);
    assert.deepEqual(masked.tokens, exported.tokens);
    const unrecovered = cliJson<GenerateResult>(cli([...args, '--mask', maskOf('ablr')]));
    assert.notDeepEqual(unrecovered.tokens, masked.tokens, 'recovery changes what the model writes');
  });

  test('without its mask, with another head mask, with a weight mask, for another model: one line, nothing written', async () => {
    const rec = recOf('ablr');
    assertOneLineError(
      cli([...evalArgs(), '--recovered', rec]),
      2,
      '--recovered: needs --weight-mask or --mask',
    );
    assertOneLineError(
      cli([...evalArgs(), '--mask', maskOf('rand'), '--recovered', rec]),
      'non-zero',
      rec,
      'were removed, but --mask removes',
    );
    assertOneLineError(
      cli(['generate', '--mask', maskOf('rand'), '--recovered', rec, '-n', '4']),
      'non-zero',
      'were removed, but --mask removes',
    );
    const other = join(tmp.dir, 'export-other');
    assertOneLineError(
      cli(['export', '--mask', maskOf('rand'), '--recovered', rec, '--out', other]),
      'non-zero',
      'were removed, but --mask removes',
    );
    assertOneLineError(
      cli(['export', '--mask', maskOf('ablr'), '--recover', '--out', other]),
      2,
      '--calib: required with --recover',
    );
    assertOneLineError(
      cli([
        'export',
        '--mask',
        maskOf('ablr'),
        '--recover',
        '--recovered',
        rec,
        '--calib',
        sharedPath(CALIB)!,
        '--out',
        other,
      ]),
      2,
      '--recover: give either --recover or --recovered',
    );
    assert.ok(!existsSync(other), 'nothing written');
    // The head mask's recovered weights with a weight mask alone: a weight run's file is not theirs to take.
    const weightsRun = join(tmp.dir, 'mag');
    cliJson(
      cli([
        'weights',
        ...data().slice(0, 8),
        '--method',
        'magnitude',
        '--sparsity',
        '0.5',
        '--out',
        weightsRun,
        '--json',
      ]),
    );
    assertOneLineError(
      cli([...evalArgs(), '--weight-mask', join(weightsRun, 'weight-mask.safetensors'), '--recovered', rec]),
      'non-zero',
      'give that head mask with --mask',
    );
    // Another model of the same shape: one weight changed.
    const spec = await loadModelSpec(sharedPath(MODEL)!);
    const role = 'layers.2.mlp.up.weight';
    const w = Float32Array.from(await spec.tensors.get(role)!.load());
    w[5] += 0.5;
    const tensors = new Map(spec.tensors);
    tensors.set(role, memoryTensor(spec.tensors.get(role)!.shape, w));
    const mask = await loadMaskFile(maskOf('ablr'), spec);
    await assert.rejects(
      applyRecoveredWeights(
        rec,
        { ...spec, tensors },
        { head: { sha256: mask.sha256, removed: mask.file.removed } },
      ),
      /recovered for another model/,
    );
  });

  test('killed after the mask is written or after recovery, --resume gives the uninterrupted run’s result', () => {
    const expected = heads('ga', ...GA, '--recover');
    for (const fault of ['heads:mask-written', 'heads:recovered']) {
      const dir = join(tmp.dir, `killed-${fault.split(':')[1]}`);
      const killed = cli(['heads', ...data(), ...GA, '--recover', '--out', dir, '--json'], fault);
      assert.equal(killed.signal, 'SIGKILL', `${fault}: ${killed.stderr}`);
      assert.ok(!existsSync(join(dir, 'result.json')));
      const resumed = cliJson<PplRun>(cli(['heads', '--resume', dir, '--json']));
      assert.deepEqual(resumed.genome, expected.genome, fault);
      assert.equal(resumed.eval.perplexity, expected.eval.perplexity, fault);
      assert.deepEqual(resumed.recovery!.before, expected.recovery!.before, fault);
      assert.deepEqual(resumed.recovery!.after, expected.recovery!.after, fault);
      assert.deepEqual(resumed.recovery!.reconstruction, expected.recovery!.reconstruction, fault);
      assert.ok(existsSync(join(dir, 'recovered-weights.safetensors')));
    }
    assertOneLineError(
      cli(['heads', '--resume', join(tmp.dir, 'abl'), '--recover']),
      2,
      '--recover: cannot change on --resume',
    );
  });
});
