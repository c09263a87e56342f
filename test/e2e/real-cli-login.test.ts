import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { after, before, test } from 'node:test';
import type { Page } from 'playwright-core';
import { join } from 'node:path';
import { sandboxesDir } from '../../src/drivers/local-layout.js';
import { readRecord } from '../../src/drivers/local/sandbox-record.js';
import type { SessionId } from '../../src/protocol/ids.js';
import type { ProviderName } from '../../src/protocol/session.js';
import { providers } from '../../src/providers/index.js';
import { launchBrowser } from '../support/browser.js';
import { sandboxProcesses } from '../support/sandbox-processes.js';
import { until, untilDefined, untilSteady } from '../support/until.js';
import { startTestServer, testOutputDir, type TestServer } from '../support/server.js';

// The real CLIs (pinned in clis/, installed by scripts/setup.sh) in a real sandbox: the agent runs
// each one's login in the desktop's terminal with its credential storage pinned to the login's
// directory, and the CLI hands its authorization URL to the sandbox's Chromium through porthole's
// browser wrappers. No internet here (and the test sandboxes' Chromium resolves only loopback), so
// the sign-in itself cannot finish; this proves the CLI, the terminal, the browser hand-off and
// the pinning, with a screenshot of the desktop at that moment.

const cliDir = new URL('../../../clis/node_modules', import.meta.url).pathname;
const out = testOutputDir('e2e-real-cli');
let t: TestServer;
let browserHandle: Awaited<ReturnType<typeof launchBrowser>>;

/** The environment variable that pins each CLI's credential storage. */
const pins: Record<Exclude<ProviderName, 'demo'>, string> = { 'claude-code': 'CLAUDE_CONFIG_DIR', codex: 'CODEX_HOME', 'gemini-cli': 'GEMINI_CLI_HOME' };

before(async () => {
  assert.ok(existsSync(cliDir), `${cliDir} is missing: the real CLIs are installed by scripts/setup.sh (npm ci --prefix clis)`);
  t = await startTestServer('e2e-real-cli');
  browserHandle = await launchBrowser();
});
after(async () => {
  await browserHandle?.close();
  await t?.stop();
});

/** The environment of the sandbox's process whose command line mentions `needle`, with the variable named. */
async function pinOf(sandboxId: string, variable: string): Promise<string[]> {
  const values: string[] = [];
  for (const proc of await sandboxProcesses(sandboxId)) {
    const environ = await readFile(`/proc/${proc.pid}/environ`, 'utf8').catch(() => '');
    const entry = environ.split('\0').find((e) => e.startsWith(`${variable}=`));
    if (entry) values.push(entry.slice(variable.length + 1));
  }
  return values;
}

/**
 * The canvas's top 60 %: the sandbox's Chromium (the top 62 %, src/agent/layout.ts), not the terminal
 * below, where a CLI may animate. A hash of it, and whether both its halves are drawn: a window not
 * yet painted is one flat colour, and so is a page not yet painted below a tab strip that is.
 */
function browserPart(p: Page): Promise<{ hash: number; isDrawn: boolean }> {
  return p.evaluate(() => {
    const canvas = document.querySelector('#screen canvas') as HTMLCanvasElement;
    const half = Math.round(canvas.height * 0.3);
    let hash = 0;
    let isDrawn = true;
    for (const top of [0, half]) {
      const data = canvas.getContext('2d')!.getImageData(0, top, canvas.width, half).data;
      const counts = new Map<number, number>();
      for (let i = 0; i < data.length; i += 4) {
        const colour = (data[i]! << 16) | (data[i + 1]! << 8) | data[i + 2]!;
        counts.set(colour, (counts.get(colour) ?? 0) + 1);
        hash = (hash * 31 + colour) | 0;
      }
      // Flat: 98 % or more of it one colour.
      for (const n of counts.values()) if (n >= 0.98 * (data.length / 4)) isDrawn = false;
    }
    return { hash, isDrawn };
  });
}

