/**
 * Speed of two models measured side by side in one process: runs are interleaved (A, B, A, B, ...) after
 * warm-up so both see the same machine state, and the median is reported. Prefill is a perplexity forward
 * (NLL in-graph); generation decodes one token at a time through the KV-cache graph. The FLOP ratio says what
 * speedup the removed work predicts.
 */

import { argmax } from '../arch/generate.js';
import { archOf } from '../arch/registry.js';
import { emptyPastFeeds, pastFromPresent } from '../engine/kvcache.js';
import { createRunner, type ModelRunner } from '../engine/runner.js';
import { createEngine, type Device, type Engine } from '../engine/session.js';
import { flagError, GenepruneError } from '../errors.js';
import type { ComputeDtype } from '../graph/weights.js';
import { prepareWeights, releaseWeights } from '../graph/weights.js';
import { forwardFlopsPerToken, parameterCount } from '../model/cost.js';
import type { ModelSpec } from '../model/spec.js';
import { createRng } from '../util/rng.js';

export interface BenchOptions {
  batch: number;
  seq: number;
  /** Prompt tokens before generation, and tokens generated per run. */
  prompt: number;
  generate: number;
  runs: number;
  warmup: number;
  /**
   * Times both models are prepared afresh (new sessions) and timed, interleaved; each model's fastest session is
   * reported (default 1). A session can stay 1.5–2× slow for its whole life (seen with two intra-op threads on a
   * 2-core machine: the same model at 44k and 77k prefill tokens/s in two sessions), so one session per model
   * can report a speedup that is not there.
   */
  sessions?: number;
  device?: Device;
  threads?: number;
  /** Compute precision of both models' sessions (default fp32). */
  dtype?: ComputeDtype;
  seed: number;
}

export interface ModelSpeed {
  parameters: number;
  /** Forward FLOPs per token at the prefill length (linears + attention products). */
  flopsPerToken: number;
  prefillTokensPerSecond: number;
  generateTokensPerSecond: number;
  prefillMs: number[];
  generateMs: number[];
}

interface Prepared {
  spec: ModelSpec;
  prefill: ModelRunner;
  cached: Engine;
}

async function prepare(spec: ModelSpec, opts: BenchOptions): Promise<Prepared> {
  const dtype = opts.dtype ?? 'fp32';
  const weights = await prepareWeights(spec, { dtype });
  try {
    const prefill = await createRunner(spec, {
      output: 'nll',
      weights,
      device: opts.device,
      threads: opts.threads,
      dtype,
    });
    // The KV-cache graph an export writes, which generation decodes on.
    const graph = archOf(spec.config).export.deployGraph(spec, weights, {
      halfLinears: (opts.device ?? 'cpu') === 'cpu' ? 'upcast' : 'native',
    });
    const cached = await createEngine(graph, { device: opts.device, threads: opts.threads, dtype });
    return { spec, prefill, cached };
  } finally {
    await releaseWeights(weights);
  }
}

const int64 = (xs: ArrayLike<number>) => BigInt64Array.from(Array.from(xs, (x) => BigInt(x)));

async function timePrefill(p: Prepared, ids: BigInt64Array, targets: BigInt64Array, opts: BenchOptions) {
  const t0 = performance.now();
  await p.prefill.run({ batch: opts.batch, seq: opts.seq, ids, targets });
  return performance.now() - t0;
}

/** Prompt through the cache graph, then `generate` greedy tokens one by one; returns ms for the generated ones. */
async function timeGenerate(p: Prepared, prompt: number[], opts: BenchOptions): Promise<number> {
  const c = p.spec.config;
  let past = emptyPastFeeds(c, 1);
  let tokens = prompt;
  let pos = 0;
  let t0 = 0;
  for (let step = 0; step <= opts.generate; step++) {
    if (step === 1) t0 = performance.now(); // the prompt's prefill is not generation
    const total = pos + tokens.length;
    const out = await p.cached.run({
      input_ids: { type: 'int64', dims: [1, tokens.length], data: int64(tokens) },
      attention_mask: { type: 'int64', dims: [1, total], data: new BigInt64Array(total).fill(1n) },
      position_ids: { type: 'int64', dims: [1, tokens.length], data: int64(tokens.map((_, j) => pos + j)) },
      ...past,
    });
    const V = c.vocabSize;
    const logits = out.logits.data.subarray((tokens.length - 1) * V, tokens.length * V);
    past = pastFromPresent(c, out);
    pos = total;
    tokens = [argmax(logits)];
  }
  return performance.now() - t0;
}

