/**
 * The live dashboard: a fastify server that follows one run directory (watch.ts) and serves one page, its
 * script and Vega builds from node_modules, `/api/state` (the whole view as JSON) and `/events` (server-sent
 * events: a snapshot when a client connects, then every change as it is read from the files; a client that
 * reconnects with Last-Event-ID gets what it missed, or a fresh snapshot when that is no longer held).
 *
 * It binds 127.0.0.1 unless told another address. On a loopback address it answers only this machine; on
 * another, other machines too; either way only requests whose Host header names the server as it was started
 * (accessPolicy), so that a page on another site cannot reach it through a DNS name rebound to this machine.
 * Every change of the run is encoded once and the same bytes go to every client; live clients are bounded
 * (a 503 past the bound). Nothing is fetched from elsewhere; the page's content security policy keeps it so.
 */

import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import { isIP } from 'node:net';
import { hostname, networkInterfaces } from 'node:os';
import Fastify, { type FastifyInstance } from 'fastify';
import type { BlockSearchProgress } from '../spaces/weights/blockwise.js';
import { PAGE_CSS, PAGE_HTML, PAGE_SCRIPT } from './page.js';
import { progressField, progressSpec, scatterField, scatterSpec } from './specs.js';
import { type RunChange, type RunWatcher, type Snapshot, watchRun } from './watch.js';

export interface DashboardOptions {
  runDir: string;
  /** 0 or absent: a free port. */
  port?: number;
  /** Address to bind; default 127.0.0.1. */
  host?: string;
  /**
   * Answer clients on other machines; default: when `host` is neither a loopback address nor `localhost` (see
   * accessPolicy). Which Host headers are accepted follows from `host` alone.
   */
  allowRemote?: boolean;
  /** Live (SSE) clients served at once; one more is answered 503 (default 64). */
  maxClients?: number;
  /** How often the run's files are looked at, in milliseconds (default 250). */
  pollMs?: number;
}

/** What an in-process server can say about its own work (tests and the bench read it). */
export interface DashboardStats {
  /** Live (SSE) clients connected now. */
  clients: number;
  /** Times the whole view has been turned into JSON: once per change of the run, however many ask for it. */
  snapshotSerializations: number;
}

export interface Dashboard {
  url: string;
  host: string;
  port: number;
  /**
   * A line from the process running the search, shown under the progress bar; with `search`, the block-wise
   * weight search's report the line was made of (null: none any more; absent: the last one stands), so that the
   * page's block, generation, search time and ETA agree with the line. Both are taken at once.
   */
  setLive(line: string | null, search?: BlockSearchProgress | null): void;
  /** Reads the run's files now and sends what changed (the server also does so every pollMs). */
  refresh(): Promise<void>;
  close(): Promise<void>;
}

export interface LocalDashboard extends Dashboard {
  stats(): DashboardStats;
}

export const DEFAULT_HOST = '127.0.0.1';
const BUFFERED_EVENTS = 2000;
export const DEFAULT_MAX_CLIENTS = 64;
const HEARTBEAT_MS = 15_000;

/** Whether a socket's remote address is this machine's loopback (IPv4 127/8, IPv6 ::1, or IPv4-mapped). */
export function isLoopbackAddress(address: string | undefined): boolean {
  if (!address) return false;
  const v4 = address.startsWith('::ffff:') ? address.slice(7) : address;
  if (isIP(v4) === 4) return v4.split('.')[0] === '127';
  return address === '::1' || address === '0:0:0:0:0:0:0:1';
}

/** The name a Host header gives, lower case, without its port and an IPv6 address's brackets. */
export function hostHeaderName(host: string | undefined): string | undefined {
  if (!host) return undefined;
  if (host.startsWith('[')) {
    const end = host.indexOf(']');
    return end > 1 ? host.slice(1, end).toLowerCase() : undefined;
  }
  // A bare IPv6 address has colons of its own; anything else loses a trailing :port.
  const name = isIP(host) === 6 ? host : host.replace(/:\d*$/, '');
  return name ? name.toLowerCase() : undefined;
}

/** Whether a Host header names this machine's loopback (localhost, 127/8, [::1]), with or without a port. */
export function isLoopbackHostHeader(host: string | undefined): boolean {
  const name = hostHeaderName(host);
  return name !== undefined && (name === 'localhost' || isLoopbackAddress(name));
}

