/**
 * Text generation on a 'last_logits' runner. Each step re-runs the whole (cropped) sequence: simple and exact,
 * fast enough for small models and for checking what a pruned model says. A KV-cache graph comes with export.
 * It is the decoder kind's decode loop (arch/decoder.ts); it reads a runner only through DecodeRunner, so arch/
 * needs nothing from engine/.
 */
import { GenepruneError } from '../errors.js';
import type { Rng } from '../util/rng.js';
import type { CandidateMasks, DecodeRunner } from './decoding.js';

export interface GenerateOptions {
  /** New tokens to produce at most. */
  maxNewTokens: number;
  /** 0 = greedy (argmax). */
  temperature?: number;
  rng?: Rng;
  masks?: CandidateMasks;
  /** Stop when this token is produced (llama2.c stops at BOS, which starts a new story). */
  stopTokens?: number[];
  onToken?: (id: number) => void;
}

export function argmax(v: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < v.length; i++) if (v[i] > v[best]) best = i;
  return best;
}

/** Samples from softmax(logits / temperature) with one uniform draw. */
export function sampleWithTemperature(logits: ArrayLike<number>, temperature: number, rng: Rng): number {
  let max = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < logits.length; i++) if (logits[i] > max) max = logits[i];
  const p = new Float64Array(logits.length);
  let z = 0;
  for (let i = 0; i < logits.length; i++) {
    p[i] = Math.exp((logits[i] - max) / temperature);
    z += p[i];
  }
  const r = rng.nextFloat() * z;
  let acc = 0;
  for (let i = 0; i < p.length; i++) {
    acc += p[i];
    if (r < acc) return i;
  }
  return p.length - 1;
}

/** Returns the prompt tokens followed by the generated ones. */
export async function generate(
  runner: DecodeRunner,
  prompt: number[],
  opts: GenerateOptions,
): Promise<number[]> {
  if (runner.output !== 'last_logits') throw new Error('generate needs a last_logits runner');
  if (prompt.length === 0) throw new Error('generate needs at least one prompt token (BOS)');
  const temperature = opts.temperature ?? 0;
  if (temperature > 0 && !opts.rng) throw new Error('sampling needs a seeded rng');
  const maxPos = runner.spec.config.maxPositions;
  const tokens = [...prompt];
  for (let step = 0; step < opts.maxNewTokens; step++) {
    const window = tokens.slice(Math.max(0, tokens.length - maxPos));
    const ids = BigInt64Array.from(window.map((t) => BigInt(t)));
    const logits = await runner.run({ batch: 1, seq: window.length, ids }, opts.masks);
    // argmax over NaNs picks token 0 (<unk>) every step: a wrong answer, not output.
    for (let i = 0; i < logits.length; i++) {
      if (logits[i] - logits[i] !== 0) {
        throw new GenepruneError(
          'model',
          `the model produced a non-finite logit (${logits[i]} for token ${i}) at generation step ${step + 1}: ` +
            'the weights or the computation overflow',
          runner.spec.source,
        );
      }
    }
    const next = temperature > 0 ? sampleWithTemperature(logits, temperature, opts.rng!) : argmax(logits);
    if (opts.stopTokens?.includes(next)) break;
    tokens.push(next);
    opts.onToken?.(next);
  }
  return tokens;
}
