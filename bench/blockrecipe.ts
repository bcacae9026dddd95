/**
 * Block searches on evaluation backends (issue #21): should an evaluator of block l's candidates REPLAY the walk
 * (l block passes from the calibration batches with the fixed masks, what search/backend.ts BlockRecipe does) or
 * RECEIVE the hidden states entering block l (tokens × d float32 per block, per evaluator)?
 *
 * Per model, on this machine, one process (the replay is the same computation a worker runs):
 *   - one block pass over the calibration batches (median of --runs), so replaying to block l costs l of them;
 *   - one candidate's score at block L/2 (the suffix graph of blocks [L/2, L) and the head), the unit of work the
 *     replay is set against;
 *   - the hidden states' bytes, and what moving them would cost: structuredClone (a worker thread's postMessage
 *     copies the same way), JSON of the numbers (a queue job as plain JSON), base64 of the bytes in JSON;
 *   - stories260K only (a model file a worker can open): the pool's start per block recipe with 2 workers at
 *     block 0 and at block L−1 (thread, tsx from source, model, session, replay), i.e. what `--workers 2` pays
 *     per block for starting fresh threads.
 *   (a) stories260K, 8,192 tokens of tinystories/calib, ctx 512 (the weights command's default calibration);
 *   (b) the 134M benchmark shape (random weights), --tokens-134m random tokens at ctx 512.
 *
 *   node --import tsx bench/blockrecipe.ts [--runs 3 --tokens-134m 2048 --skip-134m]
 */
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { enterBlock } from '../src/engine/blocks.js';
import type { TokenBatch } from '../src/engine/runner.js';
import { prunableMatrices } from '../src/masks/weights.js';
import { batches, defaultBatchSize, makeWindows, tokenizePrefix } from '../src/metrics/perplexity.js';
import { openModel } from '../src/model/open.js';
import { randomLlamaSpec } from '../src/model/random.js';
import type { ModelSpec } from '../src/model/spec.js';
import { median } from '../src/prune/bench.js';
import { createPoolBackend } from '../src/search/pool.js';
import { createBlockObjective, createLayerEvaluator } from '../src/spaces/weights/blockobjective.js';
import { advanceHidden } from '../src/spaces/weights/blockpasses.js';
import { blockLayout } from '../src/spaces/weights/blockspace.js';
import { createRng } from '../src/util/rng.js';
import { BENCH_LLAMA_SHAPE } from './shapes.js';

const SHARED = process.env.GENEPRUNE_SHARED ?? join(import.meta.dirname, '..', '..', 'shared');
const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '3' },
    'tokens-134m': { type: 'string', default: '2048' },
    'skip-134m': { type: 'boolean', default: false },
  },
});
const runs = Number(values.runs);
const CTX = 512;

async function timed<T>(f: () => Promise<T> | T): Promise<[number, T]> {
  const t0 = performance.now();
  const v = await f();
  return [(performance.now() - t0) / 1000, v];
}

/** Half the weights of every matrix of block l pruned at random. */
function halfMasks(spec: ModelSpec, l: number): Map<string, Uint8Array> {
  const rng = createRng(l + 1);
  return new Map(
    blockLayout(prunableMatrices(spec), l).matrices.map((m) => [
      m.role,
      Uint8Array.from({ length: m.rows * m.cols }, () => (rng.nextFloat() < 0.5 ? 0 : 1)),
    ]),
  );
}

