import { spawn, type ChildProcess } from 'node:child_process';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { AgentConfig, AgentHealth, AgentLoginRequest } from '../protocol/agent.js';
import { providers, type Provider, type ProviderContext } from '../providers/index.js';
import type { BrowserControl } from './browser-control.js';
import { readCredentialFile } from './credential-file.js';
import { chromiumNetworkFlags, desktopLayout } from './desktop.js';
import { DeliveryRefused, ServerClient } from './server-client.js';
import { describeExit, stopGroup } from './supervised-process.js';

// The provider login: runs the CLI's own login in a terminal window on the desktop, watches the
// directory its credential storage is pinned to, and delivers the file once it validates on two
// reads in a row with the same content (CLIs that write non-atomically show half a file first).
// Then it stops the CLI, so that only porthole's side ever uses the refresh token.

const pollMs = 250;
/** Where the browser wrappers go (first on the login's PATH); the sandbox's /tmp is its own tmpfs. */
const binDir = '/tmp/porthole-bin';
const openerNames = ['xdg-open', 'x-www-browser', 'www-browser', 'sensible-browser', 'open'];

type Phase = NonNullable<AgentHealth['login']>['phase'];

export interface LoginOptions {
  readonly config: AgentConfig;
  readonly home: string;
  /** The desktop's environment (DISPLAY and the sandbox's base variables). */
  readonly env: NodeJS.ProcessEnv;
  readonly logsDir: string;
  readonly log: (event: string, fields?: Record<string, unknown>) => void;
  /** Takes the plain terminal off the desktop, so the sign-in terminal is the one the person sees. */
  readonly replaceTerminal: () => Promise<void>;
  /** The running Chromium's DevTools pipe: a URL opens there as a new tab. */
  readonly browser: BrowserControl;
}

export class Login {
  readonly #o: LoginOptions;
  #provider: Provider | null = null;
  #phase: Phase = 'starting';
  #detail: string | null = null;
  #client: ServerClient | null = null;
  #terminal: ChildProcess | null = null;
  readonly #stopping = new AbortController();

  /** The browser wrappers, written once the agent starts (a pooled desktop has them ready before any login). */
  readonly #openers: Promise<void>;

  constructor(options: LoginOptions) {
    this.#o = options;
    this.#openers = writeOpeners(options.config.agentSocket);
    this.#openers.catch(() => {}); // start() reports it
  }

  get isStarted(): boolean {
    return this.#provider !== null;
  }

  state(): AgentHealth['login'] {
    return this.#provider ? { provider: this.#provider.name, phase: this.#phase, detail: this.#detail } : null;
  }

