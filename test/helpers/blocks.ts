/**
 * What the block-graph tests (test/graph/blocks.test.ts, encoder-blocks.test.ts, test/engine/blocks.test.ts,
 * test/spaces/structured-scores.test.ts) share: the prunable linears of a spec and random masks on them, a chain of block graphs run one
 * after the other, a spec's weights loaded by role, padded encoder batches and the real tokens of padded batches.
 */
import assert from 'node:assert/strict';
import { createRunner, type RunnerOptions, type TokenBatch } from '../../src/engine/runner.js';
import type { ModelSpec } from '../../src/model/spec.js';
import type { Rng } from '../../src/util/rng.js';

/** The roles of every attention and MLP linear weight. */
export const linearRoles = (spec: ModelSpec): string[] =>
  [...spec.tensors.keys()].filter((r) => /^layers\.\d+\.(attn|mlp)\.\w+\.weight$/.test(r));

/** A keep mask for every linear of `spec`, each weight dropped with probability `drop`, drawn from `rng` role by role. */
export function randomWeightMasks(spec: ModelSpec, rng: Rng, drop: number): Map<string, Uint8Array> {
  const weightMasks = new Map<string, Uint8Array>();
  for (const role of linearRoles(spec)) {
    const n = spec.tensors.get(role)!.shape.reduce((a, b) => a * b, 1);
    weightMasks.set(
      role,
      Uint8Array.from({ length: n }, () => (rng.nextFloat() < drop ? 0 : 1)),
    );
  }
  return weightMasks;
}

/**
 * Runs blocks [0, cuts[0]) → … → [cuts.at(-1), L), each fed the one before's hidden states, and returns the last
 * block's main output; checks each block covers the layers asked and hands on a hidden state of the right size.
 */
export async function composedBlocks(
  spec: ModelSpec,
  cuts: number[],
  base: RunnerOptions,
  batch: TokenBatch,
  masks: { headMask: Float32Array; weightMasks: Map<string, Uint8Array> },
): Promise<Float32Array> {
  const bounds = [0, ...cuts, spec.config.numLayers];
  let hidden: Float32Array | undefined;
  for (let k = 0; k + 1 < bounds.length; k++) {
    const last = k + 2 === bounds.length;
    const runner = await createRunner(spec, {
      ...base,
      output: last ? base.output : 'hidden',
      layers: [bounds[k], bounds[k + 1]],
    });
    assert.deepEqual(runner.layers, [bounds[k], bounds[k + 1]]);
    const out = await runner.run({ ...batch, hidden }, masks);
    await runner.release();
    if (last) return out;
    assert.equal(out.length, batch.batch * batch.seq * spec.config.hiddenSize);
    hidden = out;
  }
  throw new Error('unreachable');
}

/** Every tensor of `spec`, loaded, by role. */
export async function weightsOf(spec: ModelSpec): Promise<Map<string, Float32Array>> {
  const w = new Map<string, Float32Array>();
  for (const [role, t] of spec.tensors) w.set(role, await t.load());
  return w;
}

/** The real tokens of each row of each batch. */
export function rowsOf(list: readonly TokenBatch[]): number[][] {
  const rows: number[][] = [];
  for (const b of list) {
    for (let r = 0; r < b.batch; r++) {
      const row: number[] = [];
      for (let t = 0; t < b.seq; t++) if (b.valid![r * b.seq + t]) row.push(Number(b.ids[r * b.seq + t]));
      rows.push(row);
    }
  }
  return rows;
}

/**
 * `rows` right-padded to `seq` with `pad` as one encoder batch: ids, token types where a row gives them (0
 * elsewhere), and an attention mask and `valid` of 1 on the real tokens.
 */
export function paddedEncoderBatch(
  rows: ReadonlyArray<{ ids: readonly number[]; types?: readonly number[] }>,
  seq: number,
  pad: number,
): TokenBatch {
  const n = rows.length * seq;
  const batch: TokenBatch = {
    batch: rows.length,
    seq,
    ids: new BigInt64Array(n).fill(BigInt(pad)),
    typeIds: new BigInt64Array(n),
    attentionMask: new BigInt64Array(n),
    valid: new Uint8Array(n),
  };
  rows.forEach((r, b) => {
    r.ids.forEach((id, t) => {
      batch.ids[b * seq + t] = BigInt(id);
      if (r.types) batch.typeIds![b * seq + t] = BigInt(r.types[t]);
      batch.attentionMask![b * seq + t] = 1n;
      batch.valid![b * seq + t] = 1;
    });
  });
  return batch;
}
