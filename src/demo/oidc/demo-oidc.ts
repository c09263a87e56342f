import { createHash, generateKeyPair, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { promisify } from 'node:util';
import Provider, { errors, type Configuration, type KoaContextWithOIDC } from 'oidc-provider';
import type { Logger } from 'pino';
import { defaultDemoAccount, demoAuthorizationPath, demoClientId } from '../../providers/demo.js';
import { createMemoryAdapterFactory } from './memory-adapter.js';
import { consentPage, errorPage, loginPage } from './pages.js';

// The demo provider's authorization server: a real OpenID Connect provider (oidc-provider, a
// certified implementation) on 127.0.0.1, with porthole's own sign-in and consent pages. It serves
// one public native client — the demo CLI — and one account. It never makes an outgoing request:
// its only client is static and has no URIs to fetch (no jwks_uri, sector or request URIs), and
// dynamic registration is off.

export const demoScopes = ['openid', 'email', 'profile', 'offline_access'] as const;

export interface DemoOidcOptions {
  /** 0 picks a free port. The provider always binds 127.0.0.1. */
  readonly port: number;
  readonly account: { readonly email: string; readonly password: string };
  readonly logger: Logger;
  /** How long an access token lives, in seconds; 3600 by default (PORTHOLE_DEMO_ACCESS_TOKEN_TTL_S). Short in tests of refresh. */
  readonly accessTokenTtlSeconds?: number;
}

export const defaultDemoAccessTokenTtlSeconds = 60 * 60;
/** An ID token says who signed in, when: no reason to trust it longer than an hour, whatever the access token's lifetime. */
const maxIdTokenTtlSeconds = 60 * 60;

export interface DemoOidc {
  /** `http://127.0.0.1:<port>` */
  readonly issuer: string;
  readonly clientId: string;
  /** Stops listening and drops open connections. Idempotent. */
  close(): Promise<void>;
}

const sha256 = (text: string) => createHash('sha256').update(text).digest();
const maxFormBytes = 16 * 1024;

async function readForm(request: IncomingMessage): Promise<URLSearchParams> {
  let body = '';
  for await (const chunk of request) {
    body += String(chunk);
    if (body.length > maxFormBytes) throw new errors.InvalidRequest('form too large');
  }
  return new URLSearchParams(body);
}

function sendHtml(response: ServerResponse, status: number, html: string): void {
  response.writeHead(status, {
    'content-type': 'text/html; charset=utf-8',
    'cache-control': 'no-store',
    // No script at all; forms may post anywhere because Allow ends in a redirect to the CLI's own
    // loopback port, which a form-action directive would block.
    'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; frame-ancestors 'none'",
    'referrer-policy': 'no-referrer',
    'x-content-type-options': 'nosniff',
  });
  response.end(html);
}

export async function startDemoOidc(options: DemoOidcOptions): Promise<DemoOidc> {
  const log = options.logger.child({ component: 'demo-oidc' });
  const accessTokenTtlSeconds = options.accessTokenTtlSeconds ?? defaultDemoAccessTokenTtlSeconds;
  if (!Number.isInteger(accessTokenTtlSeconds) || accessTokenTtlSeconds < 1)
    throw new RangeError('accessTokenTtlSeconds must be a whole number of seconds, at least 1');
  const account = {
    // A stable subject for the configured account; the e-mail is a claim, not the identifier.
    sub: `demo-${sha256(options.account.email.toLowerCase()).toString('hex').slice(0, 16)}`,
    email: options.account.email,
    passwordHash: sha256(options.account.password),
  };
  // The sign-in page shows the documented defaults as a hint while they are unchanged.
  const showHint = options.account.email === defaultDemoAccount.email && options.account.password === defaultDemoAccount.password;

  // Listen first: with port 0 the issuer (which carries the port) is known only then.
  let handler: (request: IncomingMessage, response: ServerResponse) => void = (_request, response) => response.writeHead(503).end();
  const server = createServer((request, response) => handler(request, response));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  const { privateKey } = await promisify(generateKeyPair)('rsa', { modulusLength: 2048 });
  const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: randomUUID(), use: 'sig', alg: 'RS256' };

  const configuration: Configuration = {
    adapter: createMemoryAdapterFactory(),
    clients: [
      {
        client_id: demoClientId,
        client_name: 'porthole demo CLI',
        application_type: 'native',
        token_endpoint_auth_method: 'none',
        // Native loopback redirect: any port is accepted for this URI (RFC 8252 section 7.3).
        redirect_uris: ['http://127.0.0.1/callback'],
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        scope: demoScopes.join(' '),
      },
    ],
    scopes: [...demoScopes],
    claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
    async findAccount(_ctx, sub) {
      if (sub !== account.sub) return undefined;
      return { accountId: sub, claims: async () => ({ sub, email: account.email, email_verified: true, name: 'porthole demo user' }) };
    },
    jwks: { keys: [signingKey as never] },
    cookies: { keys: [randomBytes(32).toString('base64url')] },
    pkce: { required: () => true },
    routes: { authorization: demoAuthorizationPath },
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    features: {
      // Not for use beyond development: porthole serves its own sign-in and consent pages below.
      devInteractions: { enabled: false },
      userinfo: { enabled: true },
      // The server checks a delivered refresh token here (src/providers/demo-verify.ts) rather than
      // by using it, which would rotate it. A public client may introspect only its own tokens.
      introspection: { enabled: true, allowedPolicy: async (_ctx, client, token) => token.clientId === client.clientId },
      // RFC 7009 at /token/revocation, as the public client: revoking a refresh token ends its whole
      // grant (node_modules/oidc-provider/lib/actions/revocation.js calls helpers/revoke.js with the
      // token's grant, and the default revokeGrantPolicy destroys the Grant too), so a later refresh
      // is invalid_grant. The policy is the default's (a public client revokes only its own tokens),
      // spelled out because the default logs a "you SHOULD change it" notice to the console.
      revocation: { enabled: true, allowedPolicy: async (_ctx, client, token) => token.clientId === client.clientId },
    },
    // Refresh tokens rotate on every use, and a rotated-away token used again revokes the whole
    // grant — both oidc-provider's defaults for this client, so nothing is configured for them:
    // lib/helpers/defaults.js `rotateRefreshToken` rotates for a public client (auth method `none`)
    // whose token is not sender-constrained (until a grant is a year old), and
    // lib/actions/grants/refresh_token.js, on a token already `consumed`, destroys it and calls
    // helpers/revoke.js for its grant (every token issued under it, and the Grant) before answering
    // invalid_grant. The memory adapter's `consume` and `revokeByGrantId` are what that relies on.
    // The CLI does not run in a browser: no cross-origin callers.
    clientBasedCORS: () => false,
    ttl: {
      AccessToken: accessTokenTtlSeconds,
      AuthorizationCode: 60,
      IdToken: Math.min(accessTokenTtlSeconds, maxIdTokenTtlSeconds),
      RefreshToken: 14 * 24 * 60 * 60,
      // A person in a remote desktop may take a while to type.
      Interaction: 30 * 60,
      Session: 24 * 60 * 60,
      Grant: 14 * 24 * 60 * 60,
    },
    renderError(ctx, out) {
      ctx.type = 'html';
      ctx.set('cache-control', 'no-store');
      ctx.body = errorPage('Sign-in failed', out.error_description ?? out.error);
    },
  };
  const provider = new Provider(issuer, configuration);

  // Errors are logged by their OAuth code and description only: never a token, code or password.
  provider.on('server_error', (_ctx: KoaContextWithOIDC, error: Error) => log.error({ err: error }, 'demo provider: internal error'));
  for (const event of ['authorization.error', 'grant.error', 'userinfo.error', 'discovery.error', 'jwks.error', 'revocation.error'] as const) {
    provider.on(event as 'grant.error', (_ctx: KoaContextWithOIDC, error: errors.OIDCProviderError) =>
      log.warn({ event, error: error.error, description: error.error_description, detail: error.error_detail }, 'demo provider: request refused'),
    );
  }
  provider.on('grant.success', (ctx: KoaContextWithOIDC) =>
    log.info({ grantType: ctx.oidc.params?.grant_type, clientId: ctx.oidc.client?.clientId }, 'demo provider: tokens issued'),
  );

  async function interaction(request: IncomingMessage, response: ServerResponse, uid: string, action: string | undefined): Promise<void> {
    const details = await provider.interactionDetails(request, response);
    // The interaction comes from the browser's cookie; the URL must name the same one.
    if (details.uid !== uid) throw new errors.SessionNotFound('interaction mismatch');
    const { prompt, params } = details;
    const clientId = String(params.client_id);
    const client = await provider.Client.find(clientId);
    const clientName = client?.clientName ?? clientId;

    if (request.method === 'GET' && action === undefined) {
      if (prompt.name === 'login') return sendHtml(response, 200, loginPage({ uid, clientName, hint: showHint ? defaultDemoAccount : null }));
      if (prompt.name === 'consent') {
        return sendHtml(
          response,
          200,
          consentPage({
            uid,
            clientName,
            email: account.email,
            scopes: String(params.scope ?? '')
              .split(' ')
              .filter(Boolean),
          }),
        );
      }
      throw new errors.InvalidRequest(`unexpected prompt ${prompt.name}`);
    }
    if (request.method !== 'POST') return sendHtml(response, 405, errorPage('Not allowed', 'This page only accepts its own form.'));

    if (action === 'login' && prompt.name === 'login') {
      const form = await readForm(request);
      const email = (form.get('email') ?? '').trim();
      const isRight = email.toLowerCase() === account.email.toLowerCase() && timingSafeEqual(sha256(form.get('password') ?? ''), account.passwordHash);
      if (!isRight) {
        log.info({ interaction: uid }, 'demo provider: sign-in refused (wrong e-mail or password)');
        return sendHtml(
          response,
          200,
          loginPage({ uid, clientName, email, error: 'Wrong e-mail or password. Try again.', hint: showHint ? defaultDemoAccount : null }),
        );
      }
      log.info({ interaction: uid }, 'demo provider: signed in');
      return provider.interactionFinished(request, response, { login: { accountId: account.sub } }, { mergeWithLastSubmission: false });
    }
    if (action === 'confirm' && prompt.name === 'consent') {
      const accountId = details.session?.accountId;
      if (!accountId) throw new errors.SessionNotFound('no signed-in account');
      const grant = details.grantId ? await provider.Grant.find(details.grantId) : new provider.Grant({ accountId, clientId });
      if (!grant) throw new errors.SessionNotFound('grant not found');
      const missing = prompt.details as { missingOIDCScope?: string[]; missingOIDCClaims?: string[] };
      if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
      if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
      const grantId = await grant.save();
      log.info({ interaction: uid }, 'demo provider: access allowed');
      return provider.interactionFinished(request, response, { consent: details.grantId ? {} : { grantId } }, { mergeWithLastSubmission: true });
    }
    if (action === 'abort') {
      log.info({ interaction: uid }, 'demo provider: access cancelled by the person');
      return provider.interactionFinished(
        request,
        response,
        { error: 'access_denied', error_description: 'The sign-in was cancelled.' },
        { mergeWithLastSubmission: false },
      );
    }
    throw new errors.InvalidRequest(`unexpected ${action ?? 'page'} for prompt ${prompt.name}`);
  }

  const oidcCallback = provider.callback();
  handler = (request, response) => {
    const match = /^\/interaction\/([\w-]+)(?:\/(login|confirm|abort))?$/.exec(new URL(request.url ?? '/', issuer).pathname);
    if (!match) return void oidcCallback(request, response);
    interaction(request, response, match[1]!, match[2]).catch((error: unknown) => {
      if (response.headersSent) return void response.destroy();
      if (error instanceof errors.SessionNotFound) {
        return sendHtml(response, 400, errorPage('This sign-in has expired', 'Start the sign-in again from the terminal.'));
      }
      if (error instanceof errors.OIDCProviderError) return sendHtml(response, 400, errorPage('Sign-in failed', error.error_description ?? error.error));
      log.error({ err: error }, 'demo provider: interaction failed');
      return sendHtml(response, 500, errorPage('Sign-in failed', 'Something went wrong. Start the sign-in again from the terminal.'));
    });
  };

  // A refresh token used twice (a leaked copy, or two refreshers of one grant) ends the grant.
  provider.on('grant.revoked', (ctx: KoaContextWithOIDC) =>
    log.info({ route: ctx.oidc.route, clientId: ctx.oidc.client?.clientId }, 'demo provider: grant revoked (all its tokens)'),
  );

  log.info({ issuer, clientId: demoClientId, account: account.email, accessTokenTtlSeconds }, 'demo OpenID Connect provider listening');
  let closing: Promise<void> | null = null;
  return {
    issuer,
    clientId: demoClientId,
    close: () =>
      (closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        // Browsers keep connections alive; without this close() would wait for them.
        server.closeAllConnections();
      })),
  };
}
