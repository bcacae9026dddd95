/**
 * Block objectives through an evaluation backend (search/backend.ts `BlockRecipe`, spaces/weights/blockrecipe.ts):
 * on the real stories260K (a decoder) and codet5-tiny (an encoder-decoder, the walk crossing from the encoder to
 * the decoder stack), the scorer an evaluator rebuilds from a block recipe — replaying the walk from block 0 with
 * the fixed masks, not receiving the hidden states — scores every genome exactly as the block objective of the
 * search's own thread, and a block objective pooled on two worker threads gives the same qualities, tokens,
 * forward passes, progress order, counters, dense score and identity record (objectiveRecord) as the plain one —
 * also with BLEU (whole-model generations, each worker building its own generation session and loading the
 * tokenizer); a pool backend lends its threads from block to block, and a worker continues its last replay only
 * when the next recipe is the same walk.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { enterBlock } from '../../src/engine/blocks.js';
import type { TokenBatch } from '../../src/engine/runner.js';
import { prunableMatrices } from '../../src/masks/weights.js';
import { prepareGenerationTask } from '../../src/metrics/generation.js';
import { batches, makeWindows } from '../../src/metrics/perplexity.js';
import { pairWindows } from '../../src/metrics/seq2seq.js';
import { buildContinuationTask } from '../../src/metrics/storytask.js';
import { loadModelSpec } from '../../src/model/load.js';
import { openModel } from '../../src/model/open.js';
import type { ModelSpec } from '../../src/model/spec.js';
import { buildRecipeScorer } from '../../src/search/backend.js';
import { randomGenome } from '../../src/search/operators.js';
import { createPoolBackend } from '../../src/search/pool.js';
import { objectiveRecord } from '../../src/search/record.js';
import {
  type BlockObjectiveInput,
  createBleuScorer,
  createBlockObjective,
} from '../../src/spaces/weights/blockobjective.js';
import { advanceHidden } from '../../src/spaces/weights/blockpasses.js';
import { blockRecipe } from '../../src/spaces/weights/blockrecipe.js';
import { blockFeeds, blockLayout } from '../../src/spaces/weights/blockspace.js';
import { createRng } from '../../src/util/rng.js';
import { childPids, settleTo } from '../helpers/procs.js';
import { lcgTokens } from '../helpers/tokens.js';
import { CALIB, MODEL, sharedPath, skipUnlessShared } from '../shared.js';

/**
 * The input of block `layer`'s objective as the search's walk builds it: blocks before it at random fixed masks
 * (40 % pruned), the hidden states advanced through them here, in this thread.
 */
async function blockInput(
  spec: ModelSpec,
  list: readonly TokenBatch[],
  layer: number,
  engine: { threads?: number },
) {
  const matrices = prunableMatrices(spec);
  const rng = createRng(31);
  const fixed = new Map<string, Uint8Array>();
  let walk: readonly TokenBatch[] = list;
  let hidden: Float32Array[] | undefined;
  for (let l = 0; l < layer; l++) {
    ({ batches: walk, hidden } = enterBlock(spec.config, l, walk, hidden));
    const masks = new Map(
      blockLayout(matrices, l).matrices.map((m) => [
        m.role,
        randomGenome(m.rows * m.cols, Math.round(0.4 * m.rows * m.cols), rng),
      ]),
    );
    for (const [role, keep] of masks) fixed.set(role, keep);
    hidden = await advanceHidden(spec, l, walk, hidden, masks, engine);
  }
  ({ batches: walk, hidden } = enterBlock(spec.config, layer, walk, hidden));
  const input: BlockObjectiveInput = {
    spec,
    block: blockLayout(matrices, layer),
    batches: walk,
    hidden,
    metric: 'ppl',
    engine,
    fixed,
  };
  return { input, matrices };
}

/** Candidates of the block: light and heavy random masks, and a repeat. */
function candidates(genes: number): Uint8Array[] {
  const rng = createRng(7);
  const out = [0.1, 0.5, 0.3, 0.7, 0.2].map((s) => randomGenome(genes, Math.round(s * genes), rng));
  out.push(out[1].slice());
  return out;
}

const view = (r: {
  evaluation: { quality: number; tokens: number };
  forwardPasses: number;
  cached: boolean;
}) => [r.evaluation.quality, r.evaluation.tokens, r.forwardPasses, r.cached];

