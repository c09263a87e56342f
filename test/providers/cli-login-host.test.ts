import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { claudeCode } from '../../src/providers/claude-code.js';
import { codex } from '../../src/providers/codex.js';
import { geminiCli, geminiCliKeypresses } from '../../src/providers/gemini-cli.js';
import type { Provider, ProviderContext } from '../../src/providers/provider.js';
import { until, untilDefined, untilSteady } from '../support/until.js';

// The real, pinned CLIs on the host (no sandbox): each provider's login command, environment and
// setup files in a temp directory, with the browser openers (BROWSER and xdg-open & co. first on
// PATH) replaced by a recorder. Within the timeout the recorder must receive a URL whose host and
// path are the provider's authorizeUrl. The OAuth servers are not reachable from here, and need
// not be: opening the browser is where porthole's part of a login ends.
//
// Every CLI runs in a pseudo-terminal (`script -qfec`, util-linux), as in the sandbox's xterm:
// Gemini CLI needs one (it is an interactive TUI), and the others should behave as they will there.
//
// Prerequisite: the pinned CLIs in clis/node_modules (scripts/setup.sh runs `npm ci --prefix clis`).

const root = fileURLToPath(new URL('../../../', import.meta.url));
const cliDir = join(root, 'clis');
const loginTimeoutMs = 60_000;

let dir: string;

function assertClisInstalled(): void {
  const missing = !existsSync(join(cliDir, 'node_modules'));
  assert.ok(
    !missing,
    `the pinned CLIs are not installed: ${join(cliDir, 'node_modules')} is missing. Run \`npm ci --prefix clis\` in ${root} (scripts/setup.sh does it for npm start and npm test).`,
  );
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'porthole-test-cli-login-'));
});
after(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

const quote = (arg: string): string => `'${arg.replaceAll("'", `'\\''`)}'`;

/** Every process below `pid`, children first found last (so killing in order reaches leaves last). */
function descendants(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(entry)]);
    } catch {
      // gone meanwhile
    }
  }
  const out: number[] = [];
  const walk = (p: number): void => {
    for (const child of children.get(p) ?? []) {
      out.push(child);
      walk(child);
    }
  };
  walk(pid);
  return out;
}

/** Whether `pid` still runs: a zombie has ended, only its exit status waits for a reaper. */
function isRunning(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

function signalAll(pids: readonly number[], signal: NodeJS.Signals): void {
  for (const pid of pids) {
    try {
      process.kill(pid, signal);
    } catch {
      // already gone
    }
  }
}

interface Run {
  readonly context: ProviderContext;
  readonly recorded: string;
  output: string;
  stop(): Promise<void>;
  send(keys: string): void;
}

/** Starts a provider's login as the agent does (setup files, env, PATH and BROWSER), in a pty. */
async function startLogin(provider: Provider): Promise<Run> {
  const base = join(dir, provider.name);
  const context: ProviderContext = {
    home: join(base, 'home'),
    credentialDir: join(base, 'login'),
    cliDir,
    openUrlCommand: join(base, 'bin', 'xdg-open'),
  };
  const recorded = join(base, 'opened-urls');
  await mkdir(context.home, { recursive: true });
  await mkdir(context.credentialDir, { recursive: true, mode: 0o700 });
  await mkdir(join(base, 'bin'), { recursive: true });
  // The sandbox's wrappers hand the URL to Chromium; this one writes "<name it was called by> <url>".
  const recorder = `#!/bin/sh\nprintf '%s %s\\n' "$(basename "$0")" "$*" >> ${quote(recorded)}\n`;
  for (const name of ['xdg-open', 'x-www-browser', 'www-browser', 'sensible-browser', 'open']) {
    await writeFile(join(base, 'bin', name), recorder);
    await chmod(join(base, 'bin', name), 0o755);
  }
  for (const [name, content] of Object.entries(provider.setupFiles(context))) {
    await mkdir(dirname(join(context.credentialDir, name)), { recursive: true });
    await writeFile(join(context.credentialDir, name), content, { mode: 0o600 });
  }
  const env: NodeJS.ProcessEnv = {
    HOME: context.home,
    USER: 'porthole',
    LANG: 'C.UTF-8',
    TERM: 'xterm',
    SHELL: '/bin/sh',
    // The sandbox's display is :0; nothing draws here, but Gemini opens a browser only when it is set.
    DISPLAY: ':99',
    ...provider.env(context),
    PATH: `${join(base, 'bin')}:/usr/bin:/bin`,
    BROWSER: context.openUrlCommand,
  };
  const command = `stty cols 120 rows 40; exec ${provider.loginCommand(context).map(quote).join(' ')}`;
  const child = spawn('script', ['-qfec', command, '/dev/null'], { cwd: context.home, env, stdio: ['pipe', 'pipe', 'pipe'] });
  const run: Run = {
    context,
    recorded,
    output: '',
    send: (keys) => child.stdin.write(keys),
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      // The CLI runs in the pty's own session, below `script`: signal the whole tree.
      const tree = [child.pid!, ...descendants(child.pid!)];
      signalAll(tree, 'SIGTERM');
      const timer = setTimeout(() => signalAll([child.pid!, ...descendants(child.pid!), ...tree], 'SIGKILL'), 3_000);
      await exited;
      clearTimeout(timer);
      // The rest of the tree had the SIGTERM too: what has not ended within 200 ms of its parent gets SIGKILL.
      const outlived = await until(
        "the login's processes end on SIGTERM",
        () => tree.filter(isRunning),
        (running) => running.length === 0,
        200,
        { intervalMs: 20 },
      ).catch(() => tree.filter(isRunning));
      signalAll(outlived, 'SIGKILL');
    },
  };
  const append = (chunk: Buffer): void => {
    run.output += chunk.toString('utf8');
  };
  child.stdout.on('data', append);
  child.stderr.on('data', append);
  return run;
}

