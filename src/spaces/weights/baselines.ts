/**
 * Weight-pruning baselines: methods that choose a mask from a score per weight in one shot, under a budget
 * (masks/select.ts). Every method reaches the asked sparsity exactly the same way: per matrix, each prunable
 * matrix loses round(s · out · in) weights; with an N:M pattern, every group of M consecutive weights of a row
 * keeps its N best, whatever the method (so `global-magnitude` with a pattern equals `magnitude` with it).
 *
 * Methods live in a registry keyed by name, so a method that needs the model's activations (Wanda: |W|·‖X_j‖₂,
 * input norms captured on the calibration data) registers itself where the capture is built, and the command,
 * its help and its checks pick it up. `calibration` is passed to every method for that purpose.
 */

import type { TokenBatch } from '../../engine/runner.js';
import type { Device } from '../../engine/session.js';
import { GenepruneError } from '../../errors.js';
import {
  magnitudeScores,
  type NmPattern,
  selectGlobalStreaming,
  selectNm,
  selectPerMatrix,
  selectPerRow,
  wandaScores,
} from '../../masks/select.js';
import type { PrunableMatrix } from '../../masks/weights.js';
import { batches, defaultBatchSize, makeWindows, type Windows } from '../../metrics/perplexity.js';
import { pairWindows, type Seq2seqPairs } from '../../metrics/seq2seq.js';
import type { ModelSpec } from '../../model/spec.js';
import { pruneSequentially } from '../../prune/sequential.js';
import type { RemoteEvaluation } from '../../search/backend.js';
import type { BleuObjectiveOptions, QualityMetric } from '../../search/objective.js';
import type { Rng } from '../../util/rng.js';
import type { BlockEvaluation, BlockSearchProgress, CheckpointStore } from './blockwise.js';

/** A search's best so far, as alloc reports it with its progress. */
export interface SearchBest {
  perplexity: number;
  sparsity: number;
  evaluations: number;
}

/** The calibration data of a method that runs the model (WeightBaselineInput.calibration). */
export interface WeightCalibration {
  stream: readonly number[];
  context: number;
  tokens: number;
  batches?: readonly TokenBatch[];
  pairs?: Seq2seqPairs;
}

export interface WeightBaselineInput {
  spec: ModelSpec;
  /** The matrices to mask, in the order the result lists them. */
  matrices: readonly PrunableMatrix[];
  /** Share of each matrix (or of all of them: global methods) to prune, in [0, 1); ignored with a pattern. */
  sparsity: number;
  pattern?: NmPattern;
  /** The run's seeded generator (random scores). */
  rng: Rng;
  /**
   * The calibration token stream and window length, for methods that look at activations; a classification run
   * (`--metric accuracy|macro-f1`) has no stream and gives its labelled calibration items as `batches` instead
   * (right-padded, with attentionMask, typeIds and `valid`), which calibrationBatches then returns. An
   * encoder-decoder's run has no stream either: its calibration items as source/target `pairs`
   * (metrics/seq2seq.ts), cut by calibrationWindows into whole pairs holding `tokens` target tokens.
   */
  calibration: WeightCalibration;
  /** Where methods that run the model run it. */
  engine?: { device?: Device; threads?: number };
  /**
   * The run's calibration metric (`--metric`, default 'ppl'), for methods that search with an objective
   * (search/objective.ts: quality lower is better, −BLEU for 'bleu'); with 'bleu', `bleu` holds the calibration
   * task and its scoring, ready for `createObjective(spec, space, { metric, bleu, ... })`.
   */
  metric?: QualityMetric;
  bleu?: BleuObjectiveOptions;
  /**
   * After each matrix or layer (`unit` names which; default 'matrices'); a search that is not block-wise
   * (alloc) also gives its best so far: calibration perplexity, share of the prunable weights removed, and its
   * evaluations.
   */
  onProgress?: (done: number, total: number, unit?: string, best?: SearchBest) => void;
  /**
   * `--recover`: the run will recover the kept weights after the mask is fixed, with this ridge damping; a
   * block-wise method may recover each fixed block as it goes, so later blocks are searched on what they will
   * sit on (the seeded GAs do).
   */
  recovery?: { damping: number };
  /** Searching methods: settings given by the user (each method has its defaults; see its description). */
  search?: SearchOverrides;
  /** Searching methods: where the state after each fixed block is kept, to resume a stopped run exactly. */
  checkpoint?: CheckpointStore<unknown>;
  /** Searching methods that are not block-wise: a JSON state of their own, kept to resume a stopped run exactly. */
  state?: MethodStateStore;
  /** Searching methods: after each generation. */
  onSearchProgress?: (p: BlockSearchProgress) => void;
  /** Block-wise searching methods: after each candidate is scored (awaited). */
  onSearchEvaluation?: (e: BlockEvaluation) => void | Promise<void>;
  /**
   * `--workers N`: score the candidates on this evaluation backend (methods with `remoteSearch` only; the run
   * refuses the others before reading anything).
   */
  remote?: RemoteEvaluation;
}

