/**
 * Recovery after a structured removal (issue #23, `structured --recover`): with a plan's units fixed, the o
 * projection of each layer is refitted over the kept heads' attention outputs and the down projection over the
 * kept MLP channels' activations, so that each pruned block's output stays as close as a linear map of what it
 * kept can make it to the dense weights' output on the same inputs. The plan never changes: removed heads' o
 * columns and removed channels' down columns are zero in the result, so the recovered model computes the same
 * with or without the plan's masks. Skipped blocks are not refitted (their output is not added at all), nor is a
 * block that removes nothing, nor one that keeps no unit and has no bias.
 *
 * The refit is the damped least squares of prune/recover.ts walked with the removed columns first, which is its
 * exact solution for a mask of whole columns: ŵ_K = w_K + (H_KK + δI)⁻¹ H_KR w_R for each row, with H = XᵀX over
 * the calibration tokens and δ = RECOVERY_DAMPING · mean(diag H) — i.e. min ‖X_K ŵ_K − X w‖² + δ‖ŵ_K − w_K‖²
 * (ridge towards the dense weights). The target is the projection's own output: in families with a norm after
 * the block (Gemma's sandwich norms) that is the block's output before that norm, which the refit cannot see
 * through. Where the projection carries a bias (GPT-2, BERT, OPT), the bias is refitted
 * with the weight as an intercept column: X gains a column of ones, H the column sums and the token count, w the
 * bias, and the same walk runs on [W | b] (the intercept is damped as any other input, towards the dense bias).
 *
 * `refit: 'flap-bias'` is FLAP's bias compensation instead: the kept weights stay as they are and only the bias
 * moves, b̂ = b + W_R · mean(X_R) over the calibration tokens — the least-squares intercept with the kept weights
 * fixed, so it never increases the block-output error either. It needs a bias to hold the compensation: only
 * projections that have one are changed (a LLaMA-family o / down has none, and its graphs and exports carry none).
 *
 * Inputs: sequential (the default, `inputs: 'sequential'`). Layer l's statistics are captured on the model whose
 * layers < l are already pruned (the plan's masks) and recovered, and down's on layer l's attention as the plan
 * leaves it with o already refitted, so every refit sees the inputs its projection will see in the pruned model —
 * as SparseGPT-style layer-wise methods do. 'dense' captures every statistic on the dense model (one pass per
 * layer). On stories260K (docs/structured.md, "Recovery") sequential recovered more of the lost perplexity, so
 * `structured --recover` uses it; 'dense' stays for that comparison.
 */

import { archOf } from '../arch/registry.js';
import { enterBlock, runBlock, statOf } from '../engine/blocks.js';
import { createOrtGemm, type Gemm, plainGemm } from '../engine/gemm.js';
import { type CandidateMasks, createRunner, type RunnerOutput, type TokenBatch } from '../engine/runner.js';
import type { Device } from '../engine/session.js';
import { GenepruneError } from '../errors.js';
import { sumName } from '../graph/capture.js';
import { checkPlan, type StructuredPlan, structuredMasksOf } from '../masks/structured.js';
import { intermediateOf, type ModelSpec, memoryTensor, type TensorSource } from '../model/spec.js';
import { prunedColumnsFirst, RECOVERY_DAMPING, recoverLinear } from './recover.js';

export { RECOVERY_DAMPING };

/** Where each layer's calibration inputs come from (see the module comment). */
export type RecoveryInputs = 'sequential' | 'dense';

/** What is refitted: the kept weights and bias by least squares, or FLAP's bias compensation alone. */
export type StructuredRefit = 'least-squares' | 'flap-bias';

export interface StructuredRecoveryOptions {
  /** Calibration batches with targets (recoveryBatches of runs/data.ts). */
  batches: readonly TokenBatch[];
  damping?: number;
  inputs?: RecoveryInputs;
  /** 'least-squares' (default: weights and bias) or 'flap-bias' (FLAP's bias compensation alone). */
  refit?: StructuredRefit;
  device?: Device;
  threads?: number;
  /** Called after each layer. */
  onLayer?: (layer: number, layers: number) => void;
}

/** One refitted projection: Σ_tokens ‖block output − dense block output‖² of the masked and the refitted one. */
export interface StructuredRecoveryLinear {
  layer: number;
  /** 'o' (attention) or 'down' (MLP). */
  projection: 'o' | 'down';
  role: string;
  /** The bias role refitted with it, where the projection has one. */
  bias?: string;
  /** Heads (o) or channels (down) removed and kept in this layer. */
  removed: number;
  kept: number;
  maskedError: number;
  recoveredError: number;
  /** False when the refit was not better than masking alone (the masked weights are kept). */
  recovered: boolean;
}

