/**
 * The multiple-choice tasks of a run (metrics/choices.ts): the *calibration* task a `--metric mc-accuracy`
 * search scores candidates on (`--calib-choices FILE`, its first `--calib-items` items, default all), and the
 * *evaluation* task (`--eval-choices FILE`) whose dense and pruned accuracy the report quotes, whatever the
 * metric. Like the text data they are kept apart: never the same file, never a shared item.
 */
import type { CandidateMasks } from '../engine/runner.js';
import { createRunner } from '../engine/runner.js';
import type { Device } from '../engine/session.js';
import { fileError, flagError } from '../errors.js';
import type { ComputeDtype } from '../graph/weights.js';
import {
  CHOICE_NORMS,
  type ChoiceNorm,
  type PreparedChoiceTask,
  prepareChoiceTask,
  readChoiceTask,
  scoreChoices,
} from '../metrics/choices.js';
import { findMetric, metricsScoredOn, orList } from '../metrics/registry.js';
import type { ModelSpec } from '../model/spec.js';
import type { ChoiceObjectiveOptions, QualityMetric } from '../search/objective.js';
import type { Tokenizer } from '../tokenizer/types.js';
import { realPathOf, sha256File } from '../util/fs.js';
import { scoreDenseAndPruned } from './score.js';

/** The multiple-choice settings every run has (heads and weights alike). */
export interface RunChoiceSettings {
  metric?: QualityMetric;
  /** `--metric mc-accuracy`: the calibration multiple-choice file. */
  calibChoices?: string;
  /** `--metric mc-accuracy`: which accuracy is searched on ('none': acc, default; 'chars': acc_norm). */
  choiceNorm?: ChoiceNorm;
  /** Calibration items a full evaluation scores (mc-accuracy default: all). */
  calibItems?: number;
  /** Calibration items a low-fidelity evaluation scores (default: all of calibItems). */
  lowItems?: number;
  /** Report dense and pruned multiple-choice accuracy on this file. */
  evalChoices?: string;
}

/** A run's multiple-choice task, encoded, with its file's sha256. */
export interface RunChoices {
  prepared: PreparedChoiceTask;
  source: string;
  sha256: string;
}

async function load(path: string, tokenizer: Tokenizer, maxPositions: number): Promise<RunChoices> {
  const task = await readChoiceTask(path);
  return {
    prepared: prepareChoiceTask(task, tokenizer, maxPositions),
    source: path,
    sha256: await sha256File(path),
  };
}

/**
 * The calibration task of a run whose metric is scored on multiple choice (data kind 'choices': `--metric
 * mc-accuracy`; undefined otherwise), refused in one line if unusable.
 */
export async function calibrationChoices(
  s: RunChoiceSettings,
  tokenizer: Tokenizer,
  maxPositions: number,
): Promise<RunChoices | undefined> {
  if (findMetric(s.metric ?? 'ppl')?.data !== 'choices') {
    for (const [key, flag] of [
      ['calibChoices', '--calib-choices'],
      ['choiceNorm', '--choice-norm'],
    ] as const) {
      if (s[key] !== undefined)
        throw flagError(flag, `only with --metric ${orList(metricsScoredOn(['choices']))}`);
    }
    return undefined;
  }
  if (s.choiceNorm !== undefined && !CHOICE_NORMS.includes(s.choiceNorm)) {
    throw flagError('--choice-norm', `"${s.choiceNorm}" is not one of ${CHOICE_NORMS.join(', ')}`);
  }
  if (s.calibChoices === undefined) {
    throw flagError(
      '--calib-choices',
      '--metric mc-accuracy needs a calibration multiple-choice file: JSONL {"context", "choices", "label"} per line',
    );
  }
  return load(s.calibChoices, tokenizer, maxPositions);
}

/** The evaluation task (`--eval-choices`), or undefined when no accuracy is reported. */
export async function evaluationChoices(
  s: RunChoiceSettings,
  tokenizer: Tokenizer,
  maxPositions: number,
): Promise<RunChoices | undefined> {
  return s.evalChoices === undefined ? undefined : load(s.evalChoices, tokenizer, maxPositions);
}

