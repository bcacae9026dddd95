/**
 * Structured scores: how much each structured unit of a model — an MLP channel, a query head, a whole block —
 * matters, measured on calibration data with one forward pass of the dense model (the capture graphs of
 * graph/capture.ts). The structured searches use them to choose which units a width level keeps, and the no-search
 * baselines (baselines.ts) to choose what to remove.
 *
 * Definitions (X over the calibration tokens, real tokens only):
 * - channel j of layer i: ‖X_j‖₂ · ‖W_down[:, j]‖₂, X the input of down (the intermediate activation) — the
 *   structured form of Wanda's |W|·‖X‖ that FLAP and Wanda-structured use;
 * - head h of layer i: ‖X_h‖_F · ‖W_o[:, cols(h)]‖_F, X_h the head's columns of the input of o (the merged heads),
 *   cols(h) = h·headDim … (h+1)·headDim − 1 — the same idea for a head's slice of o;
 * - block influence (ShortGPT): BI = 1 − mean over tokens of cos(x_in, x_out), x_in the residual stream entering
 *   the block and x_out the stream leaving it, for each whole layer and for its attention and MLP blocks apart.
 *   A block that adds nothing has BI 0; a decoder layer without heads has attention BI 0, and a layer of MLP
 *   width 0 MLP BI 0, where the graph has no such block to measure;
 * - FLAP's fluctuation metric (`fluctuation`): channel j: var(X_j) · ‖W_down[:, j]‖₂², head h: Σ over cols(h) of
 *   var(X_d) · ‖W_o[:, d]‖₂², var the sample variance over the calibration tokens — how far the unit's
 *   contribution strays from its mean, which a bias could restore (FLAP's reading; see docs/structured.md (Baselines)).
 * Norms are of sums over all calibration tokens (not means): only their order within a layer, and their
 * per-layer standardised values, are read.
 *
 * `orders` turns scores into per-layer rankings (descending score, ties by the lower index), so a width level w
 * keeps `keptByScore(order, w)`: the w best, ascending as a StructuredPlan lists them.
 *
 * Encoder-decoders are refused: structured plans cover one stack of self-attention layers.
 */
import { archOf } from '../../arch/registry.js';
import type { ActivationStats } from '../../engine/blocks.js';
import { runBlock, statOf } from '../../engine/blocks.js';
import { createRunner, longestRow, type TokenBatch } from '../../engine/runner.js';
import type { Device } from '../../engine/session.js';
import { GenepruneError } from '../../errors.js';
import { type CapturePoint, cosineName, type ResidualBlock, sumName } from '../../graph/capture.js';
import { intermediateOf, type ModelConfig, type ModelSpec } from '../../model/spec.js';

export interface StructuredScores {
  /** Per layer, one score per MLP channel (empty where the layer has no MLP channels). */
  channels: Float64Array[];
  /** Per layer, one score per query head (empty where the layer has no heads). */
  heads: Float64Array[];
  /** Per layer, block influence of the whole layer, of its attention block and of its MLP block. */
  influence: { layer: number[]; attention: number[]; mlp: number[] };
  /** The calibration tokens measured (Σ of token weights). */
  tokens: number;
  /** FLAP's fluctuation metric per channel and head (see the header); absent without column sums. */
  fluctuation?: { channels: Float64Array[]; heads: Float64Array[] };
}

/** Per layer, unit indices by descending score (ties: lower index first). */
export interface StructuredOrders {
  channels: number[][];
  heads: number[][];
}

/** The weight matrices the scores read, by role ([out, in] layout, as ModelSpec holds them). */
export type WeightOf = (role: string) => Float32Array | undefined;

function refuseEncdec(config: ModelConfig): void {
  if (archOf(config).kind === 'encdec') {
    throw new GenepruneError(
      'model',
      `structured scores cover one stack of self-attention layers; ${config.modelType} is an encoder-decoder`,
    );
  }
}

/** ‖W[:, j]‖₂² for every column j of a [rows, cols] matrix. */
function columnSquares(w: Float32Array, rows: number, cols: number): Float64Array {
  const out = new Float64Array(cols);
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    for (let j = 0; j < cols; j++) out[j] += w[base + j] * w[base + j];
  }
  return out;
}

/**
 * The scores from captured statistics (sqnorm of o_in and down_in, and the residual cosines of every layer) and
 * the weights of o and down. Pure: the capture is `structuredScores`' business, so this part is tested on its own.
 */
