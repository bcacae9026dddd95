/**
 * The dashboard on a worker thread of its own, for a process that also runs a search: ONNX Runtime's forward
 * pass holds the main thread's event loop for its whole length (measured: a request made during four 134M-model
 * forwards waited 12.8 s), so a server on that loop would answer only between evaluations. On its own thread it
 * answers at once; it reads only the run's files, and takes the live progress line by message.
 */
import { Worker } from 'node:worker_threads';
import type { Dashboard, DashboardOptions } from './server.js';
import type { FromWorker, ToWorker } from './worker.js';

/**
 * A worker running worker.js beside this module when built; from source (tsx, as the tests and the bench scripts
 * run), worker threads do not inherit tsx's loader, so a two-line bootstrap registers it and imports worker.ts.
 */
function newWorker(options: DashboardOptions): Worker {
  if (!import.meta.url.endsWith('.ts'))
    return new Worker(new URL('./worker.js', import.meta.url), { workerData: options });
  const entry = new URL('./worker.ts', import.meta.url).href;
  const boot = `import('tsx/esm/api').then((t) => { t.register(); return import(${JSON.stringify(entry)}); });`;
  return new Worker(boot, { eval: true, workerData: options });
}

/** Starts the dashboard on its own thread; rejects (with the server's error code) if it cannot listen. */
export function startDashboardThread(options: DashboardOptions): Promise<Dashboard> {
  const worker = newWorker(options);
  const send = (m: ToWorker) => worker.postMessage(m);
  const waiting = new Map<number, () => void>();
  let nextId = 0;
  let closed: Promise<void> | undefined;
  let exited = false;
  const exit = new Promise<void>((resolve) =>
    worker.once('exit', () => {
      exited = true;
      for (const done of waiting.values()) done();
      waiting.clear();
      resolve();
    }),
  );

  return new Promise<Dashboard>((resolve, reject) => {
    worker.once('error', (e) => reject(e));
    worker.on('message', (m: FromWorker) => {
      if (m.kind === 'failed') {
        reject(Object.assign(new Error(m.message), m.code ? { code: m.code } : {}));
        void worker.terminate();
      } else if (m.kind === 'refreshed') {
        waiting.get(m.id)?.();
        waiting.delete(m.id);
      } else if (m.kind === 'listening') {
        resolve({
          url: m.url,
          host: m.host,
          port: m.port,
          setLive(line, search) {
            // One message: the line and its numbers reach the page together.
            if (!exited) send({ kind: 'live', line, ...(search === undefined ? {} : { search }) });
          },
          refresh() {
            if (exited) return Promise.resolve();
            const id = ++nextId;
            return new Promise<void>((done) => {
              waiting.set(id, done);
              send({ kind: 'refresh', id });
            });
          },
          close() {
            if (!closed) {
              if (!exited) send({ kind: 'close' });
              closed = exited ? Promise.resolve() : exit;
            }
            return closed;
          },
        });
      }
    });
  });
}
