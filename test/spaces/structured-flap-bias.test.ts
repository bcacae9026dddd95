/**
 * FLAP's bias compensation (`structured --method flap --flap-bias`): on a tiny GPT-2 each o / down bias becomes
 * b + W_R · mean(X_R), computed here by hand from column sums captured by a whole-model capture graph (inputs as
 * the sequential walk sees them), the kept weights unchanged and the removed ones zero, and the block-output error
 * does not grow; a run on that GPT-2 writes the compensated biases and reports before/after; the flag is refused
 * for a model whose o and down have no bias (stories260K: LLaMA), with another method, and with --recover.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { archOf } from '../../src/arch/registry.js';
import { type CandidateMasks, createRunner, type TokenBatch } from '../../src/engine/runner.js';
import { GenepruneError } from '../../src/errors.js';
import { readRecoveredWeights } from '../../src/masks/recovered.js';
import { type StructuredPlan, structuredMasksOf } from '../../src/masks/structured.js';
import { loadModelSpec } from '../../src/model/load.js';
import { intermediateOf, type ModelSpec } from '../../src/model/spec.js';
import { hasProjectionBiases, recoverStructuredRemoval } from '../../src/prune/recover-structured.js';
import { runStructuredSearch } from '../../src/spaces/structured/run.js';
import { structuredSearchSettings } from '../../src/spaces/structured/settings.js';
import { byteLevelTokenizerJson, writeGpt2 } from '../helpers/gpt2.js';
import { randomTokens } from '../helpers/logits.js';
import { tinySpec } from '../helpers/tinylm.js';
import { CALIB, EVAL, MODEL, sharedPath, skipUnlessShared } from '../shared.js';

const tmp = { dir: mkdtempSync(join(tmpdir(), 'geneprune-flap-bias-')) };
after(() => rmSync(tmp.dir, { recursive: true, force: true }));

const int64 = (xs: number[]) => BigInt64Array.from(xs.map(BigInt));

function batchesOf(vocab: number, seq: number, seed: number): TokenBatch[] {
  const toks = randomTokens(2 * (seq + 1), vocab, seed);
  const ids: number[] = [];
  const targets: number[] = [];
  for (let r = 0; r < 2; r++)
    for (let t = 0; t < seq; t++) {
      ids.push(toks[r * (seq + 1) + t]);
      targets.push(toks[r * (seq + 1) + t + 1]);
    }
  return [
    { batch: 2, seq, ids: int64(ids), targets: int64(targets), valid: new Uint8Array(2 * seq).fill(1) },
  ];
}

/** Column sums and token count of a projection's input, the layer's own units present (the plan elsewhere). */
async function columnMeans(
  spec: ModelSpec,
  plan: StructuredPlan,
  layer: number,
  point: 'o_in' | 'down_in',
  batches: readonly TokenBatch[],
): Promise<Float64Array> {
  const c = spec.config;
  const m = structuredMasksOf(c, plan);
  const masks: CandidateMasks = {
    ...m,
    headMask: Float32Array.from(m.headMask),
    channelMask: Float32Array.from(m.channelMask),
  };
  const L = c.numLayers;
  if (point === 'o_in')
    masks.headMask!.fill(1, layer * (m.headMask.length / L), (layer + 1) * (m.headMask.length / L));
  else
    masks.channelMask!.fill(1, layer * (m.channelMask.length / L), (layer + 1) * (m.channelMask.length / L));
  const runner = await createRunner(spec, {
    output: 'nll',
    structuredMasks: true,
    capture: { layers: [layer], kind: 'sqnorm', points: [point], sums: true },
  });
  const cols = point === 'o_in' ? c.headsPerLayer[layer] * c.headDim : intermediateOf(c, layer);
  const sums = new Float64Array(cols);
  let n = 0;
  try {
    for (const b of batches) {
      const s = (await runner.runAll(b, masks))[`stats.${layer}.${point}.sum`].data;
      for (let j = 0; j < cols; j++) sums[j] += s[j];
      n += b.batch * b.seq;
    }
  } finally {
    await runner.release();
  }
  return sums.map((v) => v / n);
}

