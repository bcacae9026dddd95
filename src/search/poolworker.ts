/**
 * One evaluation worker of a `--workers N` pool (pool.ts): opens the model file, checks it is the model the main
 * thread holds, builds the metric's calibration scorer from the data and settings it was sent — the scorer a
 * single-process run builds — and scores the masks it is sent, one at a time, on its own ONNX session.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { GenepruneError } from '../errors.js';
import { buildRecipeScorer } from './backend.js';
import type { FromPoolWorker, PoolWorkerData, SentError, ToPoolWorker } from './pool.js';

const data = workerData as PoolWorkerData;
const port = parentPort!;
const send = (m: FromPoolWorker) => port.postMessage(m);

function sent(e: unknown): SentError {
  if (e instanceof GenepruneError)
    return { message: e.message, kind: e.kind, ...(e.where !== undefined ? { where: e.where } : {}) };
  return { message: e instanceof Error ? e.message : String(e) };
}

buildRecipeScorer(data.recipe).then(
  ({ scorer }) => {
    // One message at a time: a score runs to its end before the next message is read (session.run blocks).
    port.on('message', (m: ToPoolWorker) => {
      const t0 = performance.now();
      scorer.score(m.masks, m.fidelity).then(
        (result) => send({ kind: 'scored', id: m.id, result: { ...result, ms: performance.now() - t0 } }),
        (e) => send({ kind: 'failed', id: m.id, error: sent(e) }),
      );
    });
    send({ kind: 'ready', ...(data.sendRecord && scorer.record ? { record: scorer.record } : {}) });
  },
  (e) => send({ kind: 'failed', error: sent(e) }),
);
