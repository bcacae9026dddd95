/**
 * The GenePrune paper's GA over weight masks (`geneprune weights --method ga`), layer by layer.
 *
 * A "layer" is one transformer block: its seven prunable matrices (q k v o gate up down) flattened into one bit
 * genome in the mask file's order (each [out, in] row-major), blocks searched in order 0 … L−1. Each block's best
 * mask is fixed before the next block's search starts (the paper's sequential multi-layer pruning).
 *
 * Per block l (the `geneprune` preset, GA_PRESET):
 *   - initial population: `population` (10) genomes, each with round(0.05·n) of the block's n weights off at
 *     random (seeded from the run's rng);
 *   - fitness F = 0.98·(−ppl/ppl_dense) + 0.02·s_l: ppl is the calibration perplexity of the whole model with
 *     blocks < l at their fixed masks, block l at the candidate and blocks > l dense; ppl_dense the dense model's
 *     on the same tokens; s_l the share of block l's prunable weights that are off. λ = 0.02 as in the paper, the
 *     form (1−λ)·quality + λ·sparsity as in its public code (which uses BLEU for quality; −ppl/ppl_dense is −1
 *     for the dense model, so λ weighs the same whatever the perplexity's scale);
 *   - steady state, `generations` (5) iterations: two parents by binary tournament (the second drawn from the
 *     others), single-point crossover of the flattened genomes (rate 1), mutation turning each kept weight of
 *     each child off with probability 0.05 (never on: the code's rule), both children scored and put in place of
 *     the two worst of the population (so the best never gets worse);
 *   - stop early when the fittest individual's s_l reaches the threshold (`--sparsity`), checked after the
 *     initial population and after each iteration; the fittest individual is the block's mask.
 *
 * Candidates are scored by a suffix graph of blocks [l, L) fed the hidden states entering block l (computed once
 * per block with the earlier blocks' fixed masks), with block l's masks as graph inputs: one session per block,
 * and a candidate costs no forward of the blocks before it. `--sparsity` is therefore a threshold, not a budget:
 * the run reports the sparsity the GA reached.
 */
import { runBlock } from '../../engine/blocks.js';
import { createRunner, type ModelRunner, type TokenBatch } from '../../engine/runner.js';
import type { Device } from '../../engine/session.js';
import { flagError, GenepruneError } from '../../errors.js';
import type { PrunableMatrix } from '../../masks/weights.js';
import { batches, defaultBatchSize, makeWindows } from '../../metrics/perplexity.js';
import type { ModelSpec } from '../../model/spec.js';
import {
  byFitnessDesc,
  mutate,
  randomGenome,
  singlePointCrossover,
  tournament,
} from '../../search/operators.js';
import type { Rng } from '../../util/rng.js';
import { registerWeightBaseline, type WeightBaseline } from './baselines.js';

/** The paper's settings (`--preset geneprune`); the threshold is the run's `--sparsity`. */
export const GA_PRESET = {
  lambda: 0.02,
  population: 10,
  generations: 5,
  initialSparsity: 0.05,
  mutationRate: 0.05,
  crossoverRate: 1,
  tournamentSize: 2,
} as const;

export type GaSettings = { -readonly [K in keyof typeof GA_PRESET]: number };

/** What the run's config records about the method. */
export const GA_DESCRIPTION = {
  preset: 'geneprune',
  ...GA_PRESET,
  layerOrder:
    'blocks 0 … L−1 in order; each block is one genome of its q k v o gate up down matrices flattened in mask-file order; a block is fixed before the next is searched',
  fitness:
    '(1 − λ)·(−ppl/ppl_dense) + λ·(share of the block’s prunable weights off); ppl on the calibration tokens with earlier blocks fixed, later blocks dense',
  selection: 'binary tournament (the second parent drawn from the others); children replace the two worst',
  stop: 'after `generations` steady-state iterations, or once the fittest individual’s block sparsity reaches --sparsity',
};

/** One scored individual. */
export interface GaScore {
  fitness: number;
  perplexity: number;
  /** Share of the block's prunable weights off. */
  sparsity: number;
}

export interface GaLayerReport {
  layer: number;
  genes: number;
  /** The fittest of the initial population, and the block's fixed mask. */
  initialBest: GaScore;
  best: GaScore;
  iterations: number;
  evaluations: number;
  /** Whether the search stopped because the fittest individual reached the threshold. */
  reachedThreshold: boolean;
}

export interface GaReport {
  densePerplexity: number;
  layers: GaLayerReport[];
}

/** The matrices of one block, in mask-file order, and each one's first gene in the block's genome. */
function blockMatrices(matrices: readonly PrunableMatrix[], layer: number) {
  const ms = matrices.filter((m) => m.layer === layer);
  const offsets: number[] = [];
  let n = 0;
  for (const m of ms) {
    offsets.push(n);
    n += m.rows * m.cols;
  }
  return { matrices: ms, offsets, genes: n };
}

/** The runner's weight-mask feeds of a block genome (views, not copies). */
function blockFeeds(block: ReturnType<typeof blockMatrices>, genome: Uint8Array): Map<string, Uint8Array> {
  return new Map(
    block.matrices.map((m, i) => [
      m.role,
      genome.subarray(block.offsets[i], block.offsets[i] + m.rows * m.cols),
    ]),
  );
}

