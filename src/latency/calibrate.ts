/**
 * Calibration of the latency model (latency/profile.ts) by measurement on this device: the prefill time of one
 * decoder layer's attention block at each head level and of its MLP block at each width level, and the base cost
 * of everything that is not a layer. Timing does not depend on weight values, so every model timed here is a
 * random model of the calibrated model's shapes (lazily drawn, never its real weights): the same family, norms,
 * biases and attention path, built by the same graph builder and run by the same runner as a search's or a
 * benchmark's forward.
 *
 * How each number is found (median of `runs` timed rounds after `warmup` untimed ones; in a round every open session
 * runs once, so load drifting on a shared machine falls on every level alike — see timeBlocks; and each level in
 * `replicas` independently built sessions, the fastest kept: with two intra-op threads and no spinning, about one
 * session in 20–50 ran 1.5–2x slower than its neighbours in every one of its rounds — never with one thread —
 * so a single session per level let one slow session mis-price a whole level, and a search chose by it):
 * - a one-layer block graph (layers [1, 2) of a three-layer probe model: input the residual stream, output the
 *   residual stream, no embedding or head) of a layer with h heads and MLP width w takes T(h, w);
 * - the empty layer (0 heads, width 0) runs no operator: T(0, 0) is the block's own per-run overhead (feeding the
 *   hidden states in, reading them out), which no layer inside a model pays;
 * - mlp(w) = T(0, w) − T(0, 0) and attention(h) = T(h, 0) − T(0, 0): each block alone, its norm and residual add
 *   included;
 * - base: 'direct' (the default) = the forward of a model of one empty layer (a model without layers), the layer
 *   tables then scaled so the dense prediction is the dense forward ('nll', what `geneprune bench` and the searches
 *   time, of a random model of the full dense shape; the two forwards are timed round-robin together); 'difference'
 *   = dense forward − Σ the dense layers' table costs. Both are measured and kept (withBaseMethod switches). Direct
 *   predicted better, because the scale absorbs whatever differs between the block sweep and the forwards (the
 *   machine's load between the two phases, a layer's cost alone against inside the model): in bench/latency-check
 *   it was within 7.7 % on all seven pruned shapes of the 134M and TinyLlama-1.1B shapes, where the difference base
 *   missed the 1B ones by up to 19 % (a 1B layer cost 1.46x inside the model what it cost alone; docs/structured.md, What was measured).
 * - the measured tables are then made non-decreasing (monotoneFit): more heads or channels never cost less.
 */
import { readFileSync } from 'node:fs';
import { createRunner, type ModelRunner } from '../engine/runner.js';
import type { Device } from '../engine/session.js';
import { GenepruneError } from '../errors.js';
import type { ComputeDtype } from '../graph/weights.js';
import { widthLevels } from '../masks/structured.js';
import type { ModelConfig, ModelSpec, TensorSource } from '../model/spec.js';
import { median } from '../prune/bench.js';
import { createRng } from '../util/rng.js';
import {
  type AttentionLevel,
  type BaseMethod,
  kvHeadsOfUniformKeep,
  LATENCY_PROFILE_FORMAT,
  LATENCY_PROFILE_VERSION,
  type LatencyProfile,
  type MlpLevel,
  monotoneFit,
  profileShapeOf,
  withBaseMethod,
} from './profile.js';

export interface Timing {
  /**
   * What a level's timed runs reduce to: 'median' (default) or 'min' — on a machine shared with other work, whose
   * load only ever adds time, the fastest run is the steadier estimate of the device's own speed.
   */
  statistic?: 'median' | 'min';
  device?: Device;
  threads?: number;
  dtype: ComputeDtype;
  batch: number;
  seq: number;
  runs: number;
  warmup: number;
}

