import { spawn } from 'node:child_process';
import { mkdir, open } from 'node:fs/promises';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { homedir } from 'node:os';
import { join } from 'node:path';
import * as oidc from 'openid-client';
import { demoCredentialFile, demoEnv, type DemoCredentials } from '../../providers/demo.js';

// porthole-demo-cli: signs in to porthole's demo OpenID Connect provider the way Claude Code, Codex
// and Gemini CLI sign in to theirs — discovery, authorization code with PKCE and state, a loopback
// redirect on an ephemeral port, the browser opened through $BROWSER — and writes its credential
// file non-atomically, as Codex and Gemini do, so porthole's agent meets a half-written file.
// Bundled to dist/agent/porthole-demo-cli.mjs; sandboxes see it at /opt/porthole/demo-cli.mjs.
//
//   PORTHOLE_DEMO_ISSUER=http://127.0.0.1:PORT PORTHOLE_DEMO_CLIENT_ID=porthole-demo-cli \
//   PORTHOLE_DEMO_HOME=/path/to/dir  node porthole-demo-cli.mjs login

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

async function login(): Promise<void> {
  const issuer = new URL(requireEnv(demoEnv.issuer));
  const clientId = requireEnv(demoEnv.clientId);
  const home = process.env[demoEnv.home] || join(homedir(), '.config', 'porthole-demo');

  // The demo provider runs on loopback over plain HTTP, which openid-client refuses unless told.
  const execute = issuer.protocol === 'http:' ? [oidc.allowInsecureRequests] : [];
  const config = await oidc.discovery(issuer, clientId, undefined, oidc.None(), { execute }).catch((error: unknown) => {
    throw new CliError(`cannot reach the sign-in service at ${issuer.origin}: ${(error as Error).message}`);
  });

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
        expires_at: new Date(Date.now() + (tokens.expiresIn() ?? 3600) * 1000).toISOString(),
        account: { sub: claims.sub, email: typeof userinfo.email === 'string' ? userinfo.email : null },
      };
      await mkdir(home, { recursive: true, mode: 0o700 });
      await writeNonAtomically(join(home, demoCredentialFile), `${JSON.stringify(credentials, null, 2)}\n`);
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

async function main(argv: readonly string[]): Promise<number> {
  const [command] = argv;
  if (command === '--help' || command === '-h' || command === undefined) {
    say("usage: porthole-demo-cli login\n\nSigns in to porthole's demo provider and writes $PORTHOLE_DEMO_HOME/credentials.json.");
    return command === undefined ? 2 : 0;
  }
  if (command !== 'login') {
    process.stderr.write(`porthole-demo-cli: unknown command "${command}"; try: porthole-demo-cli login\n`);
    return 2;
  }
  try {
    await login();
    return 0;
  } catch (error) {
    process.stderr.write(`Sign-in failed: ${error instanceof CliError ? error.message : String(error)}\n`);
    return 1;
  }
}

// Exit explicitly: open HTTP keep-alive connections must not hold the terminal after the sign-in.
process.exit(await main(process.argv.slice(2)));
