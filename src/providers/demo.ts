import { providerLabels } from '../protocol/session-states.js';
import { isNonEmptyString, parseCredentialJson } from './credential-json.js';
import { verifyDemoCredentials } from './demo-verify.js';
import type { AccessToken, CredentialCheck, Provider, RefreshOutcome, VerifyContext } from './provider.js';
import { expiryFromExpiresIn, postRefreshGrant } from './token-refresh.js';

// The demo provider: porthole's own OpenID Connect provider on loopback (src/demo/oidc) and a small
// CLI (src/demo/cli) that signs in to it the way the real CLIs do — authorization code with PKCE, a
// loopback redirect, a credential file written non-atomically — so the whole flow runs with no
// internet. The constants here are shared by the provider, the CLI and the agent.

/** The demo CLI's public client, registered in the demo provider. */
export const demoClientId = 'porthole-demo-cli';
/** The demo provider's authorization endpoint (a path on the issuer). */
export const demoAuthorizationPath = '/auth';
/** Where the sandbox mounts the bundled demo CLI (the local driver's read-only mount). */
export const defaultDemoCliPath = '/opt/porthole/demo-cli.mjs';

/** The environment the demo CLI reads. */
export const demoEnv = {
  issuer: 'PORTHOLE_DEMO_ISSUER',
  clientId: 'PORTHOLE_DEMO_CLIENT_ID',
  home: 'PORTHOLE_DEMO_HOME',
} as const;

export const demoCredentialFile = 'credentials.json';

/** The demo account's documented defaults (docs/config.md: PORTHOLE_DEMO_EMAIL, PORTHOLE_DEMO_PASSWORD). */
export const defaultDemoAccount = { email: 'demo@porthole.test', password: 'demo-password' } as const;

/** What the demo CLI writes to `$PORTHOLE_DEMO_HOME/credentials.json`. */
export interface DemoCredentials {
  readonly issuer: string;
  readonly client_id: string;
  readonly access_token: string;
  readonly refresh_token: string;
  readonly id_token: string;
  readonly token_type: string;
  readonly scope: string;
  /** ISO time the access token expires. */
  readonly expires_at: string;
  readonly account: { readonly sub: string; readonly email: string | null };
}

/** The access token's lifetime the demo CLI assumes when a token response has no `expires_in`. */
export const demoFallbackExpiresInSeconds = 60 * 60;

/** The credential file's text as the demo CLI writes it (sign-in and refresh), and porthole's refresh too. */
export function formatDemoCredentials(credentials: DemoCredentials | Readonly<Record<string, unknown>>): string {
  return `${JSON.stringify(credentials, null, 2)}\n`;
}

