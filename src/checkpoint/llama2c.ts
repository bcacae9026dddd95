/**
 * llama2.c checkpoints (Karpathy's run.c / export.py), fp32 only:
 * - legacy: 7 int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len; a negative
 *   vocab_size means an untied classifier is stored at the end), then the tensors in run.c order, including
 *   the rotary tables freq_cis_real / freq_cis_imag.
 * - version 1: magic "ak42", int32 version 1, the same 7 int32, uint8 shared_classifier, zero padding to 256
 *   bytes, then norms first, embeddings, and the linears grouped by kind over all layers.
 * Tensors keep run.c's names (wq.{l}, ...) and llama2.c's interleaved rotary layout; src/model/llama.ts maps
 * them to roles. Reads are lazy, by offset.
 */
import { fileError } from '../errors.js';
import { writeAll, writeFileAtomic } from '../util/fs.js';
import { fileSize, readRange } from './io.js';
import { type FileTensor, fileTensor, numelOf } from './safetensors.js';
import type { TensorSource } from './tensor.js';

export const LLAMA2C_MAGIC = 0x616b3432; // "ak42" read as a little-endian uint32
const LEGACY_HEADER_BYTES = 7 * 4;
const V1_HEADER_BYTES = 256;

export interface Llama2cParams {
  dim: number;
  hiddenDim: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  /** Always positive here; the legacy format's sign is `sharedClassifier`. */
  vocabSize: number;
  seqLen: number;
  /** The classifier is the token embedding (no separate wcls tensor). */
  sharedClassifier: boolean;
}

export type Llama2cFormat = 'legacy' | 'v1';

export interface Llama2cFile {
  path: string;
  format: Llama2cFormat;
  params: Llama2cParams;
  /** run.c names → tensor, in file order. */
  tensors: Map<string, FileTensor>;
}

interface Slot {
  name: string;
  shape: number[];
}

/** The tensors of a checkpoint in file order, with llama2.c's [out, in] shapes. */
export function llama2cLayout(p: Llama2cParams, format: Llama2cFormat): Slot[] {
  const { dim: D, hiddenDim: H, nLayers: L, vocabSize: V } = p;
  const headSize = D / p.nHeads;
  const kvDim = headSize * p.nKvHeads;
  const perLayer = (name: string, shape: number[]): Slot[] =>
    Array.from({ length: L }, (_, l) => ({ name: `${name}.${l}`, shape }));
  const linears = [
    ...perLayer('wq', [D, D]),
    ...perLayer('wk', [kvDim, D]),
    ...perLayer('wv', [kvDim, D]),
    ...perLayer('wo', [D, D]),
  ];
  const mlp = [...perLayer('w1', [H, D]), ...perLayer('w2', [D, H]), ...perLayer('w3', [H, D])];
  const cls: Slot[] = p.sharedClassifier ? [] : [{ name: 'wcls', shape: [V, D] }];
  if (format === 'legacy') {
    return [
      { name: 'token_embedding_table', shape: [V, D] },
      ...perLayer('rms_att_weight', [D]),
      ...linears,
      ...perLayer('rms_ffn_weight', [D]),
      ...mlp,
      { name: 'rms_final_weight', shape: [D] },
      { name: 'freq_cis_real', shape: [p.seqLen, headSize / 2] },
      { name: 'freq_cis_imag', shape: [p.seqLen, headSize / 2] },
      ...cls,
    ];
  }
  return [
    ...perLayer('rms_att_weight', [D]),
    ...perLayer('rms_ffn_weight', [D]),
    { name: 'rms_final_weight', shape: [D] },
    { name: 'token_embedding_table', shape: [V, D] },
    ...linears,
    ...mlp,
    ...cls,
  ];
}

/** Checks header values are usable; returns a reason when not. */
function paramsProblem(p: Llama2cParams): string | undefined {
  const limits: Array<[keyof Llama2cParams, number]> = [
    ['dim', 1 << 16],
    ['hiddenDim', 1 << 20],
    ['nLayers', 1 << 10],
    ['nHeads', 1 << 12],
    ['nKvHeads', 1 << 12],
    ['vocabSize', 1 << 22],
    ['seqLen', 1 << 22],
  ];
  for (const [key, max] of limits) {
    const v = p[key] as number;
    if (!Number.isInteger(v) || v <= 0 || v > max) return `${key} = ${v} is not in 1..${max}`;
  }
  if (p.dim % p.nHeads !== 0) return `dim ${p.dim} is not a multiple of n_heads ${p.nHeads}`;
  if (p.nHeads % p.nKvHeads !== 0) return `n_heads ${p.nHeads} is not a multiple of n_kv_heads ${p.nKvHeads}`;
  if ((p.dim / p.nHeads) % 2 !== 0) return `head size ${p.dim / p.nHeads} is odd (rotary needs pairs)`;
  return undefined;
}

const describeParams = (p: Llama2cParams): string =>
  `dim=${p.dim} hidden_dim=${p.hiddenDim} n_layers=${p.nLayers} n_heads=${p.nHeads} n_kv_heads=${p.nKvHeads} ` +
  `vocab_size=${p.vocabSize} seq_len=${p.seqLen} shared_classifier=${p.sharedClassifier}`;

