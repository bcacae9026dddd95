/**
 * `--queue redis://[user:password@]HOST:PORT[/DB]` (or `rediss://` for TLS): where the search posts its
 * evaluations and where `geneprune worker` takes them. Parsed here once, into what an ioredis connection needs,
 * with one-line flag errors; `redactedUrl` is the only form of the URL that may be printed or written (the
 * password as `***`): logs, run files, error messages and the dashboard never see a password.
 */
import { GenepruneError } from '../errors.js';

export interface QueueUrl {
  tls: boolean;
  host: string;
  port: number;
  db: number;
  username?: string;
  password?: string;
  /** The URL with the password replaced by `***`: the only form that is ever shown. */
  redacted: string;
}

const DEFAULT_PORT = 6379;

function refuse(flag: string, why: string): GenepruneError {
  return new GenepruneError('flag', why, flag);
}

/** Parses a queue URL; `flag` names it in errors (the password is never repeated back). */
export function parseQueueUrl(text: string, flag = '--queue'): QueueUrl {
  const shape = 'expected redis://[user:password@]HOST:PORT[/DB] or rediss://…';
  // The text itself may hold a password: every refusal says what is wrong without echoing it.
  const scheme0 = /^([a-z][a-z0-9+.-]*):\/\//i.exec(text)?.[1];
  if (scheme0 === undefined) throw refuse(flag, `not a redis:// URL: ${shape}`);
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    const port = /^[^/]*\/\/(?:[^@/]*@)?(?:\[[^\]]*\]|[^:/]*):(\d+)/.exec(text)?.[1];
    if (port !== undefined && Number(port) > 65535) throw refuse(flag, `bad port: ${shape}`);
    throw refuse(flag, `not a URL: ${shape}`);
  }
  const scheme = u.protocol.replace(/:$/, '');
  if (scheme !== 'redis' && scheme !== 'rediss') throw refuse(flag, `unknown scheme ${scheme}: ${shape}`);
  if (u.hostname === '') throw refuse(flag, `no host: ${shape}`);
  if (u.search !== '' || u.hash !== '')
    throw refuse(flag, `query strings and fragments are not understood: ${shape}`);
  const port = u.port === '' ? DEFAULT_PORT : Number(u.port);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw refuse(flag, `bad port: ${shape}`);
  const path = u.pathname.replace(/^\//, '');
  if (path !== '' && !/^\d{1,4}$/.test(path))
    throw refuse(flag, `the database must be a number (/0, /1, …), got /${path}`);
  const db = path === '' ? 0 : Number(path);
  const username = u.username !== '' ? decodeURIComponent(u.username) : undefined;
  const password = u.password !== '' ? decodeURIComponent(u.password) : undefined;
  // IPv6 hosts come back bracketed from URL; ioredis wants them bare.
  const host = u.hostname.replace(/^\[(.*)\]$/, '$1');
  const auth = username !== undefined || password !== undefined;
  const redacted =
    `${scheme}://` +
    (auth ? `${u.username}${password !== undefined ? ':***' : ''}@` : '') +
    `${u.hostname}:${port}${path !== '' ? `/${db}` : ''}`;
  return {
    tls: scheme === 'rediss',
    host,
    port,
    db,
    ...(username !== undefined ? { username } : {}),
    ...(password !== undefined ? { password } : {}),
    redacted,
  };
}

/** The URL as it may be shown anywhere: the password as `***` (unparseable text is shown as a placeholder). */
export function redactedUrl(text: string): string {
  try {
    return parseQueueUrl(text).redacted;
  } catch {
    return '<unparseable queue URL>';
  }
}

/** `HOST:PORT`, for the waiting line. */
export function hostPort(u: QueueUrl): string {
  return u.host.includes(':') ? `[${u.host}]:${u.port}` : `${u.host}:${u.port}`;
}

/** Removes every occurrence of the password from a text (an error message from a library may echo a URL). */
export function withoutPassword(text: string, u: QueueUrl): string {
  if (!u.password) return text;
  let out = text.split(u.password).join('***');
  const encoded = encodeURIComponent(u.password);
  if (encoded !== u.password) out = out.split(encoded).join('***');
  return out;
}

/** ioredis connection options for a parsed URL (`maxRetriesPerRequest: null`: BullMQ's blocking calls need it). */
export function redisOptions(u: QueueUrl): Record<string, unknown> {
  return {
    host: u.host,
    port: u.port,
    db: u.db,
    ...(u.username !== undefined ? { username: u.username } : {}),
    ...(u.password !== undefined ? { password: u.password } : {}),
    ...(u.tls ? { tls: { servername: u.host } } : {}),
    maxRetriesPerRequest: null,
  };
}
