/**
 * `geneprune weights --layers` on a decoder (the shared stories260K: one stack, `layers`): only the matrices the
 * pattern selects are pruned (whole blocks and single modules), the sparsity counts over them, and entries the
 * model cannot match are refused in one line without a run directory.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { unpackBits } from '../../src/masks/bitset.js';
import { loadWeightMaskFile } from '../../src/masks/weightfile.js';
import { prunableMatrices } from '../../src/masks/weights.js';
import { openModel } from '../../src/model/open.js';
import { tempDir } from '../checkpoint/helpers.js';
import { assertOneLineError, runCli } from '../helpers/cli.js';
import { smallData } from '../helpers/familycli.js';
import { CALIB, EVAL, MODEL, sharedPath, skipUnlessShared } from '../shared.js';

const skip = skipUnlessShared(MODEL, CALIB, EVAL);
const tmp = tempDir('geneprune-weights-layers-');
after(tmp.cleanup);

describe('weights --layers on a decoder', { skip }, () => {
  const base = () => ['--model', sharedPath(MODEL)!, ...smallData()];

  test('layers.1.mlp,layers.4: those matrices at the sparsity, every other one whole', async () => {
    const out = join(tmp.dir, 'mag');
    const r = runCli([
      'weights',
      ...base(),
      '--method',
      'magnitude',
      '--sparsity',
      '0.5',
      '--layers',
      'layers.1.mlp,layers.4',
      '--json',
      '--out',
      out,
    ]);
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout);
    const spec = (await openModel(sharedPath(MODEL)!)).spec;
    const all = prunableMatrices(spec);
    const chosen = all.filter((m) => (m.layer === 1 && m.role.includes('.mlp.')) || m.layer === 4);
    assert.deepEqual(j.layerPattern, {
      pattern: 'layers.1.mlp,layers.4',
      matrices: chosen.length,
      of: all.length,
    });
    assert.equal(
      j.prunableWeights,
      chosen.reduce((a, m) => a + m.rows * m.cols, 0),
    );
    assert.equal(j.sparsity.achieved, 0.5);
    const { masks } = await loadWeightMaskFile(join(out, 'weight-mask.safetensors'), spec);
    for (const m of all) {
      const off = unpackBits(masks.get(m.role)!).reduce((a, b) => a + (b ? 0 : 1), 0);
      assert.equal(off, chosen.includes(m) ? Math.round(0.5 * m.rows * m.cols) : 0, m.role);
    }
  });

  test('refused: encoder.0 (no such stack), layers.9 (past the end), layers.0.cross (nothing to match)', () => {
    for (const [pattern, mention] of [
      ['encoder.0', 'no stack "encoder"'],
      ['layers.9', 'layers.0 … layers.4'],
      ['layers.0.cross', 'matches no prunable matrix'],
      ['layers', 'is not STACK.N'],
    ]) {
      const out = join(tmp.dir, 'refused');
      const r = runCli(['weights', ...base(), '--sparsity', '0.5', '--layers', pattern, '--out', out]);
      assertOneLineError(r, 'non-zero', '--layers', mention);
      assert.ok(!existsSync(out));
    }
  });
});
