/**
 * One evaluation worker of a `--workers N` pool (pool.ts). Told a recipe, it opens the model file, checks it is
 * the model the main thread holds and builds the recipe's scorer (backend.ts buildRecipeScorer: the scorer a
 * single-process run builds, from the data and settings it was sent); then scores the masks it is sent on its own
 * ONNX session. The thread outlives a recipe: told the next one (a block search's next block), it frees the old
 * scorer's sessions and builds the new one. Messages are handled one at a time, in the order sent.
 */
import { parentPort } from 'node:worker_threads';
import { GenepruneError } from '../errors.js';
import type { CalibrationScorer } from '../metrics/scorers.js';
import { buildRecipeScorer } from './backend.js';
import type { FromPoolWorker, SentError, ToPoolWorker } from './pool.js';

/**
 * Where the messages come from: the parent process's IPC channel (the pool's workers are child processes), or a
 * thread's parent port when started as a worker thread.
 */
const port = parentPort ?? {
  postMessage: (m: FromPoolWorker) => {
    if (process.connected) process.send!(m);
  },
  on: (_event: 'message', f: (m: ToPoolWorker) => void) => process.on('message', f),
  close: () => process.disconnect(),
};
// The search that started this worker is gone (killed, or it ended without asking): nothing will ask for scores.
process.on('disconnect', () => process.exit(0));
if (!parentPort) {
  // A terminal's Ctrl-C reaches every process of the foreground group, this one too: the process that started it
  // decides (a `geneprune worker` lets its active job finish, then ends its workers; a search that dies of the
  // signal disconnects, which ends this one above).
  process.on('SIGINT', () => {});
  process.on('SIGTERM', () => {});
}
const send = (m: FromPoolWorker) => port.postMessage(m);

function sent(e: unknown): SentError {
  if (e instanceof GenepruneError)
    return { message: e.message, kind: e.kind, ...(e.where !== undefined ? { where: e.where } : {}) };
  return { message: e instanceof Error ? e.message : String(e) };
}

let scorer: CalibrationScorer | undefined;

async function handle(m: ToPoolWorker): Promise<void> {
  if (m.kind === 'score') {
    if (!scorer) {
      send({ kind: 'failed', id: m.id, error: { message: 'no recipe loaded' } });
      return;
    }
    const t0 = performance.now();
    try {
      const result = await scorer.score(m.masks, m.fidelity);
      send({ kind: 'scored', id: m.id, result: { ...result, ms: performance.now() - t0 } });
    } catch (e) {
      send({ kind: 'failed', id: m.id, error: sent(e) });
    }
    return;
  }
  // 'load', 'unload' or 'end': the scorer held so far goes first (its sessions are this thread's memory).
  const old = scorer;
  scorer = undefined;
  await old?.runner.release().catch(() => {});
  if (m.kind === 'unload') return;
  if (m.kind === 'end') {
    // Nothing left to hold the thread: it ends by itself once this returns, its sessions already freed.
    port.close();
    return;
  }
  try {
    scorer = (await buildRecipeScorer(m.recipe)).scorer;
    send({ kind: 'ready', ...(m.sendRecord && scorer.record ? { record: scorer.record } : {}) });
  } catch (e) {
    send({ kind: 'failed', error: sent(e) });
  }
}

// One message at a time, in order: a score runs to its end before the next message is handled (session.run
// blocks the thread anyway), and a recipe is built only after the scores sent before it.
let chain = Promise.resolve();
port.on('message', (m: ToPoolWorker) => {
  chain = chain.then(() => handle(m));
});
