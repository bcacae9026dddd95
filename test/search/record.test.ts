/**
 * The objective record (search/record.ts): plain JSON that round-trips, that names the model by its fingerprint,
 * and whose data hashes tell two objectives over different data apart (and the same data built twice alike).
 * On the real stories260K with the TinyStories calibration and evaluation texts.
 */
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { readDataset } from '../../src/metrics/data.js';
import { tokenizeDocuments } from '../../src/metrics/perplexity.js';
import { modelFingerprint } from '../../src/model/identity.js';
import { type OpenedModel, openModel } from '../../src/model/open.js';
import { type ObjectiveRecord, objectiveRecord } from '../../src/search/record.js';
import { createHeadObjective } from '../../src/spaces/heads/objective.js';
import { createHeadSpace } from '../../src/spaces/heads/space.js';
import { computedObjective } from '../helpers/objective.js';
import { CALIB, EVAL, MODEL, sharedPath, skipUnlessShared } from '../shared.js';

const skip = skipUnlessShared(MODEL, CALIB, EVAL);

describe('the objective record', { skip }, () => {
  let model: OpenedModel;
  let calib: number[];
  let evalStream: number[];
  before(async () => {
    if (skip) return;
    model = await openModel(sharedPath(MODEL)!);
    calib = tokenizeDocuments((await readDataset(sharedPath(CALIB)!)).documents, model.tokenizer);
    evalStream = tokenizeDocuments((await readDataset(sharedPath(EVAL)!)).documents, model.tokenizer);
  });
  const recordOf = async (stream: number[], over: { lowTokens?: number; metric?: 'ppl' | 'kl' } = {}) => {
    const o = await createHeadObjective(model.spec, {
      stream,
      context: 128,
      metric: over.metric ?? 'ppl',
      tokens: 512,
      ...(over.lowTokens ? { lowTokens: over.lowTokens } : {}),
    });
    try {
      return await objectiveRecord(o, { block: 2 });
    } finally {
      await o.release();
    }
  };

  test('round-trips through JSON and holds the model, the space, the metric, the settings and the block', async () => {
    const r = await recordOf(calib, { lowTokens: 256 });
    const back = JSON.parse(JSON.stringify(r)) as ObjectiveRecord;
    assert.deepEqual(back, r);
    assert.equal(r.version, 1);
    assert.equal(r.model.fingerprint, await modelFingerprint(model.spec));
    assert.equal(r.model.shape.numLayers, model.spec.config.numLayers);
    assert.deepEqual(r.space, { unit: 'heads', genes: 40, totalParameters: r.space.totalParameters });
    assert.equal(r.metric, 'ppl');
    assert.equal(r.block, 2);
    assert.equal(r.settings.context, 128);
    assert.equal(r.settings.tokens, 512);
    assert.equal(r.settings.lowTokens, 256);
    assert.ok(Number.isInteger(r.settings.batchSize) && r.settings.batchSize! > 0);
    assert.match(r.data.full, /^[0-9a-f]{64}$/);
    assert.notEqual(r.data.low, r.data.full, 'the low fidelity scores fewer tokens');
  });

  test('objectives over different data give different records; the same data built twice the same', async () => {
    const a = await recordOf(calib);
    const b = await recordOf(evalStream);
    const again = await recordOf(calib);
    assert.deepEqual(again, a);
    assert.notEqual(b.data.full, a.data.full);
    assert.equal(b.model.fingerprint, a.model.fingerprint);
    assert.equal(a.data.low, a.data.full, 'no low fidelity: the same tokens');
    const kl = await recordOf(calib, { metric: 'kl' });
    assert.equal(kl.metric, 'kl');
    assert.equal(kl.data.full, a.data.full, 'the same tokens, another metric');
  });

  test('an objective that createObjective did not make has no record', async () => {
    const o = computedObjective(createHeadSpace(model.spec.config, 1), () => 1);
    await assert.rejects(objectiveRecord(o), /not made by createObjective/);
  });
});