export interface StructuredRecoveryResult {
  /** The model with the refitted projections (and biases) in memory; every other tensor its own. */
  spec: ModelSpec;
  /** The roles replaced (weights and biases). */
  roles: string[];
  linears: StructuredRecoveryLinear[];
  /** Batch passes through a block. */
  forwardPasses: number;
}

/** What a layer refits under a plan: the kept input columns of o and of down, or undefined for none. */
interface LayerWork {
  o?: { keep: Uint8Array; removed: number; kept: number };
  down?: { keep: Uint8Array; removed: number; kept: number };
}

function biasRole(role: string): string {
  return role.replace(/\.weight$/, '.bias');
}

/** The projections a plan leaves to refit in each layer (see the module comment for which are skipped). */
function planWork(
  spec: ModelSpec,
  plan: StructuredPlan,
  refit: StructuredRefit = 'least-squares',
): LayerWork[] {
  const c = spec.config;
  const arch = archOf(c);
  const work: LayerWork[] = [];
  for (let l = 0; l < c.numLayers; l++) {
    const w: LayerWork = {};
    const heads = c.headsPerLayer[l];
    const hasBias = (point: 'o_in' | 'down_in') =>
      spec.tensors.has(biasRole(arch.rolesOfCapturePoint(l, point)[0]));
    if (!plan.skipAttention[l] && heads > 0 && plan.heads[l].length < heads) {
      const keep = new Uint8Array(heads * c.headDim);
      for (const h of plan.heads[l]) keep.fill(1, h * c.headDim, (h + 1) * c.headDim);
      if (refit === 'flap-bias' ? hasBias('o_in') : plan.heads[l].length > 0 || hasBias('o_in'))
        w.o = { keep, removed: heads - plan.heads[l].length, kept: plan.heads[l].length };
    }
    const width = intermediateOf(c, l);
    if (!plan.skipMlp[l] && width > 0 && plan.channels[l].length < width) {
      const keep = new Uint8Array(width);
      for (const j of plan.channels[l]) keep[j] = 1;
      if (refit === 'flap-bias' ? hasBias('down_in') : plan.channels[l].length > 0 || hasBias('down_in'))
        w.down = { keep, removed: width - plan.channels[l].length, kept: plan.channels[l].length };
    }
    work.push(w);
  }
  return work;
}

/** Whether the plan leaves anything to refit (a plan removing nothing, or only whole blocks, does not). */
export function planNeedsRecovery(
  spec: ModelSpec,
  plan: StructuredPlan,
  refit: StructuredRefit = 'least-squares',
): boolean {
  checkPlan(spec.config, plan);
  return planWork(spec, plan, refit).some((w) => w.o || w.down);
}

/** Whether the model's o and down projections carry biases (what FLAP's compensation is added to). */
export function hasProjectionBiases(spec: ModelSpec): boolean {
  const arch = archOf(spec.config);
  return (['o_in', 'down_in'] as const).every((point) =>
    spec.tensors.has(biasRole(arch.rolesOfCapturePoint(0, point)[0])),
  );
}

/**
 * FLAP's bias compensation of one projection [rows, cols]: the removed columns zeroed, the kept ones unchanged, and
 * b̂ = b + W_R · mean(X_R), mean = column sums / tokens. Errors as refitProjection's, on H' with the intercept.
 */
export async function compensateBias(
  weight: Float32Array,
  bias: Float32Array,
  keepCols: Uint8Array,
  stats: { gram: Float64Array; sums: Float64Array; tokens: number },
  gemm: Gemm = plainGemm,
): Promise<{ weight: Float32Array; bias: Float32Array; maskedError: number; error: number }> {
  const cols = keepCols.length;
  const rows = bias.length;
  if (weight.length !== rows * cols)
    throw new GenepruneError('internal', `weight of ${weight.length} for ${rows}×${cols}`);
  const outW = weight.map((v, i) => (keepCols[i % cols] ? v : 0));
  const outB = Float32Array.from(bias);
  const shift = new Float64Array(rows);
  if (stats.tokens > 0) {
    for (let r = 0; r < rows; r++) {
      let acc = 0;
      for (let j = 0; j < cols; j++) if (!keepCols[j]) acc += weight[r * cols + j] * stats.sums[j];
      shift[r] = acc / stats.tokens;
      outB[r] = bias[r] + shift[r];
    }
  }
  // Σ_rows dᵀ H' d with d = [w_R (kept: 0), b − b̂]: the block-output error over the calibration tokens.
  const n = cols + 1;
  const h = new Float64Array(n * n);
  for (let i = 0; i < cols; i++) {
    h.set(stats.gram.subarray(i * cols, (i + 1) * cols), i * n);
    h[i * n + cols] = stats.sums[i];
    h[cols * n + i] = stats.sums[i];
  }
  h[cols * n + cols] = stats.tokens;
  const error = async (withShift: boolean) => {
    const d = new Float64Array(rows * n);
    for (let r = 0; r < rows; r++) {
      for (let j = 0; j < cols; j++) if (!keepCols[j]) d[r * n + j] = weight[r * cols + j];
      d[r * n + cols] = withShift ? -(outB[r] - bias[r]) : 0;
    }
    const dh = await gemm(d, rows, n, h, n);
    let total = 0;
    for (let i = 0; i < d.length; i++) total += dh[i] * d[i];
    return total;
  };
  return { weight: outW, bias: outB, maskedError: await error(false), error: await error(true) };
}

