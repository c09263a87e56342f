import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { within } from '../support/faults.js';
import { freeLoopbackPort, startNginx, type TestNginx } from '../support/nginx.js';
import { startTestServer, testConfig, type TestServer } from '../support/server.js';
import { elapse } from '../support/until.js';
import { closeViewer, connectViewer, expectFramebufferUpdate, openViewerSocket, viewerSocketUrl } from '../support/ws.js';

// porthole behind Debian's nginx, configured as docs/reverse-proxy.md says (its map and location
// blocks, verbatim). nginx's proxy_read_timeout (60 s by default) and porthole's ping interval
// (20 s by default) are both scaled down by four, to 15 s and 5 s: the same ratio, one idle period
// a quarter as long. Two servers run side by side so the file takes one idle period, not two:
// - "pinged": pings every 5 s, PORTHOLE_PUBLIC_URL = the nginx address. Its idle viewer (RFB
//   handshake done, then nothing sent) must still be connected at 25 s (10 s past proxy_read_timeout).
// - "unpinged": pings every 120 s, PORTHOLE_ALLOWED_ORIGINS = the nginx address. nginx must cut
//   its idle viewer at ≈ 15 s: the counter-case that shows the pings are what keeps viewers up.

const scale = 4;
const defaultProxyReadTimeoutMs = 60_000; // nginx's
const proxyReadTimeoutMs = defaultProxyReadTimeoutMs / scale;
const pingIntervalMs = testConfig('/nonexistent').pingIntervalMs / scale;
const idleMs = proxyReadTimeoutMs + 10_000;
let pinged: TestServer | undefined;
let unpinged: TestServer | undefined;
let nginx: TestNginx | undefined;
let pingedProxy: string;
let unpingedProxy: string;

before(async () => {
  const [pingedPort, pingedListen, unpingedListen] = [await freeLoopbackPort(), await freeLoopbackPort(), await freeLoopbackPort()];
  pingedProxy = `http://127.0.0.1:${pingedListen}`;
  unpingedProxy = `http://127.0.0.1:${unpingedListen}`;
  // PORTHOLE_PUBLIC_URL makes server.url (and its test API client) the nginx address; porthole's own port is fixed for nginx to reach.
  pinged = await startTestServer('faults-nginx-pinged', {
    PORTHOLE_PORT: String(pingedPort),
    PORTHOLE_PUBLIC_URL: pingedProxy,
    PORTHOLE_PING_INTERVAL_MS: String(pingIntervalMs),
  });
  unpinged = await startTestServer('faults-nginx-unpinged', { PORTHOLE_ALLOWED_ORIGINS: unpingedProxy, PORTHOLE_PING_INTERVAL_MS: '120000' });
  nginx = await startNginx(
    [
      { listenPort: pingedListen, upstreamPort: pingedPort },
      { listenPort: unpingedListen, upstreamPort: Number(new URL(unpinged.server.url).port) },
    ],
    { proxyReadTimeoutS: proxyReadTimeoutMs / 1000 },
  );
});
after(async () => {
  await nginx?.stop();
  await Promise.all([pinged?.stop(), unpinged?.stop()]);
});

test('porthole’s default ping interval is a third of nginx’s default proxy_read_timeout: the ratio the idle test below runs at', () => {
  assert.equal(testConfig('/nonexistent').pingIntervalMs * 3, defaultProxyReadTimeoutMs);
});

