/**
 * Masks belong to one model, as a user meets it on the command line (real processes, the real stories260K):
 * a mask is refused on a checkpoint whose weights changed anywhere, and on a pruned export of its own model
 * (which it would prune a second time), each with one line saying why; nothing on disk changes.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { openSafetensors } from '../../src/checkpoint/safetensors.js';
import { makeMaskFile } from '../../src/masks/headfile.js';
import { openModel } from '../../src/model/open.js';
import { exportModel } from '../../src/prune/export.js';
import { tempDir } from '../checkpoint/helpers.js';
import { assertOneLineError, runCli, snapshot } from '../helpers/cli.js';
import { EVAL, MODEL, sharedPath, skipUnlessShared } from '../shared.js';

const tmp = tempDir('geneprune-identity-cli-');
after(tmp.cleanup);

const skip = skipUnlessShared(MODEL, EVAL);

/** 10 of 40 heads, unevenly: layers keep 5 7 5 7 6 query heads. */
function unevenGenome(): Uint8Array {
  const removed = [[0, 3, 6], [5], [1, 2, 7], [4], [0, 7]];
  const g = new Uint8Array(40).fill(1);
  removed.forEach((hs, l) => {
    for (const h of hs) g[l * 8 + h] = 0;
  });
  return g;
}

const evalArgs = () => ['--data', sharedPath(EVAL)!, '--max-tokens', '256'];

describe('a mask belongs to one model', { skip }, () => {
  let source: Awaited<ReturnType<typeof openModel>>;
  const maskPath = join(tmp.dir, 'mask.json');
  before(async () => {
    source = await openModel(sharedPath(MODEL)!);
    writeFileSync(maskPath, JSON.stringify(await makeMaskFile(source.spec, unevenGenome())));
  });

  test('why: a mask is refused on a checkpoint whose o_proj changed', async () => {
    // The same weights in a Hugging Face folder: the mask's model, so the mask is accepted there.
    const copy = join(tmp.dir, 'stories-copy');
    await exportModel({ spec: source.spec, tokenizerPath: source.tokenizerPath, out: copy, format: 'hf' });
    const accepted = runCli(['eval', '--model', copy, '--mask', maskPath, ...evalArgs(), '--json']);
    assert.equal(accepted.code, 0, accepted.stderr);

    // One value of layer 3's o_proj changed: the old fingerprint (norms and embedding rows) let this through.
    const weights = join(copy, 'model.safetensors');
    const t = (await openSafetensors(weights)).tensors.get('model.layers.3.self_attn.o_proj.weight')!;
    const bytes = readFileSync(weights);
    bytes.writeFloatLE(bytes.readFloatLE(t.byteOffset + 100) + 0.01, t.byteOffset + 100);
    writeFileSync(weights, bytes);

    const before = { copy: snapshot(copy), mask: snapshot(maskPath) };
    const line = assertOneLineError(
      runCli(['eval', '--model', copy, '--mask', maskPath, ...evalArgs()]),
      'non-zero',
      maskPath,
      'same shape, different weights (fingerprint ',
    );
    assert.match(line, /fingerprint [0-9a-f]{12}… vs [0-9a-f]{12}…\)/);
    const out = join(tmp.dir, 'never');
    assertOneLineError(
      runCli(['export', '--model', copy, '--mask', maskPath, '--out', out]),
      'non-zero',
      maskPath,
      'same shape, different weights',
    );
    assert.ok(!existsSync(out), 'export wrote nothing');
    assert.deepEqual({ copy: snapshot(copy), mask: snapshot(maskPath) }, before, 'no file changed');
  });

  test('why: a mask applied to its own pruned export is refused (eval and export, generate and bench)', async () => {
    const pruned = join(tmp.dir, 'stories260K-25');
    const exported = runCli(['export', '--mask', maskPath, '--out', pruned]);
    assert.equal(exported.code, 0, exported.stderr);
    assert.match(exported.stdout, /query heads {2}5 7 5 7 6/);

    // The export says where it came from, in config.json and in the weights' own metadata.
    const sha = createHash('sha256').update(readFileSync(maskPath)).digest('hex');
    const config = JSON.parse(readFileSync(join(pruned, 'config.json'), 'utf8'));
    const [step] = config.geneprune.lineage;
    assert.equal(config.geneprune.lineage.length, 1);
    assert.equal(step.source.path, sharedPath(MODEL));
    assert.deepEqual(step.source.shape.queryHeads, [8, 8, 8, 8, 8]);
    assert.equal(step.mask.sha256, sha);
    assert.equal(step.mask.removed.length, 10);
    assert.equal(step.mask.path, maskPath);

    const before = { pruned: snapshot(pruned), mask: snapshot(maskPath) };
    const why = `this model is ${sharedPath(MODEL)} pruned with mask sha256 ${sha.slice(0, 16)}`;
    const hint = 'apply the mask to the source model, or search again on the pruned one';
    assertOneLineError(
      runCli(['eval', '--model', pruned, '--mask', maskPath, ...evalArgs()]),
      'non-zero',
      maskPath,
      why,
      hint,
    );
    const again = join(tmp.dir, 'pruned-twice');
    assertOneLineError(
      runCli(['export', '--model', pruned, '--mask', maskPath, '--out', again]),
      'non-zero',
      maskPath,
      why,
      hint,
    );
    assert.ok(!existsSync(again), 'export wrote nothing');
    assertOneLineError(
      runCli(['generate', '--model', pruned, '--mask', maskPath, '-n', '5']),
      'non-zero',
      maskPath,
      why,
    );
    assertOneLineError(
      runCli(['bench', '--model', pruned, '--mask', maskPath, '--runs', '1']),
      'non-zero',
      maskPath,
      why,
    );
    // Another mask made for the source is refused too: the pruned model's heads are not the source's.
    const other = join(tmp.dir, 'other-mask.json');
    const g = Uint8Array.from({ length: 40 }, (_, i) => (i % 5 === 0 ? 0 : 1));
    writeFileSync(other, JSON.stringify(await makeMaskFile(source.spec, g)));
    assertOneLineError(
      runCli(['eval', '--model', pruned, '--mask', other, ...evalArgs()]),
      'non-zero',
      other,
      why,
      hint,
    );
    assert.deepEqual({ pruned: snapshot(pruned), mask: snapshot(maskPath) }, before, 'no file changed');
  });
});
