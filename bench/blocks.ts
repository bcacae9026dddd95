/**
 * Layer-wise evaluation: does scoring a candidate that changes only layer l pay off when it starts from layer
 * l's cached input hidden states (a suffix graph of layers [l, L)) instead of running the full forward?
 *
 * For l = 0, L/2, L−1, one process, variants interleaved round by round (the full graph and the three suffix
 * graphs), each candidate a fresh 50 % random weight mask on layer l's linears fed to graphs that take masks
 * for every linear (what a weight search builds). Prints median [min–max] per candidate, the speedup over the
 * full forward, the one-off cost of computing the cached hidden states (prefix block [0, l)), and their memory
 * (tokens × D × 4 bytes per kept boundary). Then checks that suffix and full NLL agree on one candidate.
 *   (a) stories260K, 8,192 tokens of tinystories/calib, ctx 512, the default batch;
 *   (b) the 134M benchmark shape (random weights), --tokens-134m random tokens at ctx 512.
 *
 *   npm run bench:blocks [-- --runs 7 --threads 0 --tokens-134m 2048 --skip-134m]
 */
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { blockHidden } from '../src/engine/blocks.js';
import { createRunner, type ModelRunner, type TokenBatch } from '../src/engine/runner.js';
import { prepareWeights, releaseWeights } from '../src/graph/weights.js';
import {
  batches,
  defaultBatchSize,
  makeWindows,
  tokenizePrefix,
  type Windows,
} from '../src/metrics/perplexity.js';
import { openModel } from '../src/model/open.js';
import { randomLlamaSpec } from '../src/model/random.js';
import type { ModelSpec } from '../src/model/spec.js';
import { median } from '../src/prune/bench.js';
import { createRng, type Rng } from '../src/util/rng.js';
import { BENCH_LLAMA_SHAPE } from './shapes.js';

const SHARED = process.env.GENEPRUNE_SHARED ?? join(import.meta.dirname, '..', '..', 'shared');

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '7' },
    threads: { type: 'string', default: '0' },
    model: { type: 'string', default: join(SHARED, 'models/stories260K/stories260K.bin') },
    data: { type: 'string', default: join(SHARED, 'data/tinystories/calib') },
    'tokens-134m': { type: 'string', default: '2048' },
    'skip-134m': { type: 'boolean', default: false },
  },
});
const runs = Number(values.runs);
const threads = Number(values.threads);
const CTX = 512;

const ms = (xs: number[]) =>
  `${(median(xs) * 1000).toFixed(1)} ms [${(Math.min(...xs) * 1000).toFixed(1)}–${(Math.max(...xs) * 1000).toFixed(1)}]`;

const linearRoles = (spec: ModelSpec): string[] =>
  [...spec.tensors.keys()].filter((r) => /^layers\.\d+\.(attn|mlp)\.\w+\.weight$/.test(r));

/** A fresh 50 % random mask on every linear of layer l. */
function candidateMasks(spec: ModelSpec, l: number, rng: Rng): Map<string, Uint8Array> {
  const masks = new Map<string, Uint8Array>();
  for (const role of linearRoles(spec).filter((r) => r.startsWith(`layers.${l}.`))) {
    const n = spec.tensors.get(role)!.shape.reduce((a, b) => a * b, 1);
    const m = new Uint8Array(n);
    for (let i = 0; i < n; i++) m[i] = rng.nextFloat() < 0.5 ? 1 : 0;
    masks.set(role, m);
  }
  return masks;
}

async function evaluate(
  runner: ModelRunner,
  list: TokenBatch[],
  hidden: Float32Array[] | undefined,
  masks: Map<string, Uint8Array>,
) {
  let sum = 0;
  for (const [b, batch] of list.entries()) {
    const nll = await runner.run(hidden ? { ...batch, hidden: hidden[b] } : batch, { weightMasks: masks });
    for (let i = 0; i < nll.length; i++) if (batch.valid![i]) sum += nll[i];
  }
  return sum;
}

