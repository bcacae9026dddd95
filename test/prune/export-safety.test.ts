/**
 * Export must never destroy what it replaces or sits beside: `--force` is killed with SIGKILL at every rename
 * and `--out` then holds one complete export (the old or the new); an `--out` that is a run directory, or the
 * folder of the model, the mask or the tokenizer, or a parent of one, is refused untouched; a symlinked
 * `--out` is followed and stays a symlink.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import {
  copyFileSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readlinkSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { openHfFolder } from '../../src/checkpoint/hf.js';
import { makeMaskFile } from '../../src/masks/headfile.js';
import { loadModelSpec } from '../../src/model/load.js';
import { exportModel } from '../../src/prune/export.js';
import { tempDir } from '../checkpoint/helpers.js';
import { assertOneLineError, assertUnchanged, runCli, snapshot } from '../helpers/cli.js';
import { MODEL, REPO_ROOT, sharedPath, skipUnlessShared, TOKENIZER } from '../shared.js';
import { tinySpec } from './export-safety-model.js';

const tmp = tempDir('geneprune-export-safety-');
after(tmp.cleanup);

function child(out: string, layers: number, force: boolean, fault?: string) {
  const r = spawnSync(
    process.execPath,
    [
      '--import',
      'tsx',
      join(REPO_ROOT, 'test/prune/export-child.ts'),
      out,
      String(layers),
      ...(force ? ['--force'] : []),
    ],
    {
      cwd: REPO_ROOT,
      env: { ...process.env, GENEPRUNE_FAULT: fault ?? '' },
      encoding: 'utf8',
      timeout: 120_000,
    },
  );
  return { code: r.status, signal: r.signal, stderr: r.stderr };
}

describe('export --force killed with SIGKILL at every rename', () => {
  const ref = { old: join(tmp.dir, 'ref-old'), new: join(tmp.dir, 'ref-new') };
  const OLD = 2;
  const NEW = 3;

  /** Asserts `dir` holds a complete export equal to the reference `which`, and that it loads. */
  async function assertComplete(dir: string, which: 'old' | 'new') {
    assert.deepEqual(readdirSync(dir).sort(), ['config.json', 'generation_config.json', 'model.safetensors']);
    assert.deepEqual(snapshot(dir), snapshot(ref[which]), `${dir} holds the ${which} export`);
    const folder = await openHfFolder(dir);
    assert.equal(folder.config.num_hidden_layers, which === 'old' ? OLD : NEW);
    assert.equal((await loadModelSpec(dir)).config.numLayers, which === 'old' ? OLD : NEW);
  }

  /** A fresh folder `name` whose `out` holds the old export. */
  function oldExportIn(name: string): { parent: string; out: string } {
    const parent = join(tmp.dir, name);
    const out = join(parent, 'out');
    mkdirSync(parent);
    assert.equal(child(out, OLD, false).code, 0);
    return { parent, out };
  }

  /** `export --force` of the new model into `out`, killed with SIGKILL at the fault point `fault`. */
  function killedAt(out: string, fault: string) {
    const r = child(out, NEW, true, fault);
    assert.equal(r.signal, 'SIGKILL', r.stderr);
  }

  /** The folder holding `out`: nothing in it but `out` once the next export has cleaned up. */
  const leftovers = (parent: string) => readdirSync(parent).filter((n) => n !== 'out');

  test('reference exports', async () => {
    await exportModel({ spec: tinySpec(OLD), out: ref.old, format: 'hf' });
    await exportModel({ spec: tinySpec(NEW), out: ref.new, format: 'hf' });
  });

  test('why: a kill before the old --out is moved aside leaves the old export, and the next export removes the partial folder', async () => {
    const { parent, out } = oldExportIn('kill-before-aside');
    killedAt(out, 'export:before-rename-aside');
    await assertComplete(out, 'old');
    assert.ok(
      leftovers(parent).some((n) => n.startsWith('.out.partial-')),
      'the killed run left its partial folder',
    );
    const again = child(out, NEW, true);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stderr, /removed .*\.out\.partial-/);
    await assertComplete(out, 'new');
    assert.deepEqual(leftovers(parent), []);
  });

  test('why: a kill between the two renames loses nothing: the next export puts the old --out back', async () => {
    const { parent, out } = oldExportIn('kill-after-aside');
    killedAt(out, 'export:after-rename-aside');
    // rename(2) cannot swap two folders, so here the old export is complete under its aside name.
    const aside = leftovers(parent).filter((n) => n.startsWith('.out.old-'));
    assert.equal(aside.length, 1);
    await assertComplete(join(parent, aside[0]), 'old');
    // The next export (without --force) restores it first, then refuses to replace it.
    const next = child(out, NEW, false);
    assert.equal(next.code, 1);
    assert.match(next.stderr, /restored .*out/);
    assert.match(next.stderr, /geneprune: --out: .*out is not empty \(use --force to replace it\)/);
    await assertComplete(out, 'old');
    assert.deepEqual(leftovers(parent), [], 'the partial folder of the killed export is gone too');
  });

  test('why: a kill after the new folder is renamed in leaves the new export, and the next export removes the old one', async () => {
    const { parent, out } = oldExportIn('kill-after-in');
    killedAt(out, 'export:after-rename-in');
    await assertComplete(out, 'new');
    assert.ok(leftovers(parent).some((n) => n.startsWith('.out.old-')));
    const next = child(out, OLD, false);
    assert.equal(next.code, 1, 'refused: not empty without --force');
    await assertComplete(out, 'new');
    assert.deepEqual(leftovers(parent), []);
  });

  test('why: --force replaces the old export only once the new one is complete, leaving nothing beside it', async () => {
    const { parent, out } = oldExportIn('no-kill');
    const r = child(out, NEW, true);
    assert.equal(r.code, 0, r.stderr);
    await assertComplete(out, 'new');
    assert.deepEqual(leftovers(parent), []);
  });

  test('why: an --out that is a symlink is followed: the content goes to its target and the link stays', async () => {
    const target = join(tmp.dir, 'link-target');
    const link = join(tmp.dir, 'link-out');
    assert.equal(child(target, OLD, false).code, 0);
    symlinkSync(target, link);
    const r = child(link, NEW, true);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(lstatSync(link).isSymbolicLink(), 'still a symlink');
    assert.equal(readlinkSync(link), target);
    await assertComplete(target, 'new');
    // A dangling link: the folder is created where it points.
    const dangling = join(tmp.dir, 'dangling-link');
    const pointsTo = join(tmp.dir, 'not-yet');
    symlinkSync(pointsTo, dangling);
    assert.equal(child(dangling, OLD, false).code, 0);
    assert.ok(lstatSync(dangling).isSymbolicLink());
    await assertComplete(pointsTo, 'old');
  });
});

