/** The head search's objective: the generic calibration objective over the head space of a model. */
import type { Genome } from '../../masks/heads.js';
import { parameterCount } from '../../model/cost.js';
import type { ModelSpec } from '../../model/spec.js';
import { createObjective, type Objective, type ObjectiveOptions } from '../../search/objective.js';
import { createHeadSpace, type HeadSpace } from './space.js';

export type HeadObjective = Objective<Genome, HeadSpace>;

export function createHeadObjective(spec: ModelSpec, opts: ObjectiveOptions): Promise<HeadObjective> {
  return createObjective(spec, createHeadSpace(spec.config, parameterCount(spec)), opts);
}
