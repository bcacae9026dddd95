import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import {
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, afterEach, before, beforeEach, describe, test } from 'node:test';
import { cacheDir, downloadHfModel, parseModelRef, resolveModelRef } from '../../src/checkpoint/hub.js';
import { GenepruneError } from '../../src/errors.js';
import { sharedPath, skipUnlessShared } from '../shared.js';

const tempDirs: string[] = [];
function tempDir(prefix: string): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  tempDirs.push(d);
  return d;
}
after(() => {
  for (const d of tempDirs) rmSync(d, { recursive: true, force: true });
});

/** A stand-in hub: serves <root>/OWNER/REPO/REV/FILE at /OWNER/REPO/resolve/REV/FILE, 404 otherwise. */
interface FakeHub {
  url: string;
  root: string;
  requests: string[];
  headers: IncomingMessage['headers'][];
  /** Paths (URL pathnames) whose body is cut off half way. */
  cutOff: Set<string>;
  /** Paths answered with this status instead. */
  status: Map<string, number>;
  server: Server;
}

async function startHub(): Promise<FakeHub> {
  const root = tempDir('geneprune-hub-');
  const hub = { root, requests: [], headers: [], cutOff: new Set(), status: new Map() } as unknown as FakeHub;
  hub.server = createServer((req, res) => {
    // Recorded as sent (a revision with slashes arrives as one escaped segment), served from root/…/<revision with
    // '/' as '--'>/….
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    hub.requests.push(path);
    hub.headers.push(req.headers);
    const forced = hub.status.get(path);
    if (forced) {
      res.writeHead(forced).end('no');
      return;
    }
    const m = /^\/([^/]+)\/([^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(path);
    let body: Buffer | undefined;
    try {
      const revision = m && decodeURIComponent(m[3]).replaceAll('/', '--');
      const file = m && decodeURIComponent(m[4]);
      if (m && revision && file && !file.split('/').includes('..'))
        body = readFileSync(join(root, m[1], m[2], revision, file));
    } catch {}
    if (!body) {
      res.writeHead(404).end('Entry not found');
      return;
    }
    res.writeHead(200, { 'content-length': body.length, 'content-type': 'application/octet-stream' });
    if (hub.cutOff.has(path)) {
      res.write(body.subarray(0, body.length >> 1), () => setTimeout(() => req.socket.destroy(), 20));
      return;
    }
    res.end(body);
  });
  await new Promise<void>((ok) => hub.server.listen(0, '127.0.0.1', ok));
  hub.url = `http://127.0.0.1:${(hub.server.address() as AddressInfo).port}`;
  return hub;
}

function put(hub: FakeHub, rel: string, data: Buffer | string): Buffer {
  const p = join(hub.root, rel);
  mkdirSync(dirname(p), { recursive: true });
  const bytes = Buffer.from(data);
  writeFileSync(p, bytes);
  return bytes;
}

const randomBytesOf = (n: number, seed: number) =>
  Buffer.from(Array.from({ length: n }, (_, i) => (i * 31 + seed) & 255));

const ENV_KEYS = [
  'GENEPRUNE_CACHE',
  'GENEPRUNE_MODELS',
  'HF_ENDPOINT',
  'HF_TOKEN',
  'XDG_CACHE_HOME',
] as const;
let savedEnv: Record<string, string | undefined> = {};
let cache = '';
beforeEach(() => {
  savedEnv = Object.fromEntries(ENV_KEYS.map((k) => [k, process.env[k]]));
  for (const k of ENV_KEYS) delete process.env[k];
  cache = tempDir('geneprune-cache-');
  process.env.GENEPRUNE_CACHE = cache;
});
afterEach(() => {
  for (const k of ENV_KEYS) {
    if (savedEnv[k] === undefined) delete process.env[k];
    else process.env[k] = savedEnv[k];
  }
});

/** Every file under a folder, relative, sorted. */
function listFiles(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name).slice(dir.length + 1))
    .sort();
}

function assertGenepruneError(kind: string, re: RegExp, where?: string | RegExp) {
  return (err: unknown) => {
    assert.ok(err instanceof GenepruneError, String(err));
    assert.equal(err.kind, kind);
    assert.match(err.message, re);
    if (typeof where === 'string') assert.equal(err.where, where);
    else if (where) assert.match(err.where ?? '', where);
    return true;
  };
}

