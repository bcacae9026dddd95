/**
 * Masks belong to one model, as a user meets it on the command line (real processes, the real stories260K):
 * a mask is refused on a checkpoint whose weights changed anywhere, and on a pruned export of its own model
 * (which it would prune a second time), each with one line saying why; nothing on disk changes.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { openSafetensors } from '../../src/checkpoint/safetensors.js';
import { openModel } from '../../src/model/open.js';
import { exportModel } from '../../src/prune/export.js';
import { makeMaskFile } from '../../src/search/maskfile.js';
import { tempDir } from '../checkpoint/helpers.js';
import { REPO_ROOT, SHARED_DIR, sharedPath, skipUnlessShared } from '../shared.js';

const tmp = tempDir('geneprune-identity-cli-');
after(tmp.cleanup);

const MODEL = 'models/stories260K/stories260K.bin';
const EVAL = 'data/tinystories/eval';
const skip = skipUnlessShared(MODEL) || skipUnlessShared(EVAL);

interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

function runCli(args: string[]): CliResult {
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'src/cli/main.ts'), ...args], {
    cwd: REPO_ROOT,
    encoding: 'utf8',
    env: {
      ...process.env,
      GENEPRUNE_MODELS: join(SHARED_DIR, 'models'),
      GENEPRUNE_CACHE: join(tmp.dir, 'cache'),
      HF_ENDPOINT: 'http://127.0.0.1:9',
    },
    timeout: 120_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Exactly one stderr line, starting `geneprune: `, containing every `mentions`; exit ≠ 0; no stdout. */
function assertOneLineError(r: CliResult, ...mentions: string[]): string {
  assert.notEqual(r.code, 0, `expected a failure, got exit 0 with ${r.stdout}`);
  const lines = r.stderr.split('\n').filter((l) => l.trim() !== '');
  assert.equal(lines.length, 1, `expected one error line, got:\n${r.stderr}`);
  assert.match(lines[0], /^geneprune: /);
  for (const m of mentions) assert.ok(lines[0].includes(m), `"${lines[0]}" should mention "${m}"`);
  assert.equal(r.stdout, '');
  return lines[0];
}

/** Every file under `dir` (or the file itself) with the sha256 of its bytes. */
function snapshot(path: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (p: string, rel: string) => {
    if (statSync(p).isDirectory()) {
      for (const name of readdirSync(p).sort()) walk(join(p, name), rel ? `${rel}/${name}` : name);
    } else {
      out[rel || '.'] = createHash('sha256').update(readFileSync(p)).digest('hex');
    }
  };
  walk(path, '');
  return out;
}

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
      maskPath,
      'same shape, different weights (fingerprint ',
    );
    assert.match(line, /fingerprint [0-9a-f]{12}… vs [0-9a-f]{12}…\)/);
    const out = join(tmp.dir, 'never');
    assertOneLineError(
      runCli(['export', '--model', copy, '--mask', maskPath, '--out', out]),
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
      maskPath,
      why,
      hint,
    );
    const again = join(tmp.dir, 'pruned-twice');
    assertOneLineError(
      runCli(['export', '--model', pruned, '--mask', maskPath, '--out', again]),
      maskPath,
      why,
      hint,
    );
    assert.ok(!existsSync(again), 'export wrote nothing');
    assertOneLineError(runCli(['generate', '--model', pruned, '--mask', maskPath, '-n', '5']), maskPath, why);
    assertOneLineError(
      runCli(['bench', '--model', pruned, '--mask', maskPath, '--runs', '1']),
      maskPath,
      why,
    );
    // Another mask made for the source is refused too: the pruned model's heads are not the source's.
    const other = join(tmp.dir, 'other-mask.json');
    const g = Uint8Array.from({ length: 40 }, (_, i) => (i % 5 === 0 ? 0 : 1));
    writeFileSync(other, JSON.stringify(await makeMaskFile(source.spec, g)));
    assertOneLineError(runCli(['eval', '--model', pruned, '--mask', other, ...evalArgs()]), other, why, hint);
    assert.deepEqual({ pruned: snapshot(pruned), mask: snapshot(maskPath) }, before, 'no file changed');
  });
});
