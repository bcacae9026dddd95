/**
 * Seeded GAs over weight masks (`geneprune weights --method ga-wanda | ga-magnitude`): the paper's GA searches
 * 45,000 bits a block with ten random individuals and never gets past its random start; these start from a
 * one-shot method's mask and search only the masks with exactly its budget.
 *
 * Block by block (blockwise.ts: blocks 0 … L−1, each fixed before the next, candidates scored by suffix graphs
 * from cached hidden states), per block l:
 *   - seed: the method's mask of block l at the run's sparsity or pattern, computed as that method does it on
 *     the blocks fixed so far — `ga-wanda`: |W_ij|·‖X_j‖₂ per output row with the input norms of block l captured
 *     on the calibration tokens with blocks < l at their chosen masks (so the seed of every block is what
 *     sequential Wanda would choose given the same earlier blocks); `ga-magnitude`: |W| per matrix;
 *   - genome: the block's keep bits; every individual keeps exactly the seed's count in every output row
 *     (with a pattern: N of every group of M), so sparsity never moves and the fitness is quality alone:
 *     F = −ppl / ppl_dense on the calibration tokens (blocks < l fixed, later blocks dense);
 *   - initial population: the seed and `population − 1` mutants of it;
 *   - each generation (`generations`): `population` children, each from two parents drawn by binary tournament,
 *     row-wise uniform crossover (every output row whole from one parent), then mutation — `swaps` exchanges of a
 *     kept and a pruned weight inside one output row, drawn among the row's `window`·cols weakest kept and
 *     strongest pruned weights by the seed's score (with a pattern: inside one group of M) — with
 *     swaps = max(1, round(mutationRate · pruned weights of the block)); parents and children together, the
 *     `population` fittest survive ((μ+λ) selection), so the block's result is never less fit than its seed.
 *     The loop is the generic one (search/evolve.ts, `muPlusLambda`), a generation scored with one `evaluateMany`.
 * With `--recover` the search optimises the model recovery will produce: block l's Gram matrices are captured
 * once (earlier blocks fixed and recovered, the block dense, as prune/sequential.ts captures them), every
 * candidate is scored after its own column-walk recovery (a suffix session on its recovered weights), and the
 * fixed block is recovered before block l + 1 is searched — the run's final recovery repeats those steps.
 */
import type { TokenBatch } from '../../engine/runner.js';
import { GenepruneError } from '../../errors.js';
import { rolesOfCapturePoint } from '../../graph/capture.js';
import {
  magnitudeScores,
  type NmPattern,
  selectNm,
  selectPerMatrix,
  selectPerRow,
  wandaScores,
} from '../../masks/select.js';
import { blockSearchMetrics } from '../../metrics/registry.js';
import { evolve, muPlusLambda } from '../../search/evolve.js';
import { tournamentPair } from '../../search/selection.js';
import { calibrationBatches, registerWeightBaseline, type WeightBaseline } from './baselines.js';
import type { BlockMetric } from './blockobjective.js';
import { captureBlockInputs } from './blockpasses.js';
import { offShare } from './blockspace.js';
import { type BlockContext, type BlockOutcome, type CheckpointStore, searchBlockwise } from './blockwise.js';
import { blockMetricOf, checkGaSettings } from './ga.js';
import { boundaryRegions, boundarySwaps, groupSwaps, rowCrossover, rowStarts } from './operators.js';

export const SEEDED_DEFAULTS = {
  population: 8,
  generations: 10,
  /** Share of the block's pruned weights swapped per child (at least one swap). */
  mutationRate: 0.002,
  /** Per row, the share of its weights on each side of the seed's score boundary that swaps draw from. */
  window: 0.1,
  crossoverRate: 1,
  tournamentSize: 2,
} as const;

export type SeededSettings = { -readonly [K in keyof typeof SEEDED_DEFAULTS]: number };

export interface SeededLayerReport {
  layer: number;
  genes: number;
  sparsity: number;
  /**
   * The run's calibration metric (perplexity with later blocks dense, or BLEU) of the seed and of the block's
   * fixed mask.
   */
  seedQuality: number;
  bestQuality: number;
  swapsPerChild: number;
  generations: number;
  evaluations: number;
}