async function checkBlock(
  modelPath: string,
  list: readonly TokenBatch[],
  layer: number,
  engine: { threads?: number } = {},
) {
  const spec = await loadModelSpec(modelPath);
  const { input, matrices } = await blockInput(spec, list, layer, engine);
  const plain = await createBlockObjective(input);
  const backend = createPoolBackend(2);
  const pooled = await createBlockObjective({
    ...input,
    remote: { backend, model: modelPath, matrices, batches: list },
  });
  try {
    const genomes = candidates(plain.space.genes);
    // The rebuilt scorer, in this thread: the recipe goes through a structured clone as it does to a worker.
    const recipe = structuredClone(blockRecipe(input, { model: modelPath, matrices, batches: list }));
    const { scorer } = await buildRecipeScorer(recipe);
    const a = await plain.evaluateMany(genomes);
    try {
      for (const [i, g] of genomes.entries()) {
        const r = await scorer.score({ weightMasks: blockFeeds(input.block, g) }, 'full');
        assert.equal(r.quality, a[i].evaluation.quality, `genome ${i}`);
        assert.equal(r.forwards, list.length);
      }
    } finally {
      await scorer.runner.release();
    }
    const seen: number[] = [];
    const b = await pooled.evaluateMany(genomes, 'full', (i) => seen.push(i));
    assert.deepEqual(b.map(view), a.map(view));
    assert.ok(a.every((r) => Number.isFinite(r.evaluation.quality) && r.evaluation.quality > 1));
    assert.notEqual(a[0].evaluation.quality, a[1].evaluation.quality, 'the masks matter');
    assert.equal(a[1].evaluation.quality, a[5].evaluation.quality);
    assert.deepEqual(
      seen,
      genomes.map((_, i) => i),
    );
    assert.equal(await pooled.dense(), await plain.dense());
    assert.equal(pooled.evaluations(), plain.evaluations());
    assert.equal(pooled.forwardPasses(), plain.forwardPasses());
    assert.equal(plain.forwardPasses(), (genomes.length + 1) * list.length);
    // The identity record a queue's worker must match: the worker's, from its replayed walk, is the search's.
    assert.deepEqual(
      await objectiveRecord(pooled, { block: layer }),
      await objectiveRecord(plain, { block: layer }),
    );
  } finally {
    await plain.release();
    await pooled.release();
    await backend.release();
  }
}

describe('block recipes (stories260K)', { skip: skipUnlessShared(MODEL) }, () => {
  test('block 3: a rebuilt and a pooled block objective score as the search’s own', async () => {
    const model = sharedPath(MODEL)!;
    const windows = makeWindows(lcgTokens(3000, 4242, 510), 128, 2048, 'test tokens');
    await checkBlock(model, [...batches(windows, 4)], 3);
  });
});

describe('a pool backend across block recipes (stories260K)', { skip: skipUnlessShared(MODEL) }, () => {
  test('the next block’s recipe loads on the same live workers, which the backend’s release ends', async (t) => {
    if (childPids() === undefined) return t.skip('no /proc here');
    const workers = () => childPids()?.length ?? 0;
    const model = sharedPath(MODEL)!;
    const spec = await loadModelSpec(model);
    const list = [...batches(makeWindows(lcgTokens(1100, 4242, 510), 128, 1024, 'test tokens'), 4)];
    const backend = createPoolBackend(2);
    const before = workers();
    let during = 0;
    for (const layer of [1, 3]) {
      const { input, matrices } = await blockInput(spec, list, layer, {});
      const plain = await createBlockObjective(input);
      const pooled = await createBlockObjective({
        ...input,
        remote: { backend, model, matrices, batches: list },
      });
      try {
        const genomes = candidates(plain.space.genes);
        assert.deepEqual(
          (await pooled.evaluateMany(genomes)).map(view),
          (await plain.evaluateMany(genomes)).map(view),
        );
      } finally {
        await plain.release();
        await pooled.release();
      }
      // Between blocks the two worker processes wait, their sessions freed; the next block starts none.
      if (layer === 1) during = workers();
      else assert.equal(workers(), during, `${workers()} workers at block 3, ${during} at block 1`);
    }
    assert.equal(during, before + 2, `${before} child processes before, ${during} with two workers`);
    await backend.release();
    assert.equal(await settleTo(workers, before), before);
  });
});

