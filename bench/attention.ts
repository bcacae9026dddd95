/**
 * Attention speed, before (explicit QKᵀ/mask/Softmax/·V) and after (one fused kernel per layer), in one
 * process against one 2048³ MatMul, so load on the machine hits every number alike. Variants run
 * interleaved round by round. Prints:
 *   (a) stories260K: one search candidate (8,192 tokens of tinystories/calib, ctx 512, the default batch)
 *       as a multiple of its FLOP time at the MatMul rate;
 *   (b) the 134M LLaMA shape at ctx 1024 (B=1 and B=2), GFLOP/s and the ratio to the MatMul rate;
 *   (c) the same at ctx 256, B=4 (the bench:engine row).
 * FLOPs count every linear plus the full S×S attention products (as bench:engine does), though a causal
 * kernel needs only half of the latter.
 * Then, for (a), an ONNX Runtime profile of one candidate per variant: kernel time by operator, the attention
 * kernel's GFLOP/s, and what attention alone costs as a multiple of the whole candidate's FLOP time (the floor
 * under the per-candidate ratio that no change elsewhere in the graph can lower).
 *
 *   npm run bench:attention [-- --runs 9 --threads 0 --variants explicit,GroupQueryAttention,MultiHeadAttention]
 */
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createRunner, type ModelRunner, type TokenBatch } from '../src/engine/runner.js';
import { createEngine } from '../src/engine/session.js';
import type { AttentionKind, FusedAttentionOp } from '../src/graph/attention.js';
import { GraphBuilder } from '../src/graph/builder.js';
import { loadWeights } from '../src/graph/weights.js';
import { batches, defaultBatchSize, makeWindows, tokenizePrefix } from '../src/metrics/perplexity.js';
import { forwardFlopsPerToken } from '../src/model/cost.js';
import { openModel } from '../src/model/open.js';
import { randomLlamaSpec } from '../src/model/random.js';
import type { ModelSpec } from '../src/model/spec.js';
import { median } from '../src/prune/bench.js';
import { createRng } from '../src/util/rng.js';
import { BENCH_LLAMA_SHAPE } from './shapes.js';

const SHARED = process.env.GENEPRUNE_SHARED ?? join(import.meta.dirname, '..', '..', 'shared');

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '9' },
    threads: { type: 'string', default: '0' },
    variants: { type: 'string', default: 'explicit,GroupQueryAttention' },
    model: { type: 'string', default: join(SHARED, 'models/stories260K/stories260K.bin') },
    data: { type: 'string', default: join(SHARED, 'data/tinystories/calib') },
    'skip-134m': { type: 'boolean', default: false },
  },
});
const runs = Number(values.runs);
const threads = Number(values.threads);
type Variant = 'explicit' | FusedAttentionOp;
const variants = values.variants.split(',') as Variant[];
const runnerAttention = (v: Variant): { attention: AttentionKind; fusedOp?: FusedAttentionOp } =>
  v === 'explicit' ? { attention: 'explicit' } : { attention: 'fused', fusedOp: v };

const stats = (xs: number[]) => ({ median: median(xs), min: Math.min(...xs), max: Math.max(...xs) });
const ms = (xs: number[]) => {
  const s = stats(xs);
  return `${(s.median * 1000).toFixed(1)} ms [${(s.min * 1000).toFixed(1)}–${(s.max * 1000).toFixed(1)}]`;
};

/**
 * Seconds per call of each function, interleaved: round r runs every function once. Also records process CPU
 * seconds: with --threads 1 those barely move when other jobs share the cores, so they rank variants under load.
 */
const cpuSeconds: number[][][] = [];
async function timeInterleaved(fns: Array<() => Promise<unknown>>, warmup: number, n: number) {
  for (let i = 0; i < warmup; i++) for (const f of fns) await f();
  const times = fns.map((): number[] => []);
  const cpu = fns.map((): number[] => []);
  for (let r = 0; r < n; r++) {
    for (let j = 0; j < fns.length; j++) {
      const t0 = performance.now();
      const c0 = process.cpuUsage();
      await fns[j]();
      const c = process.cpuUsage(c0);
      times[j].push((performance.now() - t0) / 1000);
      cpu[j].push((c.user + c.system) / 1e6);
    }
  }
  cpuSeconds.push(cpu);
  return times;
}

