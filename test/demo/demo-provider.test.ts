import assert from 'node:assert/strict';
import { test } from 'node:test';
import { inspect } from 'node:util';
import { demo, validateDemoCredentials } from '../../src/providers/demo.js';
import { loadConfig } from '../../src/server/config.js';

// The demo provider module: its validator on the files a watcher meets (finished, half-written,
// incomplete, not JSON), and the login it asks the agent to run.

const good = {
  issuer: 'http://127.0.0.1:40000',
  client_id: 'porthole-demo-cli',
  access_token: 'access-token-value',
  refresh_token: 'refresh-token-value',
  id_token: 'a.b.c',
  token_type: 'bearer',
  scope: 'openid email profile offline_access',
  expires_at: '2030-01-02T03:04:05.000Z',
  account: { sub: 'demo-0123456789abcdef', email: 'demo@porthole.test' },
};
const goodText = `${JSON.stringify(good, null, 2)}\n`;

/** A check's text must never carry the file's secrets. */
function assertNoSecrets(result: unknown): void {
  const text = JSON.stringify(result);
  for (const secret of ['access-token-value', 'refresh-token-value']) assert.doesNotMatch(text, new RegExp(secret));
}

test('a finished file is ok, with its expiry and account', () => {
  assert.deepEqual(validateDemoCredentials(goodText), { ok: true, expiresAt: '2030-01-02T03:04:05.000Z', account: 'demo@porthole.test' });
  assert.equal(demo.validate, validateDemoCredentials);
});

test('a half-written file waits for complete JSON, at every cut', () => {
  for (let cut = 0; cut < goodText.trimEnd().length; cut += 7) {
    const result = validateDemoCredentials(goodText.slice(0, cut));
    assert.equal(result.ok, false, `cut at ${cut}`);
    assertNoSecrets(result);
  }
  assert.deepEqual(validateDemoCredentials(goodText.slice(0, goodText.length / 2)), { ok: false, waitingFor: 'complete JSON' });
});

test('a file without a refresh token, access token or readable expiry names what is missing', () => {
  const without = (key: string, value?: unknown) => JSON.stringify({ ...good, [key]: value });
  assert.deepEqual(validateDemoCredentials(without('refresh_token')), { ok: false, waitingFor: 'a refresh token' });
  assert.deepEqual(validateDemoCredentials(without('refresh_token', '')), { ok: false, waitingFor: 'a refresh token' });
  assert.deepEqual(validateDemoCredentials(without('access_token', 42)), { ok: false, waitingFor: 'an access token' });
  assert.deepEqual(validateDemoCredentials(without('expires_at', 'soon')), { ok: false, waitingFor: 'an expiry time (expires_at)' });
  assertNoSecrets(validateDemoCredentials(without('expires_at', 'soon')));
});

test('non-JSON and non-object content is refused without throwing or echoing it', () => {
  for (const content of ['', 'not json at all', 'access-token-value', '\u0000\u0001', 'null', '[]', '"text"', '12']) {
    const result = validateDemoCredentials(content);
    assert.equal(result.ok, false, JSON.stringify(content));
    assertNoSecrets(result);
  }
  assert.deepEqual(validateDemoCredentials('[1]'), { ok: false, waitingFor: 'a JSON object' });
});

test('the account falls back to the subject when there is no e-mail', () => {
  const result = validateDemoCredentials(JSON.stringify({ ...good, account: { sub: 'demo-1', email: null } }));
  assert.deepEqual(result, { ok: true, expiresAt: good.expires_at, account: 'demo-1' });
});

test('the login runs the bundled demo CLI with its storage pinned to the watched directory', () => {
  const context = {
    home: '/home/user',
    credentialDir: '/home/user/.porthole/credentials',
    cliDir: '/opt/porthole/clis',
    openUrlCommand: '/opt/porthole/open-url',
    demo: { issuer: 'http://127.0.0.1:41234', clientId: 'porthole-demo-cli' },
  };
  assert.deepEqual(demo.loginCommand(context), ['/usr/bin/node', '/opt/porthole/demo-cli.mjs', 'login']);
  assert.deepEqual(demo.loginCommand({ ...context, demoCli: '/elsewhere/demo-cli.mjs' }), ['/usr/bin/node', '/elsewhere/demo-cli.mjs', 'login']);
  assert.deepEqual(demo.env(context), {
    PORTHOLE_DEMO_HOME: '/home/user/.porthole/credentials',
    PORTHOLE_DEMO_ISSUER: 'http://127.0.0.1:41234',
    PORTHOLE_DEMO_CLIENT_ID: 'porthole-demo-cli',
    BROWSER: '/opt/porthole/open-url',
  });
  assert.equal(demo.credentialFile, 'credentials.json');
  assert.equal(demo.installPath({ HOME: '/home/me' }), '/home/me/.config/porthole-demo/credentials.json');
  assert.deepEqual(demo.authorizeUrl, { host: '127.0.0.1', path: '/auth' });
});

test('config: the demo provider is on by default with the documented account; the password never prints', () => {
  const defaults = loadConfig({}).demoProvider;
  assert.equal(defaults.isEnabled, true);
  assert.equal(defaults.port, 8481, 'PORTHOLE_PORT + 1: the issuer is the same after a restart');
  assert.equal(defaults.isPortSet, false);
  assert.equal(loadConfig({ PORTHOLE_PORT: '0' }).demoProvider.port, 0);
  assert.equal(defaults.email, 'demo@porthole.test');
  assert.equal(defaults.password.reveal(), 'demo-password');
  assert.equal(defaults.accessTokenTtlSeconds, 3600);
  const set = loadConfig({
    PORTHOLE_DEMO_PROVIDER: 'false',
    PORTHOLE_DEMO_PORT: '9555',
    PORTHOLE_DEMO_EMAIL: 'me@example.test',
    PORTHOLE_DEMO_PASSWORD: 'hunter2-secret',
    PORTHOLE_DEMO_ACCESS_TOKEN_TTL_S: '5',
    PORTHOLE_DEMO_ISSUER: 'http://127.0.0.1:9556/',
  });
  assert.deepEqual(
    { ...set.demoProvider, password: set.demoProvider.password.reveal() },
    {
      isEnabled: false,
      port: 9555,
      isPortSet: true,
      email: 'me@example.test',
      password: 'hunter2-secret',
      accessTokenTtlSeconds: 5,
      issuer: 'http://127.0.0.1:9556',
    },
  );
  assert.equal(defaults.issuer, null, 'a demo provider of its own by default');
  assert.throws(() => loadConfig({ PORTHOLE_DEMO_ISSUER: 'http://demo.example.com:9556' }), /PORTHOLE_DEMO_ISSUER.*127\.0\.0\.1/);
  assert.throws(() => loadConfig({ PORTHOLE_DEMO_ACCESS_TOKEN_TTL_S: '0' }), /PORTHOLE_DEMO_ACCESS_TOKEN_TTL_S/);
  assert.doesNotMatch(JSON.stringify(set) + inspect(set, { depth: 5 }), /hunter2-secret/);
  assert.throws(
    () => loadConfig({ PORTHOLE_DEMO_EMAIL: 'not an address', PORTHOLE_DEMO_PROVIDER: 'maybe' }),
    /PORTHOLE_DEMO_EMAIL[\s\S]*PORTHOLE_DEMO_PROVIDER|PORTHOLE_DEMO_PROVIDER[\s\S]*PORTHOLE_DEMO_EMAIL/,
  );
});
