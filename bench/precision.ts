/**
 * Compute precision on CPU: fp32 vs fp16 vs bf16 weights held by ONNX Runtime, on a randomly initialised model of
 * the 134M shape (bench:engine's) — memory (each dtype in a child process of its own, weights drawn lazily so
 * this process holds none: RSS after the session starts and after the first forward), speed (one process, the
 * dtypes interleaved round by round, B×S tokens per forward with the NLL in-graph), and the NLL gap to fp32
 * on the same tokens.
 *
 *   npm run bench:precision [-- --rounds R --batch B --seq S --threads N --dtypes fp32,fp16,bf16]
 */
import { execFileSync } from 'node:child_process';
import { parseArgs } from 'node:util';
import { createRunner, type ModelRunner } from '../src/engine/runner.js';
import type { ComputeDtype } from '../src/graph/weights.js';
import { randomLlamaSpec } from '../src/model/random.js';
import { median } from '../src/prune/bench.js';
import { createRng } from '../src/util/rng.js';
import { BENCH_LLAMA_SHAPE } from './shapes.js';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '7' },
    batch: { type: 'string', default: '4' },
    seq: { type: 'string', default: '256' },
    threads: { type: 'string', default: '0' },
    dtypes: { type: 'string', default: 'fp32,fp16,bf16' },
    child: { type: 'string' },
  },
});
const B = Number(values.batch);
const S = Number(values.seq);
const threads = Number(values.threads);
const dtypes = values.dtypes.split(',') as ComputeDtype[];
const MiB = 2 ** 20;

const spec = () => randomLlamaSpec({ ...BENCH_LLAMA_SHAPE, maxPositions: S, seed: 1, lazy: true });

function tokens() {
  const rng = createRng(2);
  const ids = new BigInt64Array(B * S);
  const targets = new BigInt64Array(B * S);
  for (let i = 0; i < ids.length; i++) {
    ids[i] = BigInt(rng.nextInt(BENCH_LLAMA_SHAPE.vocabSize));
    targets[i] = BigInt(rng.nextInt(BENCH_LLAMA_SHAPE.vocabSize));
  }
  return { batch: B, seq: S, ids, targets };
}

/** One dtype's memory, in a fresh process. */
async function child(dtype: ComputeDtype) {
  const rss0 = process.memoryUsage().rss;
  const runner = await createRunner(spec(), { output: 'nll', dtype, threads });
  const rssSession = process.memoryUsage().rss;
  await runner.run(tokens());
  const rssForward = process.memoryUsage().rss;
  console.log(
    JSON.stringify({
      dtype,
      sessionMiB: (rssSession - rss0) / MiB,
      afterForwardMiB: (rssForward - rss0) / MiB,
      peakRssMiB: (process.resourceUsage().maxRSS * 1024) / MiB,
    }),
  );
}

async function main() {
  if (values.child) return child(values.child as ComputeDtype);
  console.log(
    `model  random LLaMA shape, 134M parameters (536 MB in fp32); forward B=${B} S=${S}, NLL in-graph`,
  );
  console.log('memory (each dtype in its own process; MiB over the process before the session)');
  for (const d of dtypes) {
    const out = execFileSync(
      process.execPath,
      ['--import', 'tsx', 'bench/precision.ts', '--child', d, '--batch', `${B}`, '--seq', `${S}`],
      { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] },
    );
    const r = JSON.parse(out.trim().split('\n').pop()!);
    console.log(
      `  ${d}  session ${r.sessionMiB.toFixed(0)}  after first forward ${r.afterForwardMiB.toFixed(0)}  process peak ${r.peakRssMiB.toFixed(0)}`,
    );
  }
  const batch = tokens();
  const runners = new Map<ComputeDtype, ModelRunner>();
  for (const d of dtypes) runners.set(d, await createRunner(spec(), { output: 'nll', dtype: d, threads }));
  const times = new Map<ComputeDtype, number[]>(dtypes.map((d) => [d, []]));
  const nll = new Map<ComputeDtype, Float32Array>();
  for (const d of dtypes) nll.set(d, await runners.get(d)!.run(batch)); // warm-up
  for (let r = 0; r < Number(values.rounds); r++) {
    for (const d of dtypes) {
      const t0 = performance.now();
      await runners.get(d)!.run(batch);
      times.get(d)!.push((performance.now() - t0) / 1000);
    }
  }
  console.log(`speed (${values.rounds} interleaved rounds; tokens/s median [min–max])`);
  const ref = nll.get('fp32');
  for (const d of dtypes) {
    const t = times.get(d)!;
    const rate = (s: number) => (B * S) / s;
    let gap = '';
    if (ref && d !== 'fp32') {
      const x = nll.get(d)!;
      let maxAbs = 0;
      let sumRef = 0;
      let sum = 0;
      for (let i = 0; i < x.length; i++) {
        maxAbs = Math.max(maxAbs, Math.abs(x[i] - ref[i]));
        sumRef += ref[i];
        sum += x[i];
      }
      gap = `  mean NLL ${(sum / x.length).toFixed(6)} vs fp32 ${(sumRef / x.length).toFixed(6)}, per-token max |Δ| ${maxAbs.toExponential(2)}`;
    }
    console.log(
      `  ${d}  ${rate(median(t)).toFixed(0)} [${rate(Math.max(...t)).toFixed(0)}–${rate(Math.min(...t)).toFixed(0)}]${gap}`,
    );
  }
  for (const r of runners.values()) await r.release();
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