/** Median of timings (mean of the middle two for an even count). */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** One session's timed runs of one model (ms). */
export interface SessionTimings {
  prefillMs: number[];
  generateMs: number[];
}

/**
 * The fastest of a model's sessions: the lowest median prefill time, ties broken by the lower median generation
 * time, then by the earlier session.
 */
export function fastestSession(sessions: readonly SessionTimings[]): SessionTimings {
  if (sessions.length === 0) throw new Error('fastestSession: no sessions');
  let best = sessions[0];
  for (const t of sessions.slice(1)) {
    const p = median(t.prefillMs) - median(best.prefillMs);
    if (p < 0 || (p === 0 && median(t.generateMs) < median(best.generateMs))) best = t;
  }
  return best;
}

export async function benchModels(
  a: ModelSpec,
  b: ModelSpec,
  opts: BenchOptions,
  onProgress?: (line: string) => void,
): Promise<[ModelSpeed, ModelSpeed]> {
  if (a.config.vocabSize !== b.config.vocabSize) {
    throw new GenepruneError(
      'model',
      `the two models have different vocabularies (${a.config.vocabSize} and ${b.config.vocabSize} tokens)`,
      b.source,
    );
  }
  const maxPos = Math.min(a.config.maxPositions, b.config.maxPositions);
  if (opts.seq > maxPos || opts.prompt + opts.generate > maxPos) {
    throw flagError(
      opts.seq > maxPos ? '--seq' : '--generate',
      `the sequence is longer than the models' context (${maxPos} tokens)`,
    );
  }
  const rng = createRng(opts.seed);
  const V = a.config.vocabSize;
  const ids = int64(Array.from({ length: opts.batch * opts.seq }, () => rng.nextInt(V)));
  const targets = int64(Array.from({ length: opts.batch * opts.seq }, () => rng.nextInt(V)));
  const prompt = Array.from({ length: opts.prompt }, () => rng.nextInt(V));
  const sessions = opts.sessions ?? 1;
  if (!Number.isInteger(sessions) || sessions < 1)
    throw flagError('--sessions', `must be a positive integer, got ${sessions}`);
  // Every session's timings, per model; each model's fastest is reported.
  const timed: SessionTimings[][] = [[], []];
  const rounds = opts.warmup + opts.runs;
  for (let k = 0; k < sessions; k++) {
    const models = [await prepare(a, opts), await prepare(b, opts)];
    const prefillMs: number[][] = [[], []];
    const generateMs: number[][] = [[], []];
    try {
      for (let r = 0; r < rounds; r++) {
        for (const [i, m] of models.entries()) {
          const tp = await timePrefill(m, ids, targets, opts);
          const tg = await timeGenerate(m, prompt, opts);
          if (r >= opts.warmup) {
            prefillMs[i].push(tp);
            generateMs[i].push(tg);
          }
        }
        const of = sessions > 1 ? ` of session ${k + 1}/${sessions}` : '';
        onProgress?.(`run ${r + 1}/${rounds}${of}${r < opts.warmup ? ' (warm-up)' : ''}`);
      }
    } finally {
      for (const m of models) {
        await m.prefill.release();
        await m.cached.release();
      }
    }
    for (let i = 0; i < 2; i++) timed[i].push({ prefillMs: prefillMs[i], generateMs: generateMs[i] });
  }
  const best = timed.map(fastestSession);
  const specs = [a, b];
  const speed = (i: number): ModelSpeed => {
    const t = best[i];
    return {
      parameters: parameterCount(specs[i]),
      flopsPerToken: forwardFlopsPerToken(specs[i], opts.seq),
      prefillTokensPerSecond: (opts.batch * opts.seq) / (median(t.prefillMs) / 1000),
      generateTokensPerSecond: opts.generate / (median(t.generateMs) / 1000),
      prefillMs: t.prefillMs,
      generateMs: t.generateMs,
    };
  };
  return [speed(0), speed(1)];
}