export interface CalibrateOptions {
  batch: number;
  seq: number;
  device?: Device;
  /** Intra-op threads (0 or absent: ONNX Runtime's default). */
  threads?: number;
  dtype?: ComputeDtype;
  /** Timed rounds (every level once each; default 5) after untimed warm-up rounds (default 1). */
  runs?: number;
  warmup?: number;
  /** Head levels to measure (default every count 0 … numHeads); 0 and numHeads are always included. */
  headLevels?: number[];
  /** MLP width levels (default widthLevels(intermediateSize, widthStep)); 0 and the full width always included. */
  widthLevels?: number[];
  widthStep?: number;
  seed?: number;
  /** See Timing.statistic (default 'median'). */
  statistic?: 'median' | 'min';
  /** How base and layerScale are found (default 'direct'; see PrefillTables.baseMethod and docs/structured.md, What was measured). */
  baseMethod?: BaseMethod;
  /** Weights (bytes) of the block sessions open at once (default 1 GiB): levels in one group run round-robin. */
  sessionBytes?: number;
  /**
   * Independently built sessions each level (and the dense and layerless forwards) is timed in; the fastest is
   * kept (default 3). One session in a few dozen ran 1.5–2x slower than its neighbours in every round
   * (docs/structured.md, What was measured): a single session per level let that one level decide a search.
   */
  replicas?: number;
  onProgress?: (line: string) => void;
}

function reduce(ms: number[], t: Pick<Timing, 'statistic'>): number {
  return t.statistic === 'min' ? Math.min(...ms) : median(ms);
}

/** The geneprune version (package.json, one folder above src/ and dist/). */
export function genepruneVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8'));
    return typeof pkg.version === 'string' ? pkg.version : 'unknown';
  } catch {
    return 'unknown';
  }
}

/** A lazily drawn random tensor of `shape` (norm weights near 1, others small): values only need to be sane. */
function randomTensor(shape: readonly number[], seed: number, norm: boolean): TensorSource {
  return {
    shape,
    dtype: 'F32',
    load: async () => {
      const n = shape.reduce((a, b) => a * b, 1);
      const out = new Float32Array(n);
      if (norm) return out.fill(1);
      const rng = createRng(seed);
      for (let i = 0; i < n; i++) out[i] = (rng.nextUint32() / 4294967296 - 0.5) * 0.06;
      return out;
    },
  };
}

const isNormRole = (role: string) => /norm\.weight$/.test(role);

/** The dense spec's shapes with random values (same roles, same config). */
export function randomCopy(spec: ModelSpec, seed = 1): ModelSpec {
  let k = 0;
  const tensors = new Map<string, TensorSource>();
  for (const [role, t] of spec.tensors)
    tensors.set(role, randomTensor(t.shape, seed * 7919 + k++, isNormRole(role)));
  return { config: spec.config, tensors, source: `random copy of ${spec.source}` };
}

/**
 * The query → KV head map of a layer keeping `h` of `H` heads spread evenly over `KV` groups (group g keeps its
 * share, the first h mod KV groups one more), renumbered over the KV heads kept.
 */
function uniformKeepMap(h: number, H: number, KV: number): number[] {
  const kv = kvHeadsOfUniformKeep(h, KV);
  const map: number[] = [];
  for (let g = 0; g < kv; g++) {
    const count = Math.floor(h / kv) + (g < h % kv ? 1 : 0);
    for (let j = 0; j < count; j++) map.push(g);
  }
  if (map.length !== h || (H > 0 && h > H))
    throw new GenepruneError('internal', `uniform keep of ${h}/${H} heads`);
  return map;
}

/** One layer of a random model of a given shape: its query heads (kept evenly over the KV groups) and MLP width. */
export interface ShapeLayer {
  heads: number;
  width: number;
}

/**
 * A random model of the dense spec's family with these layers (heads spread evenly over the KV groups, so each
 * layer keeps kvHeadsOfUniformKeep KV heads), plus the dense spec's non-layer roles (embedding, final norm, head).
 * Role names come from the dense spec's layer 0, shapes from the rule physical removal follows (q/o by query heads,
 * k/v by KV heads, gate/up rows and down columns by width). As in a physically pruned model, intermediateSize stays
 * the dense width and intermediatePerLayer gives the layers' widths (absent when every layer keeps the dense width).
 */
