/**
 * 1B-class checkpoints on this machine: random weights of real shapes, written as bf16 safetensors Hugging Face
 * folders (tensor by tensor, so writing never holds the model), with stories260K's tokenizer (512 ids) so the
 * commands can read text. For each shape, in this process: load time, peak RSS, eval tokens/s at ctx 512 and
 * 2048 and the forward's GFLOP/s against one 2048³ MatMul timed right after each forward (median of the per-round ratios). Then, each as a child process with its
 * peak RSS and wall time: `geneprune eval`, `geneprune heads` (short GA) and `geneprune export` (1B shapes).
 *
 *   npm run bench:scale [-- --shapes qwen0.5b,tinyllama1.1b,llama3.2-1b --dir DIR --keep --skip-cli --table-out FILE]
 *
 * `--table-out FILE` writes the manual's two tables from this run (in-process peak RSS, speed and forward/MatMul
 * per shape; the commands' wall time and peak RSS per 1B shape): the "before" numbers in
 * docs/scale-and-precision.md were measured on the old code and are not regenerated.
 *
 * Needs ../shared (tokenizer and TinyStories text). Deletes what it wrote unless --keep.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { writeHfFolder } from '../src/checkpoint/hf.js';
import { peakRssBytes, weightBytesOf } from '../src/engine/memory.js';
import { createRunner } from '../src/engine/runner.js';
import { createEngine } from '../src/engine/session.js';
import { GraphBuilder } from '../src/graph/builder.js';
import { defaultBatchSize } from '../src/metrics/perplexity.js';
import { forwardFlopsPerToken, parameterCount } from '../src/model/cost.js';
import { llamaSpecToHf } from '../src/model/llama.js';
import { loadModelSpec } from '../src/model/load.js';
import { randomLlamaSpec } from '../src/model/random.js';
import { writeTokenizerFiles } from '../src/tokenizer/convert.js';
import { createRng } from '../src/util/rng.js';

const SHAPES = {
  // For smoke tests only (npm run bench -- --quick): seconds, and its numbers mean nothing.
  tiny: {
    modelType: 'llama',
    hiddenSize: 64,
    numLayers: 2,
    numHeads: 4,
    numKvHeads: 2,
    intermediateSize: 128,
    vocabSize: 512,
    tieEmbeddings: false,
    oneB: false,
  },
  'qwen0.5b': {
    modelType: 'qwen2',
    hiddenSize: 896,
    numLayers: 24,
    numHeads: 14,
    numKvHeads: 2,
    intermediateSize: 4864,
    vocabSize: 151936,
    tieEmbeddings: true,
    oneB: false,
  },
  'tinyllama1.1b': {
    modelType: 'llama',
    hiddenSize: 2048,
    numLayers: 22,
    numHeads: 32,
    numKvHeads: 4,
    intermediateSize: 5632,
    vocabSize: 32000,
    tieEmbeddings: false,
    oneB: true,
  },
  'llama3.2-1b': {
    modelType: 'llama',
    hiddenSize: 2048,
    numLayers: 16,
    numHeads: 32,
    numKvHeads: 8,
    intermediateSize: 8192,
    vocabSize: 128256,
    tieEmbeddings: true,
    oneB: true,
  },
} as const;

const { values } = parseArgs({
  options: {
    shapes: { type: 'string', default: 'qwen0.5b,tinyllama1.1b,llama3.2-1b' },
    dir: { type: 'string' },
    keep: { type: 'boolean', default: false },
    'skip-cli': { type: 'boolean', default: false },
    'in-process': { type: 'string' },
    'table-out': { type: 'string' },
  },
});
const REPO = resolve(import.meta.dirname, '..');
const SHARED = resolve(REPO, '..', 'shared');
const gib = (n: number) => (n / 2 ** 30).toFixed(2);
/** The names the manual's tables give the shapes. */
const LABELS: Record<string, string> = {
  tiny: 'tiny (smoke test)',
  'qwen0.5b': 'Qwen2.5-0.5B',
  'tinyllama1.1b': 'TinyLlama-1.1B',
  'llama3.2-1b': 'Llama-3.2-1B',
};
/** The in-process measurements of each shape, and each command's as a child process, for --table-out. */
const measured: Array<{ name: string; inner: Record<string, number> }> = [];
const commands: Array<{ name: string; what: string; code: number | null; seconds: number; peakGiB: number }> =
  [];