export async function openLlama2c(path: string): Promise<Llama2cFile> {
  const size = await fileSize(path);
  if (size < LEGACY_HEADER_BYTES) {
    throw fileError(
      path,
      `truncated: ${size} bytes, shorter than a llama2.c header (${LEGACY_HEADER_BYTES} bytes)`,
    );
  }
  const head = new Uint8Array(Math.min(size, V1_HEADER_BYTES));
  await readRange(path, 0, head);
  const view = new DataView(head.buffer);
  if (head[0] === 0x50 && head[1] === 0x4b) {
    throw fileError(path, 'this is a zip archive (a PyTorch checkpoint?), not a llama2.c checkpoint');
  }

  let format: Llama2cFormat;
  let params: Llama2cParams;
  let dataStart: number;
  if (view.getUint32(0, true) === LLAMA2C_MAGIC) {
    format = 'v1';
    if (size < V1_HEADER_BYTES) {
      throw fileError(path, `truncated: ${size} bytes, shorter than a llama2.c version-1 header (256 bytes)`);
    }
    const version = view.getInt32(4, true);
    if (version !== 1) {
      const what = version === 2 ? ' (int8-quantized checkpoints are not supported)' : '';
      throw fileError(
        path,
        `llama2.c checkpoint version ${version} is not supported${what}; use version 1 or legacy`,
      );
    }
    const ints = Array.from({ length: 7 }, (_, i) => view.getInt32(8 + 4 * i, true));
    params = paramsFromInts(ints, head[36] !== 0);
    dataStart = V1_HEADER_BYTES;
  } else {
    format = 'legacy';
    const ints = Array.from({ length: 7 }, (_, i) => view.getInt32(4 * i, true));
    // Legacy files mark an untied classifier with a negative vocab size.
    params = paramsFromInts([...ints.slice(0, 5), Math.abs(ints[5]), ints[6]], ints[5] > 0);
    dataStart = LEGACY_HEADER_BYTES;
  }
  const problem = paramsProblem(params);
  if (problem)
    throw fileError(
      path,
      `not a valid llama2.c ${format} checkpoint: ${problem} (${describeParams(params)})`,
    );

  const layout = llama2cLayout(params, format);
  const expected = dataStart + 4 * layout.reduce((n, s) => n + numelOf(s.shape), 0);
  if (size !== expected) {
    const what =
      size < expected ? `truncated: ${expected - size} bytes missing` : `${size - expected} trailing bytes`;
    throw fileError(
      path,
      `${what}: the header (${format}, ${describeParams(params)}) implies ${expected} bytes, the file has ${size}`,
    );
  }
  const tensors = new Map<string, FileTensor>();
  let offset = dataStart;
  for (const slot of layout) {
    tensors.set(slot.name, fileTensor(path, slot.name, 'F32', slot.shape, offset));
    offset += 4 * numelOf(slot.shape);
  }
  return { path, format, params, tensors };
}

function paramsFromInts(ints: number[], sharedClassifier: boolean): Llama2cParams {
  const [dim, hiddenDim, nLayers, nHeads, nKvHeads, vocabSize, seqLen] = ints;
  return { dim, hiddenDim, nLayers, nHeads, nKvHeads, vocabSize, seqLen, sharedClassifier };
}

/**
 * The rotary tables llama2.c stores ([seqLen, headSize/2] cos and sin), computed in fp32 steps as its
 * model.py does with theta 10000.
 */
export function llama2cFreqCis(
  headSize: number,
  seqLen: number,
  theta = 10000,
): { real: Float32Array; imag: Float32Array } {
  const half = headSize / 2;
  const freqs = new Float32Array(half);
  for (let i = 0; i < half; i++) {
    freqs[i] = Math.fround(1 / Math.fround(theta ** Math.fround((2 * i) / headSize)));
  }
  const real = new Float32Array(seqLen * half);
  const imag = new Float32Array(seqLen * half);
  for (let t = 0; t < seqLen; t++) {
    for (let i = 0; i < half; i++) {
      const angle = Math.fround(t * freqs[i]);
      real[t * half + i] = Math.cos(angle);
      imag[t * half + i] = Math.sin(angle);
    }
  }
  return { real, imag };
}

/**
 * Writes a legacy-format checkpoint atomically. `tensors` uses run.c names (as openLlama2c returns them);
 * freq_cis tables are computed, not taken from `tensors`.
 */
export async function writeLlama2cLegacy(
  path: string,
  params: Llama2cParams,
  tensors: ReadonlyMap<string, TensorSource>,
): Promise<void> {
  const problem = paramsProblem(params);
  if (problem) throw fileError(path, `cannot write llama2.c checkpoint: ${problem}`);
  const layout = llama2cLayout(params, 'legacy');
  const freq = llama2cFreqCis(params.dim / params.nHeads, params.seqLen);
  for (const slot of layout) {
    if (slot.name.startsWith('freq_cis_')) continue;
    const t = tensors.get(slot.name);
    if (!t) throw fileError(path, `cannot write llama2.c checkpoint: tensor ${slot.name} is missing`);
    if (numelOf(t.shape) !== numelOf(slot.shape)) {
      throw fileError(
        path,
        `cannot write llama2.c checkpoint: tensor ${slot.name} has shape [${t.shape.join(',')}], expected [${slot.shape.join(',')}]`,
      );
    }
  }
  const header = new Int32Array([
    params.dim,
    params.hiddenDim,
    params.nLayers,
    params.nHeads,
    params.nKvHeads,
    params.sharedClassifier ? params.vocabSize : -params.vocabSize,
    params.seqLen,
  ]);
  await writeFileAtomic(path, async (fh) => {
    await writeAll(fh, new Uint8Array(header.buffer));
    for (const slot of layout) {
      const data =
        slot.name === 'freq_cis_real'
          ? freq.real
          : slot.name === 'freq_cis_imag'
            ? freq.imag
            : await tensors.get(slot.name)!.load();
      if (data.length !== numelOf(slot.shape)) {
        throw fileError(
          path,
          `cannot write llama2.c checkpoint: tensor ${slot.name} loaded ${data.length} values`,
        );
      }
      await writeAll(fh, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    }
  });
}
