/**
 * Rotary scaling through the CLI: `eval` runs a llama3-scaled Hugging Face folder (and its scaling changes the
 * perplexity), an unsupported or incomplete rope_scaling is one line naming config.json, and a context past
 * max_position_embeddings is refused.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { writeHfFolder } from '../../src/checkpoint/hf.js';
import { llamaSpecToHf } from '../../src/model/llama.js';
import { randomLlamaSpec } from '../../src/model/random.js';
import { tempDir } from '../checkpoint/helpers.js';
import { assertOneLineError, runCli } from '../helpers/cli.js';
import { EVAL, sharedPath, skipUnlessShared, TOKENIZER } from '../shared.js';

const tmp = tempDir('geneprune-cli-rope-');
after(tmp.cleanup);

const LLAMA3 = {
  rope_type: 'llama3',
  factor: 8,
  low_freq_factor: 1,
  high_freq_factor: 4,
  original_max_position_embeddings: 16,
};

describe('rotary scaling on the command line', { skip: skipUnlessShared(EVAL, TOKENIZER) }, () => {
  const folder = (name: string) => join(tmp.dir, name);
  before(async () => {
    const spec = randomLlamaSpec({
      hiddenSize: 32,
      numLayers: 2,
      numHeads: 2,
      numKvHeads: 1,
      intermediateSize: 48,
      vocabSize: 512,
      maxPositions: 64,
      seed: 5,
      scale: 12,
    });
    const hf = llamaSpecToHf(spec);
    const write = (name: string, extra: Record<string, unknown>) =>
      writeHfFolder(folder(name), { config: { ...hf.config, ...extra }, tensors: hf.tensors });
    await write('llama3', { rope_scaling: LLAMA3 });
    await write('plain', {});
    await write('longrope', { rope_scaling: { rope_type: 'longrope', factor: 2 } });
    await write('incomplete', { rope_scaling: { rope_type: 'llama3', factor: 8 } });
    await write('dynamic', { rope_scaling: { type: 'dynamic', factor: 2 } });
  });
  const evalArgs = (name: string, ...extra: string[]) => [
    'eval',
    '--model',
    folder(name),
    '--tokenizer',
    sharedPath(TOKENIZER)!,
    '--data',
    sharedPath(EVAL)!,
    '--max-tokens',
    '512',
    '--json',
    ...extra,
  ];
  const perplexity = (name: string): number => {
    const r = runCli(evalArgs(name));
    assert.equal(r.code, 0, r.stderr);
    return (JSON.parse(r.stdout) as { perplexity: number }).perplexity;
  };

  test('eval runs a llama3-scaled folder, and the scaling is what it computes', () => {
    const scaled = perplexity('llama3');
    const plain = perplexity('plain');
    assert.ok(Number.isFinite(scaled) && scaled > 1, `perplexity ${scaled}`);
    assert.ok(Math.abs(scaled - plain) > 1e-3 * plain, `scaled ${scaled} vs unscaled ${plain}`);
  });

  test('an unsupported or incomplete rope_scaling is one line naming config.json', () => {
    assertOneLineError(
      runCli(evalArgs('longrope')),
      'non-zero',
      join(folder('longrope'), 'config.json'),
      'rope_scaling type "longrope" is not supported',
    );
    assertOneLineError(
      runCli(evalArgs('incomplete')),
      'non-zero',
      join(folder('incomplete'), 'config.json'),
      'rope_scaling.low_freq_factor (llama3) is missing',
    );
  });

  test('dynamic scaling: a context past max_position_embeddings is refused, not computed unscaled', () => {
    assertOneLineError(
      runCli(evalArgs('dynamic', '--ctx', '128')),
      'non-zero',
      '--ctx',
      "128 exceeds the model's context length 64",
    );
  });
});
