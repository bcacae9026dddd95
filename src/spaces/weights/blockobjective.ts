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
 */

import { readsHidden } from '../../engine/blocks.js';
import type { OrtGemm } from '../../engine/gemm.js';
import { createRunner, type ModelRunner, type TokenBatch } from '../../engine/runner.js';
import type { Device } from '../../engine/session.js';
import { GenepruneError } from '../../errors.js';
import type { PrunableMatrix } from '../../masks/weights.js';
import { scoreGeneration, slicePreparedTask } from '../../metrics/generation.js';
import { metricEntry, type QualityMetric, qualityOfValue } from '../../metrics/registry.js';
import { execOptionsFor } from '../../metrics/scorers.js';
import type { ModelSpec } from '../../model/spec.js';
import {
  BLEU_SEARCH_ITEMS,
  BLEU_SEARCH_NEW_TOKENS,
  type BleuObjectiveOptions,
  type Evaluation,
  type Fidelity,
  type ScoredGenome,
} from '../../search/objective.js';
import { digest, type ObjectiveSettings, registerObjective } from '../../search/record.js';
import { applyBlockRecovery, type BlockGrams, captureBlockGrams } from './blockpasses.js';
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
}

export async function createBlockObjective(input: BlockObjectiveInput): Promise<BlockObjective> {
  const { spec, block, batches, hidden, metric, engine } = input;
  const l = block.layer;
  const space = createBlockSpace(block);
  const roles = space.weightRoles;
  // How the metric scores the block's candidates (its registry entry): 'suffix' from the hidden states entering
  // the block, 'generation' on the run's BLEU scorer.
  const scoring = metricEntry(metric).blockSearch;
  if (scoring === 'generation' && !input.bleu) {
    throw new GenepruneError('internal', 'a BLEU block objective needs the run’s BLEU scorer');
  }
  let passes = 0;
  let evaluations = 0;
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
    passes += batches.length;
  }
  // Recovered candidates get sessions of their own; the block's shared one then only scores the dense model
  // (block 0).
  const evaluator =
    scoring === 'suffix' && (!grams || (input.scoresDense ?? l === 0))
      ? await createLayerEvaluator(spec, l, roles, batches, hidden, engine)
      : undefined;
  const tokens = validTokens(batches);
  /** The quoted value (perplexity or BLEU) and what it read, of a genome (undefined: the dense model). */
  const value = async (genome: Uint8Array | undefined): Promise<{ value: number; tokens: number }> => {
    const feeds = genome ? blockFeeds(block, genome) : new Map<string, Uint8Array>();
    if (grams && genome) {
      const own = await createLayerEvaluator(
        await applyBlockRecovery(spec, grams, feeds, input.recover!.products),
        l,
        roles,
        batches,
        hidden,
        engine,
      );
      try {
        return { value: await own.perplexity(feeds), tokens };
      } finally {
        passes += own.passes();
        await own.release();
      }
    }
    if (evaluator) return { value: await evaluator.perplexity(feeds), tokens };
    const r = await input.bleu!.score(genome ? new Map([...input.fixed, ...feeds]) : new Map());
    passes += r.forwards;
    return { value: r.value, tokens: r.items };
  };
  const counted = () => passes + (evaluator?.passes() ?? 0);
  const objective: BlockObjective = {
    space,
    metric,
    async evaluateMany(genomes, _fidelity = 'full', onResult) {
      const out: ScoredGenome[] = [];
      for (const [i, g] of genomes.entries()) {
        const before = counted();
        const t0 = performance.now();
        const v = await value(g);
        evaluations++;
        const quality = qualityOfValue(metric, v.value);
        out.push({
          evaluation: { quality, tokens: v.tokens, ms: performance.now() - t0 },
          forwardPasses: counted() - before,
          cached: false,
        });
        onResult?.(i, out[i]);
      }
      return out;
    },
    async evaluate(g, fidelity) {
      return (await objective.evaluateMany([g], fidelity))[0].evaluation;
    },
    dense: async () => (await value(undefined)).value,
    recovered: async (genome) =>
      grams ? applyBlockRecovery(spec, grams, blockFeeds(block, genome), input.recover!.products) : spec,
    forwardPasses: counted,
    evaluations: () => evaluations,
    release: async () => {
      await evaluator?.release();
    },
  };
  // What a worker needs to rebuild it: the model, the metric, the block, the calibration batches or task, the
  // fixed blocks' masks (the hidden states entering the block follow from them) and the recovery's damping.
  const fixed = [...input.fixed].map(([role, keep]) => [role, digest(keep)]);
  return registerObjective(objective, {
    spec,
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
  });
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
