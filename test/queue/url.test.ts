/**
 * `--queue` URLs (queue/url.ts): every part of redis:// and rediss:// URLs read as written, bad URLs refused in
 * one line that never repeats the password, and the redacted form the only one with the password hidden.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { GenepruneError } from '../../src/errors.js';
import { hostPort, parseQueueUrl, redactedUrl, redisOptions, withoutPassword } from '../../src/queue/url.js';
import { assertOneLineError, runCli } from '../helpers/cli.js';

describe('parseQueueUrl', () => {
  test('host, port, database, user and password as written', () => {
    const u = parseQueueUrl('redis://alice:pa55word@queue.example.org:6380/3');
    assert.deepEqual(
      { tls: u.tls, host: u.host, port: u.port, db: u.db, username: u.username, password: u.password },
      { tls: false, host: 'queue.example.org', port: 6380, db: 3, username: 'alice', password: 'pa55word' },
    );
    assert.equal(u.redacted, 'redis://alice:***@queue.example.org:6380/3');
  });

  test('defaults: port 6379, database 0, no user; rediss is TLS', () => {
    const u = parseQueueUrl('rediss://10.0.0.7');
    assert.equal(u.tls, true);
    assert.equal(u.port, 6379);
    assert.equal(u.db, 0);
    assert.equal(u.username, undefined);
    assert.equal(u.password, undefined);
    assert.equal(u.redacted, 'rediss://10.0.0.7:6379');
    assert.deepEqual(redisOptions(u).tls, { servername: '10.0.0.7' });
  });

  test('a password alone (the default user), percent-encoded characters decoded', () => {
    const u = parseQueueUrl('redis://:p%40ss%3Aw0rd@127.0.0.1:7000');
    assert.equal(u.username, undefined);
    assert.equal(u.password, 'p@ss:w0rd');
    assert.equal(u.redacted, 'redis://:***@127.0.0.1:7000');
    assert.equal(redisOptions(u).password, 'p@ss:w0rd');
    assert.equal(redisOptions(u).maxRetriesPerRequest, null);
  });

  test('an IPv6 host', () => {
    const u = parseQueueUrl('redis://[::1]:6390');
    assert.equal(u.host, '::1');
    assert.equal(hostPort(u), '[::1]:6390');
    assert.equal(u.redacted, 'redis://[::1]:6390');
  });

  for (const [text, why] of [
    ['http://127.0.0.1:6379', 'unknown scheme http'],
    ['redis://:secretpw@127.0.0.1:99999', 'bad port'],
    ['redis://:secretpw@127.0.0.1:6379/x', 'the database must be a number'],
    ['redis://:secretpw@127.0.0.1:6379/0?tls=1', 'query strings'],
    ['127.0.0.1:6379', 'not a redis:// URL'],
    ['not a url secretpw', 'not a redis:// URL'],
    ['redis://:secretpw@exa mple:1', 'not a URL'],
  ]) {
    test(`refused in one line without the password: ${why}`, () => {
      assert.throws(
        () => parseQueueUrl(text),
        (e: unknown) => {
          assert.ok(e instanceof GenepruneError);
          assert.equal(e.kind, 'flag');
          assert.equal(e.where, '--queue');
          assert.ok(e.oneLine().includes(why), e.oneLine());
          assert.ok(!e.oneLine().includes('secretpw'), e.oneLine());
          assert.ok(!e.oneLine().includes('\n'));
          return true;
        },
      );
    });
  }

  test('redactedUrl and withoutPassword never let the password through', () => {
    assert.equal(redactedUrl('redis://bob:hunter2@h:1/2'), 'redis://bob:***@h:1/2');
    assert.equal(redactedUrl('ftp://bob:hunter2@h'), '<unparseable queue URL>');
    const u = parseQueueUrl('redis://:a%2Fb@h:1');
    assert.equal(withoutPassword('auth a/b failed (a%2Fb)', u), 'auth *** failed (***)');
  });
});

describe('the command line refuses bad queue flags in one line', () => {
  test('geneprune worker: no --queue, a bad URL (password not echoed), a lock too short', () => {
    assertOneLineError(runCli(['worker']), 2, '--queue', 'required');
    const bad = assertOneLineError(
      runCli(['worker', '--queue', 'redis://:topsecret@host:70000']),
      2,
      '--queue',
      'bad port',
    );
    assert.ok(!bad.includes('topsecret'));
    assertOneLineError(
      runCli(['worker', '--queue', 'redis://127.0.0.1:6379', '--lock-ms', '50']),
      2,
      '--lock-ms',
      '≥ 100',
    );
  });

  test('heads and weights --queue: a bad URL, or --queue with --workers, before any data is read', () => {
    const dir = mkdtempSync(join(tmpdir(), 'geneprune-queueflags-'));
    try {
      const out = join(dir, 'run');
      const base = ['heads', '--target-sparsity', '0.25', '--calib', 'x', '--eval', 'y', '--out', out];
      const bad = assertOneLineError(runCli([...base, '--queue', 'http://:topsecret@h']), 2, '--queue');
      assert.ok(!bad.includes('topsecret'));
      assertOneLineError(
        runCli([...base, '--queue', 'redis://127.0.0.1:1', '--workers', '2']),
        2,
        '--queue',
        '--workers',
      );
      assertOneLineError(
        runCli([
          'weights',
          '--method',
          'ga-magnitude',
          '--sparsity',
          '0.5',
          '--calib',
          'x',
          '--eval',
          'y',
          '--out',
          out,
          '--queue',
          'redis://127.0.0.1:1',
          '--workers',
          '2',
        ]),
        2,
        '--queue',
        '--workers',
      );
      assert.ok(!existsSync(out));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