describe("FLAP's bias compensation", () => {
  test('gpt2: b + W_R·mean(X_R) per refitted projection, kept weights unchanged, removed zero', async () => {
    const dir = join(tmp.dir, 'gpt2');
    await writeGpt2(dir, { embd: 12, heads: 3, layers: 2, inner: 20, vocab: 257, positions: 64 }, 6);
    writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(byteLevelTokenizerJson()));
    const spec = await loadModelSpec(dir);
    assert.equal(hasProjectionBiases(spec), true);
    const plan: StructuredPlan = {
      heads: [[1], [0, 2]],
      channels: [
        [0, 2, 4, 6, 8, 10, 12],
        [1, 3, 5, 7, 9, 19],
      ],
      skipAttention: [false, false],
      skipMlp: [false, false],
    };
    const batches = batchesOf(257, 24, 3);
    const rec = await recoverStructuredRemoval(spec, plan, { batches, refit: 'flap-bias' });
    assert.equal(rec.linears.length, 4);
    const arch = archOf(spec.config);
    for (const lin of rec.linears) {
      const point = lin.projection === 'o' ? 'o_in' : 'down_in';
      const role = arch.rolesOfCapturePoint(lin.layer, point)[0];
      const [rows, cols] = spec.tensors.get(role)!.shape;
      const unit = lin.projection === 'o' ? spec.config.headDim : 1;
      const kept = lin.projection === 'o' ? plan.heads[lin.layer] : plan.channels[lin.layer];
      const keep = (j: number) => kept.includes(Math.floor(j / unit));
      const w = await spec.tensors.get(role)!.load();
      const b = await spec.tensors.get(lin.bias!)!.load();
      const gotW = await rec.spec.tensors.get(role)!.load();
      const gotB = await rec.spec.tensors.get(lin.bias!)!.load();
      const mean = await columnMeans(rec.spec, plan, lin.layer, point, batches);
      for (let r = 0; r < rows; r++) {
        let want = b[r];
        for (let j = 0; j < cols; j++) {
          assert.equal(gotW[r * cols + j], keep(j) ? w[r * cols + j] : 0, `${role}[${r}, ${j}]`);
          if (!keep(j)) want += w[r * cols + j] * mean[j];
        }
        assert.ok(
          Math.abs(gotB[r] - want) <= 1e-5 * Math.max(1, Math.abs(want)),
          `${lin.bias}[${r}]: ${gotB[r]} vs ${want}`,
        );
      }
      assert.ok(lin.recoveredError <= lin.maskedError, `${role}: ${lin.recoveredError} > ${lin.maskedError}`);
      assert.ok(lin.recoveredError < lin.maskedError);
    }
  });

  test('a LLaMA has no o / down bias to compensate', () => {
    const spec = tinySpec(1, { scale: 1 });
    assert.equal(hasProjectionBiases(spec), false);
  });

  test('--flap-bias is refused with another method and with --recover', () => {
    const base = { calib: 'c', eval: 'e', budget: 'params:0.5' };
    const refused = (f: () => unknown, pattern: RegExp) =>
      assert.throws(
        f,
        (e: unknown) => e instanceof GenepruneError && e.where === '--flap-bias' && pattern.test(e.message),
      );
    refused(() => structuredSearchSettings({ ...base, flapBias: true }), /only with --method flap, not ga/);
    refused(
      () => structuredSearchSettings({ ...base, method: 'flap', flapBias: true, recover: true }),
      /not with --recover/,
    );
  });
});

describe('structured --method flap --flap-bias runs', { skip: skipUnlessShared(MODEL, CALIB, EVAL) }, () => {
  const settings = (model: string, extra: Record<string, unknown> = {}) =>
    structuredSearchSettings({
      model,
      calib: sharedPath(CALIB)!,
      eval: sharedPath(EVAL)!,
      budget: 'params:0.8',
      method: 'flap',
      flapBias: true,
      widthStep: 4,
      calibTokens: 256,
      scoreTokens: 256,
      evalTokens: 256,
      context: 32,
      ...extra,
    });

  test('gpt2: the compensated biases are the run’s recovered weights, scored before and after', async () => {
    const model = join(tmp.dir, 'gpt2');
    const r = await runStructuredSearch(join(tmp.dir, 'run'), settings(model));
    const rec = r.recovery!;
    assert.ok('before' in rec, JSON.stringify(rec));
    assert.equal(rec.refit, 'flap-bias');
    assert.ok(rec.linears.length > 0 && rec.linears.every((l) => l.bias !== undefined));
    assert.ok(rec.blockError.recovered <= rec.blockError.masked);
    const spec = await loadModelSpec(model);
    const read = await readRecoveredWeights(rec.weights, spec, { structured: { plan: r.plan } });
    assert.equal(read.kind, 'structured');
  });

  test('stories260K (LLaMA): refused before the run directory exists', async () => {
    const out = join(tmp.dir, 'llama');
    await assert.rejects(
      runStructuredSearch(out, settings(sharedPath(MODEL)!)),
      (e: unknown) => e instanceof GenepruneError && e.where === '--flap-bias' && /no bias/.test(e.message),
    );
    assert.equal(existsSync(out), false);
  });
});
