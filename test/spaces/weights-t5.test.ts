/**
 * Weight pruning on encoder-decoders (random T5 v1.0 and v1.1 specs), against plain computations written here and
 * the plain-TypeScript T5 reference (test/reference/t5.ts):
 * - the prunable matrices are every block's self q/k/v/o, the decoder blocks' cross q/k/v/o and the MLP, layer by
 *   layer (no embedding, relative-bias table or norm), and magnitude's masks are each matrix's own smallest |W|;
 * - the layer-wise walk (prune/sequential.ts, what Wanda and --recover run) over source/target pair batches with
 *   padding: every linear's input statistic Σ_t x_t² equals the reference's inputs summed over the real source
 *   positions and every target position, with the blocks before it already pruned — encoder blocks first, then
 *   decoder blocks reading the pruned encoder's output; Wanda's masks are the per-row lowest |W|·‖X_j‖₂ of those;
 * - a block search (the GA) over both stacks runs and fixes every block; with a selection of matrices it walks
 *   only to the last selected block and leaves the others whole;
 * - the perplexity of a model with weight masks equals the reference's target NLL with those weights zeroed.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { createRunner } from '../../src/engine/runner.js';
import { prunableMatrices } from '../../src/masks/weights.js';
import { batches, evaluatePerplexity } from '../../src/metrics/perplexity.js';
import { pairWindows, type Seq2seqPairs } from '../../src/metrics/seq2seq.js';
import { type ModelSpec, memoryTensor } from '../../src/model/spec.js';
import { pruneSequentially } from '../../src/prune/sequential.js';
import { MAGNITUDE, WANDA, type WeightBaselineInput } from '../../src/spaces/weights/baselines.js';
import { GA } from '../../src/spaces/weights/ga.js';
import { createRng } from '../../src/util/rng.js';
import { randomT5, type T5Version } from '../helpers/t5.js';
import { t5Reference } from '../reference/t5.js';

/** Three pairs of different lengths, so batches of two pad both the source and the decoder side. */
function pairsOf(spec: ModelSpec): Seq2seqPairs {
  return {
    source: 'test pairs',
    sources: [
      [5, 9, 13, 2, 7, 1],
      [6, 8, 3, 1],
      [4, 12, 19, 22, 30, 31, 17, 1],
    ],
    targets: [
      [11, 12, 6, 1],
      [3, 3, 9, 20, 25, 1],
      [7, 1],
    ],
    decoderStart: spec.config.encdec!.decoderStartTokenId,
    padId: spec.config.padTokenId ?? 0,
  };
}

/** The spec with some tensors replaced. */
function withTensors(spec: ModelSpec, replaced: ReadonlyMap<string, Float32Array>): ModelSpec {
  const tensors = new Map(spec.tensors);
  for (const [role, data] of replaced) tensors.set(role, memoryTensor(spec.tensors.get(role)!.shape, data));
  return { ...spec, tensors };
}

/** Σ_t x_t² of every linear's input over the pairs, from the reference run on unpadded rows. */
async function referenceSquaredNorms(
  spec: ModelSpec,
  pairs: Seq2seqPairs,
): Promise<Map<string, Float64Array>> {
  const sums = new Map<string, Float64Array>();
  const ref = await t5Reference(spec, {
    onLinear(role, x) {
      let s = sums.get(role);
      if (!s) {
        s = new Float64Array(x.length);
        sums.set(role, s);
      }
      for (let j = 0; j < x.length; j++) s[j] += x[j] * x[j];
    },
  });
  ref.targetNll(
    pairs.sources,
    pairs.sources.map((r) => r.map(() => 1)),
    pairs.targets,
  );
  return sums;
}

/** Per row, the `drop` lowest scores pruned (1 keeps), by a plain sort. */
function lowestPerRow(scores: ArrayLike<number>, rows: number, cols: number, drop: number): Uint8Array {
  const keep = new Uint8Array(rows * cols).fill(1);
  for (let r = 0; r < rows; r++) {
    const idx = Array.from({ length: cols }, (_, j) => j).sort(
      (a, b) => scores[r * cols + a] - scores[r * cols + b],
    );
    for (const j of idx.slice(0, drop)) keep[r * cols + j] = 0;
  }
  return keep;
}

