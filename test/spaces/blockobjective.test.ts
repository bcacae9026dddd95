/**
 * The block search space and the block objective (spaces/weights/blockspace.ts, blockobjective.ts) and the one
 * masked-quality function (quality.ts), on a small random llama: a genome's text and key round-trip; the one
 * masked perplexity equals metrics/perplexity.ts `evaluatePerplexity` on the same masks; block l's objective
 * scores a population with one evaluateMany exactly as genome by genome, each equal to the whole model's
 * perplexity with the earlier blocks' masks and the candidate's (the suffix graph is exact), repeats scored
 * again (no cache) and every pass counted; its objective record is plain JSON naming the block and, through
 * the data hash, the fixed earlier blocks' masks.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { createRunner, type TokenBatch } from '../../src/engine/runner.js';
import { prunableMatrices } from '../../src/masks/weights.js';
import { batches, evaluatePerplexity, makeWindows } from '../../src/metrics/perplexity.js';
import { randomLlamaSpec } from '../../src/model/random.js';
import { randomGenome } from '../../src/search/operators.js';
import { objectiveRecord } from '../../src/search/record.js';
import { createBlockObjective } from '../../src/spaces/weights/blockobjective.js';
import { advanceHidden } from '../../src/spaces/weights/blockpasses.js';
import { blockFeeds, blockLayout, createBlockSpace } from '../../src/spaces/weights/blockspace.js';
import { maskedPerplexity } from '../../src/spaces/weights/quality.js';
import { createRng } from '../../src/util/rng.js';

const CONTEXT = 16;
const spec = randomLlamaSpec({
  hiddenSize: 16,
  numLayers: 3,
  numHeads: 2,
  numKvHeads: 1,
  intermediateSize: 24,
  vocabSize: 32,
  maxPositions: CONTEXT,
  seed: 5,
  scale: 4,
});
const matrices = prunableMatrices(spec);
const stream = Array.from({ length: 200 }, (_, i) => (i * 7 + (i >> 3)) % 32);
const windows = makeWindows(stream, CONTEXT, 96, 'test tokens');
const list: TokenBatch[] = [...batches(windows, 2)];

describe('block search space', () => {
  const layout = blockLayout(matrices, 1);
  const space = createBlockSpace(layout);
  test('genes are block 1’s prunable weights in mask-file order; text and key round-trip', () => {
    assert.deepEqual(
      layout.matrices.map((m) => m.role),
      matrices.filter((m) => m.layer === 1).map((m) => m.role),
    );
    assert.equal(
      space.genes,
      layout.matrices.reduce((a, m) => a + m.rows * m.cols, 0),
    );
    const rng = createRng(1);
    const g = randomGenome(space.genes, 100, rng);
    const h = randomGenome(space.genes, 100, rng);
    assert.deepEqual(space.decode(space.encode(g)), g);
    assert.equal(space.key(g), space.key(g.slice()));
    assert.notEqual(space.key(g), space.key(h));
    assert.equal(space.decode(space.encode(g).slice(4)), undefined);
    assert.equal(space.sparsity(g), 100 / space.genes);
    assert.equal(space.keptParameters(g), space.genes - 100);
    assert.ok(space.isFull(space.full()) && !space.isFull(g));
    const feeds = space.masks(g).weightMasks!;
    assert.deepEqual([...feeds.keys()], space.weightRoles);
    const q = layout.matrices[0];
    assert.deepEqual(feeds.get(q.role), g.subarray(0, q.rows * q.cols));
  });
});

describe('the one masked perplexity and the block objective', () => {
  const rng = createRng(9);
  const masks = new Map(
    matrices.map((m) => [m.role, randomGenome(m.rows * m.cols, Math.round(0.4 * m.rows * m.cols), rng)]),
  );

  test('maskedPerplexity equals evaluatePerplexity under the same masks, one pass per batch', async () => {
    const runner = await createRunner(spec, { output: 'nll', weightMasks: matrices.map((m) => m.role) });
    try {
      const mine = await maskedPerplexity(runner, list, masks);
      const ref = await evaluatePerplexity(runner, windows, { batchSize: 2, masks: { weightMasks: masks } });
      assert.equal(mine.perplexity, ref.perplexity);
      assert.equal(mine.tokens, ref.tokens);
      assert.equal(mine.passes, list.length);
    } finally {
      await runner.release();
    }
  });

  test('block 2’s objective: evaluateMany equals one by one and the whole model’s perplexity; no cache', async () => {
    const layout = blockLayout(matrices, 2);
    const of = (l: number) =>
      new Map(matrices.filter((m) => m.layer === l).map((m) => [m.role, masks.get(m.role)!]));
    let hidden: Float32Array[] | undefined;
    for (let l = 0; l < 2; l++) hidden = await advanceHidden(spec, l, list, hidden, of(l));
    const objective = await createBlockObjective({
      spec,
      block: layout,
      batches: list,
      hidden,
      metric: 'ppl',
      engine: {},
      fixed: new Map([...of(0), ...of(1)]),
    });
    const light = randomGenome(layout.genes, Math.round(0.1 * layout.genes), createRng(20));
    const heavy = randomGenome(layout.genes, Math.round(0.5 * layout.genes), createRng(21));
    const population = [light, heavy, light.slice()];
    const seen: number[] = [];
    try {
      const many = await objective.evaluateMany(population, 'full', (i) => seen.push(i));
      assert.deepEqual(seen, [0, 1, 2]);
      assert.deepEqual(
        many.map((r) => r.cached),
        [false, false, false],
      );
      assert.equal(many[0].evaluation.quality, many[2].evaluation.quality);
      assert.deepEqual(
        many.map((r) => r.forwardPasses),
        [list.length, list.length, list.length],
      );
      assert.equal(objective.evaluations(), 3);
      assert.equal(objective.forwardPasses(), 3 * list.length);
      for (const [i, g] of population.entries()) {
        assert.equal((await objective.evaluate(g)).quality, many[i].evaluation.quality);
      }
      assert.equal(objective.evaluations(), 6);

      // Independent: the whole model, earlier blocks at their masks, block 2 at the candidate's.
      const full = await createRunner(spec, { output: 'nll', weightMasks: matrices.map((m) => m.role) });
      try {
        for (const [i, g] of population.entries()) {
          const upTo = new Map([...of(0), ...of(1), ...blockFeeds(layout, g)]);
          const ref = await evaluatePerplexity(full, windows, { batchSize: 2, masks: { weightMasks: upTo } });
          const q = many[i].evaluation.quality;
          assert.ok(Math.abs(q - ref.perplexity) / ref.perplexity < 1e-5, `${q} vs ${ref.perplexity}`);
        }
      } finally {
        await full.release();
      }
      assert.notEqual(many[0].evaluation.quality, many[1].evaluation.quality, 'the masks matter');

      // Its record: plain JSON naming the block, the space and what it scores, fixed masks included.
      const record = await objectiveRecord(objective, { block: 2 });
      assert.deepEqual(JSON.parse(JSON.stringify(record)), record);
      assert.equal(record.block, 2);
      assert.equal(record.metric, 'ppl');
      assert.deepEqual(record.space.weightRoles, [...objective.space.weightRoles]);
      assert.equal(record.space.genes, layout.genes);
      assert.equal(record.settings.tokens, many[0].evaluation.tokens);
      const other = await createBlockObjective({
        spec,
        block: layout,
        batches: list,
        hidden,
        metric: 'ppl',
        engine: {},
        fixed: new Map([...of(0), ...of(1)].map(([role, keep]) => [role, keep.map((x) => 1 - x)])),
      });
      const otherRecord = await objectiveRecord(other, { block: 2 });
      await other.release();
      assert.notEqual(otherRecord.data.full, record.data.full, 'other fixed masks, other data');
      assert.deepEqual(otherRecord.model, record.model);
    } finally {
      await objective.release();
    }
  });
});
