/**
 * Recovery after a structured removal (prune/recover-structured.ts). Each refitted o / down equals a plain
 * reference solve written here from the definition — the damped normal equations (H'_KK + δI) ŵ_K = H'_K· w' +
 * δ w'_K per row, H' the Gram matrix of the projection's inputs with a column of ones appended where it has a
 * bias, δ = 0.01 · mean diag H', solved by Gaussian elimination in float64 — on statistics captured here by a
 * whole-model capture graph on the recovered model (so the inputs are the sequential ones: layers before already
 * pruned and recovered, the layer's own units still present). The block-output error it minimises, (w' − ŵ')ᵀ
 * H' (w' − ŵ'), is not larger after the refit than with the removed units merely zeroed, on a tiny LLaMA, a tiny
 * GPT-2 (biases: the intercept column) and stories260K; the plan's removed columns stay zero; a plan that
 * removes nothing, or only whole blocks, leaves nothing to refit.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { archOf } from '../../src/arch/registry.js';
import { type CandidateMasks, createRunner, type TokenBatch } from '../../src/engine/runner.js';
import { fullPlan, type StructuredPlan, structuredMasksOf } from '../../src/masks/structured.js';
import { readDataset } from '../../src/metrics/data.js';
import { tokenizeDocuments } from '../../src/metrics/perplexity.js';
import { loadModelSpec } from '../../src/model/load.js';
import { openModel } from '../../src/model/open.js';
import { intermediateOf, type ModelSpec } from '../../src/model/spec.js';
import { planNeedsRecovery, recoverStructuredRemoval } from '../../src/prune/recover-structured.js';
import { recoveryBatches } from '../../src/runs/data.js';
import { tempDir } from '../checkpoint/helpers.js';
import { writeGpt2 } from '../helpers/gpt2.js';
import { randomTokens } from '../helpers/logits.js';
import { tinySpec } from '../helpers/tinylm.js';
import { CALIB, MODEL, sharedPath, skipUnlessShared } from '../shared.js';

const tmp = tempDir('geneprune-recover-structured-');
after(tmp.cleanup);

/** Rows of random tokens with next-token targets, every position real. */
function randomBatches(vocab: number, rows: number, seq: number, seed: number): TokenBatch[] {
  const out: TokenBatch[] = [];
  for (let b = 0; b < 2; b++) {
    const toks = randomTokens(rows * (seq + 1), vocab, seed + b);
    const ids = new BigInt64Array(rows * seq);
    const targets = new BigInt64Array(rows * seq);
    for (let r = 0; r < rows; r++)
      for (let t = 0; t < seq; t++) {
        ids[r * seq + t] = BigInt(toks[r * (seq + 1) + t]);
        targets[r * seq + t] = BigInt(toks[r * (seq + 1) + t + 1]);
      }
    out.push({ batch: rows, seq, ids, targets, valid: new Uint8Array(rows * seq).fill(1) });
  }
  return out;
}

/** x (n×n, row-major) solved against b by Gaussian elimination with partial pivoting, in float64. */
function solve(a: Float64Array, b: Float64Array, n: number): Float64Array {
  const m = Float64Array.from(a);
  const x = Float64Array.from(b);
  for (let k = 0; k < n; k++) {
    let p = k;
    for (let i = k + 1; i < n; i++) if (Math.abs(m[i * n + k]) > Math.abs(m[p * n + k])) p = i;
    if (p !== k) {
      for (let j = 0; j < n; j++) [m[k * n + j], m[p * n + j]] = [m[p * n + j], m[k * n + j]];
      [x[k], x[p]] = [x[p], x[k]];
    }
    for (let i = k + 1; i < n; i++) {
      const f = m[i * n + k] / m[k * n + k];
      if (f === 0) continue;
      for (let j = k; j < n; j++) m[i * n + j] -= f * m[k * n + j];
      x[i] -= f * x[k];
    }
  }
  for (let i = n - 1; i >= 0; i--) {
    let s = x[i];
    for (let j = i + 1; j < n; j++) s -= m[i * n + j] * x[j];
    x[i] = s / m[i * n + i];
  }
  return x;
}