function tables(): string {
  const rows = measured.map(({ name, inner: r }) => {
    const target = 1.5 * r.weightGiB + 1e9 / 2 ** 30;
    const peak = `${r.peakRssGiB.toFixed(2)} GiB`;
    return `| ${LABELS[name] ?? name} (${r.weightGiB.toFixed(2)} GiB; ${target.toFixed(2)} GiB) | ${r.peakRssGiB <= target ? `**${peak}**` : peak} | ${r.tokensPerSecond512} / ${r.tokensPerSecond2048} | ${r.forwardOverMatmul512.toFixed(2)} (${r.forwardOverMatmul2048.toFixed(2)}) |`;
  });
  const first = [
    '| shape (fp32 weights; target 1.5x + 1 GB) | peak RSS in-process, ctx 512 and 2048 | tok/s ctx 512 / 2048 | forward / MatMul at ctx 512 (2048) |',
    '|---|---|---|---|',
    ...rows,
  ].join('\n');
  const shapes = [...new Set(commands.map((c) => c.name))];
  if (shapes.length === 0) return `${first}\n`;
  const COMMAND_LABELS: Record<string, string> = {
    eval: '`eval --max-tokens 1024`',
    heads: '`heads` (GA, population 8, 3 generations, 2,048 calibration tokens)',
    export: '`export` (transformers.js + HF)',
  };
  const whats = [...new Set(commands.map((c) => c.what))];
  const second = [
    `| command, as a child process | ${shapes.map((n) => LABELS[n] ?? n).join(' | ')} |`,
    `|---|${shapes.map(() => '---|').join('')}`,
    ...whats.map(
      (what) =>
        `| ${COMMAND_LABELS[what] ?? what} | ${shapes
          .map((n) => {
            const c = commands.find((x) => x.name === n && x.what === what);
            if (!c) return 'n/a';
            return c.code === 0
              ? `${c.seconds.toFixed(0)} s, ${c.peakGiB.toFixed(2)} GiB`
              : `failed (exit ${c.code})`;
          })
          .join(' | ')} |`,
    ),
  ].join('\n');
  return `${first}\n\n${second}\n`;
}

/** One shape measured in a process of its own, so each peak RSS is its own. */
async function inProcess(dir: string): Promise<void> {
  const t0 = performance.now();
  const spec = await loadModelSpec(dir);
  const V = spec.config.vocabSize;
  const results: Record<string, unknown> = {
    parameters: parameterCount(spec),
    weightGiB: Number(gib(weightBytesOf(spec))),
  };
  // The GEMM reference, timed right after each forward (same threads, same moment's load on the machine), so
  // each round's forward/MatMul ratio compares like with like; the medians are reported.
  const N = 2048;
  const g = new GraphBuilder();
  const a = g.input('a', 'float32', [N, N]);
  const b = g.input('b', 'float32', [N, N]);
  g.node('MatMul', [a, b], {}, { outputs: ['c'] });
  g.output('c', 'float32', [N, N]);
  const matmul = await createEngine(g.encode({ opset: 17 }));
  const data = new Float32Array(N * N).fill(0.5);
  const feeds = {
    a: { type: 'float32' as const, dims: [N, N], data },
    b: { type: 'float32' as const, dims: [N, N], data },
  };
  await matmul.run(feeds);
  const matmulSeconds = async () => {
    let best = Number.POSITIVE_INFINITY;
    for (let r = 0; r < 3; r++) {
      const t = performance.now();
      await matmul.run(feeds);
      best = Math.min(best, (performance.now() - t) / 1000);
    }
    return best;
  };
  const median = (xs: number[]) => [...xs].sort((p, q) => p - q)[Math.floor(xs.length / 2)];
  const matmulRates: number[] = [];
  const rng = createRng(1);
  for (const ctx of [512, 2048]) {
    const batch = defaultBatchSize(ctx, V); // what eval would use
    const t1 = performance.now();
    const runner = await createRunner(spec, { output: 'nll' });
    if (ctx === 512) results.loadSeconds = Number(((performance.now() - t0) / 1000).toFixed(1));
    const n = batch * ctx;
    const ids = BigInt64Array.from({ length: n }, () => BigInt(rng.nextInt(V)));
    const targets = BigInt64Array.from({ length: n }, () => BigInt(rng.nextInt(V)));
    await runner.run({ batch, seq: ctx, ids, targets }); // warm-up
    const times: number[] = [];
    const ratios: number[] = [];
    const flops = n * forwardFlopsPerToken(spec, ctx);
    for (let r = 0; r < 3; r++) {
      const t = performance.now();
      await runner.run({ batch, seq: ctx, ids, targets });
      const seconds = (performance.now() - t) / 1000;
      const mm = (2 * N ** 3) / (await matmulSeconds());
      times.push(seconds);
      matmulRates.push(mm);
      ratios.push(flops / seconds / mm);
    }
    await runner.release();
    const best = Math.min(...times);
    results[`tokensPerSecond${ctx}`] = Math.round(n / best);
    results[`batch${ctx}`] = batch;
    results[`gflops${ctx}`] = Math.round(flops / best / 1e9);
    results[`forwardOverMatmul${ctx}`] = Number(median(ratios).toFixed(2));
    results[`sessionSeconds${ctx}`] = Number(((performance.now() - t1) / 1000).toFixed(1));
  }
  await matmul.release();
  results.peakRssGiB = Number(gib(peakRssBytes()));
  results.matmulGflops = Math.round(median(matmulRates) / 1e9);
  process.stdout.write(`${JSON.stringify(results)}\n`);
}

