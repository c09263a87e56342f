import { providerLabels } from '../protocol/session-states.js';
import { isNonEmptyString, isObject, isoFromEpochMs, parseCredentialJson, type JsonObject } from './credential-json.js';
import { hasTokenForm, offlineVerdict } from './offline-checks.js';
import type { CredentialCheck, CredentialVerdict, Provider } from './provider.js';
import { notRefreshable } from './token-refresh.js';

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

export const claudeCode: Provider = {
  name: 'claude-code',
  displayName: providerLabels['claude-code'],
  package: claudeCodePackage,
  loginCommand: (context) => [`${context.cliDir}/node_modules/.bin/claude`, 'auth', 'login', '--claudeai'],
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
  // Filled in by the refresh work (issue 11): until then porthole never uses this grant.
  refresh: () => notRefreshable('porthole does not refresh this provider’s credentials yet'),
  accessToken: () => null,
  installPath: (env) => `${env.CLAUDE_CONFIG_DIR || `${env.HOME}/.claude`}/${claudeCodeCredentialFile}`,
  // What 2.1.330 hands the browser (its CLAUDE_AI_AUTHORIZE_URL); claude.com forwards to claude.ai.
  authorizeUrl: { host: 'claude.com', path: '/cai/oauth/authorize' },
};