for (const name of Object.keys(pins) as Array<keyof typeof pins>) {
  const provider = providers[name];
  test(`${provider.displayName}: its login starts in the sandbox terminal and opens the sandbox’s Chromium on ${provider.authorizeUrl!.host}${provider.authorizeUrl!.path}`, async () => {
    const session = await t.readySession({ provider: name });
    const context = await browserHandle.browser.newContext({ viewport: { width: 1400, height: 960 } });
    const p = await context.newPage();
    const { viewerUrl } = await t.api.createTicket(session.id);
    await p.goto(viewerUrl);
    await p.waitForSelector('body[data-phase=connected]', { timeout: 30_000 });

    // Wait for the hand-off. Gemini CLI asks two questions first (sign in with Google? continue?),
    // both answered with Enter, which a person presses in the terminal: so does this test.
    let lastEnter = Date.now();
    const opened = await untilDefined(
      `${provider.displayName} opens a browser (login.browser_opened)`,
      async () => {
        const { events } = await t.api.listEvents(session.id);
        const found = events.find((e) => e.type === 'login.browser_opened');
        if (!found && name === 'gemini-cli' && Date.now() - lastEnter > 4_000) {
          const canvas = (await p.locator('#screen canvas').boundingBox())!;
          await p.mouse.click(canvas.x + canvas.width * 0.5, canvas.y + canvas.height * 0.85);
          await p.keyboard.press('Enter');
          lastEnter = Date.now();
        }
        return found;
      },
      60_000,
      { intervalMs: 500 },
    ).catch(async (error: Error) =>
      assert.fail(`${error.message}; timeline: ${JSON.stringify((await t.api.listEvents(session.id)).events.map((e) => e.type))}`),
    );
    assert.deepEqual({ host: opened.details.host, path: opened.details.path }, provider.authorizeUrl);

    // The CLI runs with its storage pinned to the login's directory, which the agent watches.
    const pinned = await pinOf(session.sandboxId!, pins[name]);
    assert.ok(pinned.includes(`/home/porthole/.porthole/login/${name}`), `${pins[name]} of the CLI: ${pinned.join(', ') || 'none'}`);
    // ... and with the egress proxy as its proxy: the sandbox has no other way out.
    assert.ok((await pinOf(session.sandboxId!, 'HTTPS_PROXY')).includes('http://127.0.0.1:3128'), 'HTTPS_PROXY of the CLI');

    // The sandbox's Chromium asked the egress proxy for the sign-in host (refused here: the tests
    // resolve no name, PORTHOLE_SANDBOX_LOOPBACK_ONLY), and the refusal is on the timeline.
    const egress = await until(
      `an egress event for ${provider.authorizeUrl!.host}`,
      async () => (await t.api.listEvents(session.id)).events.filter((e) => e.type.startsWith('egress.')),
      (events) => events.some((e) => e.details.host === provider.authorizeUrl!.host),
      20_000,
    );
    const signIn = egress.find((e) => e.details.host === provider.authorizeUrl!.host)!;
    assert.deepEqual([signIn.details.allowed, signIn.details.reason], [false, 'resolve-failed']);
    const health = (await t.api.getSession(session.id)).state;
    assert.ok(health === 'authenticating' || health === 'ready');

    // The new tab has drawn once Chromium's part of the desktop is painted and holds still: while it
    // loads, its throbber turns.
    await untilSteady(
      "the sandbox Chromium's new tab drawn",
      () => browserPart(p),
      (part) => part.isDrawn,
      500,
      15_000,
      { intervalMs: 100, onTimeout: () => p.screenshot({ path: `${out}/${name}-timeout.png` }) },
    );
    await p.screenshot({ path: `${out}/${name}.png` });
    await t.server.sessions.end(session.id as SessionId, 'user');
    await context.close();
  });
}

test('three Codex logins at once: each listens on port 1455 in its own sandbox', async () => {
  // Codex's login server has a fixed port: on a shared network namespace the second login fails
  // and a sandbox could squat it for everyone. Each sandbox's loopback is its own.
  const sessions = await Promise.all([0, 1, 2].map(() => t.readySession({ provider: 'codex' })));
  try {
    for (const session of sessions) {
      const listening = await until(
        `Codex's login server on 1455 in ${session.sandboxId}`,
        async () => {
          // The agent's view: the sandbox's own network namespace (bwrap's outer process is in the host's).
          const record = await readRecord(join(sandboxesDir(t.dataDir), session.sandboxId!));
          const tcp = record?.agent ? await readFile(`/proc/${record.agent.pid}/net/tcp`, 'utf8').catch(() => '') : '';
          // local_address 0100007F:05AF (127.0.0.1:1455), state 0A (LISTEN)
          return tcp.split('\n').some((line) => /^\s*\d+: 0100007F:05AF 00000000:0000 0A /.test(line));
        },
        (isListening) => isListening,
        60_000,
      );
      assert.equal(listening, true);
    }
    for (const session of sessions) {
      const { events } = await t.api.listEvents(session.id);
      assert.ok(!events.some((e) => e.type === 'login.exited' || e.type === 'login.failed'), `${session.id}: ${JSON.stringify(events.map((e) => e.type))}`);
    }
  } finally {
    for (const session of sessions) await t.server.sessions.end(session.id as SessionId, 'user');
  }
});