/**
 * Who may connect. `remote`: clients on other machines too (else only this machine's loopback). A request's
 * Host header must name this server as the client reached it: one of `names`, or any loopback name when
 * `loopbackNames`. Checking Host is what stops a page on another site from reading the dashboard through a DNS name
 * it rebinds to this machine's address, so it holds whatever address the server listens on.
 */
export interface AccessPolicy {
  remote: boolean;
  loopbackNames: boolean;
  /** Lower case, IPv6 addresses without brackets. */
  names: ReadonlySet<string>;
}

const WILDCARD = new Set(['0.0.0.0', '::', '0:0:0:0:0:0:0:0']);

/**
 * The policy for a server listening on `listen` (undefined: the default loopback address), bound to the
 * address `bound` (what a host name resolved to). A loopback address or `localhost` answers only this machine,
 * under its loopback names; a wildcard address answers other machines that name one of this machine's interface
 * addresses or its host name; any other address or name answers other machines that name it (or the address it
 * resolved to).
 */
export function accessPolicy(listen: string | undefined, bound?: string): AccessPolicy {
  const given = (listen ?? DEFAULT_HOST).toLowerCase().replace(/^\[(.*)\]$/, '$1');
  const address = bound?.toLowerCase();
  if (WILDCARD.has(given) || (address !== undefined && WILDCARD.has(address))) {
    const names = new Set<string>([hostname().toLowerCase()]);
    for (const list of Object.values(networkInterfaces()))
      for (const i of list ?? []) names.add(i.address.toLowerCase().replace(/%.*$/, ''));
    return { remote: true, loopbackNames: true, names };
  }
  const names = new Set<string>(address === undefined ? [given] : [given, address]);
  const loopback = given === 'localhost' || isLoopbackAddress(given) || isLoopbackAddress(address);
  return { remote: !loopback, loopbackNames: loopback, names };
}

