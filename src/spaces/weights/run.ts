/**
 * A whole weight-pruning run as the CLI does it: prepare the model and data (runs/data.ts), choose the mask with
 * a registered method (baselines.ts), fix it in the run directory's weight-mask file, score the dense and the
 * pruned model on the calibration tokens (the search objective, as a search would) and on the evaluation data,
 * and write result.json. A classification run (`--metric accuracy|macro-f1`) reads labelled files: its methods
 * and recovery see the calibration items as padded batches, and it is scored on the metric alone (no perplexity). `resumeWeightPrune` continues a run stopped after its mask was fixed (the mask is read
 * back, not chosen again), returns a finished run's result as it stands, and refuses what would change the run
 * (runs/resume.ts).
 *
 * Run directory: config.json (settings, model identity, data paths and hashes), state.json (written atomically
 * once the mask is fixed: the mask file's sha256, the method's cost), weight-mask.safetensors, result.json,
 * run.lock while a process works there; a block-wise search adds evals.jsonl (every candidate it scored) and its
 * checkpoint (search-state.json and the fixed blocks' bits).
 */
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { TokenBatch } from '../../engine/runner.js';
import { fileError, flagError, GenepruneError } from '../../errors.js';
import type { Bitset } from '../../masks/bitset.js';
import { bitsetBytes, bitsetFromBytes, createBitset, unpackBits, unpackRange } from '../../masks/bitset.js';
import { writeRecoveredWeights } from '../../masks/recovered.js';
import type { NmPattern } from '../../masks/select.js';
import { loadWeightMaskFile, patternText, writeWeightMaskFile } from '../../masks/weightfile.js';
import { type LayerSparsity, weightMasksFromKeeps } from '../../masks/weights.js';
import { classificationBatches, sliceClassification } from '../../metrics/classify.js';
import type { ModelSpec } from '../../model/spec.js';
import { RECOVERY_DAMPING } from '../../prune/recover.js';
import { pruneSequentially } from '../../prune/sequential.js';
import {
  choiceObjectiveOptions,
  choicesRecord,
  type EvalChoices,
  scoreChoicesOnEval,
} from '../../runs/choices.js';
import {
  absoluteSettings,
  type LabelledEval,
  prepareRunData,
  type RunData,
  type RunEnv,
  recoveryBatches,
  refuseChangedData,
  runModelAndData,
  scoreLabelledOnEval,
  scoreOnEval,
} from '../../runs/data.js';
import { appendJsonl } from '../../runs/files.js';
import { labelledRecord } from '../../runs/labels.js';
import { type GivenSetting, refuseChangedSettings, refuseForeignModel } from '../../runs/resume.js';
import {
  createRunDir,
  lockRunDir,
  type RunConfig,
  readRunConfig,
  refuseChangedSinceState,
  runStamp,
  saveState,
  WEIGHT_RUN_KIND,
} from '../../runs/rundir.js';
import { bleuObjectiveOptions, type EvalBleu, scoreBleuOnEval, taskRecord } from '../../runs/tasks.js';
import {
  accuracyOfQuality,
  bleuOfQuality,
  createObjective,
  isClassificationMetric,
  type QualityMetric,
} from '../../search/objective.js';
import { type QuotedBest, quotedBest, type SearchProgress } from '../../search/progress.js';
import { faultPoint, sha256File, writeBytesAtomic, writeJsonAtomic, writeTextAtomic } from '../../util/fs.js';
import { createRng } from '../../util/rng.js';
import { type MethodStateStore, type SearchBest, weightBaseline } from './baselines.js';
import type { BlockCheckpoint, BlockSearchProgress, CheckpointStore } from './blockwise.js';
import { blockSearchShare } from './searchprogress.js';
import { patternOf, type WeightPruneSettings } from './settings.js';
import { createWeightSpace, type WeightSpace } from './space.js';

export const WEIGHT_MASK_FILE = 'weight-mask.safetensors';

export type WeightGivenSetting = GivenSetting<Extract<keyof WeightPruneSettings, string>>;

export interface WeightPruneEnv extends RunEnv {
  onStatus?: (line: string) => void;
  /** Things the user should see even when quiet: a stale lock taken over, leftovers removed. */
  onNote?: (line: string) => void;
  onProgress?: (done: number, total: number, unit?: string) => void;
  /** Searching methods: after each generation of each block. */
  onSearchProgress?: (p: BlockSearchProgress) => void;
  /** Every method's progress in one shape (search/progress.ts): what it does, the best so far, the work done. */
  onSearchUpdate?: (p: SearchProgress) => void;
}

/** Progress words for a unit the methods count in: the step's noun and the rate's unit. */
const PROGRESS_UNITS: Record<string, { step: string; unit: string }> = {
  matrices: { step: 'matrix', unit: 'matrices' },
  layers: { step: 'layer', unit: 'layers' },
  generations: { step: 'generation', unit: 'evals' },
  'layers recovered': { step: 'recovery, layer', unit: 'layers' },
};

/**
 * The env's callbacks as a method's, reporting each also as a SearchProgress: a block search's generations
 * (and, when a block is fixed, the next block's start), alloc's generations with its best, and a one-shot
 * method's matrices or layers (no best: nothing is scored until the mask is fixed).
 */
