import { providerLabels } from '../protocol/session-states.js';
import { isNonEmptyString, isObject, isoFromEpochMs, parseCredentialJson, type JsonObject } from './credential-json.js';
import { hasTokenForm, offlineVerdict } from './offline-checks.js';
import type { AccessToken, CredentialCheck, CredentialVerdict, Provider, RefreshOutcome, VerifyContext } from './provider.js';
import { oddAnswer, postRefreshGrant, refreshFailed, storedFileUnusable } from './token-refresh.js';

// Claude Code (@anthropic-ai/claude-code, a native binary the package's postinstall puts at
// bin/claude.exe). Verified against 2.1.330 by running it and reading its code (docs/providers.md):
// - `claude auth login --claudeai` starts the claude.ai subscription login at once: no theme picker,
//   no menu, no TTY needed. It listens on localhost:<random port>/callback and also accepts a pasted
//   code.
// - It opens the URL with `$BROWSER <url>` when BROWSER is set, else `xdg-open <url>`; with neither
//   BROWSER nor DISPLAY/WAYLAND_DISPLAY on Linux it opens nothing and only prints the URL.
// - Credentials go to `<config dir>/.credentials.json` (plaintext on Linux; the macOS keychain
//   elsewhere), the config dir being CLAUDE_CONFIG_DIR or ~/.claude. `claude auth status` reads the
//   same place, which is how the shape below was checked.

/** The sandbox's CLI directory holds this exact version (clis/package.json). */
export const claudeCodePackage = { name: '@anthropic-ai/claude-code', version: '2.1.330' } as const;

export const claudeCodeCredentialFile = '.credentials.json';

/**
 * `{"claudeAiOauth": {"accessToken", "refreshToken", "expiresAt" (ms epoch), "scopes",
 * "subscriptionType", …}}`. The file names no account (e-mail lives in .claude.json's
 * oauthAccount), so `account` is null. An expired access token is fine: the refresh token is what
 * makes the credential usable.
 */
export function validateClaudeCodeCredentials(content: string): CredentialCheck {
  try {
    const file = parseCredentialJson(content);
    if (!file.ok) return file;
    const oauth = file.value.claudeAiOauth;
    if (!isObject(oauth)) return { ok: false, waitingFor: 'a claude.ai OAuth entry (claudeAiOauth)' };
    if (!isNonEmptyString(oauth.accessToken)) return { ok: false, waitingFor: 'an access token' };
    if (!isNonEmptyString(oauth.refreshToken)) return { ok: false, waitingFor: 'a refresh token' };
    return { ok: true, expiresAt: isoFromEpochMs(oauth.expiresAt), account: null };
  } catch {
    return { ok: false, waitingFor: 'a readable credential file' };
  }
}

/**
 * Claude's OAuth tokens: `sk-ant-oat01-…` (access) and `sk-ant-ort01-…` (refresh), the version
 * digits allowed to move. 2.1.330 itself tells an OAuth token by its `sk-ant-oat` prefix.
 */
const accessTokenForm = /^sk-ant-oat\d{2}-[A-Za-z0-9_-]{32,}$/;
const refreshTokenForm = /^sk-ant-ort\d{2}-[A-Za-z0-9_-]{32,}$/;

/**
 * Offline only (claude.ai is not reachable from here): both token formats, an expiry in
 * milliseconds (the CLI needs it to know when to refresh) and, when present, a list of scopes.
 * The file names no account, so none is claimed.
 */
export async function verifyClaudeCodeCredentials(content: string): Promise<CredentialVerdict> {
  const file = parseCredentialJson(content);
  const oauth: JsonObject = file.ok && isObject(file.value.claudeAiOauth) ? file.value.claudeAiOauth : {};
  return offlineVerdict(validateClaudeCodeCredentials(content), [
    () => (hasTokenForm(oauth.accessToken, accessTokenForm) ? null : 'the access token is not a Claude OAuth access token (sk-ant-oat01-…)'),
    () => (hasTokenForm(oauth.refreshToken, refreshTokenForm) ? null : 'the refresh token is not a Claude OAuth refresh token (sk-ant-ort01-…)'),
    () => (isoFromEpochMs(oauth.expiresAt) !== null ? null : 'expiresAt is not a time in milliseconds'),
    () => (oauth.scopes === undefined || (Array.isArray(oauth.scopes) && oauth.scopes.every(isNonEmptyString)) ? null : 'scopes is not a list of scope names'),
  ]);
}

