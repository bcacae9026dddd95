/**
 * The objective of a block search over block l (blockspace.ts): a candidate of block l is scored with the blocks
 * before it at their fixed masks and the blocks after it dense, behind the search objective's one call,
 * `evaluateMany(genomes, fidelity)` (search/objective.ts). What it takes to score them is its business:
 *   - 'ppl': the suffix graph of blocks [l, L) (the whole model when l is 0) fed the hidden states entering block
 *     l, computed once per block by the frame (blockwise.ts), with block l's masks as graph inputs — one session
 *     per block, and no candidate pays a forward of the blocks before it;
 *   - 'ppl' with recovery: block l's Gram matrices captured once, then every candidate scored on a suffix session
 *     of its own over its own recovered weights;
 *   - a generation metric ('bleu', 'exact-match', 'pass@1': registry entries with blockSearch 'generation'):
 *     whole-model generations on the run's one 'row_logits' session, the fixed blocks' masks with the
 *     candidate's, the metric's value read from them by its entry.
 * Qualities follow the search objective's convention (lower is better: perplexity, or −BLEU, −exact match, …). There is no cache:
 * every genome given is scored, repeats included, as the block searches have always counted and logged them, so
 * `cached` is always false.
 *
 * All of it is one `CalibrationScorer` (`createBlockScorer`), which the objective calls for each genome. With an
 * evaluation backend (`--workers N`; 'ppl' without recovery) the scorer is the backend's instead: each evaluator
 * rebuilds this block's scorer from a block recipe (blockrecipe.ts), the objective hands a population out with
 * the backend's batch runner and commits results in index order, so counts and logs do not change.
 */

import { readsHidden } from '../../engine/blocks.js';
import type { OrtGemm } from '../../engine/gemm.js';
import { createRunner, longestRow, type ModelRunner, type TokenBatch } from '../../engine/runner.js';
import type { Device } from '../../engine/session.js';
import { GenepruneError } from '../../errors.js';
import type { PrunableMatrix } from '../../masks/weights.js';
import { scoreGeneration, slicePreparedTask } from '../../metrics/generation.js';
import { metricEntry, type QualityMetric, qualityOfValue } from '../../metrics/registry.js';
import {
  type CalibrationScorer,
  execOptionsFor,
  type RawEvaluation,
  type ScorerRecord,
} from '../../metrics/scorers.js';
import type { ModelSpec } from '../../model/spec.js';
import type { EvaluationBackend } from '../../search/backend.js';
import {
  BLEU_SEARCH_ITEMS,
  BLEU_SEARCH_NEW_TOKENS,
  type BleuObjectiveOptions,
  type Evaluation,
  type Fidelity,
  reportedQuality,
  type ScoredGenome,
  sequentialRunner,
} from '../../search/objective.js';
import { digest, type ObjectiveSettings, registerObjective } from '../../search/record.js';
import { applyBlockRecovery, type BlockGrams, captureBlockGrams } from './blockpasses.js';
import { blockRecipe } from './blockrecipe.js';
import { type BlockLayout, type BlockSpace, blockFeeds, createBlockSpace } from './blockspace.js';
import { maskedPerplexity } from './quality.js';

type Engine = { device?: Device; threads?: number };

/**
 * What a block search optimises: a metric whose registry entry has a `blockSearch` — the calibration perplexity
 * (suffix graphs) or a generation metric of a calibration task (blockwise.ts refuses the others).
 */
export type BlockMetric = QualityMetric;

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
  engine: Engine = {},
): Promise<LayerEvaluator> {
  const L = spec.config.numLayers;
  // An encoder-decoder's first decoder block reads the encoder output from the batches, no hidden states.
  const reads = readsHidden(spec.config, layer);
  if (reads && hidden?.length !== list.length) {
    throw new GenepruneError(
      'internal',
      `block ${layer} needs hidden states for each of ${list.length} batches`,
    );
  }
  const runner: ModelRunner = await createRunner(spec, {
    ...engine,
    output: 'nll',
    maxSeq: longestRow(list),
    layers: [layer, L],
    weightMasks: [...roles],
  });
  let passes = 0;
  return {
    async perplexity(masks) {
      const r = await maskedPerplexity(runner, list, masks, reads ? hidden : undefined);
      passes += r.passes;
      return r.perplexity;
    },
    passes: () => passes,
    release: () => runner.release(),
  };
}

/**
 * A generation metric of the calibration task under whole-model weight masks, on one 'row_logits' session for
 * the run: `value` is the metric's reported value (BLEU, exact match, pass@1).
 */