  /**
   * Starts the login. Resolves once the CLI's terminal is launched and the server has acknowledged
   * the start (so the agent → server hop is proven before the session is called ready); the two go
   * on at once, and a start the server does not acknowledge stops the terminal again.
   */
  async start(request: AgentLoginRequest): Promise<void> {
    const provider = providers[request.provider];
    this.#provider = provider;
    // A sandbox with no network reaches the server only through its agent channel socket.
    const serverUrl = this.#o.config.egress ? `unix:${this.#o.config.egress.serverSocket}` : request.serverUrl;
    const client = new ServerClient(serverUrl, request.sessionId, request.token);
    this.#client = client;
    const credentialDir = join(this.#o.home, '.porthole', 'login', provider.name);
    const context: ProviderContext = {
      home: this.#o.home,
      credentialDir,
      cliDir: this.#o.config.tools.clis,
      demoCli: this.#o.config.tools.demoCli,
      openUrlCommand: join(binDir, 'xdg-open'),
      ...(request.demo ? { demo: request.demo } : {}),
    };
    await mkdir(credentialDir, { recursive: true, mode: 0o700 });
    for (const [name, content] of Object.entries(provider.setupFiles(context))) {
      const path = join(credentialDir, name);
      await mkdir(dirname(path), { recursive: true, mode: 0o700 });
      await writeFile(path, content, { mode: 0o600 });
    }
    await this.#openers;
    const acknowledged = client.event('login.started', { provider: provider.name, file: provider.credentialFile });
    const replaced = this.#o.replaceTerminal();
    this.#startTerminal(provider, context);
    try {
      await Promise.all([acknowledged, replaced]);
    } catch (error) {
      await this.#stopTerminal();
      throw error;
    }
    this.#waitFor(`the CLI to write ${provider.credentialFile}`);
    void this.#watch(provider, credentialDir);
  }

  /**
   * A URL a CLI asked the desktop to open (through the wrappers): a new tab in the sandbox's running
   * Chromium, asked over its DevTools pipe. Should that fail (Chromium is restarting), a second
   * Chromium process on the same profile hands the URL over, or starts one with the same isolation.
   */
  async open(url: URL): Promise<void> {
    const how = await this.#o.browser.openTab(url.href).then(
      () => 'devtools',
      (error: Error) => {
        this.#o.log('login.open_fallback', { error: error.message });
        const profile = join(this.#o.home, '.config/chromium');
        const flags = chromiumNetworkFlags(this.#o.config);
        const child = spawn('chromium', [`--user-data-dir=${profile}`, ...flags, url.href], { env: this.#o.env, stdio: 'ignore', detached: true });
        child.on('error', (spawnError) => this.#o.log('login.open_failed', { error: spawnError.message }));
        child.unref();
        return 'second-process';
      },
    );
    this.#o.log('login.browser_opened', { host: url.host, path: url.pathname, how });
    void this.#client?.event('login.browser_opened', { host: url.host, path: url.pathname, how }).catch(() => {});
  }

  async stop(): Promise<void> {
    this.#stopping.abort();
    await this.#stopTerminal();
  }

  #startTerminal(provider: Provider, context: ProviderContext): void {
    const { terminal } = desktopLayout(this.#o.config.width, this.#o.config.height);
    const env = {
      ...this.#o.env,
      ...provider.env(context),
      PATH: `${binDir}:${this.#o.env.PATH ?? '/usr/bin:/bin'}`,
      BROWSER: context.openUrlCommand,
    };
    const args = [
      ...['-fa', 'Monospace', '-fs', '11', '-title', `${provider.displayName} sign-in`],
      ...['-geometry', `${terminal.columns}x${terminal.rows}+${terminal.x}+${terminal.y}`],
      // Keeps the window open after the CLI exits, so its last words stay readable.
      '-hold',
      ...['-e', ...provider.loginCommand(context)],
    ];
    const child = spawn('xterm', args, { env, cwd: this.#o.home, stdio: 'ignore', detached: true });
    this.#terminal = child;
    this.#o.log('login.started', { provider: provider.name, pid: child.pid });
    child.on('error', (error) => this.#fail(`the terminal could not be started: ${error.message}`));
    child.once('exit', (code, signal) => {
      this.#terminal = null;
      const how = describeExit(code, signal);
      this.#o.log('login.exited', { provider: provider.name, exit: how });
      if (this.#phase === 'waiting') void this.#client?.event('login.exited', { exit: how }).catch(() => {});
    });
  }

  async #stopTerminal(): Promise<void> {
    const child = this.#terminal;
    if (child) await stopGroup(child, new Promise((resolve) => child.once('exit', resolve)));
  }

  async #watch(provider: Provider, credentialDir: string): Promise<void> {
    const signal = this.#stopping.signal;
    let candidate: string | null = null;
    while (!signal.aborted) {
      await sleep(pollMs, undefined, { signal }).catch(() => undefined);
      if (signal.aborted) return;
      const read = await readCredentialFile(credentialDir, provider.credentialFile).catch((error: Error) => ({ kind: 'refused' as const, why: error.message }));
      if (read.kind !== 'content') {
        candidate = null;
        this.#waitFor(read.kind === 'missing' ? `the CLI to write ${provider.credentialFile}` : `a usable file: ${read.why}`);
        continue;
      }
      const check = provider.validate(read.content);
      if (!check.ok) {
        candidate = null;
        this.#waitFor(`${provider.credentialFile} to hold ${check.waitingFor}`);
        continue;
      }
      // Valid now; deliver only when the next read finds the very same content.
      if (candidate !== read.content) {
        candidate = read.content;
        continue;
      }
      await this.#deliver(provider, read.content, check);
      return;
    }
  }

  async #deliver(provider: Provider, content: string, check: { expiresAt: string | null; account: string | null }): Promise<void> {
    this.#setPhase('delivering', null);
    try {
      const status = await this.#client!.deliver({
        provider: provider.name,
        file: provider.credentialFile,
        content,
        expiresAt: check.expiresAt,
        account: check.account,
      });
      this.#setPhase('delivered', null);
      this.#o.log('login.delivered', { provider: provider.name, status });
    } catch (error) {
      const why = error instanceof DeliveryRefused ? error.message : `the server did not answer: ${describeNetworkError(error)}`;
      this.#fail(`the credential could not be delivered: ${why}`);
    }
    // Delivered or not, the CLI stops here: a second copy of a refresh token must not live on.
    await this.#stopTerminal();
  }

  #waitFor(what: string): void {
    if (this.#detail === what) return;
    this.#setPhase('waiting', what);
    void this.#client?.event('login.waiting', { waitingFor: what }).catch(() => {});
  }

  #fail(why: string): void {
    this.#setPhase('failed', why);
    void this.#client?.event('login.failed', { error: why }).catch(() => {});
  }

  #setPhase(phase: Phase, detail: string | null): void {
    this.#phase = phase;
    this.#detail = detail;
    this.#o.log('login.phase', { phase, detail });
  }
}

/** fetch() says "fetch failed" and keeps the reason (ECONNREFUSED, …) in its cause. */
export function describeNetworkError(error: unknown): string {
  // fetch wraps the errno error in `cause`; node:http rejects with it directly.
  const cause = (error as { cause?: NodeJS.ErrnoException } | null)?.cause ?? (error as NodeJS.ErrnoException | null);
  if (typeof cause?.code === 'string') return `${cause.code}${cause.message && !cause.message.includes(cause.code) ? ` ${cause.message}` : ''}`;
  return error instanceof Error ? error.message : String(error);
}

/**
 * The browser wrappers CLIs find through BROWSER, xdg-open or the `open` package: each asks the
 * agent to open the URL in the sandbox's Chromium, so every login's browser is the one the person sees.
 */
async function writeOpeners(agentSocket: string): Promise<void> {
  await mkdir(binDir, { recursive: true, mode: 0o755 });
  // sh and curl: a wrapper in node took 0.1–0.5 s to start on a busy host, before the URL even left.
  const script = `#!/bin/sh
# porthole: opens a URL in the sandbox's Chromium, through the agent.
for arg in "$@"; do
  case "$arg" in [Hh][Tt][Tt][Pp]://* | [Hh][Tt][Tt][Pp][Ss]://*) url=$arg; break ;; esac
done
if [ -z "\${url:-}" ]; then echo 'porthole: only http(s) URLs open here' >&2; exit 2; fi
printf '%s' "$url" | exec curl --silent --show-error --fail --output /dev/null --unix-socket ${shellQuote(agentSocket)} \\
  --header 'content-type: text/plain' --data-binary @- http://agent/open
`;
  for (const name of openerNames) {
    const path = join(binDir, name);
    await writeFile(path, script, { mode: 0o755 });
    await chmod(path, 0o755);
  }
}

/** One shell word, whatever the text. */
function shellQuote(text: string): string {
  return `'${text.replaceAll("'", `'\\''`)}'`;
}