export function scoresFromStats(
  config: ModelConfig,
  stats: ActivationStats,
  weightOf: WeightOf,
): StructuredScores {
  refuseEncdec(config);
  if (stats.kind !== 'sqnorm') throw new Error(`structured scores read sqnorm statistics, not ${stats.kind}`);
  const L = config.numLayers;
  const hd = config.headDim;
  const D = config.hiddenSize;
  const need = (role: string, rows: number, cols: number): Float32Array => {
    const w = weightOf(role);
    if (!w) throw new GenepruneError('model', `structured scores need the weight ${role}`);
    if (w.length !== rows * cols) {
      throw new Error(`structured scores: ${role} has ${w.length} entries, expected [${rows}, ${cols}]`);
    }
    return w;
  };
  const stat = (i: number, point: 'o_in' | 'down_in', width: number): Float64Array => {
    const s = statOf(stats, i, point);
    if (!s || s.length !== width) {
      throw new Error(`structured scores: stats.${i}.${point} missing or not ${width} wide`);
    }
    return s;
  };
  const N = stats.tokens;
  const sums = (i: number, point: CapturePoint): Float64Array | undefined =>
    stats.sums.get(sumName(i, point));
  // Fluctuation needs every present point's column sums.
  let fluctuating = N > 1;
  for (let i = 0; i < L && fluctuating; i++) {
    if (intermediateOf(config, i) > 0 && !sums(i, 'down_in')) fluctuating = false;
    if (config.headsPerLayer[i] > 0 && !sums(i, 'o_in')) fluctuating = false;
  }
  /** var(X_j)·‖W[:, j]‖² per column, from Σx², Σx and the weight's column squares. */
  const fluctuationOf = (sq: Float64Array, sum: Float64Array, w: Float64Array): Float64Array =>
    sq.map((q, j) => (Math.max(0, q - (sum[j] * sum[j]) / N) / (N - 1)) * w[j]);
  const fluctuation = { channels: [] as Float64Array[], heads: [] as Float64Array[] };
  const cosine = (i: number, block: ResidualBlock): number | undefined =>
    stats.sums.get(cosineName(i, block))?.[0];
  if (!(stats.tokens > 0)) throw new GenepruneError('data', 'structured scores: no calibration tokens');

  const channels: Float64Array[] = [];
  const heads: Float64Array[] = [];
  const influence = { layer: [] as number[], attention: [] as number[], mlp: [] as number[] };
  for (let i = 0; i < L; i++) {
    const width = intermediateOf(config, i);
    const ch = new Float64Array(width);
    if (width > 0) {
      const x = stat(i, 'down_in', width);
      const w = columnSquares(need(`layers.${i}.mlp.down.weight`, D, width), D, width);
      for (let j = 0; j < width; j++) ch[j] = Math.sqrt(x[j]) * Math.sqrt(w[j]);
      if (fluctuating) fluctuation.channels.push(fluctuationOf(x, sums(i, 'down_in')!, w));
    } else if (fluctuating) fluctuation.channels.push(new Float64Array(0));
    channels.push(ch);

    const H = config.headsPerLayer[i];
    const hs = new Float64Array(H);
    if (H > 0) {
      const x = stat(i, 'o_in', H * hd);
      const w = columnSquares(need(`layers.${i}.attn.o.weight`, D, H * hd), D, H * hd);
      for (let h = 0; h < H; h++) {
        let xs = 0;
        let ws = 0;
        for (let d = h * hd; d < (h + 1) * hd; d++) {
          xs += x[d];
          ws += w[d];
        }
        hs[h] = Math.sqrt(xs) * Math.sqrt(ws);
      }
      if (fluctuating) {
        const f = fluctuationOf(x, sums(i, 'o_in')!, w);
        fluctuation.heads.push(Float64Array.from({ length: H }, (_, h) => sumRange(f, h * hd, (h + 1) * hd)));
      }
    } else if (fluctuating) fluctuation.heads.push(new Float64Array(0));
    heads.push(hs);

    const bi = (block: ResidualBlock, absent?: number): number => {
      const c = cosine(i, block);
      if (c === undefined) {
        if (absent !== undefined) return absent;
        throw new Error(`structured scores: ${cosineName(i, block)} was not captured`);
      }
      return 1 - c / stats.tokens;
    };
    influence.layer.push(bi('layer'));
    influence.attention.push(bi('attn', H === 0 ? 0 : undefined));
    influence.mlp.push(bi('mlp', width === 0 ? 0 : undefined));
  }
  return { channels, heads, influence, tokens: N, ...(fluctuating ? { fluctuation } : {}) };
}

function sumRange(v: Float64Array, from: number, to: number): number {
  let s = 0;
  for (let j = from; j < to; j++) s += v[j];
  return s;
}

/**
 * The structured scores of a model on calibration batches: one pass of the dense model capturing every layer's
 * o and down inputs (Σx² and Σx per column) and residual cosines.
 */
export async function structuredScores(
  spec: ModelSpec,
  batches: readonly TokenBatch[],
  engine: { device?: Device; threads?: number } = {},
): Promise<StructuredScores> {
  const config = spec.config;
  refuseEncdec(config);
  if (batches.length === 0) throw new GenepruneError('data', 'structured scores: no calibration batches');
  const L = config.numLayers;
  const runner = await createRunner(spec, {
    ...engine,
    output: archOf(config).lastBlockOutput(config),
    maxSeq: longestRow(batches),
    capture: {
      layers: Array.from({ length: L }, (_, i) => i),
      kind: 'sqnorm',
      points: ['o_in', 'down_in'],
      sums: true,
      residual: true,
    },
  });
  const { stats } = await runBlock(runner, batches).finally(() => runner.release());
  const loaded = new Map<string, Float32Array>();
  for (let i = 0; i < L; i++) {
    for (const role of [`layers.${i}.attn.o.weight`, `layers.${i}.mlp.down.weight`]) {
      const t = spec.tensors.get(role);
      if (t) loaded.set(role, await t.load());
    }
  }
  return scoresFromStats(config, stats, (role) => loaded.get(role));
}

/** Indices 0 … n−1 by descending score, ties by the lower index. */
export function rankDescending(scores: ArrayLike<number>): number[] {
  return Array.from({ length: scores.length }, (_, j) => j).sort((a, b) => scores[b] - scores[a] || a - b);
}

/** Per layer, channels and heads by descending score (ties by index). */
export function orders(scores: Pick<StructuredScores, 'channels' | 'heads'>): StructuredOrders {
  return { channels: scores.channels.map(rankDescending), heads: scores.heads.map(rankDescending) };
}

/** The `count` best units of a ranking, ascending (as a StructuredPlan lists them). */
export function keptByScore(order: readonly number[], count: number): number[] {
  if (!Number.isInteger(count) || count < 0 || count > order.length) {
    throw new Error(`cannot keep ${count} of ${order.length} units`);
  }
  return order.slice(0, count).sort((a, b) => a - b);
}