export function randomShapeSpec(spec: ModelSpec, layers: readonly ShapeLayer[], seed = 1): ModelSpec {
  const c = spec.config;
  const hd = c.headDim;
  const D = c.hiddenSize;
  const L = layers.length;
  const kvOf = layers.map((l) => kvHeadsOfUniformKeep(l.heads, c.numKvHeads));
  const maps = layers.map((l) => uniformKeepMap(l.heads, c.numHeads, c.numKvHeads));
  const uniform = layers.every((l, i) => kvOf[i] === 0 || l.heads % kvOf[i] === 0);
  const widths = layers.map((l) => l.width);
  const config: ModelConfig = {
    ...c,
    numLayers: L,
    headsPerLayer: layers.map((l) => l.heads),
    kvHeadsPerLayer: kvOf,
    intermediateSize: c.intermediateSize,
    slidingWindow: c.slidingWindow ? Array(L).fill(c.slidingWindow[0]) : undefined,
  };
  delete config.kvHeadOfQuery;
  delete config.intermediatePerLayer;
  if (!config.slidingWindow) delete config.slidingWindow;
  if (!uniform) config.kvHeadOfQuery = maps;
  if (widths.some((w) => w > c.intermediateSize))
    throw new GenepruneError('internal', `random shape: a width above the model's ${c.intermediateSize}`);
  if (widths.some((w) => w !== c.intermediateSize)) config.intermediatePerLayer = widths;
  const shapeOf = (l: number, name: string, shape: readonly number[]): number[] => {
    const heads = layers[l].heads;
    const width = layers[l].width;
    const m = /^attn\.([qkvo])\.(weight|bias)$/.exec(name);
    if (m) {
      const rows = (m[1] === 'q' || m[1] === 'o' ? heads : kvOf[l]) * hd;
      if (m[1] === 'o') return m[2] === 'weight' ? [D, rows] : [...shape];
      return m[2] === 'weight' ? [rows, D] : [rows];
    }
    const f = /^mlp\.(gate|up|down)\.(weight|bias)$/.exec(name);
    if (f) {
      if (f[1] === 'down') return f[2] === 'weight' ? [D, width] : [...shape];
      return f[2] === 'weight' ? [width, D] : [width];
    }
    return [...shape];
  };
  const tensors = new Map<string, TensorSource>();
  let k = 0;
  for (const [role, t] of spec.tensors) {
    const m = /^layers\.(\d+)\.(.+)$/.exec(role);
    if (!m) {
      tensors.set(role, randomTensor(t.shape, seed * 7919 + k++, isNormRole(role)));
      continue;
    }
    if (m[1] !== '0') continue;
    for (let l = 0; l < L; l++) {
      tensors.set(
        `layers.${l}.${m[2]}`,
        randomTensor(shapeOf(l, m[2], t.shape), seed * 7919 + k++, isNormRole(role)),
      );
    }
  }
  const described = layers.map((l) => `${l.heads}h/${l.width}`).join(' ');
  return { config, tensors, source: `random model of shape [${described}]` };
}

/** A block graph to time: layers [1, 1 + layers) of a probe model (input and output the residual stream). */
interface BlockProbe {
  spec: ModelSpec;
  layers: number;
}

/** Bytes of fp32 weights a probe's block session holds (to bound how many sessions are open at once). */
function blockBytes(p: BlockProbe): number {
  let n = 0;
  for (const [role, t] of p.spec.tensors) {
    const m = /^layers\.(\d+)\./.exec(role);
    if (m && Number(m[1]) >= 1 && Number(m[1]) <= p.layers) n += t.shape.reduce((a, b) => a * b, 1);
  }
  return 4 * n;
}

/** Runs `run(i)` for every session round-robin, `warmup` untimed rounds first; returns each one's timings in ms. */
async function roundRobin(
  count: number,
  run: (i: number) => Promise<unknown>,
  t: Timing,
): Promise<number[][]> {
  const ms: number[][] = Array.from({ length: count }, () => []);
  for (let r = 0; r < t.warmup + t.runs; r++) {
    for (let i = 0; i < count; i++) {
      const t0 = performance.now();
      await run(i);
      if (r >= t.warmup) ms[i].push(performance.now() - t0);
    }
  }
  return ms;
}

/**
 * Each probe's block time less the block's own overhead (seconds), and that overhead. Levels are timed
 * round-robin — every open session runs once per round — so the machine's load, which drifts (this machine is
 * shared), falls on every level of a group alike; sessions are built without spinning threads, since the spinning
 * pools of idle sessions would take the cores from the one running (measured: 1.7x slower forwards with three
 * sessions round-robin). Sessions open at most `budgetBytes` of weights at a time, and every group also times the
 * reference (the empty layer: the overhead) and the anchor (the dense layer). Load is a factor on time, not a
 * term, so groups are put on one footing by scaling: a group's levels (less the overhead, the median of every
 * group's reference) are multiplied by the anchor's median over groups over its time in the group. (Subtracting
 * each group's own reference instead left whole groups of a 1B sweep 30 ms low: a reference of 0.4 ms caught in a
 * burst of load shifts every level of its group.)
 */
