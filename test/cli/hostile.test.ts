/**
 * Hostile inputs from the second hardening audit: data sets of many documents, absurd configs, huge thread
 * counts, FIFOs, weights fp16 cannot hold, integer weights, huge context lengths and short data. Each used to
 * crash, hang or print a wrong number silently; now each ends within seconds with one line or a correct result.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { HfFolder } from '../../src/checkpoint/hf.js';
import { writeHfFolder } from '../../src/checkpoint/hf.js';
import { writeSafetensors } from '../../src/checkpoint/safetensors.js';
import { parseThreadsFlag } from '../../src/cli/options.js';
import { evaluatedShape } from '../../src/engine/memory.js';
import { applyRecoveredWeights, RECOVERED_FORMAT } from '../../src/masks/recovered.js';
import { readChoiceTask } from '../../src/metrics/choices.js';
import { readClassificationData } from '../../src/metrics/classification.js';
import { readDataset } from '../../src/metrics/data.js';
import { readGenerationTask } from '../../src/metrics/generation.js';
import { makeWindows } from '../../src/metrics/perplexity.js';
import { bindHfTensors } from '../../src/model/bind.js';
import { modelIdentity } from '../../src/model/identity.js';
import { hfNameOfRole, llamaConfigFromHf, llamaRoleShapes, llamaSpecToHf } from '../../src/model/llama.js';
import { loadModelSpec } from '../../src/model/load.js';
import { randomLlamaSpec } from '../../src/model/random.js';
import { memoryTensor, type TensorSource } from '../../src/model/spec.js';
import { loadTokenizer } from '../../src/tokenizer/load.js';
import { rejectsFileError, tempDir } from '../checkpoint/helpers.js';
import { assertOneLineError, runCli } from '../helpers/cli.js';
import { writeRandomEncoder } from '../helpers/encoders.js';
import { writeGpt2 } from '../helpers/gpt2.js';
import { CALIB, EVAL, MODEL, sharedPath, skipUnlessShared, TOKENIZER } from '../shared.js';

const tmp = tempDir('geneprune-hostile-');
after(tmp.cleanup);

const needs = skipUnlessShared(MODEL, EVAL);

describe('a calibration set of many documents', () => {
  // More documents than V8 lets one call take as arguments (~120k): push(...docs) threw a RangeError here.
  const DOCS = 200_000;
  let many: string;
  let few: string;
  before(() => {
    const line = (i: number) => JSON.stringify({ text: i % 2 === 0 ? 'a' : 'b' });
    many = join(tmp.dir, 'many.jsonl');
    writeFileSync(many, `${Array.from({ length: DOCS }, (_, i) => line(i)).join('\n')}\n`);
    // The same first documents, enough for 512 calibration tokens (each document is BOS + one token).
    few = join(tmp.dir, 'few.jsonl');
    writeFileSync(few, `${Array.from({ length: 400 }, (_, i) => line(i)).join('\n')}\n`);
  });

  test('readDataset returns every document, in order', async () => {
    const d = await readDataset(many);
    assert.equal(d.documents.length, DOCS);
    assert.equal(d.documents[0], 'a');
    assert.equal(d.documents[DOCS - 1], 'b');
  });

  const run = (cmd: string[], out: string) => {
    const r = runCli([...cmd, '--out', join(tmp.dir, out), '--json']);
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout);
  };

  test('why: heads crashed with "Maximum call stack size exceeded" — it scores the calibration data as a short file with the same first documents does', {
    skip: needs,
  }, () => {
    const heads = (calib: string, out: string) =>
      run(
        [
          'heads',
          '--model',
          sharedPath(MODEL)!,
          '--calib',
          calib,
          '--eval',
          sharedPath(EVAL)!,
          '--method',
          'norm',
          '--target-sparsity',
          '0.25',
          '--calib-tokens',
          '512',
          '--eval-tokens',
          '256',
        ],
        out,
      );
    const big = heads(many, 'heads-many');
    const small = heads(few, 'heads-few');
    assert.equal(big.calib.tokens, 512);
    assert.equal(big.calib.quality, small.calib.quality);
    assert.equal(big.calib.denseQuality, small.calib.denseQuality);
  });

  test('why: weights and export --recover crashed the same way — both finish', { skip: needs }, () => {
    const w = run(
      [
        'weights',
        '--model',
        sharedPath(MODEL)!,
        '--calib',
        many,
        '--eval',
        sharedPath(EVAL)!,
        '--method',
        'magnitude',
        '--sparsity',
        '0.3',
        '--calib-tokens',
        '512',
        '--eval-tokens',
        '256',
      ],
      'weights-many',
    );
    assert.equal(w.calib.tokens, 512);
    assert.ok(Number.isFinite(w.calib.perplexity));
    const heads = join(tmp.dir, 'heads-for-export');
    const h = runCli([
      'heads',
      '--model',
      sharedPath(MODEL)!,
      '--calib',
      few,
      '--eval',
      sharedPath(EVAL)!,
      '--method',
      'norm',
      '--target-sparsity',
      '0.25',
      '--calib-tokens',
      '512',
      '--eval-tokens',
      '256',
      '--out',
      heads,
      '--quiet',
    ]);
    assert.equal(h.code, 0, h.stderr);
    const e = run(
      [
        'export',
        '--model',
        sharedPath(MODEL)!,
        '--mask',
        join(heads, 'mask.json'),
        '--recover',
        '--calib',
        many,
        '--calib-tokens',
        '512',
        '--format',
        'hf',
      ],
      'export-many',
    );
    assert.ok(e.files.length > 0);
  });
});

describe('a FIFO as data', () => {
  // A named pipe with no writer: opening it for reading blocks forever, so each case has a short timeout.
  let fifo: string;
  let folder: string;
  before(() => {
    fifo = join(tmp.dir, 'pipe.txt');
    execFileSync('mkfifo', [fifo]);
    folder = join(tmp.dir, 'pages');
    mkdirSync(folder);
    writeFileSync(join(folder, 'a.txt'), 'Once upon a time there was a cat.\n');
    execFileSync('mkfifo', [join(folder, 'b.txt')]);
  });
  const pipeLine = (path: string, what: string) =>
    `geneprune: ${path}: ${what} is a named pipe (FIFO), not a regular file`;

  test('why: eval --data FIFO blocked forever — one line, at once', { skip: needs }, () => {
    for (const extra of [[], ['--max-tokens', '100']]) {
      const r = runCli(['eval', '--model', sharedPath(MODEL)!, '--data', fifo, ...extra], {
        timeout: 30_000,
      });
      assert.equal(assertOneLineError(r, 1), pipeLine(fifo, 'data path'));
    }
  });

  test('why: a FIFO inside a data folder blocked forever — one line naming it', { skip: needs }, () => {
    const r = runCli(['eval', '--model', sharedPath(MODEL)!, '--data', folder], { timeout: 30_000 });
    assert.equal(assertOneLineError(r, 1), pipeLine(join(folder, 'b.txt'), 'data file'));
  });

  test('heads --calib FIFO and --eval FIFO are refused before a run directory exists', {
    skip: needs,
  }, () => {
    for (const [calib, evalData] of [
      [fifo, sharedPath(EVAL)!],
      [join(folder, 'a.txt'), fifo],
    ]) {
      const out = join(tmp.dir, 'heads-fifo');
      const r = runCli(
        ['heads', '--model', sharedPath(MODEL)!, '--calib', calib, '--eval', evalData, '--out', out],
        { timeout: 30_000 },
      );
      assert.equal(r.code, 1, r.stderr);
      assert.equal(r.stderr.trim().split('\n').at(-1), pipeLine(fifo, 'data path'));
      assert.equal(existsSync(out), false);
    }
  });

  test('a FIFO as --mask or as --tokenizer is refused in one line', {
    skip: needs,
  }, () => {
    const model = sharedPath(MODEL)!;
    const data = sharedPath(EVAL)!;
    const mask = runCli(['eval', '--model', model, '--data', data, '--mask', fifo], { timeout: 30_000 });
    assert.equal(assertOneLineError(mask, 1), pipeLine(fifo, 'mask file'));
    const tok = runCli(['eval', '--model', model, '--tokenizer', fifo, '--data', data], { timeout: 30_000 });
    assert.equal(assertOneLineError(tok, 1), pipeLine(fifo, 'tokenizer'));
  });

  test('task, multiple-choice and labelled files that are FIFOs are refused', async () => {
    await rejectsFileError(readGenerationTask(fifo), fifo, /^task file is a named pipe \(FIFO\)/);
    await rejectsFileError(readChoiceTask(fifo), fifo, /^multiple-choice file is a named pipe \(FIFO\)/);
    await rejectsFileError(
      readClassificationData(fifo, ['a', 'b']),
      fifo,
      /^labelled data is a named pipe \(FIFO\)/,
    );
  });
});

describe('--threads beyond the cores', () => {
  const cores = availableParallelism();

  test('parseThreadsFlag keeps counts up to the cores, caps larger ones with a note, refuses 0', () => {
    const notes: string[] = [];
    assert.equal(
      parseThreadsFlag(String(cores), (l) => notes.push(l)),
      cores,
    );
    assert.equal(
      parseThreadsFlag('1', (l) => notes.push(l)),
      1,
    );
    assert.equal(notes.length, 0);
    assert.equal(
      parseThreadsFlag(String(cores + 1), (l) => notes.push(l)),
      cores,
    );
    assert.deepEqual(notes, [
      `note: --threads ${cores + 1} exceeds the ${cores} CPU cores this machine offers: using ${cores}`,
    ]);
    assert.throws(() => parseThreadsFlag('0'), /must be ≥ 1/);
  });

  test('why: eval --threads 100000 ran for hours — it runs on the cores, with a note, and scores the same', {
    skip: needs,
  }, () => {
    const evalWith = (threads: string) =>
      runCli(
        [
          'eval',
          '--model',
          sharedPath(MODEL)!,
          '--data',
          sharedPath(EVAL)!,
          '--max-tokens',
          '256',
          '--threads',
          threads,
          '--json',
        ],
        { timeout: 60_000 },
      );
    const many = evalWith('100000');
    assert.equal(many.code, 0, many.stderr);
    assert.equal(
      many.stderr,
      `note: --threads 100000 exceeds the ${cores} CPU cores this machine offers: using ${cores}\n`,
    );
    const exact = evalWith(String(cores));
    assert.equal(exact.stderr, '');
    assert.equal(JSON.parse(many.stdout).meanNll, JSON.parse(exact.stdout).meanNll);
  });
});

describe('configs the checkpoint contradicts', () => {
  // A real two-layer checkpoint: hidden 16, 2 heads of 8 (1 KV head), MLP 8, vocabulary 32.
  let base: { config: Record<string, unknown>; tensors: Map<string, TensorSource> };
  before(() => {
    base = llamaSpecToHf(
      randomLlamaSpec({
        hiddenSize: 16,
        numLayers: 2,
        numHeads: 2,
        numKvHeads: 1,
        intermediateSize: 8,
        vocabSize: 32,
        maxPositions: 64,
        seed: 3,
      }),
    );
  });
  let n = 0;
  /** The checkpoint with config.json changed by `edit`, and `extra` tensors added. */
  const folder = async (edit: Record<string, unknown>, extra: Array<[string, TensorSource]> = []) => {
    const dir = join(tmp.dir, `config-${n++}`);
    await writeHfFolder(dir, {
      config: { ...base.config, ...edit },
      tensors: new Map([...base.tensors, ...extra]),
    });
    return dir;
  };
  const refused = async (
    edit: Record<string, unknown>,
    message: string,
    extra: Array<[string, TensorSource]> = [],
  ) => {
    const dir = await folder(edit, extra);
    const started = performance.now();
    await rejectsFileError(loadModelSpec(dir), join(dir, 'config.json'), new RegExp(`^${literal(message)}$`));
    return performance.now() - started;
  };
  const literal = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

  test('why: num_hidden_layers 1e9 killed V8 and 100,000 hung — both are refused by the layers the tensors hold', async () => {
    for (const layers of [1e9, 100_000, 3]) {
      const ms = await refused(
        { num_hidden_layers: layers },
        `"num_hidden_layers" is ${layers}, but the checkpoint's tensors hold layers 0..1 only (2 layers)`,
      );
      assert.ok(ms < 2000, `${layers} layers took ${ms} ms`);
    }
  });

  test('GPT-2 (n_layer) and DistilBERT (n_layers) layer counts are checked the same way', async () => {
    const gpt2 = join(tmp.dir, 'gpt2-layers');
    await writeGpt2(gpt2, { embd: 8, heads: 2, layers: 2, inner: 16, vocab: 20, positions: 16 }, 1, {
      n_layer: 1e9,
    });
    await rejectsFileError(
      loadModelSpec(gpt2),
      join(gpt2, 'config.json'),
      /^"n_layer" is 1000000000, but the checkpoint's tensors hold layers 0\.\.1 only \(2 layers\)$/,
    );
    const distil = await writeRandomEncoder(tmp.dir, 'distil-layers', {
      modelType: 'distilbert',
      layers: 2,
      seed: 1,
    });
    const config = JSON.parse(readFileSync(join(distil.dir, 'config.json'), 'utf8'));
    writeFileSync(join(distil.dir, 'config.json'), JSON.stringify({ ...config, n_layers: 100_000 }));
    await rejectsFileError(
      loadModelSpec(distil.dir),
      join(distil.dir, 'config.json'),
      /^"n_layers" is 100000, but the checkpoint's tensors hold layers 0\.\.1 only \(2 layers\)$/,
    );
  });

  test('the same through the CLI: one line', async () => {
    const dir = await folder({ num_hidden_layers: 1e9 });
    const r = runCli(['eval', '--model', dir, '--data', join(tmp.dir, 'x.txt')], { timeout: 30_000 });
    assert.equal(
      assertOneLineError(r, 1),
      `geneprune: ${join(dir, 'config.json')}: "num_hidden_layers" is 1000000000, but the checkpoint's tensors hold layers 0..1 only (2 layers)`,
    );
  });

  test('why: the missing-tensor check was quadratic — 50,000 layers of missing tensors are listed in linear time', () => {
    // Straight to the binder (the layer-count check refuses such a folder before): 450,003 roles (9 per layer, embeddings, final norm, head), none stored.
    const config = { ...llamaConfigFromHf({ ...base.config, num_hidden_layers: 50_000 }, 'config.json') };
    const bindings = llamaRoleShapes(config).map(([role, shape]) => ({
      role,
      name: hfNameOfRole(role),
      hfShape: shape,
    }));
    const empty = {
      dir: '/nowhere',
      config: {},
      tensors: new Map(),
      metadata: {},
      weightsPath: '/nowhere',
    } as unknown as HfFolder;
    const started = performance.now();
    assert.throws(
      () => bindHfTensors(empty, bindings, { ignorable: () => false, what: 'llama model' }),
      /^GenepruneError: missing tensors: model\.embed_tokens\.weight, .*, \.\.\. \(450003 in all\)$/,
    );
    const ms = performance.now() - started;
    assert.ok(ms < 5000, `took ${ms} ms`);
  });

  test('absurd or inconsistent sizes fail in one line naming the tensor they contradict', async () => {
    const cases: Array<[Record<string, unknown>, string]> = [
      [
        { hidden_size: 1e9 },
        'tensor model.embed_tokens.weight has shape [32,16], config.json implies [32,1000000000]',
      ],
      [
        { vocab_size: 1e15 },
        'tensor model.embed_tokens.weight has shape [32,16], config.json implies [1000000000000000,16]',
      ],
      [
        { intermediate_size: 1e12 },
        'tensor model.layers.0.mlp.gate_proj.weight has shape [8,16], config.json implies [1000000000000,16]',
      ],
      [
        { num_attention_heads: 1_000_000 },
        'tensor model.layers.0.self_attn.q_proj.weight has shape [16,16], config.json implies [8000000,16]',
      ],
      [
        { head_dim: 1e9 },
        'tensor model.layers.0.self_attn.q_proj.weight has shape [16,16], config.json implies [2000000000,16]',
      ],
    ];
    for (const [edit, message] of cases) {
      const dir = await folder(edit);
      const started = performance.now();
      await rejectsFileError(
        loadModelSpec(dir),
        join(dir, 'model.safetensors'),
        new RegExp(`^${literal(message)}$`),
      );
      assert.ok(performance.now() - started < 2000);
    }
  });

  test('sizes beyond exact integers are refused by name', async () => {
    for (const key of ['hidden_size', 'max_position_embeddings', 'vocab_size']) {
      await refused({ [key]: 1e300 }, `"${key}" must be an integer ≥ 1, got 1e+300`);
    }
  });
});

