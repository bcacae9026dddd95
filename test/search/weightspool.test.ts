/**
 * `geneprune weights --workers N` on the real stories260K: a block-wise weight search (the seeded GA ga-magnitude,
 * and the GenePrune GA `ga`) with one process and with two worker threads writes the same evals.jsonl (timings
 * aside), byte-identical weight-mask files and the same result.json (timings aside), and so does codet5-tiny (an
 * encoder-decoder: the workers' replay crosses into the decoder stack); a `--workers 2` run SIGKILLed
 * after a block's checkpoint and resumed ends as the uninterrupted run; `--workers` may change on --resume; what
 * workers cannot score yet is refused in one line before any run directory is made.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { tempDir } from '../checkpoint/helpers.js';
import { assertOneLineError, runCli, spawnCli } from '../helpers/cli.js';
import { logWithoutTimes, readRunJson, runInOwnFolder, smallRunArgs, untimed } from '../helpers/rundir.js';
import { CALIB, EVAL, MODEL, sharedPath, skipUnlessShared } from '../shared.js';

const tmp = tempDir('geneprune-weightspool-');
after(tmp.cleanup);
const skip = skipUnlessShared(MODEL, CALIB, EVAL);

/** A small block search: 5 blocks, population 4, 3 generations each, 512 calibration tokens. */
const weightArgs = (method: string, extra: string[] = []) =>
  smallRunArgs('weights', undefined, { method }, extra);

/** A run in its own folder (helpers/rundir.ts), so two runs' mask files compare byte for byte. */
const runIn = (name: string, args: string[]) => runInOwnFolder(tmp.dir, name, args);

const bytes = (dir: string) => readFileSync(join(dir, 'weight-mask.safetensors'));

