/**
 * What a head search needs before it runs (the run itself: search.ts): the model and data with the calibration
 * objective over the head space (runs/data.ts), the config.json it records (runs/rundir.ts), and the GA's
 * options from the run's settings.
 */
import type { Genome } from '../../masks/heads.js';
import { geneCount } from '../../masks/heads.js';
import { choiceObjectiveOptions } from '../../runs/choices.js';
import { prepareRunData, type RunData, type RunEnv, runModelAndData } from '../../runs/data.js';
import type { GivenSetting } from '../../runs/resume.js';
import { HEAD_RUN_KIND, type RunConfig } from '../../runs/rundir.js';
import { bleuObjectiveOptions } from '../../runs/tasks.js';
import {
  backendFor,
  type EvaluationBackend,
  refuseTwoBackends,
  releasingBackend,
  runQueueId,
} from '../../search/backend.js';
import type { GaOptions, GenerationSummary } from '../../search/ga.js';
import { BLEU_SEARCH_ITEMS, metricLabel } from '../../search/objective.js';
import { oversubscriptionNote, refuseUnpooledMetric } from '../../search/pool.js';
import type { SearchProgress } from '../../search/progress.js';
import { headGaOptions } from './algorithms.js';
import { createHeadObjective, type HeadObjective } from './objective.js';
import type { HeadSearchSettings } from './settings.js';

export type HeadGivenSetting = GivenSetting<Extract<keyof HeadSearchSettings, string>>;

export interface HeadSearchEnv extends RunEnv {
  onStatus?: (line: string) => void;
  /** Things the user should see even when quiet: a stale lock taken over, leftovers removed. */
  onNote?: (line: string) => void;
  onGeneration?: (s: GenerationSummary, total: number, elapsedS: number) => void;
  onProgress?: (done: number, total: number) => void;
  /** Every method's progress in one shape (search/progress.ts): what it does, the best so far, the work done. */
  onSearchUpdate?: (p: SearchProgress) => void;
}

export function removeCountOf(s: HeadSearchSettings, genes: number): number | undefined {
  return s.targetSparsity === undefined ? undefined : Math.round(s.targetSparsity * genes);
}

export function gaOptions(
  s: HeadSearchSettings,
  genes: number,
  denseQuality: number,
  initWeights?: number[],
): GaOptions<Genome> {
  return headGaOptions(genes, {
    population: s.population,
    generations: s.generations,
    tournamentSize: s.tournament,
    crossoverRate: s.crossoverRate,
    mutationRate: s.mutationRate,
    removalBias: s.removalBias,
    sInitial: s.sInitial,
    fitness: { kind: s.fitness, metric: s.metric, lambda: s.lambda, denseQuality },
    fitnessThreshold: s.fitnessThreshold,
    maxSparsity: s.maxSparsity,
    removeCount: s.fitness === 'budget' ? removeCountOf(s, genes) : undefined,
    elitism: s.elitism,
    multiFidelity: s.lowTokens !== undefined || s.lowItems !== undefined,
    promote: s.promote,
    initWeights,
    seed: s.seed,
  });
}

export interface Prepared extends RunData {
  objective: HeadObjective;
  /** `--workers N`: where the objective's evaluations run (released with it); its stats go to workers.json. */
  backend?: EvaluationBackend;
}

export async function prepare(s: HeadSearchSettings, env: HeadSearchEnv, dir: string): Promise<Prepared> {
  refuseTwoBackends(env);
  if (env.workers !== undefined) refuseUnpooledMetric(s.metric);
  // A queue's workers score on a worker thread each (queue/worker.ts): the same metrics as --workers.
  if (env.queue !== undefined) refuseUnpooledMetric(s.metric, '--queue');
  const crowded = oversubscriptionNote(env.workers, env.threads);
  if (crowded) env.onNote?.(crowded);
  const data = await prepareRunData(s, env, 'heads');
  const calibration = data.calibPairs
    ? `${data.calibPairs.targets.length} source/target pairs of ${s.calib}`
    : `${data.stream.length} tokens`;
  env.onStatus?.(
    `model ${data.model.modelPath}: ${geneCount(data.model.spec.config)} heads; calibration ${calibration}`,
  );
  if (data.calibTask) {
    env.onStatus?.(
      `${metricLabel(s.metric)} fitness: ${Math.min(s.calibItems ?? BLEU_SEARCH_ITEMS, data.calibTask.prepared.prompts.length)} items of the calibration task ${data.calibTask.source}`,
    );
  }
  if (data.calibLabelled) {
    const items = data.calibLabelled.prepared.items.length;
    env.onStatus?.(
      `${s.metric} fitness: ${Math.min(s.calibItems ?? items, items)} labelled items of ${data.calibLabelled.source}`,
    );
  }
  if (data.calibChoices) {
    const items = data.calibChoices.prepared.task.items.length;
    env.onStatus?.(
      `accuracy fitness: ${Math.min(s.calibItems ?? items, items)} items of the multiple-choice file ${data.calibChoices.source}`,
    );
  }
  // `--workers N` or `--queue URL`: candidates scored on the backend, which lives as long as the objective.
  const backend = backendFor({
    ...env,
    ...(env.queue !== undefined ? { runId: runQueueId(dir) } : {}),
  });
  const objective = await createHeadObjective(data.model.spec, {
    stream: data.stream,
    ...(data.calibPairs ? { pairs: data.calibPairs } : {}),
    context: data.context,
    metric: s.metric,
    bleu: bleuObjectiveOptions(s, data.calibTask),
    choices: choiceObjectiveOptions(s, data.calibChoices),
    ...(data.calibLabelled
      ? {
          labelled: {
            prepared: data.calibLabelled.prepared,
            ...(s.calibItems !== undefined ? { items: s.calibItems } : {}),
            ...(s.lowItems !== undefined ? { lowItems: s.lowItems } : {}),
          },
        }
      : {}),
    tokens: s.calibTokens,
    lowTokens: s.lowTokens,
    batchSize: s.batchSize,
    device: env.device,
    threads: env.threads,
    dtype: s.dtype,
    ...(backend ? { remote: { backend, model: data.model.modelPath } } : {}),
  }).catch(async (e) => {
    await backend?.release();
    throw e;
  });
  return { ...data, objective: releasingBackend(objective, backend), ...(backend ? { backend } : {}) };
}

export async function runConfig(s: HeadSearchSettings, p: Prepared): Promise<RunConfig> {
  const recorded = await runModelAndData(s, p);
  return {
    kind: HEAD_RUN_KIND,
    version: 1,
    method: s.method,
    settings: s,
    model: recorded.model,
    geneOrder:
      'layer-major over the heads present: layer l starts at the sum of model.shape.queryHeads before it; 1 keeps the head',
    calibration: recorded.calibration,
    evaluation: recorded.evaluation,
  };
}