async function measure(name: string, spec: ModelSpec, windows: Windows) {
  const L = spec.config.numLayers;
  const D = spec.config.hiddenSize;
  const starts = [Math.floor(L / 2), L - 1];
  const list = [...batches(windows, defaultBatchSize(CTX, spec.config.vocabSize))];
  // One weight file (or in-memory copy) shared by every session; released once they have all started.
  const weights = await prepareWeights(spec, {});
  const engine = { threads, weights, weightMasks: linearRoles(spec) };
  const full = await createRunner(spec, { ...engine, output: 'nll' });
  const prefixes = await Promise.all(
    starts.map((l) => createRunner(spec, { threads, weights, output: 'hidden', layers: [0, l] })),
  );
  const suffixRunners = await Promise.all(
    starts.map((l) => createRunner(spec, { ...engine, output: 'nll', layers: [l, L] })),
  );
  await releaseWeights(weights);
  // Per start: the prefix block's hidden states, computed once (timed after a warm-up batch).
  const suffixes: Array<{ l: number; runner: ModelRunner; hidden: Float32Array[]; prefixSeconds: number }> =
    [];
  for (const [k, l] of starts.entries()) {
    await blockHidden(prefixes[k], list.slice(0, 1));
    const t0 = performance.now();
    const hidden = await blockHidden(prefixes[k], list);
    const prefixSeconds = (performance.now() - t0) / 1000;
    await prefixes[k].release();
    suffixes.push({ l, runner: suffixRunners[k], hidden, prefixSeconds });
  }
  const rng = createRng(11);
  // Exactness on one candidate: the suffix from cached states gives the full forward's NLL.
  for (const s of suffixes) {
    const masks = candidateMasks(spec, s.l, rng);
    const a = await evaluate(full, list, undefined, masks);
    const b = await evaluate(s.runner, list, s.hidden, masks);
    if (Math.abs(a - b) > 1e-5 * Math.abs(a)) {
      throw new Error(`${name}: suffix from layer ${s.l} gives NLL sum ${b}, full ${a}`);
    }
  }
  const variants = [
    {
      label: `full forward [0, ${L}) (l = 0)`,
      runner: full,
      hidden: undefined as Float32Array[] | undefined,
      l: 0,
    },
    ...suffixes.map((s) => ({
      label: `suffix [${s.l}, ${L}) from cache`,
      runner: s.runner,
      hidden: s.hidden,
      l: s.l,
    })),
  ];
  const times = variants.map(() => [] as number[]);
  for (let r = -1; r < runs; r++) {
    for (const [v, variant] of variants.entries()) {
      // The full forward scores a candidate on a random layer: its cost does not depend on which.
      const masks = candidateMasks(spec, v === 0 ? rng.nextInt(L) : variant.l, rng);
      const t0 = performance.now();
      await evaluate(variant.runner, list, variant.hidden, masks);
      if (r >= 0) times[v].push((performance.now() - t0) / 1000); // round −1 warms up
    }
  }
  const padded = list.reduce((a, b) => a + b.batch * b.seq, 0);
  console.log(
    `\n${name}: L ${L}, D ${D}, ${windows.tokens} tokens at ctx ${CTX}, batch ${list[0].batch}; ${runs} interleaved rounds, median [min–max] per candidate`,
  );
  for (const [v, variant] of variants.entries()) {
    const speedup = median(times[0]) / median(times[v]);
    console.log(`  ${variant.label.padEnd(34)} ${ms(times[v])}  ${speedup.toFixed(2)}x`);
  }
  for (const s of suffixes) {
    console.log(
      `  cache for l = ${s.l}: ${(s.prefixSeconds * 1000).toFixed(0)} ms once (prefix [0, ${s.l})), ` +
        `${((padded * D * 4) / 2 ** 20).toFixed(1)} MiB (${padded} positions × D ${D} × 4 B)`,
    );
  }
  for (const s of suffixes) await s.runner.release();
  await full.release();
}

async function main() {
  const model = await openModel(values.model);
  const tokens = 8192;
  const prefix = await tokenizePrefix(values.data, model.tokenizer, tokens + 1);
  const windows = makeWindows(prefix.tokens, CTX, tokens, values.data);
  await measure('stories260K', model.spec, windows);

  if (!values['skip-134m']) {
    const spec = randomLlamaSpec({ ...BENCH_LLAMA_SHAPE, maxPositions: CTX, seed: 1 });
    const n = Number(values['tokens-134m']);
    const rng = createRng(2);
    const stream = Array.from({ length: n + 1 }, () => rng.nextInt(spec.config.vocabSize));
    await measure('134M shape (random weights)', spec, makeWindows(stream, CTX, n));
  }
}

await main();
