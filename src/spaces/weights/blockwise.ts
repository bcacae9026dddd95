/**
 * Block-by-block weight-mask search, the frame every searching weights method shares (`ga`, `ga-wanda`,
 * `ga-magnitude`): for l = 0 … L−1 a method searches the masks of block l's prunable matrices (one genome: the
 * block's q k v o gate up down flattened in mask-file order, each [out, in] row-major), with blocks < l fixed at
 * their chosen masks and blocks > l dense; the best genome is fixed before block l + 1 is searched.
 *
 * Layer-wise evaluation: a candidate of block l is scored by a suffix graph of blocks [l, L) fed the hidden
 * states entering block l, which are computed once per block (with the earlier blocks' fixed masks), with block
 * l's masks as graph inputs — one session per block, and no candidate pays a forward of the blocks before it.
 *
 * Resume: after each fixed block the frame hands the masks chosen so far, the rng's state and the methods' logs
 * to `checkpoint.write`; a run restarted from that checkpoint recomputes the cached hidden states of the fixed
 * blocks (l block passes, not counted in `forwardPasses`) and continues with the next block exactly as the
 * uninterrupted run would have.
 */
import { runBlock, statOf } from '../../engine/blocks.js';
import { createOrtGemm, type OrtGemm } from '../../engine/gemm.js';
import { createRunner, type ModelRunner, type TokenBatch } from '../../engine/runner.js';
import type { Device } from '../../engine/session.js';
import { GenepruneError } from '../../errors.js';
import { CAPTURE_POINTS, type CapturePoint, rolesOfCapturePoint } from '../../graph/decoder.js';
import type { PrunableMatrix } from '../../masks/weights.js';
import { scoreGeneration, slicePreparedTask } from '../../metrics/generation.js';
import { type ModelSpec, memoryTensor, type TensorSource } from '../../model/spec.js';
import { factorGramWith, type GramFactor, recoverLinear } from '../../prune/recover.js';
import { normalisedQuality } from '../../search/fitness.js';
import {
  BLEU_SEARCH_ITEMS,
  BLEU_SEARCH_NEW_TOKENS,
  type BleuObjectiveOptions,
} from '../../search/objective.js';
import type { Rng } from '../../util/rng.js';

/** The matrices of one block, in mask-file order, and each one's first gene in the block's genome. */
export interface BlockLayout {
  layer: number;
  matrices: PrunableMatrix[];
  offsets: number[];
  genes: number;
}

export function blockLayout(matrices: readonly PrunableMatrix[], layer: number): BlockLayout {
  const ms = matrices.filter((m) => m.layer === layer);
  const offsets: number[] = [];
  let n = 0;
  for (const m of ms) {
    offsets.push(n);
    n += m.rows * m.cols;
  }
  return { layer, matrices: ms, offsets, genes: n };
}

/** The runner's weight-mask feeds of a block genome (views, not copies). */
export function blockFeeds(block: BlockLayout, genome: Uint8Array): Map<string, Uint8Array> {
  return new Map(
    block.matrices.map((m, i) => [
      m.role,
      genome.subarray(block.offsets[i], block.offsets[i] + m.rows * m.cols),
    ]),
  );
}

/** Share of a genome's genes that are 0 (pruned). */
export function offShare(g: Uint8Array): number {
  let off = 0;
  for (let i = 0; i < g.length; i++) off += g[i] ? 0 : 1;
  return g.length === 0 ? 0 : off / g.length;
}

/**
 * Scores candidate masks of block `layer`: the calibration perplexity of blocks [layer, L) (the whole model when
 * layer is 0) fed `hidden`, with the block's matrices masked through graph inputs. Built once per block.
 */
export interface LayerEvaluator {
  perplexity(masks: ReadonlyMap<string, Uint8Array>): Promise<number>;
  /** Batches run so far. */
  passes(): number;
  release(): Promise<void>;
}

export async function createLayerEvaluator(
  spec: ModelSpec,
  layer: number,
  roles: readonly string[],
  list: readonly TokenBatch[],
  hidden: readonly Float32Array[] | undefined,
  engine: { device?: Device; threads?: number } = {},
): Promise<LayerEvaluator> {
  const L = spec.config.numLayers;
  if (layer > 0 && hidden?.length !== list.length) {
    throw new GenepruneError(
      'internal',
      `block ${layer} needs hidden states for each of ${list.length} batches`,
    );
  }
  const runner: ModelRunner = await createRunner(spec, {
    ...engine,
    output: 'nll',
    layers: [layer, L],
    weightMasks: [...roles],
  });
  let passes = 0;
  return {
    async perplexity(masks) {
      let sum = 0;
      let count = 0;
      for (const [b, batch] of list.entries()) {
        const input = layer > 0 ? { ...batch, hidden: hidden![b] } : batch;
        const nll = await runner.run(input, { weightMasks: new Map(masks) });
        passes++;
        const valid = batch.valid;
        for (let i = 0; i < nll.length; i++) {
          if (valid && !valid[i]) continue;
          sum += nll[i];
          count++;
        }
      }
      const ppl = Math.exp(sum / count);
      return Number.isFinite(ppl) ? ppl : Number.POSITIVE_INFINITY;
    },
    passes: () => passes,
    release: () => runner.release(),
  };
}

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
    layers: [layer, layer + 1],
    weightMasks: [...masks.keys()],
  });
  const pass = await runBlock(block, list, {
    ...(hidden ? { hidden } : {}),
    masks: { weightMasks: new Map(masks) },
  }).finally(() => block.release());
  return pass.hidden!;
}

