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
 * `--sparsity` is therefore a threshold, not a budget: the run reports the sparsity the GA reached.
 *
 * The fitness form 'geneprune-code' (`--preset geneprune` on an encoder-decoder) is the paper's public code's
 * instead: F = (1 − λ)·b + λ·s_l with b the candidate's mean NLTK sentence BLEU on the 0–1 scale (its raw value,
 * not relative to the dense model's), multiplied by 0.1 when b < 0.09 (the code's penalty on broken candidates).
 *
 * With `--pattern N:M` (decided here; the paper has no patterns): the initial genomes are random N:M masks,
 * crossover is single-point with the cut on a group boundary, and mutation picks each group with probability
 * `mutationRate` and swaps one of its kept weights with one of its pruned ones, so every individual stays N:M;
 * the sparsity is then fixed at 1 − N/M, the threshold says nothing and every iteration runs.
 *
 * The loop is the generic one (search/evolve.ts: replace-the-two-worst survival, the one tournament); each
 * generation's candidates are scored with one `evaluateMany` of the block objective (suffix graphs,
 * blockobjective.ts), and the run can resume after any fixed block (blockwise.ts).
 */
import type { TokenBatch } from '../../engine/runner.js';
import type { Device } from '../../engine/session.js';
import { flagError } from '../../errors.js';
import type { NmPattern } from '../../masks/select.js';
import type { PrunableMatrix } from '../../masks/weights.js';
import { blockSearchMetrics, findMetric, isPerplexity, metricEntry, orList } from '../../metrics/registry.js';
import type { ModelSpec } from '../../model/spec.js';
import type { RemoteEvaluation } from '../../search/backend.js';
import { evolve, replaceWorst } from '../../search/evolve.js';
import type { BleuObjectiveOptions } from '../../search/objective.js';
import { mutate, randomGenome, singlePointCrossover } from '../../search/operators.js';
import { byFitnessDesc, tournamentPair } from '../../search/selection.js';
import type { Rng } from '../../util/rng.js';
import {
  calibrationBatches,
  registerWeightBaseline,
  type WeightBaseline,
  type WeightBaselineInput,
} from './baselines.js';
import type { BlockMetric } from './blockobjective.js';
import { offShare } from './blockspace.js';
import {
  type BlockContext,
  type BlockEvaluation,
  type BlockOutcome,
  type BlockSearchProgress,
  type CheckpointStore,
  searchBlockwise,
} from './blockwise.js';
import { groupSinglePointCrossover, groupSwapMutation, randomNmGenome } from './operators.js';

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

/** How a candidate's fitness is formed (see the file's comment). */
export const GA_FITNESS_FORMS = ['normalized', 'geneprune-code'] as const;
export type GaFitness = (typeof GA_FITNESS_FORMS)[number];

/** The GenePrune code's BLEU below which a candidate's fitness is cut to a tenth. */
export const GENEPRUNE_CODE_BLEU_FLOOR = 0.09;

/**
 * The GenePrune code's fitness of a candidate: (1 − λ)·b + λ·s, times 0.1 when b < 0.09; b its mean sentence BLEU
 * (0–1), s the share of the block's weights off.
 */
export function genePruneCodeFitness(bleuUnit: number, sparsity: number, lambda: number): number {
  const f = (1 - lambda) * bleuUnit + lambda * sparsity;
  return bleuUnit < GENEPRUNE_CODE_BLEU_FLOOR ? 0.1 * f : f;
}

/** The fitness form's description, as config.json records it. */
export const GENEPRUNE_CODE_FITNESS =
  '(1 − λ)·b + λ·(share of the block’s prunable weights off), times 0.1 when b < 0.09; b = the candidate’s mean NLTK sentence BLEU (method1, whitespace tokens) on the calibration task, 0–1 (the GenePrune code’s)';

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

/** The field a GaScore quotes its metric's value in: the metric's result.json name (its registry record). */
type GaValueField = 'perplexity' | 'bleu' | 'exactMatch' | 'passAt1';

/** One scored individual. */
export interface GaScore {
  fitness: number;
  /** The candidate's calibration perplexity (`--metric ppl`), BLEU, exact match or pass@1 (that --metric). */
  perplexity?: number;
  bleu?: number;
  exactMatch?: number;
  passAt1?: number;
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
  metric: BlockMetric;
  /** The fitness form, when not 'normalized'. */
  fitness?: GaFitness;
  /** The dense model's calibration perplexity (`--metric ppl`), BLEU, exact match or pass@1 (that --metric). */
  densePerplexity?: number;
  denseBleu?: number;
  denseExactMatch?: number;
  densePassAt1?: number;
  layers: GaLayerReport[];
}

