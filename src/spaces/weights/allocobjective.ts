/**
 * The scoring side of `--method alloc` (alloc.ts holds the definitions and the search): its objective — the whole
 * model's calibration perplexity under an allocation's masks, one session, fidelity = a stage's index into the
 * token budgets — and a generation's staged (successive-halving) scoring of the (1 + λ) loop's children, one
 * `evaluateMany` per stage.
 */
import type { ModelRunner, TokenBatch } from '../../engine/runner.js';
import type { PrunableMatrix } from '../../masks/weights.js';
import type { Evaluation } from '../../search/objective.js';
import { maskedPerplexity } from './quality.js';

/** An allocation as the (1 + λ) loop holds it: its score at the last stage it reached, and whether it won. */
export interface AllocIndividual {
  genome: number[];
  perplexity: number;
  /** The generation's winner (or the parent): scored on all the tokens, the one compared with the parent. */
  winner: boolean;
}

/**
 * One generation's staged scoring: every child on the first stage’s tokens, the best `keeps[stage]` of each (ties:
 * the earlier child) on the next, the last stage (all tokens) keeping one, the winner; one `evaluateMany` per
 * stage. Each child comes back with its score at the last stage it reached.
 */
export async function scoreStaged(
  objective: AllocObjective,
  children: readonly number[][],
  keeps: readonly number[],
  stages: number,
): Promise<AllocIndividual[]> {
  const out = children.map((genome) => ({ genome, perplexity: Number.NaN, winner: false }));
  let alive = children.map((_, k) => k);
  let scores = new Map<number, number>();
  for (let stage = 0; stage < stages; stage++) {
    const scored = await objective.evaluateMany(
      alive.map((k) => children[k]),
      stage,
    );
    scores = new Map(alive.map((k, i) => [k, scored[i].evaluation.quality]));
    for (const [k, q] of scores) out[k].perplexity = q;
    const keep = stage < keeps.length ? keeps[stage] : 1;
    alive = [...alive].sort((a, b) => scores.get(a)! - scores.get(b)! || a - b).slice(0, keep);
  }
  out[alive[0]].winner = true;
  return out;
}

/** One allocation's score in `evaluateMany`, as the search objective gives it (alloc has no cache). */
interface AllocScore {
  evaluation: Evaluation;
  forwardPasses: number;
  cached: boolean;
}

/**
 * Alloc's objective: the whole model's calibration perplexity under an allocation's masks (`masksOf`), with
 * fidelity = the stage's index into `stageBatches` (its first tokens; the last stage is all of them). One
 * session for the whole search; every allocation given is scored, one after another in index order.
 */
export function createAllocObjective(
  runner: ModelRunner,
  matrices: readonly PrunableMatrix[],
  stageBatches: readonly (readonly TokenBatch[])[],
  masksOf: (counts: readonly number[]) => Uint8Array[],
) {
  let evaluations = 0;
  let passes = 0;
  return {
    async evaluateMany(genomes: readonly (readonly number[])[], stage: number): Promise<AllocScore[]> {
      const out: AllocScore[] = [];
      for (const c of genomes) {
        const masks = masksOf(c);
        const t0 = performance.now();
        const r = await maskedPerplexity(
          runner,
          stageBatches[stage],
          new Map(matrices.map((m, i) => [m.role, masks[i]])),
        );
        evaluations++;
        passes += r.passes;
        out.push({
          evaluation: { quality: r.perplexity, tokens: r.tokens, ms: performance.now() - t0 },
          forwardPasses: r.passes,
          cached: false,
        });
      }
      return out;
    },
    evaluations: () => evaluations,
    forwardPasses: () => passes,
  };
}

export type AllocObjective = ReturnType<typeof createAllocObjective>;