describe('parseModelRef and cacheDir', () => {
  test('hf references', () => {
    assert.deepEqual(parseModelRef('hf:owner/repo'), {
      kind: 'hf',
      owner: 'owner',
      repo: 'repo',
      path: undefined,
      revision: 'main',
    });
    assert.deepEqual(parseModelRef('hf:karpathy/tinyllamas/stories260K/stories260K.bin@abc123'), {
      kind: 'hf',
      owner: 'karpathy',
      repo: 'tinyllamas',
      path: 'stories260K/stories260K.bin',
      revision: 'abc123',
    });
    assert.equal((parseModelRef('hf:o/r/sub/') as { path?: string }).path, 'sub');
    assert.deepEqual(parseModelRef('./models/x.bin'), { kind: 'local', path: './models/x.bin' });
    assert.deepEqual(parseModelRef('/abs/hf:x'), { kind: 'local', path: '/abs/hf:x' });
  });

  test('bad references are flag errors on --model', () => {
    for (const bad of [
      'hf:',
      'hf:onlyowner',
      'hf:/repo',
      'hf:o/r@',
      'hf:o/r/../x',
      'hf:o/r//x',
      'hf:o w/r',
    ]) {
      assert.throws(
        () => parseModelRef(bad),
        assertGenepruneError('flag', /bad model reference/, '--model'),
        bad,
      );
    }
  });

  test('cache folder from the environment', () => {
    process.env.GENEPRUNE_CACHE = '/tmp/gp-cache';
    assert.equal(cacheDir(), '/tmp/gp-cache');
    delete process.env.GENEPRUNE_CACHE;
    process.env.XDG_CACHE_HOME = '/tmp/xdg';
    assert.equal(cacheDir(), '/tmp/xdg/geneprune');
    delete process.env.XDG_CACHE_HOME;
    assert.match(cacheDir(), /\.cache\/geneprune$/);
  });
});