async function matmulSeconds(n: number, rounds: number): Promise<number[]> {
  const rng = createRng(7);
  const g = new GraphBuilder();
  const a = g.input('a', 'float32', [n, n]);
  const w = Float32Array.from({ length: n * n }, () => rng.nextFloat() - 0.5);
  g.node(
    'MatMul',
    [a, g.initializer('b', { type: 'float32', dims: [n, n], data: w })],
    {},
    { outputs: ['c'] },
  );
  g.output('c', 'float32', [n, n]);
  const engine = await createEngine(g.encode({ opset: 17 }), { threads });
  const data = Float32Array.from({ length: n * n }, () => rng.nextFloat() - 0.5);
  const [times] = await timeInterleaved(
    [() => engine.run({ a: { type: 'float32', dims: [n, n], data } })],
    2,
    rounds,
  );
  await engine.release();
  return times;
}

async function runnersFor(spec: ModelSpec): Promise<ModelRunner[]> {
  const weights = await loadWeights(spec);
  const out: ModelRunner[] = [];
  for (const v of variants)
    out.push(await createRunner(spec, { output: 'nll', weights, threads, ...runnerAttention(v) }));
  return out;
}

/** Kernel microseconds by operator type over one candidate, from an ONNX Runtime profile. */
async function profileCandidate(
  spec: ModelSpec,
  v: Variant,
  batchList: TokenBatch[],
): Promise<Map<string, number>> {
  const dir = await mkdtemp(join(tmpdir(), 'geneprune-profile-'));
  try {
    const weights = await loadWeights(spec);
    const r = await createRunner(spec, {
      output: 'nll',
      weights,
      threads,
      ...runnerAttention(v),
      profileFilePrefix: join(dir, 'candidate'),
    });
    for (const b of batchList) await r.run(b);
    await r.release();
    const file = readdirSync(dir).find((f) => f.endsWith('.json'));
    if (!file) throw new Error('ONNX Runtime wrote no profile');
    const events = JSON.parse(readFileSync(join(dir, file), 'utf8')) as Array<{
      cat: string;
      name: string;
      dur: number;
      args?: { op_name?: string };
    }>;
    const byOp = new Map<string, number>();
    for (const e of events) {
      if (e.cat !== 'Node' || !e.name.endsWith('_kernel_time') || !e.args?.op_name) continue;
      byOp.set(e.args.op_name, (byOp.get(e.args.op_name) ?? 0) + e.dur);
    }
    return byOp;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Operators that are attention proper in each variant (the explicit chain's MatMuls are QKᵀ and ·V: linears are Gemm). */
const ATTENTION_OPS = new Set([
  'GroupQueryAttention',
  'MultiHeadAttention',
  'Attention',
  'MatMul',
  'Softmax',
  'Trilu',
]);

async function main() {
  const say = (s: string) => console.log(s);
  const N = 2048;
  const matmulFlops = 2 * N ** 3;
  const matmulCpuIndex = cpuSeconds.length;
  const matmulBefore = await matmulSeconds(N, runs);
  say(`threads ${threads || 'ORT default'}, ${runs} interleaved rounds per row; times are median [min–max]`);

  // (a) stories260K search candidate.
  const model = await openModel(values.model);
  const ctx = 512;
  const tokens = 8192;
  const prefix = await tokenizePrefix(values.data, model.tokenizer, tokens + 1);
  const windows = makeWindows(prefix.tokens, ctx, tokens, values.data);
  const batchSize = defaultBatchSize(ctx);
  const batchList = [...batches(windows, batchSize)];
  const small = await runnersFor(model.spec);
  const candidateCpuIndex = cpuSeconds.length;
  const candidate = await timeInterleaved(
    small.map((r) => async () => {
      for (const b of batchList) await r.run(b);
    }),
    1,
    runs,
  );
  for (const r of small) await r.release();
  const candidateFlops = tokens * forwardFlopsPerToken(model.spec, ctx);
  const profiles: Array<Map<string, number>> = [];
  for (const v of variants) profiles.push(await profileCandidate(model.spec, v, batchList));
  const c = model.spec.config;
  // QKᵀ and ·V over the full S×S, as forwardFlopsPerToken counts them.
  const attentionFlops = tokens * c.headsPerLayer.reduce((a, h) => a + 4 * ctx * h * c.headDim, 0);

  // (b), (c) the 134M shape.
  const shapes = values['skip-134m']
    ? []
    : [
        { B: 1, S: 1024 },
        { B: 2, S: 1024 },
        { B: 4, S: 256 },
      ];
  const big: Array<{ B: number; S: number; flops: number; times: number[][] }> = [];
  if (shapes.length > 0) {
    const spec = randomLlamaSpec({ ...BENCH_LLAMA_SHAPE, maxPositions: 1024, seed: 1 });
    const runners = await runnersFor(spec);
    const rng = createRng(2);
    for (const { B, S } of shapes) {
      const ids = BigInt64Array.from({ length: B * S }, () =>
        BigInt(rng.nextInt(BENCH_LLAMA_SHAPE.vocabSize)),
      );
      const targets = BigInt64Array.from({ length: B * S }, () =>
        BigInt(rng.nextInt(BENCH_LLAMA_SHAPE.vocabSize)),
      );
      const times = await timeInterleaved(
        runners.map((r) => () => r.run({ batch: B, seq: S, ids, targets })),
        1,
        runs,
      );
      big.push({ B, S, flops: B * S * forwardFlopsPerToken(spec, S), times });
    }
    for (const r of runners) await r.release();
  }

  const matmulCpuAfterIndex = cpuSeconds.length;
  const matmulAfter = await matmulSeconds(N, runs);
  const matmul = [...matmulBefore, ...matmulAfter];
  const matmulRate = matmulFlops / median(matmul) / 1e9;
  say(`matmul 2048³: ${ms(matmul)} -> ${matmulRate.toFixed(1)} GFLOP/s (before and after the models)`);
  say(
    `\n(a) stories260K candidate: ${tokens} tokens, ctx ${ctx}, batch ${batchSize}: ${(candidateFlops / 1e9).toFixed(2)} GFLOP = ${((candidateFlops / matmulRate / 1e9) * 1000).toFixed(1)} ms at the MatMul rate`,
  );
  const matmulCpu = median([...cpuSeconds[matmulCpuIndex][0], ...cpuSeconds[matmulCpuAfterIndex][0]]);
  const cpuFlopTime = (candidateFlops / matmulFlops) * matmulCpu;
  variants.forEach((v, j) => {
    const s = stats(candidate[j]);
    const flopTime = candidateFlops / (matmulRate * 1e9);
    const cpu = median(cpuSeconds[candidateCpuIndex][j]);
    say(
      `  ${v.padEnd(20)} ${ms(candidate[j])}  = ${(s.median / flopTime).toFixed(2)}x FLOP time [${(s.min / flopTime).toFixed(2)}–${(s.max / flopTime).toFixed(2)}]; CPU time ${(cpu / cpuFlopTime).toFixed(2)}x the MatMul's per FLOP`,
    );
  });
  say(
    `\n(a) profile of one candidate (kernel time by operator; attention = ${((100 * attentionFlops) / candidateFlops).toFixed(0)} % of the candidate's FLOPs):`,
  );
  variants.forEach((v, j) => {
    const byOp = profiles[j];
    const total = [...byOp.values()].reduce((a, b) => a + b, 0);
    const top = [...byOp.entries()].sort((a, b) => b[1] - a[1]).slice(0, 6);
    say(
      `  ${v.padEnd(20)} ${top.map(([op, us]) => `${op} ${((100 * us) / total).toFixed(0)} %`).join(', ')}`,
    );
    if (v === 'explicit') return;
    const attentionUs = [...byOp.entries()]
      .filter(([op]) => ATTENTION_OPS.has(op))
      .reduce((a, [, us]) => a + us, 0);
    // The profile's own kernel times, scaled to the interleaved median so both come from the same runs' rate.
    const attentionSeconds = (median(candidate[j]) * attentionUs) / total;
    say(
      `  ${''.padEnd(20)} attention kernels ${((100 * attentionUs) / total).toFixed(0)} % of kernel time, ${(attentionFlops / attentionSeconds / 1e9).toFixed(1)} GFLOP/s; attention alone = ${(attentionSeconds / (candidateFlops / (matmulRate * 1e9))).toFixed(2)}x the whole candidate's FLOP time`,
    );
  });
  for (const { B, S, flops, times } of big) {
    say(`\n(${S === 256 ? 'c' : 'b'}) 134M shape, B=${B} S=${S}: ${(flops / 1e9).toFixed(1)} GFLOP`);
    variants.forEach((v, j) => {
      const s = stats(times[j]);
      const rate = (t: number) => flops / t / 1e9;
      say(
        `  ${v.padEnd(20)} ${ms(times[j])}  ${rate(s.median).toFixed(1)} GFLOP/s, ratio ${(rate(s.median) / matmulRate).toFixed(3)} [${(rate(s.max) / matmulRate).toFixed(3)}–${(rate(s.min) / matmulRate).toFixed(3)}]`,
      );
    });
  }
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