export interface GaInput {
  spec: ModelSpec;
  matrices: readonly PrunableMatrix[];
  /** The stop threshold on a block's sparsity (unused with a pattern: its sparsity is fixed). */
  threshold: number;
  /** N:M: every individual keeps N of each group of M; crossover cuts on group boundaries, mutation swaps. */
  pattern?: NmPattern;
  batches: readonly TokenBatch[];
  rng: Rng;
  settings?: Partial<GaSettings>;
  engine?: { device?: Device; threads?: number };
  /** `--workers N`: the candidates scored on this evaluation backend (blockwise.ts). */
  remote?: RemoteEvaluation;
  checkpoint?: CheckpointStore<GaLayerReport>;
  /** Default 'ppl'; a generation metric (bleu, exact-match, pass@1) needs `bleu` (its calibration task). */
  metric?: BlockMetric;
  bleu?: BleuObjectiveOptions;
  /** Default 'normalized'; 'geneprune-code' needs metric 'bleu' with sentence-mean BLEU. */
  fitness?: GaFitness;
  onLayer?: (report: GaLayerReport, layers: number) => void;
  onProgress?: (p: BlockSearchProgress) => void;
  onEvaluation?: (e: BlockEvaluation) => void | Promise<void>;
}

/** Checks a GA's settings (errors name the CLI flags). */
export function checkGaSettings(s: GaSettings): void {
  if (!(Number.isInteger(s.population) && s.population >= 4 && s.population <= 10000)) {
    throw flagError('--population', `the GA needs an integer population in [4, 10000], got ${s.population}`);
  }
  if (!(Number.isInteger(s.generations) && s.generations >= 0 && s.generations <= 1e6)) {
    throw flagError('--generations', `must be an integer ≥ 0, got ${s.generations}`);
  }
  if (!(s.lambda >= 0 && s.lambda <= 1)) throw flagError('--lambda', `must lie in [0, 1], got ${s.lambda}`);
  if (!(s.mutationRate >= 0 && s.mutationRate <= 1)) {
    throw flagError('--mutation-rate', `must lie in [0, 1], got ${s.mutationRate}`);
  }
}

/** One scored individual of a block's population. */
interface Scored {
  genome: Uint8Array;
  score: GaScore;
}

const fitnessOf = (x: Scored) => x.score.fitness;

/** The fittest individual (the first on ties). */
function fittest(pop: readonly Scored[]): Scored {
  let b = 0;
  for (let i = 1; i < pop.length; i++) if (byFitnessDesc(fitnessOf(pop[i]), fitnessOf(pop[b])) < 0) b = i;
  return pop[b];
}

/**
 * The paper's steady-state GA on one block (see the file's comment): the generic loop (search/evolve.ts) with
 * tournament parents (the second drawn from the others), the block's crossover and mutation, and survival by
 * replacing the two worst; each generation's genomes are scored with one `evaluateMany`.
 */
async function searchBlock(
  ctx: BlockContext,
  s: GaSettings,
  threshold: number,
  pattern: NmPattern | undefined,
  form: GaFitness = 'normalized',
): Promise<BlockOutcome<GaLayerReport>> {
  const { block, rng } = ctx;
  // A score names its value as result.json names the metric's (perplexity, bleu).
  const field = metricEntry(ctx.metric).record!.value as GaValueField;
  const shown = (x: GaScore) => ({
    value: x[field]!,
    sparsity: x.sparsity,
  });
  const remove = Math.round(s.initialSparsity * block.genes);
  const initial = Array.from({ length: s.population }, () =>
    pattern ? randomNmGenome(block.genes, pattern.n, pattern.m, rng) : randomGenome(block.genes, remove, rng),
  );
  let evaluations = 0;
  let initialBest: GaScore | undefined;
  let iterations = 0;
  let reached = false;
  const { population } = await evolve<Uint8Array, Scored>(
    { generation: 0, pending: initial },
    {
      rng,
      async score(genomes) {
        const qs = await ctx.evaluate(genomes);
        evaluations += genomes.length;
        return genomes.map((genome, i) => {
          const sparsity = offShare(genome);
          // The code's form reads the quoted BLEU (0–100) on its own 0–1 scale.
          const fitness =
            form === 'geneprune-code'
              ? genePruneCodeFitness(qs[i].value / 100, sparsity, s.lambda)
              : (1 - s.lambda) * qs[i].normalized + s.lambda * sparsity;
          return {
            genome,
            score: {
              fitness: Number.isNaN(fitness) ? Number.NEGATIVE_INFINITY : fitness,
              [field]: qs[i].value,
              sparsity,
            },
          };
        });
      },
      parents: (pop, r) => tournamentPair(pop.map(fitnessOf), s.tournamentSize, r, true),
      crossover: (a, b, r) =>
        pattern
          ? groupSinglePointCrossover(a.genome, b.genome, pattern.m, s.crossoverRate, r)
          : singlePointCrossover(a.genome, b.genome, s.crossoverRate, r),
      mutate: (g, r) =>
        pattern ? groupSwapMutation(g, pattern.m, s.mutationRate, r) : mutate(g, s.mutationRate, r, 1),
      survival: replaceWorst(fitnessOf, 2),
      stop(pop, generation) {
        const best = fittest(pop).score;
        if (generation === 0) initialBest = best;
        iterations = generation;
        // With a pattern every individual sits at 1 − N/M: the threshold says nothing, all iterations run.
        reached = !pattern && best.sparsity >= threshold;
        ctx.generation(generation, s.generations, shown(best));
        return reached || generation >= s.generations;
      },
    },
  );
  const best = fittest(population);
  return {
    genome: best.genome,
    report: {
      layer: block.layer,
      genes: block.genes,
      initialBest: initialBest!,
      best: best.score,
      iterations,
      evaluations,
      reachedThreshold: reached,
    },
  };
}

