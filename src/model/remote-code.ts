/**
 * The Python model classes a compact decoder export ships for stock transformers: python/modeling_geneprune.py
 * (in the repository and the npm package), copied beside config.json, whose `auto_map` names the family's class.
 * Each class is the stock `…ForCausalLM` that, after the stock constructor, rebuilds every layer at the sizes
 * config.json lists per layer (`num_attention_heads_per_layer`, ...), so
 * `AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)` loads the smaller tensors as they are.
 * Encoders and encoder-decoders have no class here: their compact folders keep `pruned_heads` (encoders) or load
 * in geneprune and transformers.js only (T5).
 */
import { fileURLToPath } from 'node:url';

/** The file's name in the export folder (and in python/). */
export const MODELING_FILE = 'modeling_geneprune.py';

/**
 * Where the shipped file is: python/ at the package root, two folders above this module both in src/model/ (run
 * with tsx) and in dist/model/ (installed).
 */
export function modelingFilePath(): string {
  return fileURLToPath(new URL(`../../python/${MODELING_FILE}`, import.meta.url));
}

/** config.json model_type → the class in modeling_geneprune.py that builds it at per-layer sizes. */
const CLASSES: Readonly<Record<string, string>> = {
  llama: 'GenepruneLlamaForCausalLM',
  mistral: 'GenepruneMistralForCausalLM',
  qwen2: 'GenepruneQwen2ForCausalLM',
  gemma: 'GenepruneGemmaForCausalLM',
  gemma2: 'GenepruneGemma2ForCausalLM',
  gpt2: 'GenepruneGPT2LMHeadModel',
  qwen3: 'GenepruneQwen3ForCausalLM',
  phi3: 'GeneprunePhi3ForCausalLM',
  opt: 'GenepruneOPTForCausalLM',
};

/** The keys whose presence in config.json means a layer differs from the stock sizes. */
const PER_LAYER_KEYS = [
  'num_attention_heads_per_layer',
  'num_key_value_heads_per_layer',
  'kv_head_of_query_per_layer',
  'intermediate_size_per_layer',
];

/**
 * The `auto_map` a compact folder with this config.json needs, or undefined when stock transformers reads it as
 * it is (no per-layer sizes) or no class here builds its model_type.
 */
export function remoteCodeAutoMap(config: Record<string, unknown>): Record<string, string> | undefined {
  const cls = CLASSES[String(config.model_type)];
  if (!cls || !PER_LAYER_KEYS.some((k) => config[k] !== undefined)) return undefined;
  return { AutoModelForCausalLM: `${MODELING_FILE.replace(/\.py$/, '')}.${cls}` };
}
