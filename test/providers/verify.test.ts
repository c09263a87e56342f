import assert from 'node:assert/strict';
import { createWriteStream, type WriteStream } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as oidc from 'openid-client';
import { startDemoOidc, type DemoOidc } from '../../src/demo/oidc/demo-oidc.js';
import { claudeCode } from '../../src/providers/claude-code.js';
import { codex, codexClientId } from '../../src/providers/codex.js';
import { demo, defaultDemoAccount, type DemoCredentials } from '../../src/providers/demo.js';
import { geminiCli, geminiCliClientId } from '../../src/providers/gemini-cli.js';
import type { CredentialVerdict, Provider, VerifyContext } from '../../src/providers/provider.js';
import { createLogger } from '../../src/server/logger.js';
import {
  base64urlJson,
  claudeCodeFile,
  codexFile,
  credentialExpiry,
  credentialSecret,
  fakeJwt,
  fakeToken,
  geminiCliFile,
} from '../support/credential-files.js';
import { demoSignIn } from '../support/demo-sign-in.js';
import { testOutputDir } from '../support/server.js';

// Each provider's `verify`, the server's check of a delivered credential before the session
// completes. The demo provider is asked for real (a real OpenID Connect provider, tokens from a real
// sign-in); the real providers are checked offline, so a well-formed file is `offline-checks-only`
// and a file no sign-in with that provider could have written is refused.

const secret = credentialSecret;
const token = fakeToken;
const b64 = base64urlJson;
const jwt = fakeJwt;
const future = credentialExpiry;
const exp = Math.floor(future / 1000);
const offlineContext: VerifyContext = {
  // Offline verifiers must not touch the network: any call fails the test.
  fetch: (() => {
    throw new Error('an offline verifier called fetch');
  }) as typeof fetch,
  signal: new AbortController().signal,
};

function assertRefused(verdict: CredentialVerdict, reason: RegExp, what: string): void {
  assert.equal(verdict.ok, false, `${what}: expected a refusal, got ${JSON.stringify(verdict)}`);
  if (verdict.ok) return;
  assert.match(verdict.reason, reason, what);
  assert.equal(verdict.isRetryable, false, `${what}: a refusal is not retryable`);
  assert.ok(!verdict.reason.includes(secret), `${what}: the reason must never echo file content`);
}

interface OfflineCase {
  readonly provider: Provider;
  readonly good: () => Record<string, unknown>;
  readonly account: string | null;
  /** Edits of the good file that no sign-in with this provider writes, and the reason each gets. */
  readonly forged: ReadonlyArray<readonly [string, (file: Record<string, unknown>) => void, RegExp]>;
}

const claudeFile = claudeCodeFile;
const geminiFile = geminiCliFile;

type Edit = (file: Record<string, unknown>) => void;
const oauth =
  (edit: (o: Record<string, unknown>) => void): Edit =>
  (file) =>
    edit(file.claudeAiOauth as Record<string, unknown>);
const tokens =
  (edit: (t: Record<string, unknown>) => void): Edit =>
  (file) =>
    edit(file.tokens as Record<string, unknown>);

