/**
 * `searchHeads`: which attention heads to remove — the Survival of the Smallest GA (with our fixes), NSGA-II,
 * or a baseline — in a run directory; `resumeHeadSearch` continues one. Defaults and the paper's preset live
 * in spaces/heads/settings.ts, so the library and the CLI search alike.
 */
import { RESUME_CHANGEABLE_FLAGS } from '../runs/resume.js';
import {
  type HeadGivenSetting as GivenSetting,
  type HeadRecoveryReport,
  type HeadSearchEnv,
  type HeadSearchResult,
  resumeHeadSearch,
  runHeadSearch,
} from '../spaces/heads/search.js';
import {
  HEAD_METHODS,
  HEAD_PRESETS,
  HEAD_SEARCH_DEFAULTS,
  type HeadMethod,
  type HeadPreset,
  type HeadSearchOptions,
  type HeadSearchSettings,
  headSearchSettings,
  SOS_PRESET,
} from '../spaces/heads/settings.js';

export type {
  GivenSetting,
  HeadMethod,
  HeadPreset,
  HeadRecoveryReport,
  HeadSearchEnv,
  HeadSearchOptions,
  HeadSearchResult,
  HeadSearchSettings,
};
export {
  HEAD_METHODS,
  HEAD_PRESETS,
  HEAD_SEARCH_DEFAULTS,
  headSearchSettings,
  RESUME_CHANGEABLE_FLAGS,
  resumeHeadSearch,
  SOS_PRESET,
};

/** A fresh head search in the run directory `out` (created; refused when it holds anything). */
export async function searchHeads(
  opts: HeadSearchOptions & HeadSearchEnv & { out: string },
): Promise<HeadSearchResult> {
  const {
    out,
    device,
    threads,
    workers,
    queue,
    memoryBudget,
    onStatus,
    onGeneration,
    onProgress,
    onSearchUpdate,
    onNote,
    ...settings
  } = opts;
  return runHeadSearch(out, headSearchSettings(settings), {
    device,
    threads,
    workers,
    queue,
    memoryBudget,
    onStatus,
    onGeneration,
    onProgress,
    onSearchUpdate,
    onNote,
  });
}
