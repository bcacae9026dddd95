/**
 * `bench/compare-masks.ts` on the real stories260K and TinyStories data: two runs of this checkout write manifests
 * that compare equal; the manifest's hashes are the sha256 of the files the runs wrote, its result values are the
 * result file's, and it holds no time; a manifest with one mask byte, one result value or one method changed
 * compares different, names what differs, and exits 1.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { CALIB, EVAL, MODEL, REPO_ROOT, SHARED_DIR, skipUnlessShared } from '../shared.js';

const SCRIPT = join(REPO_ROOT, 'bench', 'compare-masks.ts');

function compareMasks(args: string[]) {
  return spawnSync(process.execPath, ['--import', 'tsx', SCRIPT, ...args], {
    cwd: REPO_ROOT,
    encoding: 'utf8',
  });
}

/** The parts of a manifest the tests below change. */
interface EditableManifest {
  methods: Record<
    string,
    { masks: Record<string, string>; result: { sha256: string; values: Record<string, number> } }
  >;
}

const sha256 = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');

describe('npm run compare:masks (bench/compare-masks.ts)', {
  skip: skipUnlessShared(MODEL, CALIB, EVAL),
}, () => {
  const dir = mkdtempSync(join(tmpdir(), 'geneprune-compare-masks-test-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  // Its own work folder, so a compare-masks run elsewhere on the machine does not refuse this one.
  const work = join(dir, 'work');
  const only = ['--only', 'heads-ga,weights-magnitude-30-recover', '--shared', SHARED_DIR, '--work', work];

  test('two runs of one checkout give equal manifests of the files the runs wrote, without times', () => {
    for (const out of ['a', 'b']) {
      const r = compareMasks(['--repo', REPO_ROOT, '--out', join(dir, out), ...only]);
      assert.equal(r.status, 0, r.stderr);
    }
    const a = JSON.parse(readFileSync(join(dir, 'a', 'manifest.json'), 'utf8'));
    assert.deepEqual(Object.keys(a.methods), ['heads-ga', 'weights-magnitude-30-recover']);
    const heads = a.methods['heads-ga'];
    const weights = a.methods['weights-magnitude-30-recover'];
    assert.equal(heads.exitCode, 0);
    assert.equal(heads.masks['mask.json'], sha256(join(dir, 'a', 'runs', 'heads-ga', 'mask.json')));
    const wdir = join(dir, 'a', 'runs', 'weights-magnitude-30-recover');
    assert.equal(weights.masks['weight-mask.safetensors'], sha256(join(wdir, 'weight-mask.safetensors')));
    assert.equal(
      weights.weights['recovered-weights.safetensors'],
      sha256(join(wdir, 'recovered-weights.safetensors')),
    );
    const result = JSON.parse(readFileSync(join(wdir, 'result.json'), 'utf8'));
    assert.equal(weights.result.values['eval.perplexity'], result.eval.perplexity);
    assert.equal(weights.result.values.forwardPasses, result.forwardPasses);
    // Every checkout runs a method in the same folder, since runs record it; the work folder is let go after.
    assert.equal(weights.result.values.runDir, join(work, 'weights-magnitude-30-recover'));
    assert.ok(!existsSync(work));
    const evalLines = readFileSync(join(dir, 'a', 'runs', 'heads-ga', 'evals.jsonl'), 'utf8')
      .trim()
      .split('\n');
    assert.equal(heads.evals.lines, evalLines.length);
    assert.ok(JSON.parse(evalLines[0]).ms !== undefined, 'the log has times, which the manifest leaves out');
    const { droppedKeys, ...rest } = a;
    assert.doesNotMatch(JSON.stringify(rest), /"(ms|seconds)"/);
    assert.ok(Object.keys(weights.result.values).every((k) => !/(^|\.)(ms|seconds)$/.test(k)));
    assert.ok(result.seconds > 0, 'the result file has times, the manifest not');
    // The times, and the state file's hash of the timed log (the log itself is compared without them).
    assert.deepEqual(droppedKeys, ['evals.jsonl.bytes', 'evals.jsonl.sha256', 'ms', 'seconds']);

    const same = compareMasks([
      '--compare',
      join(dir, 'a', 'manifest.json'),
      join(dir, 'b', 'manifest.json'),
    ]);
    assert.equal(same.status, 0, same.stdout);
    assert.match(same.stdout, /all 2 methods equal/);
  });

  test('an unknown method name is refused before anything runs', () => {
    const r = compareMasks([
      '--repo',
      REPO_ROOT,
      '--out',
      join(dir, 'refused'),
      '--only',
      'heads-ga,heads-nope',
    ]);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /--only: no method heads-nope \(methods: heads-ga, /);
    assert.ok(!existsSync(join(dir, 'refused')));
  });

  test('a changed mask, result value or method compares different and exits 1', () => {
    const a = join(dir, 'a', 'manifest.json');
    const edited = (name: string, edit: (m: EditableManifest) => void) => {
      const m = JSON.parse(readFileSync(a, 'utf8')) as EditableManifest;
      edit(m);
      const path = join(dir, `${name}.json`);
      writeFileSync(path, JSON.stringify(m));
      return compareMasks(['--compare', a, path]);
    };
    const mask = edited('mask', (m) => {
      m.methods['heads-ga'].masks['mask.json'] = '0'.repeat(64);
    });
    assert.equal(mask.status, 1);
    const row = mask.stdout.split('\n').find((l) => l.startsWith('heads-ga '))!;
    // method, exit, masks, weights, evals, result, other
    assert.deepEqual(row.split(/\s+/).slice(0, 7), [
      'heads-ga',
      'equal',
      'DIFFERENT',
      ...Array(4).fill('equal'),
    ]);
    assert.match(mask.stdout, /1 of 2 methods differ/);

    const value = edited('value', (m) => {
      const r = m.methods['weights-magnitude-30-recover'].result;
      r.sha256 = '1'.repeat(64);
      r.values['eval.perplexity'] += 1e-12;
    });
    assert.equal(value.status, 1);
    assert.match(value.stdout, /weights-magnitude-30-recover .*DIFFERENT.* eval\.perplexity: /);

    const missing = edited('missing', (m) => {
      delete m.methods['heads-ga'];
    });
    assert.equal(missing.status, 1);
    assert.match(missing.stdout, /heads-ga +missing in B/);
  });
});