const cases: readonly OfflineCase[] = [
  {
    provider: claudeCode,
    good: claudeFile,
    account: null,
    forged: [
      [
        'made-up access token',
        oauth((o) => (o.accessToken = `fake-access-${secret}-token-0123456789abcdef`)),
        /access token is not a Claude OAuth access token/,
      ],
      [
        'refresh token in the access token’s place',
        oauth((o) => (o.accessToken = `sk-ant-ort01-${token(95)}`)),
        /access token is not a Claude OAuth access token/,
      ],
      ['made-up refresh token', oauth((o) => (o.refreshToken = `rt-${secret}`)), /refresh token is not a Claude OAuth refresh token/],
      ['a token with a space', oauth((o) => (o.refreshToken = `sk-ant-ort01-${token(40)} ${token(40)}`)), /refresh token is not/],
      ['a truncated token', oauth((o) => (o.accessToken = 'sk-ant-oat01-abc')), /access token is not/],
      ['no expiry', oauth((o) => delete o.expiresAt), /expiresAt is not a time/],
      ['an expiry that is text', oauth((o) => (o.expiresAt = '2099-01-01')), /expiresAt is not a time/],
      ['scopes that are not a list', oauth((o) => (o.scopes = 'user:inference')), /scopes is not a list/],
    ],
  },
  {
    provider: codex,
    good: codexFile,
    account: 'ada@example.com',
    forged: [
      ['an ID token that is not a JWT', tokens((t) => (t.id_token = `${secret}.x.y`)), /ID token is not a signed JWT/],
      [
        'an unsigned ID token (alg none)',
        tokens((t) => (t.id_token = jwt({ iss: 'https://auth.openai.com', aud: codexClientId, sub: 's', email: 'ceo@victim.example' }, { alg: 'none' }))),
        /ID token is not a signed JWT/,
      ],
      [
        'another issuer',
        tokens((t) => (t.id_token = jwt({ iss: 'https://evil.example', aud: codexClientId, sub: 's', email: 'ceo@victim.example' }))),
        /not issued by https:\/\/auth\.openai\.com/,
      ],
      [
        'another client',
        tokens((t) => (t.id_token = jwt({ iss: 'https://auth.openai.com', aud: 'app_someoneElse', sub: 's', email: 'ceo@victim.example' }))),
        /not issued to Codex/,
      ],
      [
        'no subject',
        tokens((t) => (t.id_token = jwt({ iss: 'https://auth.openai.com', aud: codexClientId, email: 'ceo@victim.example' }))),
        /names no subject/,
      ],
      ['no account e-mail', tokens((t) => (t.id_token = jwt({ iss: 'https://auth.openai.com', aud: codexClientId, sub: 's' }))), /names no account e-mail/],
      ['an opaque access token', tokens((t) => (t.access_token = `opaque-${secret}-0123456789`)), /access token is not a signed JWT/],
      ['an access token from elsewhere', tokens((t) => (t.access_token = jwt({ iss: 'https://evil.example', exp }))), /access token was not issued by/],
      ['a refresh token with spaces', tokens((t) => (t.refresh_token = `rt ${secret} with spaces`)), /refresh token is not a token/],
      ['another account id', tokens((t) => (t.account_id = 'acc-victim')), /account_id is not the ID token’s ChatGPT account/],
    ],
  },
  {
    provider: geminiCli,
    good: geminiFile,
    account: 'grace@example.com',
    forged: [
      ['a made-up access token', (f) => (f.access_token = `fake-${secret}-access-token`), /access token is not a Google access token/],
      ['a made-up refresh token', (f) => (f.refresh_token = `rt_${secret}_0123456789abcdefghij`), /refresh token is not a Google refresh token/],
      ['another token type', (f) => (f.token_type = 'MAC'), /token type is not Bearer/],
      ['no expiry', (f) => delete f.expiry_date, /expiry_date is not a time/],
      ['an ID token that is not a JWT', (f) => (f.id_token = `${secret}`), /ID token is not a signed JWT/],
      [
        'an ID token from another issuer',
        (f) => (f.id_token = jwt({ iss: 'https://evil.example', aud: geminiCliClientId, email: 'ceo@victim.example' })),
        /not issued by Google/,
      ],
      [
        'an ID token for another client',
        (f) => (f.id_token = jwt({ iss: 'accounts.google.com', aud: 'other.apps.googleusercontent.com', email: 'ceo@victim.example' })),
        /not issued to Gemini CLI/,
      ],
      [
        'an ID token without an e-mail',
        (f) => (f.id_token = jwt({ iss: 'https://accounts.google.com', aud: geminiCliClientId, sub: '1' })),
        /names no account e-mail/,
      ],
    ],
  },
];

for (const c of cases) {
  describe(`${c.provider.name} verify (offline)`, () => {
    test('a well-formed file is offline-checks-only, with the validator’s account and expiry', async () => {
      const verdict = await c.provider.verify(JSON.stringify(c.good(), null, 2), offlineContext);
      assert.deepEqual(verdict, { ok: true, verification: 'offline-checks-only', account: c.account, expiresAt: new Date(future).toISOString() });
    });

    test('each file no sign-in with this provider writes is refused, naming the part, never the content', async () => {
      for (const [what, edit, reason] of c.forged) {
        const file = c.good();
        edit(file);
        assert.equal(c.provider.validate(JSON.stringify(file)).ok, true, `${what}: the validator lets it through; verify is the check that catches it`);
        assertRefused(await c.provider.verify(JSON.stringify(file), offlineContext), reason, what);
      }
    });

    test('a file that does not even validate is refused', async () => {
      assertRefused(await c.provider.verify('{}', offlineContext), /does not validate/, 'an empty object');
      assertRefused(await c.provider.verify(`not json ${secret}`, offlineContext), /does not validate/, 'not JSON');
    });
  });
}

