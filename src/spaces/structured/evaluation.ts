/**
 * What a structured run scores its plans with, and where: the calibration objective's options for `--metric`
 * (a text metric on the calibration stream, a generation metric on the calibration task, multiple-choice accuracy
 * on `--calib-choices`) and the evaluation backend (`--workers N`: worker processes here; `--queue URL`: `geneprune worker`
 * processes anywhere). A backend's evaluators rebuild the same scorer from the objective's recipe, its runner
 * built with the channel_mask / block_mask inputs (the plan space asks for them: planobjective.ts), and score the
 * plans' masks sent to them, so the run's logs, plan and result do not depend on where the scoring ran. While
 * a backend scores, the run directory's workers.json says what it has done (runs/workersfile.ts), as a head
 * search's does.
 *
 * Which metrics a run may use: metrics.ts.
 */
import { flagError } from '../../errors.js';
import { unqueuedMetric } from '../../queue/jobs.js';
import { choiceObjectiveOptions } from '../../runs/choices.js';
import type { RunData, RunEnv } from '../../runs/data.js';
import { bleuObjectiveOptions } from '../../runs/tasks.js';
import { watchBackend } from '../../runs/workersfile.js';
import {
  backendFor,
  type EvaluationBackend,
  refuseTwoBackends,
  releasingBackend,
  runQueueId,
} from '../../search/backend.js';
import type { ObjectiveOptions } from '../../search/objective.js';
import { oversubscriptionNote, refuseUnpooledMetric } from '../../search/pool.js';
import type { StructuredSearchSettings } from './settings.js';

/** Refuses, in one line and before any data is read, a backend the run cannot use with its metric. */
export function refuseBackendsFor(s: Pick<StructuredSearchSettings, 'metric'>, env: RunEnv): void {
  refuseTwoBackends(env);
  if (env.workers !== undefined) refuseUnpooledMetric(s.metric);
  if (env.queue !== undefined) {
    refuseUnpooledMetric(s.metric, '--queue');
    // Before the run directory exists (the queue backend would refuse it only when the objective is built).
    const code = unqueuedMetric(s.metric);
    if (code) throw flagError('--queue', code);
  }
  const crowded = oversubscriptionNote(env.workers, env.threads);
  if (crowded) env.onNote?.(crowded);
}

/**
 * The plan objective's options for the run's metric, and the backend (if --workers or --queue chose one) its
 * evaluations run on; the caller releases the backend with the objective (search/backend.ts releasingBackend).
 */
export function structuredObjectiveOptions(
  dir: string,
  s: StructuredSearchSettings,
  data: RunData,
  env: RunEnv,
): { options: ObjectiveOptions; backend?: EvaluationBackend } {
  const backend = backendFor({
    ...env,
    ...(env.queue !== undefined ? { runId: runQueueId(dir) } : {}),
  });
  const bleu = bleuObjectiveOptions(s, data.calibTask);
  const choices = choiceObjectiveOptions(s, data.calibChoices);
  return {
    options: {
      stream: data.stream,
      context: data.context,
      metric: s.metric,
      ...(bleu ? { bleu } : {}),
      ...(choices ? { choices } : {}),
      tokens: s.calibTokens,
      lowTokens: s.lowTokens,
      batchSize: s.batchSize,
      device: env.device,
      threads: env.threads,
      dtype: s.dtype,
      ...(backend ? { remote: { backend, model: data.model.modelPath } } : {}),
    },
    ...(backend ? { backend } : {}),
  };
}

/**
 * Makes `objective.release()` release the backend too and write the run's workers.json a last time; the file is
 * written from now on while the backend scores. Without a backend the objective is returned as it is.
 */
export function releasingWatchedBackend<T extends { release(): Promise<void> }>(
  dir: string,
  objective: T,
  backend: EvaluationBackend | undefined,
): T {
  if (!backend) return objective;
  const watch = watchBackend(dir, backend);
  const inner = releasingBackend(objective, backend).release.bind(objective);
  objective.release = async () => {
    try {
      await inner();
    } finally {
      await watch.stop();
    }
  };
  return objective;
}