export function validateDemoCredentials(content: string): CredentialCheck {
  let parsed: unknown;
  try {
    parsed = JSON.parse(content);
  } catch {
    // Usually a file caught half-written; the agent reads again.
    return { ok: false, waitingFor: 'complete JSON' };
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return { ok: false, waitingFor: 'a JSON object' };
  const file = parsed as Record<string, unknown>;
  if (!isNonEmptyString(file.access_token)) return { ok: false, waitingFor: 'an access token' };
  if (!isNonEmptyString(file.refresh_token)) return { ok: false, waitingFor: 'a refresh token' };
  const expiresMs = isNonEmptyString(file.expires_at) ? Date.parse(file.expires_at) : Number.NaN;
  if (Number.isNaN(expiresMs)) return { ok: false, waitingFor: 'an expiry time (expires_at)' };
  const account = typeof file.account === 'object' && file.account !== null ? (file.account as Record<string, unknown>) : {};
  const who = isNonEmptyString(account.email) ? account.email : isNonEmptyString(account.sub) ? account.sub : null;
  return { ok: true, expiresAt: new Date(expiresMs).toISOString(), account: who };
}

// The demo provider's refresh: the refresh grant the demo CLI sends (src/demo/cli/main.ts, `run`:
// openid-client's refreshTokenGrant as a public client — grant_type, refresh_token, client_id — to
// the token endpoint discovery names), and the file rewritten the way the CLI rewrites it. Like
// `verify`, it talks only to the issuer this server runs (VerifyContext.demo), never to one the file
// names: a file naming another issuer is not refreshed, and is refused (see below). The demo
// provider rotates the refresh token on every use (src/demo/oidc/demo-oidc.ts), so the new file
// must be stored before anything else uses the grant: the old refresh token, used again, ends it.

const notRefused = (reason: string): RefreshOutcome => ({ ok: false, refused: false, reason });

/** The issuer’s token endpoint, from its discovery document (only one of its own), or why it cannot be had. */
async function tokenEndpoint(context: VerifyContext, issuer: string): Promise<{ url: string } | { reason: string }> {
  let body: unknown;
  try {
    const response = await context.fetch(`${issuer}/.well-known/openid-configuration`, { redirect: 'error', signal: context.signal });
    if (response.status !== 200) return { reason: `the demo provider’s discovery document answered ${response.status}` };
    body = await response.json();
  } catch (error) {
    const cause = error instanceof Error ? (error.cause instanceof Error ? error.cause.message : error.message) : String(error);
    return { reason: `the demo provider could not be asked (${context.signal.aborted ? 'timed out' : cause})` };
  }
  const metadata = typeof body === 'object' && body !== null ? (body as Record<string, unknown>) : {};
  const url = metadata.token_endpoint;
  // oidc-provider's default route is `/token` (lib/helpers/defaults.js, routes); discovery says so.
  if (metadata.issuer !== issuer || !isNonEmptyString(url) || !URL.canParse(url) || new URL(url).origin !== new URL(issuer).origin)
    return { reason: 'the demo provider’s discovery document names no token endpoint of its own' };
  return { url };
}

export async function refreshDemoCredentials(content: string, context: VerifyContext): Promise<RefreshOutcome> {
  const demo = context.demo;
  if (!demo) return notRefused('the demo provider is switched off on this server');
  const issuer = demo.issuer.replace(/\/+$/, '');
  const parsed = parseCredentialJson(content);
  // A file that no longer parses says nothing about the grant: not refused.
  if (!parsed.ok) return notRefused('the stored file is not a JSON object');
  const file = parsed.value;
  // Refused, not retried: the demo provider keeps its grants in memory, so another issuer (usually
  // the demo provider of a porthole process that has since restarted on another port) has no grant
  // this one could refresh. Only a new sign-in helps. Nothing is sent to the issuer the file names.
  if (!isNonEmptyString(file.issuer) || file.issuer.replace(/\/+$/, '') !== issuer)
    return {
      ok: false,
      refused: true,
      reason: 'the credential was issued by another demo provider than this server’s (a restarted porthole’s demo provider forgets its grants)',
    };
  if (file.client_id !== demo.clientId) return notRefused('the file names another client than the demo CLI');
  if (!isNonEmptyString(file.refresh_token)) return notRefused('the file has no refresh token');

  const endpoint = await tokenEndpoint(context, issuer);
  if ('reason' in endpoint) return notRefused(endpoint.reason);
  const answer = await postRefreshGrant(context, endpoint.url, {
    form: { grant_type: 'refresh_token', refresh_token: file.refresh_token, client_id: demo.clientId },
  });
  if (!answer.ok) return answer;
  const tokens = answer.body;
  if (!isNonEmptyString(tokens.access_token)) return notRefused('the demo provider answered the refresh without an access token');
  if (isNonEmptyString(tokens.token_type) && tokens.token_type.toLowerCase() !== 'bearer')
    return notRefused(`the demo provider answered the refresh with a ${tokens.token_type.slice(0, 16)} token, not a bearer token`);
  const expiresAt = expiryFromExpiresIn(tokens.expires_in) ?? expiryFromExpiresIn(demoFallbackExpiresInSeconds);
  // The CLI's own fields, in its order; `account`, issuer and client id stay as they were (same grant, same subject).
  const rewritten = {
    ...file,
    access_token: tokens.access_token,
    // Rotated on every use by the demo provider; kept when a provider does not rotate.
    refresh_token: isNonEmptyString(tokens.refresh_token) ? tokens.refresh_token : file.refresh_token,
    ...(isNonEmptyString(tokens.id_token) ? { id_token: tokens.id_token } : {}),
    // openid-client, which the CLI uses, writes the type lower-cased.
    token_type: 'bearer',
    ...(isNonEmptyString(tokens.scope) ? { scope: tokens.scope } : {}),
    expires_at: expiresAt,
  };
  return { ok: true, content: formatDemoCredentials(rewritten), expiresAt };
}

export function demoAccessToken(content: string): AccessToken | null {
  const parsed = parseCredentialJson(content);
  if (!parsed.ok || !isNonEmptyString(parsed.value.access_token)) return null;
  const expiresMs = isNonEmptyString(parsed.value.expires_at) ? Date.parse(parsed.value.expires_at) : Number.NaN;
  return {
    accessToken: parsed.value.access_token,
    expiresAt: Number.isNaN(expiresMs) ? null : new Date(expiresMs).toISOString(),
    tokenType: 'Bearer',
  };
}

export const demo: Provider = {
  name: 'demo',
  displayName: providerLabels.demo,
  package: null,
  loginCommand: (context) => ['/usr/bin/node', context.demoCli ?? defaultDemoCliPath, 'login'],
  runCommand: (context, args) => ['/usr/bin/node', context.demoCli ?? defaultDemoCliPath, 'run', ...args],
  env: (context) => ({
    [demoEnv.home]: context.credentialDir,
    ...(context.demo ? { [demoEnv.issuer]: context.demo.issuer, [demoEnv.clientId]: context.demo.clientId } : {}),
    BROWSER: context.openUrlCommand,
  }),
  setupFiles: () => ({}),
  credentialFile: demoCredentialFile,
  validate: validateDemoCredentials,
  // The one provider porthole can ask: the server runs its issuer.
  verify: verifyDemoCredentials,
  // At the issuer this server runs, as the demo CLI's `run` refreshes (src/demo/cli/main.ts).
  refresh: refreshDemoCredentials,
  accessToken: demoAccessToken,
  installPath: (env) => `${env.HOME}/.config/porthole-demo/${demoCredentialFile}`,
  // The port is ephemeral, so only the host name is fixed.
  authorizeUrl: { host: '127.0.0.1', path: demoAuthorizationPath },
};
