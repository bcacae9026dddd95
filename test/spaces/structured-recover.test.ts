/**
 * `structured --recover` on stories260K: the run writes recovered-weights.safetensors for its plan, result.json
 * reports calibration and evaluation perplexity before and after, and the evaluation perplexity after is the one
 * the physically pruned recovered model gives (the recovered weights applied, the plan removed: computed here
 * without the run's code); a run interrupted during recovery resumes to the same weights and numbers; a plan that
 * leaves nothing to refit (ShortGPT: whole layers) writes no weights and says so; the CLI prints both lines.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { openSafetensors } from '../../src/checkpoint/safetensors.js';
import { createRunner } from '../../src/engine/runner.js';
import { readRecoveredWeights } from '../../src/masks/recovered.js';
import { readDataset } from '../../src/metrics/data.js';
import { evaluatePerplexity, makeWindows, tokenizeDocuments } from '../../src/metrics/perplexity.js';
import { openModel } from '../../src/model/open.js';
import { pruneStructured } from '../../src/prune/structured.js';
import {
  resumeStructuredSearch,
  runStructuredSearch,
  type StructuredSearchResult,
} from '../../src/spaces/structured/run.js';
import { structuredSearchSettings } from '../../src/spaces/structured/settings.js';
import { runCli } from '../helpers/cli.js';
import { CALIB, EVAL, MODEL, sharedPath, skipUnlessShared } from '../shared.js';

const skip = skipUnlessShared(MODEL, CALIB, EVAL);
const settings = (extra: Record<string, unknown> = {}) =>
  structuredSearchSettings({
    model: sharedPath(MODEL)!,
    calib: sharedPath(CALIB)!,
    eval: sharedPath(EVAL)!,
    budget: 'params:0.6',
    widthStep: 16,
    population: 4,
    generations: 2,
    calibTokens: 512,
    scoreTokens: 512,
    evalTokens: 512,
    context: 64,
    recover: true,
    ...extra,
  });

type Recovered = Extract<NonNullable<StructuredSearchResult['recovery']>, { before: unknown }>;

describe('geneprune structured --recover on stories260K', { skip }, () => {
  const tmp = { dir: mkdtempSync(join(tmpdir(), 'geneprune-structured-recover-')) };
  let first: StructuredSearchResult;
  before(async () => {
    first = await runStructuredSearch(join(tmp.dir, 'a'), settings());
  });
  after(() => rmSync(tmp.dir, { recursive: true, force: true }));

  it('reports before and after, and the evaluation after is the physically pruned recovered model', async () => {
    const rec = first.recovery as Recovered;
    assert.ok(rec && 'before' in rec, JSON.stringify(first.recovery));
    assert.equal(rec.weights, join(first.runDir, 'recovered-weights.safetensors'));
    assert.equal(rec.before.evalPerplexity, first.eval.perplexity);
    assert.ok(rec.blockError.recovered <= rec.blockError.masked);
    assert.ok(rec.after.calibPerplexity < rec.before.calibPerplexity, JSON.stringify(rec));
    const stored = JSON.parse(readFileSync(join(first.runDir, 'result.json'), 'utf8'));
    assert.deepEqual(stored.recovery.after, rec.after);
    const model = await openModel(sharedPath(MODEL));
    const read = await readRecoveredWeights(rec.weights, model.spec, { structured: { plan: first.plan } });
    assert.equal(read.kind, 'structured');
    const stream = tokenizeDocuments((await readDataset(sharedPath(EVAL)!)).documents, model.tokenizer);
    const runner = await createRunner(pruneStructured(read.spec, first.plan), { output: 'nll' });
    try {
      const { perplexity } = await evaluatePerplexity(runner, makeWindows(stream, 64, 512), {});
      const want = rec.after.evalPerplexity;
      assert.ok(Math.abs(perplexity - want) < 1e-4 * want, `${perplexity} vs ${want}`);
    } finally {
      await runner.release();
    }
  });

  it('resumes a run stopped during recovery to the same weights and numbers', async () => {
    const dir = join(tmp.dir, 'b');
    await assert.rejects(
      runStructuredSearch(dir, settings(), {
        onStatus: (line) => {
          if (line.startsWith('recovery: layer 2')) throw new Error('stopped');
        },
      }),
      /stopped/,
    );
    const resumed = await resumeStructuredSearch(dir);
    assert.equal(resumed.genome, first.genome);
    const a = first.recovery as Recovered;
    const b = resumed.recovery as Recovered;
    assert.deepEqual(b.after, a.after);
    assert.deepEqual(b.linears, a.linears);
    // The files differ only in the plan file's sha256 they record (plan.json names its run directory).
    const fa = await openSafetensors(a.weights);
    const fb = await openSafetensors(b.weights);
    assert.deepEqual([...fb.tensors.keys()], [...fa.tensors.keys()]);
    for (const [name, t] of fa.tensors)
      assert.deepEqual(await fb.tensors.get(name)!.load(), await t.load(), name);
  });

  it('a plan of whole layers leaves nothing to refit: no weights, said plainly', async () => {
    const notes: string[] = [];
    const r = await runStructuredSearch(
      join(tmp.dir, 'c'),
      settings({ method: 'shortgpt', budget: 'flops:0.8' }),
      { onNote: (l) => notes.push(l) },
    );
    assert.ok(r.recovery && 'skipped' in r.recovery, JSON.stringify(r.recovery));
    assert.match(r.recovery.skipped, /nothing to refit/);
    assert.ok(notes.some((l) => /--recover: .*nothing to refit/.test(l)));
    assert.equal(existsSync(join(r.runDir, 'recovered-weights.safetensors')), false);
  });

  it('the CLI prints the recovery and the weights to export with', () => {
    const out = join(tmp.dir, 'd');
    const r = runCli([
      'structured',
      '--model',
      sharedPath(MODEL)!,
      '--calib',
      sharedPath(CALIB)!,
      '--eval',
      sharedPath(EVAL)!,
      '--method',
      'uniform',
      '--budget',
      'params:0.6',
      '--width-step',
      '16',
      '--calib-tokens',
      '512',
      '--score-tokens',
      '512',
      '--eval-tokens',
      '512',
      '--ctx',
      '64',
      '--recover',
      '--quiet',
      '--out',
      out,
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stdout,
      /recovery {5}o and down refitted on 512 calibration tokens: calibration ppl [\d.]+ → [\d.]+/,
    );
    assert.match(r.stdout, /recovered {4}.*recovered-weights\.safetensors \(geneprune export --structured /);
    const config = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'));
    assert.equal(config.settings.recover, true);
  });
});
