/**
 * `bench`: prefill and generation speed of model A against model B (a second model, or A with a mask's heads
 * removed in memory), interleaved in one process, next to the FLOP ratio the removed work predicts and the latency
 * model's predicted prefill speedup (latency/: calibrated here on A's shape, or read from a stored profile).
 */
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { resolveModelRef } from '../checkpoint/hub.js';
import { checkMemoryBudget, peakRssBytes } from '../engine/memory.js';
import type { Device } from '../engine/session.js';
import { flagError, GenepruneError } from '../errors.js';
import type { ComputeDtype } from '../graph/weights.js';
import { calibrateLatency } from '../latency/calibrate.js';
import {
  type LatencyProfile,
  layerShapesOfConfig,
  predictSeconds,
  readLatencyProfile,
  writeLatencyProfile,
} from '../latency/profile.js';
import { readMaskFile } from '../masks/headfile.js';
import { loadModelSpec } from '../model/load.js';
import type { ModelSpec } from '../model/spec.js';
import { benchModels, type ModelSpeed } from '../prune/bench.js';
import { pruneHeads } from '../prune/heads.js';
import type { RuntimeOptions } from './common.js';

export interface BenchOptions extends RuntimeOptions {
  /** Model A, and optionally model B (default A: stories260K). */
  models?: string[];
  /** B = A with the heads this mask file removes physically removed (instead of a second model). */
  mask?: string;
  /** Prefill batch size (default 4) and sequence length (default 256). */
  batch?: number;
  seq?: number;
  /** Prompt tokens before generation (default 16) and tokens generated per run (default 32). */
  prompt?: number;
  generate?: number;
  /** Timed runs per model, median reported (default 5), after untimed warm-up runs (default 1). */
  runs?: number;
  warmup?: number;
  /** Fresh session pairs timed; each model's fastest kept (default 3; see prune/bench.ts BenchOptions.sessions). */
  sessions?: number;
  /**
   * The latency model's prediction: calibrated here on A's shape at the prefill settings (default), read from this
   * stored profile (refused when measured for another shape, device, threads, dtype, batch or seq), or none (false).
   */
  latencyProfile?: string | false;
  /** Writes the profile calibrated here to this file. */
  saveLatencyProfile?: string;
  onStatus?: (line: string) => void;
}

export interface BenchLatencyPrediction {
  /** 'calibrated' (measured by this bench) or the profile file read. */
  profile: string;
  /** Predicted prefill seconds of one forward of batch × seq, A and B, and A's over B's. */
  aSeconds: number;
  bSeconds: number;
  predictedSpeedup: number;
  /** predicted / measured prefill speedup − 1. */
  relativeError: number;
}

export interface BenchModelReport extends ModelSpeed {
  model: string;
  /** Bytes of its weight files (for a mask-pruned B: what its fp32 export would hold). */
  bytes: number;
}

export interface BenchReport {
  a: BenchModelReport;
  b: BenchModelReport;
  settings: Required<
    Pick<BenchOptions, 'batch' | 'seq' | 'prompt' | 'generate' | 'runs' | 'warmup' | 'sessions'>
  > & {
    device: Device;
    dtype: ComputeDtype;
    threads?: number;
    seed: number;
  };
  /** B's speed over A's. */
  prefillSpeedup: number;
  generateSpeedup: number;
  /** A's forward FLOPs per token over B's: the speedup the removed work predicts. */
  flopRatio: number;
  prefillSpeedupOverFlopRatio: number;
  /** The latency model's prefill prediction; absent when turned off or when B is not a structured pruning of A. */
  latency?: BenchLatencyPrediction;
  /** Why there is no prediction, when there is none. */
  latencySkipped?: string;
  /** Peak resident memory of the process by the end of the benchmark. */
  peakRssBytes: number;
}

/** Why the latency model cannot price B against A's profile, or undefined when it can. */
function structuredMismatch(a: ModelSpec, b: ModelSpec): string | undefined {
  const ca = a.config;
  const cb = b.config;
  for (const key of ['family', 'hiddenSize', 'headDim', 'vocabSize', 'tieEmbeddings'] as const) {
    if (ca[key] !== cb[key]) return `B's ${key} (${cb[key]}) differs from A's (${ca[key]})`;
  }
  if (cb.numLayers > ca.numLayers) return `B has more layers (${cb.numLayers}) than A (${ca.numLayers})`;
  const shapes = layerShapesOfConfig(cb, ca.numLayers);
  const dense = layerShapesOfConfig(ca);
  for (let i = 0; i < cb.numLayers; i++) {
    if (shapes.heads[i] > dense.heads[i] || shapes.widths[i] > dense.widths[i])
      return `B's layer ${i} is larger than A's`;
  }
  return undefined;
}

/** Bytes of the weight files a model path holds (a .bin, or a folder's safetensors). */
async function bytesOnDisk(path: string): Promise<number> {
  const info = await stat(path);
  if (!info.isDirectory()) return info.size;
  let total = 0;
  for (const name of await readdir(path)) {
    if (name.endsWith('.safetensors')) total += (await stat(join(path, name))).size;
  }
  return total;
}

