import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { claudeCode } from '../../src/providers/claude-code.js';
import { codex } from '../../src/providers/codex.js';
import { geminiCli } from '../../src/providers/gemini-cli.js';
import type { CredentialCheck, Provider, ProviderContext } from '../../src/providers/provider.js';

// Each real CLI's validator on the file shapes it must tell apart: the finished file, the same file
// caught half-written, one without a refresh token, something that is not JSON, and a finished file
// whose access token has expired (still good: the refresh token is what porthole delivers).

const secret = 'SECRET-do-not-echo';
const hour = 3_600_000;
const future = Date.parse('2031-05-06T07:08:09.000Z');
const past = Date.parse('2020-01-02T03:04:05.000Z');

const b64 = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url');
/** A JWT as the CLIs store it; the signature is never checked, so any bytes do. */
const jwt = (claims: Record<string, unknown>): string => `${b64({ alg: 'RS256', typ: 'JWT' })}.${b64(claims)}.${secret}-signature`;

interface Case {
  readonly provider: Provider;
  /** The documented shape, with the access token expiring at `expiresAtMs`. */
  readonly good: (expiresAtMs: number) => unknown;
  readonly withoutRefreshToken: (expiresAtMs: number) => unknown;
  readonly account: string | null;
}

const cases: readonly Case[] = [
  {
    provider: claudeCode,
    good: (expiresAt) => ({
      claudeAiOauth: {
        accessToken: `sk-ant-oat01-${secret}`,
        refreshToken: `sk-ant-ort01-${secret}`,
        expiresAt,
        scopes: ['user:inference', 'user:profile', 'user:sessions:claude_code'],
        subscriptionType: 'max',
      },
    }),
    withoutRefreshToken: (expiresAt) => ({ claudeAiOauth: { accessToken: `sk-ant-oat01-${secret}`, expiresAt, scopes: ['user:inference'] } }),
    account: null,
  },
  {
    provider: codex,
    good: (expiresAt) => ({
      OPENAI_API_KEY: null,
      tokens: {
        id_token: jwt({
          email: 'ada@example.com',
          sub: 'user-1',
          exp: Math.floor(expiresAt / 1000),
          'https://api.openai.com/auth': { chatgpt_plan_type: 'plus' },
        }),
        access_token: jwt({ sub: 'user-1', exp: Math.floor(expiresAt / 1000), secret }),
        refresh_token: `rt_${secret}`,
        account_id: 'acc-1',
      },
      last_refresh: new Date(expiresAt - hour).toISOString(),
    }),
    withoutRefreshToken: (expiresAt) => ({
      OPENAI_API_KEY: null,
      tokens: {
        id_token: jwt({ email: 'ada@example.com', exp: Math.floor(expiresAt / 1000) }),
        access_token: jwt({ exp: Math.floor(expiresAt / 1000) }),
        account_id: 'acc-1',
      },
      last_refresh: new Date(expiresAt - hour).toISOString(),
    }),
    account: 'ada@example.com',
  },
  {
    provider: geminiCli,
    good: (expiresAt) => ({
      access_token: `ya29.${secret}`,
      refresh_token: `1//0g${secret}`,
      scope: 'https://www.googleapis.com/auth/cloud-platform https://www.googleapis.com/auth/userinfo.email openid',
      token_type: 'Bearer',
      id_token: jwt({ iss: 'https://accounts.google.com', email: 'grace@example.com', sub: '1234', exp: Math.floor(expiresAt / 1000) }),
      expiry_date: expiresAt,
    }),
    withoutRefreshToken: (expiresAt) => ({ access_token: `ya29.${secret}`, token_type: 'Bearer', expiry_date: expiresAt }),
    account: 'grace@example.com',
  },
];

function assertWaiting(check: CredentialCheck, waitingFor: string | RegExp): void {
  assert.equal(check.ok, false, `expected not ok, got ${JSON.stringify(check)}`);
  if (check.ok) return;
  if (typeof waitingFor === 'string') assert.equal(check.waitingFor, waitingFor);
  else assert.match(check.waitingFor, waitingFor);
  assert.ok(!check.waitingFor.includes(secret), 'waitingFor must never echo file content');
}

for (const c of cases) {
  describe(`${c.provider.name} validator`, () => {
    test('a finished file of the documented shape is ok, with its expiry and account', () => {
      const check = c.provider.validate(JSON.stringify(c.good(future), null, 2));
      assert.deepEqual(check, { ok: true, expiresAt: new Date(future).toISOString(), account: c.account });
    });

    test('a half-written file is not ok yet (every truncation of it)', () => {
      const content = JSON.stringify(c.good(future), null, 2);
      for (let length = 0; length < content.length; length += 7) {
        const check = c.provider.validate(content.slice(0, length));
        assert.equal(check.ok, false, `accepted the first ${length} of ${content.length} characters`);
        if (!check.ok) assert.ok(!check.waitingFor.includes(secret));
      }
      assertWaiting(c.provider.validate(content.slice(0, Math.floor(content.length / 2))), 'complete JSON');
    });

    test('a file without a refresh token waits for one', () => {
      assertWaiting(c.provider.validate(JSON.stringify(c.withoutRefreshToken(future))), 'a refresh token');
    });

    test('non-JSON and JSON that is not an object are refused without throwing', () => {
      assertWaiting(c.provider.validate(`not json ${secret}`), 'complete JSON');
      assertWaiting(c.provider.validate(''), 'complete JSON');
      assertWaiting(c.provider.validate('\u0000\u00ff'), 'complete JSON');
      for (const value of ['null', '42', '"text"', `["${secret}"]`, 'true']) assertWaiting(c.provider.validate(value), 'a JSON object');
      assertWaiting(c.provider.validate('{}'), /./);
    });

    test('an expired access token is still ok: the refresh token is what matters', () => {
      const check = c.provider.validate(JSON.stringify(c.good(past)));
      assert.deepEqual(check, { ok: true, expiresAt: new Date(past).toISOString(), account: c.account });
    });

    test('wrong types in the right places never throw and never pass', () => {
      const good = c.good(future) as Record<string, unknown>;
      const mangled = JSON.parse(JSON.stringify(good, (_key, value: unknown) => (typeof value === 'string' ? 42 : value))) as unknown;
      assertWaiting(c.provider.validate(JSON.stringify(mangled)), /./);
    });
  });
}

