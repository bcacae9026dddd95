/**
 * The queue's per-candidate mask work (queue/jobs.ts): encodeMasks packs every weight mask of a candidate to
 * bits before it is posted, decodeMasks unpacks it in the worker. Timed on one transformer block of the
 * SmolLM2-135M shape (q, k, v, o, gate, up, down: 3.5 M mask entries), half the entries pruned at random, so the
 * cost can be set against one evaluation of that shape (docs/tables/workers.md: about 0.3 s).
 *
 *   node --import tsx bench/maskpack.ts [--repeats 20]
 */
import { parseArgs } from 'node:util';
import { decodeMasks, encodeMasks } from '../src/queue/jobs.js';
import { createRng } from '../src/util/rng.js';

const { values } = parseArgs({ options: { repeats: { type: 'string', default: '20' } } });
const repeats = Number(values.repeats);
const D = 576;
const KV = 192;
const I = 1536;
const shapes: Array<[string, number]> = [
  ['q', D * D],
  ['k', D * KV],
  ['v', D * KV],
  ['o', D * D],
  ['gate', D * I],
  ['up', D * I],
  ['down', I * D],
];
const rng = createRng(1);
const weightMasks = new Map(
  shapes.map(([role, n]) => [role, Uint8Array.from({ length: n }, () => (rng.nextFloat() < 0.5 ? 0 : 1))]),
);
const entries = shapes.reduce((a, [, n]) => a + n, 0);

/** The median of `repeats` timings of f, in ms. */
function median(f: () => unknown): number {
  const ms: number[] = [];
  for (let i = 0; i < repeats + 2; i++) {
    const t0 = performance.now();
    f();
    if (i >= 2) ms.push(performance.now() - t0); // two warm-up runs
  }
  return ms.sort((a, b) => a - b)[Math.floor(ms.length / 2)];
}

const encoded = encodeMasks({ weightMasks });
const back = decodeMasks(encoded, 'bench');
for (const [role, m] of weightMasks) {
  if (!Buffer.from(m).equals(Buffer.from(back.weightMasks!.get(role)!)))
    throw new Error(`${role}: round trip differs`);
}
console.log(
  JSON.stringify({
    entries,
    encodeMs: Number(median(() => encodeMasks({ weightMasks })).toFixed(2)),
    decodeMs: Number(median(() => decodeMasks(encoded, 'bench')).toFixed(2)),
    jsonBytes: JSON.stringify(encoded).length,
  }),
);