describe('weights --workers', { skip }, () => {
  for (const method of ['ga-magnitude', 'ga']) {
    test(`${method}: one process and --workers 2 write the same evaluations, mask bytes and result`, async () => {
      const one = await runIn(`${method}-one`, weightArgs(method));
      const two = await runIn(`${method}-two`, weightArgs(method, ['--workers', '2']));
      const evals = logWithoutTimes(one, 'evals.jsonl') as Array<{ block: number }>;
      // Every block searched, several generations each: a real search.
      assert.deepEqual([...new Set(evals.map((e) => e.block))], [0, 1, 2, 3, 4]);
      assert.ok(evals.length >= 5 * 4 * 2, `only ${evals.length} evaluations`);
      assert.deepEqual(logWithoutTimes(two, 'evals.jsonl'), evals);
      assert.ok(bytes(two).equals(bytes(one)), 'the weight-mask files differ');
      const r1 = readRunJson(one, 'result.json');
      assert.deepEqual(untimed(readRunJson(two, 'result.json')), untimed(r1));
      assert.ok(r1.forwardPasses > evals.length, 'forward passes counted');
    });
  }

  test('--layers: blocks left out are replayed dense, a block searched in part keeps its other matrices', async () => {
    const layers = ['--layers', 'layers.1,layers.3.mlp'];
    const one = await runIn('layers-one', weightArgs('ga-magnitude', layers));
    const two = await runIn('layers-two', weightArgs('ga-magnitude', [...layers, '--workers', '2']));
    const evals = logWithoutTimes(one, 'evals.jsonl') as Array<{ block: number }>;
    assert.deepEqual([...new Set(evals.map((e) => e.block))], [1, 3]);
    assert.deepEqual(logWithoutTimes(two, 'evals.jsonl'), evals);
    assert.ok(bytes(two).equals(bytes(one)), 'the weight-mask files differ');
    assert.deepEqual(untimed(readRunJson(two, 'result.json')), untimed(readRunJson(one, 'result.json')));
  });

  test('an encoder-decoder (codet5-tiny): the workers replay the walk across the encoder into the decoder', async (t) => {
    const model = sharedPath('models/codet5-tiny');
    const calib = sharedPath('data/codegen/calib.jsonl');
    const evalFile = sharedPath('data/codegen/eval.jsonl');
    if (!model || !calib || !evalFile) return t.skip('codet5-tiny or its data absent');
    const args = smallRunArgs('weights', undefined, {
      method: 'ga-magnitude',
      model,
      calib,
      eval: evalFile,
      'calib-tokens': 256,
      'eval-tokens': 256,
    });
    const one = await runIn('t5-one', args);
    const two = await runIn('t5-two', [...args, '--workers', '2']);
    const evals = logWithoutTimes(one, 'evals.jsonl') as Array<{ block: number }>;
    // Three encoder blocks, then three decoder blocks.
    assert.deepEqual([...new Set(evals.map((e) => e.block))], [0, 1, 2, 3, 4, 5]);
    assert.deepEqual(logWithoutTimes(two, 'evals.jsonl'), evals);
    assert.ok(bytes(two).equals(bytes(one)), 'the weight-mask files differ');
    assert.deepEqual(untimed(readRunJson(two, 'result.json')), untimed(readRunJson(one, 'result.json')));
  });

  test('--recover inside the walk (ga-wanda): the workers recover the fixed blocks as they replay', async () => {
    const one = await runIn('recover-one', weightArgs('ga-wanda', ['--recover']));
    const two = await runIn('recover-two', weightArgs('ga-wanda', ['--recover', '--workers', '2']));
    const evals = logWithoutTimes(one, 'evals.jsonl') as Array<{ block: number }>;
    assert.deepEqual([...new Set(evals.map((e) => e.block))], [0, 1, 2, 3, 4]);
    assert.deepEqual(logWithoutTimes(two, 'evals.jsonl'), evals);
    assert.ok(bytes(two).equals(bytes(one)), 'the weight-mask files differ');
    const result = readRunJson(one, 'result.json');
    assert.ok(result.recovery, 'a recovered run');
    const { weights: _w, ...recovery } = result.recovery;
    const { weights: _w2, ...recovery2 } = readRunJson(two, 'result.json').recovery;
    assert.deepEqual(
      untimed({ ...readRunJson(two, 'result.json'), recovery: recovery2 }),
      untimed({ ...result, recovery }),
    );
  });

  test('a generation metric (--metric bleu): the workers generate with the fixed and the candidate’s masks', async () => {
    const bleu = ['--metric', 'bleu', '--calib-items', '4', '--calib-new-tokens', '8'];
    const one = await runIn('bleu-one', weightArgs('ga', bleu));
    const two = await runIn('bleu-two', weightArgs('ga', [...bleu, '--workers', '2']));
    const evals = logWithoutTimes(one, 'evals.jsonl') as Array<{ block: number; quality: number }>;
    assert.ok(evals.length >= 5 * 4 && new Set(evals.map((e) => e.quality)).size > 1, 'a real search');
    assert.deepEqual(logWithoutTimes(two, 'evals.jsonl'), evals);
    assert.ok(bytes(two).equals(bytes(one)), 'the weight-mask files differ');
    assert.deepEqual(untimed(readRunJson(two, 'result.json')), untimed(readRunJson(one, 'result.json')));
  });

  test('a --workers 2 run SIGKILLed after a block checkpoint and resumed ends as the uninterrupted run', async () => {
    const whole = await runIn('whole', weightArgs('ga-magnitude'));
    const cwd = join(tmp.dir, 'killed');
    mkdirSync(cwd, { recursive: true });
    const killed = join(cwd, 'run');
    const child = spawnCli([...weightArgs('ga-magnitude', ['--workers', '2']), '--out', 'run'], {
      cwd,
      stdio: 'ignore',
    });
    const exited = new Promise<void>((res) => child.on('exit', () => res()));
    const done = () => {
      try {
        return readRunJson(killed, 'search-state.json').done as number;
      } catch {
        return 0;
      }
    };
    const deadline = Date.now() + 120_000;
    while (done() < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    child.kill('SIGKILL');
    await exited;
    assert.ok(done() >= 2 && !existsSync(join(killed, 'result.json')), `killed after ${done()} blocks`);
    const rr = runCli(['weights', '--resume', 'run', '--workers', '2', '--quiet'], { cwd, timeout: 300_000 });
    assert.equal(rr.code, 0, rr.stderr);
    assert.deepEqual(logWithoutTimes(killed, 'evals.jsonl'), logWithoutTimes(whole, 'evals.jsonl'));
    assert.ok(bytes(killed).equals(bytes(whole)), 'the weight-mask files differ');
    const { resumed, ...result } = readRunJson(killed, 'result.json');
    assert.deepEqual(untimed(result), untimed(readRunJson(whole, 'result.json')));
    // --workers may change on --resume (it chooses where the work runs, not what is computed).
    const again = runCli(['weights', '--resume', 'run', '--workers', '3', '--quiet', '--json'], { cwd });
    assert.equal(again.code, 0, again.stderr);
    assert.equal(JSON.parse(again.stdout).maskSha256, result.maskSha256);
    assert.equal(resumed, undefined, 'result.json is the run’s, not the resume’s');
  });

  for (const [name, extra, words] of [
    ['a one-shot method', ['--method', 'wanda'], ['--workers', 'wanda', 'ga-magnitude']],
    ['alloc', ['--method', 'alloc'], ['--workers', 'alloc']],
  ] as const) {
    test(`--workers with ${name} is refused in one line, nothing written`, () => {
      const out = join(tmp.dir, `refused-${name.replaceAll(' ', '-')}`);
      const args = weightArgs('ga', ['--workers', '2', ...extra, '--out', out]);
      // The later --method wins in commander; drop the first, and the search settings a one-shot method refuses.
      args.splice(args.indexOf('--method'), 2);
      if (name === 'a one-shot method') {
        args.splice(args.indexOf('--population'), 2);
        args.splice(args.indexOf('--generations'), 2);
      }
      const r = runCli(args);
      assert.ok(!existsSync(out), 'refused before the run directory was made');
      assertOneLineError(r, 'non-zero', ...words);
    });
  }
});
