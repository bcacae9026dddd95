/**
 * Engine speed: a randomly initialised ~100M-parameter LLaMA-shape model (12 layers, d 768, 12 heads, SwiGLU
 * 2048, vocab 32000), forward B=4 x S=256 with the NLL computed in-graph, against one large MatMul in the same
 * process. Prints both rates in GFLOP/s and their ratio (how close a real forward gets to the GEMM peak).
 *
 *   npm run bench:engine [-- --threads N --runs R --device cpu --table-out FILE]
 *
 * `--table-out FILE` writes the manual's table (forward and MatMul GFLOP/s, their ratio) to FILE.
 */
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { createRunner } from '../src/engine/runner.js';
import { createEngine, type Device } from '../src/engine/session.js';
import { GraphBuilder } from '../src/graph/builder.js';
import { forwardFlopsPerToken, parameterCount } from '../src/model/cost.js';
import { randomLlamaSpec } from '../src/model/random.js';
import { median } from '../src/prune/bench.js';
import { createRng } from '../src/util/rng.js';
import { BENCH_LLAMA_SHAPE, TINY_LLAMA_SHAPE } from './shapes.js';

const { values } = parseArgs({
  options: {
    threads: { type: 'string', default: '0' },
    runs: { type: 'string', default: '7' },
    device: { type: 'string', default: 'cpu' },
    batch: { type: 'string', default: '4' },
    seq: { type: 'string', default: '256' },
    'table-out': { type: 'string' },
    shape: { type: 'string', default: 'bench' },
  },
});
const threads = Number(values.threads);
const runs = Number(values.runs);
const device = values.device as Device;
const B = Number(values.batch);
const S = Number(values.seq);

// `--shape tiny` is for smoke tests only (npm run bench -- --quick); its numbers mean nothing.
const shape = values.shape === 'tiny' ? TINY_LLAMA_SHAPE : BENCH_LLAMA_SHAPE;

async function timeRuns(fn: () => Promise<unknown>, warmup: number, n: number): Promise<number[]> {
  for (let i = 0; i < warmup; i++) await fn();
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await fn();
    times.push((performance.now() - t0) / 1000);
  }
  return times;
}

async function main() {
  const t0 = performance.now();
  const spec = randomLlamaSpec({ ...shape, maxPositions: S, seed: 1 });
  const params = parameterCount(spec);
  const runner = await createRunner(spec, { output: 'nll', device, threads });
  const rng = createRng(2);
  const ids = new BigInt64Array(B * S);
  const targets = new BigInt64Array(B * S);
  for (let i = 0; i < ids.length; i++) {
    ids[i] = BigInt(rng.nextInt(shape.vocabSize));
    targets[i] = BigInt(rng.nextInt(shape.vocabSize));
  }
  const setup = (performance.now() - t0) / 1000;
  const fwdTimes = await timeRuns(() => runner.run({ batch: B, seq: S, ids, targets }), 2, runs);
  const fwdFlops = B * S * forwardFlopsPerToken(spec, S); // every linear plus the full S x S products
  const fwdRate = fwdFlops / median(fwdTimes) / 1e9;
  await runner.release();

  // One large MatMul: [B*S, 768] x [768, 32000] is the model's biggest product; a square 2048^3 is the
  // classic peak probe. Report the faster of the two as the GEMM rate.
  const gemm = async (M: number, K: number, N: number) => {
    const g = new GraphBuilder();
    const a = g.input('a', 'float32', [M, K]);
    const w = new Float32Array(K * N);
    for (let i = 0; i < w.length; i++) w[i] = rng.nextFloat() - 0.5;
    const bName = g.initializer('b', { type: 'float32', dims: [K, N], data: w });
    g.node('MatMul', [a, bName], {}, { outputs: ['c'] });
    g.output('c', 'float32', [M, N]);
    const engine = await createEngine(g.encode({ opset: 17 }), { device, threads });
    const aData = new Float32Array(M * K);
    for (let i = 0; i < aData.length; i++) aData[i] = rng.nextFloat() - 0.5;
    const times = await timeRuns(
      () => engine.run({ a: { type: 'float32', dims: [M, K], data: aData } }),
      2,
      runs,
    );
    await engine.release();
    return (2 * M * K * N) / median(times) / 1e9;
  };
  const gemmSquare = await gemm(2048, 2048, 2048);
  const gemmHead = await gemm(B * S, shape.hiddenSize, shape.vocabSize);
  const gemmRate = Math.max(gemmSquare, gemmHead);

  const lines = [
    `model       random LLaMA shape: ${shape.numLayers} layers, d ${shape.hiddenSize}, ${shape.numHeads} heads, SwiGLU ${shape.intermediateSize}, vocab ${shape.vocabSize} (${(params / 1e6).toFixed(1)}M parameters)`,
    `device      ${device}, threads ${threads || 'ORT default (all physical cores)'}, setup ${setup.toFixed(1)} s`,
    `forward     B=${B} S=${S}, NLL in-graph: median ${(median(fwdTimes) * 1000).toFixed(1)} ms over ${runs} runs, ${(fwdFlops / 1e9).toFixed(1)} GFLOP -> ${fwdRate.toFixed(1)} GFLOP/s`,
    `matmul      2048^3: ${gemmSquare.toFixed(1)} GFLOP/s; ${B * S}x${shape.hiddenSize}x${shape.vocabSize}: ${gemmHead.toFixed(1)} GFLOP/s`,
    `ratio       forward / matmul = ${(fwdRate / gemmRate).toFixed(3)}`,
  ];
  console.log(lines.join('\n'));
  if (values['table-out']) {
    // The ratio is over the faster of the two products, as above; the head-shaped one gets a row when it won.
    const rows = [
      '| | GFLOP/s |',
      '|---|---|',
      `| forward (${(fwdFlops / 1e9).toFixed(0)} GFLOP: every linear plus the full S×S attention products) | ${fwdRate.toFixed(1)} |`,
      `| MatMul 2048³ | ${gemmSquare.toFixed(1)} |`,
      ...(gemmHead > gemmSquare
        ? [`| MatMul ${B * S}×${shape.hiddenSize}×${shape.vocabSize} | ${gemmHead.toFixed(1)} |`]
        : []),
      `| **ratio** | **${(fwdRate / gemmRate).toFixed(2)}** (target ≥ 0.85) |`,
    ];
    writeFileSync(values['table-out'], `${rows.join('\n')}\n`);
  }
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
