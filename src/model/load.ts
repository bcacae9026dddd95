/**
 * One entry point from a path to a ModelSpec: a Hugging Face folder (dispatched on config.json's model_type)
 * or a llama2.c .bin file.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { type HfFolder, openHfFolder } from '../checkpoint/hf.js';
import { openLlama2c } from '../checkpoint/llama2c.js';
import { fileError } from '../errors.js';
import { describeFsError } from '../util/fs.js';
import { bertSpecFromHf } from './bert.js';
import { refuseImpossibleLayerCount } from './bind.js';
import { gemmaSpecFromHf } from './gemma.js';
import { gpt2SpecFromHf } from './gpt2.js';
import { llamaSpecFromHf, llamaSpecFromLlama2c } from './llama.js';
import { optSpecFromHf } from './opt.js';
import { phi3SpecFromHf } from './phi3.js';
import { qwen3SpecFromHf } from './qwen3.js';
import type { ModelSpec } from './spec.js';
import { t5SpecFromHf } from './t5.js';

/** model_type → the family mapping that reads it. */
const HF_FAMILIES: Record<string, (folder: HfFolder) => ModelSpec> = {
  gemma: gemmaSpecFromHf,
  gemma2: gemmaSpecFromHf,
  gpt2: gpt2SpecFromHf,
  llama: llamaSpecFromHf,
  mistral: llamaSpecFromHf,
  qwen2: llamaSpecFromHf,
  qwen3: qwen3SpecFromHf,
  qwen3_moe: qwen3SpecFromHf, // only to be refused in one line (experts are not a search space yet)
  bert: bertSpecFromHf,
  roberta: bertSpecFromHf,
  distilbert: bertSpecFromHf,
  t5: t5SpecFromHf,
  phi3: phi3SpecFromHf,
  opt: optSpecFromHf,
};

export const SUPPORTED_MODEL_TYPES: readonly string[] = Object.keys(HF_FAMILIES);

export async function loadModelSpec(path: string): Promise<ModelSpec> {
  const st = await stat(path).catch((err) => {
    throw fileError(path, `cannot open model: ${describeFsError(err)}`, err);
  });
  if (st.isDirectory()) {
    const folder = await openHfFolder(path);
    const type = folder.config.model_type;
    const configPath = join(path, 'config.json');
    if (typeof type !== 'string') throw fileError(configPath, 'no "model_type" string');
    const toSpec = Object.hasOwn(HF_FAMILIES, type) ? HF_FAMILIES[type] : undefined;
    if (!toSpec) {
      throw fileError(
        configPath,
        `model_type "${type}" is not supported (supported: ${SUPPORTED_MODEL_TYPES.join(', ')})`,
      );
    }
    refuseImpossibleLayerCount(folder, configPath);
    return toSpec(folder);
  }
  if (path.endsWith('.bin')) return llamaSpecFromLlama2c(await openLlama2c(path));
  if (path.endsWith('.safetensors')) {
    throw fileError(
      path,
      'a .safetensors file alone lacks the model configuration: pass the folder holding it and config.json',
    );
  }
  throw fileError(
    path,
    'not a model: expected a Hugging Face folder (with config.json) or a llama2.c .bin checkpoint',
  );
}

/**
 * Where the tokenizer of a model probably is: tokenizer.json inside a folder; for a llama2.c .bin,
 * tokenizer.bin beside it, else tok<vocabSize>.bin, else the only tok*.bin there. Undefined when unsure.
 */
export function tokenizerPathFor(modelPath: string, vocabSize?: number): string | undefined {
  let isDir: boolean;
  try {
    isDir = statSync(modelPath).isDirectory();
  } catch {
    return undefined;
  }
  if (isDir) {
    // A BERT-family repository may ship only vocab.txt (WordPiece, converted on load), a RoBERTa / CodeT5 one only
    // vocab.json + merges.txt (byte-level BPE, converted on load).
    for (const name of ['tokenizer.json', 'vocab.txt']) {
      const p = join(modelPath, name);
      if (existsSync(p)) return p;
    }
    const vocabJson = join(modelPath, 'vocab.json');
    if (existsSync(vocabJson) && existsSync(join(modelPath, 'merges.txt'))) return vocabJson;
    return undefined;
  }
  if (!modelPath.endsWith('.bin')) return undefined;
  const dir = dirname(modelPath);
  const beside = (name: string) => (existsSync(join(dir, name)) ? join(dir, name) : undefined);
  const named =
    beside('tokenizer.bin') ?? (vocabSize !== undefined ? beside(`tok${vocabSize}.bin`) : undefined);
  if (named) return named;
  const self = basename(modelPath);
  const candidates = readdirSync(dir).filter((f) => /^tok.*\.bin$/.test(f) && f !== self);
  return candidates.length === 1 ? join(dir, candidates[0]) : undefined;
}
