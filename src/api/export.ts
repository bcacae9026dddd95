/**
 * `exportModel`: remove the heads a mask removes (or what a structured plan removes: heads, MLP channels, whole
 * blocks) and write the smaller model as a Hugging Face and/or transformers.js folder. Without a mask the model is
 * exported whole (a format conversion).
 */

import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import type { StoredFloat } from '../checkpoint/safetensors.js';
import { checkMemoryBudget } from '../engine/memory.js';
import type { Device } from '../engine/session.js';
import { flagError } from '../errors.js';
import { loadMaskFile } from '../masks/headfile.js';
import { removedList } from '../masks/heads.js';
import { readRecoveredWeights, refuseRecoveredWithoutMask } from '../masks/recovered.js';
import { loadStructuredPlanFile } from '../masks/structuredfile.js';
import { loadWeightMaskFile } from '../masks/weightfile.js';
import { readDataset } from '../metrics/data.js';
import { tokenizeDocuments } from '../metrics/perplexity.js';
import type { AppliedMask } from '../model/identity.js';
import {
  checkExportOut,
  EXPORT_FORMATS,
  type ExportFormat,
  type ExportResult,
  exportInputs,
  HF_LAYOUTS,
  type HfLayout,
  type HfLoaders,
  exportModel as writeExport,
} from '../prune/export.js';
import { recoverHeadRemoval } from '../prune/recover-heads.js';
import { recoveryBatches, shortCalibrationNote } from '../runs/data.js';
import { RECOVERED_WEIGHTS_FILE } from '../runs/files.js';
import { type ModelInput, openModelInput } from './common.js';

export interface ExportOptions {
  model?: ModelInput;
  /** Tokenizer to copy or convert (default: found beside the model). */
  tokenizer?: string;
  /** Head-mask file from a head search (`mask.json`), checked against the model. */
  mask?: string;
  /**
   * Structured plan file (masks/structuredfile.ts) from a structured search, checked against the model: its heads,
   * MLP channels and skipped blocks are removed (compact) or zeroed (padded). It holds its own heads, so it is
   * refused with `mask`; a `weightMask` composes (its zeros are applied first); `recovered` from `structured
   * --recover` gives its refitted o and down (and biases).
   */
  structured?: string;
  /**
   * Weight-mask file from `pruneWeights` (`weight-mask.safetensors`), checked against the model: the masked
   * weights are written as zeros, and `weightSparsity` reports the zeros counted back from the written files.
   */
  weightMask?: string;
  /**
   * Recovered weights (`recovered-weights.safetensors`), written instead of the originals: from `geneprune weights
   * --recover` with its `weightMask`, from `geneprune heads --recover` with its head `mask` (o's kept columns), or
   * from `geneprune structured --recover` with its `structured` plan.
   */
  recovered?: string;
  /**
   * Compute the recovery of o after the `mask`'s heads are removed now, on `calib` (what `heads --recover` writes
   * to its run directory, by the same code; the same data and token count give the same weights).
   */
  recover?: boolean;
  /** Calibration data for `recover`: a text file, a folder of .txt/.jsonl files, or JSONL. */
  calib?: string;
  /** Calibration tokens `recover` reads (default 8192, as `geneprune heads`). */
  calibTokens?: number;
  /** Where `recover` runs its forward passes (ONNX Runtime provider, default cpu) and on how many threads. */
  device?: Device;
  threads?: number;
  /** Output folder: created when complete; an existing non-empty one is replaced only with `force`. */
  out: string;
  /** 'all' (default), 'hf' or 'transformersjs'. */
  format?: ExportFormat;
  /**
   * How model.safetensors holds removed heads: 'compact' (default: dropped; a pruned decoder's folder carries
   * modeling_geneprune.py for Python transformers' trust_remote_code=True) or 'padded' (original shapes, the
   * removed heads' weights zero: loads in any transformers version with the stock class, no speed-up). The ONNX
   * graph is compact. The result's `loaders` says which loaders read the folder written.
   */
  hfLayout?: HfLayout;
  /** Storage dtype of model.safetensors: fp32, fp16 or bf16; omitted, the checkpoint's own (bf16 stays bf16). */
  dtype?: ExportDtype;
  force?: boolean;
  /** Weights above this many bytes go to onnx/model.onnx_data (default 64 MiB; 0: always). */
  externalDataThreshold?: number;
  /** Refuse before loading when the estimated peak exceeds this many bytes (default: total memory). */
  memoryBudget?: number;
  onStatus?: (line: string) => void;
  /** Warnings shown even when progress is not (calibration data shorter than --calib-tokens). */
  onNote?: (line: string) => void;
}

