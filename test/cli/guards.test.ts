/**
 * The audit's "silent wrong result" cases, run as a user meets them: each used to exit 0 with a wrong answer
 * (or a stack trace); now each fails with one line naming what is at fault, or ends quietly.
 */
import assert from 'node:assert/strict';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { writeHfFolder } from '../../src/checkpoint/hf.js';
import { llamaSpecToHf } from '../../src/model/llama.js';
import { randomLlamaSpec } from '../../src/model/random.js';
import { pokedCheckpoint, tempDir } from '../checkpoint/helpers.js';
import { assertOneLineError, runCli, runCliClosingStdout } from '../helpers/cli.js';
import { CALIB, EVAL, MODEL, sharedPath, skipUnlessShared, TOKENIZER } from '../shared.js';

const tmp = tempDir('geneprune-guards-');
after(tmp.cleanup);

const needs = skipUnlessShared(MODEL, EVAL, CALIB);

describe('NaN and Inf weights', { skip: needs }, () => {
  // stories260K.bin is legacy llama2.c: 28 header bytes, then token_embedding_table [512, 64].
  const nanModel = () =>
    pokedCheckpoint(sharedPath(MODEL)!, join(tmp.dir, 'nan-row7.bin'), 28 + 4 * (7 * 64 + 3), Number.NaN);
  const expected = (path: string) =>
    `geneprune: ${path}: tensor token_embedding_table [512,64] holds NaN at element 451 (row 7, column 3): the weights are corrupt (NaN/Inf)`;

  test('why: one NaN in one embedding row — eval printed perplexity NaN; now exits 1 naming the tensor', () => {
    const model = nanModel();
    const r = runCli([
      'eval',
      '--model',
      model,
      '--tokenizer',
      sharedPath(TOKENIZER)!,
      '--data',
      sharedPath(EVAL)!,
    ]);
    assert.equal(assertOneLineError(r, 1), expected(model));
  });

  test('why: one NaN in one embedding row — generate printed <unk> twenty times; now exits 1 naming the tensor', () => {
    const model = nanModel();
    const r = runCli(['generate', '--model', model, '--tokenizer', sharedPath(TOKENIZER)!, '-n', '20']);
    assert.equal(assertOneLineError(r, 1), expected(model));
  });

  test('heads on the broken model fails the same way and creates no run directory', () => {
    const model = nanModel();
    const out = join(tmp.dir, 'heads-nan');
    const r = runCli([
      'heads',
      '--model',
      model,
      '--tokenizer',
      sharedPath(TOKENIZER)!,
      '--calib',
      sharedPath(CALIB)!,
      '--eval',
      sharedPath(EVAL)!,
      '--out',
      out,
      '--generations',
      '1',
      '--population',
      '4',
    ]);
    // heads reports its status on stderr first; the error is the last line.
    assert.equal(r.code, 1);
    assert.equal(r.stderr.trim().split('\n').at(-1), expected(model));
    assert.equal(existsSync(out), false);
  });
});

describe('a model whose finite weights overflow in the forward pass', { skip: needs }, () => {
  let dir: string;
  const folder = async () => {
    if (dir) return dir;
    dir = join(tmp.dir, 'overflow-hf');
    // Weights of std 2e18: every one finite, but products overflow fp32 (checked in test/search/nonfinite).
    const spec = randomLlamaSpec({
      hiddenSize: 16,
      numLayers: 1,
      numHeads: 2,
      numKvHeads: 1,
      intermediateSize: 8,
      vocabSize: 512,
      maxPositions: 64,
      seed: 1,
      scale: 1e20,
    });
    const hf = llamaSpecToHf(spec);
    await writeHfFolder(dir, { config: hf.config, tensors: hf.tensors });
    return dir;
  };

  test('why: eval printed perplexity NaN — exits 1 naming the data and the window', async () => {
    const model = await folder();
    const data = sharedPath(EVAL)!;
    const r = runCli([
      'eval',
      '--model',
      model,
      '--tokenizer',
      sharedPath(TOKENIZER)!,
      '--data',
      data,
      '--max-tokens',
      '300',
    ]);
    const line = assertOneLineError(r, 1);
    assert.match(
      line,
      new RegExp(
        `^geneprune: ${data}: the model produced a non-finite NLL \\((NaN|Infinity)\\) in window 0 of 5 \\(batch 0, token \\d+ of the window\\): the weights or the computation overflow$`,
      ),
    );
  });

  test('why: generate printed <unk> for non-finite logits — exits 1 naming the model', async () => {
    const model = await folder();
    // (From BOS alone this model's logits are all 0, finite; a real prompt makes them NaN.)
    const r = runCli([
      'generate',
      '--model',
      model,
      '--tokenizer',
      sharedPath(TOKENIZER)!,
      '--prompt',
      'Once upon a time',
      '-n',
      '20',
    ]);
    // generate echoes the prompt as it starts; what matters is the one error line and the exit code.
    assert.equal(r.code, 1, r.stdout);
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, r.stderr);
    assert.match(
      lines[0],
      new RegExp(
        `^geneprune: ${model}: the model produced a non-finite logit \\((NaN|-?Infinity) for token \\d+\\) at generation step \\d+: `,
      ),
    );
  });
});