function progressCallbacks(method: string, env: WeightPruneEnv, fixed?: QuotedBest) {
  const update = env.onSearchUpdate;
  let lastBlock: BlockSearchProgress | undefined;
  const searchProgress = (p: BlockSearchProgress) => {
    env.onSearchProgress?.(p);
    update?.({
      method,
      phase: 'search',
      step: `block ${p.layer + 1}/${p.layers}, generation ${p.generation}/${p.generations}`,
      fraction: blockSearchShare(p),
      ...(Number.isFinite(p.best)
        ? { best: { metric: p.metric === 'bleu' ? 'BLEU' : 'ppl', value: p.best, sparsity: p.bestSparsity } }
        : {}),
      count: p.evaluations,
      unit: 'evals',
      seconds: p.seconds,
    });
  };
  return {
    onProgress: (done: number, total: number, unit?: string, best?: SearchBest) => {
      env.onProgress?.(done, total, unit);
      // A block search's block is fixed: the next one starts, nothing scored in it yet (best NaN). Said now, so
      // the line (and the dashboard, which takes the same report) no longer shows the finished block's last
      // generation while the next block's initial population is scored.
      if (unit === 'blocks' && lastBlock && done < total) {
        searchProgress({
          ...lastBlock,
          layer: done,
          generation: 0,
          best: Number.NaN,
          bestSparsity: Number.NaN,
        });
        return;
      }
      const words = PROGRESS_UNITS[unit ?? 'matrices'];
      if (!update || !words) return;
      update({
        method,
        phase: unit ?? 'matrices',
        step: `${words.step} ${done}/${total}`,
        fraction: total > 0 ? done / total : 1,
        ...(best
          ? { best: { metric: 'ppl', value: best.perplexity, sparsity: best.sparsity } }
          : fixed
            ? { best: fixed }
            : {}),
        count: best ? best.evaluations : done,
        unit: words.unit,
      });
    },
    onSearchProgress: (p: BlockSearchProgress) => {
      lastBlock = p;
      searchProgress(p);
    },
  };
}

/** A perplexity of the dense and the pruned model on one data set. */
export interface PerplexityPair {
  data: string;
  tokens: number;
  perplexity: number;
  densePerplexity: number;
}

/**
 * The calibration scores: perplexity (language models; a classification run has none), and the run's `--metric`
 * (`metric`, `quality`, `denseQuality`; lower is better, so for 'bleu' they are −BLEU, with `bleu` and
 * `denseBleu` giving BLEU itself and `task` the calibration task; for 'mc-accuracy' −accuracy, with `accuracy`,
 * `denseAccuracy` and `choices`; for 'accuracy' / 'macro-f1' −accuracy or −macro-F1, with `accuracy`,
 * `denseAccuracy`, `macroF1`, `denseMacroF1` and `labelled`). `tokens` is the perplexity's token count, or the
 * labelled items scored.
 */
export interface CalibScore {
  data: string;
  tokens: number;
  perplexity?: number;
  densePerplexity?: number;
  metric: QualityMetric;
  quality: number;
  denseQuality: number;
  macroF1?: number;
  denseMacroF1?: number;
  labelled?: ReturnType<typeof labelledRecord>;
  bleu?: number;
  denseBleu?: number;
  task?: ReturnType<typeof taskRecord>;
  accuracy?: number;
  denseAccuracy?: number;
  choices?: ReturnType<typeof choicesRecord>;
}

export interface WeightPruneResult {
  runDir: string;
  method: string;
  /** 'unstructured' or 'N:M'. */
  pattern: string;
  sparsity: {
    /** What was asked for (1 − N/M with a pattern). */
    target: number;
    /** Share of the prunable weights pruned. */
    achieved: number;
    /** Share of all parameters pruned (embeddings, norms and output head are never pruned). */
    overall: number;
  };
  prunableWeights: number;
  parameters: number;
  layers: LayerSparsity[];
  /** Context length of every window scored, calibration and evaluation alike. */
  context: number;
  /** What the user should know about the result (e.g. a sparsity far below the target); absent when none. */
  warnings?: string[];
  calib: CalibScore;
  /** Perplexity on the evaluation text; for 'accuracy' / 'macro-f1' runs, both scores on the labelled --eval file. */
  eval: PerplexityPair | LabelledEval;
  /** `--eval-task`: dense and pruned BLEU on the evaluation task (after recovery with --recover). */
  evalBleu?: EvalBleu;
  /** `--eval-choices`: dense and pruned multiple-choice accuracy (after recovery with --recover). */
  evalChoices?: EvalChoices;
  /** Forward passes on calibration data: the method's own, plus scoring the dense and the pruned model. */
  forwardPasses: number;
  seconds: number;
  /** What choosing the mask alone cost (the method's batch passes and seconds), out of the totals above. */
  methodCost: { forwardPasses: number; seconds: number };
  /** The weight-mask file in the run directory, and the sha256 of its bytes. */
  mask: string;
  maskSha256: string;
  seed: number;
  /** The method's own log (`ga`: per block, the initial population's best and the fixed mask's fitness). */
  methodReport?: unknown;
  resumed?: boolean;
  /**
   * `--recover`: the perplexities before recovery (calib / eval above are after it), the recovered weights' file,
   * its cost, and per layer the calibration reconstruction error Σ (w − ŵ)ᵀXᵀX(w − ŵ) of masking alone and after.
   */
  recovery?: {
    before: {
      /** Language models only (a classification run has no perplexity). */
      calibPerplexity?: number;
      evalPerplexity?: number;
      /** The --metric calibration quality before recovery. */
      calibQuality: number;
      /** --eval-task: corpus BLEU on the evaluation task before recovery. */
      evalBleu?: number;
      /** --eval-choices, or a classification run: accuracy on the evaluation file before recovery. */
      evalAccuracy?: number;
      /** A classification run: macro-F1 on the evaluation file before recovery. */
      evalMacroF1?: number;
    };
    weights: string;
    forwardPasses: number;
    seconds: number;
    reconstruction: Array<{ layer: number; maskedError: number; recoveredError: number }>;
  };
}

