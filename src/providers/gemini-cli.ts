import { providerLabels } from '../protocol/session-states.js';
import { isNonEmptyString, isoFromEpochMs, jwtClaims, parseCredentialJson, type JsonObject } from './credential-json.js';
import { hasAudience, hasTokenForm, offlineVerdict, signedJwt } from './offline-checks.js';
import type { AccessToken, CredentialCheck, CredentialVerdict, Provider, RefreshOutcome, VerifyContext } from './provider.js';
import { expiryFromExpiresIn, oddAnswer, postRefreshGrant, refreshFailed, storedFileUnusable } from './token-refresh.js';

// Google Gemini CLI (@google/gemini-cli, a node bundle). Verified against 0.61.0 by running it and
// reading its code (docs/providers.md):
// - There is no login subcommand: the interactive CLI signs in at start when settings.json selects
//   "oauth-personal" (Sign in with Google). It needs a TTY (the xterm is one). Before the first
//   frame its consent prompt has no listener yet, so the first attempt fails and the auth menu
//   shows with "Sign in with Google" selected: Enter, then Enter on "Yes" in "Opening
//   authentication page in your browser. Do you want to continue?" — two Enters, both on the
//   preselected answer. Only then does it listen on 127.0.0.1:<random port>/oauth2callback.
// - It opens a browser only when DISPLAY (or WAYLAND_DISPLAY) is set and CI,
//   DEBIAN_FRONTEND=noninteractive and BROWSER=www-browser are not; it opens the URL with the
//   bundled `open` package, which runs `xdg-open` from PATH (BROWSER is not used).
// - GEMINI_CLI_HOME replaces the home directory for everything it stores: settings in
//   `$GEMINI_CLI_HOME/.gemini/settings.json`, the credential in `.gemini/oauth_creds.json`
//   (unless GEMINI_FORCE_ENCRYPTED_FILE_STORAGE=true, which must stay unset).

export const geminiCliPackage = { name: '@google/gemini-cli', version: '0.61.0' } as const;

export const geminiCliCredentialFile = '.gemini/oauth_creds.json';

/**
 * Pre-seeded `.gemini/settings.json`: Sign in with Google already chosen (skips the auth-method
 * menu's choice), no folder-trust dialog for the sandbox's home, no update checks against a
 * read-only, pinned install, and no usage statistics or telemetry from a throwaway sign-in sandbox.
 */
export const geminiCliSettings = {
  security: { auth: { selectedType: 'oauth-personal' }, folderTrust: { enabled: false } },
  general: { enableAutoUpdate: false, enableAutoUpdateNotification: false },
  privacy: { usageStatisticsEnabled: false },
  telemetry: { enabled: false },
} as const;

/**
 * The keys a person presses (or the agent sends) before the browser opens, each when its text is
 * on the terminal: both choose the preselected answer. Ink reads Enter as "\r".
 */
export const geminiCliKeypresses = [
  { when: 'Sign in with Google', send: '\r' },
  { when: 'Do you want to continue?', send: '\r' },
] as const;

/**
 * google-auth-library's token set, as the CLI writes it: `{"access_token", "refresh_token",
 * "scope", "token_type", "id_token", "expiry_date" (ms epoch)}`. Account: the ID token's e-mail
 * (it asks for userinfo.email).
 */
export function validateGeminiCliCredentials(content: string): CredentialCheck {
  try {
    const file = parseCredentialJson(content);
    if (!file.ok) return file;
    const creds = file.value;
    if (!isNonEmptyString(creds.access_token)) return { ok: false, waitingFor: 'an access token' };
    if (!isNonEmptyString(creds.refresh_token)) return { ok: false, waitingFor: 'a refresh token' };
    const idClaims = jwtClaims(creds.id_token);
    const account = isNonEmptyString(idClaims?.email) ? idClaims.email : null;
    return { ok: true, expiresAt: isoFromEpochMs(creds.expiry_date), account };
  } catch {
    return { ok: false, waitingFor: 'a readable credential file' };
  }
}