async function measure(name: string, spec: ModelSpec, list: readonly TokenBatch[], modelPath?: string) {
  const L = spec.config.numLayers;
  const d = spec.config.hiddenSize;
  const tokens = list.reduce((a, b) => a + b.batch * b.seq, 0);
  const engine = {};
  // The walk to L/2, as the search (and a replaying evaluator) runs it.
  const mid = Math.floor(L / 2);
  let hidden: Float32Array[] | undefined;
  let walk: readonly TokenBatch[] = list;
  const pass: number[] = [];
  for (let l = 0; l < mid; l++) {
    ({ batches: walk, hidden } = enterBlock(spec.config, l, walk, hidden));
    const masks = halfMasks(spec, l);
    const entering = hidden;
    for (let r = 0; r < runs; r++) {
      const [s, h] = await timed(() => advanceHidden(spec, l, walk, entering, masks, engine));
      pass.push(s);
      if (r === runs - 1) hidden = h;
    }
  }
  const blockPass = median(pass);
  // One candidate at block L/2: the suffix graph [L/2, L) on the hidden states reached.
  const evaluator = await createLayerEvaluator(
    spec,
    mid,
    [...halfMasks(spec, mid).keys()],
    walk,
    hidden,
    engine,
  );
  const cand: number[] = [];
  for (let r = 0; r < runs + 1; r++) {
    const [s] = await timed(() => evaluator.perplexity(halfMasks(spec, mid)));
    if (r > 0) cand.push(s);
  }
  await evaluator.release();
  const candidate = median(cand);
  // Moving the hidden states instead.
  const arrays = hidden!;
  const bytes = arrays.reduce((a, h) => a + h.byteLength, 0);
  const [clone] = await timed(() => structuredClone(arrays));
  const [jsonOut, text] = await timed(() => JSON.stringify(arrays.map((h) => Array.from(h))));
  const [jsonIn] = await timed(() => (JSON.parse(text) as number[][]).map((a) => Float32Array.from(a)));
  const [b64Out, b64] = await timed(() =>
    JSON.stringify(arrays.map((h) => Buffer.from(h.buffer, h.byteOffset, h.byteLength).toString('base64'))),
  );
  const [b64In] = await timed(() =>
    (JSON.parse(b64) as string[]).map((s) => {
      const buf = Buffer.from(s, 'base64');
      return new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
    }),
  );
  const row = {
    model: name,
    tokens,
    blocks: L,
    hiddenSize: d,
    blockPassS: blockPass,
    replayToLastS: blockPass * (L - 1),
    replayWholeWalkPerWorkerS: (blockPass * (L * (L - 1))) / 2,
    candidateAtMidS: candidate,
    hiddenBytesPerBlock: bytes,
    structuredCloneS: clone,
    jsonNumbersBytes: text.length,
    jsonNumbersS: jsonOut + jsonIn,
    jsonBase64Bytes: b64.length,
    jsonBase64S: b64Out + b64In,
  };
  const mb = (n: number) => (n < 1e5 ? `${(n / 1e3).toFixed(1)} kB` : `${(n / 1e6).toFixed(1)} MB`);
  const s = (x: number) => `${x < 1 ? (x * 1000).toFixed(1) : x.toFixed(2)} ${x < 1 ? 'ms' : 's'}`;
  console.log(`\n${name}: ${tokens} calibration tokens, ${L} blocks, d ${d}`);
  console.log(
    `  one block pass            ${s(blockPass)} (replay to block l: l of them; to block ${L - 1}: ${s(row.replayToLastS)})`,
  );
  console.log(`  one candidate at block ${mid}  ${s(candidate)}`);
  console.log(`  hidden states per block   ${mb(bytes)} (structuredClone ${s(clone)})`);
  console.log(`  as JSON numbers           ${mb(text.length)} (stringify + parse ${s(row.jsonNumbersS)})`);
  console.log(`  as JSON base64            ${mb(b64.length)} (encode + decode ${s(row.jsonBase64S)})`);

  // What a recipe carries instead: the fixed blocks' keep masks, packed 8 to a byte (at the last block: L − 1
  // blocks of them), and the calibration batches' token ids.
  const blockWeights = blockLayout(prunableMatrices(spec), 0).genes;
  const fixedBytesAtLast = Math.ceil(blockWeights / 8) * (L - 1);
  const idsBytes = list.reduce((a, b) => a + b.ids.byteLength + (b.targets?.byteLength ?? 0), 0);
  Object.assign(row, { blockWeights, fixedBytesAtLast, idsBytes });
  console.log(
    `  recipe at block ${L - 1}: fixed masks ${mb(fixedBytesAtLast)} (bits), batches ${mb(idsBytes)}`,
  );

  if (modelPath) {
    // The pool's start per block recipe with 2 workers: fresh threads at block 0, then each next block on the
    // same threads, each continuing its own replay of the walk (one block pass per block).
    const matrices = prunableMatrices(spec);
    const opens: number[][] = Array.from({ length: L }, () => []);
    for (let r = 0; r < runs; r++) {
      const backend = createPoolBackend(2);
      let h: Float32Array[] | undefined;
      let w: readonly TokenBatch[] = list;
      const fixed = new Map<string, Uint8Array>();
      for (let layer = 0; layer < L; layer++) {
        ({ batches: w, hidden: h } = enterBlock(spec.config, layer, w, h));
        const [sec, objective] = await timed(() =>
          createBlockObjective({
            spec,
            block: blockLayout(matrices, layer),
            batches: w,
            hidden: h,
            metric: 'ppl',
            engine,
            fixed: new Map(fixed),
            remote: { backend, model: modelPath, matrices, batches: list },
          }),
        );
        opens[layer].push(sec);
        await objective.release();
        const masks = halfMasks(spec, layer);
        for (const [k, v] of masks) fixed.set(k, v);
        if (layer < L - 1) h = await advanceHidden(spec, layer, w, h, masks, engine);
      }
      await backend.release();
    }
    const per = opens.map((xs) => median(xs));
    console.log(
      `  pool open, 2 workers: block 0 (new threads) ${s(per[0])}; next blocks ${per.slice(1).map(s).join(', ')}`,
    );
    Object.assign(row, { poolOpen2PerBlockS: per });
  }
  console.log(JSON.stringify(row));
}

async function main() {
  const path = join(SHARED, 'models/stories260K/stories260K.bin');
  const model = await openModel(path);
  const data = join(SHARED, 'data/tinystories/calib');
  const prefix = await tokenizePrefix(data, model.tokenizer, 8193);
  const windows = makeWindows(prefix.tokens, CTX, 8192, data);
  const list = [...batches(windows, defaultBatchSize(CTX, model.spec.config.vocabSize))];
  await measure('stories260K', model.spec, list, path);
  if (!values['skip-134m']) {
    const spec = randomLlamaSpec({ ...BENCH_LLAMA_SHAPE, maxPositions: CTX, seed: 1 });
    const n = Number(values['tokens-134m']);
    const rng = createRng(2);
    const stream = Array.from({ length: n + 1 }, () => rng.nextInt(spec.config.vocabSize));
    const w = makeWindows(stream, CTX, n);
    await measure(`134M shape (random weights)`, spec, [
      ...batches(w, defaultBatchSize(CTX, spec.config.vocabSize)),
    ]);
  }
}

await main();