/** Where a block search stands, for progress displays. */
export interface BlockSearchProgress {
  /** The block being searched (0-based) and the number of blocks. */
  layer: number;
  layers: number;
  /** Generations (iterations) done in this block, of at most `generations`. */
  generation: number;
  generations: number;
  /**
   * The search's metric, and the fittest candidate's value of it so far in this block; NaN (and bestSparsity
   * NaN) in the report of a block's start, before anything in it is scored.
   */
  metric: BlockMetric;
  best: number;
  bestSparsity: number;
  /** Candidates scored so far in the whole run (this process). */
  evaluations: number;
  /** Seconds since the search started in this process. */
  seconds: number;
}

/** One candidate a block search scored, as the run directory logs it (evals.jsonl). */
export interface BlockEvaluation {
  layer: number;
  /** 0: before the block's first generation report (the initial population); g: after the g-th. */
  generation: number;
  metric: BlockMetric;
  /** The metric as quoted (perplexity, or BLEU 0–100). */
  value: number;
  /** Share of the block's prunable weights the candidate removes. */
  sparsity: number;
  /** Milliseconds the scoring took. */
  ms: number;
}

/** What a method's per-block search is given. */
export interface BlockContext {
  spec: ModelSpec;
  block: BlockLayout;
  layers: number;
  batches: readonly TokenBatch[];
  /** Hidden states entering the block (undefined for block 0). */
  hidden: Float32Array[] | undefined;
  metric: BlockMetric;
  /** The dense model's calibration score (perplexity or BLEU) on the same tokens or task. */
  dense: number;
  rng: Rng;
  engine: { device?: Device; threads?: number };
  /** Scores a genome of the block (blocks before it fixed, after it dense), counting it. */
  quality(genome: Uint8Array): Promise<BlockQuality>;
  /** Reports a finished generation (for progress). */
  generation(done: number, of: number, best: { value: number; sparsity: number }): void;
}

/** What a block search optimises: calibration perplexity (suffix graphs) or BLEU of a calibration task. */
export type BlockMetric = 'ppl' | 'bleu';

/**
 * A candidate's score: `value` is the metric as quoted (perplexity, or BLEU 0–100), `normalized` the quality a
 * fitness weighs, higher is better and the dense model at ±1: −ppl/ppl_dense, or BLEU/BLEU_dense (BLEU/100 when
 * the dense model scores 0), so λ means the same for both.
 */
export interface BlockQuality {
  value: number;
  normalized: number;
}

export function normalizedQuality(metric: BlockMetric, value: number, dense: number): number {
  // The one normalisation's 'ratio' form, negated, of the objective's quality (BLEU's is −BLEU).
  const sign = metric === 'ppl' ? 1 : -1;
  const q = -normalisedQuality({ metric, denseQuality: sign * dense }, sign * value, 'ratio');
  return Number.isNaN(q) ? Number.NEGATIVE_INFINITY : q;
}

/** A block's outcome: its fixed genome, the method's log of the block, forward passes beyond candidate scores. */
export interface BlockOutcome<R> {
  genome: Uint8Array;
  report: R;
  /** Batch passes the method ran itself (activation capture), beyond the evaluator's. */
  extraPasses?: number;
}

/** What a run keeps between blocks to resume exactly. */
export interface BlockCheckpoint<R> {
  /** Blocks fixed so far (0 … done − 1). */
  done: number;
  /** Keep-arrays of the fixed blocks' matrices, in `matrices` order (the first matrices of the list). */
  keeps: Uint8Array[];
  rngState: number[];
  reports: R[];
  /** The dense model's calibration score in the run's metric. */
  dense: number;
  forwardPasses: number;
  evaluations: number;
  seconds: number;
}

export interface CheckpointStore<R> {
  read(): Promise<BlockCheckpoint<R> | undefined>;
  write(cp: BlockCheckpoint<R>): Promise<void>;
}

