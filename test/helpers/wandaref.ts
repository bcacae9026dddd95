/**
 * Plain references the weight-allocation tests (test/spaces/alloc.test.ts, owl.test.ts) check a search's masks
 * against: each prunable linear's input norms captured by the full graph, and per-row Wanda at a given count of
 * removed weights, written from the definition rather than through src/masks/select.ts.
 */
import { accumulateStats, statOf } from '../../src/engine/blocks.js';
import { createRunner, type TokenBatch } from '../../src/engine/runner.js';
import { CAPTURE_POINTS, rolesOfCapturePoint } from '../../src/graph/capture.js';
import type { PrunableMatrix } from '../../src/masks/weights.js';
import type { ModelSpec } from '../../src/model/spec.js';

/** Σ_t X_tj² of every prunable linear's input, by role, captured by the full graph over `list`. */
export async function fullGraphNorms(
  spec: ModelSpec,
  list: readonly TokenBatch[],
): Promise<Map<string, Float64Array>> {
  const L = spec.config.numLayers;
  const runner = await createRunner(spec, {
    output: 'nll',
    capture: { layers: Array.from({ length: L }, (_, l) => l), kind: 'sqnorm' },
  });
  const stats = await accumulateStats(runner, list);
  await runner.release();
  const out = new Map<string, Float64Array>();
  for (let l = 0; l < L; l++)
    for (const p of CAPTURE_POINTS)
      for (const role of rolesOfCapturePoint(l, p)) out.set(role, statOf(stats, l, p)!);
  return out;
}

/**
 * Plain per-row Wanda removing `count` weights of `m` (values `w`, input norms `sq`): the floor(count/rows)
 * lowest |W|·√sq of each row, then one more in the rows whose next score is lowest; ties to the lower index.
 */
export function wandaAtCount(
  w: Float32Array,
  m: PrunableMatrix,
  sq: Float64Array,
  count: number,
): Uint8Array {
  const score = (r: number, j: number) => Math.fround(Math.abs(w[r * m.cols + j]) * Math.sqrt(sq[j]));
  const keep = new Uint8Array(m.rows * m.cols).fill(1);
  const q = Math.floor(count / m.rows);
  const next: Array<[number, number, number]> = [];
  for (let r = 0; r < m.rows; r++) {
    const order = [...Array(m.cols).keys()].sort((a, b) => score(r, a) - score(r, b) || a - b);
    for (let k = 0; k < q; k++) keep[r * m.cols + order[k]] = 0;
    if (q < m.cols) next.push([score(r, order[q]), r, order[q]]);
  }
  next.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  for (let k = 0; k < count - q * m.rows; k++) keep[next[k][1] * m.cols + next[k][2]] = 0;
  return keep;
}