/** The layer-wise GA: one keep-array per matrix (in `matrices` order), the per-block log, the passes run. */
export async function geneticPrune(
  input: GaInput,
): Promise<{ keeps: Uint8Array[]; report: GaReport; forwardPasses: number }> {
  const s: GaSettings = { ...GA_PRESET, ...input.settings };
  checkGaSettings(s);
  const form = input.fitness ?? 'normalized';
  if (form === 'geneprune-code' && (input.metric !== 'bleu' || input.bleu?.kind !== 'sentence-mean')) {
    throw flagError(
      '--metric',
      "the GenePrune code's fitness reads sentence-mean BLEU (--metric bleu --bleu sentence-mean)",
    );
  }
  const out = await searchBlockwise<GaLayerReport>({
    spec: input.spec,
    matrices: input.matrices,
    batches: input.batches,
    rng: input.rng,
    ...(input.engine ? { engine: input.engine } : {}),
    ...(input.checkpoint ? { checkpoint: input.checkpoint } : {}),
    ...(input.metric ? { metric: input.metric } : {}),
    ...(input.bleu ? { bleu: input.bleu } : {}),
    ...(input.remote ? { remote: input.remote } : {}),
    search: (ctx) => searchBlock(ctx, s, input.threshold, input.pattern, form),
    onBlock: (r, _l, L) => input.onLayer?.(r, L),
    ...(input.onProgress ? { onProgress: input.onProgress } : {}),
    ...(input.onEvaluation ? { onEvaluation: input.onEvaluation } : {}),
  });
  return {
    keeps: out.keeps,
    report: {
      metric: out.metric,
      ...(form === 'normalized' ? {} : { fitness: form }),
      [metricEntry(out.metric).record!.dense]: out.dense,
      layers: out.reports,
    },
    forwardPasses: out.forwardPasses,
  };
}

/** The block search's metric and BLEU task from the run's `--metric` (kl is refused by the settings). */
export function blockMetricOf(input: WeightBaselineInput): {
  metric?: BlockMetric;
  bleu?: BleuObjectiveOptions;
} {
  // The perplexity is the searches' default metric.
  if (isPerplexity(input.metric)) return {};
  if (findMetric(input.metric)?.blockSearch === undefined) {
    throw flagError(
      '--metric',
      `block-wise searches score ${orList(blockSearchMetrics())}, not ${input.metric}`,
    );
  }
  return { metric: input.metric as BlockMetric, ...(input.bleu ? { bleu: input.bleu } : {}) };
}

/** The GA settings of a run: the preset with the user's overrides. */
function gaSettingsOf(input: WeightBaselineInput): GaSettings {
  const o = input.search ?? {};
  return {
    ...GA_PRESET,
    ...(o.population !== undefined ? { population: o.population } : {}),
    ...(o.generations !== undefined ? { generations: o.generations } : {}),
    ...(o.lambda !== undefined ? { lambda: o.lambda } : {}),
    ...(o.mutationRate !== undefined ? { mutationRate: o.mutationRate } : {}),
  };
}

export const GA: WeightBaseline = {
  name: 'ga',
  summary:
    "the GenePrune paper's GA, block by block (population 10, 5 steady-state iterations, λ 0.02); --sparsity is its stop threshold",
  supportsPattern: true,
  searchSettings: ['population', 'generations', 'lambda', 'mutationRate'],
  searchMetrics: blockSearchMetrics,
  remoteSearch: true,
  description: GA_DESCRIPTION,
  async select(input) {
    const list = calibrationBatches(input);
    const out = await geneticPrune({
      spec: input.spec,
      matrices: input.matrices,
      threshold: input.sparsity,
      ...(input.pattern ? { pattern: input.pattern } : {}),
      batches: list,
      rng: input.rng,
      settings: gaSettingsOf(input),
      ...blockMetricOf(input),
      ...(input.search?.fitness ? { fitness: input.search.fitness } : {}),
      ...(input.engine ? { engine: input.engine } : {}),
      ...(input.remote ? { remote: input.remote } : {}),
      ...(input.checkpoint ? { checkpoint: input.checkpoint as CheckpointStore<GaLayerReport> } : {}),
      onLayer: (r, L) => input.onProgress?.(r.layer + 1, L, 'blocks'),
      ...(input.onSearchProgress ? { onProgress: input.onSearchProgress } : {}),
      ...(input.onSearchEvaluation ? { onEvaluation: input.onSearchEvaluation } : {}),
    });
    return { keeps: out.keeps, forwardPasses: out.forwardPasses, report: out.report };
  },
};

registerWeightBaseline(GA);
