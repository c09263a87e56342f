import { providerLabels } from '../protocol/session-states.js';
import { verifyDemoCredentials } from './demo-verify.js';
import type { CredentialCheck, Provider } from './provider.js';
import { notRefreshable } from './token-refresh.js';

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

const isNonEmptyString = (value: unknown): value is string => typeof value === 'string' && value.length > 0;

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

export const demo: Provider = {
  name: 'demo',
  displayName: providerLabels.demo,
  package: null,
  loginCommand: (context) => ['/usr/bin/node', context.demoCli ?? defaultDemoCliPath, 'login'],
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
  // Filled in by the refresh work (issue 11): until then porthole never uses this grant.
  refresh: () => notRefreshable('porthole does not refresh this provider’s credentials yet'),
  accessToken: () => null,
  installPath: (env) => `${env.HOME}/.config/porthole-demo/${demoCredentialFile}`,
  // The port is ephemeral, so only the host name is fixed.
  authorizeUrl: { host: '127.0.0.1', path: demoAuthorizationPath },
};
