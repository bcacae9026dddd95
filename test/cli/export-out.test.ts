/**
 * Export never destroys an input (issue #18, round two). Every `--out` the audit found destructive, and every
 * other combination of the command's inputs with `--out` and `--force`, is run as a user runs it: the refusal is
 * one line naming `--out`, and every input file is byte-identical afterwards. `--force` replaces only a previous
 * export (its config.json carries a geneprune provenance record) holding nothing else, never the working directory.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { makeMaskFile } from '../../src/masks/headfile.js';
import { removedList } from '../../src/masks/heads.js';
import { writeRecoveredWeights } from '../../src/masks/recovered.js';
import { writeWeightMaskFile } from '../../src/masks/weightfile.js';
import { weightMasksFromKeeps } from '../../src/masks/weights.js';
import { loadModelSpec } from '../../src/model/load.js';
import { RANDOM } from '../../src/spaces/weights/baselines.js';
import { createWeightSpace } from '../../src/spaces/weights/space.js';
import { createRng } from '../../src/util/rng.js';
import { tempDir } from '../checkpoint/helpers.js';
import { assertOneLineError, assertUnchanged, type CliResult, runCli, snapshot } from '../helpers/cli.js';
import { CALIB, MODEL, sharedPath, skipUnlessShared, TOKENIZER } from '../shared.js';

const tmp = tempDir('geneprune-export-out-');
after(tmp.cleanup);
const skip = skipUnlessShared(MODEL, TOKENIZER, CALIB);

/** A refusal of `--out`: one line `geneprune: --out: OUT …` matching `why`, exit 2. */
function assertOutRefused(r: CliResult, out: string, why: RegExp, context: string): void {
  const line = assertOneLineError(r, 2);
  assert.ok(line.startsWith(`geneprune: --out: ${out} `), `${context}: ${line}`);
  assert.match(line, why, context);
}

describe('export: no --out, with or without --force, touches an input', { skip }, () => {
  // Copies of everything, each in a folder of its own under `root`, so a failing guard destroys only test files.
  const root = join(tmp.dir, 'inputs');
  const model = join(root, 'model', 'stories260K.bin');
  const tokenizer = join(root, 'tok', 'tok512.bin');
  const mask = join(root, 'masks', 'mask.json');
  const recovered = join(root, 'rec', 'recovered-weights.safetensors');
  const weightMask = join(root, 'wmask', 'weight-mask.safetensors');
  const calib = join(root, 'calib');

  before(async () => {
    for (const d of ['model', 'tok', 'masks', 'rec', 'wmask', 'calib'])
      mkdirSync(join(root, d), { recursive: true });
    copyFileSync(sharedPath(MODEL)!, model);
    copyFileSync(sharedPath(TOKENIZER)!, join(root, 'model', 'tok512.bin'));
    copyFileSync(sharedPath(TOKENIZER)!, tokenizer);
    copyFileSync(join(sharedPath(CALIB)!, 'page-00.txt'), join(calib, 'page-00.txt'));
    const spec = await loadModelSpec(model);
    const genome = Uint8Array.from({ length: 40 }, (_, g) => (g % 4 === 0 ? 0 : 1));
    writeFileSync(mask, JSON.stringify(await makeMaskFile(spec, genome)));
    const maskSha = createHash('sha256').update(readFileSync(mask)).digest('hex');
    // o of every layer (each loses heads), as a `heads --recover` run writes it; the values are the model's own.
    const roles = Array.from({ length: 5 }, (_, l) => `layers.${l}.attn.o.weight`);
    await writeRecoveredWeights(
      recovered,
      spec,
      spec,
      roles,
      { kind: 'head', sha256: maskSha, removed: removedList(spec.config, genome) },
      0.01,
    );
    const space = createWeightSpace(spec);
    const { keeps } = await RANDOM.select({
      spec,
      matrices: space.matrices,
      sparsity: 0.5,
      rng: createRng(1),
      calibration: { stream: [], context: 1, tokens: 0 },
    });
    await writeWeightMaskFile(weightMask, spec, weightMasksFromKeeps(space.matrices, keeps));
  });

  /** Each command with its inputs: the files it reads, and the folders they are in. */
  const commands = (): Array<{ name: string; args: string[]; inputs: string[] }> => [
    {
      name: 'head mask + recovered weights',
      args: ['--model', model, '--tokenizer', tokenizer, '--mask', mask, '--recovered', recovered],
      inputs: [model, tokenizer, mask, recovered],
    },
    {
      name: 'weight mask',
      args: ['--model', model, '--weight-mask', weightMask],
      inputs: [model, weightMask],
    },
    {
      name: 'recover on calibration data',
      args: ['--model', model, '--mask', mask, '--recover', '--calib', calib, '--calib-tokens', '256'],
      inputs: [model, mask, calib, join(calib, 'page-00.txt')],
    },
  ];

  test('setup: each command succeeds with a fresh --out (so a refusal below is the --out guard alone)', () => {
    for (const [i, c] of commands().entries()) {
      const out = join(tmp.dir, `fresh-${i}`);
      const r = runCli(['export', ...c.args, '--out', out]);
      assert.equal(r.code, 0, `${c.name}: ${r.stderr}`);
      assert.ok(existsSync(join(out, 'config.json')));
    }
  });

  test('why: every input, its folder, and the folder holding them all are refused as --out, --force or not', () => {
    const before = snapshot(root);
    let refusals = 0;
    for (const c of commands()) {
      const outs = new Set([...c.inputs, ...c.inputs.map((p) => dirname(p)), root]);
      for (const out of outs) {
        for (const force of [false, true]) {
          const r = runCli(['export', ...c.args, '--out', out, ...(force ? ['--force'] : [])]);
          const context = `${c.name}, --out ${out}${force ? ' --force' : ''}`;
          assertOutRefused(r, out, /refusing to (replace it|write there)/, context);
          refusals++;
        }
      }
    }
    assertUnchanged(root, before, 'every input file is byte-identical');
    // 9 places for the first command, 5 for the second, 7 for the third; each with and without --force.
    assert.equal(refusals, 2 * (9 + 5 + 7));
  });

  test('why: the audit cases name the input they protect', () => {
    const before = snapshot(root);
    const recover = [
      '--model',
      model,
      '--mask',
      mask,
      '--recover',
      '--calib',
      calib,
      '--out',
      calib,
      '--force',
    ];
    assertOutRefused(runCli(['export', ...recover]), calib, /is the folder of the calibration data/, 'calib');
    const rec = [
      '--model',
      model,
      '--mask',
      mask,
      '--recovered',
      recovered,
      '--out',
      dirname(recovered),
      '--force',
    ];
    assertOutRefused(
      runCli(['export', ...rec]),
      dirname(recovered),
      /is the folder of the recovered-weights file/,
      'recovered',
    );
    assertOutRefused(
      runCli(['export', '--model', model, '--weight-mask', weightMask, '--out', weightMask, '--force']),
      weightMask,
      /is the weight-mask file/,
      'weight mask',
    );
    assertUnchanged(root, before);
  });
});

