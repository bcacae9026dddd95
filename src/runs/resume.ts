/**
 * What `--resume` refuses before it touches a run: settings typed alongside it that would change the run, and
 * a model other than the one config.json records (by fingerprint; the refusal says whether the shape or only
 * the weights differ). Data changes are refused by `refuseChangedData` (data.ts).
 */
import { resolve } from 'node:path';
import { fileError, flagError } from '../errors.js';
import { isModelShape, type ModelShape, modelIdentity, shapeDifference } from '../model/identity.js';
import type { ModelSpec } from '../model/spec.js';
import type { RunConfig } from './rundir.js';

/** A setting the user typed alongside --resume: the flag, the setting it sets (if any) and the parsed value. */
export interface GivenSetting<K extends string = string> {
  flag: string;
  key?: K;
  value: unknown;
}

/**
 * Flags that may differ on --resume: they choose where and how visibly the work runs, never what is computed.
 * Everything else is part of the run's identity. --generations in particular: config.json must describe the
 * run it holds, and a finished run's stop reason and best were decided under the old limit. --batch-size too:
 * it changes the order of float sums, so the resumed run would no longer equal an uninterrupted one.
 */
export const RESUME_CHANGEABLE_FLAGS: readonly string[] = [
  '--device',
  '--threads',
  '--workers',
  '--queue',
  '--quiet',
  '--json',
];

/** Settings holding paths: stored absolute, so a path typed relative is compared resolved. */
const PATH_SETTINGS = new Set<string>(['calib', 'eval', 'model', 'tokenizer']);

/** Refuses every given setting that differs from the run's; the same value given again is accepted. */
export function refuseChangedSettings<S extends object>(
  stored: S,
  given: readonly GivenSetting<Extract<keyof S, string>>[],
): void {
  for (const g of given) {
    if (RESUME_CHANGEABLE_FLAGS.includes(g.flag)) continue;
    if (g.key === undefined) {
      throw flagError(g.flag, "cannot be given with --resume (the run's settings are in its config.json)");
    }
    const was = stored[g.key];
    const now =
      PATH_SETTINGS.has(g.key) && typeof g.value === 'string' && !g.value.startsWith('hf:')
        ? resolve(g.value)
        : g.value;
    if (now !== was) {
      const shown = was === undefined ? `no ${g.flag}` : String(was);
      throw flagError(g.flag, `cannot change on --resume (the run was made with ${shown})`);
    }
  }
}

/** Refuses a model other than the run's (config.json's fingerprint), saying how it differs. */
export async function refuseForeignModel(
  dir: string,
  config: RunConfig,
  spec: ModelSpec,
  modelPath: string,
): Promise<void> {
  const id = await modelIdentity(spec);
  const recorded = config.model as { fingerprint?: string; shape?: ModelShape } | undefined;
  if (id.fingerprint !== recorded?.fingerprint) {
    const shape = isModelShape(recorded?.shape)
      ? shapeDifference(recorded.shape, id.shape, 'the run')
      : undefined;
    throw fileError(
      `${dir}/config.json`,
      `the run was made with another model than ${modelPath}${shape ? ` (${shape})` : ': same shape, different weights'}`,
    );
  }
}
