/**
 * Small random T5 checkpoints written as Hugging Face folders (T5ForConditionalGeneration names, through
 * t5SpecToHf and the HF writer): v1.0 (relu, tied, decoder output scaled by d_model^−½) and v1.1 (gated-gelu,
 * untied lm_head). That the names are transformers' own is checked on the real codet5-tiny folder, which was saved
 * by torch in that layout (test/model/t5.test.ts). Values come from randomT5Spec: the same options give the same
 * files.
 */
import { copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeHfFolder } from '../../src/checkpoint/hf.js';
import { type RandomT5Options, randomT5Spec } from '../../src/model/random.js';
import type { ModelSpec } from '../../src/model/spec.js';
import { t5SpecToHf } from '../../src/model/t5.js';
import { sharedPath } from '../shared.js';

export type T5Version = 'v1.0' | 'v1.1';

/** The sizes of the random test models: two blocks per stack, 3 heads of 4, unequal to d_model on purpose. */
export const T5_TEST_SIZES = {
  hiddenSize: 16,
  headDim: 4,
  numHeads: 3,
  intermediateSize: 24,
  encoderLayers: 2,
  decoderLayers: 2,
  vocabSize: 40,
  relativeBuckets: 8,
  relativeMaxDistance: 12,
} as const;

/** A random T5 spec: v1.0 relu tied, or v1.1 gated-gelu untied. `scale` 20: T5 does not divide scores by √d. */
export function randomT5(version: T5Version, seed: number, extra: Partial<RandomT5Options> = {}): ModelSpec {
  return randomT5Spec({
    ...T5_TEST_SIZES,
    seed,
    scale: 20,
    feedForward: version === 'v1.0' ? 'relu' : 'gated-gelu',
    tieEmbeddings: version === 'v1.0',
    ...extra,
  });
}

/** The codet5-tiny files a random model with its vocabulary (1,252) can borrow as its tokenizer. */
const CODET5_TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json'];

/**
 * Writes a random T5 folder and returns its spec. `tokenizer: true` gives it codet5-tiny's tokenizer (from
 * ../shared; the vocabulary becomes 1,252 and eos 2 to match it): callers skip when the shared folder is absent.
 */
export async function writeRandomT5(
  dir: string,
  version: T5Version,
  seed: number,
  opts: { tokenizer?: boolean } & Partial<RandomT5Options> = {},
): Promise<ModelSpec> {
  const { tokenizer, ...extra } = opts;
  const spec = randomT5(version, seed, tokenizer ? { vocabSize: 1252, ...extra } : extra);
  if (tokenizer) spec.config.eosTokenId = 2;
  const files = t5SpecToHf(spec);
  await writeHfFolder(dir, files);
  if (tokenizer) {
    const from = sharedPath('models/codet5-tiny');
    if (!from) throw new Error('writeRandomT5: ../shared/models/codet5-tiny is absent (skip the test)');
    for (const name of CODET5_TOKENIZER_FILES) copyFileSync(join(from, name), join(dir, name));
  }
  return spec;
}