/**
 * The result of a run on a language model (every run but a classification run's): perplexities on both data sets,
 * and before recovery.
 */
export type PerplexityRunResult = WeightPruneResult & {
  calib: { perplexity: number; densePerplexity: number };
  eval: PerplexityPair;
  recovery?: { before: { calibPerplexity: number; evalPerplexity: number } };
};

/** The result as a language model's run (refused, internally, for a classification run's). */
export function perplexityRun(r: WeightPruneResult): PerplexityRunResult {
  if (!('perplexity' in r.eval) || r.calib.perplexity === undefined) {
    throw new GenepruneError('internal', `${r.runDir} is a classification run: it has no perplexity`);
  }
  return r as PerplexityRunResult;
}

interface Prepared extends RunData {
  /** The unpruned model (the dense side of every comparison, also after recovery). */
  denseSpec: ModelSpec;
  space: WeightSpace;
  pattern?: NmPattern;
}

/** The model and data, the weight space, and the checks that need the model: all before anything is written. */
async function prepare(s: WeightPruneSettings, env: WeightPruneEnv): Promise<Prepared> {
  const pattern = patternOf(s);
  const data = await prepareRunData(s, env, 'weights');
  const space = createWeightSpace(data.model.spec);
  if (pattern) {
    const bad = space.matrices.find((m) => m.cols % pattern.m !== 0);
    if (bad) {
      throw flagError(
        '--pattern',
        `a row of ${bad.role} has ${bad.cols} weights, which do not divide into groups of ${pattern.m}`,
      );
    }
  }
  const calibration = data.calibLabelled
    ? `${calibrationItems(s, data)} labelled items of ${data.calibLabelled.source}`
    : `${data.stream.length} tokens`;
  env.onStatus?.(
    `model ${data.model.modelPath}: ${space.genes} prunable weights in ${space.matrices.length} matrices (${space.totalParameters} parameters); calibration ${calibration}`,
  );
  return { ...data, denseSpec: data.model.spec, space, ...(pattern ? { pattern } : {}) };
}

/** A classification run's calibration items: the first --calib-items (default all) of the labelled file. */
function calibrationItems(s: WeightPruneSettings, d: RunData): number {
  const n = d.calibLabelled?.prepared.items.length ?? 0;
  return Math.min(s.calibItems ?? n, n);
}

/**
 * What methods and recovery that run the model read on a classification run: its calibration items, right-padded
 * in batches of about 4096 tokens (or --batch-size rows), `valid` on real tokens only.
 */
function labelledCalibrationBatches(s: WeightPruneSettings, d: RunData): TokenBatch[] {
  const l = d.calibLabelled;
  if (!l) throw new GenepruneError('internal', 'labelledCalibrationBatches: not a classification run');
  const items = sliceClassification(l.prepared, calibrationItems(s, d));
  return [...classificationBatches(items, s.batchSize)].map((b) => b.batch);
}

async function runConfig(s: WeightPruneSettings, p: Prepared): Promise<RunConfig> {
  const recorded = await runModelAndData(s, p);
  return {
    kind: WEIGHT_RUN_KIND,
    version: 1,
    method: s.method,
    ...(weightBaseline(s.method)?.description
      ? { methodDescription: weightBaseline(s.method)!.description }
      : {}),
    settings: s,
    model: recorded.model,
    geneOrder:
      'layer-major over the prunable matrices (q k v o gate up down of each layer), each [out, in] row-major; 1 keeps the weight',
    matrices: p.space.matrices.map(({ role, rows, cols }) => ({ role, rows, cols })),
    calibration: recorded.calibration,
    evaluation: recorded.evaluation,
  };
}

/** state.json once the mask is fixed. */
interface MaskFixedState {
  version: 1;
  stage: 'mask-fixed';
  maskSha256: string;
  /** The method's own forward passes and seconds. */
  forwardPasses: number;
  seconds: number;
  /** The method's own log, when it keeps one (the GA's per-layer fitness). */
  methodReport?: unknown;
}

function isMaskFixedState(v: unknown): v is MaskFixedState {
  const st = v as MaskFixedState;
  return (
    typeof st === 'object' &&
    st !== null &&
    st.version === 1 &&
    st.stage === 'mask-fixed' &&
    typeof st.maskSha256 === 'string' &&
    Number.isFinite(st.forwardPasses) &&
    Number.isFinite(st.seconds)
  );
}

/** A searching method's state after each fixed block: the fixed matrices' bits, and the rest in JSON. */
export const SEARCH_BLOCKS_FILE = 'search-blocks.bin';
export const SEARCH_STATE_FILE = 'search-state.json';

