/**
 * A search space — the *problem* side of a search, in pymoo's terms: what a genome is, how it is written down,
 * what it costs and what it feeds the engine. Algorithms (`ga.ts`, `nsga.ts`), objectives (`objective.ts`) and
 * runs (`src/runs/`) see genomes only through this. Two spaces implement it: head masks (spaces/heads/space.ts),
 * which the GA, NSGA-II and the head baselines search, and weight masks (spaces/weights/space.ts), which
 * objectives score; the weight searches (spaces/weights/) still run their own loops over a block's masks or
 * per-matrix levels rather than an algorithm here.
 * A space of pruning masks: 1 keeps a unit (head, weight), 0 prunes it; `full()` keeps everything.
 */
import type { CandidateMasks } from '../engine/runner.js';

/** How genomes are written into logs and state files, read back on resume, and keyed in caches. */
export interface GenomeCodec<G> {
  /** Text for logs, state files and results; decode(encode(g)) equals g. */
  encode(g: G): string;
  /** The genome a text encodes, or undefined when the text is not a genome of this space. */
  decode(text: string): G | undefined;
  /** An exact cache key: equal keys mean equal genomes (a text, or a fixed-size hash for huge genomes). */
  key(g: G): string;
}

export interface SearchSpace<G> extends GenomeCodec<G> {
  /** What the genes are, for messages ('heads'). */
  readonly unit: string;
  readonly genes: number;
  /** Parameters of the unpruned model. */
  readonly totalParameters: number;
  /** The genome that keeps everything: the unpruned model. */
  full(): G;
  isFull(g: G): boolean;
  /** Share of units pruned, in [0, 1]. */
  sparsity(g: G): number;
  /** The cost side: parameters the pruned model keeps. */
  keptParameters(g: G): number;
  /** The engine feeds that make the runner compute the pruned model. */
  masks(g: G): CandidateMasks;
  /** Linear weight roles whose masks `masks` feeds: the runner is built with a mask input for each. */
  readonly weightRoles?: readonly string[];
  /** The runner is built with the structured mask inputs channel_mask and block_mask (spaces/structured/). */
  readonly structuredMasks?: boolean;
}
