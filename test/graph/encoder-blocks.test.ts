/**
 * Encoder block graphs (layers [from, to)) and their activation statistics, on random BERT (with token types) and
 * DistilBERT sequence classifiers loaded from disk:
 * - blocks [0,1) → [1,2) → [2,3), each fed the previous block's hidden output, give the full graph's logits and
 *   last_hidden_state to 1e-5, under head and weight masks, on a right-padded batch;
 * - a block holds only its own weights (embeddings only in the first, the classifier only in the last) and takes
 *   attention_mask in every block;
 * - Σ_t X_tj² of every linear input captured by blocks equals the whole graph's capture, and both equal the
 *   plain-TypeScript reference (test/reference/bert.ts) over real tokens only.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import onnxProto from 'onnx-proto';
import { runBlock } from '../../src/engine/blocks.js';
import { createRunner } from '../../src/engine/runner.js';
import { CAPTURE_POINTS, statsName } from '../../src/graph/capture.js';
import { buildEncoderGraph } from '../../src/graph/encoder.js';
import { loadWeights } from '../../src/graph/weights.js';
import { loadModelSpec } from '../../src/model/load.js';
import type { ModelSpec } from '../../src/model/spec.js';
import { createRng } from '../../src/util/rng.js';
import { tempDir } from '../checkpoint/helpers.js';
import { composedBlocks, linearRoles, paddedEncoderBatch, randomWeightMasks } from '../helpers/blocks.js';
import { type RandomEncoder, writeRandomEncoder } from '../helpers/encoders.js';
import { maxAbsDiff } from '../helpers/logits.js';
import { referenceEncoderForward } from '../reference/bert.js';

const { onnx } = onnxProto;
const tmp = tempDir('geneprune-encoder-blocks-');
after(tmp.cleanup);

const CASES = [
  { name: 'bert-cls', opts: { modelType: 'bert' as const, labels: 3, typeVocab: 3, layers: 3 } },
  { name: 'distilbert-cls', opts: { modelType: 'distilbert' as const, labels: 2, layers: 3 } },
];

/** About a third of the heads (one at least, never all, per layer) and a quarter of every linear's weights dropped. */
function someMasks(spec: ModelSpec, seed: number) {
  const rng = createRng(seed);
  const c = spec.config;
  const H = Math.max(...c.headsPerLayer);
  const headRows = Array.from({ length: c.numLayers }, (_, l) =>
    Array.from({ length: H }, (_, h) =>
      h === l % H ? 0 : h === (l + 1) % H ? 1 : rng.nextFloat() < 0.3 ? 0 : 1,
    ),
  );
  const weightMasks = randomWeightMasks(spec, rng, 0.25);
  return { headRows, headMask: Float32Array.from(headRows.flat()), weightMasks };
}

/** Rows of 9, 4 and 7 real tokens (never the pad id), right-padded, with token types where the model has them. */
function paddedBatch(spec: ModelSpec, seed: number) {
  const rng = createRng(seed);
  const c = spec.config;
  const pad = c.padTokenId ?? 0;
  const lengths = [9, 4, 7];
  const seq = 9;
  const rows = lengths.map((n) => {
    const ids = Array.from({ length: n }, () => {
      let id = pad;
      while (id === pad) id = rng.nextInt(c.vocabSize);
      return id;
    });
    const types = ids.map(() => ((c.typeVocabSize ?? 0) > 0 ? rng.nextInt(c.typeVocabSize!) : 0));
    return { ids, types };
  });
  return { batch: paddedEncoderBatch(rows, seq, pad), rows };
}

