import { after, before, test } from 'node:test';
import { launchBrowser } from '../support/browser.js';
import { demoLoginThroughCanvas } from '../support/demo-login-flow.js';
import { assertRunscInstalled } from '../support/gvisor.js';
import { startTestServer, testOutputDir, type TestServer } from '../support/server.js';

// demo-login.test.ts on the gvisor driver: the same sign-in through the noVNC canvas, with the
// desktop (Xvnc, openbox, xterm, Chromium) and the demo CLI running on gVisor's kernel, ending
// completed, captured, verified and sealed, with nothing of the gVisor sandbox left
// (test/support/demo-login-flow.ts). Screenshots of each step: test-output/e2e-gvisor-demo-login.

let t: TestServer;
let browserHandle: Awaited<ReturnType<typeof launchBrowser>>;
const out = testOutputDir('e2e-gvisor-demo-login');
const account = { email: 'demo@porthole.test', password: 'Demo-Pa55word!#' };

before(async () => {
  await assertRunscInstalled();
  t = await startTestServer('e2e-gvisor-demo-login', {
    PORTHOLE_DRIVER: 'gvisor',
    PORTHOLE_DEMO_EMAIL: account.email,
    PORTHOLE_DEMO_PASSWORD: account.password,
  });
  browserHandle = await launchBrowser();
});
after(async () => {
  await browserHandle?.close();
  await t?.stop();
});

test('gvisor: connect the demo provider and sign in through the canvas: completed, captured, sealed', async (tc) => {
  const timings = await demoLoginThroughCanvas(t, browserHandle.browser, account, out);
  tc.diagnostic(
    `gvisor: viewer connected after ${timings.connectedMs} ms; login page in the canvas after ${timings.loginPageMs} ms; completed after ${timings.completedMs} ms; sandbox gone after ${timings.sandboxGoneMs} ms`,
  );
});