describe('replays continued or not (stories260K)', { skip: skipUnlessShared(MODEL) }, () => {
  test('a recipe continues this thread’s last replay only when its fixed masks agree; the scores are exact', async () => {
    const model = sharedPath(MODEL)!;
    const spec = await loadModelSpec(model);
    const list = [...batches(makeWindows(lcgTokens(1100, 4242, 510), 128, 1024, 'test tokens'), 4)];
    const a = await blockInput(spec, list, 2, {});
    const b = await blockInput(spec, list, 4, {});
    // Block 4 with block 0's masks turned over: the replay of block 2's walk must not be continued.
    const flipped = new Map(b.input.fixed);
    for (const m of a.matrices.filter((x) => x.layer === 0))
      flipped.set(
        m.role,
        flipped.get(m.role)!.map((x) => 1 - x),
      );
    let h: Float32Array[] | undefined;
    for (let l = 0; l < 4; l++) {
      const masks = new Map([...flipped].filter(([role]) => role.startsWith(`layers.${l}.`)));
      h = await advanceHidden(spec, l, list, h, masks);
    }
    const c = { ...b.input, fixed: flipped, hidden: h };
    for (const input of [a.input, b.input, a.input, c, b.input]) {
      const plain = await createBlockObjective(input);
      const { scorer } = await buildRecipeScorer(
        blockRecipe(input, { model, matrices: a.matrices, batches: list }),
      );
      try {
        const g = candidates(plain.space.genes)[1];
        const [want] = await plain.evaluateMany([g]);
        const got = await scorer.score({ weightMasks: blockFeeds(input.block, g) }, 'full');
        assert.equal(got.quality, want.evaluation.quality, `block ${input.block.layer}`);
      } finally {
        await plain.release();
        await scorer.runner.release();
      }
    }
  });
});

describe('block recipes with a generation metric (stories260K)', {
  skip: skipUnlessShared(MODEL, CALIB),
}, () => {
  test('bleu at block 2: the pooled objective generates as the search’s own; same record', async () => {
    const model = sharedPath(MODEL)!;
    const opened = await openModel(model);
    const spec = opened.spec;
    const list = [...batches(makeWindows(lcgTokens(600, 4242, 510), 128, 512, 'test tokens'), 4)];
    const { input, matrices } = await blockInput(spec, list, 2, {});
    const task = prepareGenerationTask(await buildContinuationTask(sharedPath(CALIB)!), opened.tokenizer);
    const bleu = { task, items: 4, maxNewTokens: 8, kind: 'corpus' as const };
    const own = await createBleuScorer(spec, matrices, bleu, {}, 'bleu');
    const plain = await createBlockObjective({ ...input, metric: 'bleu', hidden: undefined, bleu: own });
    const backend = createPoolBackend(2);
    const pooled = await createBlockObjective({
      ...input,
      metric: 'bleu',
      hidden: undefined,
      remote: { backend, model, matrices, batches: list, bleu },
    });
    try {
      const genomes = candidates(plain.space.genes);
      const a = await plain.evaluateMany(genomes);
      assert.deepEqual((await pooled.evaluateMany(genomes)).map(view), a.map(view));
      assert.ok(new Set(a.map((r) => r.evaluation.quality)).size > 1, 'the masks matter');
      assert.equal(await pooled.dense(), await plain.dense());
      assert.equal(pooled.forwardPasses(), plain.forwardPasses());
      assert.deepEqual(
        await objectiveRecord(pooled, { block: 2 }),
        await objectiveRecord(plain, { block: 2 }),
      );
    } finally {
      await plain.release();
      await pooled.release();
      await own.release();
      await backend.release();
    }
  });
});

describe('block recipes (codet5-tiny)', { skip: skipUnlessShared('models/codet5-tiny') }, () => {
  test('decoder block 1 (block 4 of the walk): the replay crosses from the encoder to the decoder', async () => {
    const model = sharedPath('models/codet5-tiny')!;
    const spec = await loadModelSpec(model);
    const rows = Array.from({ length: 12 }, (_, i) => lcgTokens(6 + (i % 5) * 3, 4242, 1252 - 2).slice(i));
    const pairs = {
      source: 'test pairs',
      sources: rows.map((r) => [...r, 2]),
      targets: rows.map((r) => [...r.slice(0, 4 + (r.length % 3)).reverse(), 2]),
      decoderStart: spec.config.encdec!.decoderStartTokenId,
      padId: spec.config.padTokenId ?? 0,
    };
    const windows = pairWindows(pairs, 60, 'test pairs');
    // One intra-op thread on both sides: ONNX Runtime's sums on this model depend on the thread count (≈ 1e-7
    // relative between 1 and 2 threads, measured), not on who runs them.
    await checkBlock(model, [...batches(windows, 4)], 4, { threads: 1 });
  });
});