/** A method's own resumable state in the run directory (JSON; written atomically). */
export interface MethodStateStore {
  read(): Promise<unknown | undefined>;
  write(state: unknown): Promise<void>;
}

/** Settings of a searching method that the user may set (`--population`, `--generations`, ...). */
export interface SearchOverrides {
  population?: number;
  generations?: number;
  /** `ga`: λ of the fitness. */
  lambda?: number;
  /** `ga`: probability that a kept weight is turned off; seeded GAs: share of the pruned weights swapped. */
  mutationRate?: number;
  /** `ga`: the fitness form (ga.ts GaFitness), set by presets. */
  fitness?: 'normalized' | 'geneprune-code';
}

export interface WeightBaselineOutput {
  /** One keep-array per matrix, in `matrices` order (1 = kept). */
  keeps: Uint8Array[];
  /** Forward passes the method itself ran (activation capture); 0 for data-free methods. */
  forwardPasses: number;
  /** The method's own log (the GA's per-layer fitness), recorded in state.json and result.json. */
  report?: unknown;
}

export interface WeightBaseline {
  readonly name: string;
  /** One line for --help and the README. */
  readonly summary: string;
  /** False when the method cannot honour --pattern (refused in one line before anything is written). */
  readonly supportsPattern?: boolean;
  /** The SearchOverrides keys the method takes (others are refused in one line). */
  readonly searchSettings?: ReadonlyArray<keyof SearchOverrides>;
  /**
   * Searching methods: the --metric values they can search on (default: ppl only), read when a run is checked so
   * a metric registered later (the block-wise searches take every entry with a `blockSearch`) is included.
   */
  readonly searchMetrics?: () => readonly string[];
  /** The one line that refuses --pattern, when the method gives its own reason (default: "not supported yet"). */
  readonly patternRefusal?: string;
  /** The method's fixed settings and rules, recorded in the run's config.json. */
  readonly description?: Readonly<Record<string, unknown>>;
  /** The method updates the kept weights itself (SparseGPT): the run recovers, `--recover` implied. */
  readonly recovers?: boolean;
  /** Block-wise searches, whose candidates an evaluation backend can score (`--workers N`). */
  readonly remoteSearch?: boolean;
  select(input: WeightBaselineInput): Promise<WeightBaselineOutput>;
}

const REGISTRY = new Map<string, WeightBaseline>();

/** Adds a method to the `weights` command (a name can be registered once). */
export function registerWeightBaseline(method: WeightBaseline): void {
  if (REGISTRY.has(method.name)) {
    throw new GenepruneError('internal', `weight baseline ${method.name} is registered twice`);
  }
  REGISTRY.set(method.name, method);
}

export function weightBaseline(name: string): WeightBaseline | undefined {
  return REGISTRY.get(name);
}

/** The registered methods' names, in registration order. */
export function weightBaselineNames(): string[] {
  return [...REGISTRY.keys()];
}

/**
 * The calibration batches a method that runs the model reads: windows of the run's context, or a classification
 * run's padded labelled items.
 */
export function calibrationBatches(input: WeightBaselineInput): TokenBatch[] {
  if (input.calibration.batches) return [...input.calibration.batches];
  const windows = calibrationWindows(input.calibration, input.calibration.tokens);
  return [...batches(windows, defaultBatchSize(windows.context, input.spec.config.vocabSize))];
}

/**
 * The first `tokens` predicted tokens of the calibration data as perplexity windows: windows of the stream, or
 * an encoder-decoder's whole source/target pairs (their context is the longest row).
 */
export function calibrationWindows(calibration: WeightCalibration, tokens: number): Windows {
  return calibration.pairs
    ? pairWindows(calibration.pairs, tokens, 'calibration data')
    : makeWindows(calibration.stream, calibration.context, tokens, 'calibration data');
}

