/**
 * Head-pruning baselines the GA is compared against. Every method removes exactly `removeCount` heads and is
 * scored with the same HeadObjective (same calibration tokens, same metric) as the search, so comparisons are
 * like for like. Costs are read from the objective's own counters before and after, so cache hits are free
 * here exactly as they are for the GA. The candidates a method can score together go to the objective in one
 * `evaluateMany` (ablation: every head; greedy: one step's; regression: every sample). Each method ends by
 * evaluating its final mask at full fidelity (a cache hit when the search already scored that mask at full
 * fidelity), so every result carries a score. The ridge solver under the regression baseline is `ridge.ts`.
 *
 * Genes follow `masks/heads.ts`: one per head present in the model, so a physically pruned model's genes are all
 * candidates.
 */
import { GenepruneError } from '../../errors.js';
import { type Genome, geneCount, geneOffsets, headLayers } from '../../masks/heads.js';
import type { ModelConfig, ModelSpec } from '../../model/spec.js';
import type { Fidelity } from '../../search/objective.js';
import { sampleIndices } from '../../search/selection.js';
import { maxOf, minOf } from '../../util/arrays.js';
import type { Rng } from '../../util/rng.js';
import type { HeadObjective } from './objective.js';
import { ridgeRegression } from './ridge.js';

export type BaselineName = 'random' | 'norm' | 'ablation' | 'greedy' | 'regression';
export const BASELINE_NAMES: readonly BaselineName[] = ['random', 'norm', 'ablation', 'greedy', 'regression'];

/**
 * Progress of a method that scores candidates: done of total evaluations, and the best candidate so far (its
 * quality and share of heads removed; greedy: the mask it has built so far).
 */
export type Progress = (done: number, total: number, best?: { quality: number; sparsity: number }) => void;

/** Keeps the lowest finite quality seen, for progress reports. */
function bestTracker() {
  let best: { quality: number; sparsity: number } | undefined;
  return (quality: number, sparsity: number) => {
    if (Number.isFinite(quality) && (!best || quality < best.quality)) best = { quality, sparsity };
    return best;
  };
}

export interface BaselineResult {
  method: BaselineName;
  /** 1 keep / 0 remove; exactly `removeCount` present heads are 0. */
  genome: Genome;
  /** The final mask's quality at full fidelity (lower is better). */
  quality: number;
  /** Forward passes this method cost (the objective's counter, cache hits excluded). */
  forwardPasses: number;
  /** Distinct evaluations this method cost (the objective's counter). */
  evaluations: number;
  seconds: number;
  /** Importance per gene, higher = more worth keeping (norm, ablation, regression). */
  ranking?: number[];
  /** greedy: the genes in the order they were removed. */
  order?: number[];
}

/** Options shared by the methods that search with the objective. */
export interface SearchOptions {
  /** Fidelity of the search's own evaluations (default 'full'); the final mask is always scored at 'full'. */
  fidelity?: Fidelity;
  onProgress?: Progress;
}

export interface GreedyStep {
  /** 1-based step number. */
  step: number;
  /** The gene removed at this step. */
  gene: number;
  /** Quality (at the search fidelity) with all heads removed so far. */
  quality: number;
  genome: Genome;
}

export interface RegressionOptions extends SearchOptions {
  /** Sub-models to sample (default 2 · genes). */
  samples?: number;
  /** Probability each head is kept in a sample (default 1 − removeCount / heads, clamped to [0.05, 0.95]). */
  keepShare?: number;
  /** Ridge strength relative to the mean diagonal of XᵀX (default 1e-3). */
  ridge?: number;
}

/** The candidate genes: every gene, since each has a present head behind it (see masks/heads.ts). */
export function presentGenes(config: ModelConfig): number[] {
  return Array.from({ length: geneCount(config) }, (_, g) => g);
}

function checkRemoveCount(objective: HeadObjective, removeCount: number): number[] {
  const present = presentGenes(objective.space.config);
  if (!Number.isInteger(removeCount) || removeCount < 0 || removeCount > present.length) {
    throw new GenepruneError(
      'flag',
      `baseline: heads to remove must be an integer in [0, ${present.length}], got ${removeCount}`,
    );
  }
  return present;
}

/** Starts the clock and the counters; the returned function scores the final mask and builds the result. */
function start(objective: HeadObjective, method: BaselineName) {
  const passes0 = objective.forwardPasses();
  const evals0 = objective.evaluations();
  const t0 = performance.now();
  return async (
    genome: Genome,
    extra: Pick<BaselineResult, 'ranking' | 'order'> = {},
  ): Promise<BaselineResult> => {
    const { quality } = await objective.evaluate(genome, 'full');
    return {
      method,
      genome,
      quality,
      forwardPasses: objective.forwardPasses() - passes0,
      evaluations: objective.evaluations() - evals0,
      seconds: (performance.now() - t0) / 1000,
      ...extra,
    };
  };
}