export { EXPORT_FORMATS, type ExportFormat, type ExportResult, HF_LAYOUTS, type HfLayout, type HfLoaders };

export type ExportDtype = 'fp32' | 'fp16' | 'bf16';
export const EXPORT_DTYPES: Readonly<Record<ExportDtype, StoredFloat>> = {
  fp32: 'F32',
  fp16: 'F16',
  bf16: 'BF16',
};

export async function exportModel(opts: ExportOptions): Promise<
  ExportResult & {
    model: string;
    mask?: string;
    structured?: string;
    weightMask?: string;
    recovered?: string;
    /** `recover`: the calibration data and tokens the recovery was computed on. */
    recovery?: { calibration: string; tokens: number };
  }
> {
  const format = opts.format ?? 'all';
  if (!EXPORT_FORMATS.includes(format)) {
    throw flagError('--format', `"${format}" is not one of ${EXPORT_FORMATS.join(', ')}`);
  }
  if (opts.hfLayout !== undefined && !HF_LAYOUTS.includes(opts.hfLayout)) {
    throw flagError('--hf-layout', `"${opts.hfLayout}" is not one of ${HF_LAYOUTS.join(', ')}`);
  }
  if (opts.hfLayout === 'padded' && format === 'transformersjs') {
    throw flagError(
      '--hf-layout',
      'padded shapes the Hugging Face files; --format transformersjs writes none',
    );
  }
  if (opts.dtype !== undefined && !Object.hasOwn(EXPORT_DTYPES, opts.dtype)) {
    throw flagError('--dtype', `"${opts.dtype}" is not one of ${Object.keys(EXPORT_DTYPES).join(', ')}`);
  }
  // Flags that do not fit each other are refused before anything is loaded.
  if (opts.structured !== undefined) {
    if (opts.mask) {
      throw flagError('--structured', 'the structured plan holds its own heads: give it or --mask, not both');
    }
    if (opts.recover) {
      throw flagError(
        '--recover',
        'refitting at export time is not built for a structured plan: run `structured --recover` and give its --recovered',
      );
    }
  }
  refuseRecoveredWithoutMask(opts.recovered, { ...opts, mask: opts.mask ?? opts.structured });
  if (opts.recover) {
    if (opts.recovered) throw flagError('--recover', 'give either --recover or --recovered, not both');
    if (!opts.mask) {
      throw flagError(
        '--recover',
        'needs --mask: it refits o after the head mask’s heads are removed (weight masks recover in `geneprune weights --recover`)',
      );
    }
    if (opts.weightMask) {
      throw flagError('--recover', 'refits o for a head mask alone; not with --weight-mask');
    }
    if (!opts.calib) throw flagError('--calib', 'required with --recover: the calibration data to refit on');
  } else if (opts.calib !== undefined || opts.calibTokens !== undefined) {
    throw flagError(opts.calib !== undefined ? '--calib' : '--calib-tokens', 'only with --recover');
  }
  const model = await openModelInput(opts.model, opts.tokenizer);
  if (opts.recover && model.spec.config.encdec) {
    // The refit reads token windows of a text stream; an encoder-decoder's o sees source/target pairs.
    throw flagError(
      '--recover',
      'refitting o after head removal is not built for encoder-decoders (T5): export without it',
    );
  }
  // Before the masks are read or a recovery computed: --out must not replace any input, nor a foreign folder.
  await checkExportOut(opts.out, {
    force: opts.force,
    inputs: exportInputs({
      model: model.modelPath,
      mask: opts.mask,
      structured: opts.structured,
      weightMask: opts.weightMask,
      tokenizer: model.tokenizerPath,
      recovered: opts.recovered,
      calibration: opts.recover ? opts.calib : undefined,
    }),
  });
  checkMemoryBudget(model.spec, { batch: 1, seq: 1, budget: opts.memoryBudget, what: 'export' });
  const mask = opts.mask ? await loadMaskFile(opts.mask, model.spec) : undefined;
  const plan = opts.structured ? await loadStructuredPlanFile(opts.structured, model.spec) : undefined;
  const weights = opts.weightMask ? await loadWeightMaskFile(opts.weightMask, model.spec) : undefined;
  if (plan && !opts.recovered) {
    // A `structured --recover` run keeps its refit beside plan.json: exporting without it is allowed, but said.
    const beside = join(dirname(plan.path), RECOVERED_WEIGHTS_FILE);
    if (existsSync(beside))
      opts.onNote?.(
        `${beside} (recovered weights) is not applied: give it with --recovered to export the recovered model`,
      );
  }
  let spec = model.spec;
  let recovered: AppliedMask['recovered'];
  let tokensAsked: number | undefined;
  if (opts.recovered) {
    const read = await readRecoveredWeights(opts.recovered, model.spec, {
      ...(weights ? { weight: { sha256: weights.sha256 } } : {}),
      ...(mask
        ? { head: { sha256: mask.sha256, removed: removedList(model.spec.config, mask.genome) } }
        : {}),
      ...(plan ? { structured: { plan: plan.plan } } : {}),
    });
    spec = read.spec;
    recovered = { kind: read.kind, path: opts.recovered };
  } else if (opts.recover && mask) {
    const calib = await readDataset(opts.calib!);
    const stream = tokenizeDocuments(calib.documents, model.tokenizer);
    const context = Math.min(model.spec.config.maxPositions, 512);
    const asked = opts.calibTokens ?? 8192;
    const tokens = Math.min(asked, stream.length - 1);
    if (tokens < asked) {
      tokensAsked = asked;
      opts.onNote?.(shortCalibrationNote(opts.calib!, tokens, asked, 'o is refitted on'));
    }
    opts.onStatus?.(
      `recovery: refitting o after ${mask.file.removed.length} heads are removed, on ${tokens} calibration tokens`,
    );
    const rec = await recoverHeadRemoval(model.spec, mask.genome, {
      batches: recoveryBatches(stream, {
        context,
        tokens,
        label: opts.calib!,
        vocabSize: model.spec.config.vocabSize,
      }),
      device: opts.device,
      threads: opts.threads,
    });
    spec = rec.spec;
    recovered = { kind: 'head', calibration: resolve(opts.calib!), tokens };
  }
  const result = await writeExport({
    spec,
    ...(spec !== model.spec ? { original: model.spec, recovered } : {}),
    tokenizerPath: model.tokenizerPath,
    genome: mask?.genome,
    maskFile: mask && { path: mask.path, sha256: mask.sha256 },
    plan: plan?.plan,
    planFile: plan && { path: plan.path, sha256: plan.sha256 },
    weightMask: weights && {
      masks: weights.masks,
      path: weights.path,
      sha256: weights.sha256,
      sparsity: weights.file.prunable.sparsity,
    },
    out: opts.out,
    format,
    hfLayout: opts.hfLayout,
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
    ...(opts.structured ? { structured: opts.structured } : {}),
    ...(opts.weightMask ? { weightMask: opts.weightMask } : {}),
    ...(opts.recovered ? { recovered: opts.recovered } : {}),
    ...(recovered?.calibration
      ? {
          recovery: {
            calibration: recovered.calibration,
            tokens: recovered.tokens!,
            ...(tokensAsked !== undefined ? { tokensAsked } : {}),
          },
        }
      : {}),
  };
}
