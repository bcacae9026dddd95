/**
 * Weight-mask files: the masks of a model's prunable linears (masks/weights.ts), accepted by `eval`, `generate`
 * and `export --weight-mask`. A 1B-parameter model's mask is about 1.2 G bits (150 MB packed), so the container
 * is safetensors rather than JSON: any safetensors reader opens it, tensors are read one at a time by offset, and
 * the JSON description lives in the header's `__metadata__`:
 *
 *   tensors      one per prunable matrix, named by its role (`layers.0.attn.q.weight`), dtype U8, shape
 *                [ceil(out·in / 8)]: the matrix's [out, in] mask, bit row·in + col at bit (k mod 8) of byte
 *                k = ⌊(row·in + col) / 8⌋, lowest bit first (numpy: `unpackbits(t, bitorder='little')[:out*in]
 *                .reshape(out, in)`); 1 keeps the weight, 0 prunes it; bits past out·in are 0.
 *   __metadata__ `geneprune.weight-mask`: JSON
 *     { "format": "geneprune-weight-mask", "version": 1,
 *       "model": { "source", "modelType", "fingerprint", "shape" },   as head-mask files record it
 *       "layout": "...", "pattern": "unstructured" | "N:M",
 *       "matrices": [{ role, layer, rows, cols, weights, pruned, sparsity }, ...],
 *       "layers": [{ layer, weights, pruned, sparsity }, ...],
 *       "prunable": { weights, pruned, sparsity }, "overall": { parameters, pruned, sparsity },
 *       "bitsSha256": sha256 of every tensor's bytes, matrices in the order above, concatenated,
 *       "info": { method, ... } }
 *
 * The file is written atomically. Reading checks everything before a mask is used, and refuses in one line
 * naming the file: not safetensors or truncated (the reader's checks), no or broken description, a mask for
 * another model (masks/identity.ts, as for head masks), a matrix missing, extra or of the wrong shape, bits
 * that disagree with the recorded counts (per matrix, per layer, in total) or the recorded pattern, bits whose
 * sha256 is not `bitsSha256` (a flip that keeps every count, which the counts cannot see). Files written before
 * `bitsSha256` existed carry none: they are read with the counts as their only check (`checksum: false` in
 * what the loader returns). The counts a reader gets back are always the bits' own, never the description's.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { openSafetensors, readTensorBytes, writeSafetensors } from '../checkpoint/safetensors.js';
import { fileError } from '../errors.js';
import { parameterCount } from '../model/cost.js';
import { type ModelIdentity, modelIdentity } from '../model/identity.js';
import type { ModelSpec } from '../model/spec.js';
import { describeFsError } from '../util/fs.js';
import { type Bitset, bitsetBytes, bitsetFromBytes, countOnes, unpackBits } from './bitset.js';
import { refuseForeignMask } from './identity.js';
import { holdsPattern, type NmPattern, parsePattern } from './select.js';
import {
  type LayerSparsity,
  type MatrixSparsity,
  maskSparsityReport,
  type PrunableMatrix,
  prunableMatrices,
  type SparsityReport,
  type WeightMasks,
} from './weights.js';

export const WEIGHT_MASK_FORMAT = 'geneprune-weight-mask';
export const WEIGHT_MASK_VERSION = 1;
/** The `__metadata__` key holding the file's JSON description. */
export const WEIGHT_MASK_METADATA_KEY = 'geneprune.weight-mask';

const LAYOUT =
  'one U8 tensor per prunable [out, in] matrix, named by role: bit row*in+col at bit (k mod 8) of byte k, lowest bit first; 1 keeps the weight';

export interface WeightMaskFile extends SparsityReport {
  format: typeof WEIGHT_MASK_FORMAT;
  version: typeof WEIGHT_MASK_VERSION;
  model: ModelIdentity & { source: string };
  layout: string;
  /** 'unstructured', or 'N:M' when every group of M consecutive weights of a row keeps at most N. */
  pattern: string;
  /** sha256 over the tensors' bytes in `matrices` order (absent from files of older versions). */
  bitsSha256?: string;
  /** Free-form provenance: method, sparsity asked for, run directory, metrics. */
  info?: Record<string, unknown>;
}

