/**
 * What travels on the queue (queue/recipejson.ts, queue/jobs.ts): recipes and any prepared data survive JSON
 * exactly (typed arrays, Maps, bigints, non-finite numbers), code never travels, masks are bit-packed and come
 * back bit for bit, job ids are deterministic and acceptable to BullMQ, results keep a non-finite quality, and a
 * stored recipe is refused when its data, settings, manifest or model do not match — naming which.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { GenepruneError } from '../../src/errors.js';
import type { ModelIdentity } from '../../src/model/identity.js';
import {
  decodeMasks,
  encodeMasks,
  identityOf,
  jobId,
  jobResult,
  rawEvaluation,
  recipeManifest,
  recipeRefusal,
  runIdOf,
  type StoredRecipe,
  travellingRecipe,
  unqueuedMetric,
} from '../../src/queue/jobs.js';
import { fromJson, recipeFromJson, recipeToJson, toJson } from '../../src/queue/recipejson.js';
import type { BlockRecipe, CalibrationRecipe } from '../../src/search/backend.js';

const recipe = (): CalibrationRecipe => ({
  kind: 'calibration',
  model: '/models/tiny.bin',
  config: '{"numLayers":2}',
  target: {},
  options: {
    stream: [1, 5, 9, 2, 7, 1, 3],
    context: 4,
    metric: 'ppl',
    tokens: 6,
    lowTokens: 3,
    batchSize: 2,
    device: 'cpu',
    threads: 2,
  },
});

const model = (fingerprint: string, layers = 2): ModelIdentity => ({
  modelType: 'llama',
  fingerprint,
  shape: { numLayers: layers, hiddenSize: 8, headDim: 4, vocabSize: 32, queryHeads: [2, 2], kvHeads: [2, 2] },
});

describe('recipe JSON', () => {
  test('typed arrays, Maps, bigints and non-finite numbers come back exactly', () => {
    const value = {
      f32: Float32Array.from([0.1, -2.5, 3e-8]),
      i64: BigInt64Array.from([-3n, 2n ** 40n]),
      u8: Uint8Array.from([0, 255, 7]),
      // A view into the middle of a larger buffer: only its own bytes travel.
      view: new Int32Array(Int32Array.from([9, 8, 7, 6]).buffer, 4, 2),
      map: new Map<string, unknown>([
        ['a', Uint16Array.from([1, 2])],
        ['b', { c: [1, null] }],
      ]),
      big: 12345678901234567890n,
      inf: Number.POSITIVE_INFINITY,
      nan: Number.NaN,
      nested: [{ x: -0.5 }, 'text', true, null],
    };
    const back = fromJson(toJson(value), 'test') as typeof value;
    assert.deepEqual(back, { ...value, view: Int32Array.from([8, 7]) });
    assert.ok(
      back.f32 instanceof Float32Array && back.i64 instanceof BigInt64Array && back.map instanceof Map,
    );
    assert.ok(Number.isNaN(back.nan));
  });

  test('a recipe round-trips and its shape is checked on reading', () => {
    const r = recipe();
    assert.deepEqual(recipeFromJson(recipeToJson(r), 'k'), r);
    assert.throws(() => recipeFromJson('{"kind":"other"}', 'geneprune:recipe:x'), /not a geneprune recipe/);
    assert.throws(() => recipeFromJson('{oops', 'geneprune:recipe:x'), GenepruneError);
  });

  test('code never travels: a function is refused', () => {
    assert.throws(
      () => toJson({ options: { hook: () => 1 } }),
      /a recipe holds a function at \$\.options\.hook/,
    );
  });
});

describe('masks', () => {
  test('0/1 masks are bit-packed and decode bit for bit; other values travel as they are', () => {
    const head = Float32Array.from({ length: 37 }, (_, i) => (i % 3 === 0 ? 0 : 1));
    const w = Uint8Array.from({ length: 100 }, (_, i) => ((i * 7) % 5 === 0 ? 0 : 1));
    const e = encodeMasks({ headMask: head, weightMasks: new Map([['wq', w]]) });
    assert.ok(e.head && 'bits' in e.head);
    // 37 bits in 5 bytes: base64 of 5 bytes is 8 characters.
    assert.equal((e.head as { bits: string }).bits.length, 8);
    const back = decodeMasks(JSON.parse(JSON.stringify(e)), 'job');
    assert.deepEqual(back.headMask, head);
    assert.deepEqual(back.weightMasks, new Map([['wq', w]]));
    const soft = Float32Array.from([0.25, 1, 0]);
    assert.deepEqual(decodeMasks(encodeMasks({ headMask: soft }), 'job').headMask, soft);
    assert.deepEqual(decodeMasks(encodeMasks({}), 'job'), {});
  });

  test('a mask of the wrong length is refused', () => {
    assert.throws(
      () => decodeMasks({ head: { n: 40, bits: 'AA==' } }, 'job 7'),
      (e: unknown) => e instanceof GenepruneError && e.oneLine() === 'job 7: a mask of the wrong length',
    );
  });
});

describe('job ids and results', () => {
  test('deterministic, distinct per run, identity, fidelity and masks, and valid for BullMQ', () => {
    const m = encodeMasks({ headMask: Float32Array.from([1, 0, 1]) });
    const run = runIdOf('/runs/a');
    const id = jobId(run, 'ab'.repeat(32), 'low', m);
    assert.equal(
      jobId(
        runIdOf('/runs/a'),
        'ab'.repeat(32),
        'low',
        encodeMasks({ headMask: Float32Array.from([1, 0, 1]) }),
      ),
      id,
    );
    const others = [
      jobId(runIdOf('/runs/b'), 'ab'.repeat(32), 'low', m),
      jobId(run, 'cd'.repeat(32), 'low', m),
      jobId(run, 'ab'.repeat(32), 'full', m),
      jobId(run, 'ab'.repeat(32), 'low', encodeMasks({ headMask: Float32Array.from([1, 1, 1]) })),
    ];
    assert.equal(new Set([id, ...others]).size, 5);
    // BullMQ: a custom id may not be an integer nor hold ':'.
    for (const x of [id, ...others]) {
      assert.ok(!x.includes(':'));
      assert.notEqual(`${Number.parseInt(x, 10)}`, x);
    }
  });

  test('a non-finite quality survives as null plus what it was', () => {
    for (const q of [Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, Number.NaN, 3.25]) {
      const r = JSON.parse(JSON.stringify(jobResult({ quality: q, tokens: 10, forwards: 2, ms: 5 }, 'h:1')));
      assert.equal(r.worker, 'h:1');
      assert.deepEqual(rawEvaluation(r, 'job'), { quality: q, tokens: 10, forwards: 2, ms: 5 });
    }
  });
});

describe('recipe checks (what a worker refuses)', () => {
  type Stored = { manifest: StoredRecipe['manifest']; recipe: CalibrationRecipe };
  const stored = (): { identity: string; s: Stored } => {
    const r = travellingRecipe(recipe());
    const manifest = recipeManifest(r, model('f'.repeat(64)));
    // As a worker reads it back from Redis.
    return {
      identity: identityOf(manifest),
      s: fromJson(toJson({ manifest, recipe: r }), 'k') as Stored,
    };
  };

  test('the device and threads do not travel and do not change the identity', () => {
    const a = recipeManifest(travellingRecipe(recipe()), model('f'.repeat(64)));
    const other = recipe();
    other.options.device = 'cuda';
    other.options.threads = 7;
    assert.equal(identityOf(recipeManifest(travellingRecipe(other), model('f'.repeat(64)))), identityOf(a));
    assert.equal((travellingRecipe(other) as CalibrationRecipe).options.threads, undefined);
    const changed = recipe();
    changed.options.tokens = 5;
    assert.notEqual(
      identityOf(recipeManifest(travellingRecipe(changed), model('f'.repeat(64)))),
      identityOf(a),
    );
  });

  test('a matching recipe and model pass', () => {
    const { identity, s } = stored();
    assert.equal(recipeRefusal(identity, s, model('f'.repeat(64)), '/m'), undefined);
  });

  test('altered data, altered settings, an altered manifest and another model are each named', () => {
    const { identity, s } = stored();
    const data = structuredClone(s);
    data.recipe.options.stream[2] = 10;
    assert.match(recipeRefusal(identity, data, model('f'.repeat(64)), '/m') ?? '', /^data sha256 differs/);
    const settings = structuredClone(s);
    settings.recipe.options.context = 8;
    assert.match(recipeRefusal(identity, settings, model('f'.repeat(64)), '/m') ?? '', /^settings differ/);
    // Data and manifest altered together: the manifest no longer hashes to the job's identity.
    const both = structuredClone(s);
    both.recipe.options.stream[2] = 10;
    both.manifest = recipeManifest(both.recipe, both.manifest.model);
    assert.match(
      recipeRefusal(identity, both, model('f'.repeat(64)), '/m') ?? '',
      /not to the job's identity/,
    );
    assert.match(
      recipeRefusal(identity, s, model('e'.repeat(64)), '/mine') ?? '',
      /^model fingerprint differs: the search's ffffffffffff…, this worker's eeeeeeeeeeee… \(\/mine: same shape, different weights\)/,
    );
    assert.match(
      recipeRefusal(identity, s, model('e'.repeat(64), 3), '/mine') ?? '',
      /model fingerprint differs.*layers/,
    );
  });
});

describe('metrics that run code', () => {
  test('pass@1 never goes over a queue: refused by the search and by a worker reading such a recipe', () => {
    assert.equal(unqueuedMetric('ppl'), undefined);
    assert.equal(unqueuedMetric('bleu'), undefined);
    assert.match(unqueuedMetric('pass@1') ?? '', /not over a queue/);
    const r = travellingRecipe({ ...recipe(), options: { ...recipe().options, metric: 'pass@1' } });
    const manifest = recipeManifest(r, model('f'.repeat(64)));
    const stored = { manifest, recipe: r };
    assert.match(
      recipeRefusal(identityOf(manifest), stored, model('f'.repeat(64)), '/m') ?? '',
      /not over a queue/,
    );
  });
});

describe('block recipes (block-wise weight searches)', () => {
  const block = (): BlockRecipe => ({
    kind: 'block',
    model: '/models/tiny.bin',
    config: '{"numLayers":2}',
    metric: 'ppl',
    layer: 1,
    matrices: [
      { role: 'l0.wq', layer: 0, rows: 2, cols: 3 },
      { role: 'l1.wq', layer: 1, rows: 2, cols: 3 },
    ],
    batches: [
      {
        batch: 1,
        seq: 3,
        ids: BigInt64Array.from([1n, 2n, 3n]),
        targets: BigInt64Array.from([2n, 3n, -100n]),
      },
    ],
    fixed: [['l0.wq', Uint8Array.from([0b101101])]],
    engine: { device: 'cpu', threads: 3 },
  });
  const m = model('a'.repeat(64));

  test('a block recipe round-trips (typed batches and packed masks) and names its block in the identity', () => {
    const r = travellingRecipe(block());
    assert.deepEqual(recipeFromJson(recipeToJson(r), 'k'), r);
    assert.deepEqual((r as BlockRecipe).engine, {});
    const manifest = recipeManifest(r, m);
    assert.equal(manifest.block, 1);
    const other = travellingRecipe({ ...block(), layer: 0 });
    assert.notEqual(identityOf(recipeManifest(other, m)), identityOf(manifest));
  });

  test('altered batches or fixed masks are refused as data, nothing else as data', () => {
    const r = travellingRecipe(block());
    const manifest = recipeManifest(r, m);
    const id = identityOf(manifest);
    const back = () =>
      fromJson(toJson({ manifest, recipe: r }), 'k') as { manifest: typeof manifest; recipe: BlockRecipe };
    assert.equal(recipeRefusal(id, back(), m, '/m'), undefined);
    const batches = back();
    batches.recipe.batches[0].ids[1] = 9n;
    assert.match(recipeRefusal(id, batches, m, '/m') ?? '', /^data sha256 differs/);
    const fixed = back();
    fixed.recipe.fixed[0][1][0] = 0;
    assert.match(recipeRefusal(id, fixed, m, '/m') ?? '', /^data sha256 differs/);
    const layout = back();
    layout.recipe.matrices[0].rows = 3;
    assert.match(recipeRefusal(id, layout, m, '/m') ?? '', /^settings differ/);
  });
});