export interface SeededReport {
  seed: 'wanda' | 'magnitude';
  metric: BlockMetric;
  /** The dense model's calibration perplexity or BLEU. */
  dense: number;
  layers: SeededLayerReport[];
}

type SeedKind = SeededReport['seed'];

/** Σ_t X_tj² of each prunable linear's input in block `ctx.block`, on the calibration batches. */
async function inputSquaredNorms(ctx: BlockContext): Promise<Map<string, Float64Array>> {
  const l = ctx.block.layer;
  const out = new Map<string, Float64Array>();
  for (const [point, stat] of await captureBlockInputs(
    ctx.spec,
    l,
    ctx.batches,
    ctx.hidden,
    'sqnorm',
    ctx.engine,
  )) {
    for (const role of rolesOfCapturePoint(l, point)) out.set(role, stat);
  }
  return out;
}

/** The seed's keep bits and its per-weight scores, for the whole block. */
async function seedOf(
  ctx: BlockContext,
  kind: SeedKind,
  sparsity: number,
  pattern: NmPattern | undefined,
): Promise<{ seed: Uint8Array; scores: Float32Array; passes: number }> {
  const { block } = ctx;
  const norms = kind === 'wanda' ? await inputSquaredNorms(ctx) : undefined;
  const seed = new Uint8Array(block.genes);
  const scores = new Float32Array(block.genes);
  for (const [i, m] of block.matrices.entries()) {
    const src = ctx.spec.tensors.get(m.role);
    if (!src) throw new GenepruneError('model', `the model has no tensor ${m.role}`);
    const w = await src.load();
    let s: Float32Array;
    if (norms) {
      const sq = norms.get(m.role);
      if (!sq) throw new GenepruneError('internal', `no input norms captured for ${m.role}`);
      s = wandaScores(w, m.rows, m.cols, sq);
    } else s = magnitudeScores(w);
    const keep = pattern
      ? selectNm(s, m.rows, m.cols, pattern)
      : kind === 'wanda'
        ? selectPerRow(s, m.rows, m.cols, sparsity)
        : selectPerMatrix(s, sparsity);
    seed.set(keep, block.offsets[i]);
    scores.set(s, block.offsets[i]);
  }
  return { seed, scores, passes: norms ? ctx.batches.length : 0 };
}

/** One scored individual of a block's population: its quoted quality and the fitness ranked on. */
interface Scored {
  genome: Uint8Array;
  value: number;
  fitness: number;
}

const fitnessOf = (x: Scored) => x.fitness;

/**
 * The seeded GA on one block (see the file's comment): the generic loop (search/evolve.ts) with tournament
 * parents (the second drawn from the others), row-wise crossover, budget-keeping swaps and (μ+λ) survival; each
 * generation's genomes are scored with one `evaluateMany`.
 */
async function searchSeededBlock(
  ctx: BlockContext,
  kind: SeedKind,
  s: SeededSettings,
  sparsity: number,
  pattern: NmPattern | undefined,
): Promise<BlockOutcome<SeededLayerReport>> {
  const { block, rng } = ctx;
  const { seed, scores, passes } = await seedOf(ctx, kind, sparsity, pattern);
  const pruned = block.genes - seed.reduce((a, b) => a + b, 0);
  const swaps = Math.max(1, Math.round(s.mutationRate * pruned));
  const starts = rowStarts(block);
  const regions = pattern ? undefined : boundaryRegions(seed, scores, starts, s.window);
  const mutateOne = (g: Uint8Array) =>
    pattern ? groupSwaps(g, pattern.m, swaps, rng) : boundarySwaps(g, regions!, swaps, rng);
  const initial = [seed, ...Array.from({ length: s.population - 1 }, () => mutateOne(seed))];
  let seedQuality = Number.NaN;
  let evaluations = 0;
  const { population } = await evolve<Uint8Array, Scored>(
    { generation: 0, pending: initial },
    {
      rng,
      async score(genomes, generation) {
        const qs = await ctx.evaluate(genomes);
        if (generation === 0) seedQuality = qs[0].value;
        evaluations += genomes.length;
        return genomes.map((genome, i) => ({ genome, value: qs[i].value, fitness: qs[i].normalized }));
      },
      parents: (pop, r) => tournamentPair(pop.map(fitnessOf), s.tournamentSize, r, true),
      crossover: (a, b, r) => rowCrossover(a.genome, b.genome, starts, s.crossoverRate, r),
      // The operators draw from the block's rng, the one the loop passes.
      mutate: (g) => mutateOne(g),
      survival: muPlusLambda(s.population, fitnessOf),
      stop(pop, generation) {
        ctx.generation(generation, s.generations, { value: pop[0].value, sparsity: offShare(pop[0].genome) });
        return generation >= s.generations;
      },
    },
  );
  const best = population[0];
  return {
    genome: best.genome,
    report: {
      layer: block.layer,
      genes: block.genes,
      sparsity: offShare(best.genome),
      seedQuality,
      bestQuality: best.value,
      swapsPerChild: swaps,
      generations: s.generations,
      evaluations,
    },
    extraPasses: passes,
  };
}