export interface BlockwiseInput<R> {
  spec: ModelSpec;
  matrices: readonly PrunableMatrix[];
  batches: readonly TokenBatch[];
  rng: Rng;
  engine?: { device?: Device; threads?: number };
  /** Default 'ppl'; 'bleu' needs `bleu` (the calibration task) and scores whole-model generations. */
  metric?: BlockMetric;
  bleu?: BleuObjectiveOptions;
  search: (ctx: BlockContext) => Promise<BlockOutcome<R>>;
  checkpoint?: CheckpointStore<R>;
  /** With 'bleu': still compute the hidden states entering each block (a method that captures activations). */
  needsHidden?: boolean;
  /**
   * Search the model `--recover` will produce: each candidate is scored after its own recovery (the block's Gram
   * matrices captured once) and each fixed block is recovered before the next is searched. With 'ppl' only (BLEU
   * candidates run the whole model from its weights as they are).
   */
  recover?: { damping: number };
  onBlock?: (report: R, layer: number, layers: number) => void;
  onProgress?: (p: BlockSearchProgress) => void;
  /** After each candidate is scored (awaited: a run directory appends it to its log first). */
  onEvaluation?: (e: BlockEvaluation) => void | Promise<void>;
}

export interface BlockwiseResult<R> {
  keeps: Uint8Array[];
  reports: R[];
  metric: BlockMetric;
  dense: number;
  forwardPasses: number;
  evaluations: number;
}