interface SearchStateFile {
  version: 1;
  method: string;
  done: number;
  /** How many matrices (the first of the run's list) the bits file holds, and its sha256. */
  matrices: number;
  blocksSha256: string;
  rngState: number[];
  reports: unknown[];
  dense: number;
  forwardPasses: number;
  evaluations: number;
  seconds: number;
}

/** A block-wise search's log of every scored candidate (one line each: block, generation, quality, sparsity, ms). */
export const WEIGHT_EVALS_FILE = 'evals.jsonl';

/**
 * Keeps in the evaluation log only the blocks a checkpoint has fixed, once that checkpoint has been read and
 * validated: the candidates of a block that was stopped half-way are scored again when it is searched again.
 */
async function trimEvaluationLog(dir: string, done: number): Promise<void> {
  const path = join(dir, WEIGHT_EVALS_FILE);
  const text = await readFile(path, 'utf8').catch(() => undefined);
  if (text === undefined) return;
  const kept = text.split('\n').filter((line) => {
    try {
      const r = JSON.parse(line) as { block?: unknown };
      return typeof r.block === 'number' && r.block < done;
    } catch {
      return false; // the empty tail, or a line torn by a stop mid-append
    }
  });
  await writeTextAtomic(path, kept.map((l) => `${l}\n`).join(''));
}

/**
 * The checkpoint of a block-wise search in the run directory: SEARCH_BLOCKS_FILE (the fixed blocks' keep bits,
 * matrix after matrix, packed) written first, then SEARCH_STATE_FILE naming its sha256, both atomically, so a
 * stop at any moment leaves either the previous checkpoint or the new one.
 */
function searchCheckpoint(dir: string, method: string, matrices: readonly { rows: number; cols: number }[]) {
  const statePath = join(dir, SEARCH_STATE_FILE);
  const bitsPath = join(dir, SEARCH_BLOCKS_FILE);
  const store: CheckpointStore<unknown> = {
    async read() {
      const st = (await readJsonIfPresent(statePath, SEARCH_STATE_FILE)) as SearchStateFile | undefined;
      if (st === undefined) {
        await trimEvaluationLog(dir, 0);
        return undefined;
      }
      const bad = (why: string) => fileError(statePath, `${why}; remove it to search again from block 0`);
      if (
        st?.version !== 1 ||
        st.method !== method ||
        !Number.isSafeInteger(st.done) ||
        !Number.isSafeInteger(st.matrices) ||
        st.matrices > matrices.length ||
        !Array.isArray(st.reports) ||
        st.reports.length !== st.done ||
        !Array.isArray(st.rngState)
      ) {
        throw bad('is corrupt or belongs to another method');
      }
      // Before the log is trimmed to it: a log cut or edited inside what the checkpoint covers is refused.
      await refuseChangedSinceState(dir, st, statePath);
      if ((await sha256File(bitsPath).catch(() => '')) !== st.blocksSha256) {
        throw bad(`does not match ${SEARCH_BLOCKS_FILE} (missing or changed)`);
      }
      const lengths = matrices.slice(0, st.matrices).map((m) => m.rows * m.cols);
      const total = lengths.reduce((a, b) => a + b, 0);
      const bits = bitsetFromBytes(new Uint8Array(await readFile(bitsPath)), total);
      const keeps: Uint8Array[] = [];
      let at = 0;
      for (const n of lengths) {
        keeps.push(unpackRange(bits, at, n));
        at += n;
      }
      const cp: BlockCheckpoint<unknown> = {
        done: st.done,
        keeps,
        rngState: st.rngState,
        reports: st.reports,
        dense: st.dense,
        forwardPasses: st.forwardPasses,
        evaluations: st.evaluations,
        seconds: st.seconds,
      };
      await trimEvaluationLog(dir, st.done);
      return cp;
    },
    async write(cp) {
      const bits = createBitset(cp.keeps.reduce((a, k) => a + k.length, 0));
      let at = 0;
      for (const k of cp.keeps) {
        for (let i = 0; i < k.length; i++, at++) if (k[i]) bits.words[at >>> 5] |= 1 << (at & 31);
      }
      const bytes = bitsetBytes(bits);
      await writeBytesAtomic(bitsPath, bytes);
      const st: SearchStateFile = {
        version: 1,
        method,
        done: cp.done,
        matrices: cp.keeps.length,
        blocksSha256: await sha256File(bitsPath),
        rngState: cp.rngState,
        reports: cp.reports,
        dense: cp.dense,
        forwardPasses: cp.forwardPasses,
        evaluations: cp.evaluations,
        seconds: cp.seconds,
      };
      await writeJsonAtomic(statePath, { ...st, ...(await runStamp(dir, [WEIGHT_EVALS_FILE])) });
      faultPoint('weights:block-fixed');
      faultPoint(`weights:block-fixed:${cp.done}`);
    },
  };
  return store;
}

/** A method's own JSON state (alloc: after each generation), named by the method it belongs to. */
export const METHOD_STATE_FILE = 'method-state.json';