/** Speed needs no tokenizer: models are opened without one. */
async function openForSpeed(ref: string | undefined): Promise<{ modelPath: string; spec: ModelSpec }> {
  const { modelPath } = await resolveModelRef(ref);
  return { modelPath, spec: await loadModelSpec(modelPath) };
}

export async function bench(opts: BenchOptions = {}): Promise<BenchReport> {
  const models = opts.models ?? [];
  if (models.length > 2) throw flagError('--model', 'give at most two models');
  if (models.length === 2 && opts.mask)
    throw flagError('--mask', 'give a second --model or a --mask, not both');
  if (models.length < 2 && !opts.mask) throw flagError('--mask', 'needs a second --model or a --mask');
  const settings = {
    batch: opts.batch ?? 4,
    seq: opts.seq ?? 256,
    prompt: opts.prompt ?? 16,
    generate: opts.generate ?? 32,
    runs: opts.runs ?? 5,
    warmup: opts.warmup ?? 1,
    sessions: opts.sessions ?? 3,
    device: opts.device ?? ('cpu' as Device),
    dtype: opts.dtype ?? ('fp32' as ComputeDtype),
    ...(opts.threads === undefined ? {} : { threads: opts.threads }),
    seed: 0,
  };
  const a = await openForSpeed(models[0]);
  let b: ModelSpec;
  let bName: string;
  let bBytes: number | undefined;
  if (opts.mask) {
    b = pruneHeads(a.spec, await readMaskFile(opts.mask, a.spec));
    bName = `${opts.mask} (heads removed in memory)`;
  } else {
    const opened = await openForSpeed(models[1]);
    b = opened.spec;
    bName = opened.modelPath;
    bBytes = await bytesOnDisk(opened.modelPath);
  }
  // Both models hold a prefill and a KV-cache session at once; B is at most A's size when pruned from it.
  checkMemoryBudget(a.spec, {
    batch: settings.batch,
    seq: settings.seq,
    sessions: 4,
    budget: opts.memoryBudget,
    what: 'bench',
    dtype: settings.dtype,
  });
  const aBytes = await bytesOnDisk(a.modelPath);
  const latencySkipped = opts.latencyProfile === false ? 'turned off' : structuredMismatch(a.spec, b);
  if (latencySkipped && opts.saveLatencyProfile) {
    throw new GenepruneError(
      'flag',
      `no latency profile to save: ${latencySkipped}`,
      '--save-latency-profile',
    );
  }
  // A stored profile is read (and refused when it does not fit) before the timing, not after it.
  const stored =
    !latencySkipped && typeof opts.latencyProfile === 'string'
      ? await readLatencyProfile(opts.latencyProfile, {
          config: a.spec.config,
          device: settings.device,
          threads: settings.threads ?? 0,
          dtype: settings.dtype,
          batch: settings.batch,
          seq: settings.seq,
        })
      : undefined;
  const [sa, sb] = await benchModels(a.spec, b, settings, opts.onStatus);
  const prefillSpeedup =
    sa.prefillTokensPerSecond > 0 ? sb.prefillTokensPerSecond / sa.prefillTokensPerSecond : 0;
  const flopRatio = sa.flopsPerToken / sb.flopsPerToken;
  let latency: BenchLatencyPrediction | undefined;
  if (!latencySkipped) {
    let profile: LatencyProfile;
    if (stored) profile = stored;
    else {
      opts.onStatus?.('calibrating the latency model on this device');
      profile = await calibrateLatency(a.spec, {
        batch: settings.batch,
        seq: settings.seq,
        device: settings.device,
        threads: settings.threads,
        dtype: settings.dtype,
        runs: settings.runs,
        warmup: settings.warmup,
      });
      if (opts.saveLatencyProfile) await writeLatencyProfile(opts.saveLatencyProfile, profile);
    }
    const aSeconds = predictSeconds(profile, layerShapesOfConfig(a.spec.config));
    const bSeconds = predictSeconds(profile, layerShapesOfConfig(b.config, a.spec.config.numLayers));
    const predictedSpeedup = aSeconds / bSeconds;
    latency = {
      profile: stored ? (opts.latencyProfile as string) : 'calibrated',
      aSeconds,
      bSeconds,
      predictedSpeedup,
      relativeError: predictedSpeedup / prefillSpeedup - 1,
    };
  }
  return {
    a: { model: a.modelPath, bytes: aBytes, ...sa },
    // A mask-pruned model is not on disk: its exported fp32 safetensors would hold 4 bytes per parameter.
    b: { model: bName, bytes: bBytes ?? sb.parameters * 4, ...sb },
    settings,
    prefillSpeedup,
    generateSpeedup: sb.generateTokensPerSecond / sa.generateTokensPerSecond,
    flopRatio,
    prefillSpeedupOverFlopRatio: prefillSpeedup / flopRatio,
    ...(latency ? { latency } : { latencySkipped }),
    peakRssBytes: peakRssBytes(),
  };
}
