/** What every library call shares: how a model is named, where it runs, and how progress is reported. */
import type { Device } from '../engine/session.js';
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
  /** Bytes the command may use at its peak; checked from the model's header before loading (default: total memory). */
  memoryBudget?: number;
}

export async function openModelInput(model: ModelInput, tokenizer?: string): Promise<OpenedModel> {
  if (model !== undefined && typeof model !== 'string') return model;
  return openModel(model, { tokenizer });
}
