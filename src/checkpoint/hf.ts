/**
 * A Hugging Face model folder: config.json, weights in model.safetensors or in shards listed by
 * model.safetensors.index.json, and optionally tokenizer.json. Tensors keep their Hugging Face names here;
 * src/model/ maps them to roles.
 */
import { existsSync } from 'node:fs';
import { readFile, rm, stat } from 'node:fs/promises';
import { join, resolve, sep } from 'node:path';
import { fileError } from '../errors.js';
import { describeFsError, makeDirectory, writeTextAtomic } from '../util/fs.js';
import { DTYPE_BYTES } from './dtype.js';
import {
  type FileTensor,
  numelOf,
  openSafetensors,
  type StoredFloat,
  storedFloatOf,
  type WritableTensor,
  writeSafetensors,
} from './safetensors.js';
import type { TensorSource } from './tensor.js';

export const CONFIG_FILE = 'config.json';
export const SINGLE_WEIGHTS_FILE = 'model.safetensors';
export const INDEX_FILE = 'model.safetensors.index.json';
export const TOKENIZER_FILE = 'tokenizer.json';

export interface HfFolder {
  dir: string;
  /** Parsed config.json. */
  config: Record<string, unknown>;
  /** Hugging Face tensor name → tensor, merged across shards. */
  tensors: Map<string, FileTensor>;
  /** tokenizer.json inside the folder, when present. */
  tokenizerPath?: string;
  /** The safetensors `__metadata__` string map (merged across shards; the first shard to set a key wins). */
  metadata: Record<string, string>;
  /** The weights file whose metadata is reported (the single file or the index), for messages. */
  weightsPath: string;
}

/** Reads and parses a JSON object file, with errors naming the file. */
export async function readJsonObject(path: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw fileError(path, `cannot read: ${describeFsError(err)}`, err);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw fileError(path, `invalid JSON: ${(err as Error).message}`, err);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw fileError(path, 'expected a JSON object at the top level');
  }
  return value as Record<string, unknown>;
}

export async function openHfFolder(dir: string): Promise<HfFolder> {
  const isDir = await stat(dir).then(
    (st) => st.isDirectory(),
    (err) => {
      throw fileError(dir, `cannot open: ${describeFsError(err)}`, err);
    },
  );
  if (!isDir) throw fileError(dir, 'not a directory');
  const configPath = join(dir, CONFIG_FILE);
  if (!existsSync(configPath)) throw fileError(dir, `no ${CONFIG_FILE} in the model folder`);
  const config = await readJsonObject(configPath);

  const single = join(dir, SINGLE_WEIGHTS_FILE);
  const index = join(dir, INDEX_FILE);
  let tensors: Map<string, FileTensor>;
  let metadata: Record<string, string>;
  let weightsPath: string;
  if (existsSync(single)) {
    ({ tensors, metadata } = await openSafetensors(single));
    weightsPath = single;
  } else if (existsSync(index)) {
    ({ tensors, metadata } = await openShards(dir, index));
    weightsPath = index;
  } else {
    const hint = existsSync(join(dir, 'pytorch_model.bin'))
      ? ' (pytorch_model.bin is not read: convert the weights to safetensors)'
      : '';
    throw fileError(dir, `no ${SINGLE_WEIGHTS_FILE} or ${INDEX_FILE} in the model folder${hint}`);
  }
  const tokenizer = join(dir, TOKENIZER_FILE);
  return {
    dir,
    config,
    tensors,
    tokenizerPath: existsSync(tokenizer) ? tokenizer : undefined,
    metadata,
    weightsPath,
  };
}

