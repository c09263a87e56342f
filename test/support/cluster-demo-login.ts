import assert from 'node:assert/strict';
import type { Browser, Page } from 'playwright-core';
import type { Session } from '../../src/protocol/session.js';
import { defaultDemoAccount } from '../../src/providers/demo.js';
import { buttonBox, canvasToPage, centreOf, fieldsAbove, isPastSignIn } from './canvas-sign-in.js';
import type { ClusterMember, TestCluster } from './cluster.js';
import { elapse, until } from './until.js';

// The demo sign-in through the canvas (test/support/demo-login-flow.ts's steps) on the test
// cluster: the browser logs in to the dashboard through one server's haproxy frontend, which opens
// the viewer at PORTHOLE_PUBLIC_URL (haproxy's balanced frontend: either server); the session's
// desktop runs on a node, reached through the edge relay; the demo CLI and the sandbox's Chromium reach the cluster's one
// issuer through the node's egress proxy (test/support/cluster-sidecar.ts).

export interface ClusterDemoLogin {
  readonly session: Session;
  /** From pressing "Connect provider" to the page saying "Connected". */
  readonly completedMs: number;
}

/** Opens the dashboard through `server`'s haproxy frontend with a login link of its own; the page stays logged in. */
export async function dashboardVia(cluster: TestCluster, server: ClusterMember, browser: Browser): Promise<Page> {
  const base = server.proxyUrl!;
  const context = await browser.newContext({ viewport: { width: 1400, height: 960 } });
  // The dashboard opens viewers at PORTHOLE_PUBLIC_URL (haproxy's balanced frontend): the page may paste there too.
  for (const origin of [base, cluster.url]) await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin });
  const page = await context.newPage();
  const link = await cluster.apiVia(server).createLoginLink();
  // Links carry PORTHOLE_PUBLIC_URL (the balanced frontend): opened at this server's own frontend instead.
  await page.goto(link.url.replace(cluster.url, base));
  return page;
}

export async function demoLoginThroughClusterCanvas(cluster: TestCluster, server: ClusterMember, browser: Browser, out: string): Promise<ClusterDemoLogin> {
  const { email, password } = defaultDemoAccount;
  const p = await dashboardVia(cluster, server, browser);
  try {
    assert.equal(await p.inputValue('#new-provider'), 'demo', 'the demo provider is offered first');
    const startedAt = Date.now();
    await p.click('#new-session');
    await p.waitForURL(/\/v1\/sessions\/ses_[0-9a-z]+\/viewer/, { timeout: 15_000 });
    await p.waitForSelector('body[data-phase=connected]', { timeout: 90_000 });
    const sessionId = await p.evaluate(() => (window as any).porthole.sessionId as string);

    const signIn = await until(
      'the login page in the canvas',
      () => buttonBox(p),
      (box) => box !== null,
      60_000,
      {
        onTimeout: () => p.screenshot({ path: `${out}/1-no-login-page.png` }),
      },
    );
    await p.screenshot({ path: `${out}/1-login-page.png` });
    const toPage = await canvasToPage(p);
    const [passwordField, emailField] = await fieldsAbove(p, signIn!);
    assert.ok(passwordField && emailField, 'found the e-mail and password fields above the button');
    let at = toPage(emailField);
    await p.mouse.click(at.x, at.y);
    await p.keyboard.press('Control+A');
    await p.keyboard.type(email, { delay: 30 });
    await elapse(1_000, 'the sandbox’s Chromium takes every key before the focus moves');
    at = toPage(passwordField);
    await p.mouse.click(at.x, at.y);
    await p.evaluate((text) => navigator.clipboard.writeText(text), password);
    await p.click('#paste');
    await p.waitForSelector(`#status:has-text("Typed ${password.length}")`, { timeout: 10_000 }).catch(async (error: unknown) => {
      await p.screenshot({ path: `${out}/2-not-typed.png` });
      throw new Error(`${(error as Error).message}; the status line: ${await p.textContent('#status')}`, { cause: error });
    });
    await elapse(1_000, 'the sandbox’s Chromium takes the typed keys');
    at = toPage(centreOf(signIn!));
    await p.mouse.click(at.x, at.y);
    const allow = await until('the consent page in the canvas', () => buttonBox(p), isPastSignIn(signIn!), 30_000).catch(async (error: unknown) => {
      await p.screenshot({ path: `${out}/3-no-consent.png` });
      throw error;
    });
    at = toPage(centreOf(allow!));
    await p.mouse.click(at.x, at.y);

    await p.waitForSelector('body[data-phase=completed]', { timeout: 60_000 }).catch(async (error: unknown) => {
      await p.screenshot({ path: `${out}/4-not-completed.png` });
      throw error;
    });
    const completedMs = Date.now() - startedAt;
    await p.screenshot({ path: `${out}/4-connected.png` });
    assert.equal(await p.evaluate(() => document.body.dataset.closeCode), '1000');
    assert.equal(await p.textContent('#status'), `Connected to porthole demo as ${email}. You can close this page.`);
    const session = await cluster.api.getSession(sessionId);
    assert.equal(session.state, 'completed');
    assert.equal(session.credential?.account, email);
    assert.equal(session.credential?.verification, 'verified', 'the node asked the cluster’s demo issuer, which named the account');
    return { session, completedMs };
  } finally {
    await p.context().close();
  }
}
