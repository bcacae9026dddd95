/**
 * What a search optimises against: a model, calibration tokens and a quality metric, behind one
 * `evaluate(genome)` call for the genomes of one search space (which turns each into engine feeds). Lower
 * quality values are better (perplexity, or KL divergence from the unpruned model). Every distinct (genome,
 * fidelity) is run once; repeats come from the cache, keyed by the space's genome key.
 */
import { createRunner, type ModelRunner } from '../engine/runner.js';
import type { Device } from '../engine/session.js';
import { GenepruneError } from '../errors.js';
import { prepareWeights, releaseWeights } from '../graph/decoder.js';
import type { ComputeDtype } from '../graph/weights.js';
import {
  batches,
  computeKlReference,
  defaultBatchSize,
  evaluateKl,
  evaluatePerplexity,
  type KlReference,
  makeWindows,
  type Windows,
} from '../metrics/perplexity.js';
import type { ModelSpec } from '../model/spec.js';
import type { SearchSpace } from './space.js';

export type QualityMetric = 'ppl' | 'kl';
/** 'low' scores on the first `lowTokens` calibration tokens, 'full' on all of them. */
export type Fidelity = 'low' | 'full';

export interface Evaluation {
  /**
   * The metric's value (perplexity or mean KL in nats per token); lower is better. +Infinity when the
   * candidate's forward pass produced a non-finite value: the worst possible quality, never NaN.
   */
  quality: number;
  tokens: number;
  /** Wall time of this evaluation in ms (0 when it came from the cache). */
  ms: number;
}

export interface Objective<G, S extends SearchSpace<G> = SearchSpace<G>> {
  readonly space: S;
  readonly metric: QualityMetric;
  evaluate(g: G, fidelity?: Fidelity): Promise<Evaluation>;
  /** Records a result computed earlier (a resumed run's log), so it is not computed again. */
  prime(g: G, fidelity: Fidelity, result: Evaluation): void;
  /** Forward passes (batches through the model) run so far, cache hits excluded. */
  forwardPasses(): number;
  /** Distinct evaluations run so far. */
  evaluations(): number;
  release(): Promise<void>;
}

export interface ObjectiveOptions {
  /** Calibration token stream (BOS-separated documents). */
  stream: number[];
  context: number;
  metric: QualityMetric;
  /** Tokens for 'full' fidelity (default: the whole stream). */
  tokens?: number;
  /** Tokens for 'low' fidelity (default: same as full). */
  lowTokens?: number;
  batchSize?: number;
  device?: Device;
  threads?: number;
  dtype?: ComputeDtype;
}

/**
 * The quality a log line (evals.jsonl) recorded. JSON turned a non-finite quality into null (and the log marks
 * it `nonFinite: true`); it is read back as +Infinity, the value the search saw, not Number(null) = 0.
 */
export function qualityFromLog(r: { quality?: unknown; nonFinite?: unknown }): number {
  if (r.nonFinite === true || r.quality === null || r.quality === undefined) return Number.POSITIVE_INFINITY;
  const q = Number(r.quality);
  return Number.isFinite(q) ? q : Number.POSITIVE_INFINITY;
}

export async function createObjective<G, S extends SearchSpace<G>>(
  spec: ModelSpec,
  space: S,
  opts: ObjectiveOptions,
): Promise<Objective<G, S>> {
  const full = makeWindows(opts.stream, opts.context, opts.tokens, 'calibration data');
  const low = opts.lowTokens
    ? makeWindows(opts.stream, opts.context, opts.lowTokens, 'calibration data')
    : full;
  const batchSize = opts.batchSize ?? defaultBatchSize(opts.context, spec.config.vocabSize, opts.metric);
  // Prepared once for both KL runners; released as soon as the last session has its own copy.
  const weights = await prepareWeights(spec, { dtype: opts.dtype });
  const engineOpts = {
    device: opts.device,
    threads: opts.threads,
    weights,
    dtype: opts.dtype,
    weightMasks: space.weightRoles ? [...space.weightRoles] : undefined,
  };
  let runner: ModelRunner;
  const references = new Map<Windows, KlReference>();
  try {
    if (opts.metric === 'kl') {
      const dense = await createRunner(spec, { ...engineOpts, output: 'logprobs' });
      references.set(full, await computeKlReference(dense, full, batchSize));
      if (low !== full) references.set(low, await computeKlReference(dense, low, batchSize));
      await dense.release();
      runner = await createRunner(spec, { ...engineOpts, output: 'kl' });
    } else {
      runner = await createRunner(spec, { ...engineOpts, output: 'nll' });
    }
  } finally {
    await releaseWeights(weights);
  }
  const batchCount = (w: Windows) => [...batches(w, batchSize)].length;
  const passes = { low: batchCount(low), full: batchCount(full) };
  const cache = new Map<string, Evaluation>();
  let forward = 0;
  let distinct = 0;
  let released = false;

  return {
    space,
    metric: opts.metric,
    async evaluate(g, fidelity = 'full') {
      const key = `${fidelity}:${space.key(g)}`;
      const hit = cache.get(key);
      if (hit) return { ...hit, ms: 0 };
      const windows = fidelity === 'low' ? low : full;
      const masks = space.masks(g);
      const t0 = performance.now();
      let quality: number;
      let tokens: number;
      if (opts.metric === 'kl') {
        const r = await evaluateKl(runner, windows, references.get(windows)!, {
          masks,
          nonFinite: 'infinite',
        });
        quality = r.meanKl;
        tokens = r.tokens;
      } else {
        const r = await evaluatePerplexity(runner, windows, { masks, batchSize, nonFinite: 'infinite' });
        quality = r.perplexity;
        tokens = r.tokens;
      }
      if (!Number.isFinite(quality)) {
        // A search on a model that is broken unpruned would only rank garbage.
        if (space.isFull(g)) {
          throw new GenepruneError(
            'model',
            `the unpruned model scores a non-finite ${opts.metric === 'kl' ? 'KL' : 'perplexity'} on the ` +
              `calibration data (${fidelity} fidelity, ${tokens} tokens): nothing to search`,
            windows.source ?? 'calibration data',
          );
        }
        quality = Number.POSITIVE_INFINITY;
      }
      const result = { quality, tokens, ms: performance.now() - t0 };
      forward += passes[fidelity];
      distinct++;
      cache.set(key, result);
      return result;
    },
    prime(g, fidelity, result) {
      cache.set(`${fidelity}:${space.key(g)}`, result);
    },
    forwardPasses: () => forward,
    evaluations: () => distinct,
    // Idempotent: a run frees the model's session before scoring on evaluation data, then again on exit.
    release: async () => {
      if (released) return;
      released = true;
      await runner.release();
    },
  };
}
