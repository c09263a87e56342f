import assert from 'node:assert/strict';
import { readFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { test } from 'node:test';
import { ConfigError, configVariables, defaultWarmPoolSize, loadConfig } from '../../src/server/config.js';

test('defaults need nothing: local driver, PGlite in ./.porthole, loopback', () => {
  const config = loadConfig({});
  assert.equal(config.driver, 'local');
  assert.equal(config.databaseUrl, null);
  assert.equal(config.host, '127.0.0.1');
  assert.equal(config.port, 8480);
  assert.ok(config.dataDir.endsWith('/.porthole'));
  assert.ok(Object.isFrozen(config));
});

test('honours PORTHOLE_PORT, PORTHOLE_DATA_DIR, PORTHOLE_API_KEY and DATABASE_URL', () => {
  const config = loadConfig({
    PORTHOLE_PORT: '9000',
    PORTHOLE_DATA_DIR: '/tmp/x',
    PORTHOLE_API_KEY: 'k'.repeat(20),
    DATABASE_URL: 'postgres://u:p@127.0.0.1/db',
  });
  assert.equal(config.port, 9000);
  assert.equal(config.dataDir, '/tmp/x');
  assert.equal(config.apiKey?.reveal(), 'k'.repeat(20));
  assert.equal(config.databaseUrl?.reveal(), 'postgres://u:p@127.0.0.1/db');
});

test('every problem is reported at once', () => {
  try {
    loadConfig({ PORTHOLE_PORT: 'eighty', PORTHOLE_API_KEY: 'short', DATABASE_URL: 'mysql://x', PORTHOLE_BOOT_TIMEOUT_MS: '-1' });
    assert.fail('should throw');
  } catch (error) {
    assert.ok(error instanceof ConfigError);
    const text = error.problems.join('\n');
    for (const name of ['PORTHOLE_PORT', 'PORTHOLE_API_KEY', 'DATABASE_URL', 'PORTHOLE_BOOT_TIMEOUT_MS']) assert.match(text, new RegExp(name));
  }
});

test('secrets may come from *_FILE and never print', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'porthole-test-config-'));
  try {
    await writeFile(join(dir, 'key'), 'from-a-file-0123456789\n');
    const config = loadConfig({ PORTHOLE_API_KEY_FILE: join(dir, 'key') });
    assert.equal(config.apiKey?.reveal(), 'from-a-file-0123456789');
    assert.doesNotMatch(JSON.stringify(config), /from-a-file/);
    assert.doesNotMatch(inspect(config), /from-a-file/);
    assert.doesNotMatch(`${config.apiKey}`, /from-a-file/);
    assert.throws(() => loadConfig({ PORTHOLE_API_KEY_FILE: join(dir, 'missing') }), /PORTHOLE_API_KEY_FILE/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('docs/config.md documents every variable', async () => {
  const doc = await readFile(new URL('../../../docs/config.md', import.meta.url), 'utf8');
  for (const name of configVariables) assert.match(doc, new RegExp(`\`${name}\``), `${name} is not in docs/config.md`);
});

test('PORTHOLE_EGRESS_ALLOW is a checked comma list; PORTHOLE_EGRESS_UPSTREAM an http:// URL; PORTHOLE_EGRESS_LOOPBACK loopback host:port pairs', () => {
  assert.deepEqual(loadConfig({}).egress, { allow: [], upstream: null, loopback: [] });
  const config = loadConfig({
    PORTHOLE_EGRESS_ALLOW: ' login.example.com, *.example.org,10.20.0.0/16 ,,203.0.113.7',
    PORTHOLE_EGRESS_UPSTREAM: 'http://proxy.internal:3128',
    PORTHOLE_EGRESS_LOOPBACK: '127.0.0.1:8443, localhost:9000',
  });
  assert.deepEqual(config.egress, {
    allow: ['login.example.com', '*.example.org', '10.20.0.0/16', '203.0.113.7'],
    upstream: 'http://proxy.internal:3128',
    loopback: [
      { host: '127.0.0.1', port: 8443 },
      { host: 'localhost', port: 9000 },
    ],
  });
  assert.throws(
    () => loadConfig({ PORTHOLE_EGRESS_LOOPBACK: '10.0.0.1:80' }),
    (error: unknown) => error instanceof ConfigError && /PORTHOLE_EGRESS_LOOPBACK: must be a comma list of 127\.x\.x\.x:PORT/.test(error.problems.join('\n')),
  );
  assert.ok(Object.isFrozen(config.egress.allow));
  try {
    loadConfig({ PORTHOLE_EGRESS_ALLOW: 'ok.example,bad entry,10.0.0.0/33', PORTHOLE_EGRESS_UPSTREAM: 'https://proxy.internal' });
    assert.fail('should throw');
  } catch (error) {
    assert.ok(error instanceof ConfigError);
    const text = error.problems.join('\n');
    assert.match(text, /PORTHOLE_EGRESS_ALLOW: bad entry: /);
    assert.match(text, /PORTHOLE_EGRESS_ALLOW: 10\.0\.0\.0\/33: /);
    assert.match(text, /PORTHOLE_EGRESS_UPSTREAM: must be an http:\/\/ proxy URL/);
  }
});

test('the warm pool: sized to the host unless set, 0 turns it off, and it is bounded', () => {
  const GiB = 1024 ** 3;
  assert.equal(defaultWarmPoolSize(2, 24 * GiB), 1, 'this 2-core machine');
  assert.equal(defaultWarmPoolSize(1, 4 * GiB), 1, 'one core still gets one');
  assert.equal(defaultWarmPoolSize(16, 64 * GiB), 4, 'at most four');
  assert.equal(defaultWarmPoolSize(8, 1 * GiB), 0, 'none where memory is short');
  assert.equal(loadConfig({}).warmPool.size, defaultWarmPoolSize());
  assert.deepEqual(loadConfig({ PORTHOLE_WARM_POOL: '0', PORTHOLE_WARM_POOL_MAX_AGE_MS: '60000' }).warmPool, { size: 0, maxAgeMs: 60_000 });
  assert.throws(
    () => loadConfig({ PORTHOLE_WARM_POOL: '-1' }),
    (error: unknown) => error instanceof ConfigError && /PORTHOLE_WARM_POOL/.test(error.message),
  );
  assert.throws(
    () => loadConfig({ PORTHOLE_WARM_POOL: '65' }),
    (error: unknown) => error instanceof ConfigError && /PORTHOLE_WARM_POOL/.test(error.message),
  );
});