describe('downloads from a local stand-in hub', () => {
  let hub: FakeHub;
  before(async () => {
    hub = await startHub();
  });
  after(() => {
    hub.server.close();
  });
  beforeEach(() => {
    hub.requests.length = 0;
    hub.headers.length = 0;
    hub.cutOff.clear();
    hub.status.clear();
  });

  test('a repository with one model.safetensors; a second resolve makes no requests', async () => {
    const config = put(hub, 'acme/single/main/config.json', '{"model_type":"llama"}');
    const tokenizer = put(hub, 'acme/single/main/tokenizer.json', '{"model":{}}');
    const weights = put(hub, 'acme/single/main/model.safetensors', randomBytesOf(100_000, 1));
    const progress: [string, number, number][] = [];
    const dir = await downloadHfModel('hf:acme/single', {
      endpoint: hub.url,
      onProgress: (f, d, t) => progress.push([f, d, t]),
    });
    assert.equal(dir, join(cache, 'hf', 'acme', 'single', 'main'));
    assert.deepEqual(readFileSync(join(dir, 'config.json')), config);
    assert.deepEqual(readFileSync(join(dir, 'tokenizer.json')), tokenizer);
    assert.deepEqual(readFileSync(join(dir, 'model.safetensors')), weights);
    assert.deepEqual(hub.requests, [
      '/acme/single/resolve/main/config.json',
      '/acme/single/resolve/main/tokenizer.json',
      '/acme/single/resolve/main/tokenizer_config.json',
      '/acme/single/resolve/main/model.safetensors.index.json',
      '/acme/single/resolve/main/model.safetensors',
    ]);
    assert.deepEqual(progress.at(-1), ['model.safetensors', 100_000, 100_000]);
    assert.ok(listFiles(dir).every((f) => !f.endsWith('.tmp')));

    hub.requests.length = 0;
    const again = await resolveModelRef('hf:acme/single', { endpoint: hub.url });
    assert.deepEqual(again, { modelPath: dir, tokenizerPath: join(dir, 'tokenizer.json') });
    assert.deepEqual(hub.requests, []);
  });

  test('a CodeT5-style repository with vocab.json + merges.txt at a pull-request revision', async () => {
    put(hub, 'sf/code/refs--pr--1/config.json', '{"model_type":"t5"}');
    const vocab = put(hub, 'sf/code/refs--pr--1/vocab.json', '{"a":0}');
    const merges = put(hub, 'sf/code/refs--pr--1/merges.txt', '#version: 0.2\n');
    put(hub, 'sf/code/refs--pr--1/special_tokens_map.json', '{}');
    put(hub, 'sf/code/refs--pr--1/model.safetensors', randomBytesOf(1000, 9));
    const resolved = await resolveModelRef('hf:sf/code@refs/pr/1', { endpoint: hub.url });
    const dir = join(cache, 'hf', 'sf', 'code', 'refs--pr--1');
    assert.deepEqual(resolved, { modelPath: dir, tokenizerPath: join(dir, 'vocab.json') });
    assert.deepEqual(readFileSync(join(dir, 'vocab.json')), vocab);
    assert.deepEqual(readFileSync(join(dir, 'merges.txt')), merges);
    assert.deepEqual(hub.requests, [
      '/sf/code/resolve/refs%2Fpr%2F1/config.json',
      '/sf/code/resolve/refs%2Fpr%2F1/tokenizer.json',
      '/sf/code/resolve/refs%2Fpr%2F1/vocab.txt',
      '/sf/code/resolve/refs%2Fpr%2F1/vocab.json',
      '/sf/code/resolve/refs%2Fpr%2F1/merges.txt',
      '/sf/code/resolve/refs%2Fpr%2F1/special_tokens_map.json',
      '/sf/code/resolve/refs%2Fpr%2F1/added_tokens.json',
      '/sf/code/resolve/refs%2Fpr%2F1/tokenizer_config.json',
      '/sf/code/resolve/refs%2Fpr%2F1/model.safetensors.index.json',
      '/sf/code/resolve/refs%2Fpr%2F1/model.safetensors',
    ]);
  });

  test('sharded safetensors in a folder at a revision', async () => {
    put(hub, 'acme/sharded/v2/big/config.json', '{}');
    put(hub, 'acme/sharded/v2/big/tokenizer_config.json', '{}');
    put(
      hub,
      'acme/sharded/v2/big/model.safetensors.index.json',
      JSON.stringify({
        metadata: {},
        weight_map: {
          a: 'model-00001-of-00002.safetensors',
          b: 'model-00002-of-00002.safetensors',
          c: 'model-00001-of-00002.safetensors',
        },
      }),
    );
    const s1 = put(hub, 'acme/sharded/v2/big/model-00001-of-00002.safetensors', randomBytesOf(5000, 2));
    const s2 = put(hub, 'acme/sharded/v2/big/model-00002-of-00002.safetensors', randomBytesOf(7000, 3));
    const dir = await downloadHfModel('hf:acme/sharded/big@v2', { endpoint: hub.url });
    assert.equal(dir, join(cache, 'hf', 'acme', 'sharded', 'v2', 'big'));
    assert.deepEqual(readFileSync(join(dir, 'model-00001-of-00002.safetensors')), s1);
    assert.deepEqual(readFileSync(join(dir, 'model-00002-of-00002.safetensors')), s2);
    assert.ok(!hub.requests.includes('/acme/sharded/resolve/v2/big/model.safetensors'));
    assert.equal(hub.requests.filter((r) => r.endsWith('00001-of-00002.safetensors')).length, 1);
    assert.deepEqual(listFiles(dir), [
      'config.json',
      'model-00001-of-00002.safetensors',
      'model-00002-of-00002.safetensors',
      'model.safetensors.index.json',
      'tokenizer_config.json',
    ]);
  });

  test('a llama2.c .bin with the tokenizer beside it; HF_TOKEN is sent', async () => {
    const bin = put(hub, 'karp/tiny/main/s260/model.bin', randomBytesOf(3000, 4));
    const tok = put(hub, 'karp/tiny/main/s260/tok512.bin', randomBytesOf(600, 5));
    process.env.HF_TOKEN = 'secret-token';
    const got = await resolveModelRef('hf:karp/tiny/s260/model.bin', {
      endpoint: hub.url,
      extraFiles: ['tok512.bin'],
    });
    const dir = join(cache, 'hf', 'karp', 'tiny', 'main', 's260');
    assert.deepEqual(got, { modelPath: join(dir, 'model.bin'), tokenizerPath: join(dir, 'tok512.bin') });
    assert.deepEqual(readFileSync(got.modelPath), bin);
    assert.deepEqual(readFileSync(got.tokenizerPath!), tok);
    assert.deepEqual(hub.requests, [
      '/karp/tiny/resolve/main/s260/model.bin',
      '/karp/tiny/resolve/main/s260/tokenizer.bin',
      '/karp/tiny/resolve/main/s260/tok512.bin',
    ]);
    assert.ok(hub.headers.every((h) => h.authorization === 'Bearer secret-token'));
    hub.requests.length = 0;
    await resolveModelRef('hf:karp/tiny/s260/model.bin', { endpoint: hub.url, extraFiles: ['tok512.bin'] });
    assert.deepEqual(hub.requests, []);
  });

  test('an interrupted transfer leaves nothing complete-looking and says so', async () => {
    put(hub, 'acme/cut/main/config.json', '{}');
    const weights = put(hub, 'acme/cut/main/model.safetensors', randomBytesOf(2_000_000, 6));
    hub.cutOff.add('/acme/cut/resolve/main/model.safetensors');
    const dir = join(cache, 'hf', 'acme', 'cut', 'main');
    await assert.rejects(
      downloadHfModel('hf:acme/cut', { endpoint: hub.url }),
      assertGenepruneError('network', /interrupted/, `${hub.url}/acme/cut/resolve/main/model.safetensors`),
    );
    assert.deepEqual(listFiles(dir), ['.geneprune-absent.json', 'config.json']);

    // A download killed mid-transfer (its process gone) left a partial file; one of a live process stays.
    const deadPid = spawnSync(process.execPath, ['-e', '']).pid;
    writeFileSync(join(dir, `.model.safetensors.${deadPid}.0badf00d.tmp`), 'partial');
    writeFileSync(join(dir, `.model.safetensors.${process.pid}.0badf00d.tmp`), 'in progress');
    hub.cutOff.clear();
    hub.requests.length = 0;
    await downloadHfModel('hf:acme/cut', { endpoint: hub.url });
    assert.deepEqual(readFileSync(join(dir, 'model.safetensors')), weights);
    assert.deepEqual(hub.requests, ['/acme/cut/resolve/main/model.safetensors']);
    assert.deepEqual(
      listFiles(dir),
      [
        `.model.safetensors.${process.pid}.0badf00d.tmp`,
        '.geneprune-absent.json',
        'config.json',
        'model.safetensors',
      ].sort(),
    );
  });

  test('HTTP 404 and 401 on required files', async () => {
    await assert.rejects(
      downloadHfModel('hf:acme/nothing', { endpoint: hub.url }),
      assertGenepruneError(
        'network',
        /HTTP 404.*not found/,
        `${hub.url}/acme/nothing/resolve/main/config.json`,
      ),
    );
    put(hub, 'acme/noweights/main/config.json', '{}');
    await assert.rejects(
      downloadHfModel('hf:acme/noweights', { endpoint: hub.url }),
      assertGenepruneError('network', /HTTP 404/, /model\.safetensors$/),
    );
    hub.status.set('/acme/gated/resolve/main/config.json', 401);
    await assert.rejects(
      downloadHfModel('hf:acme/gated', { endpoint: hub.url }),
      assertGenepruneError('network', /HTTP 401.*HF_TOKEN/),
    );
    assert.ok(!listFiles(cache).some((f) => f.endsWith('config.json') && f.includes('gated')));
  });

  test('an unreachable hub is a network error naming the URL', async () => {
    await assert.rejects(
      resolveModelRef('hf:acme/single', { endpoint: 'http://127.0.0.1:1' }),
      assertGenepruneError(
        'network',
        /could not download the model.*GENEPRUNE_MODELS/,
        /^http:\/\/127\.0\.0\.1:1\//,
      ),
    );
    // fetch refuses port 1 outright ("bad port"); a closed ordinary port is refused by the OS instead.
    const closed = createServer();
    await new Promise<void>((ok) => closed.listen(0, '127.0.0.1', ok));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((ok) => closed.close(ok));
    process.env.HF_ENDPOINT = `http://127.0.0.1:${port}`;
    await assert.rejects(downloadHfModel('hf:acme/single'), assertGenepruneError('network', /ECONNREFUSED/));
  });

  test('the default model downloads from the hub and is checked', {
    skip: skipUnlessShared('models/stories260K/tok512.bin'),
  }, async () => {
    const shared = sharedPath('models/stories260K')!;
    put(
      hub,
      'karpathy/tinyllamas/main/stories260K/stories260K.bin',
      readFileSync(join(shared, 'stories260K.bin')),
    );
    put(hub, 'karpathy/tinyllamas/main/stories260K/tok512.bin', readFileSync(join(shared, 'tok512.bin')));
    process.env.GENEPRUNE_MODELS = tempDir('geneprune-models-');
    const dir = join(cache, 'hf', 'karpathy', 'tinyllamas', 'main', 'stories260K');
    const got = await resolveModelRef(undefined, { endpoint: hub.url });
    assert.deepEqual(got, {
      modelPath: join(dir, 'stories260K.bin'),
      tokenizerPath: join(dir, 'tok512.bin'),
    });
    // Now cached: found with the hub gone.
    process.env.HF_ENDPOINT = 'http://127.0.0.1:1';
    assert.deepEqual(await resolveModelRef(undefined), got);
  });

  test('a default model with the wrong sha256 is refused', async () => {
    put(hub, 'karpathy/tinyllamas/main/stories260K/stories260K.bin', 'not the real checkpoint');
    put(hub, 'karpathy/tinyllamas/main/stories260K/tok512.bin', 'tok');
    await assert.rejects(
      resolveModelRef(undefined, { endpoint: hub.url }),
      assertGenepruneError('file', /sha256 .* differs/, /stories260K\.bin$/),
    );
  });
});