/** H' of a projection's inputs (Gram, then the column sums and the token count where it has a bias). */
async function capturedGram(
  spec: ModelSpec,
  plan: StructuredPlan,
  layer: number,
  point: 'o_in' | 'down_in',
  batches: readonly TokenBatch[],
  bias: boolean,
): Promise<{ h: Float64Array; n: number }> {
  const c = spec.config;
  const m = structuredMasksOf(c, plan);
  // The layer's own units present: its heads for o's inputs, its channels for down's.
  const masks: CandidateMasks = {
    ...m,
    headMask: Float32Array.from(m.headMask),
    channelMask: Float32Array.from(m.channelMask),
  };
  const L = c.numLayers;
  if (point === 'o_in') {
    const w = m.headMask.length / L;
    masks.headMask!.fill(1, layer * w, (layer + 1) * w);
  } else {
    const w = m.channelMask.length / L;
    masks.channelMask!.fill(1, layer * w, (layer + 1) * w);
  }
  const runner = await createRunner(spec, {
    output: 'nll',
    structuredMasks: true,
    capture: { layers: [layer], kind: 'gram', points: [point], sums: true },
  });
  const cols = point === 'o_in' ? c.headsPerLayer[layer] * c.headDim : intermediateOf(c, layer);
  const gram = new Float64Array(cols * cols);
  const sums = new Float64Array(cols);
  let tokens = 0;
  try {
    for (const b of batches) {
      const out = await runner.runAll(b, masks);
      const g = out[`stats.${layer}.${point}`].data;
      const s = out[`stats.${layer}.${point}.sum`].data;
      for (let i = 0; i < gram.length; i++) gram[i] += g[i];
      for (let i = 0; i < cols; i++) sums[i] += s[i];
      tokens += b.batch * b.seq;
    }
  } finally {
    await runner.release();
  }
  if (!bias) return { h: gram, n: cols };
  const n = cols + 1;
  const h = new Float64Array(n * n);
  for (let i = 0; i < cols; i++) {
    for (let j = 0; j < cols; j++) h[i * n + j] = gram[i * cols + j];
    h[i * n + cols] = sums[i];
    h[cols * n + i] = sums[i];
  }
  h[cols * n + cols] = tokens;
  return { h, n };
}

/** [W | b] of a projection as rows of n = cols (+ 1) entries. */
async function augmented(spec: ModelSpec, role: string, bias: string | undefined): Promise<Float64Array> {
  const w = await spec.tensors.get(role)!.load();
  const [rows, cols] = spec.tensors.get(role)!.shape;
  const b = bias ? await spec.tensors.get(bias)!.load() : undefined;
  const n = b ? cols + 1 : cols;
  const out = new Float64Array(rows * n);
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < cols; j++) out[r * n + j] = w[r * cols + j];
    if (b) out[r * n + cols] = b[r];
  }
  return out;
}

/** Σ_rows dᵀ H d, d = a − b. */
function quadError(a: Float64Array, b: Float64Array, h: Float64Array, n: number): number {
  let total = 0;
  for (let r = 0; r < a.length / n; r++) {
    const d = Array.from({ length: n }, (_, j) => a[r * n + j] - b[r * n + j]);
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) total += d[i] * h[i * n + j] * d[j];
  }
  return total;
}

/**
 * Checks every refitted projection of `plan` against the reference solve and the error bound; returns the
 * worst relative difference.
 */
