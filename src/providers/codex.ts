import { isNonEmptyString, isObject, isoFromJwtExp, jwtClaims, type JsonObject, parseCredentialJson } from './credential-json.js';
import type { CredentialCheck, Provider } from './provider.js';

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

function accountOf(idClaims: JsonObject | null): string | null {
  if (!idClaims) return null;
  if (isNonEmptyString(idClaims.email)) return idClaims.email;
  const profile = idClaims[openAiProfileClaim];
  if (isObject(profile) && isNonEmptyString(profile.email)) return profile.email;
  return isNonEmptyString(idClaims.sub) ? idClaims.sub : null;
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

export const codex: Provider = {
  name: 'codex',
  displayName: 'Codex',
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
  installPath: (env) => `${env.CODEX_HOME || `${env.HOME}/.codex`}/${codexCredentialFile}`,
  authorizeUrl: { host: 'auth.openai.com', path: '/oauth/authorize' },
};