/** Gemini CLI's own OAuth client (0.61.0's OAUTH_CLIENT_ID): the ID token's audience. */
export const geminiCliClientId = '681255809395-oo8ft2oprdrnp9e3aqf6av3hmdib135j.apps.googleusercontent.com';
/** Both spellings Google puts in `iss` (OpenID Connect discovery names the first). */
const googleIssuers: readonly unknown[] = ['https://accounts.google.com', 'accounts.google.com'];

/**
 * Offline only (Google is not reachable from here): Google's token formats — an access token
 * `ya29.…`, a refresh token `1//…` — a Bearer token type, an expiry in milliseconds, and, when the
 * file has an ID token (the CLI asks for userinfo.email, which brings one), a signed JWT that
 * Google issued to Gemini CLI's client naming an e-mail. Signatures are not checked.
 */
export async function verifyGeminiCliCredentials(content: string): Promise<CredentialVerdict> {
  const file = parseCredentialJson(content);
  const creds: JsonObject = file.ok ? file.value : {};
  const id = creds.id_token === undefined ? undefined : signedJwt(creds.id_token);
  return offlineVerdict(validateGeminiCliCredentials(content), [
    () => (hasTokenForm(creds.access_token, /^ya29\.[A-Za-z0-9._-]{20,}$/) ? null : 'the access token is not a Google access token (ya29.…)'),
    () => (hasTokenForm(creds.refresh_token, /^1\/\/[A-Za-z0-9._-]{20,}$/) ? null : 'the refresh token is not a Google refresh token (1//…)'),
    () =>
      creds.token_type === undefined || (isNonEmptyString(creds.token_type) && creds.token_type.toLowerCase() === 'bearer')
        ? null
        : 'the token type is not Bearer',
    () => (isoFromEpochMs(creds.expiry_date) !== null ? null : 'expiry_date is not a time in milliseconds'),
    () => {
      if (id === undefined) return null;
      if (id === null) return 'the ID token is not a signed JWT';
      if (!googleIssuers.includes(id.claims.iss)) return 'the ID token was not issued by Google (accounts.google.com)';
      if (!hasAudience(id.claims, geminiCliClientId)) return 'the ID token was not issued to Gemini CLI';
      return isNonEmptyString(id.claims.email) ? null : 'the ID token names no account e-mail';
    },
  ]);
}

// The refresh, as 0.61.0 does it, in bundle/chunk-JDPZ4CE3.js (the chunk bundle/gemini.js imports;
// chunk names change with each build):
// - packages/core/dist/src/code_assist/oauth2.js: an OAuth2Client({clientId: OAUTH_CLIENT_ID,
//   clientSecret: OAUTH_CLIENT_SECRET}), both constants in the bundle (an installed app's secret is
//   not secret), whose "tokens" event writes the token set to oauth_creds.json with
//   JSON.stringify(credentials, null, 2), mode 0600 (`cacheCredentials`).
// - packages/core/node_modules/google-auth-library (10.9.0) build/src/auth/oauth2client.js,
//   `refreshTokenNoCache`: POST endpoints.oauth2TokenUrl, https://oauth2.googleapis.com/token, a
//   form (`new URLSearchParams`) of refresh_token, client_id, client_secret,
//   grant_type=refresh_token; the answer's expires_in becomes expiry_date = now + expires_in * 1000
//   (ms) and is deleted; the answer (access_token, expires_in, scope, token_type, id_token) is the
//   new token set. `refreshAccessTokenAsync` then sets its refresh_token to the old one.
// - Google's errors are OAuth's: 400 {"error": "invalid_grant", …} for an expired or revoked grant.

export const geminiCliTokenUrl = 'https://oauth2.googleapis.com/token';
/** 0.61.0's OAUTH_CLIENT_SECRET: shipped in the CLI, as Google's installed-app clients are. */
export const geminiCliClientSecret = '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';

