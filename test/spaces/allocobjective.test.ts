/**
 * Alloc's objective and a generation's staged scoring (spaces/weights/allocobjective.ts), on a small random
 * llama: every child is scored on the first stage's tokens, the best `keeps[stage]` of each stage (ties: the
 * earlier child) go on, the last stage (all tokens) keeps the one winner; each child comes back with its
 * perplexity at the last stage it reached, equal to metrics/perplexity.ts `evaluatePerplexity` on that stage's
 * tokens under the child's masks; one `evaluateMany` per stage, every evaluation and pass counted.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { createRunner, type TokenBatch } from '../../src/engine/runner.js';
import { prunableMatrices } from '../../src/masks/weights.js';
import { batches, evaluatePerplexity, makeWindows } from '../../src/metrics/perplexity.js';
import { randomLlamaSpec } from '../../src/model/random.js';
import {
  allocatedMask,
  allocationBounds,
  allocationQuantum,
  mutateAllocation,
  rowOrder,
  uniformAllocation,
} from '../../src/spaces/weights/allocation.js';
import { createAllocObjective, scoreStaged } from '../../src/spaces/weights/allocobjective.js';
import { createRng } from '../../src/util/rng.js';

const CONTEXT = 16;
const BATCH = 2;
const spec = randomLlamaSpec({
  hiddenSize: 16,
  numLayers: 2,
  numHeads: 2,
  numKvHeads: 1,
  intermediateSize: 24,
  vocabSize: 32,
  maxPositions: CONTEXT,
  seed: 8,
  scale: 20,
});
const matrices = prunableMatrices(spec);
const stream = Array.from({ length: 200 }, (_, i) => (i * 11 + (i >> 2)) % 32);
/** Three stages: 32, 64 and all 128 tokens (2, 4 and 8 windows of 16; batches of 2). */
const stageTokens = [32, 64, 128];
const stageWindows = stageTokens.map((t) => makeWindows(stream, CONTEXT, t, 'test tokens'));
const stageBatches: TokenBatch[][] = stageWindows.map((w) => [...batches(w, BATCH)]);

describe('alloc staged scoring', () => {
  test('survivors, scores, winner and counts are those of the stages done by hand', async () => {
    const sizes = matrices.map((m) => m.rows * m.cols);
    const orders = await Promise.all(
      matrices.map(async (m) =>
        rowOrder((await spec.tensors.get(m.role)!.load()).map(Math.abs), m.rows, m.cols),
      ),
    );
    const masksOf = (c: readonly number[]) => orders.map((o, i) => allocatedMask(o, c[i]));
    const start = uniformAllocation(sizes, 0.5);
    const upper = allocationBounds(sizes, start, 0.9, 0.5);
    const rng = createRng(3);
    const children = Array.from({ length: 6 }, () =>
      mutateAllocation(start, upper, allocationQuantum(sizes, 1 / 4), 3, rng),
    );
    const keeps = [4, 2];

    const runner = await createRunner(spec, { output: 'nll', weightMasks: matrices.map((m) => m.role) });
    try {
      // By hand: each child's perplexity on every stage's tokens, then the survivors of each stage.
      const ref: number[][] = [];
      for (const c of children) {
        const weightMasks = new Map(matrices.map((m, i) => [m.role, masksOf(c)[i]]));
        const row: number[] = [];
        for (const w of stageWindows) {
          row.push(
            (await evaluatePerplexity(runner, w, { batchSize: BATCH, masks: { weightMasks } })).perplexity,
          );
        }
        ref.push(row);
      }
      const reached = children.map(() => 0);
      let alive = children.map((_, k) => k);
      for (let stage = 0; stage < 3; stage++) {
        for (const k of alive) reached[k] = stage;
        const keep = stage < keeps.length ? keeps[stage] : 1;
        alive = [...alive].sort((a, b) => ref[a][stage] - ref[b][stage] || a - b).slice(0, keep);
      }

      const objective = createAllocObjective(runner, matrices, stageBatches, masksOf);
      const out = await scoreStaged(objective, children, keeps, 3);
      assert.equal(out.length, children.length);
      for (const [k, ind] of out.entries()) {
        assert.equal(ind.genome, children[k]);
        assert.equal(ind.perplexity, ref[k][reached[k]], `child ${k} at stage ${reached[k]}`);
        assert.equal(ind.winner, k === alive[0], `child ${k}`);
      }
      assert.equal(objective.evaluations(), 6 + 4 + 2);
      // Passes: one per batch, 1, 2 and 4 batches a stage.
      assert.equal(objective.forwardPasses(), 6 * 1 + 4 * 2 + 2 * 4);
    } finally {
      await runner.release();
    }
  });
});
