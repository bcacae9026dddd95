/**
 * Binding a Hugging Face folder's tensors to spec roles, the same way for every family: each role's tensor is
 * looked up by name and its stored shape checked; a missing or unexpected tensor, or a wrong shape, fails in one
 * line naming the file. Family files say only which name and shape each role has (and how a stored tensor
 * becomes the role: GPT-2's transposed Conv1D slices).
 */
import { weightDtypeProblem } from '../checkpoint/dtype.js';
import type { HfFolder } from '../checkpoint/hf.js';
import type { FileTensor } from '../checkpoint/safetensors.js';
import { fileError, GenepruneError } from '../errors.js';
import type { ModelSpec, TensorSource } from './spec.js';

export interface TensorBinding {
  role: string;
  /** The tensor's name in the folder. */
  name: string;
  /** Its stored shape. */
  hfShape: readonly number[];
  /** The role's tensor from the stored one; absent: the stored tensor is the role as it is. */
  derive?: (stored: FileTensor) => TensorSource;
}

export interface BindOptions {
  /** Finds a name (default: exactly); returns the name found (an alias) and the tensor. */
  lookup?: (name: string) => [string, FileTensor] | undefined;
  /** Stored tensors that belong to no role and may stay (buffers, a tied head's copy, unused heads). */
  ignorable: (name: string) => boolean;
  /** The model as an unexpected tensor's message names it ("llama model", "BertForSequenceClassification model"). */
  what: string;
  /** The message when lm_head.weight is missing (an untied head the checkpoint lacks). */
  missingHead?: string;
}

export const shapeText = (s: readonly number[]): string => `[${s.join(',')}]`;
export const sameShape = (a: readonly number[], b: readonly number[]): boolean =>
  a.length === b.length && a.every((d, i) => d === b[i]);

/**
 * The writers' side (spec → Hugging Face): the spec's tensor for `role`, which must have the shape its config
 * implies; a missing or misshapen tensor fails in one line naming the model.
 */
export function specTensor(spec: ModelSpec, role: string, shape: readonly number[]): TensorSource {
  const t = spec.tensors.get(role);
  if (!t) throw new GenepruneError('model', `tensor ${role} is missing from the model`, spec.source);
  if (!sameShape(t.shape, shape)) {
    throw new GenepruneError(
      'model',
      `tensor ${role} has shape ${shapeText(t.shape)}, the config implies ${shapeText(shape)}`,
      spec.source,
    );
  }
  return t;
}

export function bindHfTensors(
  folder: HfFolder,
  bindings: readonly TensorBinding[],
  opts: BindOptions,
): Map<string, TensorSource> {
  const lookup =
    opts.lookup ??
    ((name: string): [string, FileTensor] | undefined => {
      const t = folder.tensors.get(name);
      return t ? [name, t] : undefined;
    });
  const tensors = new Map<string, TensorSource>();
  const used = new Set<string>();
  // A set, not a list searched per tensor: a config claiming 100,000 layers misses ~900,000 tensors.
  const missingSet = new Set<string>();
  for (const b of bindings) {
    const found = lookup(b.name);
    if (!found) {
      missingSet.add(b.name);
      continue;
    }
    const [stored, t] = found;
    if (!sameShape(t.shape, b.hfShape)) {
      throw fileError(
        t.file,
        `tensor ${stored} has shape ${shapeText(t.shape)}, config.json implies ${shapeText(b.hfShape)}`,
      );
    }
    const problem = weightDtypeProblem(stored, t.dtype);
    if (problem) throw fileError(t.file, problem);
    tensors.set(b.role, b.derive ? b.derive(t) : t);
    used.add(stored);
  }
  const missing = [...missingSet];
  if (missingSet.has('lm_head.weight') && opts.missingHead) throw fileError(folder.dir, opts.missingHead);
  if (missing.length > 0) {
    const list =
      missing.length > 5
        ? `${missing.slice(0, 5).join(', ')}, ... (${missing.length} in all)`
        : missing.join(', ');
    throw fileError(folder.dir, `missing tensors: ${list}`);
  }
  for (const [name, t] of folder.tensors) {
    if (used.has(name) || opts.ignorable(name)) continue;
    throw fileError(
      t.file,
      `unexpected tensor ${name}: not part of a ${opts.what} as config.json describes it`,
    );
  }
  return tensors;
}

/** The config.json keys that give the number of layers (LLaMA/Gemma/BERT, GPT-2, DistilBERT). */
const LAYER_COUNT_KEYS = ['num_hidden_layers', 'n_layer', 'n_layers'] as const;
/** A stored tensor's layer index, as every supported family names layers (model.layers.N., h.N., layer.N.). */
const LAYER_INDEX = /(?:^|\.)(?:layers|layer|h)\.(\d+)\./;

/**
 * Refuses a layer count the checkpoint contradicts, before a family builds anything per layer: more layers
 * than the highest layer index its tensor names hold (or, when no name carries one, than it has tensors, as
 * every layer has tensors of its own). Without this, num_hidden_layers 1e9 made V8 abort while allocating
 * per-layer tables, and 100,000 layers ran through ~900,000 missing tensors. Linear in the tensor count.
 */
export function refuseImpossibleLayerCount(folder: HfFolder, configPath: string): void {
  let highest = -1;
  for (const name of folder.tensors.keys()) {
    const m = LAYER_INDEX.exec(name);
    if (m) highest = Math.max(highest, Number(m[1]));
  }
  for (const key of LAYER_COUNT_KEYS) {
    const v = folder.config[key];
    if (typeof v !== 'number' || !Number.isInteger(v)) continue;
    if (highest >= 0 && v > highest + 1) {
      throw fileError(
        configPath,
        `"${key}" is ${v}, but the checkpoint's tensors hold layers 0..${highest} only (${highest + 1} layers)`,
      );
    }
    if (v > folder.tensors.size) {
      throw fileError(
        configPath,
        `"${key}" is ${v}, but the checkpoint holds only ${folder.tensors.size} tensors (every layer has its own)`,
      );
    }
  }
}
