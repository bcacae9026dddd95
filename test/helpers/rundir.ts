/** Reading a head search's run directory, to compare two runs. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/** A run log (`evals.jsonl`, `generations.jsonl`) without wall-clock fields, the only thing allowed to differ. */
export function logWithoutTimes(dir: string, file: string): unknown[] {
  return readFileSync(join(dir, file), 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      const { ms: _ms, ...rest } = JSON.parse(l);
      return rest;
    });
}

/** The keep bits of the run's mask.json. */
export function maskKeep(dir: string): number[] {
  return JSON.parse(readFileSync(join(dir, 'mask.json'), 'utf8')).keep;
}
