/**
 * Block-by-block weight-mask search, the frame every searching weights method shares (`ga`, `ga-wanda`,
 * `ga-magnitude`): for l = 0 … L−1 a method searches the masks of block l's prunable matrices (one genome: the
 * block's q k v o gate up down flattened in mask-file order, each [out, in] row-major), with blocks < l fixed at
 * their chosen masks and blocks > l dense; the best genome is fixed before block l + 1 is searched.
 *
 * Per block the frame builds the block objective (blockobjective.ts: block l's candidates are genomes of its
 * search space, blockspace.ts, scored by a suffix graph of blocks [l, L) fed the hidden states entering block l,
 * which the frame computes once per block with the earlier blocks' fixed masks), hands the method `evaluate`
 * (one `evaluateMany` per population, each candidate then counted and logged in order), and after the search
 * fixes the block: its recovery (`--recover`) and the hidden states leaving it.
 *
 * Resume: after each fixed block the frame hands the masks chosen so far, the rng's state and the methods' logs
 * to `checkpoint.write`; a run restarted from that checkpoint recomputes the cached hidden states of the fixed
 * blocks (l block passes, not counted in `forwardPasses`) and continues with the next block exactly as the
 * uninterrupted run would have.
 *
 * A block without prunable matrices (`--layers` left it out) is not searched: the walk passes through it dense,
 * and stops after the last block that has any. Encoder-decoders walk the encoder blocks, then the decoder blocks
 * fed the final encoder output of the walk so far (engine/blocks.ts enterBlock).
 */