/** The full genome with `removed` genes set to 0. */
function withRemoved(genes: number, removed: Iterable<number>): Genome {
  const g = new Uint8Array(genes).fill(1);
  for (const i of removed) g[i] = 0;
  return g;
}

/** The `count` candidates with the lowest importance (ties: lower gene index first, for determinism). */
function leastImportant(candidates: number[], importance: readonly number[], count: number): number[] {
  return [...candidates]
    .sort((a, b) => orderKey(importance[a]) - orderKey(importance[b]) || a - b)
    .slice(0, count);
}

/** NaN sorts as +Infinity (never preferred), so a broken score cannot scramble an ordering. */
function orderKey(x: number): number {
  return Number.isNaN(x) ? Number.POSITIVE_INFINITY : x;
}

/** A ranking array with +Infinity for genes that have no head. */
function rankingFor(genes: number, present: number[], value: (g: number) => number): number[] {
  const r = new Array<number>(genes).fill(Number.POSITIVE_INFINITY);
  for (const g of present) r[g] = value(g);
  return r;
}

/** 1. A uniformly random set of `removeCount` heads (partial Fisher–Yates over the present heads). */
export async function randomBaseline(
  objective: HeadObjective,
  removeCount: number,
  rng: Rng,
): Promise<BaselineResult> {
  const present = checkRemoveCount(objective, removeCount);
  const done = start(objective, 'random');
  const picks = sampleIndices(present.length, removeCount, rng).map((i) => present[i]);
  return done(withRemoved(objective.space.genes, picks));
}

/**
 * Weight-norm importance of every gene: ||W_o[:, cols of h]||_F · ||W_v[rows of kv(h)]||_F. A head's
 * contribution to the residual stream is o_h · (attention-weighted v_kv(h)); attention weights are a convex
 * combination, so the product of the two norms bounds how large that contribution can get, needing no data and
 * no forward passes. q and k only shape where a head attends, not how much it writes, so they are left out.
 * With GQA the v rows of a KV head are shared by its query heads and enter each one's score.
 */
export async function weightNormImportance(spec: ModelSpec): Promise<number[]> {
  const config = spec.config;
  const hd = config.headDim;
  const D = config.hiddenSize;
  const present = presentGenes(config);
  const scores = new Array<number>(geneCount(config)).fill(Number.POSITIVE_INFINITY);
  // Every head layer of every stack (self-attention, and an encoder-decoder's cross-attention), in gene order.
  const offsets = geneOffsets(config);
  for (const [l, hl] of headLayers(config).entries()) {
    const o = await loadTensor(spec, `${hl.rolePrefix}.o.weight`);
    const v = await loadTensor(spec, `${hl.rolePrefix}.v.weight`);
    const heads = hl.heads;
    const kv = hl.kvMap();
    const kvHeads = v.length / (hd * D);
    if (o.length !== D * heads * hd || !Number.isInteger(kvHeads) || kv.some((k) => k >= kvHeads)) {
      throw new GenepruneError(
        'model',
        `weight-norm baseline: ${hl.stack} layer ${hl.layer} o/v shapes disagree with the config`,
      );
    }
    // v is [kvHeads*hd, D]: KV head j owns rows j*hd .. (j+1)*hd, a contiguous block.
    const vNorm = Array.from({ length: kvHeads }, (_, j) => frobenius(v, j * hd * D, (j + 1) * hd * D));
    // o is [D, heads*hd]: head h owns columns h*hd .. (h+1)*hd of every row.
    const oSq = new Float64Array(heads);
    const cols = heads * hd;
    for (let r = 0; r < D; r++) {
      const base = r * cols;
      for (let c = 0; c < cols; c++) {
        const x = o[base + c];
        oSq[Math.floor(c / hd)] += x * x;
      }
    }
    for (let h = 0; h < heads; h++) scores[offsets[l] + h] = Math.sqrt(oSq[h]) * vNorm[kv[h]];
  }
  if (present.some((g) => !Number.isFinite(scores[g]))) {
    throw new GenepruneError('model', 'weight-norm baseline: non-finite weights');
  }
  return scores;
}

async function loadTensor(spec: ModelSpec, role: string): Promise<Float32Array> {
  const t = spec.tensors.get(role);
  if (!t) throw new GenepruneError('model', `weight-norm baseline: the model has no tensor ${role}`);
  return t.load();
}