function offShare(g: Uint8Array): number {
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

export interface GaInput {
  spec: ModelSpec;
  matrices: readonly PrunableMatrix[];
  /** The stop threshold on a block's sparsity. */
  threshold: number;
  batches: readonly TokenBatch[];
  rng: Rng;
  settings?: Partial<GaSettings>;
  engine?: { device?: Device; threads?: number };
  onLayer?: (report: GaLayerReport, layers: number) => void;
}

/** The layer-wise GA: one keep-array per matrix (in `matrices` order), the per-block log, the passes run. */
export async function geneticPrune(
  input: GaInput,
): Promise<{ keeps: Uint8Array[]; report: GaReport; forwardPasses: number }> {
  const s: GaSettings = { ...GA_PRESET, ...input.settings };
  if (!(Number.isInteger(s.population) && s.population >= 4)) {
    throw new GenepruneError('internal', `the GA needs a population of at least 4, got ${s.population}`);
  }
  const { spec, rng } = input;
  const L = spec.config.numLayers;
  const keepOf = new Map<string, Uint8Array>();
  const layers: GaLayerReport[] = [];
  let hidden: Float32Array[] | undefined;
  let densePerplexity = Number.NaN;
  let passes = 0;
  for (let l = 0; l < L; l++) {
    const block = blockMatrices(input.matrices, l);
    const roles = block.matrices.map((m) => m.role);
    const evaluator = await createLayerEvaluator(spec, l, roles, input.batches, hidden, input.engine);
    let best: Uint8Array;
    try {
      if (l === 0) densePerplexity = await evaluator.perplexity(new Map());
      const score = async (g: Uint8Array): Promise<GaScore> => {
        const perplexity = await evaluator.perplexity(blockFeeds(block, g));
        const sparsity = offShare(g);
        const fitness = (1 - s.lambda) * (-perplexity / densePerplexity) + s.lambda * sparsity;
        return { fitness: Number.isNaN(fitness) ? Number.NEGATIVE_INFINITY : fitness, perplexity, sparsity };
      };
      const remove = Math.round(s.initialSparsity * block.genes);
      const pop = Array.from({ length: s.population }, () => randomGenome(block.genes, remove, rng));
      const scores: GaScore[] = [];
      for (const g of pop) scores.push(await score(g));
      const fittest = () => {
        let b = 0;
        for (let i = 1; i < pop.length; i++)
          if (byFitnessDesc(scores[i].fitness, scores[b].fitness) < 0) b = i;
        return b;
      };
      const initialBest = scores[fittest()];
      let iterations = 0;
      let evaluations = pop.length;
      let reached = scores[fittest()].sparsity >= input.threshold;
      while (!reached && iterations < s.generations) {
        const fitness = scores.map((x) => x.fitness);
        const a = tournament(fitness, s.tournamentSize, rng);
        const others = fitness.map((f, i) => (i === a ? Number.NEGATIVE_INFINITY : f));
        let b = tournament(others, s.tournamentSize, rng);
        if (b === a) b = (a + 1) % pop.length;
        const children = singlePointCrossover(pop[a], pop[b], s.crossoverRate, rng).map((c) =>
          mutate(c, s.mutationRate, rng, 1),
        );
        const childScores = [await score(children[0]), await score(children[1])];
        evaluations += 2;
        // The two worst (the later one first on ties), then the children take their places.
        const order = pop
          .map((_, i) => i)
          .sort((x, y) => byFitnessDesc(scores[x].fitness, scores[y].fitness) || y - x);
        const worst = order.slice(-2);
        for (const [k, i] of worst.entries()) {
          pop[i] = children[k];
          scores[i] = childScores[k];
        }
        iterations++;
        reached = scores[fittest()].sparsity >= input.threshold;
      }
      const bi = fittest();
      best = pop[bi];
      const report: GaLayerReport = {
        layer: l,
        genes: block.genes,
        initialBest,
        best: scores[bi],
        iterations,
        evaluations,
        reachedThreshold: reached,
      };
      layers.push(report);
      input.onLayer?.(report, L);
    } finally {
      passes += evaluator.passes();
      await evaluator.release();
    }
    for (const [role, keep] of blockFeeds(block, best)) keepOf.set(role, keep.slice());
    if (l < L - 1) {
      hidden = await advanceHidden(spec, l, input.batches, hidden, blockFeeds(block, best), input.engine);
      passes += input.batches.length;
    }
  }
  const keeps = input.matrices.map((m) => {
    const k = keepOf.get(m.role);
    if (!k) throw new GenepruneError('internal', `the GA chose no mask for ${m.role}`);
    return k;
  });
  return { keeps, report: { densePerplexity, layers }, forwardPasses: passes };
}

export const GA: WeightBaseline = {
  name: 'ga',
  summary:
    "the GenePrune paper's GA, block by block (population 10, 5 steady-state iterations, λ 0.02); --sparsity is its stop threshold",
  supportsPattern: false,
  description: GA_DESCRIPTION,
  async select(input) {
    if (input.pattern) throw flagError('--pattern', 'the ga method does not support patterns yet');
    const { stream, context, tokens } = input.calibration;
    const windows = makeWindows(stream, context, tokens, 'calibration data');
    const list: TokenBatch[] = [...batches(windows, defaultBatchSize(context, input.spec.config.vocabSize))];
    const out = await geneticPrune({
      spec: input.spec,
      matrices: input.matrices,
      threshold: input.sparsity,
      batches: list,
      rng: input.rng,
      ...(input.engine ? { engine: input.engine } : {}),
      onLayer: (r, L) => input.onProgress?.(r.layer + 1, L),
    });
    return { keeps: out.keeps, forwardPasses: out.forwardPasses, report: out.report };
  },
};

registerWeightBaseline(GA);