function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, what: string, rel = 1e-4): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < expected.length; i++) {
    const tol = rel * (1 + Math.abs(expected[i]));
    assert.ok(
      Math.abs(actual[i] - expected[i]) <= tol,
      `${what}[${i}]: ${actual[i]} vs the reference's ${expected[i]}`,
    );
  }
}

function inputOf(spec: ModelSpec, sparsity: number, pairs: Seq2seqPairs): WeightBaselineInput {
  return {
    spec,
    matrices: prunableMatrices(spec),
    sparsity,
    rng: createRng(3),
    calibration: { stream: [], context: 1, tokens: 1000, pairs },
  };
}

for (const version of ['v1.0', 'v1.1'] as T5Version[]) {
  describe(`weight pruning on a random T5 ${version}`, () => {
    const spec = randomT5(version, version === 'v1.0' ? 41 : 42);
    const c = spec.config;
    const E = c.encdec!.encoderLayers;
    const pairs = pairsOf(spec);

    test('the prunable matrices: self, cross (decoder blocks) and MLP of every block, nothing else', () => {
      const mlp = c.mlpKind === 'gated' ? ['mlp.gate', 'mlp.up', 'mlp.down'] : ['mlp.up', 'mlp.down'];
      const expected: string[] = [];
      for (let l = 0; l < c.numLayers; l++) {
        const kinds = [
          'attn.q',
          'attn.k',
          'attn.v',
          'attn.o',
          ...(l >= E ? ['cross.q', 'cross.k', 'cross.v', 'cross.o'] : []),
          ...mlp,
        ];
        for (const k of kinds) expected.push(`layers.${l}.${k}.weight`);
      }
      assert.deepEqual(
        prunableMatrices(spec).map((m) => m.role),
        expected,
      );
      for (const m of prunableMatrices(spec))
        assert.deepEqual(spec.tensors.get(m.role)!.shape, [m.rows, m.cols]);
    });

    test('magnitude: each matrix loses its own round(s·n) smallest |W|', async () => {
      const s = 0.4;
      const input = inputOf(spec, s, pairs);
      const out = await MAGNITUDE.select(input);
      for (const [i, m] of input.matrices.entries()) {
        const w = await spec.tensors.get(m.role)!.load();
        const n = w.length;
        const order = Array.from({ length: n }, (_, j) => j).sort((a, b) => Math.abs(w[a]) - Math.abs(w[b]));
        const expected = new Uint8Array(n).fill(1);
        for (const j of order.slice(0, Math.round(s * n))) expected[j] = 0;
        assert.deepEqual(out.keeps[i], expected, m.role);
      }
    });

    test("the walk's input statistics equal the reference's activations, earlier blocks pruned; Wanda's masks follow from them", async () => {
      const s = 0.5;
      const list = [...batches(pairWindows(pairs), 2)];
      assert.equal(list.length, 2);
      const stats = new Map<string, Float64Array>();
      const masks = new Map<string, Uint8Array>();
      const walk = await pruneSequentially(spec, {
        batches: list,
        select(lin) {
          stats.set(lin.role, Float64Array.from(lin.inputSquaredNorms));
          // Wanda's rule, written here: per row, the lowest |W_ij|·‖X_j‖₂.
          const scores = Array.from(
            lin.weight,
            (w, i) => Math.abs(w) * Math.sqrt(lin.inputSquaredNorms[i % lin.cols]),
          );
          const keep = lowestPerRow(scores, lin.rows, lin.cols, Math.round(s * lin.cols));
          masks.set(lin.role, keep);
          return keep;
        },
      });
      const roles = prunableMatrices(spec).map((m) => m.role);
      assert.deepEqual([...stats.keys()].sort(), [...roles].sort());
      // Per layer: the reference on the weights as the walk left layers < l, layer l dense.
      for (let l = 0; l < c.numLayers; l++) {
        const pruned = new Map<string, Float32Array>();
        for (const role of roles) {
          const m = /^layers\.(\d+)\./.exec(role)!;
          if (Number(m[1]) >= l) continue;
          const w = await spec.tensors.get(role)!.load();
          const keep = masks.get(role)!;
          pruned.set(
            role,
            w.map((v, i) => (keep[i] ? v : 0)),
          );
        }
        const ref = await referenceSquaredNorms(withTensors(spec, pruned), pairs);
        for (const role of roles.filter((r) => r.startsWith(`layers.${l}.`))) {
          assertClose(
            stats.get(role)!,
            ref.get(role)!,
            `${role} Σx² (block ${l}${l >= E ? ', decoder' : ', encoder'})`,
          );
        }
      }
      // The walk's result holds exactly those masked weights.
      for (const role of roles) {
        const w = await spec.tensors.get(role)!.load();
        const got = await walk.spec.tensors.get(role)!.load();
        const keep = masks.get(role)!;
        assert.deepEqual(
          Array.from(got),
          Array.from(w, (v, i) => (keep[i] ? v : 0)),
          role,
        );
      }
      // Wanda itself: the same masks.
      const wanda = await WANDA.select(inputOf(spec, s, pairs));
      for (const [i, role] of roles.entries())
        assert.deepEqual(wanda.keeps[i], masks.get(role), `wanda ${role}`);
    });

    test("a masked model's target perplexity equals the reference's with those weights zeroed", async () => {
      const out = await MAGNITUDE.select(inputOf(spec, 0.5, pairs));
      const matrices = prunableMatrices(spec);
      const weightMasks = new Map(matrices.map((m, i) => [m.role, out.keeps[i]]));
      const runner = await createRunner(spec, { output: 'nll', weightMasks: matrices.map((m) => m.role) });
      let got: number;
      try {
        got = (await evaluatePerplexity(runner, pairWindows(pairs), { masks: { weightMasks }, batchSize: 2 }))
          .perplexity;
      } finally {
        await runner.release();
      }
      const zeroed = new Map<string, Float32Array>();
      for (const m of matrices) {
        const keep = weightMasks.get(m.role)!;
        zeroed.set(
          m.role,
          (await spec.tensors.get(m.role)!.load()).map((v, i) => (keep[i] ? v : 0)),
        );
      }
      const ref = await t5Reference(withTensors(spec, zeroed));
      const nll = ref.targetNll(
        pairs.sources,
        pairs.sources.map((r) => r.map(() => 1)),
        pairs.targets,
      );
      const expected = Math.exp(nll.sum / nll.count);
      const dense = await t5Reference(spec);
      const denseNll = dense.targetNll(
        pairs.sources,
        pairs.sources.map((r) => r.map(() => 1)),
        pairs.targets,
      );
      // The masks matter: the pruned model is not the dense one.
      assert.ok(Math.abs(Math.exp(denseNll.sum / denseNll.count) - expected) > 1e-3);
      assert.ok(Math.abs(got - expected) <= 1e-4 * expected, `engine ${got} vs reference ${expected}`);
    });

    test('the GA walks both stacks (every block fixed); restricted to encoder block 0 it leaves the rest whole', async () => {
      const input = { ...inputOf(spec, 0.3, pairs), search: { population: 4, generations: 1 } };
      const all = await GA.select(input);
      const report = all.report as { layers: { layer: number }[] };
      assert.deepEqual(
        report.layers.map((r) => r.layer),
        Array.from({ length: c.numLayers }, (_, l) => l),
      );
      for (const [i, m] of input.matrices.entries()) {
        const off = all.keeps[i].reduce((a, b) => a + (b ? 0 : 1), 0);
        assert.ok(off > 0, `${m.role}: the GA's 5 % initial pruning leaves no matrix whole`);
      }
      const block0 = input.matrices.filter((m) => m.layer === 0);
      const only = await GA.select({ ...input, matrices: block0 });
      assert.equal(only.keeps.length, block0.length);
      assert.deepEqual(
        (only.report as { layers: { layer: number }[] }).layers.map((r) => r.layer),
        [0],
      );
    });
  });
}
