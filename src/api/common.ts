/** What every library call shares: how a model is named, where it runs, and how progress is reported. */
import type { Device } from '../engine/session.js';
import type { ComputeDtype } from '../graph/weights.js';
import { type OpenedModel, openModel } from '../model/open.js';

/**
 * A model: a llama2.c `.bin`, a Hugging Face folder, `hf:OWNER/REPO[/PATH][@REV]`, undefined for the default
 * model (stories260K), or a model already opened with `openModel` (reused, not reloaded).
 */
export type ModelInput = string | OpenedModel | undefined;

export interface RuntimeOptions {
  /** ONNX Runtime execution provider (default cpu). */
  device?: Device;
  /** Intra-op threads (default: all physical cores). */
  threads?: number;
  /**
   * Compute precision (default fp32): fp16/bf16 hold the weight matrices in that dtype in ONNX Runtime, half the
   * memory; on CPU the arithmetic stays fp32 (docs/scale-and-precision.md), on CUDA/WebGPU the linears run in it.
   */
  dtype?: ComputeDtype;
  /** Bytes the command may use at its peak; checked from the model's header before loading (default: total memory). */
  memoryBudget?: number;
}

export async function openModelInput(model: ModelInput, tokenizer?: string): Promise<OpenedModel> {
  if (model !== undefined && typeof model !== 'string') return model;
  return openModel(model, { tokenizer });
}