function seededMethod(kind: SeedKind): WeightBaseline {
  const name = `ga-${kind}`;
  return {
    name,
    summary: `a GA seeded with the ${kind} mask, block by block; swaps inside rows keep its exact budget (population 8, 10 generations)`,
    supportsPattern: true,
    searchSettings: ['population', 'generations', 'mutationRate'],
    searchMetrics: blockSearchMetrics,
    remoteSearch: true,
    description: {
      ...SEEDED_DEFAULTS,
      seed: kind,
      layerOrder:
        'blocks 0 … L−1 in order; each block is one genome of its q k v o gate up down matrices flattened in mask-file order; a block is fixed before the next is searched',
      fitness:
        '−ppl/ppl_dense on the calibration tokens, earlier blocks fixed, later blocks dense (sparsity is fixed); with a generation --metric (bleu, exact-match, pass@1), its value / the dense value on the calibration task',
      operators:
        'row-wise uniform crossover; mutation swaps a kept and a pruned weight inside one output row near the seed’s score boundary (inside one group of M with a pattern)',
      selection:
        'binary tournament for parents; (μ+λ): the population’s fittest of parents and children survive',
    },
    async select(input) {
      const o = input.search ?? {};
      const s: SeededSettings = {
        ...SEEDED_DEFAULTS,
        ...(o.population !== undefined ? { population: o.population } : {}),
        ...(o.generations !== undefined ? { generations: o.generations } : {}),
        ...(o.mutationRate !== undefined ? { mutationRate: o.mutationRate } : {}),
      };
      checkGaSettings({
        population: s.population,
        generations: s.generations,
        mutationRate: s.mutationRate,
        lambda: 0,
        initialSparsity: 0,
        crossoverRate: s.crossoverRate,
        tournamentSize: s.tournamentSize,
      });
      const list: TokenBatch[] = calibrationBatches(input);
      const out = await searchBlockwise<SeededLayerReport>({
        spec: input.spec,
        matrices: input.matrices,
        batches: list,
        rng: input.rng,
        ...(input.engine ? { engine: input.engine } : {}),
        ...(input.checkpoint ? { checkpoint: input.checkpoint as CheckpointStore<SeededLayerReport> } : {}),
        ...blockMetricOf(input),
        needsHidden: kind === 'wanda',
        ...(input.recovery ? { recover: input.recovery } : {}),
        ...(input.remote ? { remote: input.remote } : {}),
        search: (ctx) => searchSeededBlock(ctx, kind, s, input.sparsity, input.pattern),
        onBlock: (_r, l, L) => input.onProgress?.(l + 1, L, 'blocks'),
        ...(input.onSearchProgress ? { onProgress: input.onSearchProgress } : {}),
        ...(input.onSearchEvaluation ? { onEvaluation: input.onSearchEvaluation } : {}),
      });
      const report: SeededReport = { seed: kind, metric: out.metric, dense: out.dense, layers: out.reports };
      return { keeps: out.keeps, forwardPasses: out.forwardPasses, report };
    },
  };
}

export const GA_WANDA = seededMethod('wanda');
export const GA_MAGNITUDE = seededMethod('magnitude');
registerWeightBaseline(GA_WANDA);
registerWeightBaseline(GA_MAGNITUDE);