export interface BleuScorer {
  score(masks: Map<string, Uint8Array>): Promise<{ value: number; items: number; forwards: number }>;
  /** What it scores and how, for objective records. */
  readonly settings: ObjectiveSettings;
  readonly data: unknown;
  readonly source: string;
  release(): Promise<void>;
}

export async function createBleuScorer(
  spec: ModelSpec,
  matrices: readonly PrunableMatrix[],
  opts: BleuObjectiveOptions | undefined,
  engine: Engine,
  metric: QualityMetric = 'bleu',
): Promise<BleuScorer> {
  if (!opts) {
    throw new GenepruneError(
      'internal',
      `a ${metric} block search needs its calibration task (bleu options)`,
    );
  }
  const entry = metricEntry(metric);
  const metricValue = entry.fromGeneration;
  if (!metricValue) throw new GenepruneError('internal', `${metric} is not a generation metric`);
  const exec = entry.executesCode ? execOptionsFor(opts) : undefined;
  const task = slicePreparedTask(
    opts.task,
    Math.min(opts.items ?? BLEU_SEARCH_ITEMS, opts.task.prompts.length),
  );
  const runner = await createRunner(spec, {
    ...engine,
    output: 'row_logits',
    weightMasks: matrices.map((m) => m.role),
  });
  const scoring = {
    maxNewTokens: opts.maxNewTokens ?? BLEU_SEARCH_NEW_TOKENS,
    ...(opts.batchSize ? { batchSize: opts.batchSize } : {}),
    bleu: opts.kind ?? 'corpus',
  };
  return {
    async score(masks) {
      const r = await scoreGeneration(runner, task, {
        ...scoring,
        masks: { weightMasks: masks },
        ...(exec ? { exec } : {}),
      });
      return { value: metricValue(r), items: r.items, forwards: r.forwards };
    },
    settings: { items: task.prompts.length, ...scoring },
    data: { prompts: task.prompts, items: task.task.items, stop: task.stopTokens },
    source: task.task.source,
    release: () => runner.release(),
  };
}

export interface BlockObjective {
  readonly space: BlockSpace;
  readonly metric: BlockMetric;
  /**
   * Scores genomes of the block, result i for genomes[i], one after another in index order (`onResult` sees
   * each as it is known). The block searches have one fidelity: 'low' scores as 'full' does.
   */
  evaluateMany(
    genomes: readonly Uint8Array[],
    fidelity?: Fidelity,
    onResult?: (index: number, r: ScoredGenome) => void,
  ): Promise<ScoredGenome[]>;
  evaluate(g: Uint8Array, fidelity?: Fidelity): Promise<Evaluation>;
  /** The dense model's calibration score as quoted (perplexity, or BLEU 0–100), counted in forwardPasses. */
  dense(): Promise<number>;
  /** The model with this block's kept weights recovered under a genome's masks (the model itself without). */
  recovered(genome: Uint8Array): Promise<ModelSpec>;
  /** Forward passes run so far (scores, the dense score, the block's Gram capture). */
  forwardPasses(): number;
  /** Genomes scored so far. */
  evaluations(): number;
  release(): Promise<void>;
}

export interface BlockObjectiveInput {
  /** The model as the walk stands: earlier blocks recovered when recovering. */
  spec: ModelSpec;
  block: BlockLayout;
  batches: readonly TokenBatch[];
  /** Hidden states entering the block (undefined for block 0, and with 'bleu'). */
  hidden: readonly Float32Array[] | undefined;
  metric: BlockMetric;
  engine: Engine;
  /** The fixed blocks' masks (blocks before this one): what the hidden states, or BLEU's masks, start from. */
  fixed: ReadonlyMap<string, Uint8Array>;
  /** 'bleu': the run's scorer (the candidate's masks are added to the fixed ones). */
  bleu?: BleuScorer;
  /** 'ppl': score each candidate after its own recovery. */
  recover?: { damping: number; products: OrtGemm };
  /**
   * The walk scores the dense model on this block (the first searched; default: block 0), which needs the shared
   * suffix session even when candidates are recovered.
   */
  scoresDense?: boolean;
  /**
   * `--workers N` (later `--queue`): candidates scored on this backend, each evaluator rebuilding the block's
   * scorer from its recipe: the run's model reference, the searched matrices and the calibration batches as the
   * walk starts (block 0), from which it replays the walk to this block with the fixed masks.
   */
  remote?: BlockRemote;
}

