/**
 * The live dashboard: a fastify server that follows one run directory (watch.ts) and serves one page, its
 * script and Vega builds from node_modules, `/api/state` (the whole view as JSON) and `/events` (server-sent
 * events: a snapshot when a client connects, then every change as it is read from the files; a client that
 * reconnects with Last-Event-ID gets what it missed, or a fresh snapshot when that is no longer held).
 *
 * It binds 127.0.0.1 unless told another address, and unless remote clients are allowed (the CLI allows them
 * only when --host is given) it answers only requests from a loopback address that name this machine in their
 * Host header (a page on another site cannot reach it through a rebound DNS name). Nothing is fetched from
 * elsewhere; the page's content security policy keeps it that way.
 */

import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import { isIP } from 'node:net';
import Fastify, { type FastifyInstance } from 'fastify';
import { PAGE_CSS, PAGE_HTML, PAGE_SCRIPT } from './page.js';
import { progressField, progressSpec, scatterSpec } from './specs.js';
import { type RunChange, type RunWatcher, type Snapshot, watchRun } from './watch.js';

export interface DashboardOptions {
  runDir: string;
  /** 0 or absent: a free port. */
  port?: number;
  /** Address to bind; default 127.0.0.1. */
  host?: string;
  /** Answer clients on other machines; default: only when `host` is given. */
  allowRemote?: boolean;
  /** How often the run's files are looked at, in milliseconds (default 250). */
  pollMs?: number;
}

export interface Dashboard {
  url: string;
  host: string;
  port: number;
  /** A line from the process running the search, shown under the progress bar. */
  setLive(line: string | null): void;
  /** Reads the run's files now and sends what changed (the server also does so every pollMs). */
  refresh(): Promise<void>;
  close(): Promise<void>;
}

export const DEFAULT_HOST = '127.0.0.1';
const BUFFERED_EVENTS = 2000;
const HEARTBEAT_MS = 15_000;

/** Whether a socket's remote address is this machine's loopback (IPv4 127/8, IPv6 ::1, or IPv4-mapped). */
export function isLoopbackAddress(address: string | undefined): boolean {
  if (!address) return false;
  const v4 = address.startsWith('::ffff:') ? address.slice(7) : address;
  if (isIP(v4) === 4) return v4.split('.')[0] === '127';
  return address === '::1' || address === '0:0:0:0:0:0:0:1';
}

/** Whether a Host header names this machine's loopback (localhost, 127/8, [::1]), with or without a port. */
export function isLoopbackHostHeader(host: string | undefined): boolean {
  if (!host) return false;
  const name = host.startsWith('[') ? host.slice(1, host.indexOf(']')) : host.replace(/:\d+$/, '');
  return name.toLowerCase() === 'localhost' || isLoopbackAddress(name);
}

/** Whether a request may be answered: any, when remote clients are allowed; else only this machine's own. */
export function requestAllowed(
  allowRemote: boolean,
  remoteAddress: string | undefined,
  hostHeader: string | undefined,
): boolean {
  return allowRemote || (isLoopbackAddress(remoteAddress) && isLoopbackHostHeader(hostHeader));
}

const SECURITY_HEADERS = {
  // Vega compiles its expressions with Function, hence 'unsafe-eval'; no inline script, no other origin.
  'content-security-policy':
    "default-src 'none'; script-src 'self' 'unsafe-eval'; style-src 'self' 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
};

const ASSETS: Record<string, string> = {
  'vega.min.js': 'vega/build/vega.min.js',
  'vega-lite.min.js': 'vega-lite/build/vega-lite.min.js',
};

function urlOf(host: string, port: number): string {
  const shown = host === '0.0.0.0' || host === '::' ? DEFAULT_HOST : host;
  return `http://${isIP(shown) === 6 ? `[${shown}]` : shown}:${port}/`;
}

interface SentEvent {
  seq: number;
  name: 'snapshot' | 'append';
  data: string;
}