async function timeBlocks(
  reference: BlockProbe,
  anchor: BlockProbe,
  probes: BlockProbe[],
  t: Timing,
  seed: number,
  budgetBytes: number,
  replicas: number,
): Promise<{ overhead: number; levels: number[] }> {
  const rng = createRng(seed);
  const D = reference.spec.config.hiddenSize;
  const hidden = new Float32Array(t.batch * t.seq * D);
  for (let i = 0; i < hidden.length; i++) hidden[i] = rng.nextFloat() * 2 - 1;
  const batch = { batch: t.batch, seq: t.seq, ids: new BigInt64Array(t.batch * t.seq), hidden };
  // Every replica builds every session afresh; a group records which replica it belongs to.
  const groups: BlockGroupTimes[] = [];
  for (let replica = 0; replica < replicas; replica++) {
    let next = 0;
    while (next < probes.length) {
      // The anchor twice, in two sessions, its faster kept: a slow anchor session would scale its whole group.
      const group: BlockProbe[] = [reference, anchor, anchor];
      let bytes = blockBytes(reference) + 2 * blockBytes(anchor);
      while (
        next < probes.length &&
        (group.length === 3 || bytes + blockBytes(probes[next]) <= budgetBytes)
      ) {
        bytes += blockBytes(probes[next]);
        group.push(probes[next++]);
      }
      const runners: ModelRunner[] = [];
      try {
        for (const p of group) {
          runners.push(
            await createRunner(p.spec, {
              output: 'hidden',
              layers: [1, 1 + p.layers],
              device: t.device,
              threads: t.threads,
              dtype: t.dtype,
              maxSeq: t.seq,
              spinning: false,
            }),
          );
        }
        const ms = await roundRobin(runners.length, (i) => runners[i].run(batch), t);
        const seconds = ms.map((m) => reduce(m, t) / 1000);
        groups.push({
          replica,
          reference: seconds[0],
          anchors: seconds.slice(1, 3),
          levels: seconds.slice(3),
        });
      } finally {
        for (const r of runners) await r.release();
      }
    }
  }
  return combineBlockTimes(groups, replicas, probes.length);
}

/** One round-robin group's times (seconds, by the timing's statistic): see timeBlocks. */
export interface BlockGroupTimes {
  /** Which replica (independent set of sessions) the group belongs to. */
  replica: number;
  /** The empty layer's block time: the block's own overhead. */
  reference: number;
  /** The dense layer's block time in each of the group's anchor sessions. */
  anchors: number[];
  /** The group's levels, in probe order (each replica's groups together list every probe once). */
  levels: number[];
}

/**
 * The block overhead and each level's cost from the groups' times: the overhead is the median reference; a group's
 * anchor is its fastest anchor session, and its levels (less the overhead) are scaled by the median anchor over
 * its anchor (load is a factor on time); each level's cost is then the fastest of its replicas — a slow session,
 * like load, only ever adds time, so neither a slow level session nor a slow anchor session moves the result.
 */
export function combineBlockTimes(
  groups: readonly BlockGroupTimes[],
  replicas: number,
  probes: number,
): { overhead: number; levels: number[] } {
  const overhead = median(groups.map((g) => g.reference));
  const anchorOf = (g: BlockGroupTimes) => Math.min(...g.anchors);
  const anchorSeconds = median(groups.map(anchorOf)) - overhead;
  const byReplica: number[][] = Array.from({ length: replicas }, () => []);
  for (const g of groups) {
    const a = anchorOf(g) - overhead;
    const scale = a > 0 ? anchorSeconds / a : 1;
    byReplica[g.replica].push(...g.levels.map((x) => (x - overhead) * scale));
  }
  for (const [r, levels] of byReplica.entries()) {
    if (levels.length !== probes)
      throw new Error(`combineBlockTimes: replica ${r} timed ${levels.length} of ${probes} levels`);
  }
  const levels = Array.from({ length: probes }, (_, j) => Math.min(...byReplica.map((r) => r[j])));
  return { overhead, levels };
}

