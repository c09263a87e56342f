import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { after, before, test } from 'node:test';
import { BrowserControl } from '../../src/agent/browser-control.js';
import { stopGroup } from '../../src/agent/supervised-process.js';
import { until } from '../support/until.js';

// The agent opens the sign-in URL in the running Chromium over its DevTools pipe: here a real
// (headless) Chromium started as the agent starts the sandbox's, with fds 3 and 4 as the pipe,
// and a page on loopback that counts who asks for it.

let profile: string;
let site: Server;
let siteUrl: string;
const requested: string[] = [];
let chromium: ChildProcess;
const browser = new BrowserControl();

before(async () => {
  profile = await mkdtemp(join(tmpdir(), 'porthole-test-browser-'));
  site = createServer((request, response) => {
    requested.push(request.url ?? '');
    response.writeHead(200, { 'content-type': 'text/html' }).end('<title>sign-in</title><p>sign in');
  });
  await new Promise<void>((resolve) => site.listen(0, '127.0.0.1', resolve));
  siteUrl = `http://127.0.0.1:${(site.address() as AddressInfo).port}`;
  chromium = spawn(
    '/usr/bin/chromium',
    [
      ...['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking'],
      ...['--disable-component-update', '--disable-sync', `--user-data-dir=${profile}`, '--remote-debugging-pipe', 'about:blank'],
    ],
    { stdio: ['ignore', 'ignore', 'ignore', 'pipe', 'pipe'], detached: true },
  );
  const [, , , toChild, fromChild] = chromium.stdio;
  assert.ok(toChild instanceof Writable && fromChild instanceof Readable, 'Chromium has its pipe');
  browser.attach({ toChild, fromChild });
});

after(async () => {
  if (chromium) await stopGroup(chromium, new Promise((resolve) => (chromium.exitCode === null ? chromium.once('exit', resolve) : resolve(null))));
  await new Promise((resolve) => site?.close(resolve));
  await rm(profile, { recursive: true, force: true });
});

test('a URL opens as a new tab of the running Chromium: its page is fetched', async () => {
  assert.equal(browser.isAttached, true);
  await browser.openTab(`${siteUrl}/interaction/abc?x=1`, 15_000);
  await until(
    'the page fetched by Chromium',
    () => requested,
    (r) => r.includes('/interaction/abc?x=1'),
    15_000,
  );
});

test('opens asked at once are each answered (answers are matched by id)', async () => {
  await Promise.all([browser.openTab(`${siteUrl}/one`, 15_000), browser.openTab(`${siteUrl}/two`, 15_000)]);
  await until(
    'both pages fetched',
    () => requested,
    (r) => r.includes('/one') && r.includes('/two'),
    15_000,
  );
});

test('once Chromium is gone, opening fails at once: the agent falls back to starting a second process', async () => {
  await stopGroup(chromium, new Promise((resolve) => chromium.once('exit', resolve)));
  await until(
    'the pipe seen closed',
    () => browser.isAttached,
    (isAttached) => !isAttached,
    10_000,
  );
  await assert.rejects(browser.openTab(`${siteUrl}/late`), /pipe is not open/);
});