describe('a config allowing 32768 positions', { skip: skipUnlessShared(TOKENIZER, EVAL) }, () => {
  let dir64: string;
  let dirLong: string;
  before(async () => {
    const hf = llamaSpecToHf(
      randomLlamaSpec({
        hiddenSize: 16,
        numLayers: 2,
        numHeads: 2,
        numKvHeads: 1,
        intermediateSize: 8,
        vocabSize: 512,
        maxPositions: 64,
        seed: 5,
      }),
    );
    dir64 = join(tmp.dir, 'positions-64');
    dirLong = join(tmp.dir, 'positions-32768');
    await writeHfFolder(dir64, hf);
    await writeHfFolder(dirLong, { ...hf, config: { ...hf.config, max_position_embeddings: 32768 } });
  });

  test('the memory estimate is sized by the windows scored, not by the context', () => {
    const windows = makeWindows(
      Array.from({ length: 257 }, (_, i) => i % 512),
      32768,
    );
    assert.deepEqual(evaluatedShape(windows, 4), { batch: 1, seq: 256 });
    const three = makeWindows(
      Array.from({ length: 301 }, (_, i) => i % 512),
      100,
    );
    assert.deepEqual(evaluatedShape(three, 2), { batch: 2, seq: 100 });
  });

  test('why: eval --max-tokens 60 was refused by --memory-budget (the 32768² attention it never runs) — it scores as the 64-position config does', () => {
    const evalOn = (model: string) =>
      runCli([
        'eval',
        '--model',
        model,
        '--tokenizer',
        sharedPath(TOKENIZER)!,
        '--data',
        sharedPath(EVAL)!,
        '--max-tokens',
        '60',
        '--memory-budget',
        '2G',
        '--json',
      ]);
    const long = evalOn(dirLong);
    assert.equal(long.code, 0, long.stderr);
    const short = evalOn(dir64);
    assert.equal(short.code, 0, short.stderr);
    // Both score one window of the same 61 tokens.
    assert.equal(JSON.parse(long.stdout).tokens, 60);
    assert.equal(JSON.parse(long.stdout).meanNll, JSON.parse(short.stdout).meanNll);
  });

  test('positions no memory can hold the rotary tables of are refused, naming them', async () => {
    const dir = join(tmp.dir, 'positions-absurd');
    const hf = llamaSpecToHf(
      randomLlamaSpec({
        hiddenSize: 16,
        numLayers: 1,
        numHeads: 2,
        numKvHeads: 1,
        intermediateSize: 8,
        vocabSize: 512,
        maxPositions: 64,
        seed: 5,
      }),
    );
    await writeHfFolder(dir, { ...hf, config: { ...hf.config, max_position_embeddings: 1e15 } });
    const r = runCli(
      [
        'eval',
        '--model',
        dir,
        '--tokenizer',
        sharedPath(TOKENIZER)!,
        '--data',
        sharedPath(EVAL)!,
        '--max-tokens',
        '60',
        '--memory-budget',
        '64G',
      ],
      { timeout: 30_000 },
    );
    assertOneLineError(
      r,
      2,
      '--memory-budget',
      "rotary tables 59604644.8 GiB for the config's 1000000000000000 positions",
    );
  });
});