import { enterBlock } from '../../engine/blocks.js';
import { createOrtGemm } from '../../engine/gemm.js';
import type { TokenBatch } from '../../engine/runner.js';
import type { Device } from '../../engine/session.js';
import { GenepruneError } from '../../errors.js';
import type { PrunableMatrix } from '../../masks/weights.js';
import { metricEntry, qualityOfValue } from '../../metrics/registry.js';
import type { ModelSpec } from '../../model/spec.js';
import type { RemoteEvaluation } from '../../search/backend.js';
import { normalisedQuality } from '../../search/fitness.js';
import { type BleuObjectiveOptions, reportedQuality } from '../../search/objective.js';
import type { Rng } from '../../util/rng.js';
import {
  type BlockMetric,
  type BlockObjective,
  createBleuScorer,
  createBlockObjective,
} from './blockobjective.js';
import { advanceHidden, recoverBlock } from './blockpasses.js';
import { type BlockLayout, blockFeeds, blockLayout, offShare } from './blockspace.js';

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
  /** The block's objective (its search space is `objective.space`). */
  objective: BlockObjective;
  /**
   * Scores genomes of the block (blocks before it fixed, after it dense) with one `evaluateMany`, counting and
   * logging each in order.
   */
  evaluate(genomes: readonly Uint8Array[]): Promise<BlockQuality[]>;
  /** Reports a finished generation (for progress). */
  generation(done: number, of: number, best: { value: number; sparsity: number }): void;
}

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
  const q = -normalisedQuality(
    { metric, denseQuality: qualityOfValue(metric, dense) },
    qualityOfValue(metric, value),
    'ratio',
  );
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
  /**
   * `--workers N` (later `--queue`): each block's candidates scored on this backend, its evaluators rebuilding
   * the block's scorer from a recipe (the walk's start and the fixed masks; blockrecipe.ts). The perplexity
   * without recovery inside the walk only (the run refuses the rest before reading anything).
   */
  remote?: RemoteEvaluation;
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
  // How the metric scores a block's candidates (its registry entry): from the hidden states entering the block
  // (perplexity), or by whole-model generations (BLEU).
  const fromHidden = metricEntry(metric).blockSearch === 'suffix';
  // Recovery inside the walk: only where candidates are scored from the hidden states.
  const recovering = input.recover !== undefined && fromHidden;
  const products = recovering ? await createOrtGemm(engine) : undefined;
  const L = spec.config.numLayers;
  const layouts = Array.from({ length: L }, (_, l) => blockLayout(input.matrices, l));
  const expectedOrder = layouts.flatMap((b) => b.matrices.map((m) => m.role));
  if (expectedOrder.join('\n') !== input.matrices.map((m) => m.role).join('\n')) {
    throw new GenepruneError('internal', 'block search: matrices are not in layer order');
  }
  // BLEU scores whole-model generations (no suffix graph, no hidden states) on one session for the run — the
  // evaluators' own with a backend.
  const bleu =
    metricEntry(metric).blockSearch === 'generation' && !input.remote
      ? await createBleuScorer(spec, input.matrices, input.bleu, engine, metric)
      : undefined;
  try {
    const keeps: Uint8Array[] = [];
    const reports: R[] = [];
    let dense = Number.NaN;
    let passes = 0;
    let evaluations = 0;
    let start = 0;
    let secondsBefore = 0;
    let hidden: Float32Array[] | undefined;
    // The calibration batches as block l reads them (an encoder-decoder's decoder blocks: with the encoder output).
    let batches = input.batches;
    const walks = fromHidden || input.needsHidden === true;
    const enter = (l: number) => {
      if (walks) ({ batches, hidden } = enterBlock(spec.config, l, batches, hidden));
    };
    // Past the last block with prunable matrices there is nothing to search.
    let end = L;
    while (end > 0 && layouts[end - 1].matrices.length === 0) end--;
    const cp = await input.checkpoint?.read();
    if (cp && cp.done > 0) {
      rng.setState(cp.rngState);
      keeps.push(...cp.keeps);
      reports.push(...cp.reports);
      ({ dense, evaluations } = cp);
      passes = cp.forwardPasses;
      secondsBefore = cp.seconds;
      start = cp.done;
      if (walks) {
        let at = 0;
        for (let l = 0; l < start; l++) {
          enter(l);
          const b = layouts[l];
          const masks = new Map(b.matrices.map((m, i) => [m.role, keeps[at + i]]));
          at += b.matrices.length;
          if (recovering) {
            spec = await recoverBlock(
              spec,
              l,
              masks,
              batches,
              hidden,
              input.recover!.damping,
              engine,
              products!,
            );
          }
          hidden = await advanceHidden(spec, l, batches, hidden, masks, engine);
        }
      }
    }
    const t0 = performance.now();
    const seconds = () => secondsBefore + (performance.now() - t0) / 1000;
    for (let l = start; l < end; l++) {
      enter(l);
      const block = layouts[l];
      if (block.matrices.length === 0) {
        // Left out of the search: the walk passes through the block as it is.
        if (walks) {
          hidden = await advanceHidden(spec, l, batches, hidden, new Map(), engine);
          passes += batches.length;
        }
        continue;
      }
      const fixed = new Map(input.matrices.slice(0, keeps.length).map((m, i) => [m.role, keeps[i]]));
      const objective = await createBlockObjective({
        spec,
        block,
        batches,
        hidden,
        scoresDense: Number.isNaN(dense),
        metric,
        engine,
        fixed,
        ...(bleu ? { bleu } : {}),
        ...(recovering ? { recover: { damping: input.recover!.damping, products: products! } } : {}),
        ...(input.remote
          ? {
              remote: {
                ...input.remote,
                matrices: input.matrices,
                batches: input.batches,
                ...(input.bleu ? { bleu: input.bleu } : {}),
              },
            }
          : {}),
      });
      let outcome: BlockOutcome<R>;
      let generationNow = 0;
      try {
        // On the first block searched, whose earlier blocks (if any) are dense.
        if (Number.isNaN(dense)) dense = await objective.dense();
        const evaluate = async (genomes: readonly Uint8Array[]): Promise<BlockQuality[]> => {
          const scored = await objective.evaluateMany(genomes);
          const out: BlockQuality[] = [];
          // Logged in index order once the batch is scored (a resumed run trims the log to its checkpoint).
          for (const [i, g] of genomes.entries()) {
            evaluations++;
            const { quality } = scored[i].evaluation;
            const value = reportedQuality(metric, quality);
            await input.onEvaluation?.({
              layer: l,
              generation: generationNow,
              metric,
              value,
              sparsity: offShare(g),
              ms: scored[i].evaluation.ms,
            });
            out.push({ value, normalized: normalizedQuality(metric, value, dense) });
          }
          return out;
        };
        const ctx: BlockContext = {
          spec,
          block,
          layers: L,
          batches,
          hidden,
          metric,
          dense,
          rng,
          engine,
          objective,
          evaluate,
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
        passes += objective.forwardPasses();
        await objective.release();
      }
      passes += outcome.extraPasses ?? 0;
      if (outcome.genome.length !== block.genes) {
        throw new GenepruneError(
          'internal',
          `block ${l}: the search returned ${outcome.genome.length} genes`,
        );
      }
      const feeds = blockFeeds(block, outcome.genome);
      for (const m of block.matrices) keeps.push(feeds.get(m.role)!.slice());
      reports.push(outcome.report);
      input.onBlock?.(outcome.report, l, L);
      if (l < end - 1) {
        // The fixed block recovered (recovery needs no session: the objective's Gram matrices and the weights).
        spec = await objective.recovered(outcome.genome);
        if (walks) {
          hidden = await advanceHidden(spec, l, batches, hidden, feeds, engine);
          passes += batches.length;
        }
        await input.checkpoint?.write({
          done: l + 1,
          keeps,
          rngState: rng.getState(),
          reports,
          dense,
          forwardPasses: passes,
          evaluations,
          seconds: seconds(),
        });
      }
    }
    return { keeps, reports, metric, dense, forwardPasses: passes, evaluations };
  } finally {
    await bleu?.release();
    await products?.release();
  }
}
