/**
 * How long recovery with a fixed mask takes on the 134M benchmark shape (random weights, 12 layers, d 768, MLP
 * 2048): Wanda masks at 50 % chosen and the kept weights refitted layer by layer (prune/sequential.ts with
 * prune/recover.ts), against the same walk without recovery, on 2,048 random calibration tokens (ctx 512). Prints
 * the wall time of each and the recovery's share, plus the reconstruction errors summed over all linears.
 *
 *   npm run bench:recover [-- --tokens 2048]
 */
import { parseArgs } from 'node:util';
import type { TokenBatch } from '../src/engine/runner.js';
import { selectPerRow, wandaScores } from '../src/masks/select.js';
import { batches, makeWindows } from '../src/metrics/perplexity.js';
import { randomLlamaSpec } from '../src/model/random.js';
import { type LinearToPrune, pruneSequentially } from '../src/prune/sequential.js';
import { createRng } from '../src/util/rng.js';
import { BENCH_LLAMA_SHAPE } from './shapes.js';

const { values } = parseArgs({ options: { tokens: { type: 'string', default: '2048' } } });
const tokens = Number(values.tokens);
const spec = randomLlamaSpec({ ...BENCH_LLAMA_SHAPE, maxPositions: 512, seed: 1 });
const rng = createRng(2);
const stream = Array.from({ length: tokens + 1 }, () => rng.nextInt(BENCH_LLAMA_SHAPE.vocabSize));
const list: TokenBatch[] = [...batches(makeWindows(stream, 512, tokens, 'random tokens'), 4)];
const wanda = (l: LinearToPrune) =>
  selectPerRow(wandaScores(l.weight, l.rows, l.cols, l.inputSquaredNorms), l.rows, l.cols, 0.5);

for (const recover of [false, true]) {
  const t0 = performance.now();
  let masked = 0;
  let recovered = 0;
  await pruneSequentially(spec, {
    batches: list,
    select: wanda,
    recover,
    onLayer: (r) => {
      for (const l of r.linears) {
        masked += l.maskedError ?? 0;
        recovered += l.recoveredError ?? 0;
      }
      process.stderr.write(
        `layer ${r.layer + 1}/${spec.config.numLayers} at ${((performance.now() - t0) / 1000).toFixed(1)} s\n`,
      );
    },
  });
  const seconds = (performance.now() - t0) / 1000;
  console.log(
    `${recover ? 'wanda 50 % + recovery' : 'wanda 50 %           '}: ${seconds.toFixed(1)} s for ${spec.config.numLayers} layers, ${tokens} calibration tokens${recover ? `; reconstruction error Σ ${masked.toExponential(3)} masked → ${recovered.toExponential(3)} recovered` : ''}`,
  );
}