describe('data that is not text', { skip: needs }, () => {
  test('why: 200 KB of random bytes as --data was accepted (ppl 1.5e9) — exits 1 naming file and offset', () => {
    const bytes = new Uint8Array(200_000);
    let x = 99;
    for (let i = 0; i < bytes.length; i++) {
      x = (Math.imul(x, 1103515245) + 12345) >>> 0;
      bytes[i] = x >>> 24;
    }
    const path = join(tmp.dir, 'random.txt');
    writeFileSync(path, bytes);
    for (const extra of [[], ['--max-tokens', '100']]) {
      const r = runCli(['eval', '--model', sharedPath(MODEL)!, '--data', path, ...extra]);
      const line = assertOneLineError(r, 1);
      assert.match(
        line,
        new RegExp(
          `^geneprune: ${path}: not text: (control byte 0x[0-9a-f]{2}|invalid UTF-8 \\(byte 0x[0-9a-f]{2}\\)) at byte offset \\d+ \\(data must be UTF-8 text; only tab, LF, CR and form feed among control bytes\\)$`,
        ),
      );
    }
  });

  test('why: --max-tokens 4096 on a 30 MB one-line file tokenized it all — it stops early (a NUL at the end is never read)', () => {
    const words = 'Once upon a time there was a little dog named Spot who loved to run in the park. ';
    const body = words.repeat(Math.ceil(30e6 / words.length));
    const path = join(tmp.dir, 'thirty-mb.txt');
    writeFileSync(path, `${body}\u0000`);
    const ok = runCli([
      'eval',
      '--model',
      sharedPath(MODEL)!,
      '--data',
      path,
      '--max-tokens',
      '4096',
      '--json',
    ]);
    assert.equal(ok.code, 0, ok.stderr);
    const report = JSON.parse(ok.stdout);
    assert.equal(report.tokens, 4096);
    assert.equal(report.documents, 1);
    // Reading the whole file does reach the NUL, at its exact offset.
    const whole = runCli(['eval', '--model', sharedPath(MODEL)!, '--data', path]);
    assert.equal(
      assertOneLineError(whole, 1),
      `geneprune: ${path}: not text: control byte 0x00 at byte offset ${body.length} (data must be UTF-8 text; only tab, LF, CR and form feed among control bytes)`,
    );
  });
});

describe('broken pipes end quietly', () => {
  test('why: `geneprune --help | head -1` printed an EPIPE stack trace — exit 0, nothing on stderr', async () => {
    const r = await runCliClosingStdout(['--help'], 0);
    assert.deepEqual(
      { code: r.code, signal: r.signal, stderr: r.stderr },
      { code: 0, signal: null, stderr: '' },
    );
  });

  test('why: `geneprune eval --help | head -1` — exit 0, nothing on stderr', async () => {
    const r = await runCliClosingStdout(['eval', '--help'], 0);
    assert.deepEqual(
      { code: r.code, signal: r.signal, stderr: r.stderr },
      { code: 0, signal: null, stderr: '' },
    );
  });

  test('why: `geneprune generate | head -c 10` printed an EPIPE stack trace — exit 0, nothing on stderr', {
    skip: skipUnlessShared(MODEL),
  }, async () => {
    for (const readBytes of [10, 0]) {
      const r = await runCliClosingStdout(
        ['generate', '--model', sharedPath(MODEL)!, '--prompt', 'Once upon a time', '-n', '200'],
        readBytes,
      );
      assert.deepEqual(
        { code: r.code, signal: r.signal, stderr: r.stderr },
        { code: 0, signal: null, stderr: '' },
        `closing stdout after ${readBytes} bytes`,
      );
      if (readBytes > 0) assert.ok(r.read >= readBytes);
    }
  });
});

describe('integer flags', () => {
  test('why: --seed 9007199254740993 silently became …992 — exit 2 naming --seed', () => {
    const r = runCli(['generate', '--seed', '9007199254740993', '--temperature', '1']);
    const line = assertOneLineError(r, 2, '--seed');
    assert.equal(
      line,
      'geneprune: --seed: 9007199254740993 is outside the exact integer range (±9007199254740991)',
    );
  });
});