/**
 * The 'nll' forward (what bench's prefill times) of two whole models, timed round-robin as timeBlocks does (no
 * spinning threads): seconds of each, by the timing's statistic.
 */
export async function timePair(
  a: ModelSpec,
  b: ModelSpec,
  t: Timing,
  seed: number,
): Promise<[number, number]> {
  const rng = createRng(seed);
  const V = Math.min(a.config.vocabSize, b.config.vocabSize);
  const n = t.batch * t.seq;
  const ids = BigInt64Array.from({ length: n }, () => BigInt(rng.nextInt(V)));
  const targets = BigInt64Array.from({ length: n }, () => BigInt(rng.nextInt(V)));
  const runners: ModelRunner[] = [];
  try {
    for (const spec of [a, b]) {
      runners.push(
        await createRunner(spec, {
          output: 'nll',
          device: t.device,
          threads: t.threads,
          dtype: t.dtype,
          maxSeq: t.seq,
          spinning: false,
        }),
      );
    }
    const ms = await roundRobin(2, (i) => runners[i].run({ batch: t.batch, seq: t.seq, ids, targets }), t);
    return [reduce(ms[0], t) / 1000, reduce(ms[1], t) / 1000];
  } finally {
    for (const r of runners) await r.release();
  }
}

/** Sorted unique levels with the two ends included. */
function levelsWithEnds(levels: readonly number[], top: number, what: string): number[] {
  for (const v of levels) {
    if (!Number.isInteger(v) || v < 0 || v > top)
      throw new GenepruneError('flag', `${what} level ${v} is not an integer in 0 … ${top}`);
  }
  return [...new Set([0, ...levels, top])].sort((a, b) => a - b);
}

