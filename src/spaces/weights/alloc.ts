/**
 * Sparsity allocation (`geneprune weights --method alloc`): an EvoPress-style evolutionary search over how many
 * weights each prunable linear loses, at an exact global budget; within each matrix the mask is Wanda's.
 *
 * Definitions (M prunable matrices, matrix i with n_i = rows_i · cols_i weights, N = Σ n_i, s = --sparsity):
 *   - *Genome*: the pruned counts c_1 … c_M (integers), one per prunable linear (q k v o gate up down of every
 *     layer, in mask-file order). The budget holds exactly, always: Σ c_i = C = round(s · N).
 *   - *Start* (the uniform allocation): largest remainder — c_i = floor(s · n_i), then the C − Σ floor(s · n_i)
 *     matrices with the largest fractional parts s · n_i − floor(s · n_i) get one more (ties: the earlier matrix).
 *     So |c_i − s · n_i| < 1 for every matrix and the sum is exact.
 *   - *Bounds*: 0 ≤ c_i ≤ u_i with u_i = max(floor(max(maxShare, (1 + s)/2) · n_i), start c_i), maxShare = 0.9.
 *     A matrix at 100 % outputs zeros (a dead q or k makes attention uniform, a dead down deletes the MLP): a
 *     low-fidelity score can favour such extremes by chance, and Wanda's per-row choice of the last 10 % is nearly
 *     arbitrary, so every matrix keeps at least a tenth of its weights. Above s = 0.8 the cap is (1 + s)/2 (every
 *     matrix keeps at least half the mean kept share), so there is still room to allocate.
 *   - *Mutation*: `moves` is drawn uniformly in [1, maxMoves]; each move picks an ordered pair of different
 *     matrices (i, j) uniformly and moves d = min(Δ, u_i − c_i, c_j) pruned weights from j to i (c_i += d,
 *     c_j −= d; a pair with d = 0 is drawn again, at most 64 times), so the sum never changes. The quantum
 *     Δ = max(1, round(quantum · N / M)): a fixed share (1/32) of the mean matrix size, about 3 points of sparsity
 *     on a mean-sized matrix — small enough to refine, large enough to move 20–30 points in one run.
 *   - *Mask of matrix i at c_i*: Wanda's scores |W_rj| · ‖X_j‖₂, each row's weights ordered by (score, column);
 *     every row loses its floor(c_i / rows) lowest, and the c_i mod rows rows whose next weight in that order has
 *     the lowest score (ties: the lower row) lose one more — the extra weights go where they cost least by
 *     Wanda's own measure. When s · cols is whole (50 % on stories260K), the uniform start therefore equals
 *     one-shot per-row Wanda (selectPerRow); otherwise each row is within one weight of it, since the budget is
 *     exact per matrix.
 *   - *Input norms*: Σ_t X_tj² of every linear's input, captured ONCE on the dense model over the calibration
 *     tokens (one pass through the whole model with a `stats` output). EvoPress likewise fixes a per-layer
 *     database before searching. Sequential Wanda (prune/sequential.ts) measures layer l with layers < l pruned;
 *     doing that per candidate would cost 2L − 1 block passes and a rebuilt session per candidate instead of
 *     candidates that differ only in graph-input masks, so it is not done.
 *   - *Search* ((1 + λ) with multi-fidelity selection, as EvoPress): each of 100 generations makes `offspring`
 *     (λ = 12) mutants of the current parent; all are scored on the first 1/8 of the calibration tokens, the best 3 of
 *     those on the first 1/2, the best 1 on all of them; it replaces the parent when its full-fidelity perplexity
 *     is strictly lower (ties in any ranking: the earlier offspring). The parent's full score is kept, so the
 *     result is never worse on the full calibration score than the uniform start. It runs on the one GA loop
 *     (search/evolve.ts): survival `onePlusLambda`, mutation `mutateAllocation`, no crossover, and each
 *     generation's staged scoring (allocobjective.ts `scoreStaged`) as its one `score`, one `evaluateMany` a stage.
 *   - *Fitness*: calibration perplexity of the whole model (lower is better) with every matrix masked through
 *     graph inputs: one session for the whole search, never rebuilt. The first share·tokens of the calibration
 *     tokens are the low-fidelity sets (prefixes, the same windows as makeWindows cuts).
 *
 * Memory: the per-row orders (2 bytes per weight when a row has at most 65,536 inputs, else 4) and the scores
 * (4 bytes per weight) of every prunable matrix are held for the whole search.
 */