/**
 * The plan's masks with layer `layer`'s heads (o) or channels (down) all on: the statistics of a projection's
 * input are captured before its own units are removed, since its dense output is the target.
 */
function masksOpening(
  base: ReturnType<typeof structuredMasksOf>,
  spec: ModelSpec,
  layer: number,
  what: 'o' | 'down',
): CandidateMasks {
  const c = spec.config;
  const L = c.numLayers;
  if (what === 'o') {
    const headMask = Float32Array.from(base.headMask);
    const maxHeads = headMask.length / L;
    headMask.fill(1, layer * maxHeads, (layer + 1) * maxHeads);
    return { headMask, channelMask: base.channelMask, blockMask: base.blockMask };
  }
  const channelMask = Float32Array.from(base.channelMask);
  const maxWidth = channelMask.length / L;
  channelMask.fill(1, layer * maxWidth, (layer + 1) * maxWidth);
  return { headMask: base.headMask, channelMask, blockMask: base.blockMask };
}

/**
 * The damped least-squares refit of one projection [rows, cols] under a keep-mask of its input columns, with the
 * bias as an intercept column when `bias` is given: H' = [[H, s], [sᵀ, n]] for the Gram matrix H, the column sums
 * s and the token count n (see the module comment).
 */
export async function refitProjection(
  weight: Float32Array,
  bias: Float32Array | undefined,
  keepCols: Uint8Array,
  stats: { gram: Float64Array; sums?: Float64Array; tokens: number },
  opts: { damping?: number; gemm?: Gemm } = {},
): Promise<{
  weight: Float32Array;
  bias?: Float32Array;
  maskedError: number;
  error: number;
  recovered: boolean;
}> {
  const cols = keepCols.length;
  const rows = weight.length / cols;
  if (!Number.isInteger(rows))
    throw new GenepruneError('internal', `weight of ${weight.length} for ${cols} inputs`);
  const n = bias ? cols + 1 : cols;
  const w = new Float32Array(rows * n);
  const keep = new Uint8Array(rows * n);
  for (let r = 0; r < rows; r++) {
    w.set(weight.subarray(r * cols, (r + 1) * cols), r * n);
    keep.set(keepCols, r * n);
    if (bias) {
      w[r * n + cols] = bias[r];
      keep[r * n + cols] = 1;
    }
  }
  let h = stats.gram;
  if (bias) {
    if (!stats.sums) throw new GenepruneError('internal', 'a biased projection needs its input column sums');
    h = new Float64Array(n * n);
    for (let i = 0; i < cols; i++) {
      h.set(stats.gram.subarray(i * cols, (i + 1) * cols), i * n);
      h[i * n + cols] = stats.sums[i];
      h[cols * n + i] = stats.sums[i];
    }
    h[cols * n + cols] = stats.tokens;
  }
  const r = await recoverLinear(w, keep, h, rows, n, {
    damping: opts.damping ?? RECOVERY_DAMPING,
    order: prunedColumnsFirst(keep, rows, n),
    ...(opts.gemm ? { gemm: opts.gemm } : {}),
  });
  if (!bias) return { weight: r.weight, maskedError: r.maskedError, error: r.error, recovered: r.recovered };
  const outW = new Float32Array(rows * cols);
  const outB = new Float32Array(rows);
  for (let i = 0; i < rows; i++) {
    outW.set(r.weight.subarray(i * n, i * n + cols), i * cols);
    outB[i] = r.weight[i * n + cols];
  }
  return { weight: outW, bias: outB, maskedError: r.maskedError, error: r.error, recovered: r.recovered };
}