async function openShards(
  dir: string,
  indexPath: string,
): Promise<{ tensors: Map<string, FileTensor>; metadata: Record<string, string> }> {
  const index = await readJsonObject(indexPath);
  const weightMap = index.weight_map;
  if (typeof weightMap !== 'object' || weightMap === null || Array.isArray(weightMap)) {
    throw fileError(indexPath, 'missing "weight_map" object');
  }
  const byShard = new Map<string, string[]>();
  for (const [name, shard] of Object.entries(weightMap)) {
    if (typeof shard !== 'string' || shard === '') {
      throw fileError(indexPath, `weight_map entry for ${name} is not a file name`);
    }
    byShard.set(shard, [...(byShard.get(shard) ?? []), name]);
  }
  const root = resolve(dir);
  const tensors = new Map<string, FileTensor>();
  const metadata: Record<string, string> = {};
  for (const [shard, names] of byShard) {
    const shardPath = resolve(root, shard);
    // The index is untrusted: it must not point outside the model folder.
    if (!shardPath.startsWith(root + sep))
      throw fileError(indexPath, `shard "${shard}" lies outside the model folder`);
    if (!existsSync(shardPath)) {
      throw fileError(
        indexPath,
        `shard ${shard} (holding ${names[0]}${names.length > 1 ? ', ...' : ''}) is missing`,
      );
    }
    const file = await openSafetensors(shardPath);
    for (const name of names) {
      if (!file.tensors.has(name))
        throw fileError(shardPath, `tensor ${name} is listed in ${INDEX_FILE} but absent`);
    }
    for (const [name, t] of file.tensors) {
      const prev = tensors.get(name);
      if (prev) throw fileError(shardPath, `tensor ${name} also appears in ${prev.file}`);
      tensors.set(name, t);
    }
    for (const [k, v] of Object.entries(file.metadata)) if (!Object.hasOwn(metadata, k)) metadata[k] = v;
  }
  return { tensors, metadata };
}

export interface WriteHfFolderOptions {
  config: Record<string, unknown>;
  /** Hugging Face tensor name → tensor, written in this order. */
  tensors: Map<string, TensorSource> | readonly WritableTensor[];
  /** Split the weights into shards of at most about this many bytes (one tensor never splits). */
  shardBytes?: number;
  /**
   * Storage dtype of every tensor. Omitted: tensors given as a Map keep their own storage dtype (a bf16
   * checkpoint stays bf16; non-float storage becomes F32), written tensors use theirs or F32.
   */
  dtype?: StoredFloat;
  /** Extra safetensors `__metadata__` entries (string map), written into every weights file. */
  metadata?: Record<string, string>;
}

/** Writes config.json and the weights (single file, or shards + index); creates `dir`; each file atomic. */
export async function writeHfFolder(dir: string, options: WriteHfFolderOptions): Promise<void> {
  const dtype = options.dtype;
  const metadata = { format: 'pt', ...options.metadata };
  const tensors: WritableTensor[] =
    options.tensors instanceof Map
      ? [...options.tensors].map(([name, t]) => ({
          name,
          shape: t.shape,
          data: () => t.load(),
          dtype: dtype ?? storedFloatOf(t.dtype),
        }))
      : options.tensors.map((t) => ({ ...t, dtype: dtype ?? t.dtype ?? 'F32' }));
  try {
    await makeDirectory(dir);
  } catch (err) {
    throw fileError(dir, `cannot create folder: ${describeFsError(err)}`, err);
  }
  await writeTextAtomic(join(dir, CONFIG_FILE), `${JSON.stringify(options.config, null, 2)}\n`);

  const single = join(dir, SINGLE_WEIGHTS_FILE);
  const index = join(dir, INDEX_FILE);
  if (options.shardBytes === undefined) {
    await writeSafetensors(single, tensors, metadata);
    // A stale index beside the new file would describe other weights.
    await rm(index, { force: true });
    return;
  }
  if (!(options.shardBytes > 0))
    throw fileError(dir, `shardBytes must be positive, got ${options.shardBytes}`);

  const shards: WritableTensor[][] = [];
  let current: WritableTensor[] = [];
  let currentBytes = 0;
  let totalBytes = 0;
  for (const t of tensors) {
    const bytes = numelOf(t.shape) * DTYPE_BYTES[t.dtype ?? 'F32'];
    if (current.length > 0 && currentBytes + bytes > options.shardBytes) {
      shards.push(current);
      current = [];
      currentBytes = 0;
    }
    current.push(t);
    currentBytes += bytes;
    totalBytes += bytes;
  }
  if (current.length > 0 || shards.length === 0) shards.push(current);

  const weightMap: Record<string, string> = {};
  const pad = (i: number) => String(i).padStart(5, '0');
  for (let s = 0; s < shards.length; s++) {
    const name = `model-${pad(s + 1)}-of-${pad(shards.length)}.safetensors`;
    await writeSafetensors(join(dir, name), shards[s], metadata);
    for (const t of shards[s]) weightMap[t.name] = name;
  }
  const indexJson = { metadata: { total_size: totalBytes }, weight_map: weightMap };
  await writeTextAtomic(index, `${JSON.stringify(indexJson, null, 2)}\n`);
  // The reader prefers model.safetensors; an old one left here would shadow the shards.
  await rm(single, { force: true });
}