import { createRunner, type TokenBatch } from '../../engine/runner.js';
import type { Device } from '../../engine/session.js';
import { GenepruneError } from '../../errors.js';
import { wandaScores } from '../../masks/select.js';
import type { PrunableMatrix } from '../../masks/weights.js';
import { batches, defaultBatchSize } from '../../metrics/perplexity.js';
import type { ModelSpec } from '../../model/spec.js';
import { type EvolveStart, evolve, onePlusLambda } from '../../search/evolve.js';
import type { Rng } from '../../util/rng.js';
import {
  allocatedMask,
  allocationBounds,
  allocationQuantum,
  mutateAllocation,
  type RowOrder,
  rowOrder,
  uniformAllocation,
} from './allocation.js';
import { type AllocIndividual, createAllocObjective, scoreStaged } from './allocobjective.js';
import {
  calibrationWindows,
  type MethodStateStore,
  registerWeightBaseline,
  type SearchBest,
  type WeightBaseline,
  type WeightCalibration,
} from './baselines.js';
import { denseInputNorms } from './blockpasses.js';

/** One selection stage: score the survivors on the first `share` of the calibration tokens, keep the best `keep`. */
export interface FidelityStage {
  share: number;
  keep: number;
}

export interface AllocSettings {
  /** Generations of the (1 + λ) loop. */
  generations: number;
  /** λ: mutants of the parent per generation. */
  offspring: number;
  /** A mutation makes 1 … maxMoves moves (uniform). */
  maxMoves: number;
  /** Δ as a share of the mean prunable matrix size (N / M). */
  quantum: number;
  /** No matrix loses more than floor(max(maxShare, (1 + s)/2) · n_i) weights (or its start count, when higher). */
  maxShare: number;
  /** The stages before full fidelity, in order (shares increasing); the last stage's survivors go to full. */
  fidelity: readonly FidelityStage[];
}

export const ALLOC_DEFAULTS: AllocSettings = {
  generations: 100,
  offspring: 12,
  maxMoves: 3,
  quantum: 1 / 32,
  maxShare: 0.9,
  fidelity: [
    { share: 1 / 8, keep: 3 },
    { share: 1 / 2, keep: 1 },
  ],
};

/** What the run's config records about the method. */
export const ALLOC_DESCRIPTION = {
  ...ALLOC_DEFAULTS,
  genome: 'pruned weights c_i per prunable linear (mask-file order); Σ c_i = round(s·N) exactly',
  start:
    'largest remainder: floor(s·n_i), one more for the matrices with the largest fractional parts (ties: earlier matrix)',
  bounds: '0 ≤ c_i ≤ max(floor(max(maxShare, (1 + s)/2)·n_i), start c_i)',
  mutation:
    'moves ~ U{1..maxMoves}; each moves d = min(Δ, room of i, c_j) pruned weights from matrix j to i (pair uniform, i ≠ j); Δ = max(1, round(quantum·N/M))',
  mask: 'per row, Wanda |W|·‖X_j‖₂ ascending (ties: column): floor(c/rows) per row, the c mod rows rows with the lowest next score lose one more (ties: row)',
  inputNorms:
    'captured once on the dense model over the calibration tokens (no per-candidate sequential re-capture)',
  selection:
    'all offspring on the first share of the calibration tokens, the best `keep` go on; the last stage’s best on all tokens replaces the parent when strictly lower (ties: earlier offspring)',
  fitness: 'calibration perplexity of the whole model, masks as graph inputs (one session)',
};