export interface BlockRemote {
  backend: EvaluationBackend;
  /** The model's resolved path or `hf:` reference, as an evaluator opens it. */
  model: string;
  /** Every matrix the walk searches (`--layers` applied), in layer order. */
  matrices: readonly PrunableMatrix[];
  /** The calibration batches entering block 0 (the walk's start). */
  batches: readonly TokenBatch[];
  /** A generation metric: its calibration task and scoring (the evaluators build their own BLEU scorer). */
  bleu?: BleuObjectiveOptions;
}

export async function createBlockObjective(input: BlockObjectiveInput): Promise<BlockObjective> {
  const { spec, block, metric } = input;
  const space = createBlockSpace(block);
  const remote = input.remote;
  // Where candidates are scored: here (the block's own scorer), or on the backend, each evaluator rebuilding
  // the same scorer from the block's recipe (blockrecipe.ts) — so the numbers and the counts are the same.
  const local = remote ? undefined : await createBlockScorer(input);
  const scorer: CalibrationScorer = local ?? (await remote!.backend.open(blockRecipe(input, remote!)));
  const elementwise = remote ? remote.backend.elementwise : sequentialRunner;
  // With recovery on a backend the search still needs the block's Gram matrices itself, to recover the block it
  // fixes (`recovered`): captured once here, counted as the one-process objective counts its own capture.
  const grams =
    remote && input.recover && metricEntry(metric).blockSearch === 'suffix'
      ? await captureBlockGrams(
          spec,
          block.layer,
          input.batches,
          input.hidden,
          input.recover.damping,
          input.engine,
          input.recover.products,
        )
      : undefined;
  let passes = local?.setupPasses ?? (grams ? input.batches.length : 0);
  let evaluations = 0;
  const scoreOne = async (genome: Uint8Array | undefined): Promise<RawEvaluation & { ms: number }> => {
    const t0 = performance.now();
    const masks = genome ? blockFeeds(block, genome) : new Map<string, Uint8Array>();
    const r = await scorer.score({ weightMasks: masks }, 'full');
    return { ...r, ms: r.ms ?? performance.now() - t0 };
  };
  const objective: BlockObjective = {
    space,
    metric,
    async evaluateMany(genomes, _fidelity = 'full', onResult) {
      const out: ScoredGenome[] = new Array(genomes.length);
      const done = new Map<number, RawEvaluation & { ms: number }>();
      // Committed (counters, onResult) in index order as far as known, whatever order the runner finishes in.
      let next = 0;
      const flush = () => {
        for (; next < genomes.length; next++) {
          const r = done.get(next);
          if (!r) return;
          passes += r.forwards;
          evaluations++;
          out[next] = {
            evaluation: { quality: r.quality, tokens: r.tokens, ms: r.ms },
            forwardPasses: r.forwards,
            cached: false,
          };
          onResult?.(next, out[next]);
        }
      };
      await elementwise(
        genomes.map((g) => () => scoreOne(g)),
        (i, r) => {
          done.set(i, r);
          flush();
        },
      );
      flush();
      return out;
    },
    async evaluate(g, fidelity) {
      return (await objective.evaluateMany([g], fidelity))[0].evaluation;
    },
    dense: async () => {
      const r = await scoreOne(undefined);
      passes += r.forwards;
      return reportedQuality(metric, r.quality);
    },
    recovered: async (genome) =>
      local
        ? local.recovered(genome)
        : grams
          ? applyBlockRecovery(spec, grams, blockFeeds(block, genome), input.recover!.products)
          : spec,
    forwardPasses: () => passes,
    evaluations: () => evaluations,
    release: () => scorer.runner.release(),
  };
  // What a worker needs to rebuild it: the model, the metric, the block, the calibration batches or task, the
  // fixed blocks' masks (the hidden states entering the block follow from them) and the recovery's damping.
  // A queue's scorer has no record (its evaluators are elsewhere): the objective then has none, as
  // createObjective's objectives without one.
  const record = scorer.record ?? local?.record;
  return record ? registerObjective(objective, { spec, ...record }) : objective;
}

/** A block objective's scorer as built in this thread, with what the objective needs beyond scoring. */
export interface BlockScorer extends CalibrationScorer {
  record: ScorerRecord;
  /** Batch passes spent before any candidate (the block's Gram capture). */
  setupPasses: number;
  /** The model with the block's kept weights recovered under a genome's masks (the model itself without). */
  recovered(genome: Uint8Array): Promise<ModelSpec>;
}