// The refresh, as 2.1.330 does it: bin/claude.exe (the Bun-compiled native binary; its embedded JS
// says "// Version: 2.1.330"), read with `strings -n 6 bin/claude.exe | grep -o
// 'grant_type:"refresh_token".\{0,600\}'`. The prod OAuth config object holds
// TOKEN_URL:"https://platform.claude.com/v1/oauth/token" and CLIENT_ID:"9d1c250a-…"; the refresh
// function posts `{grant_type:"refresh_token", refresh_token, client_id: <file's clientId> ??
// CLIENT_ID, scope: scopes.join(" ")}` as JSON (axios, headers {"Content-Type":"application/json"},
// no redirects), takes `{access_token, refresh_token = <the old one>, expires_in, scope,
// refresh_token_expires_in}` and stores `claudeAiOauth.{accessToken, refreshToken, expiresAt:
// Date.now() + expires_in * 1000, scopes: scope.split(" ")}`. An error's code is `error` (a string)
// or `error.type`; 400/401 with `invalid_grant` is "sign in again".

/** 2.1.330's TOKEN_URL and CLIENT_ID (its prod OAuth config). */
export const claudeCodeTokenUrl = 'https://platform.claude.com/v1/oauth/token';
export const claudeCodeClientId = '9d1c250a-e61b-44d9-88ed-5944d1962f5e';

/**
 * The scopes 2.1.330 asks a refresh for when the file is a claude.ai login under its own client
 * (scopes include `user:inference` or the file names a subscription, and no `clientId`): its default
 * list (user:profile, user:inference, user:sessions:claude_code, user:mcp_servers, user:file_upload,
 * then user:plugins, which its config registers), then those of the optional scopes the file
 * already holds. Any other file asks for exactly its own scopes.
 */
export const claudeCodeRefreshScopes = [
  'user:profile',
  'user:inference',
  'user:sessions:claude_code',
  'user:mcp_servers',
  'user:file_upload',
  'user:plugins',
] as const;
const claudeCodeKeptScopes: readonly string[] = ['user:projects:read', 'user:projects:write', 'user:privacy_consents:write'];

function scopesOf(value: unknown): string[] {
  return Array.isArray(value) ? value.filter(isNonEmptyString) : [];
}

/** The scopes to ask for: what 2.1.330 asks for first, and (after `invalid_scope`) the file's own, as it retries. */
function refreshScopes(oauth: JsonObject): { readonly first: readonly string[]; readonly fallback: readonly string[] | null } {
  const stored = scopesOf(oauth.scopes);
  const ownClient = !isNonEmptyString(oauth.clientId);
  const isClaudeAi = stored.includes('user:inference') || isNonEmptyString(oauth.subscriptionType);
  if (!(isClaudeAi && ownClient)) return { first: stored.length > 0 ? stored : claudeCodeRefreshScopes, fallback: null };
  const expanded = [...new Set([...claudeCodeRefreshScopes, ...stored.filter((scope) => claudeCodeKeptScopes.includes(scope))])];
  return { first: expanded, fallback: stored.includes('user:inference') ? stored : null };
}

/**
 * The refresh grant as 2.1.330 sends it, and the answer written back as it writes it: access token,
 * refresh token (the old one when none came back), `expiresAt` in milliseconds, `scopes` from the
 * answer's `scope` (kept when it has none) and `refreshTokenExpiresAt` (only lowered, and only when
 * the file has one). Everything else in the file stays as it was (the CLI would also fetch the
 * profile; porthole does not).
 */
