/**
 * How a run's settings are put together, for any search space: the space's defaults, then a named preset
 * (e.g. a paper's values), then what the caller gave (undefined values count as not given). One frozen
 * record comes out and is saved in config.json; `--resume` reads it back rather than rebuilding it.
 */
import { flagError } from '../errors.js';

export function settingsFrom<S extends object>(
  defaults: Omit<S, 'calib' | 'eval'>,
  presets: Readonly<Record<string, Partial<S>>>,
  preset: string | undefined,
  given: Partial<S>,
): S {
  if (preset !== undefined && !Object.hasOwn(presets, preset)) {
    throw flagError('--preset', `unknown preset "${preset}" (known: ${Object.keys(presets).join(', ')})`);
  }
  const defined = Object.fromEntries(Object.entries(given).filter(([, v]) => v !== undefined));
  return { ...defaults, ...(preset === undefined ? {} : presets[preset]), ...defined } as S;
}