describe('integer weight tensors', () => {
  /** A safetensors file written by hand: every tensor F32 except `name`, stored as `dtype` (1 or 4 bytes). */
  const writeWith = async (dir: string, name: string, dtype: 'I8' | 'I32' | 'BOOL' | 'U8') => {
    const hf = llamaSpecToHf(
      randomLlamaSpec({
        hiddenSize: 16,
        numLayers: 1,
        numHeads: 2,
        numKvHeads: 1,
        intermediateSize: 8,
        vocabSize: 32,
        maxPositions: 64,
        seed: 7,
      }),
    );
    const header: Record<string, unknown> = {};
    const parts: Buffer[] = [];
    let offset = 0;
    for (const [tensorName, t] of hf.tensors) {
      const values = await t.load();
      const width = tensorName !== name ? 4 : dtype === 'I32' ? 4 : 1;
      const bytes = Buffer.alloc(values.length * width);
      if (tensorName !== name) bytes.set(new Uint8Array(values.buffer, values.byteOffset, values.byteLength));
      else for (let i = 0; i < values.length; i++) bytes[i * width] = i % 2; // 0/1: valid in every dtype
      header[tensorName] = {
        dtype: tensorName === name ? dtype : 'F32',
        shape: [...t.shape],
        data_offsets: [offset, offset + bytes.length],
      };
      parts.push(bytes);
      offset += bytes.length;
    }
    let json = JSON.stringify(header);
    json += ' '.repeat((8 - (json.length % 8)) % 8);
    const length = Buffer.alloc(8);
    length.writeBigUInt64LE(BigInt(json.length));
    mkdirSync(dir);
    writeFileSync(join(dir, 'config.json'), JSON.stringify(hf.config));
    writeFileSync(join(dir, 'model.safetensors'), Buffer.concat([length, Buffer.from(json), ...parts]));
  };

  test('why: I8/I32/BOOL/U8 weights were cast to float and evaluated — refused naming the tensor and its dtype', async () => {
    const name = 'model.layers.0.mlp.up_proj.weight';
    for (const dtype of ['I8', 'I32', 'BOOL', 'U8'] as const) {
      const dir = join(tmp.dir, `int-${dtype}`);
      await writeWith(dir, name, dtype);
      await rejectsFileError(
        loadModelSpec(dir),
        join(dir, 'model.safetensors'),
        new RegExp(
          `^tensor model\\.layers\\.0\\.mlp\\.up_proj\\.weight is ${dtype}: weights must be F32, F16, BF16 \\(quantized or integer checkpoints are not supported\\)$`,
        ),
      );
    }
  });

  test('a recovered-weights file holding an integer tensor is refused the same way', async () => {
    const spec = randomLlamaSpec({
      hiddenSize: 16,
      numLayers: 1,
      numHeads: 2,
      numKvHeads: 1,
      intermediateSize: 8,
      vocabSize: 32,
      maxPositions: 64,
      seed: 7,
    });
    const path = join(tmp.dir, 'recovered-u8.safetensors');
    const info = {
      format: RECOVERED_FORMAT,
      version: 1,
      model: { fingerprint: (await modelIdentity(spec)).fingerprint },
      maskSha256: 'given',
      damping: 0,
    };
    await writeSafetensors(
      path,
      [{ name: 'layers.0.attn.o.weight', shape: [16, 16], dtype: 'U8', bytes: new Uint8Array(256).fill(1) }],
      { 'geneprune.recovered-weights': JSON.stringify(info) },
    );
    await rejectsFileError(
      applyRecoveredWeights(path, spec, { weight: { sha256: 'given' } }),
      path,
      /^tensor layers\.0\.attn\.o\.weight is U8: weights must be F32, F16, BF16/,
    );
  });

  test('the CLI refuses in one line', async () => {
    const dir = join(tmp.dir, 'int-cli');
    await writeWith(dir, 'model.embed_tokens.weight', 'I8');
    const r = runCli(['eval', '--model', dir, '--data', join(tmp.dir, 'x.txt')], { timeout: 30_000 });
    assert.equal(
      assertOneLineError(r, 1),
      `geneprune: ${join(dir, 'model.safetensors')}: tensor model.embed_tokens.weight is I8: weights must be F32, F16, BF16 (quantized or integer checkpoints are not supported)`,
    );
  });
});

