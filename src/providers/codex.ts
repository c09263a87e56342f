import { providerLabels } from '../protocol/session-states.js';
import { isNonEmptyString, isObject, isoFromJwtExp, jwtClaims, type JsonObject, parseCredentialJson } from './credential-json.js';
import { hasAudience, hasTokenForm, offlineVerdict, signedJwt } from './offline-checks.js';
import type { AccessToken, CredentialCheck, CredentialVerdict, Provider, RefreshOutcome, VerifyContext } from './provider.js';
import { type GrantGoneRule, isOAuthGrantGone, oddAnswer, postRefreshGrant, refreshFailed, storedFileUnusable } from './token-refresh.js';

// OpenAI Codex CLI (@openai/codex: a node launcher, bin/codex.js, for a native binary in
// @openai/codex-linux-x64). Verified against 0.169.0 by running it and reading its code
// (docs/providers.md):
// - `codex login` starts the ChatGPT browser login at once: no prompt, no TTY needed. Its callback
//   server listens on localhost:1455, or on the registered fallback 1457 when 1455 is taken (two
//   logins at most per network namespace).
// - It opens the URL through Rust's `webbrowser` crate: `$BROWSER` first, then xdg-open and friends.
// - `cli_auth_credentials_store = "file"` in `$CODEX_HOME/config.toml` (one of file, keyring,
//   auto, ephemeral) makes it write `$CODEX_HOME/auth.json`; `codex login status` reads the same
//   file, which is how the shape below was checked.

export const codexPackage = { name: '@openai/codex', version: '0.169.0' } as const;

export const codexCredentialFile = 'auth.json';

/** ChatGPT's own claims namespace in OpenAI's ID tokens. */
const openAiProfileClaim = 'https://api.openai.com/profile';
/** The ChatGPT account claims (`chatgpt_account_id`, `chatgpt_plan_type`, …). */
const openAiAuthClaim = 'https://api.openai.com/auth';
/** Who issues Codex's tokens, and Codex's own OAuth client (the ID token's audience), as 0.169.0 has them. */
export const openAiIssuer = 'https://auth.openai.com';
export const codexClientId = 'app_EMoamEEZ73f0CkXaXp7hrann';

function emailOf(idClaims: JsonObject | null): string | null {
  if (!idClaims) return null;
  if (isNonEmptyString(idClaims.email)) return idClaims.email;
  const profile = idClaims[openAiProfileClaim];
  return isObject(profile) && isNonEmptyString(profile.email) ? profile.email : null;
}

function accountOf(idClaims: JsonObject | null): string | null {
  return emailOf(idClaims) ?? (isNonEmptyString(idClaims?.sub) ? idClaims.sub : null);
}

/**
 * `{"OPENAI_API_KEY": null, "tokens": {"id_token", "access_token", "refresh_token", "account_id"},
 * "last_refresh": ISO}`. Expiry: the access token's `exp` (both tokens are JWTs; read, not
 * verified), else the ID token's. Account: the ID token's e-mail. Codex refuses a file whose tokens
 * lack the ID token, so it is required here too.
 */
export function validateCodexCredentials(content: string): CredentialCheck {
  try {
    const file = parseCredentialJson(content);
    if (!file.ok) return file;
    const tokens = file.value.tokens;
    if (!isObject(tokens)) return { ok: false, waitingFor: 'ChatGPT sign-in tokens' };
    if (!isNonEmptyString(tokens.access_token)) return { ok: false, waitingFor: 'an access token' };
    if (!isNonEmptyString(tokens.refresh_token)) return { ok: false, waitingFor: 'a refresh token' };
    if (!isNonEmptyString(tokens.id_token)) return { ok: false, waitingFor: 'an ID token' };
    const idClaims = jwtClaims(tokens.id_token);
    const expiresAt = isoFromJwtExp(jwtClaims(tokens.access_token)) ?? isoFromJwtExp(idClaims);
    return { ok: true, expiresAt, account: accountOf(idClaims) };
  } catch {
    return { ok: false, waitingFor: 'a readable credential file' };
  }
}