function frobenius(a: Float32Array, from: number, to: number): number {
  let s = 0;
  for (let i = from; i < to; i++) s += a[i] * a[i];
  return Math.sqrt(s);
}

/** 2. Remove the heads with the smallest weight-norm importance; one evaluation (the final mask). */
export async function weightNormBaseline(
  spec: ModelSpec,
  objective: HeadObjective,
  removeCount: number,
): Promise<BaselineResult> {
  const present = checkRemoveCount(objective, removeCount);
  if (geneCount(spec.config) !== objective.space.genes) {
    throw new GenepruneError(
      'internal',
      'weight-norm baseline: the spec and the objective disagree on heads',
    );
  }
  const done = start(objective, 'norm');
  const ranking = await weightNormImportance(spec);
  return done(withRemoved(objective.space.genes, leastImportant(present, ranking, removeCount)), { ranking });
}

/** Quality with each head removed alone (one evaluation per head). */
export async function singleHeadAblationScores(
  objective: HeadObjective,
  fidelity: Fidelity = 'full',
  onProgress?: Progress,
): Promise<number[]> {
  const present = presentGenes(objective.space.config);
  const scores = new Array<number>(objective.space.genes).fill(Number.POSITIVE_INFINITY);
  const g = new Uint8Array(objective.space.genes).fill(1);
  const seen = bestTracker();
  const candidates = present.map((gene) => {
    g[gene] = 0;
    const c = g.slice();
    g[gene] = 1;
    return c;
  });
  // One batch; progress in index order as results arrive.
  await objective.evaluateMany(candidates, fidelity, (i, r) => {
    scores[present[i]] = r.evaluation.quality;
    onProgress?.(i + 1, present.length, seen(scores[present[i]], 1 / objective.space.genes));
  });
  return scores;
}

/**
 * 3. Single-head ablation: remove the `removeCount` heads whose removal alone hurts least. Costs one
 * evaluation per head plus the final mask. Ranking = quality with the head removed (higher = more important).
 */
export async function ablationBaseline(
  objective: HeadObjective,
  removeCount: number,
  opts: SearchOptions = {},
): Promise<BaselineResult> {
  const present = checkRemoveCount(objective, removeCount);
  const done = start(objective, 'ablation');
  const ranking = await singleHeadAblationScores(objective, opts.fidelity, opts.onProgress);
  return done(withRemoved(objective.space.genes, leastImportant(present, ranking, removeCount)), { ranking });
}

/**
 * 4. Greedy iterative ablation: from the full model, repeatedly remove the remaining head whose removal (given
 * those already removed) hurts least. Σ_{i<k} (heads − i) evaluations; the final mask is the last step's
 * winner, so with the default full fidelity its closing evaluation is a cache hit (k = 0: one evaluation).
 */
export async function greedyBaseline(
  objective: HeadObjective,
  removeCount: number,
  opts: SearchOptions & { onStep?: (step: GreedyStep) => void } = {},
): Promise<BaselineResult> {
  const present = checkRemoveCount(objective, removeCount);
  const done = start(objective, 'greedy');
  const n = present.length;
  let total = 0;
  for (let i = 0; i < removeCount; i++) total += n - i;
  let evaluated = 0;
  const g = new Uint8Array(objective.space.genes).fill(1);
  const remaining = [...present];
  const order: number[] = [];
  // The best so far is the mask built by the steps finished, or within the first step its best candidate.
  let built: { quality: number; sparsity: number } | undefined;
  for (let step = 1; step <= removeCount; step++) {
    const seen = bestTracker();
    let best = -1;
    let bestKey = Number.POSITIVE_INFINITY;
    let bestQuality = Number.NaN;
    const candidates = remaining.map((gene) => {
      g[gene] = 0;
      const c = g.slice();
      g[gene] = 1;
      return c;
    });
    // The step's candidates in one batch, read in index order.
    await objective.evaluateMany(candidates, opts.fidelity, (i, r) => {
      const { quality } = r.evaluation;
      // Strict < keeps the lowest gene index on ties; NaN never wins unless every candidate is NaN.
      if (best < 0 || orderKey(quality) < bestKey) {
        best = i;
        bestKey = orderKey(quality);
        bestQuality = quality;
      }
      opts.onProgress?.(++evaluated, total, built ?? seen(quality, step / objective.space.genes));
    });
    const gene = remaining.splice(best, 1)[0];
    g[gene] = 0;
    order.push(gene);
    built = { quality: bestQuality, sparsity: step / objective.space.genes };
    opts.onStep?.({ step, gene, quality: bestQuality, genome: g.slice() });
  }
  return done(g, { order });
}

