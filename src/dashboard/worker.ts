/**
 * The dashboard server's own thread (thread.ts starts it). It runs startDashboard on the options it is given and
 * answers the parent's messages: a live line to show, a refresh to make now, and close. Errors starting the
 * server go back with their code so the caller can name the flag at fault.
 */
import { parentPort, workerData } from 'node:worker_threads';
import type { BlockSearchProgress } from '../spaces/weights/blockwise.js';
import { type DashboardOptions, startDashboard } from './server.js';

export type ToWorker =
  | { kind: 'live'; line: string | null; search?: BlockSearchProgress | null }
  | { kind: 'refresh'; id: number }
  | { kind: 'close' };
export type FromWorker =
  | { kind: 'listening'; url: string; host: string; port: number }
  | { kind: 'failed'; message: string; code?: string }
  | { kind: 'refreshed'; id: number }
  | { kind: 'closed' };

const port = parentPort;
if (!port) throw new Error('dashboard worker: not started as a worker thread');
const post = (m: FromWorker) => port.postMessage(m);

try {
  const d = await startDashboard(workerData as DashboardOptions);
  port.on('message', async (m: ToWorker) => {
    if (m.kind === 'live') d.setLive(m.line, m.search);
    else if (m.kind === 'refresh') {
      await d.refresh();
      post({ kind: 'refreshed', id: m.id });
    } else {
      await d.close();
      post({ kind: 'closed' });
      port.close();
    }
  });
  post({ kind: 'listening', url: d.url, host: d.host, port: d.port });
} catch (e) {
  const err = e as NodeJS.ErrnoException;
  post({ kind: 'failed', message: err.message ?? String(e), ...(err.code ? { code: err.code } : {}) });
  port.close();
}