test('an idle viewer behind nginx (read timeout and pings scaled by ¼: 15 s, 5 s) stays connected for 25 s with porthole’s pings, and is cut at ≈ 15 s without them', async (tc) => {
  const a = pinged!;
  const b = unpinged!;
  assert.equal(a.server.url, pingedProxy, 'PORTHOLE_PUBLIC_URL is the server’s address');
  const [sessionA, sessionB] = await Promise.all([a.readySession(), b.readySession()]); // a's API calls already go through nginx

  // Viewer URLs handed out through the proxy point at the proxy (PORTHOLE_PUBLIC_URL).
  const ticketA = await a.api.createTicket(sessionA.id);
  assert.ok(ticketA.viewerUrl.startsWith(`${pingedProxy}/v1/sessions/${sessionA.id}/viewer?ticket=`), ticketA.viewerUrl);
  const ticketB = b.server.tickets.issue(sessionB.id).ticket;

  // As a browser on the proxy's pages would: the Origin is the proxy's, passed on by nginx.
  const viewerA = await connectViewer(viewerSocketUrl(pingedProxy, sessionA.id, ticketA.ticket), { origin: pingedProxy });
  const viewerB = await connectViewer(viewerSocketUrl(unpingedProxy, sessionB.id, ticketB), { origin: unpingedProxy });
  const idleFrom = Date.now();
  const pingsA: number[] = [];
  let pingsB = 0;
  viewerA.ws.on('ping', () => pingsA.push(Date.now()));
  viewerB.ws.on('ping', () => pingsB++);

  // Meanwhile, what else passes through the documented config (separate connections; the viewers stay idle).
  const refused = await openViewerSocket(viewerSocketUrl(pingedProxy, sessionA.id, a.server.tickets.issue(sessionA.id).ticket), {
    origin: 'https://evil.example',
  });
  assert.deepEqual(refused, { refused: { status: 403, code: 'ORIGIN_NOT_ALLOWED' } }, 'a refusal keeps its status and code through nginx');
  assert.equal((await fetch(`${pingedProxy}/healthz`)).status, 200);
  assert.equal((await fetch(`${pingedProxy}/metrics`)).status, 404, '/metrics stays off the public side');

  // The unpinged viewer: nginx has read nothing from porthole for proxy_read_timeout, and closes both sides.
  const cut = await within(viewerB.closed, proxyReadTimeoutMs + 20_000, 'nginx cuts the unpinged idle viewer');
  const cutMs = cut.at - idleFrom;
  assert.equal(cut.code, 1006, `no close frame from nginx: ${cut.code} ${cut.reason}`);
  assert.ok(cutMs >= proxyReadTimeoutMs - 2_000 && cutMs <= proxyReadTimeoutMs + 10_000, `cut after ${cutMs} ms`);
  assert.equal(pingsB, 0);
  await b.waitForState(sessionB.id, ['ready'], 5_000); // porthole saw its viewer go
  assert.deepEqual(b.server.relay.stats(), []);
  assert.match(await nginx!.errorLog(), /upstream timed out .* while proxying upgraded connection/);

  await elapse(idleFrom + idleMs - Date.now(), `the pinged viewer stays connected for ${idleMs} ms idle, past proxy_read_timeout`);
  const idleForMs = Date.now() - idleFrom;
  assert.equal(viewerA.ws.readyState, viewerA.ws.OPEN, `the pinged viewer is still connected after ${idleForMs} ms`);
  assert.ok(pingsA.length >= 3, `pings seen: ${pingsA.length}`);
  const gaps = pingsA.map((at, i) => at - (i === 0 ? idleFrom : pingsA[i - 1]!));
  assert.ok(Math.max(...gaps) < proxyReadTimeoutMs, `longest silence ${Math.max(...gaps)} ms`);
  assert.equal(a.server.relay.stats().length, 1);
  assert.equal((await a.api.getSession(sessionA.id)).state, 'authenticating');
  await expectFramebufferUpdate(viewerA); // and it still carries RFB
  tc.diagnostic(
    `behind nginx (proxy_read_timeout ${proxyReadTimeoutMs} ms, pings every ${pingIntervalMs} ms): unpinged idle viewer cut by nginx after ${cutMs} ms (close ${cut.code}); pinged idle viewer still connected after ${idleForMs} ms with ${pingsA.length} pings, longest silence ${Math.max(...gaps)} ms, RFB still flowing`,
  );

  await closeViewer(viewerA);
  await Promise.all([a.api.endSession(sessionA.id), b.api.endSession(sessionB.id)]);
});