/**
 * Offline only (auth.openai.com is not reachable from here): the ID token is a signed JWT that
 * auth.openai.com issued to Codex's client, for a subject, naming the account's e-mail; the
 * access token is a signed JWT from the same issuer; the refresh token has a token's form; and
 * `account_id`, when present, is the ID token's ChatGPT account. Signatures are not checked.
 */
export async function verifyCodexCredentials(content: string): Promise<CredentialVerdict> {
  const file = parseCredentialJson(content);
  const tokens: JsonObject = file.ok && isObject(file.value.tokens) ? file.value.tokens : {};
  const id = signedJwt(tokens.id_token);
  const access = signedJwt(tokens.access_token);
  const chatGpt = id && isObject(id.claims[openAiAuthClaim]) ? id.claims[openAiAuthClaim] : null;
  return offlineVerdict(validateCodexCredentials(content), [
    () => (id ? null : 'the ID token is not a signed JWT'),
    () => (id?.claims.iss === openAiIssuer ? null : `the ID token was not issued by ${openAiIssuer}`),
    () => (id && hasAudience(id.claims, codexClientId) ? null : 'the ID token was not issued to Codex'),
    () => (isNonEmptyString(id?.claims.sub) ? null : 'the ID token names no subject'),
    () => (emailOf(id?.claims ?? null) ? null : 'the ID token names no account e-mail'),
    () => (access ? null : 'the access token is not a signed JWT'),
    () => (access?.claims.iss === openAiIssuer ? null : `the access token was not issued by ${openAiIssuer}`),
    () => (hasTokenForm(tokens.refresh_token, /^[A-Za-z0-9._~+/=-]{20,}$/) ? null : 'the refresh token is not a token'),
    () => {
      if (tokens.account_id === undefined || tokens.account_id === null) return null;
      if (!isNonEmptyString(tokens.account_id)) return 'account_id is not a string';
      const named = chatGpt?.chatgpt_account_id;
      return named === undefined || named === tokens.account_id ? null : 'account_id is not the ID token’s ChatGPT account';
    },
  ]);
}

// The refresh, as 0.169.0 does it (codex-rs login/src/auth/manager.rs, compiled into
// @openai/codex-linux-x64/vendor/x86_64-unknown-linux-musl/bin/codex; read with `strings` and
// `grep -a -b -o` on that binary):
// - POST https://auth.openai.com/oauth/token (overridable with CODEX_REFRESH_TOKEN_URL_OVERRIDE),
//   JSON `{client_id: "app_EMoamEEZ73f0CkXaXp7hrann", grant_type: "refresh_token", refresh_token}`
//   with Content-Type: application/json, no scope (the binary's only "openid profile email…" is the
//   login's authorize scope) and the client's usual headers (originator, User-Agent), which porthole
//   does not imitate.
// - The answer is a `struct RefreshResponse with 3 elements`: id_token, access_token,
//   refresh_token, each optional. Each one present replaces its field in auth.json's `tokens`;
//   `last_refresh` becomes now; nothing else changes (account_id stays). The expiry is the access
//   token's JWT `exp`: the answer has no expires_in that Codex reads.
// - A 401, or any answer naming refresh_token_expired / refresh_token_reused /
//   refresh_token_invalidated (as `error`, `error.code` or `code`), is permanent: "Please log out and
//   sign in again". Anything else is transient.

export const codexTokenUrl = 'https://auth.openai.com/oauth/token';
/** The error codes 0.169.0 reads as a dead refresh token (expired, already used, revoked). */
export const codexGrantGoneErrors: readonly string[] = ['refresh_token_expired', 'refresh_token_reused', 'refresh_token_invalidated'];