const ESC = String.fromCharCode(0x1b);
const BEL = String.fromCharCode(0x07);
/** The terminal's text without escape sequences (CSI; OSC, DCS, PM and APC strings; any other escape), as a person would read it. */
const screenText = (raw: string): string =>
  raw
    .replace(new RegExp(`${ESC}\\[[0-9;?]*[ -/]*[@-~]`, 'g'), '')
    .replace(new RegExp(`${ESC}[\\]P^_][^${BEL}${ESC}]*(${BEL}|${ESC}\\\\)`, 'g'), '')
    .replace(new RegExp(`${ESC}.`, 'g'), '');

async function openedUrls(run: Run): Promise<{ opener: string; url: URL }[]> {
  const text = await readFile(run.recorded, 'utf8').catch(() => '');
  return text
    .split('\n')
    .filter((line) => line.includes(' '))
    .flatMap((line) => {
      const [opener, url] = [line.slice(0, line.indexOf(' ')), line.slice(line.indexOf(' ') + 1).trim()];
      try {
        return [{ opener: opener!, url: new URL(url!) }];
      } catch {
        return [];
      }
    });
}

const providersUnderTest: readonly { provider: Provider; keypresses?: readonly { readonly when: string; readonly send: string }[] }[] = [
  { provider: claudeCode },
  { provider: codex },
  { provider: geminiCli, keypresses: geminiCliKeypresses },
];

describe('the pinned CLIs are installed', () => {
  test('clis/node_modules holds each provider package at its pinned version', () => {
    assertClisInstalled();
    const manifest = JSON.parse(readFileSync(join(cliDir, 'package.json'), 'utf8')) as { dependencies: Record<string, string> };
    for (const { provider } of providersUnderTest) {
      const pin = provider.package!;
      assert.equal(manifest.dependencies[pin.name], pin.version, `clis/package.json pins ${pin.name} at ${pin.version}`);
      const installed = JSON.parse(readFileSync(join(cliDir, 'node_modules', pin.name, 'package.json'), 'utf8')) as { version: string };
      assert.equal(installed.version, pin.version, `${pin.name} in clis/node_modules`);
    }
  });
});