/** One generation of the log. */
export interface AllocGeneration {
  generation: number;
  /** The best offspring's full-fidelity perplexity (the one compared with the parent). */
  candidate: number;
  accepted: boolean;
  /** The parent's full-fidelity perplexity after this generation. */
  best: number;
}

export interface AllocMatrixReport {
  role: string;
  weights: number;
  /** The start (uniform) count and the final one. */
  start: number;
  pruned: number;
  sparsity: number;
}

export interface AllocReport {
  budget: { weights: number; pruned: number; sparsity: number };
  quantum: number;
  /** The uniform start's full calibration perplexity, and the result's. */
  startPerplexity: number;
  perplexity: number;
  /** Calibration tokens at each fidelity stage, then full. */
  stageTokens: number[];
  generations: AllocGeneration[];
  evaluations: number;
  allocation: AllocMatrixReport[];
}

export interface AllocInput {
  spec: ModelSpec;
  matrices: readonly PrunableMatrix[];
  sparsity: number;
  /** The calibration token stream, window length and token count (full fidelity). */
  calibration: WeightCalibration;
  rng: Rng;
  settings?: Partial<AllocSettings>;
  engine?: { device?: Device; threads?: number };
  /** After each generation, with the parent's calibration perplexity (the best so far) and the evaluations. */
  onProgress?: (done: number, total: number, best: SearchBest) => void;
  /** Where the search's state goes after every generation, and comes back from on resume. */
  state?: MethodStateStore;
}

/**
 * The (1 + λ) loop's state after a generation (written from evolve's `onScored`, before the next mutants are
 * drawn): with the same rng state it continues exactly.
 */
interface AllocState {
  generation: number;
  parent: number[];
  parentPerplexity: number;
  startPerplexity: number;
  generations: AllocGeneration[];
  evaluations: number;
  passes: number;
  rngState: number[];
}

function isAllocState(v: unknown, matrices: number): v is AllocState {
  const st = v as AllocState;
  return (
    typeof st === 'object' &&
    st !== null &&
    Number.isSafeInteger(st.generation) &&
    Array.isArray(st.parent) &&
    st.parent.length === matrices &&
    st.parent.every((c) => Number.isSafeInteger(c) && c >= 0) &&
    typeof st.parentPerplexity === 'number' &&
    typeof st.startPerplexity === 'number' &&
    Array.isArray(st.generations) &&
    st.generations.length === st.generation &&
    Array.isArray(st.rngState)
  );
}

function checkSettings(s: AllocSettings): void {
  const bad = (what: string) => {
    throw new GenepruneError('internal', `alloc settings: ${what}`);
  };
  if (!(Number.isInteger(s.generations) && s.generations >= 0)) bad(`generations ${s.generations}`);
  if (!(Number.isInteger(s.offspring) && s.offspring >= 1)) bad(`offspring ${s.offspring}`);
  if (!(Number.isInteger(s.maxMoves) && s.maxMoves >= 1)) bad(`maxMoves ${s.maxMoves}`);
  if (!(s.quantum > 0 && s.quantum <= 1)) bad(`quantum ${s.quantum}`);
  if (!(s.maxShare > 0 && s.maxShare <= 1)) bad(`maxShare ${s.maxShare}`);
  let last = 0;
  for (const f of s.fidelity) {
    if (!(f.share > last && f.share <= 1 && Number.isInteger(f.keep) && f.keep >= 1)) {
      bad(`fidelity stage ${JSON.stringify(f)}`);
    }
    last = f.share;
  }
}

