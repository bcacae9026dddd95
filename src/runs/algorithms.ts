/**
 * Algorithms wrapped in a run directory, for any search space: every evaluation goes to evals.jsonl, every
 * generation to generations.jsonl, and the algorithm's state to state.json (atomically) after each generation,
 * so `--resume` continues exactly where the run stopped. Genomes are written in the space's own text.
 */

import { decodeOrThrow, type GaOptions, type GaState, type GenerationSummary, runGa } from '../search/ga.js';
import { type NsgaOperators, type NsgaState, runNsga } from '../search/nsga.js';
import { type Objective, qualityFromLog } from '../search/objective.js';
import { faultPoint, writeJsonAtomic } from '../util/fs.js';
import { createRng } from '../util/rng.js';
import { appendJsonl, RUN_FILES } from './files.js';
import { type FrontPick, type FrontPoint, frontOfArchive, pickFromFront } from './front.js';
import { saveState } from './rundir.js';

/** Runs (or continues) the GA from `state`, logging into `dir`. */
export async function runGaInDir<G>(
  dir: string,
  objective: Objective<G>,
  opts: GaOptions<G>,
  state: GaState,
  onGeneration?: (s: GenerationSummary) => void,
): Promise<GaState> {
  return runGa(objective, opts, state, {
    onEvaluation: async (r) => {
      await appendJsonl(dir, RUN_FILES.evals, r);
      faultPoint('heads:after-evaluation');
    },
    onGeneration: async (summary, next) => {
      await appendJsonl(dir, RUN_FILES.generations, summary);
      await saveState(dir, next);
      onGeneration?.(summary);
    },
  });
}

export interface NsgaRunSettings<G> {
  population: number;
  /**
   * Generations in all, the initial population being generation 0, as for the GA: `--generations 3` scores
   * generations 0, 1 and 2 and logs three lines.
   */
  generations: number;
  seed: number;
  operators: NsgaOperators<G>;
  /** Units to remove in the mask picked from the front (its sparsity × genes, rounded). */
  targetRemoved: number;
}

/** What the run knows after each generation: the pick so far is the one it would make if it stopped now. */
export interface NsgaRunProgress {
  generation: number;
  generations: number;
  pick: FrontPick<FrontPoint>;
  frontSize: number;
  archived: number;
  evaluations: number;
}

export type { FrontPoint } from './front.js';

export interface NsgaRunResult<G> {
  pick: G;
  front: FrontPoint[];
  archived: number;
  pickedAtTarget: boolean;
  /** Units the pick removes and the target's. */
  pickedRemoved: number;
  targetRemoved: number;
}

/**
 * NSGA-II in a run directory. Every distinct mask it scores goes into an archive (and into evals.jsonl): the
 * reported front is the non-dominated set of all of them (front.json), not only the last population, and the
 * pick is `pickFromFront` on that front (runs/front.ts). Each generation's line in generations.jsonl holds the
 * archive's front so far and its pick as the generation's best, so the last line's pick is the run's mask. The
 * NSGA-II state is saved after every generation; a resumed run primes the archive and the cache from
 * evals.jsonl and continues from that state.
 */
export async function runNsgaInDir<G>(
  dir: string,
  base: Objective<G>,
  s: NsgaRunSettings<G>,
  onProgress?: (p: NsgaRunProgress) => void,
  resume?: { state: NsgaState; logged: Array<Record<string, unknown>> },
): Promise<NsgaRunResult<G>> {
  const space = base.space;
  const genes = space.genes;
  const archive = new Map<string, FrontPoint>();
  const remember = (key: string, genome: G, quality: number) =>
    archive.set(key, {
      genome: key,
      quality,
      sparsity: space.sparsity(genome),
      keptParameters: space.keptParameters(genome),
    });
  // The generation whose offspring are being scored (0: the initial population), logged with each new mask so
  // a report can colour the archive by generation.
  let generation = resume ? resume.state.generation + 1 : 0;
  for (const r of resume?.logged ?? []) {
    const key = String(r.genome);
    const genome = space.decode(key);
    if (genome === undefined) continue;
    const e = { quality: qualityFromLog(r), tokens: Number(r.tokens), ms: Number(r.ms) };
    remember(key, genome, e.quality);
    base.prime(genome, r.fidelity === 'low' ? 'low' : 'full', e);
  }
  // Every new mask is logged once, in index order after its batch, as a one-by-one loop logged them.
  const evaluateMany: Objective<G>['evaluateMany'] = async (genomes, fidelity = 'full', onResult) => {
    const results = await base.evaluateMany(genomes, fidelity, onResult);
    for (const [i, g] of genomes.entries()) {
      const e = results[i].evaluation;
      const key = space.encode(g);
      if (archive.has(key)) continue;
      remember(key, g, e.quality);
      await appendJsonl(dir, RUN_FILES.evals, {
        generation,
        genome: key,
        quality: e.quality,
        tokens: e.tokens,
        fidelity,
        ms: Math.round(e.ms),
        ...(Number.isFinite(e.quality) ? {} : { nonFinite: true }),
      });
    }
    return results;
  };
  const objective: Objective<G> = {
    ...base,
    evaluateMany,
    evaluate: async (g, fidelity = 'full') => (await evaluateMany([g], fidelity))[0].evaluation,
  };
  const frontAndPick = () => {
    const front = frontOfArchive([...archive.values()]);
    return { front, pick: pickFromFront(front, genes, s.targetRemoved)! };
  };
  await runNsga(objective, {
    population: s.population,
    // runNsga counts generations after the initial one.
    generations: Math.max(s.generations - 1, 0),
    operators: s.operators,
    rng: createRng(s.seed),
    state: resume?.state,
    onGeneration: async (info) => {
      generation = info.generation + 1;
      const { front, pick } = frontAndPick();
      const best = pick.point;
      await appendJsonl(dir, RUN_FILES.generations, {
        generation: info.generation,
        bestQuality: best.quality,
        bestSparsity: best.sparsity,
        best: { genome: best.genome, quality: best.quality, sparsity: best.sparsity },
        pickedAtTarget: pick.atTarget,
        // Distinct masks scored so far (the objective's own counters restart in a resumed process).
        archived: archive.size,
        front,
      });
      await saveState(dir, { version: 1, method: 'nsga', nsga: info.state });
      onProgress?.({
        generation: info.generation,
        generations: s.generations,
        pick,
        frontSize: front.length,
        archived: archive.size,
        evaluations: info.evaluations,
      });
    },
  });
  const { front, pick } = frontAndPick();
  await writeJsonAtomic(`${dir}/${RUN_FILES.front}`, front);
  return {
    pick: decodeOrThrow(space, pick.point.genome),
    front,
    archived: archive.size,
    pickedAtTarget: pick.atTarget,
    pickedRemoved: pick.removed,
    targetRemoved: pick.targetRemoved,
  };
}