function methodStateStore(dir: string, method: string): MethodStateStore {
  const path = join(dir, METHOD_STATE_FILE);
  let writes = 0;
  return {
    async read() {
      const st = (await readJsonIfPresent(path, METHOD_STATE_FILE)) as
        | { version?: unknown; method?: unknown; state?: unknown }
        | undefined;
      if (st === undefined) return undefined;
      if (st?.version !== 1 || st.method !== method || st.state === undefined) {
        throw fileError(
          path,
          `is corrupt or belongs to another method; remove it to search again from the start`,
        );
      }
      await refuseChangedSinceState(dir, st, path);
      return st.state;
    },
    async write(state) {
      await writeJsonAtomic(path, { version: 1, method, state, ...(await runStamp(dir, [])) });
      writes++;
      faultPoint(`weights:method-state:${writes}`);
    },
  };
}

/** Chooses the mask, writes it into the run directory and records the fixed state. */
async function fixMask(dir: string, s: WeightPruneSettings, p: Prepared, env: WeightPruneEnv) {
  const method = weightBaseline(s.method);
  if (!method) throw flagError('--method', `unknown method "${s.method}"`);
  const t0 = performance.now();
  const progress = progressCallbacks(s.method, env);
  env.onStatus?.(`${s.method}: choosing ${patternText(p.pattern)} masks at sparsity ${s.sparsity}`);
  const out = await method.select({
    spec: p.model.spec,
    matrices: p.space.matrices,
    sparsity: s.sparsity,
    ...(p.pattern ? { pattern: p.pattern } : {}),
    rng: createRng(s.seed),
    calibration: {
      stream: p.stream,
      context: p.context,
      tokens: p.calibTokens,
      ...(p.calibLabelled ? { batches: labelledCalibrationBatches(s, p) } : {}),
    },
    engine: { device: env.device, threads: env.threads },
    metric: s.metric ?? 'ppl',
    ...(p.calibTask ? { bleu: bleuObjectiveOptions(s, p.calibTask) } : {}),
    onProgress: progress.onProgress,
    search: {
      ...(s.population !== undefined ? { population: s.population } : {}),
      ...(s.generations !== undefined ? { generations: s.generations } : {}),
      ...(s.lambda !== undefined ? { lambda: s.lambda } : {}),
      ...(s.mutationRate !== undefined ? { mutationRate: s.mutationRate } : {}),
    },
    checkpoint: searchCheckpoint(dir, s.method, p.space.matrices),
    state: methodStateStore(dir, s.method),
    ...(s.recover ? { recovery: { damping: RECOVERY_DAMPING } } : {}),
    ...(env.onSearchProgress || env.onSearchUpdate ? { onSearchProgress: progress.onSearchProgress } : {}),
    onSearchEvaluation: (e) =>
      appendJsonl(dir, WEIGHT_EVALS_FILE, {
        block: e.layer,
        generation: e.generation,
        // As every run log holds it: lower is better, so BLEU is negated (the dashboard and report turn it back).
        quality: Number.isFinite(e.value) ? (e.metric === 'bleu' ? -e.value : e.value) : null,
        sparsity: e.sparsity,
        ms: Math.round(e.ms),
      }),
  });
  const masks = weightMasksFromKeeps(p.space.matrices, out.keeps);
  const { sha256 } = await writeWeightMaskFile(join(dir, WEIGHT_MASK_FILE), p.model.spec, masks, {
    ...(p.pattern ? { pattern: p.pattern } : {}),
    info: {
      method: s.method,
      sparsity: s.sparsity,
      seed: s.seed,
      runDir: dir,
      // What `eval --weight-mask` takes as its default --ctx, so it reproduces the run's evaluation.
      context: p.context,
      calibration: s.calib,
      evaluation: s.eval,
    },
  });
  const state: MaskFixedState = {
    version: 1,
    stage: 'mask-fixed',
    maskSha256: sha256,
    forwardPasses: out.forwardPasses,
    seconds: (performance.now() - t0) / 1000,
    ...(out.report !== undefined ? { methodReport: out.report } : {}),
  };
  await saveState(dir, state, [WEIGHT_EVALS_FILE]);
  faultPoint('weights:mask-fixed');
  return { masks, state };
}

/** The recovered prunable matrices of a `--recover` run, beside its mask. */
export const RECOVERED_WEIGHTS_FILE = 'recovered-weights.safetensors';

/** One objective's dense (with `dense`) and pruned quality on the calibration data, and its forward passes. */
async function calibQuality(
  spec: ModelSpec,
  metric: QualityMetric,
  s: WeightPruneSettings,
  p: Prepared,
  genome: Bitset,
  env: WeightPruneEnv,
  dense: boolean,
) {
  const space = p.space;
  const objective = await createObjective(spec, space, {
    stream: p.stream,
    context: p.context,
    metric,
    bleu: bleuObjectiveOptions(s, p.calibTask),
    choices: choiceObjectiveOptions(s, p.calibChoices),
    ...(p.calibLabelled
      ? {
          labelled: {
            prepared: p.calibLabelled.prepared,
            items: calibrationItems(s, p),
            ...(s.batchSize !== undefined ? { batchSize: s.batchSize } : {}),
          },
        }
      : {}),
    tokens: s.calibTokens,
    batchSize: s.batchSize,
    device: env.device,
    threads: env.threads,
    dtype: s.dtype,
  });
  try {
    const denseQuality = dense ? (await objective.evaluate(space.full())).quality : Number.NaN;
    const pruned = await objective.evaluate(genome);
    return {
      denseQuality,
      quality: pruned.quality,
      tokens: pruned.tokens,
      forwardPasses: objective.forwardPasses(),
    };
  } finally {
    await objective.release();
  }
}

