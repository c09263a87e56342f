import { createHash, randomBytes } from 'node:crypto';
import type { Session } from '../../src/protocol/session.js';
import { defaultDemoAccount, type DemoCredentials } from '../../src/providers/demo.js';
import { hashAgentToken } from '../../src/server/sessions/agent-token.js';

// A real sign-in to the demo OpenID Connect provider without a browser: the same authorization
// code flow with PKCE the demo CLI runs, its sign-in and consent forms posted over HTTP, and the
// credential file the CLI would write. Tests that need a credential the server's verification
// accepts use this; the browser and the CLI themselves are tested in test/demo and test/e2e.

/** Cookies by name, as the forms need them; paths do not matter against one provider. */
class CookieJar {
  readonly #cookies = new Map<string, string>();
  take(response: Response): void {
    for (const line of response.headers.getSetCookie()) {
      const [pair = ''] = line.split(';');
      const at = pair.indexOf('=');
      if (at > 0) this.#cookies.set(pair.slice(0, at).trim(), pair.slice(at + 1).trim());
    }
  }
  header(): string {
    return [...this.#cookies].map(([name, value]) => `${name}=${value}`).join('; ');
  }
}

/** Follows redirects by hand (to keep cookies) until one leaves the provider: that is the callback. */
async function walk(issuer: string, jar: CookieJar, url: string, init: RequestInit = {}): Promise<URL> {
  let next = new URL(url, issuer);
  let request: RequestInit = init;
  for (let hops = 0; hops < 10; hops++) {
    const response = await fetch(next, { ...request, redirect: 'manual', headers: { ...(request.headers as Record<string, string>), cookie: jar.header() } });
    jar.take(response);
    const body = await response.text();
    const location = response.headers.get('location');
    if (!location) {
      // A page: the sign-in or consent form, whose action is the next step.
      // The forward one: sign in, or Allow (the consent page's first form is Cancel).
      const action = [...body.matchAll(/<form[^>]*action="([^"]+)"/g)].map((m) => m[1]!).find((a) => /\/(login|confirm)$/.test(a));
      if (!action) throw new Error(`demo sign-in: ${response.status} at ${next.pathname} with no form and no redirect`);
      return new URL(action.replaceAll('&amp;', '&'), next);
    }
    next = new URL(location, next);
    if (next.origin !== new URL(issuer).origin) return next;
    request = {};
  }
  throw new Error('demo sign-in: too many redirects');
}

function form(fields: Record<string, string>): RequestInit {
  return { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(fields).toString() };
}

/**
 * Signs in to the demo provider at `issuer` as its account and returns the credential file the demo
 * CLI writes for it (real tokens the provider accepts).
 */
export async function demoSignIn(
  issuer: string,
  clientId = 'porthole-demo-cli',
  account: { email: string; password: string } = defaultDemoAccount,
): Promise<DemoCredentials> {
  const verifier = randomBytes(32).toString('base64url');
  const redirectUri = 'http://127.0.0.1:9/callback';
  const state = randomBytes(8).toString('hex');
  const authorize = new URL('/auth', issuer);
  authorize.search = new URLSearchParams({
    client_id: clientId,
    response_type: 'code',
    redirect_uri: redirectUri,
    scope: 'openid email profile offline_access',
    code_challenge: createHash('sha256').update(verifier).digest('base64url'),
    code_challenge_method: 'S256',
    state,
    prompt: 'consent',
  }).toString();
  const jar = new CookieJar();
  const loginAction = await walk(issuer, jar, authorize.href);
  const consentAction = await walk(issuer, jar, loginAction.href, form({ email: account.email, password: account.password }));
  const callback = await walk(issuer, jar, consentAction.href, form({}));
  const code = callback.searchParams.get('code');
  if (!code || callback.searchParams.get('state') !== state) throw new Error(`demo sign-in: no code at the callback (${callback.search})`);

  const metadata = (await (await fetch(`${issuer}/.well-known/openid-configuration`)).json()) as { token_endpoint: string; userinfo_endpoint: string };
  const tokenResponse = await fetch(
    metadata.token_endpoint,
    form({ grant_type: 'authorization_code', code, redirect_uri: redirectUri, client_id: clientId, code_verifier: verifier }),
  );
  const tokens = (await tokenResponse.json()) as {
    access_token: string;
    refresh_token: string;
    id_token: string;
    token_type: string;
    scope: string;
    expires_in: number;
  };
  if (!tokenResponse.ok || !tokens.refresh_token) throw new Error(`demo sign-in: token endpoint answered ${tokenResponse.status}`);
  const userinfo = (await (await fetch(metadata.userinfo_endpoint, { headers: { authorization: `Bearer ${tokens.access_token}` } })).json()) as {
    sub: string;
    email?: string;
  };
  return {
    issuer,
    client_id: clientId,
    access_token: tokens.access_token,
    refresh_token: tokens.refresh_token,
    id_token: tokens.id_token,
    token_type: tokens.token_type,
    scope: tokens.scope,
    expires_at: new Date(Date.now() + tokens.expires_in * 1000).toISOString(),
    account: { sub: userinfo.sub, email: userinfo.email ?? null },
  };
}

/**
 * Completes a live demo session with a credential from a real sign-in to `issuer`, delivered the
 * way the agent delivers it (its token, its route), and returns the session once `completed`. For
 * tests about what happens after the capture; the canvas path to the same delivery is test/e2e's.
 */
export async function deliverDemoCredential(
  t: {
    server: { url: string; store: { setAgentTokenHash(id: never, hash: string): Promise<void> } };
    waitForState(id: string, states: Session['state'][]): Promise<Session>;
  },
  sessionId: string,
  issuer: string,
): Promise<Session> {
  const agentToken = randomBytes(32).toString('base64url');
  await t.server.store.setAgentTokenHash(sessionId as never, hashAgentToken(agentToken));
  const content = JSON.stringify(await demoSignIn(issuer));
  const response = await fetch(`${t.server.url}/v1/agent/sessions/${sessionId}/credentials`, {
    method: 'POST',
    headers: { authorization: `Bearer ${agentToken}`, 'content-type': 'application/json' },
    body: JSON.stringify({ provider: 'demo', file: 'credentials.json', content, expiresAt: null, account: null }),
  });
  if (response.status !== 201) throw new Error(`the credential delivery answered ${response.status}: ${await response.text()}`);
  return t.waitForState(sessionId, ['completed']);
}