/** sha256 of the packed masks, matrix after matrix in the model's order: what `bitsSha256` records. */
function bitsSha256(matrices: readonly PrunableMatrix[], bytesOf: (m: PrunableMatrix) => Uint8Array): string {
  const h = createHash('sha256');
  for (const m of matrices) h.update(bytesOf(m));
  return h.digest('hex');
}

export function patternText(pattern: NmPattern | undefined): string {
  return pattern ? `${pattern.n}:${pattern.m}` : 'unstructured';
}

/** Writes a weight-mask file for `spec` atomically; returns its description and the sha256 of its bytes. */
export async function writeWeightMaskFile(
  path: string,
  spec: ModelSpec,
  masks: WeightMasks,
  opts: { pattern?: NmPattern; info?: Record<string, unknown> } = {},
): Promise<{ file: WeightMaskFile; sha256: string }> {
  const matrices = prunableMatrices(spec);
  for (const m of matrices) {
    const bits = masks.get(m.role);
    if (!bits || bits.length !== m.rows * m.cols) {
      throw fileError(path, `no mask of ${m.rows * m.cols} bits for ${m.role} to write`);
    }
  }
  const file: WeightMaskFile = {
    format: WEIGHT_MASK_FORMAT,
    version: WEIGHT_MASK_VERSION,
    model: { ...(await modelIdentity(spec)), source: spec.source },
    layout: LAYOUT,
    pattern: patternText(opts.pattern),
    ...maskSparsityReport(matrices, masks, parameterCount(spec)),
    bitsSha256: bitsSha256(matrices, (m) => bitsetBytes(masks.get(m.role)!)),
    ...(opts.info ? { info: opts.info } : {}),
  };
  await writeSafetensors(
    path,
    matrices.map((m) => {
      const bytes = bitsetBytes(masks.get(m.role)!);
      return { name: m.role, shape: [bytes.length], dtype: 'U8' as const, bytes };
    }),
    { [WEIGHT_MASK_METADATA_KEY]: JSON.stringify(file) },
  );
  return { file, sha256: await fileSha256(path) };
}

async function fileSha256(path: string): Promise<string> {
  try {
    return createHash('sha256')
      .update(await readFile(path))
      .digest('hex');
  } catch (e) {
    throw fileError(path, `cannot read weight-mask file (${describeFsError(e)})`);
  }
}

/** A weight-mask file read and checked against a model. */
export interface LoadedWeightMask {
  path: string;
  /** sha256 of the file's bytes (what an export records as the mask it applied). */
  sha256: string;
  file: WeightMaskFile;
  matrices: PrunableMatrix[];
  masks: Map<string, Bitset>;
  pattern?: NmPattern;
  /** Whether the file carried `bitsSha256` (and it matched); false for files of older versions. */
  checksum: boolean;
}