/** Whether a request may be answered under `policy`. */
export function requestAllowed(
  policy: AccessPolicy,
  remoteAddress: string | undefined,
  hostHeader: string | undefined,
): boolean {
  if (!policy.remote && !isLoopbackAddress(remoteAddress)) return false;
  const name = hostHeaderName(hostHeader);
  if (name === undefined) return false;
  return (policy.loopbackNames && isLoopbackHostHeader(hostHeader)) || policy.names.has(name);
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

/**
 * One server-sent event, encoded once: every client is written the same buffers (a snapshot of a long run is
 * tens of megabytes; a copy per client once took gigabytes).
 */
interface SentEvent {
  seq: number;
  name: 'snapshot' | 'append';
  head: Buffer;
  data: Buffer;
}

const EVENT_END = Buffer.from('\n\n');

/** Starts the dashboard for `runDir` (which may not hold a run yet: the page waits for it). */
export async function startDashboard(options: DashboardOptions): Promise<LocalDashboard> {
  const host = options.host ?? DEFAULT_HOST;
  // Bound to the address `host` resolved to once listening (a host name's address is one of its names).
  let policy = accessPolicy(options.host);
  const remote = () => options.allowRemote ?? policy.remote;
  const maxClients = options.maxClients ?? DEFAULT_MAX_CLIENTS;
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
      scatterField: scatterField(s.meta),
    },
  });

  const eventOf = (seq: number, name: SentEvent['name'], data: Buffer): SentEvent => ({
    seq,
    name,
    head: Buffer.from(`id: ${epoch}:${seq}\nevent: ${name}\ndata: `),
    data,
  });
  const write = (res: ServerResponse, e: SentEvent) => {
    res.cork();
    res.write(e.head);
    res.write(e.data);
    res.write(EVENT_END);
    process.nextTick(() => res.uncork());
  };

  /**
   * The whole view as JSON, made at most once per published change and shared by every request for it. The
   * points, most of it in a long run, are kept encoded as they arrive (one chunk per change, appended only:
   * a change that is not an append is a snapshot, which starts them over), so a change costs the encoding of
   * its own points and one copy, not the encoding of every point again.
   */
  let snapshotCache: { seq: number; json: Buffer } | undefined;
  let snapshotEvent: SentEvent | undefined;
  let serializations = 0;
  let pointChunks: Buffer[] = [];
  let pointCount = 0;
  const COMMA = Buffer.from(',');
  const encodePoints = (points: readonly unknown[]) =>
    Buffer.from(points.map((p) => JSON.stringify(p)).join(','));
  const addPoints = (points: readonly unknown[]) => {
    if (points.length === 0) return undefined;
    const chunk = encodePoints(points);
    pointChunks.push(chunk);
    pointCount += points.length;
    return chunk;
  };
  const pointsJson = (chunks: readonly Buffer[]): Buffer[] => {
    const parts: Buffer[] = [Buffer.from('[')];
    chunks.forEach((c, i) => {
      if (i > 0) parts.push(COMMA);
      parts.push(c);
    });
    parts.push(Buffer.from(']'));
    return parts;
  };
  const serialize = (s: Snapshot): Buffer => {
    serializations++;
    // The kept points must be the snapshot's; should they ever not be, they are encoded again.
    if (pointCount !== s.evals.length) {
      pointChunks = [];
      pointCount = 0;
      addPoints(s.evals);
    }
    const { evals: _points, ...rest } = snapshotData(s);
    const head = JSON.stringify(rest);
    return Buffer.concat([
      Buffer.from(`${head.slice(0, -1)},"evals":`),
      ...pointsJson(pointChunks),
      Buffer.from('}'),
    ]);
  };
  const snapshotJson = (): Buffer => {
    if (snapshotCache?.seq !== seq) snapshotCache = { seq, json: serialize(watcher.snapshot()) };
    return snapshotCache.json;
  };

  function publish(change: RunChange): void {
    let e: SentEvent;
    if (change.kind === 'snapshot') {
      pointChunks = [];
      pointCount = 0;
      addPoints(change.snapshot.evals);
      const json = serialize(change.snapshot);
      e = eventOf(++seq, 'snapshot', json);
      snapshotCache = { seq, json };
    } else {
      const chunk = addPoints(change.evals);
      const head = JSON.stringify({ meta: change.meta, generations: change.generations });
      const data = Buffer.concat([
        Buffer.from(`${head.slice(0, -1)},"evals":`),
        ...pointsJson(chunk ? [chunk] : []),
        Buffer.from('}'),
      ]);
      e = eventOf(++seq, 'append', data);
    }
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
    const effective = { ...policy, remote: remote() };
    if (!requestAllowed(effective, request.socket.remoteAddress, request.headers.host)) {
      const why = !(effective.remote || isLoopbackAddress(request.socket.remoteAddress))
        ? 'only this machine may connect (start it with --host to allow others)'
        : effective.loopbackNames && !effective.remote
          ? 'only this machine may connect, naming it localhost, 127.0.0.1 or [::1] (the request named another host)'
          : 'the request named a host this server was not started as (--host)';
      reply.code(403).type('text/plain; charset=utf-8').send(`geneprune dashboard: ${why}\n`);
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
    return reply.type('application/json; charset=utf-8').send(snapshotJson());
  });
  app.get('/favicon.ico', async (_req, reply) => reply.code(204).send());
  app.get('/events', async (req, reply) => {
    reply.hijack();
    await settled();
    // From here to clients.add nothing awaits: the client sees every event after its snapshot, once.
    const res = reply.raw;
    if (clients.size >= maxClients) {
      res.writeHead(503, {
        ...SECURITY_HEADERS,
        'content-type': 'text/plain; charset=utf-8',
        'retry-after': '30',
      });
      res.end(
        `geneprune dashboard: ${maxClients} live pages are open already; close one and load this page again\n`,
      );
      return;
    }
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
      // Shared with every other client that connects before the run changes again.
      if (snapshotEvent?.seq !== seq) snapshotEvent = eventOf(seq, 'snapshot', snapshotJson());
      write(res, snapshotEvent);
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
  if (typeof address === 'object' && address) policy = accessPolicy(options.host, address.address);
  return {
    url: urlOf(host, port),
    host,
    port,
    setLive(line, search) {
      watcher.setLive(line, search);
    },
    refresh,
    stats: () => ({ clients: clients.size, snapshotSerializations: serializations }),
    async close() {
      stopped = true;
      clearTimeout(timer);
      clearInterval(heartbeat);
      await app.close();
      await refreshing;
    },
  };
}