/**
 * Scores masks of block `input.block.layer` (`score({ weightMasks })`: the block's feeds, none for the dense
 * model) as the block objective defines it; the quality is lower-is-better (perplexity, −BLEU …), `forwards`
 * the batch passes the score ran. The one implementation whoever runs it: the search's own thread, or an
 * evaluator rebuilding it from a block recipe.
 */
export async function createBlockScorer(input: BlockObjectiveInput): Promise<BlockScorer> {
  const { spec, block, batches, hidden, metric, engine } = input;
  const l = block.layer;
  const roles = block.matrices.map((m) => m.role);
  // How the metric scores the block's candidates (its registry entry): 'suffix' from the hidden states entering
  // the block, 'generation' on the run's BLEU scorer.
  const scoring = metricEntry(metric).blockSearch;
  if (scoring === 'generation' && !input.bleu) {
    throw new GenepruneError('internal', 'a BLEU block objective needs the run’s BLEU scorer');
  }
  let setupPasses = 0;
  // Candidates scored after their own recovery: the block's Gram matrices once, a walk per candidate.
  let grams: BlockGrams | undefined;
  if (input.recover && scoring === 'suffix') {
    grams = await captureBlockGrams(
      spec,
      l,
      batches,
      hidden,
      input.recover.damping,
      engine,
      input.recover.products,
    );
    setupPasses += batches.length;
  }
  // Recovered candidates get sessions of their own; the block's shared one then only scores the dense model
  // (block 0).
  const evaluator =
    scoring === 'suffix' && (!grams || (input.scoresDense ?? l === 0))
      ? await createLayerEvaluator(spec, l, roles, batches, hidden, engine)
      : undefined;
  const tokens = validTokens(batches);
  /** The quoted value (perplexity or BLEU), what it read and the passes it ran, of a block's feeds. */
  const value = async (
    feeds: ReadonlyMap<string, Uint8Array>,
  ): Promise<{ value: number; tokens: number; forwards: number }> => {
    // No feeds: the dense model (a block always has matrices, so a candidate always has feeds).
    const dense = feeds.size === 0;
    if (grams && !dense) {
      const own = await createLayerEvaluator(
        await applyBlockRecovery(spec, grams, feeds, input.recover!.products),
        l,
        roles,
        batches,
        hidden,
        engine,
      );
      try {
        return { value: await own.perplexity(feeds), tokens, forwards: own.passes() };
      } finally {
        await own.release();
      }
    }
    if (evaluator) {
      const before = evaluator.passes();
      const v = await evaluator.perplexity(feeds);
      return { value: v, tokens, forwards: evaluator.passes() - before };
    }
    const r = await input.bleu!.score(dense ? new Map() : new Map([...input.fixed, ...feeds]));
    return { value: r.value, tokens: r.items, forwards: r.forwards };
  };
  const fixed = [...input.fixed].map(([role, keep]) => [role, digest(keep)]);
  return {
    runner: { release: async () => evaluator?.release() },
    async score(masks) {
      const v = await value(masks.weightMasks ?? new Map());
      return { quality: qualityOfValue(metric, v.value), tokens: v.tokens, forwards: v.forwards };
    },
    setupPasses,
    recovered: async (genome) =>
      grams ? applyBlockRecovery(spec, grams, blockFeeds(block, genome), input.recover!.products) : spec,
    record: {
      settings: input.bleu
        ? input.bleu.settings
        : {
            context: batches[0]?.seq,
            tokens,
            batchSize: batches[0]?.batch,
            ...(grams ? { damping: input.recover!.damping } : {}),
          },
      data: input.bleu
        ? { full: { task: input.bleu.data, fixed }, low: { task: input.bleu.data, fixed } }
        : { full: { batches: batchData(batches), fixed }, low: { batches: batchData(batches), fixed } },
      ...(input.bleu ? { source: input.bleu.source } : {}),
    },
  };
}

/** The token ids and valid positions of calibration batches, as plain numbers (JSON has no bigint). */
function batchData(list: readonly TokenBatch[]) {
  return list.map((b) => ({
    ids: Array.from(b.ids, Number),
    valid: b.valid,
    // Encoder-decoders: the decoder side of each pair.
    ...(b.decoderIds ? { decoderIds: Array.from(b.decoderIds, Number) } : {}),
  }));
}

/** Positions a perplexity over `list` averages (every position of a batch without a validity mask). */
function validTokens(list: readonly TokenBatch[]): number {
  let n = 0;
  for (const b of list) {
    if (!b.valid) n += b.batch * b.seq;
    else for (let i = 0; i < b.valid.length; i++) n += b.valid[i] ? 1 : 0;
  }
  return n;
}