/** The allocation search: one keep-array per matrix (in `matrices` order), its log, the passes run. */
export async function allocatePrune(
  input: AllocInput,
): Promise<{ keeps: Uint8Array[]; report: AllocReport; forwardPasses: number }> {
  const s: AllocSettings = { ...ALLOC_DEFAULTS, ...input.settings };
  checkSettings(s);
  const { spec, matrices, rng } = input;
  const sizes = matrices.map((m) => m.rows * m.cols);
  const start = uniformAllocation(sizes, input.sparsity);
  const upper = allocationBounds(sizes, start, s.maxShare, input.sparsity);
  const delta = allocationQuantum(sizes, s.quantum);
  const total = sizes.reduce((a, b) => a + b, 0);
  const budget = start.reduce((a, b) => a + b, 0);

  const { tokens } = input.calibration;
  const stageTokens = [...s.fidelity.map((f) => Math.max(1, Math.round(f.share * tokens))), tokens];
  // One batch size for every stage (the full set's rows are the longest): stage batches are prefixes alike.
  const batchSize = defaultBatchSize(
    calibrationWindows(input.calibration, tokens).context,
    spec.config.vocabSize,
  );
  const stageBatches: TokenBatch[][] = stageTokens.map((t) => [
    ...batches(calibrationWindows(input.calibration, t), batchSize),
  ]);
  const full = stageBatches[stageBatches.length - 1];

  let passes = 0;
  const norms = await denseInputNorms(spec, full, input.engine);
  passes += full.length;
  const orders: RowOrder[] = [];
  for (const m of matrices) {
    const t = spec.tensors.get(m.role);
    const sq = norms.get(m.role);
    if (!t || !sq) throw new GenepruneError('internal', `alloc: no weight or input norms for ${m.role}`);
    orders.push(rowOrder(wandaScores(await t.load(), m.rows, m.cols, sq), m.rows, m.cols));
  }

  const runner = await createRunner(spec, {
    ...input.engine,
    output: 'nll',
    weightMasks: matrices.map((m) => m.role),
  });
  let parent = start.slice();
  let parentMasks = orders.map((o, i) => allocatedMask(o, start[i]));
  // Masks are a function of (row order, count): a matrix at the parent's count shares the parent's mask.
  const masksOf = (c: readonly number[]) =>
    c.map((count, i) => (count === parent[i] ? parentMasks[i] : allocatedMask(orders[i], count)));
  const objective = createAllocObjective(runner, matrices, stageBatches, masksOf);
  // What earlier processes and the norm capture counted; the objective adds what it runs from here on.
  let evaluationsBefore = 0;
  let parentPerplexity: number;
  const generations: AllocGeneration[] = [];
  let startPerplexity = Number.NaN;
  let first: EvolveStart<number[], AllocIndividual>;
  const saved = await input.state?.read();
  if (saved !== undefined && !isAllocState(saved, matrices.length)) {
    throw new GenepruneError('internal', 'alloc: the saved search state does not fit this run');
  }
  try {
    if (saved) {
      // Masks are a function of (row order, count): the saved counts give back the parent's masks exactly.
      parent = saved.parent.slice();
      if (parent.reduce((a, b) => a + b, 0) !== budget) {
        throw new GenepruneError('internal', 'alloc: the saved allocation is off its budget');
      }
      parentMasks = orders.map((o, i) => allocatedMask(o, parent[i]));
      generations.push(...saved.generations);
      startPerplexity = saved.startPerplexity;
      evaluationsBefore = saved.evaluations;
      passes = saved.passes;
      rng.setState(saved.rngState);
      // Nothing pending: the loop breeds from the saved parent with the saved rng state.
      const population = [{ genome: parent, perplexity: saved.parentPerplexity, winner: true }];
      first = { generation: saved.generation, pending: [], population };
    } else {
      first = { generation: 0, pending: [parent] };
    }
    const { population } = await evolve<number[], AllocIndividual>(first, {
      rng,
      // Generation 0 scores the start at full fidelity; every later one its λ mutants, stage by stage.
      score: async (genomes, generation) => {
        if (genomes.length === 0) return [];
        if (generation === 0) {
          const [start] = await objective.evaluateMany(genomes, stageBatches.length - 1);
          startPerplexity = start.evaluation.quality;
          return [{ genome: genomes[0], perplexity: startPerplexity, winner: true }];
        }
        return scoreStaged(
          objective,
          genomes,
          s.fidelity.map((f) => f.keep),
          stageBatches.length,
        );
      },
      // The one parent, mutated λ times; no crossover.
      parents: () => [0, 0],
      crossover: (a) => [a.genome],
      mutate: (g, r) => mutateAllocation(g, upper, delta, s.maxMoves, r),
      survival: onePlusLambda(s.offspring, (ind) =>
        ind.winner ? -ind.perplexity : Number.NEGATIVE_INFINITY,
      ),
      onScored: async ({ generation, population: [best], scored }) => {
        if (generation === 0 || scored.length === 0) return;
        // The candidate is the generation's winner, accepted when the survival made it the parent.
        const candidate = scored.find((c) => c.winner)!.perplexity;
        const accepted = best.genome !== parent;
        if (accepted) {
          // The winner's masks are cut against the old parent's (unchanged matrices share them).
          parentMasks = masksOf(best.genome);
          parent = best.genome;
        }
        generations.push({ generation, candidate, accepted, best: best.perplexity });
        await input.state?.write({
          generation,
          parent,
          parentPerplexity: best.perplexity,
          startPerplexity,
          generations,
          evaluations: evaluationsBefore + objective.evaluations(),
          passes: passes + objective.forwardPasses(),
          rngState: rng.getState(),
        } satisfies AllocState);
        input.onProgress?.(generation, s.generations, {
          perplexity: best.perplexity,
          sparsity: total === 0 ? 0 : budget / total,
          evaluations: evaluationsBefore + objective.evaluations(),
        });
      },
      stop: (_pop, generation) => generation >= s.generations || budget <= 0,
    });
    parentPerplexity = population[0].perplexity;
  } finally {
    await runner.release();
  }
  if (parent.reduce((a, b) => a + b, 0) !== budget) {
    throw new GenepruneError('internal', 'alloc: the allocation left its budget');
  }
  const report: AllocReport = {
    budget: { weights: total, pruned: budget, sparsity: total === 0 ? 0 : budget / total },
    quantum: delta,
    startPerplexity,
    perplexity: parentPerplexity,
    stageTokens,
    generations,
    evaluations: evaluationsBefore + objective.evaluations(),
    allocation: matrices.map((m, i) => ({
      role: m.role,
      weights: sizes[i],
      start: start[i],
      pruned: parent[i],
      sparsity: parent[i] / sizes[i],
    })),
  };
  return {
    keeps: parentMasks.map((k) => k.slice()),
    report,
    forwardPasses: passes + objective.forwardPasses(),
  };
}

