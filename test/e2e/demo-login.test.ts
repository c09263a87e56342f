import { after, before, test } from 'node:test';
import { launchBrowser } from '../support/browser.js';
import { demoLoginThroughCanvas } from '../support/demo-login-flow.js';
import { startTestServer, testOutputDir, type TestServer } from '../support/server.js';

// The whole purpose, end to end, in a real browser, on the local driver: the demo provider
// connected from the dashboard and signed in to through the noVNC canvas, then completed, captured,
// verified and sealed (the flow and what it checks: test/support/demo-login-flow.ts).

let t: TestServer;
let browserHandle: Awaited<ReturnType<typeof launchBrowser>>;
const out = testOutputDir('e2e-demo-login');
const account = { email: 'demo@porthole.test', password: 'Demo-Pa55word!#' };

before(async () => {
  t = await startTestServer('e2e-demo-login', { PORTHOLE_DEMO_EMAIL: account.email, PORTHOLE_DEMO_PASSWORD: account.password });
  browserHandle = await launchBrowser();
});
after(async () => {
  await browserHandle?.close();
  await t?.stop();
});

test('connect the demo provider and sign in through the canvas: completed, captured, sealed', async (tc) => {
  const timings = await demoLoginThroughCanvas(t, browserHandle.browser, account, out);
  tc.diagnostic(
    `viewer connected after ${timings.connectedMs} ms; login page in the canvas after ${timings.loginPageMs} ms; completed after ${timings.completedMs} ms; sandbox gone after ${timings.sandboxGoneMs} ms`,
  );
});