describe('export --dtype fp16 of weights beyond its range', { skip: skipUnlessShared(TOKENIZER) }, () => {
  let model: string;
  before(async () => {
    const hf = llamaSpecToHf(
      randomLlamaSpec({
        hiddenSize: 16,
        numLayers: 2,
        numHeads: 2,
        numKvHeads: 1,
        intermediateSize: 8,
        vocabSize: 512,
        maxPositions: 64,
        seed: 1,
      }),
    );
    const name = 'model.layers.1.mlp.down_proj.weight';
    const t = hf.tensors.get(name)!;
    const values = Float32Array.from(await t.load());
    values[3] = 98304; // 1.5·2^16: exact in fp32 and bf16; fp16 ends at 65504
    hf.tensors.set(name, memoryTensor(t.shape, values));
    model = join(tmp.dir, 'beyond-fp16');
    await writeHfFolder(model, hf);
  });
  const exportAs = (dtype: string, out: string) =>
    runCli([
      'export',
      '--model',
      model,
      '--tokenizer',
      sharedPath(TOKENIZER)!,
      '--dtype',
      dtype,
      '--out',
      out,
    ]);

  test('why: export --dtype fp16 wrote Infinity and exited 0 — refused in one line, no out folder', () => {
    for (const format of ['hf', 'all']) {
      const out = join(tmp.dir, `fp16-${format}`);
      const r = runCli([
        'export',
        '--model',
        model,
        '--tokenizer',
        sharedPath(TOKENIZER)!,
        '--dtype',
        'fp16',
        '--format',
        format,
        '--out',
        out,
      ]);
      assert.equal(
        assertOneLineError(r, 2),
        "geneprune: --dtype: tensor model.layers.1.mlp.down_proj.weight holds 98304 (element 3), beyond fp16's range (±65504): it would be stored as infinity; export with --dtype fp32 or bf16",
      );
      assert.equal(existsSync(out), false);
    }
  });

  test('bf16 holds the value: that export is written and reads back 98304 exactly', async () => {
    const out = join(tmp.dir, 'bf16');
    const r = exportAs('bf16', out);
    assert.equal(r.code, 0, r.stderr);
    const spec = await loadModelSpec(out);
    const back = await spec.tensors.get('layers.1.mlp.down.weight')!.load();
    assert.equal(back[3], 98304);
  });

  test('the safetensors writer itself never stores a finite value as infinity', async () => {
    const path = join(tmp.dir, 'direct.safetensors');
    await rejectsFileError(
      writeSafetensors(path, [{ name: 'w', shape: [2], data: new Float32Array([1, 65520]) }], undefined, {
        dtype: 'F16',
      }),
      path,
      /^tensor w holds 65520 \(element 1\), beyond fp16's range \(±65504\): it would be stored as infinity$/,
    );
    assert.equal(existsSync(path), false);
  });
});