for (const { provider, keypresses = [] } of providersUnderTest) {
  test(`${provider.name}: the login opens ${provider.authorizeUrl?.host}${provider.authorizeUrl?.path} in the sandbox's browser`, {
    timeout: loginTimeoutMs + 15_000,
  }, async (t) => {
    assertClisInstalled();
    const expected = provider.authorizeUrl!;
    const run = await startLogin(provider);
    t.after(() => run.stop());
    const pending = [...keypresses];
    const match = await untilDefined(
      `the CLI opens a ${expected.host}${expected.path} URL`,
      async () => {
        const found = (await openedUrls(run)).find(({ url }) => url.host === expected.host && url.pathname === expected.path);
        // Answer the CLI's prompts, each once, when its text is on screen (a person presses Enter).
        const next = pending[0];
        if (!found && next && screenText(run.output).includes(next.when)) {
          // A dialog takes keys once it is drawn: the terminal gets no more output.
          await untilSteady(
            `the CLI has drawn "${next.when}"`,
            () => run.output.length,
            () => true,
            200,
            10_000,
            { intervalMs: 20 },
          );
          run.send(next.send);
          pending.shift();
        }
        return found;
      },
      loginTimeoutMs,
      { intervalMs: 250 },
    ).catch(async (error: Error) => {
      const opened = (await openedUrls(run)).map(({ opener, url }) => `${opener} → ${url.host}${url.pathname}`);
      return assert.fail(`${error.message}; opened: ${JSON.stringify(opened)}; screen:\n${screenText(run.output).slice(-3000)}`);
    });
    t.diagnostic(`opened via ${match.opener}: ${match.url.host}${match.url.pathname}`);
    // A real authorization request: the CLI's loopback redirect and PKCE.
    assert.match(match.url.searchParams.get('redirect_uri') ?? '', /^http:\/\/(127\.0\.0\.1|localhost):\d+\//);
    assert.equal(match.url.searchParams.get('response_type'), 'code');
    if (provider !== geminiCli) assert.equal(match.url.searchParams.get('code_challenge_method'), 'S256');
    // Nothing was signed in, so nothing may look like a credential yet.
    assert.equal(existsSync(join(run.context.credentialDir, provider.credentialFile)), false);
  });
}

// The other half of the contract: a file the validator accepts, at credentialFile in the pinned
// directory, is one the CLI itself reads as signed in (its own offline status command).
const b64 = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url');
const statusChecks: readonly { provider: Provider; file: unknown; argv: (context: ProviderContext) => string[]; signedIn: RegExp }[] = [
  {
    provider: claudeCode,
    file: {
      claudeAiOauth: {
        accessToken: 'sk-ant-oat01-test',
        refreshToken: 'sk-ant-ort01-test',
        expiresAt: 4_102_444_800_000,
        scopes: ['user:inference'],
        subscriptionType: 'pro',
      },
    },
    argv: (context) => [`${context.cliDir}/node_modules/.bin/claude`, 'auth', 'status', '--json'],
    signedIn: /"loggedIn": true/,
  },
  {
    provider: codex,
    file: {
      OPENAI_API_KEY: null,
      tokens: {
        id_token: `${b64({ alg: 'none' })}.${b64({ email: 'ada@example.com', exp: 4_102_444_800, 'https://api.openai.com/auth': { chatgpt_plan_type: 'plus' } })}.sig`,
        access_token: `${b64({ alg: 'none' })}.${b64({ exp: 4_102_444_800 })}.sig`,
        refresh_token: 'rt-test',
        account_id: 'acc-1',
      },
      last_refresh: '2030-01-01T00:00:00Z',
    },
    argv: (context) => ['/usr/bin/node', `${context.cliDir}/node_modules/@openai/codex/bin/codex.js`, 'login', 'status'],
    signedIn: /Logged in using ChatGPT/,
  },
];

for (const { provider, file, argv, signedIn } of statusChecks) {
  test(`${provider.name}: the CLI reads a validated ${provider.credentialFile} from the pinned directory as signed in`, { timeout: 30_000 }, async () => {
    assertClisInstalled();
    const content = JSON.stringify(file);
    assert.equal(provider.validate(content).ok, true);
    const base = join(dir, `${provider.name}-status`);
    const context: ProviderContext = { home: join(base, 'home'), credentialDir: join(base, 'login'), cliDir, openUrlCommand: '/bin/false' };
    await mkdir(context.home, { recursive: true });
    await mkdir(context.credentialDir, { recursive: true });
    for (const [name, setup] of Object.entries(provider.setupFiles(context))) await writeFile(join(context.credentialDir, name), setup);
    await writeFile(join(context.credentialDir, provider.credentialFile), content, { mode: 0o600 });
    const [command, ...args] = argv(context);
    const env = { HOME: context.home, PATH: '/usr/bin:/bin', LANG: 'C.UTF-8', ...provider.env(context) };
    const result = spawnSync(command!, args, { env, cwd: context.home, encoding: 'utf8', timeout: 25_000 });
    assert.match(`${result.stdout}${result.stderr}`, signedIn, `exit ${result.status}: ${result.stdout}${result.stderr}`);
  });
}
