/**
 * End-to-end pruning speed: writes a randomly initialised ~100M-parameter LLaMA-shape checkpoint (12 layers,
 * d 768, 12 heads, SwiGLU 2048, vocab 32000; speed does not depend on the weights), removes a random half of its
 * heads, exports the pruned model, reloads both from disk and times them interleaved in one process.
 *
 *   npm run bench:prune [-- --keep-files --runs 5 --threads N --table-out FILE]
 *
 * `--table-out FILE` writes the manual's table (parameters, bytes, prefill and generation speed, the prefill
 * speedup over the FLOP ratio) to FILE, one value per cell from this run.
 */
import { readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { writeHfFolder } from '../src/checkpoint/hf.js';
import { geneCount } from '../src/masks/heads.js';
import { llamaSpecToHf } from '../src/model/llama.js';
import { loadModelSpec } from '../src/model/load.js';
import { randomLlamaSpec } from '../src/model/random.js';
import { benchModels } from '../src/prune/bench.js';
import { exportModel } from '../src/prune/export.js';
import { randomGenome } from '../src/search/operators.js';
import { createRng } from '../src/util/rng.js';
import { BENCH_LLAMA_SHAPE, TINY_LLAMA_SHAPE } from './shapes.js';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '5' },
    threads: { type: 'string', default: '0' },
    remove: { type: 'string', default: '0.5' },
    dir: { type: 'string', default: join(tmpdir(), 'geneprune-bench-prune') },
    'keep-files': { type: 'boolean', default: false },
    'table-out': { type: 'string' },
    shape: { type: 'string', default: 'bench' },
  },
});

const folderBytes = (dir: string) =>
  readdirSync(dir)
    .filter((f) => f.endsWith('.safetensors'))
    .reduce((a, f) => a + statSync(join(dir, f)).size, 0);

const dense = join(values.dir, 'dense');
const pruned = join(values.dir, 'pruned');
rmSync(values.dir, { recursive: true, force: true });
const t0 = performance.now();
const spec = randomLlamaSpec({
  // `--shape tiny` is for smoke tests only (npm run bench -- --quick); its numbers mean nothing.
  ...(values.shape === 'tiny' ? TINY_LLAMA_SHAPE : BENCH_LLAMA_SHAPE),
  maxPositions: 512,
  seed: 1,
});
const hf = llamaSpecToHf(spec);
await writeHfFolder(dense, { config: hf.config, tensors: hf.tensors });
const a = await loadModelSpec(dense);
const genes = geneCount(a.config);
const genome = randomGenome(genes, Math.round(Number(values.remove) * genes), createRng(7));
await exportModel({ spec: a, genome, out: pruned, format: 'hf' });
const b = await loadModelSpec(pruned);
console.error(`checkpoints written and reloaded in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

const opts = {
  batch: 4,
  seq: 256,
  prompt: 16,
  generate: 32,
  runs: Number(values.runs),
  warmup: 1,
  threads: Number(values.threads),
  seed: 0,
};
const [sa, sb] = await benchModels(a, b, opts, (l) => console.error(l));
const prefill = sb.prefillTokensPerSecond / sa.prefillTokensPerSecond;
const gen = sb.generateTokensPerSecond / sa.generateTokensPerSecond;
const flops = sa.flopsPerToken / sb.flopsPerToken;
const lines = [
  `heads kept   ${b.config.headsPerLayer.reduce((x, y) => x + y, 0)}/${genes} (per layer ${b.config.headsPerLayer.join(' ')})`,
  `parameters   ${sa.parameters} -> ${sb.parameters}`,
  `bytes        ${folderBytes(dense)} -> ${folderBytes(pruned)} (model.safetensors, fp32)`,
  `prefill      ${sa.prefillTokensPerSecond.toFixed(0)} -> ${sb.prefillTokensPerSecond.toFixed(0)} tokens/s (B=4 S=256, median of ${opts.runs})`,
  `generation   ${sa.generateTokensPerSecond.toFixed(1)} -> ${sb.generateTokensPerSecond.toFixed(1)} tokens/s (KV cache, 32 tokens after 16)`,
  `speedup      prefill ${prefill.toFixed(3)}x, generation ${gen.toFixed(3)}x; FLOP ratio ${flops.toFixed(3)}x`,
  `prefill speedup / FLOP ratio = ${(prefill / flops).toFixed(3)}`,
];
console.log(lines.join('\n'));
if (values['table-out']) {
  const n = (x: number) => x.toLocaleString('en-US');
  const rows = [
    `| | dense | ${Math.round(Number(values.remove) * 100)} % heads removed |`,
    '|---|---|---|',
    `| parameters | ${n(sa.parameters)} | ${n(sb.parameters)} |`,
    `| model.safetensors bytes | ${n(folderBytes(dense))} | ${n(folderBytes(pruned))} |`,
    `| prefill tokens/s (B=4, S=256) | ${sa.prefillTokensPerSecond.toFixed(0)} | ${sb.prefillTokensPerSecond.toFixed(0)} |`,
    `| **prefill speedup / FLOP ratio (${flops.toFixed(3)}x)** | | **${(prefill / flops).toFixed(2)}** (target ≥ 0.9) |`,
    `| generation tokens/s (KV cache) | ${sa.generateTokensPerSecond.toFixed(0)} | ${sb.generateTokensPerSecond.toFixed(0)} |`,
  ];
  writeFileSync(values['table-out'], `${rows.join('\n')}\n`);
}
if (!values['keep-files']) rmSync(values.dir, { recursive: true, force: true });