/** The plan's o and down projections refitted layer by layer (see the module comment). */
export async function recoverStructuredRemoval(
  spec: ModelSpec,
  plan: StructuredPlan,
  opts: StructuredRecoveryOptions,
): Promise<StructuredRecoveryResult> {
  checkPlan(spec.config, plan);
  if (spec.config.encdec)
    throw new GenepruneError(
      'model',
      'structured recovery covers decoders and encoders, not encoder-decoders',
    );
  const c = spec.config;
  const L = c.numLayers;
  const arch = archOf(c);
  const sequential = (opts.inputs ?? 'sequential') === 'sequential';
  const refitKind = opts.refit ?? 'least-squares';
  const work = planWork(spec, plan, refitKind);
  const planMasks = structuredMasksOf(c, plan);
  const tensors = new Map<string, TensorSource>(spec.tensors);
  const current = (): ModelSpec => ({ ...spec, tensors });
  const engine = { device: opts.device, threads: opts.threads };
  const lastOutput: RunnerOutput = arch.lastBlockOutput(c);
  const linears: StructuredRecoveryLinear[] = [];
  const roles: string[] = [];
  let forwardPasses = 0;
  let hidden: Float32Array[] | undefined;
  let batches = opts.batches;
  const products = await createOrtGemm(engine);

  /** One pass of block l on `model` under `masks`, capturing `points` (with their sums where a bias is refitted). */
  const pass = async (
    model: ModelSpec,
    l: number,
    masks: CandidateMasks | undefined,
    points: Array<'o_in' | 'down_in'>,
  ) => {
    const runner = await createRunner(model, {
      ...engine,
      layers: [l, l + 1],
      output: l === L - 1 ? lastOutput : 'hidden',
      structuredMasks: true,
      ...(points.length ? { capture: { layers: [l], kind: 'gram' as const, points, sums: true } } : {}),
    });
    forwardPasses += batches.length;
    return runBlock(runner, batches, { hidden, ...(masks ? { masks } : {}) }).finally(() => runner.release());
  };

  const refit = async (
    l: number,
    projection: 'o' | 'down',
    stats: Awaited<ReturnType<typeof pass>>['stats'],
  ) => {
    const point = projection === 'o' ? 'o_in' : 'down_in';
    const unit = work[l][projection]!;
    const role = arch.rolesOfCapturePoint(l, point)[0];
    const gram = statOf(stats, l, point);
    if (!gram) throw new GenepruneError('internal', `layer ${l} captured no ${point}`);
    const src = tensors.get(role)!;
    const bRole = biasRole(role);
    const bSrc = tensors.get(bRole);
    const weight = Float32Array.from(await src.load());
    const bias = bSrc ? Float32Array.from(await bSrc.load()) : undefined;
    const sums = stats.sums.get(sumName(l, point));
    const r =
      refitKind === 'flap-bias'
        ? {
            ...(await compensateBias(
              weight,
              bias!,
              unit.keep,
              { gram, sums: sums!, tokens: stats.tokens },
              products.gemm,
            )),
            recovered: true,
          }
        : await refitProjection(
            weight,
            bias,
            unit.keep,
            { gram, sums, tokens: stats.tokens },
            { damping: opts.damping, gemm: products.gemm },
          );
    tensors.set(role, memoryTensor(src.shape, r.weight));
    roles.push(role);
    if (bSrc && r.bias) {
      tensors.set(bRole, memoryTensor(bSrc.shape, r.bias));
      roles.push(bRole);
    }
    linears.push({
      layer: l,
      projection,
      role,
      ...(bSrc ? { bias: bRole } : {}),
      removed: unit.removed,
      kept: unit.kept,
      maskedError: r.maskedError,
      recoveredError: r.error,
      recovered: r.recovered,
    });
  };

  try {
    for (let l = 0; l < L; l++) {
      ({ batches, hidden } = enterBlock(c, l, batches, hidden));
      const w = work[l];
      if (!sequential) {
        // Dense inputs: one pass of the dense block captures both inputs and hands on the dense hidden states.
        const points = [...(w.o ? ['o_in' as const] : []), ...(w.down ? ['down_in' as const] : [])];
        const p = await pass(spec, l, undefined, points);
        if (w.o) await refit(l, 'o', p.stats);
        if (w.down) await refit(l, 'down', p.stats);
        hidden = p.hidden;
      } else {
        if (w.o)
          await refit(
            l,
            'o',
            (await pass(current(), l, masksOpening(planMasks, spec, l, 'o'), ['o_in'])).stats,
          );
        // down's inputs see the layer's attention as the plan leaves it, o refitted.
        if (w.down)
          await refit(
            l,
            'down',
            (await pass(current(), l, masksOpening(planMasks, spec, l, 'down'), ['down_in'])).stats,
          );
        // The layer as the plan leaves it, recovered, hands its output to the next one.
        if (l < L - 1) hidden = (await pass(current(), l, planMasks, [])).hidden;
      }
      opts.onLayer?.(l + 1, L);
    }
  } finally {
    await products.release();
  }
  return { spec: current(), roles, linears, forwardPasses };
}
