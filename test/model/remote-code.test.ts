/**
 * python/modeling_geneprune.py, the Python classes compact decoder exports ship: it is valid Python (python3 -m
 * py_compile; skipped with a message where python3 is absent, and it needs neither torch nor transformers to
 * compile), the path export copies it from is that file, every class `auto_map` can name is defined in it, and
 * `package.json` ships its folder. Loading it in transformers is the dev-time cross-check's job
 * (test/crosscheck/hf_export.py), as CI has no torch.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { MODELING_FILE, modelingFilePath, remoteCodeAutoMap } from '../../src/model/remote-code.js';
import { tempDir } from '../checkpoint/helpers.js';

const tmp = tempDir('geneprune-remote-code-');
after(tmp.cleanup);
const shipped = fileURLToPath(new URL(`../../python/${MODELING_FILE}`, import.meta.url));
const hasPython = spawnSync('python3', ['--version']).status === 0;

test('the shipped modeling file compiles with python3 -m py_compile', {
  skip: !hasPython && 'python3 is not installed',
}, () => {
  // A copy, so the compiled __pycache__ lands in a temporary folder, not in python/.
  const copy = join(tmp.dir, MODELING_FILE);
  copyFileSync(shipped, copy);
  const r = spawnSync('python3', ['-m', 'py_compile', copy], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
});

test('export copies python/modeling_geneprune.py, and package.json ships python/', () => {
  assert.equal(modelingFilePath(), shipped);
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8'));
  assert.ok(pkg.files.includes('python'), 'package.json "files" lists python');
});

test('auto_map names a class the file defines, only for a decoder config with per-layer sizes', () => {
  const source = readFileSync(shipped, 'utf8');
  for (const type of ['llama', 'mistral', 'qwen2', 'gemma', 'gemma2', 'gpt2', 'qwen3', 'phi3', 'opt']) {
    const map = remoteCodeAutoMap({ model_type: type, num_attention_heads_per_layer: [1, 2] });
    assert.ok(map, type);
    const [file, cls] = map.AutoModelForCausalLM.split('.');
    assert.equal(`${file}.py`, MODELING_FILE);
    assert.match(source, new RegExp(`^class ${cls}\\(`, 'm'), `${cls} in ${MODELING_FILE}`);
  }
  assert.equal(remoteCodeAutoMap({ model_type: 'llama' }), undefined, 'stock sizes need no remote code');
  assert.equal(remoteCodeAutoMap({ model_type: 'bert', num_attention_heads_per_layer: [1] }), undefined);
  assert.equal(remoteCodeAutoMap({ model_type: 't5', num_attention_heads_per_layer: [1] }), undefined);
});