describe('encoder block graphs', () => {
  const models = new Map<string, { ckpt: RandomEncoder; spec: ModelSpec }>();
  before(async () => {
    for (const [i, c] of CASES.entries()) {
      const ckpt = await writeRandomEncoder(tmp.dir, c.name, { ...c.opts, seed: 40 + i });
      models.set(c.name, { ckpt, spec: await loadModelSpec(ckpt.dir) });
    }
  });

  for (const [i, c] of CASES.entries()) {
    test(`${c.name}: blocks compose to the full graph under head and weight masks`, async () => {
      const { spec } = models.get(c.name)!;
      const masks = someMasks(spec, 50 + i);
      const { batch } = paddedBatch(spec, 60 + i);
      const base = { weightMasks: linearRoles(spec) };
      for (const output of ['class_logits', 'hidden'] as const) {
        const full = await createRunner(spec, { ...base, output });
        const expected = await full.run(batch, masks);
        const unmasked = await full.run(batch);
        await full.release();
        // The masks matter, so equality below is not the unmasked model's by accident.
        assert.ok(maxAbsDiff(expected, unmasked) > 1e-3, `${output}: masks change the output`);
        for (const cuts of [[1, 2], [2], [1]]) {
          const got = await composedBlocks(spec, cuts, { ...base, output }, batch, masks);
          const diff = maxAbsDiff(got, expected);
          assert.ok(diff <= 1e-5, `${output}, cuts ${cuts}: max abs diff ${diff}`);
        }
      }
    });

    test(`${c.name}: captured input norms of blocks = whole graph = reference over real tokens`, async () => {
      const { ckpt, spec } = models.get(c.name)!;
      const L = spec.config.numLayers;
      const masks = someMasks(spec, 70 + i);
      const { batch, rows } = paddedBatch(spec, 80 + i);
      const base = { weightMasks: linearRoles(spec) };
      const full = await createRunner(spec, {
        ...base,
        output: 'class_logits',
        capture: { layers: [0, 1, 2], kind: 'sqnorm' },
      });
      const whole = await runBlock(full, [batch], { masks });
      await full.release();
      assert.equal(whole.stats.tokens, 9 + 4 + 7);
      // Block by block, each capturing its own layer.
      const blockSums = new Map<string, Float64Array>();
      let hidden: Float32Array[] | undefined;
      for (let l = 0; l < L; l++) {
        const runner = await createRunner(spec, {
          ...base,
          layers: [l, l + 1],
          output: l === L - 1 ? 'class_logits' : 'hidden',
          capture: { layers: [l], kind: 'sqnorm' },
        });
        const pass = await runBlock(runner, [batch], { masks, hidden });
        await runner.release();
        for (const [k, v] of pass.stats.sums) blockSums.set(k, v);
        hidden = pass.hidden;
      }
      // The reference on each row's real tokens alone, weights masked (zeroed) by their Hugging Face names.
      const zeroed = new Map<string, Float32Array>();
      const hfName = (role: string) => {
        const m = /^layers\.(\d+)\.(attn|mlp)\.(\w+)\.weight$/.exec(role)!;
        const distil = spec.config.modelType === 'distilbert';
        const names: Record<string, string> = distil
          ? { q: 'attention.q_lin', k: 'attention.k_lin', v: 'attention.v_lin', o: 'attention.out_lin' }
          : {
              q: 'attention.self.query',
              k: 'attention.self.key',
              v: 'attention.self.value',
              o: 'attention.output.dense',
            };
        const mlp: Record<string, string> = distil
          ? { up: 'ffn.lin1', down: 'ffn.lin2' }
          : { up: 'intermediate.dense', down: 'output.dense' };
        const layer = distil ? `distilbert.transformer.layer.${m[1]}` : `bert.encoder.layer.${m[1]}`;
        return `${layer}.${(m[2] === 'attn' ? names : mlp)[m[3]]}.weight`;
      };
      for (const [role, keep] of masks.weightMasks) {
        const name = hfName(role);
        const w = ckpt.tensors.get(name);
        assert.ok(w, `reference tensor ${name}`);
        zeroed.set(
          name,
          w.map((v, j) => (keep[j] ? v : 0)),
        );
      }
      const expected = new Map<string, Float64Array>();
      for (const r of rows) {
        referenceEncoderForward(
          ckpt.config,
          (n) => zeroed.get(n) ?? ckpt.tensors.get(n),
          { inputIds: r.ids, tokenTypeIds: r.types },
          {
            headMask: masks.headRows,
            onLinearInput: (layer, input, _t, x) => {
              const name = statsName(layer, input);
              const acc = expected.get(name) ?? new Float64Array(x.length);
              for (let j = 0; j < x.length; j++) acc[j] += x[j] * x[j];
              expected.set(name, acc);
            },
          },
        );
      }
      assert.equal(whole.stats.sums.size, L * CAPTURE_POINTS.length);
      assert.equal(blockSums.size, L * CAPTURE_POINTS.length);
      for (const [name, want] of expected) {
        const scale = Math.max(...want.map(Math.abs));
        const errWhole = maxAbsDiff(whole.stats.sums.get(name)!, want) / scale;
        const errBlocks = maxAbsDiff(blockSums.get(name)!, want) / scale;
        assert.ok(errWhole <= 1e-4, `${name} (whole graph): relative error ${errWhole}`);
        assert.ok(errBlocks <= 1e-4, `${name} (blocks): relative error ${errBlocks}`);
      }
      // Padding is excluded: counting every position gives other sums.
      const all = await createRunner(spec, {
        output: 'class_logits',
        capture: { layers: [0], kind: 'sqnorm' },
      });
      const everyPosition = await runBlock(all, [{ ...batch, valid: undefined }]);
      await all.release();
      assert.equal(everyPosition.stats.tokens, 27);
      const name0 = statsName(0, 'attn_in');
      assert.ok(maxAbsDiff(everyPosition.stats.sums.get(name0)!, whole.stats.sums.get(name0)!) > 1e-3);
    });
  }

  test('a block holds only its own weights; attention_mask is an input of every block', async () => {
    const { spec } = models.get('bert-cls')!;
    const weights = await loadWeights(spec);
    const graphOf = (layers: [number, number], output: 'hidden' | 'class_logits') => {
      const proto = onnx.ModelProto.decode(
        buildEncoderGraph(spec, weights, { output, layers, weightMasks: linearRoles(spec) }).model,
      );
      const used = new Set(proto.graph!.node!.flatMap((n) => n.input ?? []));
      const unused = proto.graph!.initializer!.map((t) => t.name!).filter((n) => !used.has(n));
      assert.deepEqual(unused, [], `unused initializers in block [${layers}]`);
      return {
        weights: proto
          .graph!.initializer!.map((t) => t.name!)
          .filter((n) => spec.tensors.has(n))
          .sort(),
        inputs: proto
          .graph!.input!.map((v) => v.name!)
          .filter((n) => !n.startsWith('mask.'))
          .sort(),
        masks: proto
          .graph!.input!.map((v) => v.name!)
          .filter((n) => n.startsWith('mask.'))
          .sort(),
        outputs: proto.graph!.output!.map((v) => v.name!),
      };
    };
    const rolesOf = (prefix: string) => [...spec.tensors.keys()].filter((r) => r.startsWith(prefix)).sort();
    const mid = graphOf([1, 2], 'hidden');
    assert.deepEqual(mid.weights, rolesOf('layers.1.'));
    assert.deepEqual(mid.inputs, ['attention_mask', 'head_mask', 'hidden_in']);
    assert.deepEqual(
      mid.masks,
      linearRoles(spec)
        .filter((r) => r.startsWith('layers.1.'))
        .map((r) => `mask.${r}`)
        .sort(),
    );
    assert.deepEqual(mid.outputs, ['hidden']);
    const first = graphOf([0, 1], 'hidden');
    assert.deepEqual(first.weights, [...rolesOf('embed.'), ...rolesOf('layers.0.')].sort());
    assert.deepEqual(first.inputs, ['attention_mask', 'head_mask', 'input_ids', 'token_type_ids']);
    const last = graphOf([2, 3], 'class_logits');
    assert.deepEqual(last.weights, [...rolesOf('cls.'), ...rolesOf('layers.2.')].sort());
    assert.deepEqual(last.outputs, ['logits']);
    assert.deepEqual(graphOf([2, 3], 'hidden').outputs, ['last_hidden_state']);
    // The runner prepares only the block's weights (blockSpec): the classifier is not in a middle block.
    const runner = await createRunner(spec, { output: 'hidden', layers: [1, 2] });
    await assert.rejects(
      runner.run({ batch: 1, seq: 3, ids: new BigInt64Array(3) }),
      /needs hidden states \[1, 3, 16\], got none/,
    );
    await runner.release();
  });

  test('one-line errors for a range, an output or a captured layer that does not fit', async () => {
    const { spec } = models.get('distilbert-cls')!;
    const w = await loadWeights(spec);
    const build = (o: Parameters<typeof buildEncoderGraph>[2]) => () => buildEncoderGraph(spec, w, o);
    assert.throws(build({ output: 'hidden', layers: [1, 1] }), /layer range \[1, 1\) is not inside/);
    assert.throws(build({ output: 'hidden', layers: [0, 4] }), /not inside the model's 3 layers/);
    assert.throws(build({ output: 'class_logits', layers: [0, 2] }), /outputs 'hidden', not 'class_logits'/);
    assert.throws(
      build({ output: 'hidden', layers: [1, 2], capture: { layers: [0], kind: 'sqnorm' } }),
      /captured layer 0 is outside the graph's layers \[1, 2\)/,
    );
  });
});