/**
 * The refresh grant as 0.61.0 sends it, and the answer written as it writes it: access token,
 * expiry_date in milliseconds, and the answer's token_type, scope and id_token; fields the answer
 * lacks keep their stored value (the CLI writes the answer alone, dropping them). A refresh token in
 * the answer is stored (google-auth-library would put the old one back; Google does not rotate
 * these, and keeping a new one is what keeps the grant alive if it ever does); otherwise the old one
 * stays. No expires_in: no expiry_date, as the CLI's file would have none.
 */
export async function refreshGeminiCliCredentials(content: string, context: VerifyContext): Promise<RefreshOutcome> {
  const check = validateGeminiCliCredentials(content);
  if (!check.ok) return storedFileUnusable(check.waitingFor);
  const file = parseCredentialJson(content);
  if (!file.ok || !isNonEmptyString(file.value.refresh_token)) return storedFileUnusable('a refresh token');
  const answer = await postRefreshGrant(context, geminiCliTokenUrl, {
    form: { refresh_token: file.value.refresh_token, client_id: geminiCliClientId, client_secret: geminiCliClientSecret, grant_type: 'refresh_token' },
  });
  if (!answer.ok) return refreshFailed(answer);
  const body = answer.body;
  if (!isNonEmptyString(body.access_token)) return oddAnswer(geminiCliTokenUrl, 'an access token');
  const updated: Record<string, unknown> = { ...file.value, access_token: body.access_token };
  for (const field of ['refresh_token', 'token_type', 'scope', 'id_token'] as const) {
    if (isNonEmptyString(body[field])) updated[field] = body[field];
  }
  const expiresAt = expiryFromExpiresIn(body.expires_in);
  if (expiresAt === null) delete updated.expiry_date;
  else updated.expiry_date = Date.parse(expiresAt);
  return { ok: true, content: JSON.stringify(updated, null, 2), expiresAt };
}

/** `access_token` and `expiry_date`; Bearer (what the file's token_type says and Google's APIs take). */
export function geminiCliAccessToken(content: string): AccessToken | null {
  const check = validateGeminiCliCredentials(content);
  if (!check.ok) return null;
  const file = parseCredentialJson(content);
  if (!file.ok || !isNonEmptyString(file.value.access_token)) return null;
  return { accessToken: file.value.access_token, expiresAt: check.expiresAt, tokenType: 'Bearer' };
}

export const geminiCli: Provider = {
  name: 'gemini-cli',
  displayName: providerLabels['gemini-cli'],
  package: geminiCliPackage,
  loginCommand: (context) => ['/usr/bin/node', `${context.cliDir}/node_modules/@google/gemini-cli/bundle/gemini.js`],
  // `gemini -p <prompt>`: non-interactive (gemini --help, 0.61.0).
  runCommand: (context, args) => ['/usr/bin/node', `${context.cliDir}/node_modules/@google/gemini-cli/bundle/gemini.js`, '-p', ...args],
  env: (context) => ({
    GEMINI_CLI_HOME: context.credentialDir,
    // Not read for the login (that goes through xdg-open on PATH), but harmless and consistent.
    BROWSER: context.openUrlCommand,
  }),
  setupFiles: () => ({ '.gemini/settings.json': `${JSON.stringify(geminiCliSettings, null, 2)}\n` }),
  credentialFile: geminiCliCredentialFile,
  validate: validateGeminiCliCredentials,
  verify: verifyGeminiCliCredentials,
  refresh: refreshGeminiCliCredentials,
  accessToken: geminiCliAccessToken,
  installPath: (env) => `${env.GEMINI_CLI_HOME || env.HOME}/${geminiCliCredentialFile}`,
  authorizeUrl: { host: 'accounts.google.com', path: '/o/oauth2/v2/auth' },
};