/** Reads a weight-mask file and checks it against the model; refuses a mask made for any other model. */
export async function loadWeightMaskFile(path: string, spec: ModelSpec): Promise<LoadedWeightMask> {
  const sha256 = await fileSha256(path);
  const st = await openSafetensors(path).catch((e) => {
    throw e?.where === path ? e : fileError(path, `not a weight-mask file: ${e?.message ?? e}`);
  });
  const text = st.metadata[WEIGHT_MASK_METADATA_KEY];
  if (text === undefined) {
    throw fileError(
      path,
      `not a geneprune weight-mask file (no ${WEIGHT_MASK_METADATA_KEY} in its metadata)`,
    );
  }
  let m: Partial<WeightMaskFile>;
  try {
    m = JSON.parse(text);
  } catch {
    throw fileError(path, `weight-mask description (${WEIGHT_MASK_METADATA_KEY}) is not valid JSON`);
  }
  if (m?.format !== WEIGHT_MASK_FORMAT)
    throw fileError(path, 'not a geneprune weight-mask file (format field)');
  if (m.version !== WEIGHT_MASK_VERSION)
    throw fileError(path, `unsupported weight-mask file version ${m.version}`);
  await refuseForeignMask(path, spec, m.model);
  const pattern = m.pattern === 'unstructured' ? undefined : parsePattern(String(m.pattern));
  if (m.pattern !== 'unstructured' && !pattern) {
    throw fileError(path, `pattern ${JSON.stringify(m.pattern)} is neither "unstructured" nor N:M`);
  }
  const matrices = prunableMatrices(spec);
  const recorded = new Map(
    (Array.isArray(m.matrices) ? m.matrices : []).map((r: Partial<MatrixSparsity>) => [r?.role, r]),
  );
  const masks = new Map<string, Bitset>();
  const bytesOf = new Map<string, Uint8Array>();
  for (const mat of matrices) {
    const r = recorded.get(mat.role);
    const t = st.tensors.get(mat.role);
    if (!r || !t) throw fileError(path, `holds no mask for ${mat.role}`);
    if (r.rows !== mat.rows || r.cols !== mat.cols) {
      throw fileError(
        path,
        `mask of ${mat.role} is [${r.rows}, ${r.cols}], the model's matrix is [${mat.rows}, ${mat.cols}]`,
      );
    }
    const bytes = Math.ceil((mat.rows * mat.cols) / 8);
    if (t.dtype !== 'U8' || t.shape.length !== 1 || t.shape[0] !== bytes) {
      throw fileError(
        path,
        `tensor ${mat.role} is ${t.dtype} [${t.shape.join(', ')}], a packed [${mat.rows}, ${mat.cols}] mask is U8 [${bytes}]`,
      );
    }
    let bits: Bitset;
    try {
      const raw = await readTensorBytes(t);
      bytesOf.set(mat.role, raw);
      bits = bitsetFromBytes(raw, mat.rows * mat.cols);
    } catch (e) {
      throw fileError(path, `mask of ${mat.role}: ${(e as Error).message}`);
    }
    const pruned = mat.rows * mat.cols - countOnes(bits);
    if (pruned !== r.pruned) {
      throw fileError(
        path,
        `mask of ${mat.role} prunes ${pruned} weights, its description says ${r.pruned}: the file is corrupt`,
      );
    }
    if (pattern && !holdsPattern(unpackBits(bits), mat.cols, pattern)) {
      throw fileError(
        path,
        `mask of ${mat.role} breaks the ${patternText(pattern)} pattern the file records`,
      );
    }
    masks.set(mat.role, bits);
  }
  const extra = [...st.tensors.keys()].find((name) => !masks.has(name));
  if (extra !== undefined)
    throw fileError(path, `holds a mask for ${extra}, which is not a prunable matrix of the model`);
  const counted = maskSparsityReport(matrices, masks, parameterCount(spec));
  refuseWrongTotals(path, m, counted);
  const checksum = m.bitsSha256 !== undefined;
  if (checksum) {
    const actual = bitsSha256(matrices, (mat) => bytesOf.get(mat.role)!);
    if (actual !== m.bitsSha256) {
      throw fileError(
        path,
        `the masks' bits have sha256 ${actual.slice(0, 16)}…, the file records ${String(m.bitsSha256).slice(0, 16)}…: the file is corrupt`,
      );
    }
  }
  // The bits are the mask: whatever a reader shows (eval, export) is counted from them.
  const file = { ...(m as WeightMaskFile), ...counted };
  return { path, sha256, file, matrices, masks, ...(pattern ? { pattern } : {}), checksum };
}

/** Refuses recorded per-layer or total counts that are not the sums of the bits' own. */
function refuseWrongTotals(path: string, m: Partial<WeightMaskFile>, counted: SparsityReport): void {
  const said = (x: unknown) => (x as { pruned?: unknown } | undefined)?.pruned;
  if (said(m.prunable) !== counted.prunable.pruned || said(m.overall) !== counted.overall.pruned) {
    throw fileError(
      path,
      `the masks prune ${counted.prunable.pruned} weights in all, its description says ${String(said(m.prunable))}: the file is corrupt`,
    );
  }
  const layers = Array.isArray(m.layers) ? m.layers : [];
  for (const l of counted.layers) {
    const r = layers.find((x) => x?.layer === l.layer);
    if (said(r) !== l.pruned) {
      throw fileError(
        path,
        `the masks of layer ${l.layer} prune ${l.pruned} weights, its description says ${String(said(r))}: the file is corrupt`,
      );
    }
  }
}

export type { LayerSparsity, MatrixSparsity, SparsityReport };