async function loadMatrix(spec: ModelSpec, m: PrunableMatrix): Promise<Float32Array> {
  const t = spec.tensors.get(m.role);
  if (!t) throw new GenepruneError('model', `the model has no tensor ${m.role}`);
  return t.load();
}

/** One score per weight of a matrix. */
type Scorer = (w: Float32Array, input: WeightBaselineInput) => Float32Array;

/** A method that scores each matrix on its own and prunes its lowest scores (or applies the pattern). */
function perMatrix(name: string, summary: string, scoreOf: Scorer): WeightBaseline {
  return {
    name,
    summary,
    async select(input) {
      const keeps: Uint8Array[] = [];
      for (const [i, m] of input.matrices.entries()) {
        const scores = scoreOf(await loadMatrix(input.spec, m), input);
        keeps.push(
          input.pattern
            ? selectNm(scores, m.rows, m.cols, input.pattern)
            : selectPerMatrix(scores, input.sparsity),
        );
        input.onProgress?.(i + 1, input.matrices.length);
      }
      return { keeps, forwardPasses: 0 };
    },
  };
}

export const MAGNITUDE = perMatrix(
  'magnitude',
  'prune the smallest |W| of each matrix (each matrix at the target sparsity)',
  (w) => magnitudeScores(w),
);

export const RANDOM = perMatrix(
  'random',
  'prune uniformly random weights of each matrix (seeded; each matrix at the target sparsity)',
  (w, input) => Float32Array.from(w, () => input.rng.nextFloat()),
);

/** One |W| threshold over all prunable matrices, so matrices end at different sparsities. */
export const GLOBAL_MAGNITUDE: WeightBaseline = {
  name: 'global-magnitude',
  summary: 'prune the smallest |W| of all prunable matrices together (one threshold; matrices differ)',
  async select(input) {
    if (input.pattern) return MAGNITUDE.select(input);
    const keeps: Uint8Array[] = new Array(input.matrices.length);
    await selectGlobalStreaming(
      input.matrices.map((m) => m.rows * m.cols),
      input.sparsity,
      async (i) => magnitudeScores(await loadMatrix(input.spec, input.matrices[i])),
      (i, keep) => {
        keeps[i] = keep;
        input.onProgress?.(i + 1, input.matrices.length);
      },
    );
    return { keeps, forwardPasses: 0 };
  },
};

/**
 * Wanda (Sun et al.): score |W_ij|·‖X_j‖₂ with the input column norms measured on the calibration tokens, prune
 * the lowest scores of each output row (or keep the best N of each M with a pattern). Sequential, as the Wanda
 * paper runs it: layer l's norms are measured with layers < l already pruned (prune/sequential.ts), captured by
 * the project's own block graphs.
 */
export const WANDA: WeightBaseline = {
  name: 'wanda',
  summary:
    'prune the lowest |W|·‖X_j‖₂ of each output row (input norms on the calibration data, layer by layer)',
  async select(input) {
    const list = calibrationBatches(input);
    const L = input.spec.config.numLayers;
    const roles = new Set(input.matrices.map((m) => m.role));
    const result = await pruneSequentially(input.spec, {
      batches: list,
      ...input.engine,
      // Past the last block with a matrix to prune (--layers) there is nothing to measure.
      until: Math.max(...input.matrices.map((m) => m.layer)) + 1,
      select: (lin) => {
        // Only the matrices asked for (--layers); the others pass through as they are.
        if (!roles.has(lin.role)) return undefined;
        const scores = wandaScores(lin.weight, lin.rows, lin.cols, lin.inputSquaredNorms);
        return input.pattern
          ? selectNm(scores, lin.rows, lin.cols, input.pattern)
          : selectPerRow(scores, lin.rows, lin.cols, input.sparsity);
      },
      onLayer: (r) => input.onProgress?.(r.layer + 1, L, 'layers'),
    });
    const keeps = input.matrices.map((m) => {
      const keep = result.masks.get(m.role);
      if (!keep) throw new GenepruneError('internal', `wanda chose no mask for ${m.role}`);
      return keep;
    });
    // Per layer: one pass through the block to measure, one through the pruned block for the next layer (a layer
    // left whole hands its captured output on).
    return { keeps, forwardPasses: result.forwardPasses };
  },
};

registerWeightBaseline(MAGNITUDE);
registerWeightBaseline(GLOBAL_MAGNITUDE);
registerWeightBaseline(RANDOM);
registerWeightBaseline(WANDA);