/** Runs `search` on every block in order, fixing each block's outcome before the next. */
export async function searchBlockwise<R>(input: BlockwiseInput<R>): Promise<BlockwiseResult<R>> {
  const { rng } = input;
  let spec = input.spec;
  const engine = input.engine ?? {};
  const metric = input.metric ?? 'ppl';
  // Recovery inside the walk: only where candidates are scored from the hidden states (ppl).
  const recovering = input.recover !== undefined && metric === 'ppl';
  const products = recovering ? await createOrtGemm(engine) : undefined;
  /** Block l of `spec` recovered under its fixed masks, on the hidden states entering it. */
  const recoverFixed = async (
    l: number,
    masks: Map<string, Uint8Array>,
    entering: Float32Array[] | undefined,
  ) => {
    spec = await recoverBlock(
      spec,
      l,
      masks,
      input.batches,
      entering,
      input.recover!.damping,
      engine,
      products!,
    );
  };
  const L = spec.config.numLayers;
  const layouts = Array.from({ length: L }, (_, l) => blockLayout(input.matrices, l));
  const expectedOrder = layouts.flatMap((b) => b.matrices.map((m) => m.role));
  if (expectedOrder.join('\n') !== input.matrices.map((m) => m.role).join('\n')) {
    throw new GenepruneError('internal', 'block search: matrices are not in layer order');
  }
  const bleu =
    metric === 'bleu' ? await createBleuScorer(spec, input.matrices, input.bleu, engine) : undefined;
  try {
    const keeps: Uint8Array[] = [];
    const reports: R[] = [];
    let dense = Number.NaN;
    let passes = 0;
    let evaluations = 0;
    let start = 0;
    let secondsBefore = 0;
    let hidden: Float32Array[] | undefined;
    const cp = await input.checkpoint?.read();
    if (cp && cp.done > 0) {
      rng.setState(cp.rngState);
      keeps.push(...cp.keeps);
      reports.push(...cp.reports);
      ({ dense, evaluations } = cp);
      passes = cp.forwardPasses;
      secondsBefore = cp.seconds;
      start = cp.done;
      if (metric === 'ppl' || input.needsHidden === true) {
        let at = 0;
        for (let l = 0; l < start; l++) {
          const b = layouts[l];
          const masks = new Map(b.matrices.map((m, i) => [m.role, keeps[at + i]]));
          at += b.matrices.length;
          if (recovering) await recoverFixed(l, masks, hidden);
          hidden = await advanceHidden(spec, l, input.batches, hidden, masks, engine);
        }
      }
    }
    const t0 = performance.now();
    const seconds = () => secondsBefore + (performance.now() - t0) / 1000;
    for (let l = start; l < L; l++) {
      const block = layouts[l];
      const roles = block.matrices.map((m) => m.role);
      // Candidates scored after their own recovery: the block's Gram matrices once, a walk per candidate.
      const grams = recovering
        ? await captureBlockGrams(spec, l, input.batches, hidden, input.recover!.damping, engine, products!)
        : undefined;
      // BLEU scores whole-model generations: no suffix graph, no hidden states. Recovered candidates get
      // sessions of their own; the block's shared one then only scores the dense model (block 0).
      const evaluator =
        metric === 'ppl' && (!grams || l === 0)
          ? await createLayerEvaluator(spec, l, roles, input.batches, hidden, engine)
          : undefined;
      const fixed = new Map(input.matrices.slice(0, keeps.length).map((m, i) => [m.role, keeps[i]]));
      if (grams) passes += input.batches.length;
      const value = async (genome: Uint8Array | undefined): Promise<number> => {
        const feeds = genome ? blockFeeds(block, genome) : new Map<string, Uint8Array>();
        if (grams && genome) {
          const own = await createLayerEvaluator(
            await applyBlockRecovery(spec, grams, feeds, products!),
            l,
            roles,
            input.batches,
            hidden,
            engine,
          );
          try {
            return await own.perplexity(feeds);
          } finally {
            passes += own.passes();
            await own.release();
          }
        }
        if (evaluator) return evaluator.perplexity(feeds);
        return bleu!.score(genome ? new Map([...fixed, ...feeds]) : new Map());
      };
      let outcome: BlockOutcome<R>;
      let generationNow = 0;
      try {
        if (l === 0) dense = await value(undefined);
        const ctx: BlockContext = {
          spec,
          block,
          layers: L,
          batches: input.batches,
          hidden,
          metric,
          dense,
          rng,
          engine,
          async quality(genome) {
            evaluations++;
            const t0 = performance.now();
            const v = await value(genome);
            await input.onEvaluation?.({
              layer: l,
              generation: generationNow,
              metric,
              value: v,
              sparsity: offShare(genome),
              ms: performance.now() - t0,
            });
            return { value: v, normalized: normalizedQuality(metric, v, dense) };
          },
          generation(done, of, best) {
            generationNow = done + 1;
            input.onProgress?.({
              layer: l,
              layers: L,
              generation: done,
              generations: of,
              metric,
              best: best.value,
              bestSparsity: best.sparsity,
              evaluations,
              seconds: seconds(),
            });
          },
        };
        outcome = await input.search(ctx);
      } finally {
        if (evaluator) {
          passes += evaluator.passes();
          await evaluator.release();
        }
      }
      passes += outcome.extraPasses ?? 0;
      if (outcome.genome.length !== block.genes) {
        throw new GenepruneError(
          'internal',
          `block ${l}: the search returned ${outcome.genome.length} genes`,
        );
      }
      const feeds = blockFeeds(block, outcome.genome);
      for (const role of roles) keeps.push(feeds.get(role)!.slice());
      reports.push(outcome.report);
      input.onBlock?.(outcome.report, l, L);
      if (l < L - 1) {
        if (grams) spec = await applyBlockRecovery(spec, grams, feeds, products!);
        if (metric === 'ppl' || input.needsHidden === true) {
          hidden = await advanceHidden(spec, l, input.batches, hidden, feeds, engine);
          passes += input.batches.length;
        }
        await input.checkpoint?.write({
          done: l + 1,
          keeps,
          rngState: rng.getState(),
          reports,
          dense,
          forwardPasses: passes + (bleu?.forwards() ?? 0),
          evaluations,
          seconds: seconds(),
        });
      }
    }
    return { keeps, reports, metric, dense, forwardPasses: passes + (bleu?.forwards() ?? 0), evaluations };
  } finally {
    await bleu?.release();
    await products?.release();
  }
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
    layers: [l, l + 1],
    output: l === spec.config.numLayers - 1 ? 'nll' : 'hidden',
    capture: { layers: [l], kind },
  });
  const pass = await runBlock(capture, batches, hidden ? { hidden } : {}).finally(() => capture.release());
  const out = new Map<CapturePoint, Float64Array>();
  for (const point of CAPTURE_POINTS) {
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
  for (const point of CAPTURE_POINTS) {
    const at = grams.points.get(point);
    if (!at) continue;
    for (const role of rolesOfCapturePoint(grams.layer, point)) {
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

/** BLEU of the calibration task under whole-model weight masks, on one 'row_logits' session. */
async function createBleuScorer(
  spec: ModelSpec,
  matrices: readonly PrunableMatrix[],
  opts: BleuObjectiveOptions | undefined,
  engine: { device?: Device; threads?: number },
) {
  if (!opts) {
    throw new GenepruneError('internal', 'a BLEU block search needs its calibration task (bleu options)');
  }
  const task = slicePreparedTask(
    opts.task,
    Math.min(opts.items ?? BLEU_SEARCH_ITEMS, opts.task.prompts.length),
  );
  const runner = await createRunner(spec, {
    ...engine,
    output: 'row_logits',
    weightMasks: matrices.map((m) => m.role),
  });
  let forwards = 0;
  return {
    async score(masks: Map<string, Uint8Array>): Promise<number> {
      const r = await scoreGeneration(runner, task, {
        maxNewTokens: opts.maxNewTokens ?? BLEU_SEARCH_NEW_TOKENS,
        ...(opts.batchSize ? { batchSize: opts.batchSize } : {}),
        bleu: opts.kind ?? 'corpus',
        masks: { weightMasks: masks },
      });
      forwards += r.forwards;
      return r.bleu;
    },
    forwards: () => forwards,
    release: () => runner.release(),
  };
}