/**
 * Calibration perplexity and `--metric` quality, evaluation perplexity (and `--eval-task` BLEU) of `spec` under
 * the genome's masks; with `dense`, the unmasked model's too (a recovered spec has no dense model of its own: the
 * caller keeps the original's). A classification run scores its metric on the labelled calibration items and
 * accuracy and macro-F1 on the labelled evaluation file instead (no perplexity: an encoder has no language head).
 */
async function scoreMasked(
  spec: ModelSpec,
  s: WeightPruneSettings,
  p: Prepared,
  genome: Bitset,
  env: WeightPruneEnv,
  dense: boolean,
  /** The masked model's evaluation scores, whose dense scores a recovered model's reuses. */
  denseOf: { bleu?: EvalBleu; choices?: EvalChoices; labelled?: LabelledEval } = {},
): Promise<{
  calib: CalibScore;
  eval: PerplexityPair | LabelledEval;
  evalBleu?: EvalBleu;
  evalChoices?: EvalChoices;
  forwardPasses: number;
}> {
  const space = p.space;
  const metric = s.metric ?? 'ppl';
  const labelled = isClassificationMetric(metric);
  const ppl = labelled ? undefined : await calibQuality(spec, 'ppl', s, p, genome, env, dense);
  const chosen = ppl && metric === 'ppl' ? ppl : await calibQuality(spec, metric, s, p, genome, env, dense);
  const calib: CalibScore = {
    data: s.calib,
    tokens: ppl ? ppl.tokens : chosen.tokens,
    ...(ppl ? { perplexity: ppl.quality, densePerplexity: ppl.denseQuality } : {}),
    metric,
    quality: chosen.quality,
    denseQuality: chosen.denseQuality,
    ...(metric === 'bleu'
      ? {
          bleu: bleuOfQuality(chosen.quality),
          denseBleu: bleuOfQuality(chosen.denseQuality),
          ...(p.calibTask ? { task: taskRecord(p.calibTask, chosen.tokens) } : {}),
        }
      : {}),
    ...(metric === 'mc-accuracy'
      ? {
          accuracy: accuracyOfQuality(chosen.quality),
          denseAccuracy: accuracyOfQuality(chosen.denseQuality),
          ...(p.calibChoices ? { choices: choicesRecord(p.calibChoices, chosen.tokens) } : {}),
        }
      : {}),
    ...(labelled && p.calibLabelled
      ? {
          ...(metric === 'macro-f1'
            ? { macroF1: -chosen.quality, denseMacroF1: -chosen.denseQuality }
            : { accuracy: -chosen.quality, denseAccuracy: -chosen.denseQuality }),
          labelled: labelledRecord(p.calibLabelled, chosen.tokens),
        }
      : {}),
  };
  const forwardPasses = (ppl?.forwardPasses ?? 0) + (chosen === ppl ? 0 : chosen.forwardPasses);
  env.onStatus?.('scoring on the evaluation data');
  const masks = space.masks(genome);
  if (labelled) {
    const e = await scoreLabelledOnEval(p, s, masks, env, denseOf.labelled);
    return { calib, eval: e, forwardPasses };
  }
  const e = await scoreOnEval(p, s, masks, env, { dense });
  if (p.evalTask)
    env.onStatus?.(`BLEU of the dense and the pruned model on the evaluation task ${p.evalTask.source}`);
  const evalBleu = p.evalTask
    ? await scoreBleuOnEval(p.evalTask, s, p.denseSpec, spec, masks, env, denseOf.bleu)
    : undefined;
  if (p.evalChoices) env.onStatus?.(`accuracy of the dense and the pruned model on ${p.evalChoices.source}`);
  const evalChoices = p.evalChoices
    ? await scoreChoicesOnEval(p.evalChoices, s, p.denseSpec, spec, masks, env, denseOf.choices)
    : undefined;
  return {
    calib,
    eval: { data: e.data, tokens: e.tokens, perplexity: e.perplexity, densePerplexity: e.densePerplexity },
    ...(evalBleu ? { evalBleu } : {}),
    ...(evalChoices ? { evalChoices } : {}),
    forwardPasses,
  };
}

/**
 * `--recover`: the fixed mask's kept weights refitted, layer by layer, to each linear's dense outputs on the
 * calibration windows (prune/sequential.ts with prune/recover.ts), written to RECOVERED_WEIGHTS_FILE.
 */
