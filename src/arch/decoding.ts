/**
 * What the architecture descriptors and their decode loops see of a runner: the masks a candidate brings and the
 * one call a decode loop makes. engine/runner.ts's ModelRunner satisfies DecodeRunner and takes CandidateMasks,
 * so arch/ stays below engine/ (which looks the descriptors up) without importing it.
 */
import type { ModelSpec } from '../model/spec.js';

/** Masks for one candidate, as a runner takes them. Missing masks mean "keep everything". */
export interface CandidateMasks {
  /** [layers * maxHeads], 1 keep / 0 drop, layer-major. */
  headMask?: Float32Array;
  /** role → [out*in] booleans (1 keep). */
  weightMasks?: Map<string, Uint8Array>;
}

/**
 * What a decode loop needs of a runner (engine/runner.ts's ModelRunner is one): descriptors stay below the
 * engine, which looks them up.
 */
export interface DecodeRunner {
  readonly spec: ModelSpec;
  readonly output: string;
  run(
    batch: { batch: number; seq: number; ids: BigInt64Array; lastIndex?: BigInt64Array },
    masks?: CandidateMasks,
  ): Promise<Float32Array>;
}