/** Starts the dashboard for `runDir` (which may not hold a run yet: the page waits for it). */
export async function startDashboard(options: DashboardOptions): Promise<Dashboard> {
  const host = options.host ?? DEFAULT_HOST;
  const allowRemote = options.allowRemote ?? options.host !== undefined;
  const pollMs = options.pollMs ?? 250;
  const watcher: RunWatcher = watchRun(options.runDir);
  const epoch = randomBytes(6).toString('hex');
  let seq = 0;
  const sent: SentEvent[] = [];
  const clients = new Set<ServerResponse>();
  const require = createRequire(import.meta.url);
  const assetCache = new Map<string, Buffer>();

  const snapshotData = (s: Snapshot) => ({
    ...s,
    specs: {
      scatter: scatterSpec(s.meta),
      progress: progressSpec(s.meta),
      progressField: progressField(s.meta),
    },
  });

  const write = (res: ServerResponse, e: SentEvent) =>
    res.write(`id: ${epoch}:${e.seq}\nevent: ${e.name}\ndata: ${e.data}\n\n`);

  function publish(change: RunChange): void {
    const e: SentEvent =
      change.kind === 'snapshot'
        ? { seq: ++seq, name: 'snapshot', data: JSON.stringify(snapshotData(change.snapshot)) }
        : {
            seq: ++seq,
            name: 'append',
            data: JSON.stringify({ meta: change.meta, evals: change.evals, generations: change.generations }),
          };
    sent.push(e);
    if (sent.length > BUFFERED_EVENTS) sent.splice(0, sent.length - BUFFERED_EVENTS);
    for (const res of clients) write(res, e);
  }

  // One refresh at a time: a slow disk never has two reads of the same log racing.
  let refreshing: Promise<void> = Promise.resolve();
  const refresh = () => {
    refreshing = refreshing.then(async () => {
      const change = await watcher.refresh().catch(() => undefined);
      if (change) publish(change);
    });
    return refreshing;
  };
  await refresh();
  /** Waits until no refresh is under way, so that a snapshot taken right after holds exactly what was published. */
  const settled = async () => {
    for (let p = refreshing; ; p = refreshing) {
      await p;
      if (p === refreshing) return;
    }
  };

  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  const loop = () => {
    if (stopped) return;
    timer = setTimeout(() => refresh().then(loop), pollMs);
  };
  loop();
  const heartbeat = setInterval(() => {
    for (const res of clients) res.write(': keep-alive\n\n');
  }, HEARTBEAT_MS);

  const app: FastifyInstance = Fastify({ logger: false });
  app.addHook('onRequest', async (request, reply) => {
    if (!requestAllowed(allowRemote, request.socket.remoteAddress, request.headers.host)) {
      reply
        .code(403)
        .type('text/plain; charset=utf-8')
        .send('geneprune dashboard: only this machine may connect (start it with --host to allow others)\n');
      return reply;
    }
    reply.headers(SECURITY_HEADERS);
  });
  app.get('/', async (_req, reply) => reply.type('text/html; charset=utf-8').send(PAGE_HTML));
  app.get('/app.js', async (_req, reply) => reply.type('text/javascript; charset=utf-8').send(PAGE_SCRIPT));
  app.get('/style.css', async (_req, reply) => reply.type('text/css; charset=utf-8').send(PAGE_CSS));
  app.get<{ Params: { name: string } }>('/assets/:name', async (req, reply) => {
    const file = Object.hasOwn(ASSETS, req.params.name) ? ASSETS[req.params.name] : undefined;
    if (!file) return reply.code(404).type('text/plain').send('not found\n');
    let body = assetCache.get(file);
    if (!body) {
      body = await readFile(require.resolve(file));
      assetCache.set(file, body);
    }
    return reply.type('text/javascript; charset=utf-8').send(body);
  });
  app.get('/api/state', async (_req, reply) => {
    await settled();
    return reply.send(snapshotData(watcher.snapshot()));
  });
  app.get('/favicon.ico', async (_req, reply) => reply.code(204).send());
  app.get('/events', async (req, reply) => {
    reply.hijack();
    await settled();
    // From here to clients.add nothing awaits: the client sees every event after its snapshot, once.
    const res = reply.raw;
    res.writeHead(200, {
      ...SECURITY_HEADERS,
      'content-type': 'text/event-stream; charset=utf-8',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    res.write('retry: 1000\n\n');
    const last = /^([0-9a-f]+):(\d+)$/.exec(String(req.headers['last-event-id'] ?? ''));
    const after = last && last[1] === epoch ? Number(last[2]) : undefined;
    // Replay only when every event after the client's last is still held; else start it over.
    if (after !== undefined && after <= seq && (sent.length === 0 || sent[0].seq <= after + 1)) {
      for (const e of sent) if (e.seq > after) write(res, e);
    } else {
      write(res, { seq, name: 'snapshot', data: JSON.stringify(snapshotData(watcher.snapshot())) });
    }
    if (res.destroyed) return;
    clients.add(res);
    res.on('close', () => clients.delete(res));
  });
  app.addHook('preClose', async () => {
    for (const res of clients) res.end();
    clients.clear();
  });

  try {
    await app.listen({ port: options.port ?? 0, host });
  } catch (e) {
    // Nothing may outlive a server that never listened: its polling loop and heartbeat would keep the process up.
    stopped = true;
    clearTimeout(timer);
    clearInterval(heartbeat);
    await app.close().catch(() => undefined);
    await refreshing;
    throw e;
  }
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : (options.port ?? 0);
  return {
    url: urlOf(host, port),
    host,
    port,
    setLive(line) {
      watcher.setLive(line);
    },
    refresh,
    async close() {
      stopped = true;
      clearTimeout(timer);
      clearInterval(heartbeat);
      await app.close();
      await refreshing;
    },
  };
}