describe('dangerous --out folders are refused and left untouched', { skip: skipUnlessShared(MODEL) }, () => {
  // A copy of the model, so a failing guard could only destroy test files.
  const models = join(tmp.dir, 'models');
  const modelDir = join(models, 'stories');
  const model = join(modelDir, 'stories260K.bin');
  const runDir = join(tmp.dir, 'run');
  const maskDir = join(tmp.dir, 'masks');
  const tokDir = join(tmp.dir, 'tok');

  /** Runs export with `args`, expects a one-line refusal naming `dir` and `why`, and no change under `root`. */
  function refused(args: string[], root: string, dir: string, why: RegExp) {
    const before = snapshot(root);
    const line = assertOneLineError(runCli(['export', '--model', model, ...args, '--force']), 2);
    assert.ok(line.startsWith(`geneprune: --out: ${dir} `), line);
    assert.match(line, why);
    assertUnchanged(root, before, 'nothing changed');
  }

  test('setup: a model copy, a run directory with its mask, a mask folder, a tokenizer folder', async () => {
    mkdirSync(modelDir, { recursive: true });
    copyFileSync(sharedPath(MODEL)!, model);
    copyFileSync(sharedPath(TOKENIZER)!, join(modelDir, 'tok512.bin'));
    const spec = await loadModelSpec(model);
    const genome = Uint8Array.from({ length: 40 }, (_, g) => (g % 4 === 0 ? 0 : 1));
    const mask = JSON.stringify(await makeMaskFile(spec, genome));
    mkdirSync(runDir);
    writeFileSync(join(runDir, 'config.json'), JSON.stringify({ kind: 'geneprune-head-search', version: 1 }));
    writeFileSync(join(runDir, 'evals.jsonl'), '{"generation":0}\n');
    writeFileSync(join(runDir, 'mask.json'), mask);
    mkdirSync(maskDir);
    writeFileSync(join(maskDir, 'mask.json'), mask);
    writeFileSync(join(maskDir, 'notes.txt'), 'keep me');
    mkdirSync(tokDir);
    copyFileSync(sharedPath(TOKENIZER)!, join(tokDir, 'tok512.bin'));
    writeFileSync(join(tokDir, 'other.txt'), 'keep me');
  });

  test("why: export --force into the mask's run directory is refused and the run is untouched", () => {
    refused(['--mask', join(runDir, 'mask.json'), '--out', runDir], runDir, runDir, /run directory/);
    // Also when the mask comes from elsewhere: a run directory is never an export target.
    refused(['--mask', join(maskDir, 'mask.json'), '--out', runDir], runDir, runDir, /run directory/);
  });

  test("why: export --force into the model's folder, or a parent of it, is refused", () => {
    refused(['--out', modelDir], modelDir, modelDir, /is the model's folder/);
    refused(['--out', models], models, models, /holds the model's folder/);
  });

  test('why: export --force into the folder of the mask file or of the tokenizer is refused', () => {
    refused(
      ['--mask', join(maskDir, 'mask.json'), '--out', maskDir],
      maskDir,
      maskDir,
      /folder of the mask file/,
    );
    refused(
      ['--tokenizer', join(tokDir, 'tok512.bin'), '--out', tokDir],
      tokDir,
      tokDir,
      /folder of the tokenizer/,
    );
  });

  test('why: a symlink to the run directory is resolved and refused too', () => {
    const link = join(tmp.dir, 'run-link');
    symlinkSync(runDir, link);
    refused(['--mask', join(maskDir, 'mask.json'), '--out', link], runDir, link, /run directory/);
    assert.ok(existsSync(join(runDir, 'evals.jsonl')));
  });
});