describe('calibration data shorter than --calib-tokens', {
  skip: skipUnlessShared(MODEL, TOKENIZER, EVAL),
}, () => {
  const TEXT = 'Once upon a time there was a cat. It liked fish and milk and sun. The end.';
  let calib: string;
  let predicted: number;
  before(async () => {
    calib = join(tmp.dir, 'short-calib.txt');
    writeFileSync(calib, `${TEXT}\n`);
    // One document: BOS + its tokens, every token after the first predicted once.
    predicted = (await loadTokenizer(sharedPath(TOKENIZER)!)).encode(TEXT, { bos: true }).length - 1;
  });
  const note = (use: string) =>
    `note: ${calib}: the calibration data holds only ${predicted} tokens to predict, fewer than the 512 of --calib-tokens: ${use} those ${predicted}\n`;
  const heads = (out: string, calibTokens: string) =>
    runCli([
      'heads',
      '--model',
      sharedPath(MODEL)!,
      '--calib',
      calib,
      '--eval',
      sharedPath(EVAL)!,
      '--method',
      'norm',
      '--target-sparsity',
      '0.25',
      '--calib-tokens',
      calibTokens,
      '--eval-tokens',
      '256',
      '--out',
      join(tmp.dir, out),
      '--quiet',
    ]);

  test('why: 51 tokens against --calib-tokens 512 passed silently — heads warns (even --quiet) and config.json records both counts', () => {
    const r = heads('short-heads', '512');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, note('masks are scored on'));
    const recorded = JSON.parse(
      readFileSync(join(tmp.dir, 'short-heads', 'config.json'), 'utf8'),
    ).calibration;
    assert.equal(recorded.tokens, predicted);
    assert.equal(recorded.tokensAsked, 512);
  });

  test('data that holds what is asked: no note, nothing recorded beyond the tokens', () => {
    const r = heads('enough-heads', String(predicted));
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, '');
    const recorded = JSON.parse(
      readFileSync(join(tmp.dir, 'enough-heads', 'config.json'), 'utf8'),
    ).calibration;
    assert.equal(recorded.tokens, predicted);
    assert.equal('tokensAsked' in recorded, false);
  });

  test('export --recover warns the same way, also with --json, and its result records both counts', () => {
    const r = runCli([
      'export',
      '--model',
      sharedPath(MODEL)!,
      '--mask',
      join(tmp.dir, 'short-heads', 'mask.json'),
      '--recover',
      '--calib',
      calib,
      '--calib-tokens',
      '512',
      '--format',
      'hf',
      '--out',
      join(tmp.dir, 'short-export'),
      '--json',
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, note('o is refitted on'));
    assert.deepEqual(JSON.parse(r.stdout).recovery, {
      calibration: calib,
      tokens: predicted,
      tokensAsked: 512,
    });
  });
});

