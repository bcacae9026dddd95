/**
 * The one table of architecture kinds: `archOf` looks a model's kind up (an absent `arch` is a decoder) and is
 * the only place that tells kinds apart. `registerArch` adds a kind — the encoder-decoder next, or a test's toy
 * kind — without touching anything else.
 */
import { GenepruneError } from '../errors.js';
import type { EncodedModel } from '../graph/builder.js';
import type { Weights } from '../graph/weights.js';
import type { ModelConfig, ModelSpec } from '../model/spec.js';
import { DECODER } from './decoder.js';
import type { ArchDescriptor, DecodeLoop, GraphOptions } from './descriptor.js';
import { ENCDEC } from './encdec.js';
import { ENCODER } from './encoder.js';

const ARCHS = new Map<string, ArchDescriptor>([
  [DECODER.kind, DECODER],
  [ENCODER.kind, ENCODER],
  [ENCDEC.kind, ENCDEC],
]);

/** Adds an architecture kind; a kind already in the table is refused (built-ins cannot be replaced). */
export function registerArch(descriptor: ArchDescriptor): void {
  if (ARCHS.has(descriptor.kind)) {
    throw new GenepruneError('internal', `architecture kind '${descriptor.kind}' is already registered`);
  }
  ARCHS.set(descriptor.kind, descriptor);
}

/** Removes a kind registerArch added (tests clean up after themselves); built-ins stay. */
export function unregisterArch(kind: string): void {
  if (kind === DECODER.kind || kind === ENCODER.kind || kind === ENCDEC.kind) {
    throw new GenepruneError('internal', `architecture kind '${kind}' is built in`);
  }
  ARCHS.delete(kind);
}

/** The descriptor of a model's architecture kind. */
export function archOf(config: Pick<ModelConfig, 'arch'>): ArchDescriptor {
  const kind = config.arch ?? DECODER.kind;
  const descriptor = ARCHS.get(kind);
  if (!descriptor) {
    throw new GenepruneError(
      'model',
      `architecture kind '${kind}' is not one this build knows (${[...ARCHS.keys()].join(', ')})`,
    );
  }
  return descriptor;
}

/** The evaluation graph of a spec, by its kind's builder. */
export function buildGraph(spec: ModelSpec, weights: Weights, opts: GraphOptions): EncodedModel {
  return archOf(spec.config).buildGraph(spec, weights, opts);
}

/** The decode loop of a model's kind; a kind nothing generates from is refused in one line. */
export function decodeLoopOf(config: Pick<ModelConfig, 'arch' | 'modelType'>): DecodeLoop {
  const arch = archOf(config);
  if (!arch.decode) {
    throw new GenepruneError(
      'model',
      `nothing generates from a ${config.modelType} ${arch.kind}: it has no decode loop`,
    );
  }
  return arch.decode;
}

/**
 * The shape of a model's head_mask input, [rows, maxHeads]: the rows its head stacks declare (decoders and
 * encoders: one per layer; encoder-decoders: every block's self-attention, then each decoder block's
 * cross-attention) by the most heads of any of their layers.
 */
export function headMaskShape(config: ModelConfig): [number, number] {
  const stacks = archOf(config).headStacks(config);
  const rows = Math.max(...stacks.map((s) => s.firstMaskRow + s.headsPerLayer.length));
  const maxHeads = Math.max(...stacks.flatMap((s) => s.headsPerLayer));
  return [rows, maxHeads];
}