describe('expiry and account edge cases', () => {
  test('claude-code: no expiresAt gives a null expiry, still ok', () => {
    const check = claudeCode.validate(JSON.stringify({ claudeAiOauth: { accessToken: 'a', refreshToken: 'r' } }));
    assert.deepEqual(check, { ok: true, expiresAt: null, account: null });
  });

  test('codex: an opaque access token falls back to the ID token expiry; the profile claim gives the account', () => {
    const check = codex.validate(
      JSON.stringify({
        tokens: {
          access_token: 'opaque',
          refresh_token: 'r',
          id_token: jwt({ exp: Math.floor(future / 1000), 'https://api.openai.com/profile': { email: 'lin@example.com' } }),
        },
      }),
    );
    assert.deepEqual(check, { ok: true, expiresAt: new Date(future).toISOString(), account: 'lin@example.com' });
  });

  test('codex: an ID token that is not a JWT is accepted with no expiry and no account', () => {
    const check = codex.validate(JSON.stringify({ tokens: { access_token: 'opaque', refresh_token: 'r', id_token: 'not.a-jwt' } }));
    assert.deepEqual(check, { ok: true, expiresAt: null, account: null });
  });

  test('codex: tokens without an ID token are not what Codex itself would load', () => {
    assertWaiting(codex.validate(JSON.stringify({ tokens: { access_token: 'a', refresh_token: 'r' } })), 'an ID token');
    assertWaiting(codex.validate(JSON.stringify({ OPENAI_API_KEY: `sk-${secret}` })), 'ChatGPT sign-in tokens');
  });

  test('gemini-cli: no id_token gives no account; a bogus expiry_date gives no expiry', () => {
    const check = geminiCli.validate(JSON.stringify({ access_token: 'a', refresh_token: 'r', expiry_date: 'tomorrow' }));
    assert.deepEqual(check, { ok: true, expiresAt: null, account: null });
  });
});

describe('provider data', () => {
  const context: ProviderContext = {
    home: '/home/porthole',
    credentialDir: '/home/porthole/.porthole/login/x',
    cliDir: '/opt/porthole/clis',
    openUrlCommand: '/tmp/porthole-bin/xdg-open',
  };

  test('each pins its storage to credentialDir and points the browser at the sandbox opener', () => {
    assert.equal(claudeCode.env(context).CLAUDE_CONFIG_DIR, context.credentialDir);
    assert.equal(codex.env(context).CODEX_HOME, context.credentialDir);
    assert.equal(geminiCli.env(context).GEMINI_CLI_HOME, context.credentialDir);
    for (const p of [claudeCode, codex, geminiCli]) {
      assert.equal(p.env(context).BROWSER, context.openUrlCommand, p.name);
      const argv = p.loginCommand(context);
      assert.ok(
        argv.some((a) => a.startsWith(`${context.cliDir}/node_modules/`)),
        `${p.name} runs the pinned CLI: ${argv.join(' ')}`,
      );
      assert.ok(p.package && /^\d+\.\d+\.\d+$/.test(p.package.version), `${p.name} pins an exact version`);
    }
  });

  test('setup files: Codex stores in a file; Gemini signs in with Google without a trust dialog', () => {
    assert.deepEqual(claudeCode.setupFiles(context), {});
    assert.match(codex.setupFiles(context)['config.toml'] ?? '', /^cli_auth_credentials_store = "file"$/m);
    const settings = JSON.parse(geminiCli.setupFiles(context)['.gemini/settings.json'] ?? '{}') as {
      security: { auth: { selectedType: string }; folderTrust: { enabled: boolean } };
    };
    assert.equal(settings.security.auth.selectedType, 'oauth-personal');
    assert.equal(settings.security.folderTrust.enabled, false);
  });

  test('install paths follow each CLI: its pin variable when set, else the home default', () => {
    assert.equal(claudeCode.installPath({ HOME: '/h' }), '/h/.claude/.credentials.json');
    assert.equal(claudeCode.installPath({ HOME: '/h', CLAUDE_CONFIG_DIR: '/c' }), '/c/.credentials.json');
    assert.equal(codex.installPath({ HOME: '/h' }), '/h/.codex/auth.json');
    assert.equal(codex.installPath({ HOME: '/h', CODEX_HOME: '/x' }), '/x/auth.json');
    assert.equal(geminiCli.installPath({ HOME: '/h' }), '/h/.gemini/oauth_creds.json');
    assert.equal(geminiCli.installPath({ HOME: '/h', GEMINI_CLI_HOME: '/g' }), '/g/.gemini/oauth_creds.json');
  });
});