describe('resolveModelRef without a hub', () => {
  test('local paths come back absolute; missing ones are file errors', async () => {
    const here = tempDir('geneprune-local-');
    writeFileSync(join(here, 'm.bin'), 'x');
    const rel = join(here, 'm.bin').slice(process.cwd().length + 1);
    assert.deepEqual(await resolveModelRef(join(here, 'm.bin')), { modelPath: join(here, 'm.bin') });
    if (join(here, 'm.bin').startsWith(process.cwd()))
      assert.equal((await resolveModelRef(rel)).modelPath, join(here, 'm.bin'));
    await assert.rejects(
      resolveModelRef(join(here, 'none')),
      assertGenepruneError('file', /model not found/),
    );
  });

  test('the default model through GENEPRUNE_MODELS', {
    skip: skipUnlessShared('models/stories260K/stories260K.bin'),
  }, async () => {
    process.env.GENEPRUNE_MODELS = sharedPath('models')!;
    process.env.HF_ENDPOINT = 'http://127.0.0.1:1';
    const got = await resolveModelRef(undefined);
    assert.deepEqual(got, {
      modelPath: join(sharedPath('models')!, 'stories260K', 'stories260K.bin'),
      tokenizerPath: join(sharedPath('models')!, 'stories260K', 'tok512.bin'),
    });
  });

  test('the default model with nothing reachable: one error saying where it looked', async () => {
    const models = tempDir('geneprune-models-');
    process.env.GENEPRUNE_MODELS = models;
    process.env.HF_ENDPOINT = 'http://127.0.0.1:1';
    await assert.rejects(resolveModelRef(undefined), (err: unknown) => {
      assert.ok(err instanceof GenepruneError);
      assert.equal(err.kind, 'model');
      assert.equal(err.where, '--model');
      const line = err.oneLine();
      assert.ok(line.includes(join(models, 'stories260K', 'stories260K.bin')), line);
      assert.ok(line.includes(cache), line);
      assert.ok(
        line.includes('http://127.0.0.1:1/karpathy/tinyllamas/resolve/main/stories260K/stories260K.bin'),
        line,
      );
      assert.match(line, /Set GENEPRUNE_MODELS.*--model/);
      assert.ok(!line.includes('\n'));
      return true;
    });
  });

  test('a copied default model with the right bytes is accepted from GENEPRUNE_MODELS', {
    skip: skipUnlessShared('models/stories260K/tok512.bin'),
  }, async () => {
    const models = tempDir('geneprune-models-');
    mkdirSync(join(models, 'stories260K'));
    copyFileSync(
      sharedPath('models/stories260K/stories260K.bin')!,
      join(models, 'stories260K', 'stories260K.bin'),
    );
    writeFileSync(join(models, 'stories260K', 'tok512.bin'), 'tok');
    process.env.GENEPRUNE_MODELS = models;
    assert.equal(
      (await resolveModelRef(undefined)).modelPath,
      join(models, 'stories260K', 'stories260K.bin'),
    );
    writeFileSync(join(models, 'stories260K', 'stories260K.bin'), 'tampered');
    await assert.rejects(resolveModelRef(undefined), assertGenepruneError('file', /sha256/));
  });
});
