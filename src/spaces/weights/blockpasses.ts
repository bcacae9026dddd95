/**
 * Passes through single blocks that the weight searches share: the hidden states leaving a block under its fixed
 * masks (what the next block's suffix graph is fed), statistics of a block's linear inputs (Σ X_j² for Wanda
 * scores, XᵀX for recovery) and the recovery of a block's kept weights under its masks (`--recover`, as
 * prune/sequential.ts does it); also alloc's one capture of every linear's input norms on the dense model.
 */
import { archOf } from '../../arch/registry.js';
import { runBlock, statOf } from '../../engine/blocks.js';
import type { OrtGemm } from '../../engine/gemm.js';
import { createRunner, longestRow, type TokenBatch } from '../../engine/runner.js';
import type { Device } from '../../engine/session.js';
import type { CapturePoint } from '../../graph/capture.js';
import { type ModelSpec, memoryTensor, type TensorSource } from '../../model/spec.js';
import { factorGramWith, type GramFactor, recoverLinear } from '../../prune/recover.js';

/** The hidden states leaving block `layer` with its matrices masked by `masks` (input `hidden` past block 0). */
export async function advanceHidden(
  spec: ModelSpec,
  layer: number,
  list: readonly TokenBatch[],
  hidden: readonly Float32Array[] | undefined,
  masks: ReadonlyMap<string, Uint8Array>,
  engine: { device?: Device; threads?: number } = {},
): Promise<Float32Array[]> {
  const block = await createRunner(spec, {
    ...engine,
    output: 'hidden',
    maxSeq: longestRow(list),
    layers: [layer, layer + 1],
    weightMasks: [...masks.keys()],
  });
  const pass = await runBlock(block, list, {
    ...(hidden ? { hidden } : {}),
    masks: { weightMasks: new Map(masks) },
  }).finally(() => block.release());
  return pass.hidden!;
}

/** A block's recovery inputs: per capture point, the Gram matrix of its input and that matrix's factor. */
export interface BlockGrams {
  layer: number;
  points: Map<string, { gram: Float64Array; factor: GramFactor }>;
}

/**
 * The Gram matrices of block l's linear inputs captured on `hidden` (earlier blocks already pruned and recovered,
 * the block itself dense — as prune/sequential.ts captures them), each factored once.
 */
export async function captureBlockGrams(
  spec: ModelSpec,
  l: number,
  batches: readonly TokenBatch[],
  hidden: readonly Float32Array[] | undefined,
  damping: number,
  engine: { device?: Device; threads?: number },
  products: OrtGemm,
): Promise<BlockGrams> {
  const points = new Map<string, { gram: Float64Array; factor: GramFactor }>();
  for (const [point, gram] of await captureBlockInputs(spec, l, batches, hidden, 'gram', engine)) {
    const cols = Math.round(Math.sqrt(gram.length));
    points.set(point, { gram, factor: await factorGramWith(gram, cols, damping, products.gemm) });
  }
  return { layer: l, points };
}

/**
 * Statistics of block l's linear inputs (Σ X_j² per input column, or XᵀX), per capture point, on the
 * calibration batches entering it as `hidden`: one pass through the block, dense.
 */
export async function captureBlockInputs(
  spec: ModelSpec,
  l: number,
  batches: readonly TokenBatch[],
  hidden: readonly Float32Array[] | undefined,
  kind: 'sqnorm' | 'gram',
  engine: { device?: Device; threads?: number },
): Promise<Map<CapturePoint, Float64Array>> {
  const capture = await createRunner(spec, {
    ...engine,
    maxSeq: longestRow(batches),
    layers: [l, l + 1],
    output: l === spec.config.numLayers - 1 ? archOf(spec.config).lastBlockOutput(spec.config) : 'hidden',
    capture: { layers: [l], kind },
  });
  const pass = await runBlock(capture, batches, hidden ? { hidden } : {}).finally(() => capture.release());
  const out = new Map<CapturePoint, Float64Array>();
  // The kind's points: an encoder-decoder's decoder blocks add the cross-attention's inputs.
  for (const point of archOf(spec.config).capturePoints) {
    const stat = statOf(pass.stats, l, point);
    if (stat) out.set(point, stat);
  }
  return out;
}

/** The model with block `grams.layer`'s matrices recovered under `masks` (the column walk per linear). */
export async function applyBlockRecovery(
  spec: ModelSpec,
  grams: BlockGrams,
  masks: ReadonlyMap<string, Uint8Array>,
  products: OrtGemm,
): Promise<ModelSpec> {
  const tensors = new Map<string, TensorSource>(spec.tensors);
  const arch = archOf(spec.config);
  for (const point of arch.capturePoints) {
    const at = grams.points.get(point);
    if (!at) continue;
    for (const role of arch.rolesOfCapturePoint(grams.layer, point)) {
      const keep = masks.get(role);
      const src = tensors.get(role);
      if (!keep || !src) continue;
      const [rows, cols] = src.shape;
      const weight = Float32Array.from(await src.load());
      const r = await recoverLinear(weight, keep, at.gram, rows, cols, {
        factor: at.factor,
        gemm: products.gemm,
      });
      tensors.set(role, memoryTensor(src.shape, r.weight));
    }
  }
  return { ...spec, tensors };
}

/**
 * Block l's fixed masks applied and its kept weights recovered as `--recover` does it (prune/sequential.ts).
 * The run's final recovery repeats exactly these steps.
 */
export async function recoverBlock(
  spec: ModelSpec,
  l: number,
  masks: ReadonlyMap<string, Uint8Array>,
  batches: readonly TokenBatch[],
  hidden: readonly Float32Array[] | undefined,
  damping: number,
  engine: { device?: Device; threads?: number },
  products: OrtGemm,
): Promise<ModelSpec> {
  const grams = await captureBlockGrams(spec, l, batches, hidden, damping, engine, products);
  return applyBlockRecovery(spec, grams, masks, products);
}

/** Σ_t X_tj² of every prunable linear's input over `list`, measured in one pass through the dense model. */
export async function denseInputNorms(
  spec: ModelSpec,
  list: readonly TokenBatch[],
  engine: { device?: Device; threads?: number } = {},
): Promise<Map<string, Float64Array>> {
  const L = spec.config.numLayers;
  const runner = await createRunner(spec, {
    ...engine,
    output: 'nll',
    maxSeq: longestRow(list),
    capture: { layers: Array.from({ length: L }, (_, l) => l), kind: 'sqnorm' },
  });
  const pass = await runBlock(runner, list).finally(() => runner.release());
  const norms = new Map<string, Float64Array>();
  const arch = archOf(spec.config);
  for (let l = 0; l < L; l++) {
    for (const point of arch.capturePoints) {
      const stat = statOf(pass.stats, l, point);
      if (!stat) continue;
      for (const role of arch.rolesOfCapturePoint(l, point)) norms.set(role, stat);
    }
  }
  return norms;
}
