/**
 * `--layers PATTERN`: which prunable matrices (masks/weights.ts) a weight run may prune. A pattern is a
 * comma-separated list of entries `STACK.N` or `STACK.*`, each optionally followed by `.MODULE`:
 *   - STACK names a stack of blocks as the model's kind numbers them (arch descriptor `blockStacks`): `layers` for
 *     decoders and encoders, `encoder` and `decoder` for encoder-decoders; N counts blocks inside that stack from 0
 *     (`decoder.0` is the first decoder block, whatever the number of encoder blocks);
 *   - MODULE is `attn` (self-attention q/k/v/o), `cross` (an encoder-decoder's cross-attention q/k/v/o), `mlp`
 *     (gate/up/down, or fc/down), or one matrix (`attn.q`, `cross.o`, `mlp.down`, ...); absent: the whole block.
 * `encoder.0` is the GenePrune code's block (its final commit prunes `encoder.block.0` only).
 *
 * The syntax is checked before the model is open (`parseLayerPattern`); what needs the model — a stack it lacks,
 * a block past a stack's end, an entry that matches no prunable matrix — when it is (`selectLayerMatrices`), each
 * refused in one line naming --layers.
 */
import { archOf } from '../arch/registry.js';
import { flagError } from '../errors.js';
import type { ModelConfig } from '../model/spec.js';
import { PRUNABLE_KINDS, type PrunableMatrix } from './weights.js';

/** One entry of a pattern: a stack, a block of it (undefined: every block) and a module (undefined: all). */
export interface LayerEntry {
  text: string;
  stack: string;
  block?: number;
  module?: string;
}

/** The modules an entry may name: the groups of PRUNABLE_KINDS (attn, cross, mlp) and each kind itself. */
export const LAYER_MODULES: readonly string[] = [
  ...new Set(PRUNABLE_KINDS.map((k) => k.split('.')[0])),
  ...PRUNABLE_KINDS,
];

/** A stack of consecutive blocks: block N of the stack is layer first + N of the model. */
export interface BlockStack {
  name: string;
  first: number;
  count: number;
}

/** The model's block stacks (one `layers` stack unless its kind names its own). */
export function blockStacksOf(config: ModelConfig): BlockStack[] {
  return archOf(config).blockStacks?.(config) ?? [{ name: 'layers', first: 0, count: config.numLayers }];
}

/** Parses a pattern's syntax (no model needed); refuses a malformed entry in one line. */
export function parseLayerPattern(pattern: string): LayerEntry[] {
  const entries = pattern.split(',').map((e) => e.trim());
  if (entries.length === 0 || entries.some((e) => e === '')) {
    throw flagError(
      '--layers',
      `"${pattern}" has an empty entry (expected STACK.N[.MODULE], comma-separated)`,
    );
  }
  return entries.map((text) => {
    const m = /^([A-Za-z_][A-Za-z0-9_]*)\.(\*|\d+)(?:\.(.+))?$/.exec(text);
    if (!m) {
      throw flagError(
        '--layers',
        `"${text}" is not STACK.N, STACK.* or either followed by .MODULE (e.g. encoder.0, decoder.*.mlp, layers.3)`,
      );
    }
    const module = m[3];
    if (module !== undefined && !LAYER_MODULES.includes(module)) {
      throw flagError(
        '--layers',
        `"${text}": unknown module "${module}" (known: ${LAYER_MODULES.join(', ')})`,
      );
    }
    return {
      text,
      stack: m[1],
      ...(m[2] === '*' ? {} : { block: Number(m[2]) }),
      ...(module !== undefined ? { module } : {}),
    };
  });
}

/** Whether a matrix kind (`attn.q`, `mlp.down`, ...) is in a module (`attn`, or the kind itself). */
function inModule(kind: string, module: string | undefined): boolean {
  return module === undefined || kind === module || kind.startsWith(`${module}.`);
}

/**
 * The prunable matrices a pattern selects, in their order. Refuses in one line a stack the model lacks, a block
 * past its stack's end, and an entry matching no prunable matrix.
 */
export function selectLayerMatrices(
  pattern: string,
  config: ModelConfig,
  matrices: readonly PrunableMatrix[],
): PrunableMatrix[] {
  const stacks = blockStacksOf(config);
  const chosen = new Set<string>();
  for (const e of parseLayerPattern(pattern)) {
    const stack = stacks.find((s) => s.name === e.stack);
    if (!stack) {
      throw flagError(
        '--layers',
        `"${e.text}": this model has no stack "${e.stack}" (its stacks: ${stacks.map((s) => s.name).join(', ')})`,
      );
    }
    if (e.block !== undefined && e.block >= stack.count) {
      throw flagError(
        '--layers',
        `"${e.text}": the ${stack.name} stack has ${stack.count} blocks (${stack.name}.0 … ${stack.name}.${stack.count - 1})`,
      );
    }
    let matched = 0;
    for (const m of matrices) {
      const n = m.layer - stack.first;
      if (n < 0 || n >= stack.count || (e.block !== undefined && n !== e.block)) continue;
      const kind = m.role.slice(`layers.${m.layer}.`.length, -'.weight'.length);
      if (!inModule(kind, e.module)) continue;
      chosen.add(m.role);
      matched++;
    }
    if (matched === 0) throw flagError('--layers', `"${e.text}" matches no prunable matrix of this model`);
  }
  return matrices.filter((m) => chosen.has(m.role));
}