describe('prompts longer than the context', { skip: skipUnlessShared(MODEL, TOKENIZER, EVAL, CALIB) }, () => {
  // stories260K's context is 512 tokens; this prompt is far longer.
  const LONG = Array(60).fill('The dog ran in the park and played with the ball.').join(' ');
  let longTokens: number;
  let task: string;
  before(async () => {
    longTokens = (await loadTokenizer(sharedPath(TOKENIZER)!)).encode(LONG, { bos: true }).length;
    assert.ok(longTokens > 512);
    task = join(tmp.dir, 'long-task.jsonl');
    writeFileSync(
      task,
      `${JSON.stringify({ prompt: LONG, reference: 'The end.' })}\n${JSON.stringify({ prompt: 'Once upon a time', reference: 'there was a girl.' })}\n`,
    );
  });
  const cutLine = (prefix: string) =>
    `${prefix}: ${task}: 1 of 2 prompts are longer than the model's context of 512 tokens: only the last 512 tokens of each are seen\n`;

  test('why: generate cut a long prompt to the context silently — it warns and reports the tokens cut', () => {
    const r = runCli(['generate', '--model', sharedPath(MODEL)!, '--prompt', LONG, '-n', '3', '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(
      r.stderr,
      `warning: the prompt is ${longTokens} tokens, longer than the model's context of 512: its first ${longTokens - 512} tokens are not seen\n`,
    );
    assert.equal(JSON.parse(r.stdout).promptTokensCut, longTokens - 512);
    const short = runCli([
      'generate',
      '--model',
      sharedPath(MODEL)!,
      '--prompt',
      'The dog',
      '-n',
      '3',
      '--json',
    ]);
    assert.equal(short.stderr, '');
    assert.equal(JSON.parse(short.stdout).promptTokensCut, 0);
  });

  test('why: eval --task scored BLEU on cut prompts silently — it warns and reports how many', () => {
    const r = runCli([
      'eval',
      '--model',
      sharedPath(MODEL)!,
      '--task',
      task,
      '--max-new-tokens',
      '3',
      '--json',
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, cutLine('warning'));
    assert.equal(JSON.parse(r.stdout).promptsCut, 1);
  });

  test('a run with such an --eval-task notes it (even --quiet) and config.json records it', () => {
    const out = join(tmp.dir, 'long-task-heads');
    const r = runCli([
      'heads',
      '--model',
      sharedPath(MODEL)!,
      '--calib',
      sharedPath(CALIB)!,
      '--eval',
      sharedPath(EVAL)!,
      '--method',
      'norm',
      '--target-sparsity',
      '0.25',
      '--calib-tokens',
      '512',
      '--eval-tokens',
      '256',
      '--eval-task',
      task,
      '--eval-new-tokens',
      '3',
      '--out',
      out,
      '--quiet',
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, cutLine('note'));
    const recorded = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')).evaluation.task;
    assert.equal(recorded.promptsCut, 1);
    assert.equal(recorded.items, 2);
  });
});
