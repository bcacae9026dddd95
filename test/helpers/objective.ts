/**
 * An objective over a quality that is a pure function of the genome, through the one real implementation
 * (`createCachedObjective`: cache, counters, non-finite rule, batches), for tests of algorithms that need a known
 * landscape rather than a model.
 */
import {
  createCachedObjective,
  type ElementwiseRunner,
  type Fidelity,
  type Objective,
} from '../../src/search/objective.js';
import type { SearchSpace } from '../../src/search/space.js';

export function computedObjective<G, S extends SearchSpace<G>>(
  space: S,
  quality: (g: G, fidelity: Fidelity) => number,
  opts: { tokens?: number; forwards?: (fidelity: Fidelity) => number; elementwise?: ElementwiseRunner } = {},
): Objective<G, S> {
  return createCachedObjective(
    space,
    'ppl',
    { elementwise: opts.elementwise, release: async () => {} },
    async (g, fidelity) => ({
      quality: quality(g, fidelity),
      tokens: opts.tokens ?? 100,
      forwards: opts.forwards?.(fidelity) ?? 1,
    }),
  );
}
