/**
 * BLEU of stories260K on the TinyStories continuation task, dense and with heads removed: the first table under
 * "The TinyStories continuation task" in docs/tasks-and-metrics.md. The task is built from the evaluation pages
 * in memory (or read with --task, e.g. the file `npm run task:tinystories` writes); continuations are greedy, so
 * the numbers are deterministic.
 *
 *   npm run bleu:tinystories [-- --task FILE --max-new-tokens 48 --batch-size 16 --mask runs/heads-25/mask.json]
 *
 * Rows: dense; 10 and 20 of the 40 heads removed at random (seed 0, the same heads every run); every --mask file.
 */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import {
  buildContinuationTask,
  createRng,
  type EvaluateBleuOptions,
  evaluateBleu,
  GenepruneError,
  type GenerationTask,
  openModel,
} from '../src/index.js';

const { values } = parseArgs({
  options: {
    shared: { type: 'string', default: resolve('..', 'shared') },
    task: { type: 'string' },
    'max-new-tokens': { type: 'string', default: '48' },
    'batch-size': { type: 'string', default: '16' },
    threads: { type: 'string' },
    seed: { type: 'string', default: '0' },
    mask: { type: 'string', multiple: true, default: [] },
  },
});

const modelPath = join(values.shared, 'models/stories260K/stories260K.bin');
const evalPages = join(values.shared, 'data/tinystories/eval');
for (const p of [modelPath, values.task ?? evalPages]) {
  if (!existsSync(p)) {
    console.error(`bleu: ${p} is missing`);
    process.exit(1);
  }
}

/** k distinct [layer, head] pairs drawn with the seeded rng (partial Fisher–Yates over all heads). */
function randomHeads(layers: number, heads: number, k: number, seed: number): [number, number][] {
  const rng = createRng(seed);
  const all = Array.from({ length: layers * heads }, (_, i) => i);
  for (let i = 0; i < k; i++) {
    const j = i + rng.nextInt(all.length - i);
    [all[i], all[j]] = [all[j], all[i]];
  }
  return all
    .slice(0, k)
    .sort((a, b) => a - b)
    .map((g) => [Math.floor(g / heads), g % heads]);
}

try {
  const model = await openModel(modelPath);
  const task: string | GenerationTask = values.task ?? (await buildContinuationTask(evalPages));
  const { numLayers, numHeads } = model.spec.config;
  const seed = Number(values.seed);
  const rows: [string, Partial<EvaluateBleuOptions>][] = [
    ['dense', {}],
    [
      `10/40 heads removed at random (seed ${seed})`,
      { pruneHeads: randomHeads(numLayers, numHeads, 10, seed) },
    ],
    [
      `20/40 heads removed at random (seed ${seed})`,
      { pruneHeads: randomHeads(numLayers, numHeads, 20, seed) },
    ],
    ...values.mask.map((m): [string, Partial<EvaluateBleuOptions>] => [`mask ${m}`, { mask: m }]),
  ];
  const maxNewTokens = Number(values['max-new-tokens']);
  console.log(
    `stories260K, ${typeof task === 'string' ? task : `${task.items.length} items from ${evalPages}`}, ` +
      `greedy, at most ${maxNewTokens} new tokens\n`,
  );
  console.log(
    '| model | corpus BLEU (sacreBLEU) | sentence-mean BLEU (GenePrune code) | BP | hyp/ref 13a tokens | forwards | s |',
  );
  console.log('|---|---|---|---|---|---|---|');
  for (const [name, extra] of rows) {
    const r = await evaluateBleu({
      model,
      task,
      maxNewTokens,
      batchSize: Number(values['batch-size']),
      threads: values.threads ? Number(values.threads) : undefined,
      ...extra,
    });
    const c = r.corpus;
    console.log(
      `| ${name} | ${c.score.toFixed(2)} | ${r.sentenceMean.toFixed(2)} | ${c.bp.toFixed(3)} | ` +
        `${c.sysLen}/${c.refLen} | ${r.forwards} | ${r.seconds.toFixed(1)} |`,
    );
  }
} catch (e) {
  console.error(`bleu: ${e instanceof GenepruneError ? e.oneLine() : e}`);
  process.exit(1);
}