async function recoverMasked(
  dir: string,
  p: Prepared,
  s: WeightPruneSettings,
  masks: ReadonlyMap<string, Bitset>,
  maskSha256: string,
  env: WeightPruneEnv,
  before?: QuotedBest,
) {
  const t0 = performance.now();
  const list = p.calibLabelled
    ? labelledCalibrationBatches(s, p)
    : recoveryBatches(p.stream, {
        context: p.context,
        tokens: s.calibTokens,
        label: s.calib,
        vocabSize: p.model.spec.config.vocabSize,
        batchSize: s.batchSize,
      });
  const L = p.model.spec.config.numLayers;
  const result = await pruneSequentially(p.model.spec, {
    batches: list,
    recover: true,
    damping: RECOVERY_DAMPING,
    device: env.device,
    threads: env.threads,
    select: (lin) => {
      const m = masks.get(lin.role);
      if (!m) throw new GenepruneError('internal', `no mask for ${lin.role}`);
      return unpackBits(m);
    },
    onLayer: (r) => progressCallbacks(s.method, env, before).onProgress(r.layer + 1, L, 'layers recovered'),
  });
  const path = join(dir, RECOVERED_WEIGHTS_FILE);
  await writeRecoveredWeights(
    path,
    p.model.spec,
    result.spec,
    [...masks.keys()],
    { kind: 'weight', sha256: maskSha256 },
    RECOVERY_DAMPING,
  );
  const reconstruction = result.layers.map((l) => ({
    layer: l.layer,
    maskedError: l.linears.reduce((a, x) => a + (x.maskedError ?? 0), 0),
    recoveredError: l.linears.reduce((a, x) => a + (x.recoveredError ?? 0), 0),
  }));
  return {
    spec: result.spec,
    path,
    forwardPasses: result.forwardPasses,
    seconds: (performance.now() - t0) / 1000,
    reconstruction,
  };
}

/**
 * A run whose achieved sparsity is below this share of its target is flagged: a method that takes --sparsity as
 * a threshold rather than a budget (the GenePrune GA) can stop far short of it, and "asked 50 %, got 5 %" must
 * not pass as a 50 % result. A budget method lands within rounding of the target and is never flagged.
 */
export const SPARSITY_SHORTFALL = 0.9;

/** The warnings a result carries about its sparsity (none, or one line). */
export function sparsityWarnings(method: string, target: number, achieved: number): string[] {
  if (!(target > 0) || achieved >= SPARSITY_SHORTFALL * target) return [];
  const pct = (x: number) => `${(100 * x).toFixed(1)} %`;
  const why = method === 'ga' ? ': the ga method takes --sparsity as its stop threshold, not a budget' : '';
  return [`achieved sparsity ${pct(achieved)} is far below the ${pct(target)} asked${why}`];
}

/** From a fixed (or to-be-fixed) mask to result.json. */
async function pruneInDir(
  dir: string,
  s: WeightPruneSettings,
  p: Prepared,
  env: WeightPruneEnv,
  fixed?: MaskFixedState,
): Promise<WeightPruneResult> {
  const maskPath = join(dir, WEIGHT_MASK_FILE);
  let masks: ReadonlyMap<string, Bitset>;
  let state: MaskFixedState;
  if (fixed) {
    const loaded = await loadWeightMaskFile(maskPath, p.model.spec);
    if (loaded.sha256 !== fixed.maskSha256) {
      throw fileError(maskPath, 'is not the mask this run fixed (state.json records another sha256)');
    }
    env.onStatus?.('the mask was fixed before the run stopped: scoring it');
    masks = loaded.masks;
    state = fixed;
  } else {
    ({ masks, state } = await fixMask(dir, s, p, env));
  }
  // state.seconds already holds the method's time: count only what follows it.
  const tScore = performance.now();
  const space = p.space;
  const genome = space.join(masks);
  env.onStatus?.('scoring the dense and the pruned model on the calibration data');
  const scored = await scoreMasked(p.model.spec, s, p, genome, env, true);
  let calib = scored.calib;
  let evalScore = scored.eval;
  let evalBleu = scored.evalBleu;
  let evalChoices = scored.evalChoices;
  let passes = scored.forwardPasses;
  let recovery: WeightPruneResult['recovery'];
  if (s.recover) {
    env.onStatus?.('recovery: refitting the kept weights on the calibration activations, layer by layer');
    const before = quotedBest(s.metric ?? 'ppl', calib.quality, space.sparsity(genome), 'before recovery');
    const rec = await recoverMasked(dir, p, s, masks, state.maskSha256, env, before);
    env.onStatus?.('scoring the recovered model');
    const after = await scoreMasked(
      rec.spec,
      s,
      { ...p, model: { ...p.model, spec: rec.spec } },
      genome,
      env,
      false,
      { bleu: evalBleu, choices: evalChoices, ...('accuracy' in evalScore ? { labelled: evalScore } : {}) },
    );
    recovery = {
      before: {
        ...(calib.perplexity !== undefined ? { calibPerplexity: calib.perplexity } : {}),
        ...('perplexity' in evalScore ? { evalPerplexity: evalScore.perplexity } : {}),
        calibQuality: calib.quality,
        ...(evalBleu ? { evalBleu: evalBleu.corpus } : {}),
        ...(evalChoices ? { evalAccuracy: evalChoices.accuracy } : {}),
        ...('accuracy' in evalScore
          ? { evalAccuracy: evalScore.accuracy, evalMacroF1: evalScore.macroF1 }
          : {}),
      },
      weights: rec.path,
      forwardPasses: rec.forwardPasses,
      seconds: rec.seconds,
      reconstruction: rec.reconstruction,
    };
    calib = {
      ...after.calib,
      ...(calib.densePerplexity !== undefined ? { densePerplexity: calib.densePerplexity } : {}),
      denseQuality: calib.denseQuality,
      ...(calib.denseBleu !== undefined ? { denseBleu: calib.denseBleu } : {}),
      ...(calib.denseAccuracy !== undefined ? { denseAccuracy: calib.denseAccuracy } : {}),
      ...(calib.denseMacroF1 !== undefined ? { denseMacroF1: calib.denseMacroF1 } : {}),
    };
    // A labelled evaluation took its dense scores from the masked model's already (scoreLabelledOnEval).
    evalScore =
      'perplexity' in after.eval && 'perplexity' in evalScore
        ? { ...after.eval, densePerplexity: evalScore.densePerplexity }
        : after.eval;
    evalBleu = after.evalBleu;
    evalChoices = after.evalChoices;
    passes += after.forwardPasses + rec.forwardPasses;
  }
  const report = space.report(genome);
  const warnings = sparsityWarnings(s.method, s.sparsity, report.prunable.sparsity);
  const result: WeightPruneResult = {
    runDir: dir,
    method: s.method,
    pattern: patternText(p.pattern),
    sparsity: { target: s.sparsity, achieved: report.prunable.sparsity, overall: report.overall.sparsity },
    prunableWeights: report.prunable.weights,
    parameters: report.overall.parameters,
    layers: report.layers,
    context: p.context,
    ...(warnings.length > 0 ? { warnings } : {}),
    calib,
    eval:
      'perplexity' in evalScore
        ? {
            data: evalScore.data,
            tokens: evalScore.tokens,
            perplexity: evalScore.perplexity,
            densePerplexity: evalScore.densePerplexity,
          }
        : evalScore,
    ...(evalBleu ? { evalBleu } : {}),
    ...(evalChoices ? { evalChoices } : {}),
    forwardPasses: state.forwardPasses + passes,
    seconds: state.seconds + (performance.now() - tScore) / 1000,
    methodCost: { forwardPasses: state.forwardPasses, seconds: state.seconds },
    mask: maskPath,
    maskSha256: state.maskSha256,
    seed: s.seed,
    ...(state.methodReport !== undefined ? { methodReport: state.methodReport } : {}),
    ...(recovery ? { recovery } : {}),
  };
  faultPoint('weights:before-result');
  await writeJsonAtomic(join(dir, 'result.json'), { ...result, matrices: report.matrices });
  return result;
}