describe('demo verify (with the real demo provider)', () => {
  let provider: DemoOidc;
  let logStream: WriteStream;
  let context: VerifyContext;

  before(async () => {
    const out = testOutputDir('verify');
    await mkdir(out, { recursive: true });
    logStream = createWriteStream(join(out, 'demo-oidc.log'));
    provider = await startDemoOidc({ port: 0, account: { ...defaultDemoAccount }, logger: createLogger('debug', logStream) });
    context = { demo: { issuer: provider.issuer, clientId: provider.clientId }, fetch, signal: AbortSignal.timeout(30_000) };
  });
  after(async () => {
    await provider?.close();
    await new Promise<void>((resolve) => (logStream ? logStream.end(resolve) : resolve()));
  });

  const text = (file: DemoCredentials) => `${JSON.stringify(file, null, 2)}\n`;

  test('a real sign-in verifies; the account and expiry are the issuer’s, not the file’s; the refresh token still works after', async () => {
    const real = await demoSignIn(provider.issuer);
    // The file's own claims are lies: the verdict must not repeat them.
    const lying = { ...real, account: { sub: 'ceo', email: 'ceo@victim.example' }, expires_at: '2099-01-01T00:00:00.000Z' };
    const verdict = await demo.verify(text(lying), context);
    assert.equal(verdict.ok, true, JSON.stringify(verdict));
    if (!verdict.ok) return;
    assert.equal(verdict.verification, 'verified');
    assert.equal(verdict.account, defaultDemoAccount.email);
    const expiresInMs = Date.parse(verdict.expiresAt ?? '') - Date.now();
    assert.ok(expiresInMs > 50 * 60_000 && expiresInMs <= 60 * 60_000, `the access token's own expiry, not 2099: ${verdict.expiresAt}`);
    // Verifying twice is fine (nothing was used up), and the refresh token was not rotated.
    assert.equal((await demo.verify(text(real), context)).ok, true);
    const config = await oidc.discovery(new URL(provider.issuer), provider.clientId, undefined, oidc.None(), { execute: [oidc.allowInsecureRequests] });
    assert.ok((await oidc.refreshTokenGrant(config, real.refresh_token)).access_token);
  });

  test('forged tokens of the right shape are refused: access, refresh or ID token', async () => {
    const real = await demoSignIn(provider.issuer);
    const forged: DemoCredentials = {
      ...real,
      access_token: `${secret}${randomBytes(32).toString('base64url')}`,
      refresh_token: `${secret}${randomBytes(32).toString('base64url')}`,
      id_token: jwt({ iss: provider.issuer, aud: provider.clientId, sub: 'ceo', email: 'ceo@victim.example' }),
      account: { sub: 'ceo', email: 'ceo@victim.example' },
      expires_at: '2099-01-01T00:00:00.000Z',
    };
    assertRefused(await demo.verify(text(forged), context), /refused the access token at userinfo \(401\)/, 'all tokens made up');
    assertRefused(
      await demo.verify(text({ ...real, refresh_token: `${secret}-made-up` }), context),
      /does not know the refresh token/,
      'a made-up refresh token',
    );
    assertRefused(
      await demo.verify(text({ ...real, refresh_token: real.access_token }), context),
      /refresh token is another kind of token/,
      'the access token as the refresh token',
    );
    assertRefused(
      await demo.verify(text({ ...real, access_token: real.refresh_token }), context),
      /refused the access token at userinfo/,
      'the refresh token as the access token',
    );
    const [header, , signature] = real.id_token.split('.');
    const claims = JSON.parse(Buffer.from(real.id_token.split('.')[1]!, 'base64url').toString()) as Record<string, unknown>;
    assertRefused(
      await demo.verify(text({ ...real, id_token: `${header}.${b64({ ...claims, email: 'ceo@victim.example' })}.${signature}` }), context),
      /signature does not verify/,
      'an ID token with changed claims',
    );
    assertRefused(await demo.verify(text({ ...real, id_token: jwt(claims, { alg: 'none' }) }), context), /not a JWT signed with RS256/, 'an unsigned ID token');
    assertRefused(
      await demo.verify(text({ ...real, id_token: jwt(claims, { alg: 'RS256', kid: 'someone-elses-key' }) }), context),
      /not signed by one of the demo provider’s keys/,
      'another key',
    );
  });

  test('a file naming another issuer or client, or with the demo provider off, is refused before any request', async () => {
    const real = await demoSignIn(provider.issuer);
    const noNetwork: VerifyContext = { ...context, fetch: offlineContext.fetch };
    assertRefused(await demo.verify(text({ ...real, issuer: 'http://127.0.0.1:1' }), noNetwork), /another issuer/, 'another issuer');
    assertRefused(await demo.verify(text({ ...real, client_id: 'someone-else' }), noNetwork), /another client/, 'another client');
    assertRefused(await demo.verify(text(real), { fetch: offlineContext.fetch, signal: context.signal }), /switched off/, 'no demo provider');
  });

  test('an issuer that cannot be asked is retryable, not a refusal', async () => {
    const real = await demoSignIn(provider.issuer);
    // A port nothing listens on: bound once, then closed.
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const gone = `http://127.0.0.1:${(closed.address() as AddressInfo).port}`;
    await new Promise((resolve) => closed.close(resolve));
    const down: VerifyContext = { demo: { issuer: gone, clientId: provider.clientId }, fetch, signal: AbortSignal.timeout(5_000) };
    const verdict = await demo.verify(text({ ...real, issuer: gone }), down);
    assert.deepEqual(verdict, { ok: false, reason: 'the demo provider could not be asked (ECONNREFUSED)', isRetryable: true });
    const timedOut = await demo.verify(text(real), { ...context, signal: AbortSignal.abort() });
    assert.deepEqual(timedOut, { ok: false, reason: 'the demo provider could not be asked (timed out)', isRetryable: true });
  });
});