/** Runs a command, sampling nothing: the child's own peak RSS comes from wait4 (resourceUsage of children). */
function child(
  args: string[],
): Promise<{ code: number | null; seconds: number; peakGiB: number; out: string }> {
  const t0 = performance.now();
  return new Promise((done) => {
    // /usr/bin/time is not everywhere; the child reports its own peak through a preload instead.
    const p = spawn(
      process.execPath,
      ['--import', join(REPO, 'bench', 'scale-peak.mjs'), join(REPO, 'dist', 'cli', 'main.js'), ...args],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => {
      out += d;
    });
    p.stderr.on('data', (d) => {
      err += d;
    });
    p.on('close', (code) => {
      const m = /scale-peak-rss (\d+)/.exec(err);
      done({
        code,
        seconds: (performance.now() - t0) / 1000,
        peakGiB: m ? Number(gib(Number(m[1]))) : Number.NaN,
        out: code === 0 ? out.trim().split('\n').at(-1)!.slice(0, 300) : err.slice(-600),
      });
    });
  });
}

async function main() {
  if (values['in-process']) return inProcess(values['in-process']);
  // The commands run the built CLI: find out now, not after the checkpoints are written and measured.
  const cli = join(REPO, 'dist', 'cli', 'main.js');
  const needsCli =
    !values['skip-cli'] && values.shapes.split(',').some((n) => SHAPES[n as keyof typeof SHAPES]?.oneB);
  if (needsCli && !existsSync(cli)) {
    console.error(`scale: ${cli} is missing: run npm run build first (or pass --skip-cli)`);
    process.exit(2);
  }
  const root = values.dir ?? (await mkdtemp(join(tmpdir(), 'geneprune-scale-')));
  const calib = join(SHARED, 'data', 'tinystories', 'calib');
  const evalData = join(SHARED, 'data', 'tinystories', 'eval');
  const rows: string[] = [];
  try {
    for (const name of values.shapes.split(',')) {
      const shape = SHAPES[name as keyof typeof SHAPES];
      if (!shape) throw new Error(`unknown shape ${name}`);
      const dir = join(root, name);
      const t0 = performance.now();
      const spec = randomLlamaSpec({ ...shape, maxPositions: 2048, seed: 1, lazy: true });
      const hf = llamaSpecToHf(spec);
      await writeHfFolder(dir, {
        config: hf.config,
        tensors: hf.tensors,
        dtype: 'BF16',
        shardBytes: 2 ** 31,
      });
      await writeTokenizerFiles(dir, join(SHARED, 'models', 'stories260K', 'tok512.bin'));
      console.error(`${name}: wrote ${dir} in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
      const inner = await new Promise<string>((done, fail) => {
        const p = spawn(
          process.execPath,
          ['--import', 'tsx', join(REPO, 'bench', 'scale.ts'), '--in-process', dir],
          {
            stdio: ['ignore', 'pipe', 'inherit'],
          },
        );
        let out = '';
        p.stdout.on('data', (d) => {
          out += d;
        });
        p.on('close', (code) =>
          code === 0 ? done(out.trim()) : fail(new Error(`${name}: in-process run failed`)),
        );
      });
      console.log(`${name} in-process ${inner}`);
      rows.push(`${name} in-process ${inner}`);
      measured.push({ name, inner: JSON.parse(inner) });
      if (values['skip-cli'] || !shape.oneB) continue;
      const runs: Array<[string, string[]]> = [
        ['eval', ['eval', '--model', dir, '--data', evalData, '--max-tokens', '1024', '--json']],
        [
          'heads',
          [
            'heads',
            '--model',
            dir,
            '--calib',
            calib,
            '--eval',
            evalData,
            '--out',
            join(root, `${name}-run`),
            '--population',
            '8',
            '--generations',
            '3',
            '--calib-tokens',
            '2048',
            '--eval-tokens',
            '2048',
            '--target-sparsity',
            '0.25',
            '--json',
          ],
        ],
        ['export', ['export', '--model', dir, '--out', join(root, `${name}-export`), '--json']],
      ];
      for (const [what, args] of runs) {
        const r = await child(args);
        const line = `${name} ${what}: exit ${r.code}, ${r.seconds.toFixed(0)} s, peak RSS ${r.peakGiB} GiB — ${r.out}`;
        console.log(line);
        rows.push(line);
        commands.push({ name, what, code: r.code, seconds: r.seconds, peakGiB: r.peakGiB });
      }
      if (!values.keep) await rm(join(root, `${name}-export`), { recursive: true, force: true });
    }
  } finally {
    if (!values.keep) await rm(root, { recursive: true, force: true });
  }
  console.log(`\n${rows.join('\n')}`);
  // A table with failed commands in it is not a measurement: no table, and a failing exit.
  const failed = commands.filter((c) => c.code !== 0);
  if (failed.length > 0) {
    console.error(`scale: ${failed.map((c) => `${c.name} ${c.what}`).join(', ')} failed; no table written`);
    process.exitCode = 1;
    return;
  }
  if (values['table-out']) await writeFile(values['table-out'], tables());
}

await main();
