/**
 * `exportModel`: remove the heads a mask removes and write the smaller model as a Hugging Face and/or
 * transformers.js folder. Without a mask the model is exported whole (a format conversion).
 */
import type { StoredFloat } from '../checkpoint/safetensors.js';
import { flagError } from '../errors.js';
import { loadMaskFile } from '../masks/headfile.js';
import { applyRecoveredWeights } from '../masks/recovered.js';
import { loadWeightMaskFile } from '../masks/weightfile.js';
import { checkMemoryBudget } from '../model/memory.js';
import {
  EXPORT_FORMATS,
  type ExportFormat,
  type ExportResult,
  exportModel as writeExport,
} from '../prune/export.js';
import { type ModelInput, openModelInput } from './common.js';

export interface ExportOptions {
  model?: ModelInput;
  /** Tokenizer to copy or convert (default: found beside the model). */
  tokenizer?: string;
  /** Head-mask file from a head search (`mask.json`), checked against the model. */
  mask?: string;
  /**
   * Weight-mask file from `pruneWeights` (`weight-mask.safetensors`), checked against the model: the masked
   * weights are written as zeros, and `weightSparsity` reports the zeros counted back from the written files.
   */
  weightMask?: string;
  /** Recovered weights for that weight mask (`geneprune weights --recover`): written instead of the originals. */
  recovered?: string;
  /** Output folder: created when complete; an existing non-empty one is replaced only with `force`. */
  out: string;
  /** 'all' (default), 'hf' or 'transformersjs'. */
  format?: ExportFormat;
  /** Storage dtype of model.safetensors: fp32, fp16 or bf16; omitted, the checkpoint's own (bf16 stays bf16). */
  dtype?: ExportDtype;
  force?: boolean;
  /** Weights above this many bytes go to onnx/model.onnx_data (default 64 MiB; 0: always). */
  externalDataThreshold?: number;
  /** Refuse before loading when the estimated peak exceeds this many bytes (default: total memory). */
  memoryBudget?: number;
  onStatus?: (line: string) => void;
}

export { EXPORT_FORMATS, type ExportFormat, type ExportResult };

export type ExportDtype = 'fp32' | 'fp16' | 'bf16';
export const EXPORT_DTYPES: Readonly<Record<ExportDtype, StoredFloat>> = {
  fp32: 'F32',
  fp16: 'F16',
  bf16: 'BF16',
};

export async function exportModel(
  opts: ExportOptions,
): Promise<ExportResult & { model: string; mask?: string; weightMask?: string; recovered?: string }> {
  const format = opts.format ?? 'all';
  if (!EXPORT_FORMATS.includes(format)) {
    throw flagError('--format', `"${format}" is not one of ${EXPORT_FORMATS.join(', ')}`);
  }
  if (opts.dtype !== undefined && !Object.hasOwn(EXPORT_DTYPES, opts.dtype)) {
    throw flagError('--dtype', `"${opts.dtype}" is not one of ${Object.keys(EXPORT_DTYPES).join(', ')}`);
  }
  const model = await openModelInput(opts.model, opts.tokenizer);
  checkMemoryBudget(model.spec, { batch: 1, seq: 1, budget: opts.memoryBudget, what: 'export' });
  const mask = opts.mask ? await loadMaskFile(opts.mask, model.spec) : undefined;
  const weights = opts.weightMask ? await loadWeightMaskFile(opts.weightMask, model.spec) : undefined;
  if (opts.recovered && !weights) {
    throw flagError('--recovered', 'needs --weight-mask: the mask the weights were recovered under');
  }
  const spec =
    opts.recovered && weights
      ? await applyRecoveredWeights(opts.recovered, model.spec, weights.sha256)
      : model.spec;
  const result = await writeExport({
    spec,
    tokenizerPath: model.tokenizerPath,
    genome: mask?.genome,
    maskFile: mask && { path: mask.path, sha256: mask.sha256 },
    weightMask: weights && {
      masks: weights.masks,
      path: weights.path,
      sha256: weights.sha256,
      sparsity: weights.file.prunable.sparsity,
    },
    out: opts.out,
    format,
    dtype: opts.dtype === undefined ? undefined : EXPORT_DTYPES[opts.dtype],
    force: opts.force,
    modelPath: model.modelPath,
    externalDataThreshold: opts.externalDataThreshold,
    onStatus: opts.onStatus,
  });
  return {
    ...result,
    model: model.modelPath,
    ...(opts.mask ? { mask: opts.mask } : {}),
    ...(opts.weightMask ? { weightMask: opts.weightMask } : {}),
    ...(opts.recovered ? { recovered: opts.recovered } : {}),
  };
}