async function checkAgainstReference(
  spec: ModelSpec,
  plan: StructuredPlan,
  batches: readonly TokenBatch[],
  opts: { compareToReference: boolean },
): Promise<{ worst: number; refitted: number }> {
  const rec = await recoverStructuredRemoval(spec, plan, { batches });
  const c = spec.config;
  const arch = archOf(c);
  let worst = 0;
  for (const lin of rec.linears) {
    const point = lin.projection === 'o' ? 'o_in' : 'down_in';
    const role = arch.rolesOfCapturePoint(lin.layer, point)[0];
    assert.equal(lin.role, role);
    const { h, n } = await capturedGram(rec.spec, plan, lin.layer, point, batches, lin.bias !== undefined);
    const dense = await augmented(spec, role, lin.bias);
    const got = await augmented(rec.spec, role, lin.bias);
    const rows = dense.length / n;
    const unit = lin.projection === 'o' ? c.headDim : 1;
    const kept = lin.projection === 'o' ? plan.heads[lin.layer] : plan.channels[lin.layer];
    const keepCol = (j: number) => j >= n - (lin.bias ? 1 : 0) || kept.includes(Math.floor(j / unit));
    const K = Array.from({ length: n }, (_, j) => j).filter(keepCol);
    // Removed columns are zero.
    for (let r = 0; r < rows; r++)
      for (let j = 0; j < n; j++) if (!keepCol(j)) assert.equal(got[r * n + j], 0, `${role}[${r}, ${j}]`);
    let diag = 0;
    for (let j = 0; j < n; j++) diag += h[j * n + j];
    const delta = 0.01 * (diag / n);
    const masked = dense.map((v, i) => (keepCol(i % n) ? v : 0));
    const errMasked = quadError(dense, masked, h, n);
    const errGot = quadError(dense, got, h, n);
    assert.ok(
      errGot <= errMasked * (1 + 1e-6),
      `${role}: block-output error ${errGot} > masked ${errMasked}`,
    );
    if (!opts.compareToReference) continue;
    const k = K.length;
    const a = new Float64Array(k * k);
    for (let i = 0; i < k; i++) {
      for (let j = 0; j < k; j++) a[i * k + j] = h[K[i] * n + K[j]];
      a[i * k + i] += delta;
    }
    let num = 0;
    let den = 0;
    for (let r = 0; r < rows; r++) {
      const rhs = new Float64Array(k);
      for (let i = 0; i < k; i++) {
        let s = delta * dense[r * n + K[i]];
        for (let j = 0; j < n; j++) s += h[K[i] * n + j] * dense[r * n + j];
        rhs[i] = s;
      }
      const ref = solve(a, rhs, k);
      for (let i = 0; i < k; i++) {
        num += (got[r * n + K[i]] - ref[i]) ** 2;
        den += ref[i] ** 2;
      }
    }
    worst = Math.max(worst, Math.sqrt(num / den));
  }
  return { worst, refitted: rec.linears.length };
}

