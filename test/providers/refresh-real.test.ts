import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { claudeCode, claudeCodeClientId, claudeCodePackage, claudeCodeRefreshScopes, claudeCodeTokenUrl } from '../../src/providers/claude-code.js';
import { codex, codexClientId, codexGrantGoneErrors, codexPackage, codexTokenUrl } from '../../src/providers/codex.js';
import { geminiCli, geminiCliClientId, geminiCliClientSecret, geminiCliPackage, geminiCliTokenUrl } from '../../src/providers/gemini-cli.js';
import type { Provider, RefreshOutcome, VerifyContext } from '../../src/providers/provider.js';
import { claudeCodeFile, codexFile, credentialExpiry, credentialSecret, fakeJwt, fakeToken, geminiCliFile } from '../support/credential-files.js';

// The refresh grant of each real provider, as its pinned CLI sends it: the request (captured by a
// fake fetch: nothing leaves this machine), the pinned CLI's own code still saying the same (so an
// upgrade that changes the endpoint, client or body fails here), the answer written back into the
// credential file the way the CLI writes it, what counts as "sign in again" and what as "try
// later", and the access token handed out alone.

const root = fileURLToPath(new URL('../../../', import.meta.url));
const cliModules = join(root, 'clis', 'node_modules');
const secret = credentialSecret;

interface Captured {
  readonly url: string;
  readonly method: string;
  readonly contentType: string | null;
  readonly body: string;
}

type FakeAnswer = { readonly status: number; readonly body: unknown } | Error;

/** A fetch that records each request and answers from `answers` in order (the last one repeats). */
function fakeFetch(answers: readonly FakeAnswer[]): { readonly context: VerifyContext; readonly requests: Captured[] } {
  const requests: Captured[] = [];
  const fakeFetchFn = (async (input: string | URL | Request, init?: RequestInit) => {
    const headers = new Headers(init?.headers);
    requests.push({
      url: String(input),
      method: init?.method ?? 'GET',
      contentType: headers.get('content-type'),
      body: typeof init?.body === 'string' ? init.body : '',
    });
    const answer = answers[Math.min(requests.length, answers.length) - 1];
    if (answer === undefined) throw new Error('no answer given');
    if (answer instanceof Error) throw answer;
    const text = typeof answer.body === 'string' ? answer.body : JSON.stringify(answer.body);
    return new Response(text, { status: answer.status, headers: { 'content-type': 'application/json' } });
  }) as typeof fetch;
  return { context: { fetch: fakeFetchFn, signal: new AbortController().signal }, requests };
}

function only(requests: readonly Captured[]): Captured {
  assert.equal(requests.length, 1, `expected one request, got ${requests.length}`);
  return requests[0] as Captured;
}

function assertOk(outcome: RefreshOutcome, what: string): Extract<RefreshOutcome, { ok: true }> {
  assert.equal(outcome.ok, true, `${what}: ${JSON.stringify(outcome)}`);
  return outcome as Extract<RefreshOutcome, { ok: true }>;
}

/** The expiry the answer's `expires_in` gives, give or take the test's own run time. */
function assertExpiresIn(ms: unknown, seconds: number, before: number, what: string): void {
  assert.equal(typeof ms, 'number', `${what} is a number (ms)`);
  assert.ok((ms as number) >= before + seconds * 1000 && (ms as number) <= Date.now() + seconds * 1000, `${what} is now + ${seconds} s`);
}

const fresh = {
  claudeAccess: `sk-ant-oat01-${fakeToken(95)}`,
  claudeRefresh: `sk-ant-ort01-${fakeToken(95)}`,
  googleAccess: `ya29.${fakeToken(160)}`,
  googleRefresh: `1//0g${fakeToken(98)}`,
};