export async function refreshClaudeCodeCredentials(content: string, context: VerifyContext): Promise<RefreshOutcome> {
  const check = validateClaudeCodeCredentials(content);
  if (!check.ok) return storedFileUnusable(check.waitingFor);
  const file = parseCredentialJson(content);
  if (!file.ok || !isObject(file.value.claudeAiOauth)) return storedFileUnusable('a claude.ai OAuth entry');
  const oauth = file.value.claudeAiOauth;
  const refreshToken = oauth.refreshToken;
  if (!isNonEmptyString(refreshToken)) return storedFileUnusable('a refresh token');
  const clientId = isNonEmptyString(oauth.clientId) ? oauth.clientId : claudeCodeClientId;
  const { first, fallback } = refreshScopes(oauth);
  const send = (scopes: readonly string[]) =>
    postRefreshGrant(context, claudeCodeTokenUrl, {
      json: { grant_type: 'refresh_token', refresh_token: refreshToken, client_id: clientId, scope: scopes.join(' ') },
    });
  let answer = await send(first);
  // 2.1.330 asks once more with the file's own scopes when the wider list is refused as invalid_scope.
  if (!answer.ok && fallback && answer.error === 'invalid_scope') answer = await send(fallback);
  if (!answer.ok) return refreshFailed(answer);
  const body = answer.body;
  if (!isNonEmptyString(body.access_token)) return oddAnswer(claudeCodeTokenUrl, 'an access token');
  if (typeof body.expires_in !== 'number' || !Number.isFinite(body.expires_in)) return oddAnswer(claudeCodeTokenUrl, 'expires_in');
  const now = Date.now();
  const expiresAt = now + body.expires_in * 1000;
  const updated: Record<string, unknown> = {
    ...oauth,
    accessToken: body.access_token,
    refreshToken: isNonEmptyString(body.refresh_token) ? body.refresh_token : refreshToken,
    expiresAt,
  };
  if (typeof body.scope === 'string') updated.scopes = body.scope.split(' ').filter(Boolean);
  const refreshExpiry = typeof body.refresh_token_expires_in === 'number' ? now + body.refresh_token_expires_in * 1000 : undefined;
  if (typeof oauth.refreshTokenExpiresAt === 'number' && refreshExpiry !== undefined) {
    updated.refreshTokenExpiresAt = Math.min(oauth.refreshTokenExpiresAt, refreshExpiry);
  }
  return { ok: true, content: JSON.stringify({ ...file.value, claudeAiOauth: updated }), expiresAt: isoFromEpochMs(expiresAt) };
}

/** `claudeAiOauth.accessToken` and its `expiresAt`; Bearer, as 2.1.330 sends it to api.anthropic.com. */
export function claudeCodeAccessToken(content: string): AccessToken | null {
  const check = validateClaudeCodeCredentials(content);
  if (!check.ok) return null;
  const file = parseCredentialJson(content);
  const oauth = file.ok && isObject(file.value.claudeAiOauth) ? file.value.claudeAiOauth : null;
  return isNonEmptyString(oauth?.accessToken) ? { accessToken: oauth.accessToken, expiresAt: check.expiresAt, tokenType: 'Bearer' } : null;
}

export const claudeCode: Provider = {
  name: 'claude-code',
  displayName: providerLabels['claude-code'],
  package: claudeCodePackage,
  loginCommand: (context) => [`${context.cliDir}/node_modules/.bin/claude`, 'auth', 'login', '--claudeai'],
  // `claude -p <prompt>`: print mode, one answer and exit (claude --help, 2.1.330).
  runCommand: (context, args) => [`${context.cliDir}/node_modules/.bin/claude`, '-p', ...args],
  env: (context) => ({
    CLAUDE_CONFIG_DIR: context.credentialDir,
    BROWSER: context.openUrlCommand,
    // The CLI directory is read-only and pinned; a login has no use for an update check.
    DISABLE_AUTOUPDATER: '1',
    // No telemetry, error reports or other calls home from a throwaway sign-in sandbox.
    CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1',
  }),
  // `claude auth login` shows no onboarding, so nothing needs pre-seeding.
  setupFiles: () => ({}),
  credentialFile: claudeCodeCredentialFile,
  validate: validateClaudeCodeCredentials,
  verify: verifyClaudeCodeCredentials,
  refresh: refreshClaudeCodeCredentials,
  accessToken: claudeCodeAccessToken,
  installPath: (env) => `${env.CLAUDE_CONFIG_DIR || `${env.HOME}/.claude`}/${claudeCodeCredentialFile}`,
  // What 2.1.330 hands the browser (its CLAUDE_AI_AUTHORIZE_URL); claude.com forwards to claude.ai.
  authorizeUrl: { host: 'claude.com', path: '/cai/oauth/authorize' },
};