/**
 * 5. Bonsai-style regression (Dery et al., "Everybody prune now"): score random sub-models, fit
 * quality ≈ b0 + Σ_g β_g · keep_g by ridge least squares, and call −β_g (how much keeping head g lowers the
 * quality value) its importance; remove the least important. Samples keep each head independently with
 * probability `keepShare`, so they sit near the target size; repeated samples come from the cache.
 */
export async function regressionBaseline(
  objective: HeadObjective,
  removeCount: number,
  rng: Rng,
  opts: RegressionOptions = {},
): Promise<BaselineResult> {
  const present = checkRemoveCount(objective, removeCount);
  const n = present.length;
  const samples = opts.samples ?? 2 * objective.space.genes;
  if (!Number.isInteger(samples) || samples < 1) {
    throw new GenepruneError(
      'flag',
      `regression baseline: samples must be a positive integer, got ${samples}`,
    );
  }
  const keepShare = opts.keepShare ?? Math.min(0.95, Math.max(0.05, n > 0 ? 1 - removeCount / n : 1));
  if (!(keepShare >= 0 && keepShare <= 1)) {
    throw new GenepruneError('flag', `regression baseline: keepShare must lie in [0, 1], got ${keepShare}`);
  }
  const done = start(objective, 'regression');
  const seen = bestTracker();
  const X: Uint8Array[] = []; // keep flags over the present heads, one row per sample
  const y: number[] = [];
  // Every sample is drawn first (scoring draws nothing from the rng), then all are scored in one batch.
  const genomes: Genome[] = [];
  for (let s = 0; s < samples; s++) {
    const row = new Uint8Array(n);
    for (let j = 0; j < n; j++) row[j] = rng.nextFloat() < keepShare ? 1 : 0;
    const g = new Uint8Array(objective.space.genes).fill(1);
    for (let j = 0; j < n; j++) g[present[j]] = row[j];
    X.push(row);
    genomes.push(g);
  }
  await objective.evaluateMany(genomes, opts.fidelity, (s, r) => {
    const { quality } = r.evaluation;
    y.push(quality);
    opts.onProgress?.(
      s + 1,
      samples,
      seen(quality, 1 - X[s].reduce((a, b) => a + b, 0) / objective.space.genes),
    );
  });
  // A non-finite score (a sub-model whose forward pass overflowed) would poison the fit, and dropping its row
  // would hide that removing those heads is catastrophic; it enters as clearly worse than every finite score.
  const finite = y.filter(Number.isFinite);
  if (finite.length < y.length) {
    const hi = finite.length > 0 ? maxOf(finite) : 0;
    const lo = finite.length > 0 ? minOf(finite) : 0;
    const failed = hi + Math.max(hi - lo, Math.abs(hi), 1);
    for (let s = 0; s < y.length; s++) if (!Number.isFinite(y[s])) y[s] = failed;
  }
  const beta = ridgeRegression(X, y, opts.ridge ?? 1e-3, n);
  const importance = new Map(present.map((gene, j) => [gene, -beta[j]]));
  const ranking = rankingFor(objective.space.genes, present, (gene) => importance.get(gene)!);
  return done(withRemoved(objective.space.genes, leastImportant(present, ranking, removeCount)), { ranking });
}

export interface BaselineContext {
  spec: ModelSpec;
  objective: HeadObjective;
  removeCount: number;
  rng: Rng;
  onProgress?: Progress;
  /** Fidelity of the search evaluations (ablation, greedy, regression). */
  fidelity?: Fidelity;
  /** Regression samples (default 2 · genes). */
  samples?: number;
}

/** Runs one baseline by name (for the CLI). */
export function runBaseline(name: BaselineName, ctx: BaselineContext): Promise<BaselineResult> {
  const { spec, objective, removeCount, rng, onProgress, fidelity } = ctx;
  switch (name) {
    case 'random':
      return randomBaseline(objective, removeCount, rng);
    case 'norm':
      return weightNormBaseline(spec, objective, removeCount);
    case 'ablation':
      return ablationBaseline(objective, removeCount, { fidelity, onProgress });
    case 'greedy':
      return greedyBaseline(objective, removeCount, { fidelity, onProgress });
    case 'regression':
      return regressionBaseline(objective, removeCount, rng, { fidelity, onProgress, samples: ctx.samples });
    default:
      throw new GenepruneError(
        'flag',
        `unknown baseline ${String(name)}; expected ${BASELINE_NAMES.join(', ')}`,
      );
  }
}
