/**
 * `geneprune bench` with the latency model: the predicted prefill speedup is the saved profile's prediction for A's
 * and B's layer shapes (recomputed here from the file), a stored profile gives the same prediction again, one
 * measured at other settings is refused naming the file, and --no-latency-model skips it; a pruned folder with
 * per-layer heads and MLP widths (one layer without MLP) is priced by the shapes its config.json declares.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { writeHfFolder } from '../../src/checkpoint/hf.js';
import { layerShapesOfConfig, predictSeconds, readLatencyProfile } from '../../src/latency/profile.js';
import { llamaSpecToHf } from '../../src/model/llama.js';
import { loadModelSpec } from '../../src/model/load.js';
import { randomLlamaSpec } from '../../src/model/random.js';
import { pruneHeads } from '../../src/prune/heads.js';
import { QUICK_BENCH, storiesWithMask } from '../helpers/benchcli.js';
import { runCli } from '../helpers/cli.js';
import { MODEL, skipUnlessShared } from '../shared.js';

describe('geneprune bench: the latency model', { skip: skipUnlessShared(MODEL) }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'geneprune-latency-bench-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const settings = [...QUICK_BENCH, '--threads', '1'];

  test('predicts from a calibration here, reuses a stored profile, refuses a mismatched one', {
    timeout: 120_000,
  }, async () => {
    const mask = join(dir, 'mask.json');
    const genome = Uint8Array.from({ length: 40 }, (_, g) => (g % 3 ? 1 : 0));
    const model = await storiesWithMask(mask, genome);
    const profilePath = join(dir, 'latency.json');

    const calibrated = runCli([
      'bench',
      '--mask',
      mask,
      ...settings,
      '--save-latency-profile',
      profilePath,
      '--json',
    ]);
    assert.equal(calibrated.code, 0, calibrated.stderr);
    const report = JSON.parse(calibrated.stdout);
    assert.equal(report.latency.profile, 'calibrated');
    const profile = await readLatencyProfile(profilePath);
    const a = predictSeconds(profile, layerShapesOfConfig(model.spec.config));
    const b = predictSeconds(profile, layerShapesOfConfig(pruneHeads(model.spec, genome).config));
    // Either base method prices A at its measured forward.
    assert.ok(Math.abs(a - profile.prefill.denseSeconds) < 1e-12);
    assert.equal(report.latency.predictedSpeedup, a / b);
    assert.equal(report.latency.relativeError, a / b / report.prefillSpeedup - 1);

    const stored = runCli(['bench', '--mask', mask, ...settings, '--latency-profile', profilePath, '--json']);
    assert.equal(stored.code, 0, stored.stderr);
    const again = JSON.parse(stored.stdout);
    assert.equal(again.latency.profile, profilePath);
    assert.equal(again.latency.predictedSpeedup, a / b);

    const text = runCli(['bench', '--mask', mask, ...settings, '--latency-profile', profilePath]);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /latency model \(.*latency\.json\): predicted prefill speedup \d+\.\d{3}x/);

    const otherSeq = settings.map((v, i) => (settings[i - 1] === '--seq' ? '32' : v));
    const refused = runCli(['bench', '--mask', mask, ...otherSeq, '--latency-profile', profilePath]);
    assert.notEqual(refused.code, 0);
    assert.match(
      refused.stderr,
      /^geneprune: .*latency\.json: latency profile measured with seq 16, this run uses 32\n$/,
    );

    const off = runCli(['bench', '--mask', mask, ...settings, '--no-latency-model', '--json']);
    assert.equal(off.code, 0, off.stderr);
    const none = JSON.parse(off.stdout);
    assert.equal(none.latency, undefined);
    assert.equal(none.latencySkipped, 'turned off');
  });

  test('a pruned folder (per-layer heads and widths) against its dense folder', {
    timeout: 120_000,
  }, async () => {
    const shape = {
      hiddenSize: 64,
      numLayers: 2,
      numHeads: 4,
      numKvHeads: 2,
      intermediateSize: 256,
      vocabSize: 64,
      maxPositions: 64,
    };
    const dense = randomLlamaSpec({ ...shape, seed: 1 });
    // Layer 0 keeps heads 0 and 1 (one KV head) and 128 channels; layer 1 keeps its heads and no MLP.
    const pruned = pruneHeads(
      randomLlamaSpec({ ...shape, intermediatePerLayer: [128, 0], seed: 1 }),
      Uint8Array.from([1, 1, 0, 0, 1, 1, 1, 1]),
    );
    const folders = [join(dir, 'dense'), join(dir, 'pruned')];
    for (const [i, spec] of [dense, pruned].entries()) {
      const hf = llamaSpecToHf(spec);
      await writeHfFolder(folders[i], { config: hf.config, tensors: hf.tensors });
    }
    const profilePath = join(dir, 'folders.json');
    const r = runCli([
      'bench',
      '--model',
      folders[0],
      '--model',
      folders[1],
      ...settings,
      '--save-latency-profile',
      profilePath,
      '--json',
    ]);
    assert.equal(r.code, 0, r.stderr);
    const report = JSON.parse(r.stdout);
    const loaded = await loadModelSpec(folders[1]);
    const shapes = layerShapesOfConfig(loaded.config);
    assert.deepEqual(shapes.heads, [2, 4]);
    assert.deepEqual(shapes.kvHeads, [1, 2]);
    assert.deepEqual(shapes.widths, [128, 0]);
    assert.deepEqual(shapes.mlpRuns, [true, false]);
    const profile = await readLatencyProfile(profilePath);
    const t = profile.prefill;
    // By hand from the tables: layer 0 attention at 2 heads less one KV head, MLP at 128; layer 1 attention at 4.
    const at = (h: number) => t.attention.find((l) => l.heads === h)!;
    const mlp128 = t.mlp.find((l) => l.width === 128)!.seconds;
    const layer0 = Math.max(0, at(2).seconds + (1 - at(2).kvHeads) * t.kvHeadSeconds) + mlp128;
    const b = t.base + t.layerScale * (layer0 + at(4).seconds);
    const a = predictSeconds(profile, layerShapesOfConfig(dense.config));
    assert.ok(Math.abs(report.latency.bSeconds - b) < 1e-12);
    assert.equal(report.latency.predictedSpeedup, a / report.latency.bSeconds);
  });
});