/** Refuses an evaluation task that is the calibration file or shares an item (context, choices and label). */
export async function refuseChoicesOverlap(
  calib: RunChoices | undefined,
  evalChoices: RunChoices | undefined,
): Promise<void> {
  if (!calib || !evalChoices) return;
  if ((await realPathOf(calib.source)) === (await realPathOf(evalChoices.source))) {
    throw flagError(
      '--eval-choices',
      `${evalChoices.source} is also the calibration file (--calib-choices): reports must quote unseen items`,
    );
  }
  const key = (it: { context: string; choices: string[]; label: number }) =>
    JSON.stringify([it.context, it.choices, it.label]);
  const seen = new Set(calib.prepared.task.items.map(key));
  const shared = evalChoices.prepared.task.items.find((it) => seen.has(key(it)));
  if (shared) {
    throw fileError(
      evalChoices.source,
      `line ${shared.line}: the item is also in the calibration file ${calib.source}: reports must quote unseen items`,
    );
  }
}

/** What config.json and result.json record about a multiple-choice task. */
export function choicesRecord(c: RunChoices, items: number) {
  return { source: c.source, sha256: c.sha256, items, taskItems: c.prepared.task.items.length };
}

/** The objective options of a `--metric mc-accuracy` run. */
export function choiceObjectiveOptions(
  s: RunChoiceSettings,
  calib: RunChoices | undefined,
): ChoiceObjectiveOptions | undefined {
  if (!calib) return undefined;
  return {
    task: calib.prepared,
    ...(s.calibItems !== undefined ? { items: s.calibItems } : {}),
    ...(s.lowItems !== undefined ? { lowItems: s.lowItems } : {}),
    norm: s.choiceNorm ?? 'none',
  };
}

/** Dense and pruned multiple-choice accuracy on the evaluation file, as result.json records them. */
export interface EvalChoices {
  file: string;
  items: number;
  /** By summed log-likelihood (acc), 0–1. */
  accuracy: number;
  denseAccuracy: number;
  /** By log-likelihood per character (acc_norm), 0–1. */
  accuracyNorm: number;
  denseAccuracyNorm: number;
  forwards: number;
  seconds: number;
}

/**
 * Accuracy of the candidate (`spec` under `masks`) and, unless given in `dense`, of the dense model
 * (`denseSpec`) on the evaluation file, each in a session of its own (score.ts).
 */
export async function scoreChoicesOnEval(
  c: RunChoices,
  s: { dtype?: ComputeDtype },
  denseSpec: ModelSpec,
  spec: ModelSpec,
  masks: CandidateMasks,
  env: { device?: Device; threads?: number },
  dense?: Pick<EvalChoices, 'denseAccuracy' | 'denseAccuracyNorm'>,
): Promise<EvalChoices> {
  const t0 = performance.now();
  const { pruned, dense: fresh } = await scoreDenseAndPruned({
    open: (m, withMasks) =>
      createRunner(m, {
        output: 'nll',
        device: env.device,
        threads: env.threads,
        dtype: s.dtype,
        weightMasks: withMasks?.weightMasks ? [...withMasks.weightMasks.keys()] : undefined,
      }),
    score: (runner, withMasks) => scoreChoices(runner, c.prepared, { masks: withMasks ?? {} }),
    spec,
    masks,
    dense: dense ? undefined : { spec: denseSpec },
  });
  return {
    file: c.source,
    items: pruned.items,
    accuracy: pruned.accuracy,
    denseAccuracy: fresh ? fresh.accuracy : dense!.denseAccuracy,
    accuracyNorm: pruned.accuracyNorm,
    denseAccuracyNorm: fresh ? fresh.accuracyNorm : dense!.denseAccuracyNorm,
    forwards: pruned.forwards + (fresh?.forwards ?? 0),
    seconds: (performance.now() - t0) / 1000,
  };
}
