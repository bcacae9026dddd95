/**
 * One call from a model reference (local path, `hf:OWNER/REPO[/PATH]`, or nothing for the default model) to a
 * ModelSpec and its tokenizer.
 */
import { resolveModelRef } from '../checkpoint/hub.js';
import { fileError } from '../errors.js';
import { loadTokenizer } from '../tokenizer/load.js';
import type { Tokenizer } from '../tokenizer/types.js';
import { loadModelSpec, tokenizerPathFor } from './load.js';
import type { ModelSpec } from './spec.js';

export interface OpenedModel {
  spec: ModelSpec;
  tokenizer: Tokenizer;
  modelPath: string;
  tokenizerPath: string;
}

export interface OpenModelOptions {
  /** An explicit tokenizer file (tokenizer.json or llama2.c tokenizer.bin). */
  tokenizer?: string;
  onProgress?: (file: string, done: number, total: number) => void;
}

export async function openModel(ref: string | undefined, opts: OpenModelOptions = {}): Promise<OpenedModel> {
  const resolved = await resolveModelRef(ref, { onProgress: opts.onProgress });
  const spec = await loadModelSpec(resolved.modelPath);
  const tokenizerPath = opts.tokenizer ?? resolved.tokenizerPath ?? tokenizerPathFor(resolved.modelPath);
  if (!tokenizerPath) {
    throw fileError(
      resolved.modelPath,
      'no tokenizer found beside the model (expected tokenizer.json in the folder, or tokenizer.bin / tok*.bin beside a .bin); pass --tokenizer FILE',
    );
  }
  const tokenizer = await loadTokenizer(tokenizerPath, { vocabSize: spec.config.vocabSize });
  if (tokenizer.vocabSize > spec.config.vocabSize) {
    throw fileError(
      tokenizerPath,
      `tokenizer has ${tokenizer.vocabSize} tokens but the model's vocabulary is ${spec.config.vocabSize}`,
    );
  }
  return { spec, tokenizer, modelPath: resolved.modelPath, tokenizerPath };
}