export const ALLOC: WeightBaseline = {
  name: 'alloc',
  summary:
    'EvoPress-style search of each matrix’s sparsity at an exact global budget, Wanda masks within each matrix',
  supportsPattern: false,
  patternRefusal: 'an N:M pattern fixes every matrix at 1 − N/M, so the alloc method has nothing to allocate',
  description: ALLOC_DESCRIPTION,
  searchSettings: ['generations', 'population'],
  async select(input) {
    if (input.pattern) throw new GenepruneError('flag', ALLOC.patternRefusal!, '--pattern');
    const o = input.search ?? {};
    const out = await allocatePrune({
      settings: {
        ...(o.generations !== undefined ? { generations: o.generations } : {}),
        // λ, the mutants per generation, is the population of the (1 + λ) loop.
        ...(o.population !== undefined ? { offspring: o.population } : {}),
      },
      spec: input.spec,
      matrices: input.matrices,
      sparsity: input.sparsity,
      calibration: input.calibration,
      rng: input.rng,
      ...(input.engine ? { engine: input.engine } : {}),
      ...(input.state ? { state: input.state } : {}),
      ...(input.onProgress
        ? {
            onProgress: (done: number, total: number, best: SearchBest) =>
              input.onProgress!(done, total, 'generations', best),
          }
        : {}),
    });
    return out;
  },
};

registerWeightBaseline(ALLOC);
