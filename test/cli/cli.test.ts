/**
 * The command line as a user meets it: real processes, real files. Every bad input must give exactly one line
 * on stderr that names the file or flag at fault, a non-zero exit, and nothing on stdout.
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { writeHfFolder } from '../../src/checkpoint/hf.js';
import { llamaSpecToHf } from '../../src/model/llama.js';
import { randomLlamaSpec } from '../../src/model/random.js';
import { tempDir } from '../checkpoint/helpers.js';
import { assertOneLineError, runCli } from '../helpers/cli.js';
import { EVAL, MODEL, sharedPath, skipUnlessShared, TOKENIZER } from '../shared.js';

const tmp = tempDir('geneprune-cli-');
after(tmp.cleanup);

/** A small valid HF llama folder, for corrupting. Without tokenizer.json: loading stops before it. */
async function tinyHfFolder(name: string): Promise<string> {
  const spec = randomLlamaSpec({
    hiddenSize: 16,
    numLayers: 1,
    numHeads: 2,
    numKvHeads: 1,
    intermediateSize: 8,
    vocabSize: 10,
    maxPositions: 8,
    seed: 1,
  });
  const dir = join(tmp.dir, name);
  const hf = llamaSpecToHf(spec);
  await writeHfFolder(dir, { config: hf.config, tensors: hf.tensors });
  return dir;
}