const isCodexGrantGone: GrantGoneRule = (status, code) =>
  status === 401 || (code !== null && codexGrantGoneErrors.includes(code.toLowerCase())) || isOAuthGrantGone(status, code);

/**
 * The refresh grant as 0.169.0 sends it, and the answer merged into auth.json as it merges it: each
 * token the answer has replaces the stored one (so an unrotated refresh token is kept), and
 * `last_refresh` is now. An answer without an access token is odd (Codex would keep the old one;
 * porthole has nothing new to hand out).
 */
export async function refreshCodexCredentials(content: string, context: VerifyContext): Promise<RefreshOutcome> {
  const check = validateCodexCredentials(content);
  if (!check.ok) return storedFileUnusable(check.waitingFor);
  const file = parseCredentialJson(content);
  const tokens = file.ok && isObject(file.value.tokens) ? file.value.tokens : null;
  if (!file.ok || !tokens || !isNonEmptyString(tokens.refresh_token)) return storedFileUnusable('a refresh token');
  const answer = await postRefreshGrant(
    context,
    codexTokenUrl,
    { json: { client_id: codexClientId, grant_type: 'refresh_token', refresh_token: tokens.refresh_token } },
    {},
    isCodexGrantGone,
  );
  if (!answer.ok) return refreshFailed(answer);
  const body = answer.body;
  if (!isNonEmptyString(body.access_token)) return oddAnswer(codexTokenUrl, 'an access token');
  const updated: Record<string, unknown> = { ...tokens, access_token: body.access_token };
  if (isNonEmptyString(body.id_token)) updated.id_token = body.id_token;
  if (isNonEmptyString(body.refresh_token)) updated.refresh_token = body.refresh_token;
  const next = JSON.stringify({ ...file.value, tokens: updated, last_refresh: new Date().toISOString() }, null, 2);
  return { ok: true, content: next, expiresAt: isoFromJwtExp(jwtClaims(body.access_token)) };
}

/** `tokens.access_token` (a JWT) and its `exp`; Bearer, as Codex sends it to chatgpt.com. */
export function codexAccessToken(content: string): AccessToken | null {
  const check = validateCodexCredentials(content);
  if (!check.ok) return null;
  const file = parseCredentialJson(content);
  const tokens = file.ok && isObject(file.value.tokens) ? file.value.tokens : null;
  if (!isNonEmptyString(tokens?.access_token)) return null;
  return { accessToken: tokens.access_token, expiresAt: isoFromJwtExp(jwtClaims(tokens.access_token)), tokenType: 'Bearer' };
}

export const codex: Provider = {
  name: 'codex',
  displayName: providerLabels.codex,
  package: codexPackage,
  // Through node explicitly: the launcher's `#!/usr/bin/env node` would depend on PATH.
  loginCommand: (context) => ['/usr/bin/node', `${context.cliDir}/node_modules/@openai/codex/bin/codex.js`, 'login'],
  // `codex exec <prompt>`: non-interactive (codex exec --help, 0.169.0); a run's directory is no git repository.
  runCommand: (context, args) => ['/usr/bin/node', `${context.cliDir}/node_modules/@openai/codex/bin/codex.js`, 'exec', '--skip-git-repo-check', ...args],
  env: (context) => ({
    CODEX_HOME: context.credentialDir,
    BROWSER: context.openUrlCommand,
  }),
  // Without it Codex may pick the OS keyring ("auto"), where the agent cannot see the credential.
  setupFiles: () => ({ 'config.toml': 'cli_auth_credentials_store = "file"\n' }),
  credentialFile: codexCredentialFile,
  validate: validateCodexCredentials,
  verify: verifyCodexCredentials,
  refresh: refreshCodexCredentials,
  accessToken: codexAccessToken,
  installPath: (env) => `${env.CODEX_HOME || `${env.HOME}/.codex`}/${codexCredentialFile}`,
  authorizeUrl: { host: 'auth.openai.com', path: '/oauth/authorize' },
};