describe('Claude Code refresh (2.1.330)', () => {
  test('POSTs JSON {grant_type, refresh_token, client_id, scope} to platform.claude.com with the scopes the CLI asks for', async () => {
    const file = claudeCodeFile();
    const { context, requests } = fakeFetch([{ status: 200, body: { access_token: fresh.claudeAccess, expires_in: 3600, token_type: 'Bearer' } }]);
    assertOk(await claudeCode.refresh(JSON.stringify(file), context), 'refresh');
    const request = only(requests);
    assert.equal(request.url, 'https://platform.claude.com/v1/oauth/token');
    assert.equal(request.method, 'POST');
    assert.equal(request.contentType, 'application/json');
    assert.deepEqual(JSON.parse(request.body), {
      grant_type: 'refresh_token',
      refresh_token: file.claudeAiOauth.refreshToken,
      client_id: '9d1c250a-e61b-44d9-88ed-5944d1962f5e',
      scope: 'user:profile user:inference user:sessions:claude_code user:mcp_servers user:file_upload user:plugins',
    });
  });

  test('keeps the optional scopes the file holds, and asks again with the file’s own scopes after invalid_scope', async () => {
    const file = claudeCodeFile();
    const stored = ['user:inference', 'user:profile', 'user:projects:read', 'user:privacy_consents:write'];
    file.claudeAiOauth.scopes = stored;
    const { context, requests } = fakeFetch([
      { status: 400, body: { error: { type: 'invalid_scope', message: 'no' } } },
      { status: 200, body: { access_token: fresh.claudeAccess, expires_in: 3600 } },
    ]);
    assertOk(await claudeCode.refresh(JSON.stringify(file), context), 'refresh after invalid_scope');
    assert.equal(requests.length, 2);
    assert.equal(JSON.parse(requests[0]?.body ?? '').scope, [...claudeCodeRefreshScopes, 'user:projects:read', 'user:privacy_consents:write'].join(' '));
    assert.equal(JSON.parse(requests[1]?.body ?? '').scope, stored.join(' '));
  });

  test('a file under another client id sends that client and exactly its own scopes', async () => {
    const file = { claudeAiOauth: { ...claudeCodeFile().claudeAiOauth, clientId: 'another-client', scopes: ['user:inference'] } };
    const { context, requests } = fakeFetch([{ status: 200, body: { access_token: fresh.claudeAccess, expires_in: 3600 } }]);
    assertOk(await claudeCode.refresh(JSON.stringify(file), context), 'refresh');
    const body = JSON.parse(only(requests).body);
    assert.equal(body.client_id, 'another-client');
    assert.equal(body.scope, 'user:inference');
  });

  test('the pinned CLI still sends this (bin/claude.exe, its embedded JS)', () => {
    const pkg = join(cliModules, '@anthropic-ai/claude-code');
    const binary = join(pkg, 'bin/claude.exe');
    const lookAgain = `Look again: strings -n 6 ${binary} | grep -o 'grant_type:"refresh_token".\\{0,600\\}', then update src/providers/claude-code.ts and docs/providers.md (Refresh).`;
    assert.ok(existsSync(binary), `${binary} is missing: run \`npm ci --prefix clis\` in ${root}`);
    assert.equal(JSON.parse(readFileSync(join(pkg, 'package.json'), 'utf8')).version, claudeCodePackage.version, lookAgain);
    const code = readFileSync(binary);
    assert.ok(code.includes(`// Version: ${claudeCodePackage.version}`), `the embedded JS names version ${claudeCodePackage.version}. ${lookAgain}`);
    assert.ok(code.includes(`TOKEN_URL:"${claudeCodeTokenUrl}"`), `TOKEN_URL is ${claudeCodeTokenUrl}. ${lookAgain}`);
    assert.ok(code.includes(`CLIENT_ID:"${claudeCodeClientId}"`), `CLIENT_ID is ${claudeCodeClientId}. ${lookAgain}`);
    for (const scope of [...claudeCodeRefreshScopes, 'user:projects:read', 'user:projects:write', 'user:privacy_consents:write']) {
      assert.ok(code.includes(`"${scope}"`), `the scope ${scope} is in the CLI. ${lookAgain}`);
    }
    const refresh = around(code, 'grant_type:"refresh_token",refresh_token:', 1500).find((text) =>
      /\{grant_type:"refresh_token",refresh_token:[\w$]+,client_id:[\w$]+\?\?[\w$]+\(\)\.CLIENT_ID,scope:[\w$]+\.join\(" "\)\}/.test(text),
    );
    assert.ok(refresh, `the refresh body is {grant_type, refresh_token, client_id, scope}. ${lookAgain}`);
    assert.match(
      refresh,
      /\.post\([\w$]+\(\)\.TOKEN_URL,[\w$]+,\{headers:\{"Content-Type":"application\/json"\}/,
      `it is POSTed as JSON to TOKEN_URL. ${lookAgain}`,
    );
    assert.match(
      refresh,
      /\{access_token:[\w$]+,refresh_token:[\w$]+=[\w$]+,expires_in:[\w$]+\}=/,
      `the answer's fields, the old refresh token kept. ${lookAgain}`,
    );
    assert.match(refresh, /Date\.now\(\)\+[\w$]+\*1000/, `expiresAt is ms. ${lookAgain}`);
    assert.ok(
      around(code, 'refreshTokenExpiresAt:', 400).some((text) =>
        /\{accessToken:[\w$]+\.accessToken,refreshToken:[\w$]+\.refreshToken,expiresAt:[\w$]+\.expiresAt,refreshTokenExpiresAt:/.test(text),
      ),
      `the file's claudeAiOauth fields are accessToken, refreshToken, expiresAt. ${lookAgain}`,
    );
    assert.ok(code.includes('==="invalid_scope"') && code.includes('==="invalid_grant"'), `it reads invalid_scope and invalid_grant. ${lookAgain}`);
  });
});

describe('Codex refresh (0.169.0)', () => {
  test('POSTs JSON {client_id, grant_type, refresh_token} to auth.openai.com, no scope', async () => {
    const file = codexFile();
    const { context, requests } = fakeFetch([{ status: 200, body: { access_token: fakeJwt({ iss: 'https://auth.openai.com', exp: 2_000_000_000 }) } }]);
    assertOk(await codex.refresh(JSON.stringify(file), context), 'refresh');
    const request = only(requests);
    assert.equal(request.url, 'https://auth.openai.com/oauth/token');
    assert.equal(request.method, 'POST');
    assert.equal(request.contentType, 'application/json');
    assert.deepEqual(JSON.parse(request.body), {
      client_id: 'app_EMoamEEZ73f0CkXaXp7hrann',
      grant_type: 'refresh_token',
      refresh_token: file.tokens.refresh_token,
    });
  });

  test('the pinned CLI still sends this (@openai/codex-linux-x64 bin/codex)', () => {
    // Not skipped elsewhere: a missing prerequisite fails and says so.
    assert.ok(process.platform === 'linux' && process.arch === 'x64', 'the Codex binary clis/ installs and this test reads is the linux-x64 one');
    const pkg = join(cliModules, '@openai/codex-linux-x64');
    const binary = join(pkg, 'vendor/x86_64-unknown-linux-musl/bin/codex');
    const lookAgain = `Look again: strings -n 6 ${binary} | grep -n 'oauth/token\\|REFRESH_TOKEN_URL\\|RefreshResponse', then update src/providers/codex.ts and docs/providers.md (Refresh).`;
    assert.ok(existsSync(binary), `${binary} is missing: run \`npm ci --prefix clis\` in ${root}`);
    assert.equal(JSON.parse(readFileSync(join(cliModules, '@openai/codex/package.json'), 'utf8')).version, codexPackage.version, lookAgain);
    assert.equal(JSON.parse(readFileSync(join(pkg, 'package.json'), 'utf8')).version, `${codexPackage.version}-linux-x64`, lookAgain);
    const code = readFileSync(binary);
    for (const text of [codexTokenUrl, codexClientId, 'CODEX_REFRESH_TOKEN_URL_OVERRIDE', 'struct RefreshResponse with 3 elements']) {
      assert.ok(code.includes(text), `${text} is in the CLI. ${lookAgain}`);
    }
    for (const field of ['client_id', 'grant_type', 'refresh_token', 'id_token', 'access_token', 'last_refresh', 'account_id']) {
      assert.ok(code.includes(field), `the field name ${field} is in the CLI. ${lookAgain}`);
    }
    // The refresh request has no scope: the binary's only "openid profile email" is the login's authorize scope.
    assert.deepEqual(
      around(code, 'openid profile email', 40).map((text) => text.slice(40, 40 + 'openid profile email offline_access'.length)),
      ['openid profile email offline_access'],
      `the only "openid profile email" is the authorize scope. ${lookAgain}`,
    );
    for (const because of ['refresh token has expired', 'refresh token was already used', 'refresh token was revoked']) {
      assert.ok(code.includes(`refreshed because your ${because}. Please log out and sign in again.`), `"${because}" is permanent. ${lookAgain}`);
    }
    assert.equal(codexGrantGoneErrors.length, 3);
  });
});

describe('Gemini CLI refresh (0.61.0)', () => {
  test('POSTs a form {refresh_token, client_id, client_secret, grant_type} to oauth2.googleapis.com', async () => {
    const file = geminiCliFile();
    const { context, requests } = fakeFetch([{ status: 200, body: { access_token: fresh.googleAccess, expires_in: 3599, token_type: 'Bearer' } }]);
    assertOk(await geminiCli.refresh(JSON.stringify(file), context), 'refresh');
    const request = only(requests);
    assert.equal(request.url, 'https://oauth2.googleapis.com/token');
    assert.equal(request.method, 'POST');
    assert.equal(request.contentType, 'application/x-www-form-urlencoded');
    assert.deepEqual(Object.fromEntries(new URLSearchParams(request.body)), {
      refresh_token: file.refresh_token,
      client_id: '681255809395-oo8ft2oprdrnp9e3aqf6av3hmdib135j.apps.googleusercontent.com',
      client_secret: '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',
      grant_type: 'refresh_token',
    });
  });

  test('the pinned CLI still sends this (bundle/, its oauth2 code and google-auth-library)', () => {
    const bundle = join(cliModules, '@google/gemini-cli/bundle');
    const lookAgain = `Look again: grep -n 'OAUTH_CLIENT_ID =\\|async refreshTokenNoCache(refreshToken)\\|async function cacheCredentials' ${bundle}/chunk-*.js, then update src/providers/gemini-cli.ts and docs/providers.md (Refresh).`;
    assert.ok(existsSync(join(bundle, 'gemini.js')), `${bundle}/gemini.js is missing: run \`npm ci --prefix clis\` in ${root}`);
    assert.equal(JSON.parse(readFileSync(join(bundle, '../package.json'), 'utf8')).version, geminiCliPackage.version, lookAgain);
    // The chunk gemini.js imports that holds the CLI's oauth2 code.
    const chunks = [...readFileSync(join(bundle, 'gemini.js'), 'utf8').matchAll(/import "\.\/(chunk-[A-Z0-9]+\.js)";/g)].map((m) => m[1] as string);
    const code = chunks
      .map((chunk) => readFileSync(join(bundle, chunk), 'utf8'))
      .find((text) => text.includes('// packages/core/dist/src/code_assist/oauth2.js'));
    assert.ok(code, `a chunk gemini.js imports holds packages/core/dist/src/code_assist/oauth2.js. ${lookAgain}`);
    assert.ok(code.includes(`var OAUTH_CLIENT_ID = "${geminiCliClientId}";`), `OAUTH_CLIENT_ID is ${geminiCliClientId}. ${lookAgain}`);
    assert.ok(code.includes(`var OAUTH_CLIENT_SECRET = "${geminiCliClientSecret}";`), `OAUTH_CLIENT_SECRET. ${lookAgain}`);
    assert.match(code, /new import_google_auth_library\d*\.OAuth2Client\(\{\s*clientId: OAUTH_CLIENT_ID,\s*clientSecret: OAUTH_CLIENT_SECRET,/, lookAgain);
    assert.match(
      code,
      /async function cacheCredentials\((\w+)\) \{[\s\S]{0,300}JSON\.stringify\(\1, null, 2\)/,
      `the token set is written as JSON. ${lookAgain}`,
    );
    // google-auth-library as packages/core bundles it (what the oauth2 code's import resolves to).
    const library = code.indexOf('// packages/core/node_modules/google-auth-library/build/src/auth/oauth2client.js');
    assert.ok(library >= 0, lookAgain);
    const start = code.indexOf('async refreshTokenNoCache(refreshToken) {', library);
    const refresh = code.slice(start, code.indexOf('this.emit("tokens", tokens);', start));
    assert.ok(start >= 0 && refresh.length > 0 && refresh.length < 3000, `refreshTokenNoCache in google-auth-library. ${lookAgain}`);
    for (const line of [
      'const url3 = this.endpoints.oauth2TokenUrl.toString();',
      'refresh_token: refreshToken,',
      'client_id: this._clientId,',
      'client_secret: this._clientSecret,',
      'grant_type: "refresh_token"',
      'method: "POST",',
      'data: new URLSearchParams(',
      'tokens.expiry_date = (/* @__PURE__ */ new Date()).getTime() + res.data.expires_in * 1e3;',
    ]) {
      assert.ok(refresh.includes(line), `refreshTokenNoCache has \`${line}\`. ${lookAgain}`);
    }
    assert.ok(code.slice(library, start).includes(`oauth2TokenUrl: "${geminiCliTokenUrl}"`), `oauth2TokenUrl is ${geminiCliTokenUrl}. ${lookAgain}`);
  });
});

/** Latin-1 text `radius` bytes either side of each place `anchor` occurs (a binary is too big for one string). */
function around(code: Buffer, anchor: string, radius: number): string[] {
  const found: string[] = [];
  for (let at = code.indexOf(anchor); at >= 0; at = code.indexOf(anchor, at + anchor.length)) {
    found.push(code.toString('latin1', Math.max(0, at - radius), at + anchor.length + radius));
  }
  return found;
}

// What every provider shares: the answer written back, refusals and transient failures, the access token alone.

interface Case {
  readonly provider: Provider;
  readonly file: () => Record<string, unknown>;
  /** A 200 answer with a new access token; `refreshToken` when the provider rotated it. */
  readonly answer: (refreshToken?: string) => Record<string, unknown>;
  readonly newAccessToken: string;
  readonly newRefreshToken: string;
  /** The stored file's tokens and expiry, read back the way the CLI reads them. */
  readonly read: (file: Record<string, unknown>) => { accessToken: unknown; refreshToken: unknown; expiry: unknown };
  /** Checks the new expiry in the file (`before`: Date.now() before the refresh). */
  readonly assertExpiry: (file: Record<string, unknown>, before: number, expiresAt: string | null) => void;
  /** The file without its tokens and what the refresh may change (last_refresh, …): must be untouched. */
  readonly rest: (file: Record<string, unknown>) => unknown;
}

const codexExp = 2_100_000_000;
const codexAccess = fakeJwt({ iss: 'https://auth.openai.com', aud: ['https://api.openai.com/v1'], sub: 'auth0|user-1', exp: codexExp });
const codexId = fakeJwt({ iss: 'https://auth.openai.com', aud: [codexClientId], sub: 'auth0|user-1', email: 'ada@example.com', exp: codexExp });
const codexRefresh = `rt_${fakeToken(60)}`;
type Obj = Record<string, unknown>;
const obj = (value: unknown): Obj => value as Obj;

const cases: readonly Case[] = [
  {
    provider: claudeCode,
    file: () => ({ ...claudeCodeFile(), mcpOAuth: { server: { accessToken: 'kept' } } }),
    answer: (refreshToken) => ({
      access_token: fresh.claudeAccess,
      expires_in: 28_800,
      scope: 'user:inference user:profile',
      ...(refreshToken ? { refresh_token: refreshToken } : {}),
    }),
    newAccessToken: fresh.claudeAccess,
    newRefreshToken: fresh.claudeRefresh,
    read: (file) => {
      const oauth = obj(file.claudeAiOauth);
      return { accessToken: oauth.accessToken, refreshToken: oauth.refreshToken, expiry: oauth.expiresAt };
    },
    assertExpiry: (file, before, expiresAt) => {
      const ms = obj(file.claudeAiOauth).expiresAt;
      assertExpiresIn(ms, 28_800, before, 'claudeAiOauth.expiresAt');
      assert.equal(expiresAt, new Date(ms as number).toISOString());
    },
    rest: (file) => {
      const { accessToken, refreshToken, expiresAt, scopes, ...oauth } = obj(file.claudeAiOauth);
      return { ...file, claudeAiOauth: oauth };
    },
  },
  {
    provider: codex,
    file: codexFile,
    answer: (refreshToken) => ({ id_token: codexId, access_token: codexAccess, ...(refreshToken ? { refresh_token: refreshToken } : {}) }),
    newAccessToken: codexAccess,
    newRefreshToken: codexRefresh,
    read: (file) => {
      const tokens = obj(file.tokens);
      return { accessToken: tokens.access_token, refreshToken: tokens.refresh_token, expiry: file.last_refresh };
    },
    assertExpiry: (file, before, expiresAt) => {
      assert.equal(expiresAt, new Date(codexExp * 1000).toISOString(), 'the new access token’s exp');
      const lastRefresh = Date.parse(String(file.last_refresh));
      assert.ok(lastRefresh >= before - 1 && lastRefresh <= Date.now(), 'last_refresh is now');
      assert.equal(obj(file.tokens).id_token, codexId, 'the new ID token');
    },
    rest: (file) => {
      const { access_token, refresh_token, id_token, ...tokens } = obj(file.tokens);
      const { last_refresh, ...others } = file;
      return { ...others, tokens };
    },
  },
  {
    provider: geminiCli,
    file: geminiCliFile,
    answer: (refreshToken) => ({
      access_token: fresh.googleAccess,
      expires_in: 3599,
      token_type: 'Bearer',
      scope: 'https://www.googleapis.com/auth/cloud-platform',
      ...(refreshToken ? { refresh_token: refreshToken } : {}),
    }),
    newAccessToken: fresh.googleAccess,
    newRefreshToken: fresh.googleRefresh,
    read: (file) => ({ accessToken: file.access_token, refreshToken: file.refresh_token, expiry: file.expiry_date }),
    assertExpiry: (file, before, expiresAt) => {
      assertExpiresIn(file.expiry_date, 3599, before, 'expiry_date');
      assert.equal(expiresAt, new Date(file.expiry_date as number).toISOString());
      assert.equal(file.scope, 'https://www.googleapis.com/auth/cloud-platform', 'the answer’s scope');
    },
    rest: (file) => {
      const { access_token, refresh_token, expiry_date, scope, ...others } = file;
      return others;
    },
  },
];

for (const c of cases) {
  describe(`${c.provider.name}: the answer, written back`, () => {
    test('a new access token and expiry; an unrotated refresh token is kept; the rest of the file is untouched', async () => {
      const file = c.file();
      const { context } = fakeFetch([{ status: 200, body: c.answer() }]);
      const before = Date.now();
      const outcome = assertOk(await c.provider.refresh(JSON.stringify(file), context), 'refresh');
      const written = JSON.parse(outcome.content) as Record<string, unknown>;
      assert.equal(c.read(written).accessToken, c.newAccessToken);
      assert.equal(c.read(written).refreshToken, c.read(file).refreshToken, 'the old refresh token is kept');
      c.assertExpiry(written, before, outcome.expiresAt);
      assert.deepEqual(c.rest(written), c.rest(file));
      assert.ok(c.provider.validate(outcome.content).ok, 'the new file validates');
    });

    test('a rotated refresh token is stored', async () => {
      const { context } = fakeFetch([{ status: 200, body: c.answer(c.newRefreshToken) }]);
      const outcome = assertOk(await c.provider.refresh(JSON.stringify(c.file()), context), 'refresh');
      assert.equal(c.read(JSON.parse(outcome.content)).refreshToken, c.newRefreshToken);
    });

    test('an answer without an access token is odd: not refused, nothing written', async () => {
      const { context } = fakeFetch([{ status: 200, body: { token_type: 'Bearer' } }]);
      const outcome = await c.provider.refresh(JSON.stringify(c.file()), context);
      assert.deepEqual({ ok: outcome.ok, refused: !outcome.ok && outcome.refused }, { ok: false, refused: false });
    });
  });

  describe(`${c.provider.name}: refused or try again`, () => {
    const failures: readonly { readonly what: string; readonly answer: FakeAnswer; readonly refused: boolean }[] = [
      { what: 'invalid_grant', answer: { status: 400, body: { error: 'invalid_grant', error_description: `revoked ${secret}` } }, refused: true },
      { what: '500', answer: { status: 500, body: { error: 'server_error' } }, refused: false },
      { what: '429', answer: { status: 429, body: { error: 'rate_limited' } }, refused: false },
      { what: 'a 200 that is not JSON', answer: { status: 200, body: '<html>' }, refused: false },
      { what: 'a network error', answer: new TypeError('fetch failed', { cause: new Error('connect ECONNREFUSED 127.0.0.1:9') }), refused: false },
    ];
    for (const failure of failures) {
      test(`${failure.what} → refused: ${failure.refused}`, async () => {
        const file = c.file();
        const { context } = fakeFetch([failure.answer]);
        const outcome = await c.provider.refresh(JSON.stringify(file), context);
        assert.equal(outcome.ok, false);
        if (outcome.ok) return;
        assert.equal(outcome.refused, failure.refused, outcome.reason);
        const { accessToken, refreshToken } = c.read(file);
        assert.ok(!outcome.reason.includes(String(refreshToken)) && !outcome.reason.includes(String(accessToken)), 'the reason never names a token');
      });
    }

    test('a stored file without a refresh token is refused without asking the provider', async () => {
      const { context, requests } = fakeFetch([{ status: 200, body: c.answer() }]);
      const outcome = await c.provider.refresh('{"not": "a credential"}', context);
      assert.deepEqual({ ok: outcome.ok, refused: !outcome.ok && outcome.refused }, { ok: false, refused: true });
      assert.equal(requests.length, 0);
    });
  });

  test(`${c.provider.name}: accessToken is the access token, never the refresh token`, () => {
    const file = c.file();
    const { accessToken, refreshToken } = c.read(file);
    const token = c.provider.accessToken(JSON.stringify(file));
    assert.ok(token);
    assert.equal(token.accessToken, accessToken);
    assert.notEqual(token.accessToken, refreshToken);
    assert.equal(token.tokenType, 'Bearer');
    assert.equal(token.expiresAt, new Date(credentialExpiry).toISOString(), 'the file’s access token expiry');
    assert.equal(c.provider.accessToken('{"half'), null, 'a file that does not validate has none');
  });
}

describe('provider-specific refusals', () => {
  test('Claude Code: Anthropic’s {"error": {"type": "invalid_grant"}} is refused', async () => {
    const { context } = fakeFetch([{ status: 400, body: { type: 'error', error: { type: 'invalid_grant', message: 'Refresh token not found or invalid' } } }]);
    const outcome = await claudeCode.refresh(JSON.stringify(claudeCodeFile()), context);
    assert.deepEqual({ ok: outcome.ok, refused: !outcome.ok && outcome.refused }, { ok: false, refused: true });
  });

  for (const [what, answer] of [
    ['a 401 with an unknown code', { status: 401, body: { error: { code: 'token_expired' } } }],
    ['refresh_token_reused', { status: 400, body: { error: { code: 'refresh_token_reused', message: 'already used' } } }],
    ['refresh_token_expired (top-level code)', { status: 400, body: { code: 'refresh_token_expired' } }],
    ['refresh_token_invalidated', { status: 403, body: { error: 'refresh_token_invalidated' } }],
  ] as const) {
    test(`Codex: ${what} is refused, as 0.169.0 says "sign in again"`, async () => {
      const { context } = fakeFetch([answer]);
      const outcome = await codex.refresh(JSON.stringify(codexFile()), context);
      assert.deepEqual({ ok: outcome.ok, refused: !outcome.ok && outcome.refused }, { ok: false, refused: true });
    });
  }

  test('Gemini CLI: an answer without expires_in leaves no stale expiry_date', async () => {
    const { context } = fakeFetch([{ status: 200, body: { access_token: fresh.googleAccess, token_type: 'Bearer' } }]);
    const outcome = assertOk(await geminiCli.refresh(JSON.stringify(geminiCliFile()), context), 'refresh');
    assert.equal(outcome.expiresAt, null);
    assert.equal(JSON.parse(outcome.content).expiry_date, undefined);
  });
});
