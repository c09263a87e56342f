import { providerLabels } from '../protocol/session-states.js';
import { isNonEmptyString, isObject, isoFromJwtExp, jwtClaims, type JsonObject, parseCredentialJson } from './credential-json.js';
import { hasAudience, hasTokenForm, offlineVerdict, signedJwt } from './offline-checks.js';
import type { CredentialCheck, CredentialVerdict, Provider } from './provider.js';
import { notRefreshable } from './token-refresh.js';

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

export const codex: Provider = {
  name: 'codex',
  displayName: providerLabels.codex,
  package: codexPackage,
  // Through node explicitly: the launcher's `#!/usr/bin/env node` would depend on PATH.
  loginCommand: (context) => ['/usr/bin/node', `${context.cliDir}/node_modules/@openai/codex/bin/codex.js`, 'login'],
  env: (context) => ({
    CODEX_HOME: context.credentialDir,
    BROWSER: context.openUrlCommand,
  }),
  // Without it Codex may pick the OS keyring ("auto"), where the agent cannot see the credential.
  setupFiles: () => ({ 'config.toml': 'cli_auth_credentials_store = "file"\n' }),
  credentialFile: codexCredentialFile,
  validate: validateCodexCredentials,
  verify: verifyCodexCredentials,
  // Filled in by the refresh work (issue 11): until then porthole never uses this grant.
  refresh: () => notRefreshable('porthole does not refresh this provider’s credentials yet'),
  accessToken: () => null,
  installPath: (env) => `${env.CODEX_HOME || `${env.HOME}/.codex`}/${codexCredentialFile}`,
  authorizeUrl: { host: 'auth.openai.com', path: '/oauth/authorize' },
};