describe('geneprune eval and generate on stories260K', { skip: skipUnlessShared(MODEL) }, () => {
  test('eval prints tokens, mean NLL, perplexity and tokens/s', { skip: skipUnlessShared(EVAL) }, () => {
    const r = runCli([
      'eval',
      '--model',
      sharedPath(MODEL)!,
      '--data',
      sharedPath(EVAL)!,
      '--max-tokens',
      '3000',
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^tokens\s+3000$/m);
    const nll = Number(/^mean NLL\s+([\d.]+)$/m.exec(r.stdout)?.[1]);
    const ppl = Number(/^perplexity\s+([\d.]+) \(ctx 512\)$/m.exec(r.stdout)?.[1]);
    assert.ok(nll > 0.5 && nll < 3, r.stdout);
    assert.ok(Math.abs(ppl - Math.exp(nll)) < 1e-2 * ppl);
    assert.match(r.stdout, /^tokens\/s\s+\d+/m);
  });

  test('without --model the default model is found through GENEPRUNE_MODELS', {
    skip: skipUnlessShared(EVAL),
  }, () => {
    const r = runCli(['eval', '--data', sharedPath(EVAL)!, '--max-tokens', '500', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const report = JSON.parse(r.stdout);
    assert.equal(report.tokens, 500);
    assert.ok(report.model.endsWith('stories260K.bin'));
  });

  test('masking heads changes the perplexity', { skip: skipUnlessShared(EVAL) }, () => {
    const base = runCli(['eval', '--data', sharedPath(EVAL)!, '--max-tokens', '2000', '--json']);
    const pruned = runCli([
      'eval',
      '--data',
      sharedPath(EVAL)!,
      '--max-tokens',
      '2000',
      '--json',
      '--prune-heads',
      '0:0,0:1,1:2,2:3,3:4,4:5',
    ]);
    assert.equal(pruned.code, 0, pruned.stderr);
    assert.ok(JSON.parse(pruned.stdout).perplexity > JSON.parse(base.stdout).perplexity);
  });

  test('--kl reports the KL divergence from the unpruned model', { skip: skipUnlessShared(EVAL) }, () => {
    const args = ['eval', '--data', sharedPath(EVAL)!, '--max-tokens', '1000', '--json', '--kl'];
    const dense = JSON.parse(runCli(args).stdout);
    const pruned = JSON.parse(runCli([...args, '--prune-heads', '0:0,1:1,2:2']).stdout);
    assert.ok(Math.abs(dense.meanKl) < 1e-5, `the unpruned model's KL to itself is 0, got ${dense.meanKl}`);
    assert.ok(pruned.meanKl > 1e-3, `masking heads moves the distribution, got ${pruned.meanKl}`);
  });

  test('generate continues a prompt greedily', () => {
    const r = runCli(['generate', '-n', '30']);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.stdout.startsWith('Once upon a time, there was a little girl named Lily.'), r.stdout);
  });

  test('sampling is reproducible from its seed', () => {
    const a = runCli(['generate', '-n', '40', '--temperature', '1', '--seed', '5']);
    const b = runCli(['generate', '-n', '40', '--temperature', '1', '--seed', '5']);
    assert.equal(a.code, 0, a.stderr);
    assert.equal(a.stdout, b.stdout);
  });
});

describe('bad input gives one clear line and a non-zero exit', () => {
  test('truncated safetensors', async () => {
    const dir = await tinyHfFolder('truncated');
    const file = join(dir, 'model.safetensors');
    const size = readFileSync(file).length;
    truncateSync(file, size - 100);
    assertOneLineError(runCli(['eval', '--model', dir, '--data', dir]), 'non-zero', file);
  });

  test('safetensors header longer than the file', async () => {
    const dir = await tinyHfFolder('longheader');
    const file = join(dir, 'model.safetensors');
    const bytes = readFileSync(file);
    bytes.writeBigUInt64LE(BigInt(bytes.length + 10), 0);
    writeFileSync(file, bytes);
    assertOneLineError(runCli(['eval', '--model', dir, '--data', dir]), 'non-zero', file, 'header');
  });

  test('absurdly large safetensors header', async () => {
    const dir = await tinyHfFolder('hugeheader');
    const file = join(dir, 'model.safetensors');
    const bytes = readFileSync(file);
    bytes.writeBigUInt64LE(2n ** 62n, 0);
    writeFileSync(file, bytes);
    assertOneLineError(runCli(['eval', '--model', dir, '--data', dir]), 'non-zero', file, 'header');
  });

  test('tensor shape that disagrees with config.json', async () => {
    const dir = await tinyHfFolder('shape');
    const configPath = join(dir, 'config.json');
    const config = JSON.parse(readFileSync(configPath, 'utf8'));
    config.intermediate_size = 12;
    writeFileSync(configPath, JSON.stringify(config));
    assertOneLineError(runCli(['eval', '--model', dir, '--data', dir]), 'non-zero', 'mlp', 'shape');
  });

  test('unknown model_type', async () => {
    const dir = await tinyHfFolder('unknown');
    const configPath = join(dir, 'config.json');
    const config = JSON.parse(readFileSync(configPath, 'utf8'));
    config.model_type = 'mamba';
    writeFileSync(configPath, JSON.stringify(config));
    assertOneLineError(runCli(['eval', '--model', dir, '--data', dir]), 'non-zero', configPath, 'mamba');
  });

  test('missing tokenizer', async () => {
    const dir = await tinyHfFolder('notok');
    assertOneLineError(runCli(['eval', '--model', dir, '--data', dir]), 'non-zero', dir, 'tokenizer');
  });

  test('tokenizer named with --tokenizer that does not exist', { skip: skipUnlessShared(MODEL) }, () => {
    const missing = join(tmp.dir, 'nope.bin');
    assertOneLineError(
      runCli(['eval', '--tokenizer', missing, '--data', sharedPath(MODEL)!]),
      'non-zero',
      missing,
    );
  });

  test('truncated llama2.c checkpoint', { skip: skipUnlessShared(MODEL) }, () => {
    const dir = join(tmp.dir, 'l2c');
    mkdirSync(dir);
    const file = join(dir, 'stories260K.bin');
    copyFileSync(sharedPath(MODEL)!, file);
    copyFileSync(sharedPath(TOKENIZER)!, join(dir, 'tok512.bin'));
    truncateSync(file, 5000);
    assertOneLineError(runCli(['eval', '--model', file, '--data', dir]), 'non-zero', file);
  });

  test('empty data', { skip: skipUnlessShared(MODEL) }, () => {
    const empty = join(tmp.dir, 'empty.txt');
    writeFileSync(empty, '\n<|endoftext|>\n\n');
    assertOneLineError(runCli(['eval', '--data', empty]), 'non-zero', empty, 'empty');
  });

  test('data path that does not exist', () => {
    const missing = join(tmp.dir, 'no-such-data');
    assertOneLineError(runCli(['eval', '--data', missing]), 'non-zero', missing);
  });

  test('JSONL without a text field', { skip: skipUnlessShared(MODEL) }, () => {
    const bad = join(tmp.dir, 'bad.jsonl');
    writeFileSync(bad, '{"text": "fine"}\n{"body": "no text"}\n');
    assertOneLineError(runCli(['eval', '--data', bad]), 'non-zero', bad, 'line 2');
  });

  test('bad flags', { skip: skipUnlessShared(MODEL) }, () => {
    const data = sharedPath(MODEL)!;
    assertOneLineError(runCli(['eval', '--data', data, '--bogus']), 'non-zero', '--bogus');
    assertOneLineError(runCli(['eval', '--data', data, '--ctx', 'abc']), 'non-zero', '--ctx');
    assertOneLineError(runCli(['eval', '--data', data, '--ctx', '100000']), 'non-zero', '--ctx');
    assertOneLineError(
      runCli(['eval', '--data', data, '--prune-heads', '9:0']),
      'non-zero',
      '--prune-heads',
      'layer 9',
    );
    assertOneLineError(runCli(['eval', '--data', data, '--prune-heads', '0-1']), 'non-zero', '--prune-heads');
    assertOneLineError(runCli(['eval', '--data', data, '--device', 'tpu']), 'non-zero', '--device');
    assertOneLineError(runCli(['eval']), 'non-zero', '--data');
    assertOneLineError(runCli(['generate', '--temperature', '-1']), 'non-zero', '--temperature');
    assertOneLineError(runCli(['frobnicate']), 'non-zero', 'frobnicate');
  });

  test('a device this build lacks', { skip: skipUnlessShared(MODEL) }, () => {
    assertOneLineError(runCli(['generate', '-n', '1', '--device', 'cuda']), 'non-zero', '--device', 'cuda');
  });

  test('an hf: model when the hub is unreachable', () => {
    assertOneLineError(
      runCli(['eval', '--model', 'hf:someone/some-model', '--data', tmp.dir]),
      'non-zero',
      'http://127.0.0.1:9',
    );
  });
});