/** A fresh run in `dir` (created; refused when it holds anything). Data and model paths are stored absolute. */
export async function runWeightPrune(
  dir: string,
  settings: WeightPruneSettings,
  env: WeightPruneEnv = {},
): Promise<WeightPruneResult> {
  const s = absoluteSettings(settings);
  const p = await prepare(s, env);
  const lock = await createRunDir(dir, await runConfig(s, p), env.onNote);
  try {
    return await pruneInDir(dir, s, p, env);
  } finally {
    await lock.release();
  }
}

async function readJsonIfPresent(path: string, what: string): Promise<unknown> {
  if (!(await stat(path).catch(() => undefined))) return undefined;
  try {
    return JSON.parse(await readFile(path, 'utf8'));
  } catch {
    throw fileError(path, `${what} is corrupt (not valid JSON)`);
  }
}

/**
 * Continues a run: a finished one gives back its result (after checking that its settings, data, model and
 * mask file are the run's), one stopped after its mask was fixed scores that mask, and one stopped before
 * starts again. `given` are the settings typed with --resume: any that would change the run is refused.
 */
export async function resumeWeightPrune(
  dir: string,
  env: WeightPruneEnv = {},
  given: readonly WeightGivenSetting[] = [],
): Promise<WeightPruneResult> {
  const config = await readRunConfig(dir, WEIGHT_RUN_KIND);
  const s = config.settings as WeightPruneSettings;
  refuseChangedSettings(s, given);
  await refuseChangedData('calibration', s.calib, config.calibration);
  await refuseChangedData('evaluation', s.eval, config.evaluation);
  const lock = await lockRunDir(dir, env.onNote);
  try {
    const p = await prepare(s, env);
    await refuseForeignModel(dir, config, p.model.spec, p.model.modelPath);
    const resultPath = join(dir, 'result.json');
    const done = (await readJsonIfPresent(resultPath, 'result.json')) as
      | (WeightPruneResult & { matrices?: unknown })
      | undefined;
    const statePath = join(dir, 'state.json');
    const state = await readJsonIfPresent(statePath, 'state.json');
    if (state !== undefined && !(await refuseChangedSinceState(dir, state, statePath, { exact: !!done }))) {
      env.onNote?.(
        `${dir}: the run's state predates its record of config.json and the logs; their changes cannot be detected`,
      );
    }
    if (done) {
      const maskPath = join(dir, WEIGHT_MASK_FILE);
      if (typeof done.maskSha256 !== 'string' || (await sha256File(maskPath)) !== done.maskSha256) {
        throw fileError(
          maskPath,
          'is not the mask this finished run wrote (result.json records another sha256)',
        );
      }
      env.onStatus?.('the run has finished: its result stands');
      const { matrices: _m, ...result } = done;
      // Runs finished before result.json recorded the context scored at p.context all the same.
      return { ...result, context: result.context ?? p.context, runDir: dir, resumed: true };
    }
    if (state !== undefined && !isMaskFixedState(state)) {
      throw fileError(join(dir, 'state.json'), 'weight-pruning state is corrupt or does not fit the run');
    }
    const result = await pruneInDir(dir, s, p, env, state);
    return { ...result, resumed: true };
  } finally {
    await lock.release();
  }
}