/** Measures the latency tables of a decoder model's shape on this device (see the module comment). */
export async function calibrateLatency(spec: ModelSpec, opts: CalibrateOptions): Promise<LatencyProfile> {
  const c = spec.config;
  if ((c.arch ?? 'decoder') !== 'decoder') {
    throw new GenepruneError(
      'model',
      `the latency model prices decoder layers; a ${c.arch} model is not one`,
      spec.source,
    );
  }
  if (c.numLayers < 1) throw new GenepruneError('model', 'the model has no layers to calibrate', spec.source);
  const t: Timing = {
    device: opts.device,
    threads: opts.threads,
    dtype: opts.dtype ?? 'fp32',
    batch: opts.batch,
    seq: opts.seq,
    runs: opts.runs ?? 5,
    warmup: opts.warmup ?? 1,
    statistic: opts.statistic ?? 'median',
  };
  const seed = opts.seed ?? 1;
  const H = c.numHeads;
  const W = Math.max(
    ...Array.from({ length: c.numLayers }, (_, i) => c.intermediatePerLayer?.[i] ?? c.intermediateSize),
  );
  const heads = levelsWithEnds(opts.headLevels ?? Array.from({ length: H + 1 }, (_, h) => h), H, 'head');
  const widths = levelsWithEnds(opts.widthLevels ?? widthLevels(W, opts.widthStep), W, 'width');
  const say = opts.onProgress ?? (() => {});
  const probe = (layers: number, layer: ShapeLayer) => randomShapeSpec(spec, Array(layers).fill(layer), seed);

  // The reference layer (0 heads, width 1) and its two-layer stack, the MLP widths, and the head levels beside an
  // MLP of width 1.
  // The empty layer (0 heads, width 0: no operator at all) is the reference: its block time is the block's own
  // overhead (feeding and reading the residual stream), which no layer of a model pays.
  const empty: ShapeLayer = { heads: 0, width: 0 };
  const ref: BlockProbe = { spec: probe(3, empty), layers: 1 };
  const mlpWidths = widths.filter((x) => x > 0);
  const headCounts = heads.filter((x) => x > 0);
  const probes: BlockProbe[] = [
    ...mlpWidths.map((w) => ({ spec: probe(3, { heads: 0, width: w }), layers: 1 })),
    ...headCounts.map((h) => ({ spec: probe(3, { heads: h, width: 0 }), layers: 1 })),
  ];
  say(`latency: timing ${probes.length + 2} blocks, ${t.warmup} + ${t.runs} rounds`);
  const anchor: BlockProbe = { spec: probe(3, { heads: H, width: W }), layers: 1 };
  const replicas = opts.replicas ?? 3;
  if (!Number.isInteger(replicas) || replicas < 1)
    throw new GenepruneError('flag', `latency replicas must be a positive integer, got ${replicas}`);
  const timed = await timeBlocks(ref, anchor, probes, t, seed, opts.sessionBytes ?? 2 ** 30, replicas);
  const overhead = timed.overhead;
  say(`latency: block overhead ${(overhead * 1000).toFixed(2)} ms`);
  const mlp: MlpLevel[] = [{ width: 0, seconds: 0 }];
  for (const [j, w] of mlpWidths.entries()) {
    const s = timed.levels[j];
    mlp.push({ width: w, seconds: Math.max(0, s) });
    say(`latency: MLP width ${w}: ${(s * 1000).toFixed(2)} ms`);
  }
  const attention: AttentionLevel[] = [{ heads: 0, kvHeads: 0, seconds: 0 }];
  for (const [j, h] of headCounts.entries()) {
    const s = timed.levels[mlpWidths.length + j];
    attention.push({ heads: h, kvHeads: kvHeadsOfUniformKeep(h, c.numKvHeads), seconds: Math.max(0, s) });
    say(`latency: attention ${h} heads: ${(s * 1000).toFixed(2)} ms`);
  }
  // One KV head's share of the full attention block, by multiply-adds per token: k and v projections (2·D·hd)
  // against q, k, v, o (D·hd·(2H + 2KV)) and the two attention products (2·H·hd·seq/2, causal).
  const D = c.hiddenSize;
  const hd = c.headDim;
  const fullAttention = attention[attention.length - 1].seconds;
  // More work never costs less: measured tables made non-decreasing (what is left over is the load's noise).
  for (const table of [mlp, attention]) {
    const fit = monotoneFit(table.map((l) => l.seconds));
    for (const [i, l] of table.entries()) {
      l.measured = l.seconds;
      l.seconds = fit[i];
    }
  }
  const kvHeadSeconds =
    (fullAttention * 2 * D * hd) / (D * hd * (2 * H + 2 * c.numKvHeads) + H * hd * opts.seq);

  // The dense and layerless forwards, each pair of sessions built afresh per replica; the fastest of each kept.
  const pairs: Array<[number, number]> = [];
  for (let r = 0; r < replicas; r++)
    pairs.push(await timePair(randomCopy(spec, seed), probe(1, empty), t, seed + r));
  const dense = Math.min(...pairs.map((p) => p[0]));
  const oneLayer = Math.min(...pairs.map((p) => p[1]));
  let denseLayerSeconds = 0;
  for (let i = 0; i < c.numLayers; i++) {
    const a = attention.find((l) => l.heads === c.headsPerLayer[i]);
    const w = c.intermediatePerLayer?.[i] ?? c.intermediateSize;
    denseLayerSeconds += (a?.seconds ?? 0) + (mlp.find((l) => l.width === w)?.seconds ?? 0);
  }
  // A model of one empty layer is a model without layers: embedding, final norm, head and loss.
  const directBase = oneLayer;
  say(
    `latency: dense forward ${(dense * 1000).toFixed(1)} ms, its layers alone ${(denseLayerSeconds * 1000).toFixed(1)} ms; base ${((dense - denseLayerSeconds) * 1000).toFixed(1)} ms by difference, ${(directBase * 1000).toFixed(1)} ms direct`,
  );
  const profile: LatencyProfile = {
    format: LATENCY_PROFILE_FORMAT,
    version: LATENCY_PROFILE_VERSION,
    geneprune: genepruneVersion(),
    measuredAt: new Date().toISOString(),
    device: opts.device ?? 'cpu',
    threads: opts.threads ?? 0,
    dtype: t.dtype,
    batch: opts.batch,
    seq: opts.seq,
    runs: t.runs,
    warmup: t.warmup,
    statistic: t.statistic ?? 'median',
    replicas,
    shape: profileShapeOf(c),
    prefill: {
      base: 0,
      baseMethod: 'difference',
      layerScale: 1,
      attention,
      kvHeadSeconds,
      mlp,
      denseSeconds: dense,
      denseLayerSeconds,
      directBase,
      notes: { blockOverhead: overhead },
    },
  };
  return withBaseMethod(profile, opts.baseMethod ?? 'direct');
}
