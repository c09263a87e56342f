import { spawn } from 'node:child_process';
import { mkdir, open, readFile, rename, rm } from 'node:fs/promises';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { homedir } from 'node:os';
import { join } from 'node:path';
import * as oidc from 'openid-client';
import {
  demoCredentialFile,
  demoEnv,
  demoFallbackExpiresInSeconds,
  formatDemoCredentials,
  validateDemoCredentials,
  type DemoCredentials,
} from '../../providers/demo.js';

// porthole-demo-cli: signs in to porthole's demo OpenID Connect provider the way Claude Code, Codex
// and Gemini CLI sign in to theirs — discovery, authorization code with PKCE and state, a loopback
// redirect on an ephemeral port, the browser opened through $BROWSER — and writes its credential
// file non-atomically, as Codex and Gemini do, so porthole's agent meets a half-written file.
// Bundled to dist/agent/porthole-demo-cli.mjs; sandboxes see it at /opt/porthole/demo-cli.mjs.
//
//   PORTHOLE_DEMO_ISSUER=http://127.0.0.1:PORT PORTHOLE_DEMO_CLIENT_ID=porthole-demo-cli \
//   PORTHOLE_DEMO_HOME=/path/to/dir  node porthole-demo-cli.mjs login
//
// `run [whoami]` uses the stored sign-in as the real CLIs do when they start: it asks userinfo with
// the access token and, when that token has expired (or userinfo says 401), refreshes it itself with
// the refresh token — which the demo provider rotates — and rewrites the file. It never prints a token.

const scope = 'openid email profile offline_access';
const signInTimeoutMs = 15 * 60_000;
/** How long the credential file stays half-written: long enough for a watcher to see it. */
const halfWrittenMs = 300;

class CliError extends Error {}

function say(line: string): void {
  process.stdout.write(`${line}\n`);
}

/** Opens the URL like the real CLIs: $BROWSER when set (a command, `%s` standing for the URL), else xdg-open. */
function openBrowser(url: string): void {
  const browser = process.env.BROWSER;
  // The URL travels as "$1", never pasted into the shell text.
  const [command, args] = browser
    ? ['/bin/sh', ['-c', browser.includes('%s') ? browser.replaceAll('%s', '"$1"') : `${browser} "$1"`, 'sh', url]]
    : ['xdg-open', [url]];
  try {
    const child = spawn(command, args as string[], { detached: true, stdio: 'ignore' });
    child.on('error', () => {}); // the printed URL is the fallback
    child.unref();
  } catch {
    // likewise
  }
}

const callbackPage = (title: string, message: string) => `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title} · porthole demo</title>
<style>
  body { margin: 0; font: 18px/1.45 system-ui, -apple-system, 'Segoe UI', Roboto, Arial, sans-serif; color: #1d232b; background: #eef1f5;
    display: flex; justify-content: center; padding: 10vh 16px; }
  main { max-width: 460px; width: 100%; background: #fff; border: 1px solid #dde1e6; border-radius: 10px; padding: 36px 40px; box-shadow: 0 2px 12px rgba(20,30,50,.08); }
  h1 { font-size: 26px; margin: 0 0 12px; }
</style></head>
<body><main><h1>porthole demo</h1><p><strong>${title}</strong></p><p>${message}</p></main></body></html>`;

const escapeHtml = (text: string) => text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function respond(response: ServerResponse, status: number, title: string, message: string): void {
  response.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store', connection: 'close' });
  response.end(callbackPage(escapeHtml(title), escapeHtml(message)));
}

/** Writes in two parts with a pause between, as Codex and Gemini CLI do (no temp file and rename). */
async function writeNonAtomically(path: string, text: string): Promise<void> {
  const file = await open(path, 'w', 0o600);
  try {
    const half = Math.floor(text.length / 2);
    await file.write(text.slice(0, half));
    await new Promise((resolve) => setTimeout(resolve, halfWrittenMs));
    await file.write(text.slice(half));
  } finally {
    await file.close();
  }
}

function requireEnv(name: string): string {
  const value = process.env[name];
  if (!value) throw new CliError(`${name} is not set. porthole sets it when it runs this login.`);
  return value;
}

/** Where the credential file lives: $PORTHOLE_DEMO_HOME, else the path `porthole credentials install` writes. */
const credentialHome = () => process.env[demoEnv.home] || join(homedir(), '.config', 'porthole-demo');

async function discover(issuer: URL, clientId: string): Promise<oidc.Configuration> {
  // The demo provider runs on loopback over plain HTTP, which openid-client refuses unless told.
  const execute = issuer.protocol === 'http:' ? [oidc.allowInsecureRequests] : [];
  return oidc.discovery(issuer, clientId, undefined, oidc.None(), { execute }).catch((error: unknown) => {
    throw new CliError(`cannot reach the sign-in service at ${issuer.origin}: ${(error as Error).message}`);
  });
}