describe('export --force replaces only a previous export', { skip }, () => {
  const model = () => sharedPath(MODEL)!;
  const exportTo = (out: string, ...extra: string[]) =>
    runCli(['export', '--model', model(), '--out', out, ...extra]);

  test('why: `cd DIR && export --force --out .` is refused, whatever DIR holds; so is a parent of DIR', () => {
    const userDir = join(tmp.dir, 'cwd-user');
    mkdirSync(userDir);
    writeFileSync(join(userDir, 'notes.txt'), 'my notes');
    const exportDir = join(tmp.dir, 'cwd-export');
    assert.equal(exportTo(exportDir, '--format', 'hf').code, 0);
    for (const dir of [userDir, exportDir]) {
      const parent = dirname(dir);
      const before = snapshot(parent);
      const here = runCli(['export', '--model', model(), '--force', '--out', '.'], { cwd: dir });
      assertOutRefused(
        here,
        dir,
        /^geneprune: --out: \S+ is the working directory: refusing to replace it/,
        dir,
      );
      const up = runCli(['export', '--model', model(), '--force', '--out', '..'], { cwd: dir });
      assertOutRefused(up, parent, new RegExp(`holds the working directory \\(${dir}\\)`), dir);
      assertUnchanged(parent, before, `${parent} unchanged`);
    }
  });

  test('why: a folder holding other files, or a model folder geneprune did not write, is refused with --force', () => {
    const user = join(tmp.dir, 'user-files');
    mkdirSync(join(user, 'photos'), { recursive: true });
    writeFileSync(join(user, 'notes.txt'), 'keep');
    const foreignModel = join(tmp.dir, 'someone-elses-model');
    mkdirSync(foreignModel);
    writeFileSync(join(foreignModel, 'config.json'), JSON.stringify({ model_type: 'llama' }));
    writeFileSync(join(foreignModel, 'model.safetensors'), 'weights');
    const exportPlus = join(tmp.dir, 'export-plus-readme');
    assert.equal(exportTo(exportPlus).code, 0);
    writeFileSync(join(exportPlus, 'README.md'), 'my notes about this export');
    const cases: Array<[string, RegExp]> = [
      [
        user,
        /holds files an export does not write \(notes\.txt, photos\): --force replaces only a previous export$/,
      ],
      [foreignModel, /is not a geneprune export \(its config\.json has no geneprune provenance\)/],
      [exportPlus, /holds files an export does not write \(README\.md\)/],
    ];
    for (const [dir, why] of cases) {
      const before = snapshot(dir);
      assertOutRefused(exportTo(dir, '--force'), dir, why, dir);
      assertUnchanged(dir, before);
    }
  });

  test('a previous export is replaced with --force (an unpruned one too: every export carries provenance)', () => {
    const out = join(tmp.dir, 'replaced');
    assert.equal(exportTo(out, '--format', 'hf').code, 0);
    const first = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'));
    assert.deepEqual(first.geneprune, { format: 'geneprune-provenance', version: 1, lineage: [] });
    const again = exportTo(out, '--format', 'transformersjs', '--force');
    assert.equal(again.code, 0, again.stderr);
    assert.ok(existsSync(join(out, 'onnx', 'model.onnx')), 'the new export is in place');
    assert.ok(!existsSync(join(out, 'model.safetensors')), 'the old one is gone');
  });

  test('a pruned compact export, modeling_geneprune.py included, is replaced with --force', async () => {
    const mask = join(tmp.dir, 'force-mask', 'mask.json');
    mkdirSync(dirname(mask));
    const spec = await loadModelSpec(model());
    const genome = Uint8Array.from({ length: 40 }, (_, g) => (g % 5 === 0 ? 0 : 1));
    writeFileSync(mask, JSON.stringify(await makeMaskFile(spec, genome)));
    const out = join(tmp.dir, 'replaced-pruned');
    assert.equal(exportTo(out, '--mask', mask, '--format', 'hf').code, 0);
    assert.ok(existsSync(join(out, 'modeling_geneprune.py')));
    const again = exportTo(out, '--mask', mask, '--hf-layout', 'padded', '--force');
    assert.equal(again.code, 0, again.stderr);
    assert.ok(!existsSync(join(out, 'modeling_geneprune.py')), 'the padded export needs no remote code');
    assert.ok(existsSync(join(out, 'onnx', 'model.onnx')), 'the new export is in place');
  });
});
