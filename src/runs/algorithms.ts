/**
 * Algorithms wrapped in a run directory, for any search space: every evaluation goes to evals.jsonl, every
 * generation to generations.jsonl, and the algorithm's state to state.json (atomically) after each generation,
 * so `--resume` continues exactly where the run stopped. Genomes are written in the space's own text.
 */

import { decodeOrThrow, type GaOptions, type GaState, type GenerationSummary, runGa } from '../search/ga.js';
import { fastNonDominatedSort, type NsgaOperators, type NsgaState, runNsga } from '../search/nsga.js';
import { type Objective, qualityFromLog } from '../search/objective.js';
import { faultPoint, writeJsonAtomic } from '../util/fs.js';
import { createRng } from '../util/rng.js';
import { appendJsonl, saveState } from './rundir.js';

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
      await appendJsonl(dir, 'evals.jsonl', r);
      faultPoint('heads:after-evaluation');
    },
    onGeneration: async (summary, next) => {
      await appendJsonl(dir, 'generations.jsonl', summary);
      await saveState(dir, next);
      onGeneration?.(summary);
    },
  });
}

export interface NsgaRunSettings<G> {
  population: number;
  generations: number;
  seed: number;
  operators: NsgaOperators<G>;
  /** Units to remove in the mask picked from the front (its sparsity × genes, rounded). */
  targetRemoved: number;
}

/** A point of the archive's front as front.json holds it. */
export interface FrontPoint {
  genome: string;
  quality: number;
  sparsity: number;
  keptParameters: number;
}

export interface NsgaRunResult<G> {
  pick: G;
  front: FrontPoint[];
  archived: number;
  pickedAtTarget: boolean;
}

/**
 * NSGA-II in a run directory. Every distinct mask it scores goes into an archive (and into evals.jsonl): the
 * reported front is the non-dominated set of all of them, not only the last population, and the pick at the
 * target size is the best archived mask there. The NSGA-II state is saved after every generation; a resumed
 * run primes the archive and the cache from evals.jsonl and continues from that state.
 */
export async function runNsgaInDir<G>(
  dir: string,
  base: Objective<G>,
  s: NsgaRunSettings<G>,
  onStatus?: (line: string) => void,
  resume?: { state: NsgaState; logged: Array<Record<string, unknown>> },
): Promise<NsgaRunResult<G>> {
  const space = base.space;
  const genes = space.genes;
  const archive = new Map<string, number>();
  // The generation whose offspring are being scored (0: the initial population), logged with each new mask so
  // a report can colour the archive by generation.
  let generation = resume ? resume.state.generation + 1 : 0;
  for (const r of resume?.logged ?? []) {
    const key = String(r.genome);
    const genome = space.decode(key);
    if (genome === undefined) continue;
    const e = { quality: qualityFromLog(r), tokens: Number(r.tokens), ms: Number(r.ms) };
    archive.set(key, e.quality);
    base.prime(genome, r.fidelity === 'low' ? 'low' : 'full', e);
  }
  const objective: Objective<G> = {
    ...base,
    evaluate: async (g, fidelity = 'full') => {
      const e = await base.evaluate(g, fidelity);
      const key = space.encode(g);
      if (!archive.has(key)) {
        archive.set(key, e.quality);
        await appendJsonl(dir, 'evals.jsonl', {
          generation,
          genome: key,
          quality: e.quality,
          tokens: e.tokens,
          fidelity,
          ms: Math.round(e.ms),
          ...(Number.isFinite(e.quality) ? {} : { nonFinite: true }),
        });
      }
      return e;
    },
  };
  await runNsga(objective, {
    population: s.population,
    generations: s.generations,
    operators: s.operators,
    rng: createRng(s.seed),
    state: resume?.state,
    onGeneration: async (info) => {
      generation = info.generation + 1;
      await appendJsonl(dir, 'generations.jsonl', {
        generation: info.generation,
        front: info.front.map((f) => ({
          genome: space.encode(f.genome),
          quality: f.quality,
          sparsity: f.sparsity,
        })),
      });
      await saveState(dir, { version: 1, method: 'nsga', nsga: info.state });
      onStatus?.(`generation ${info.generation}/${s.generations}: front of ${info.front.length}`);
    },
  });
  const points = [...archive].map(([key, quality]) => {
    const genome = decodeOrThrow(space, key);
    return {
      genome: key,
      quality,
      sparsity: space.sparsity(genome),
      keptParameters: space.keptParameters(genome),
    };
  });
  const [first] = fastNonDominatedSort(points.map((q) => [q.quality, q.keptParameters]));
  const front = first.map((i) => points[i]).sort((x, y) => x.keptParameters - y.keptParameters);
  const target = s.targetRemoved;
  const atTarget = points.filter((q) => Math.round(q.sparsity * genes) === target);
  const pool = atTarget.length > 0 ? atTarget : front;
  const distance = (q: { sparsity: number }) => Math.abs(Math.round(q.sparsity * genes) - target);
  const byQuality = (x: { quality: number }, y: { quality: number }) =>
    x.quality < y.quality ? -1 : x.quality > y.quality ? 1 : 0;
  const pick = [...pool].sort((x, y) => distance(x) - distance(y) || byQuality(x, y))[0];
  await writeJsonAtomic(`${dir}/front.json`, front);
  return {
    pick: decodeOrThrow(space, pick.genome),
    front,
    archived: points.length,
    pickedAtTarget: atTarget.length > 0,
  };
}
