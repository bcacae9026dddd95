/**
 * The generic algorithms with the head space's operators (bit genomes): the GA's options as one flat record,
 * as the head search and its tests set them, and NSGA-II with its bit-flip defaults.
 */
import type { Genome } from '../../masks/heads.js';
import type { GaOptions } from '../../search/ga.js';
import { type NsgaOptions, type NsgaResult, runNsga } from '../../search/nsga.js';
import { type BitGaSettings, bitGaOperators, bitNsgaOperators } from '../../search/operators.js';
import type { HeadObjective } from './objective.js';

export type HeadGaSettings = Omit<GaOptions<Genome>, 'operators'> & BitGaSettings;

/** GA options over `genes` head genes: the loop's settings, and bit operators built from the rest. */
export function headGaOptions(genes: number, s: HeadGaSettings): GaOptions<Genome> {
  const { crossoverRate, mutationRate, removalBias, sInitial, removeCount, initWeights, ...loop } = s;
  return {
    ...loop,
    operators: bitGaOperators(genes, {
      crossoverRate,
      mutationRate,
      removalBias,
      sInitial,
      removeCount,
      initWeights,
    }),
  };
}

export type HeadNsgaOptions = Omit<NsgaOptions<Genome>, 'operators'> & {
  /** Per-gene flip probability (default 1 / genes). */
  mutationRate?: number;
  /** Largest share of heads the initial population removes (default 0.75). */
  maxRemoveShare?: number;
};

/** NSGA-II over head masks with the bit operators. */
export function runHeadNsga(objective: HeadObjective, opts: HeadNsgaOptions): Promise<NsgaResult<Genome>> {
  const { mutationRate, maxRemoveShare, ...rest } = opts;
  return runNsga(objective, {
    ...rest,
    operators: bitNsgaOperators(objective.space.genes, { mutationRate, maxRemoveShare }),
  });
}