describe('structured recovery', () => {
  test('tiny LLaMA: each refit equals the reference normal-equation solve; the block error does not grow', async () => {
    const spec = tinySpec(5, { scale: 1 });
    const c = spec.config;
    const plan: StructuredPlan = {
      heads: [[0, 2, 3], [1]],
      channels: [Array.from({ length: 48 }, (_, j) => j).filter((j) => j % 3 !== 1), [0, 5, 7, 30, 47]],
      skipAttention: [false, false],
      skipMlp: [false, false],
    };
    const batches = randomBatches(c.vocabSize, 2, 16, 11);
    const { worst, refitted } = await checkAgainstReference(spec, plan, batches, {
      compareToReference: true,
    });
    assert.equal(refitted, 4);
    assert.ok(worst <= 1e-5, `relative difference to the reference solve: ${worst}`);
  });

  test('tiny GPT-2: o and down are refitted with their biases (intercept column), skipped blocks are not', async () => {
    const dir = join(tmp.dir, 'gpt2');
    await writeGpt2(dir, { embd: 12, heads: 3, layers: 3, inner: 20, vocab: 64, positions: 32 }, 4);
    const spec = await loadModelSpec(dir);
    const plan: StructuredPlan = {
      heads: [[0, 2], [1], [0, 1]],
      channels: [[0, 1, 5, 6, 19], Array.from({ length: 20 }, (_, j) => j), [2, 3, 4, 9, 10, 11, 12]],
      skipAttention: [false, true, false],
      skipMlp: [false, false, true],
    };
    const batches = randomBatches(64, 2, 12, 3);
    const { worst, refitted } = await checkAgainstReference(spec, plan, batches, {
      compareToReference: true,
    });
    // o of layers 0 and 2, down of layer 0: layer 1's attention and layer 2's MLP are skipped, layer 1's MLP whole.
    assert.equal(refitted, 3);
    assert.ok(worst <= 1e-5, `relative difference to the reference solve: ${worst}`);
    const rec = await recoverStructuredRemoval(spec, plan, { batches });
    assert.deepEqual(
      rec.roles,
      [
        'layers.0.attn.o.weight',
        'layers.0.attn.o.bias',
        'layers.0.mlp.down.weight',
        'layers.0.mlp.down.bias',
        'layers.2.attn.o.weight',
        'layers.2.attn.o.bias',
      ].filter((r) => spec.tensors.has(r)),
    );
    assert.ok(rec.linears.every((l) => l.bias !== undefined));
  });

  test('tiny GPT-2: a kept block with every unit removed refits its bias alone', async () => {
    const dir = join(tmp.dir, 'gpt2');
    const spec = await loadModelSpec(dir);
    const plan: StructuredPlan = {
      heads: [[], [0, 1, 2], [2]],
      channels: [Array.from({ length: 20 }, (_, j) => j), [], [0, 19]],
      skipAttention: [false, false, false],
      skipMlp: [false, false, false],
    };
    const batches = randomBatches(64, 2, 12, 8);
    const { worst, refitted } = await checkAgainstReference(spec, plan, batches, {
      compareToReference: true,
    });
    assert.equal(refitted, 4);
    assert.ok(worst <= 1e-5, `relative difference to the reference solve: ${worst}`);
  });

  test('a plan that removes nothing, or only whole blocks, leaves nothing to refit', async () => {
    const spec = tinySpec(5, { scale: 1 });
    const full = fullPlan(spec.config);
    assert.equal(planNeedsRecovery(spec, full), false);
    const blocks = { ...full, skipAttention: [true, false], skipMlp: [false, true] };
    assert.equal(planNeedsRecovery(spec, blocks), false);
    const rec = await recoverStructuredRemoval(spec, blocks, {
      batches: randomBatches(spec.config.vocabSize, 1, 8, 1),
    });
    assert.deepEqual(rec.roles, []);
    const thin = { ...full, heads: [[0], [0, 1, 2, 3]] };
    assert.equal(planNeedsRecovery(spec, thin), true);
    // Layer 0 keeping no head and o without a bias: nothing a refit could change.
    assert.equal(planNeedsRecovery(spec, { ...full, heads: [[], [0, 1, 2, 3]] }), false);
  });
});

describe('structured recovery on stories260K', { skip: skipUnlessShared(MODEL, CALIB) }, () => {
  test('the block-output error of every refitted o and down does not grow', async () => {
    const model = await openModel(sharedPath(MODEL)!);
    const c = model.spec.config;
    const plan = fullPlan(c);
    for (let l = 0; l < c.numLayers; l++) {
      plan.heads[l] = plan.heads[l].filter((h) => (h + l) % 3 !== 0);
      plan.channels[l] = plan.channels[l].filter((j) => j % 4 !== l % 4);
    }
    plan.skipMlp[3] = true;
    const stream = tokenizeDocuments((await readDataset(sharedPath(CALIB)!)).documents, model.tokenizer);
    const batches = recoveryBatches(stream, {
      context: 128,
      tokens: 1024,
      label: 'calib',
      vocabSize: c.vocabSize,
    });
    const { refitted } = await checkAgainstReference(model.spec, plan, batches, {
      compareToReference: false,
    });
    assert.equal(refitted, 2 * c.numLayers - 1);
  });
});
