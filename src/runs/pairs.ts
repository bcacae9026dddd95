/**
 * The data of an encoder-decoder's run: `--calib` and `--eval` are task files (JSONL `{prompt, reference}`,
 * `{source, target}` or MBPP rows), read as source/target pairs. Perplexity-type metrics (ppl: the reference
 * target's perplexity given the source) score the pairs; generation metrics (BLEU, exact match, pass@1) decode
 * the same items. The evaluation task is always the `--eval` file, so every run reports its generation metrics
 * beside the target perplexity.
 *
 * Calibration and evaluation stay apart: never the same file, and a calibration item that is also an evaluation
 * item (same prompt and references) is left out of the calibration set, said in a note and recorded — the
 * evaluation set is what reports quote and is kept whole, so its numbers compare with published ones over the same
 * split (codet5-tiny's calib and eval share 7 of 200 items).
 */
import { resolve } from 'node:path';
import { checkMemoryBudget } from '../engine/memory.js';
import { flagError } from '../errors.js';
import {
  DEFAULT_PROMPT_TEMPLATE,
  type GenerationTask,
  prepareGenerationTask,
  readGenerationTask,
} from '../metrics/generation.js';
import { metricEntry } from '../metrics/registry.js';
import { pairTokens, prepareSeq2seqPairs, type Seq2seqPairs } from '../metrics/seq2seq.js';
import type { OpenedModel } from '../model/open.js';
import { realPathOf, sha256File } from '../util/fs.js';
import { type RunData, type RunDataSettings, type RunEnv, shortCalibrationNote } from './data.js';
import type { RunTask } from './tasks.js';

/** The items of `calib` that are not items of `evalTask` (same prompt and references), and how many were dropped. */
function withoutShared(
  calib: GenerationTask,
  evalTask: GenerationTask,
): { task: GenerationTask; dropped: number } {
  const key = (it: { prompt: string; references: string[] }) => JSON.stringify([it.prompt, it.references]);
  const seen = new Set(evalTask.items.map(key));
  const items = calib.items.filter((it) => !seen.has(key(it)));
  return { task: { ...calib, items }, dropped: calib.items.length - items.length };
}

/** Reads an encoder-decoder run's task files as pairs; see the module comment. */
export async function prepareSeq2seqRunData(
  s: RunDataSettings,
  env: RunEnv,
  what: string,
  model: OpenedModel,
): Promise<RunData> {
  // A head run's recovery (the o refit after head removal, spaces/heads/recover.ts) reads text windows.
  if (what === 'heads' && (s as { recover?: boolean }).recover) {
    throw flagError(
      '--recover',
      'not for an encoder-decoder yet: the o refit after head removal reads windows of a text stream, not source/target pairs',
    );
  }
  for (const [key, flag] of [
    ['calibTask', '--calib-task'],
    ['evalTask', '--eval-task'],
    ['calibChoices', '--calib-choices'],
    ['evalChoices', '--eval-choices'],
    ['context', '--ctx'],
  ] as const) {
    if (s[key] !== undefined) {
      throw flagError(
        flag,
        `not for an encoder-decoder (${model.spec.config.modelType}): --calib and --eval are its task files, scored as whole source/target pairs`,
      );
    }
  }
  if ((await realPathOf(s.calib)) === (await realPathOf(s.eval))) {
    throw flagError(
      '--eval',
      `${resolve(s.eval)} is also the calibration task: reports must quote unseen items`,
    );
  }
  const evalTask = await readGenerationTask(s.eval);
  const { task: calibTask, dropped } = withoutShared(await readGenerationTask(s.calib), evalTask);
  if (calibTask.items.length === 0) {
    throw flagError(
      '--calib',
      `every item of ${s.calib} is also in the evaluation task ${s.eval}: nothing to calibrate on`,
    );
  }
  if (dropped > 0) {
    env.onNote?.(
      `${s.calib}: ${dropped} calibration items are also evaluation items of ${s.eval}: left out of the calibration set (${calibTask.items.length} remain)`,
    );
  }
  const { spec, tokenizer } = model;
  const template = s.promptTemplate ?? DEFAULT_PROMPT_TEMPLATE;
  const calibPairs = prepareSeq2seqPairs(calibTask, tokenizer, spec.config, template);
  const evalPairs = prepareSeq2seqPairs(evalTask, tokenizer, spec.config, template);
  const longest = (p: Seq2seqPairs) =>
    Math.max(...p.sources.map((x) => x.length), ...p.targets.map((x) => x.length + 1));
  const context = Math.max(longest(calibPairs), longest(evalPairs));
  checkMemoryBudget(spec, {
    batch: Math.max(1, Math.floor(2048 / context)),
    seq: context,
    budget: env.memoryBudget,
    workers: env.workers,
    what,
    metric: 'ppl',
    dtype: s.dtype,
    heldBytes: 0,
  });
  const calibTokens = Math.min(s.calibTokens, pairTokens(calibPairs));
  const short = metricEntry(s.metric ?? 'ppl').data === 'text' && calibTokens < s.calibTokens;
  if (short) env.onNote?.(shortCalibrationNote(s.calib, calibTokens, s.calibTokens));
  const runTask = async (task: GenerationTask, source: string): Promise<RunTask> => ({
    prepared: prepareGenerationTask(task, tokenizer, template, true),
    from: 'file',
    source,
    sha256: await sha256File(source),
  });
  const calibRunTask = await runTask(calibTask, s.calib);
  const evalRunTask = await runTask(evalTask, s.eval);
  const taskMetric = metricEntry(s.metric ?? 'ppl').data === 'task';
  return {
    model,
    stream: [],
    evalStream: [],
    context,
    calibTokens,
    ...(short ? { calibTokensAsked: s.calibTokens } : {}),
    calibFiles: [{ path: resolve(s.calib), sha256: calibRunTask.sha256! }],
    evalFiles: [{ path: resolve(s.eval), sha256: evalRunTask.sha256! }],
    ...(taskMetric ? { calibTask: calibRunTask } : {}),
    evalTask: evalRunTask,
    calibPairs,
    evalPairs,
    ...(dropped > 0 ? { calibSharedDropped: dropped } : {}),
  };
}
