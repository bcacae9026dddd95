/**
 * A real Redis for the queue tests: `redis-server` started on a free loopback port in a temporary directory,
 * with the append-only file on (so `restart()` — same port, same directory — keeps the queue, as a production
 * Redis with AOF does) and no RDB snapshots. `stop()` ends it with SIGTERM (Redis flushes the AOF on the way
 * out), `cleanup()` stops it and removes the directory. Where redis-server is not installed the tests skip with
 * a message (`redisSkip`), except under CI (`process.env.CI` set), where a missing server is a failure:
 * .ci/run installs Debian's redis-server.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface RedisServer {
  port: number;
  /** `redis://127.0.0.1:PORT` (with the password when one is set). */
  url: string;
  dir: string;
  stop(): Promise<void>;
  /** Starts it again on the same port and directory (the AOF brings the keys back). */
  restart(): Promise<void>;
  cleanup(): Promise<void>;
}

function redisServerPath(): string | undefined {
  const r = spawnSync('redis-server', ['--version'], { encoding: 'utf8' });
  return r.status === 0 ? 'redis-server' : undefined;
}

/**
 * The `skip` option of a queue test: a message when redis-server is absent, false when present. Under CI an
 * absent server does not skip: the test runs and fails when it cannot start one.
 */
export function redisSkip(): string | false {
  if (redisServerPath()) return false;
  if (process.env.CI) return false;
  return 'redis-server is not installed (apt-get install redis-server); the queue tests need a real Redis';
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** True once the server answers PING (PONG, or NOAUTH when it wants a password: it is up either way). */
function pinged(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const c = createConnection({ port, host: '127.0.0.1' });
    let data = '';
    const done = (ok: boolean) => {
      c.destroy();
      resolve(ok);
    };
    c.setTimeout(500, () => done(false));
    c.on('error', () => done(false));
    c.on('connect', () => c.write('PING\r\n'));
    c.on('data', (d) => {
      data += d.toString();
      if (data.includes('\r\n')) done(data.startsWith('+PONG') || data.startsWith('-NOAUTH'));
    });
  });
}

export async function startRedis(opts: { password?: string } = {}): Promise<RedisServer> {
  if (!redisServerPath())
    throw new Error(
      'redis-server is not installed: CI must install it (.ci/run), or unset CI to skip these tests',
    );
  const dir = mkdtempSync(join(tmpdir(), 'geneprune-redis-'));
  const port = await freePort();
  const args = [
    '--port',
    String(port),
    '--bind',
    '127.0.0.1',
    '--dir',
    dir,
    '--appendonly',
    'yes',
    '--save',
    '',
    ...(opts.password ? ['--requirepass', opts.password] : []),
  ];
  let child: ChildProcess | undefined;
  let log = '';
  const start = async () => {
    log = '';
    const c = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    child = c;
    c.stdout?.on('data', (d) => {
      log += d.toString();
    });
    c.stderr?.on('data', (d) => {
      log += d.toString();
    });
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline) {
      if (c.exitCode !== null) throw new Error(`redis-server exited at start: ${log.slice(-500)}`);
      if (await pinged(port)) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    c.kill('SIGKILL');
    throw new Error(`redis-server did not answer PING on port ${port} within 15 s: ${log.slice(-500)}`);
  };
  const stop = async () => {
    const c = child;
    child = undefined;
    if (!c || c.exitCode !== null) return;
    const exited = new Promise<void>((r) => c.once('exit', () => r()));
    c.kill('SIGTERM');
    await exited;
  };
  await start();
  return {
    port,
    url: `redis://${opts.password ? `:${encodeURIComponent(opts.password)}@` : ''}127.0.0.1:${port}`,
    dir,
    stop,
    restart: start,
    async cleanup() {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