async function login(): Promise<void> {
  const issuer = new URL(requireEnv(demoEnv.issuer));
  const clientId = requireEnv(demoEnv.clientId);
  const home = credentialHome();
  const config = await discover(issuer, clientId);

  // The loopback redirect: listen on an ephemeral port, registered as http://127.0.0.1/callback (RFC 8252).
  let onCallback: (url: URL, response: ServerResponse) => void = () => {};
  let redirectUri = '';
  const server = createServer((request, response) => {
    // Relative to the redirect URI with its port: the code exchange derives redirect_uri from it.
    const url = new URL(request.url ?? '/', redirectUri);
    if (request.method !== 'GET' || url.pathname !== '/callback') return void response.writeHead(404).end();
    onCallback(url, response);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  redirectUri = `http://127.0.0.1:${(server.address() as AddressInfo).port}/callback`;

  try {
    const codeVerifier = oidc.randomPKCECodeVerifier();
    const state = oidc.randomState();
    const authorizationUrl = oidc.buildAuthorizationUrl(config, {
      redirect_uri: redirectUri,
      scope,
      code_challenge: await oidc.calculatePKCECodeChallenge(codeVerifier),
      code_challenge_method: 'S256',
      state,
      // OpenID Connect issues a refresh token (offline_access) only when consent is asked for.
      prompt: 'consent',
    }).href;

    say('Opening your browser…');
    openBrowser(authorizationUrl);
    say(`If the browser does not open, visit:\n\n  ${authorizationUrl}\n`);
    say('Waiting for you to sign in…');

    const { url, response } = await new Promise<{ url: URL; response: ServerResponse }>((resolve, reject) => {
      const timer = setTimeout(() => reject(new CliError('timed out waiting for the sign-in in the browser.')), signInTimeoutMs);
      onCallback = (url, response) => {
        clearTimeout(timer);
        resolve({ url, response });
      };
    });

    try {
      const denied = url.searchParams.get('error');
      if (denied) throw new CliError(denied === 'access_denied' ? 'the sign-in was cancelled in the browser.' : `the sign-in service answered ${denied}.`);
      const tokens = await oidc.authorizationCodeGrant(config, url, { pkceCodeVerifier: codeVerifier, expectedState: state, idTokenExpected: true });
      const claims = tokens.claims();
      if (!claims || !tokens.refresh_token || !tokens.id_token) throw new CliError('the sign-in service did not return a refresh token and an ID token.');
      // The e-mail is a userinfo claim (the ID token carries the subject); reading it also proves the access token works.
      const userinfo = await oidc.fetchUserInfo(config, tokens.access_token, claims.sub);
      const credentials: DemoCredentials = {
        issuer: config.serverMetadata().issuer,
        client_id: clientId,
        access_token: tokens.access_token,
        refresh_token: tokens.refresh_token,
        id_token: tokens.id_token,
        token_type: tokens.token_type,
        scope: tokens.scope ?? scope,
        expires_at: new Date(Date.now() + (tokens.expiresIn() ?? demoFallbackExpiresInSeconds) * 1000).toISOString(),
        account: { sub: claims.sub, email: typeof userinfo.email === 'string' ? userinfo.email : null },
      };
      await mkdir(home, { recursive: true, mode: 0o700 });
      await writeNonAtomically(join(home, demoCredentialFile), formatDemoCredentials(credentials));
      respond(response, 200, 'You are signed in.', 'porthole demo CLI has your sign-in. You can close this tab and return to the terminal.');
      say(`Signed in as ${credentials.account.email ?? credentials.account.sub}.`);
    } catch (error) {
      const reason = error instanceof CliError ? error.message : `${(error as Error).message}`;
      respond(response, 400, 'Sign-in did not complete.', `${reason} Return to the terminal and try again.`);
      throw error instanceof CliError ? error : new CliError(reason);
    }
  } finally {
    server.close();
    server.closeAllConnections();
  }
}

/** An HTTP status an openid-client error carries (a token or userinfo endpoint's answer), if any. */
const statusOf = (error: unknown): number | null =>
  error instanceof oidc.ResponseBodyError || error instanceof oidc.WWWAuthenticateChallengeError ? error.status : null;

/** Replaces the file in one step: a refresh that stopped half-way must not lose the rotated refresh token. */
async function writeAtomically(path: string, text: string): Promise<void> {
  const temporary = `${path}.${process.pid}.tmp`;
  try {
    const file = await open(temporary, 'w', 0o600);
    try {
      await file.write(text);
      await file.sync();
    } finally {
      await file.close();
    }
    await rename(temporary, path);
  } catch (error) {
    await rm(temporary, { force: true });
    throw error;
  }
}

/** The refresh grant, as a public client; the file rewritten with the answer (the refresh token rotates). */
async function refresh(config: oidc.Configuration, path: string, stored: DemoCredentials): Promise<DemoCredentials> {
  let tokens: Awaited<ReturnType<typeof oidc.refreshTokenGrant>>;
  try {
    tokens = await oidc.refreshTokenGrant(config, stored.refresh_token);
  } catch (error) {
    if (error instanceof oidc.ResponseBodyError && error.error === 'invalid_grant') {
      throw new CliError('the sign-in service refused the refresh (the sign-in was revoked or has expired). Sign in again: porthole-demo-cli login');
    }
    throw new CliError(`the sign-in could not be refreshed: ${error instanceof oidc.ResponseBodyError ? error.error : (error as Error).message}`);
  }
  const claims = tokens.claims();
  if (claims && claims.sub !== stored.account.sub) throw new CliError('the sign-in service refreshed the sign-in of another account.');
  const refreshed: DemoCredentials = {
    ...stored,
    access_token: tokens.access_token,
    refresh_token: tokens.refresh_token ?? stored.refresh_token,
    id_token: tokens.id_token ?? stored.id_token,
    token_type: tokens.token_type,
    scope: tokens.scope ?? stored.scope,
    expires_at: new Date(Date.now() + (tokens.expiresIn() ?? demoFallbackExpiresInSeconds) * 1000).toISOString(),
  };
  await writeAtomically(path, formatDemoCredentials(refreshed));
  return refreshed;
}

/** `force`: refresh first whatever the expiry says, as a CLI does that refreshes on its own schedule. */
async function run(force = false): Promise<void> {
  const path = join(credentialHome(), demoCredentialFile);
  const content = await readFile(path, 'utf8').catch(() => {
    throw new CliError(`not signed in (no ${path}). Sign in first: porthole-demo-cli login`);
  });
  if (!validateDemoCredentials(content).ok) throw new CliError(`${path} is not a complete sign-in. Sign in again: porthole-demo-cli login`);
  let stored = JSON.parse(content) as DemoCredentials;
  // The file says where it signed in; a set PORTHOLE_DEMO_ISSUER (as in the sandbox) must agree.
  const configured = process.env[demoEnv.issuer];
  if (configured && new URL(configured).href !== new URL(stored.issuer).href)
    throw new CliError(`the stored sign-in is for another sign-in service than ${configured}. Sign in again: porthole-demo-cli login`);
  const config = await discover(new URL(stored.issuer), process.env[demoEnv.clientId] || stored.client_id);

  let hasRefreshed = false;
  if (force || Date.parse(stored.expires_at) <= Date.now()) {
    stored = await refresh(config, path, stored);
    hasRefreshed = true;
  }
  let userinfo: oidc.UserInfoResponse;
  try {
    userinfo = await oidc.fetchUserInfo(config, stored.access_token, stored.account.sub);
  } catch (error) {
    // Revoked or expired earlier than the file says: refresh once, as a CLI does on a 401.
    if (statusOf(error) !== 401 || hasRefreshed) throw new CliError(`the sign-in service refused the sign-in: ${(error as Error).message}`);
    stored = await refresh(config, path, stored);
    hasRefreshed = true;
    userinfo = await oidc.fetchUserInfo(config, stored.access_token, stored.account.sub);
  }
  if (hasRefreshed) say(force ? 'Refreshed the sign-in (--refresh).' : 'The access token had expired: refreshed the sign-in.');
  say(`signed in as ${typeof userinfo.email === 'string' ? userinfo.email : userinfo.sub} (sub ${userinfo.sub})`);
}

const usage = `usage: porthole-demo-cli login | run [whoami] [--refresh]

  login         Signs in to porthole's demo provider and writes $PORTHOLE_DEMO_HOME/credentials.json.
  run [whoami]  Uses that sign-in: prints the account, refreshing the access token first when it has expired
                (--refresh: first in any case, rotating the refresh token as a CLI that refreshes by itself does).`;

async function main(argv: readonly string[]): Promise<number> {
  const [command] = argv;
  if (command === '--help' || command === '-h' || command === undefined) {
    say(usage);
    return command === undefined ? 2 : 0;
  }
  if (command === 'login') {
    try {
      await login();
      return 0;
    } catch (error) {
      process.stderr.write(`Sign-in failed: ${error instanceof CliError ? error.message : String(error)}\n`);
      return 1;
    }
  }
  const runArgs = argv.slice(1).filter((arg) => arg !== '--refresh');
  if (command === 'run' && runArgs.length <= 1 && (runArgs[0] === undefined || runArgs[0] === 'whoami')) {
    try {
      await run(argv.includes('--refresh'));
      return 0;
    } catch (error) {
      // Never the error object itself: openid-client's errors carry the response, and so a token.
      process.stderr.write(`porthole-demo-cli: ${error instanceof CliError ? error.message : error instanceof Error ? error.message : 'failed'}\n`);
      return 1;
    }
  }
  process.stderr.write(`porthole-demo-cli: unknown command "${argv.join(' ')}"; try: porthole-demo-cli login, or porthole-demo-cli run whoami\n`);
  return 2;
}

// Exit explicitly: open HTTP keep-alive connections must not hold the terminal after the sign-in.
process.exit(await main(process.argv.slice(2)));
