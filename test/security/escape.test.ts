import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile, readlink } from 'node:fs/promises';
import { connect, createServer, type Server } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { newSessionId } from '../../src/protocol/ids.js';
import type { Session } from '../../src/protocol/session.js';
import { startInternetSite, type InternetSite } from '../support/internet-site.js';
import { nodeInSandbox, processesOfUid, sandboxTarget, spawnInSandbox, type InSandbox, type SandboxTarget } from '../support/sandbox-shell.js';
import { startTestServer, testSandboxUids, type TestServer } from '../support/server.js';
import { until } from '../support/until.js';

// Escape attempts from inside a real sandbox, made as the person at its desktop would make them
// from its terminal: a process of the sandbox's user (test/support/sandbox-shell.ts). On the local
// driver that is uid 1000 inside, its own host uid outside, in the sandbox's namespaces (nsenter);
// on the gvisor driver it is the sandbox's uid, started by gVisor inside (runsc exec). The same
// attempts run against a server of each driver. Each attempt on the sandbox's own network fails
// there and then (its loopback is its own, it has no route); each attempt through porthole's
// egress proxy (127.0.0.1:3128 inside) is refused by the proxy's decision — a 403 with the reason —
// and recorded on the session's timeline. The one loopback destination that passes is porthole's
// demo issuer. A site on a network namespace of this test's own (203.0.113.2) is reached only
// through the proxy and only when PORTHOLE_EGRESS_ALLOW lists it: that is the proxy's policy,
// which is the same whatever runs the sandbox, so it is tried from local sandboxes only.
// No packet leaves this machine: the addresses beyond it are refused before any connection.

/**
 * Run by node inside the sandbox: `ops` (JSON in argv[1]) one after the other, one result each,
 * printed as one JSON line.
 *   tcp       connect to host:port: 'connected' or the errno, and how long it took
 *   unix      the same for a unix socket path (a leading NUL: an abstract socket)
 *   proxy     send `head` to the egress proxy (127.0.0.1:3128), or to the unix socket `socketPath`;
 *             on a CONNECT's 200, send `tunnel` through the tunnel; status, headers and every byte
 *             after the head until the end
 *   bind      listen on host:port: 'bound' or the errno
 *   listening the TCP sockets in LISTEN state that /proc/net/tcp and tcp6 show, as ports
 *   exec      run argv: status, signal, stdout, stderr
 *   whoami    uid, gid, network namespace, interfaces, effective capabilities
 */
const probeKit = String.raw`
const net = require('node:net');
const fs = require('node:fs');
const os = require('node:os');
const { spawnSync } = require('node:child_process');

function tcp(options) {
  return new Promise((resolve) => {
    const started = Date.now();
    const socket = net.connect(options);
    const done = (outcome) => {
      clearTimeout(timer);
      socket.destroy();
      resolve({ outcome, ms: Date.now() - started });
    };
    const timer = setTimeout(() => done('no answer within 5 s'), 5000);
    socket.once('connect', () => done('connected'));
    socket.once('error', (e) => done(e.code || e.message));
  });
}

function proxy(head, tunnel, socketPath) {
  return new Promise((resolve) => {
    const socket = net.connect(socketPath ? { path: socketPath } : { host: '127.0.0.1', port: 3128 });
    let data = Buffer.alloc(0);
    let response = null;
    let isDone = false;
    const finish = (error) => {
      if (isDone) return;
      isDone = true;
      clearTimeout(timer);
      socket.destroy();
      if (!response) return resolve({ status: 0, headers: {}, body: data.toString('latin1'), error: error || 'connection ended without a response' });
      resolve({ ...response, body: data.subarray(response.headLength).toString('latin1'), error });
    };
    const timer = setTimeout(() => finish('no end within 15 s'), 15000);
    socket.on('data', (chunk) => {
      data = Buffer.concat([data, chunk]);
      if (response) return;
      const end = data.indexOf('\r\n\r\n');
      if (end < 0) return;
      const [statusLine, ...lines] = data.subarray(0, end).toString('latin1').split('\r\n');
      const headers = {};
      for (const line of lines) {
        const colon = line.indexOf(':');
        if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
      }
      response = { status: Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine)?.[1] ?? 0), headers, headLength: end + 4 };
      if (head.startsWith('CONNECT ') && response.status === 200) {
        if (tunnel) socket.write(tunnel);
        else finish(null);
      }
    });
    socket.on('end', () => finish(null));
    socket.on('close', () => finish(null));
    socket.on('error', (e) => finish(e.code || e.message));
    socket.write(head);
  });
}

function bind(host, port) {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', (e) => resolve(e.code || e.message));
    server.listen(port, host, () => server.close(() => resolve('bound')));
  });
}

function listening() {
  const ports = [];
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    const lines = fs.readFileSync(file, 'utf8').trim().split('\n').slice(1);
    for (const line of lines) {
      const fields = line.trim().split(/\s+/);
      if (fields[3] === '0A') ports.push(parseInt(fields[1].split(':')[1], 16));
    }
  }
  return ports;
}

const run = {
  tcp: (op) => tcp({ host: op.host, port: op.port }),
  unix: (op) => tcp({ path: op.path }),
  proxy: (op) => proxy(op.head, op.tunnel, op.socketPath),
  bind: (op) => bind(op.host, op.port),
  listening: () => listening(),
  exec: (op) => {
    const r = spawnSync(op.argv[0], op.argv.slice(1), { encoding: 'utf8', timeout: 20000 });
    return { status: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr, error: r.error ? r.error.code || r.error.message : null };
  },
  whoami: () => ({
    uid: process.getuid(),
    gid: process.getgid(),
    pid: process.pid,
    netns: fs.readlinkSync('/proc/self/ns/net'),
    interfaces: Object.keys(os.networkInterfaces()),
    capEff: /CapEff:\s*(\S+)/.exec(fs.readFileSync('/proc/self/status', 'utf8'))[1],
  }),
};

(async () => {
  const results = [];
  for (const op of JSON.parse(process.argv[1])) results.push(await run[op.op](op));
  console.log(JSON.stringify(results));
})();
`;

type Op =
  | { op: 'tcp'; host: string; port: number }
  | { op: 'unix'; path: string }
  | { op: 'proxy'; head: string; tunnel?: string; socketPath?: string }
  | { op: 'bind'; host: string; port: number }
  | { op: 'listening' }
  | { op: 'exec'; argv: string[] }
  | { op: 'whoami' };

interface TcpResult {
  outcome: string;
  ms: number;
}
interface ProxyResult {
  status: number;
  headers: Record<string, string>;
  body: string;
  error: string | null;
}
interface ExecResult {
  status: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
  error: string | null;
}
interface WhoAmI {
  uid: number;
  gid: number;
  pid: number;
  netns: string;
  interfaces: string[];
  capEff: string;
}

function probe<T extends unknown[]>(target: SandboxTarget, ops: Op[]): Promise<T> {
  return nodeInSandbox<T>(target, probeKit, ops, { timeoutMs: 60_000 });
}

const connectHead = (host: string, port: number) => `CONNECT ${host}:${port} HTTP/1.1\r\nHost: ${host}:${port}\r\n\r\n`;
const getHead = (url: string) => `GET ${url} HTTP/1.1\r\nHost: ${new URL(url).host}\r\nConnection: close\r\n\r\n`;
const tunnelGet = (path: string, host: string) => `GET ${path} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`;

/** The seq of a session's last timeline event: events of what follows come after it. */
async function lastSeq(t: TestServer, sessionId: string): Promise<number> {
  return (await t.api.listEvents(sessionId)).events.at(-1)?.seq ?? 0;
}

/** The details of the `type` event for host:port on the session's timeline after `afterSeq`, once it is there. */
async function egressEvent(
  t: TestServer,
  sessionId: string,
  afterSeq: number,
  type: 'egress.connect' | 'egress.request',
  host: string,
  port: number,
): Promise<Record<string, unknown>> {
  const found = await until(
    `a ${type} event for ${host}:${port} on the timeline of ${sessionId}`,
    async () => (await t.api.listEvents(sessionId, afterSeq)).events.find((e) => e.type === type && e.details.host === host && e.details.port === port) ?? null,
    (event) => event !== null,
    10_000,
  );
  return found!.details;
}

/** An HTTP-less TCP listener on the host's 127.0.0.1 that counts who connects. */
async function hostListener(): Promise<{ port: number; connections: () => number; close(): Promise<void> }> {
  let connections = 0;
  const server: Server = createServer((socket) => {
    connections++;
    socket.destroy();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as { port: number }).port,
    connections: () => connections,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

const portOf = (url: string) => Number(new URL(url).port);

/** A test server of one driver and sandbox A: one of its sessions' desktop. */
interface Escape {
  readonly t: TestServer;
  readonly sessionA: Session;
  readonly a: SandboxTarget;
}

// ---- An "internet" site: 203.0.113.2 in a network namespace of this test's own ----

/** The site serves one body, which names it: what comes back through the proxy is this site's. */
async function startEscapeSite(): Promise<InternetSite & { body: string }> {
  const body = `hello from the internet site ${randomBytes(3).toString('hex')}`;
  const script = `require('node:http').createServer((q, s) => { s.setHeader('Connection', 'close'); s.end(process.argv[1]); }).listen(8080, '203.0.113.2', () => console.log('listening'));`;
  return { ...(await startInternetSite('net', script, [body])), body };
}

/** The attempts on the internet site, with `defaultPolicy` the escape attempts' server (default egress policy) and its sandbox A. */
function internetSiteAttempts(defaultPolicy: () => Escape): void {
  describe('an internet site (203.0.113.2, in a network namespace)', () => {
    let site: InternetSite & { body: string };
    let allowing: TestServer;
    let session: Session;
    let inAllowing: SandboxTarget;

    before(async () => {
      site = await startEscapeSite();
      allowing = await startTestServer('security-escape-allow', { PORTHOLE_EGRESS_ALLOW: '203.0.113.0/24' });
      session = await allowing.readySession();
      inAllowing = await sandboxTarget(allowing.dataDir, session.sandboxId!);
    });
    after(async () => {
      await allowing?.stop();
      await site?.close();
    });

    test('control: the host reaches the site', async () => {
      const response = await fetch(`http://${site.address}:${site.port}/`);
      assert.equal(response.status, 200);
      assert.equal(await response.text(), site.body);
    });

    test('with PORTHOLE_EGRESS_ALLOW=203.0.113.0/24 a sandbox reaches it through the proxy (GET and CONNECT), each on the timeline with its bytes; never directly', async () => {
      const mark = await lastSeq(allowing, session.id);
      const authority = `${site.address}:${site.port}`;
      const [direct, viaGet, viaConnect] = await probe<[TcpResult, ProxyResult, ProxyResult]>(inAllowing, [
        { op: 'tcp', host: site.address, port: site.port },
        { op: 'proxy', head: getHead(`http://${authority}/`) },
        { op: 'proxy', head: connectHead(site.address, site.port), tunnel: tunnelGet('/', authority) },
      ]);
      assert.equal(direct.outcome, 'ENETUNREACH', 'no route from the sandbox itself');
      assert.equal(viaGet.status, 200, JSON.stringify(viaGet));
      assert.equal(viaGet.body, site.body);
      assert.equal(viaConnect.status, 200, JSON.stringify(viaConnect));
      assert.match(viaConnect.body, /^HTTP\/1\.1 200 /);
      assert.ok(viaConnect.body.endsWith(site.body), viaConnect.body);
      for (const type of ['egress.request', 'egress.connect'] as const) {
        const event = await egressEvent(allowing, session.id, mark, type, site.address, site.port);
        assert.equal(event.allowed, true, `${type}: ${JSON.stringify(event)}`);
        assert.equal(event.address, site.address);
        assert.equal(event.reason, undefined);
        assert.ok(Number(event.bytesDown) > 0, `${type} counts the bytes that came back: ${JSON.stringify(event)}`);
      }
    });

    test('without the allow entry (the default policy) the same site is refused: 403 reserved, on the timeline', async () => {
      const { t, sessionA, a } = defaultPolicy();
      const mark = await lastSeq(t, sessionA.id);
      const authority = `${site.address}:${site.port}`;
      const [direct, viaGet, viaConnect] = await probe<[TcpResult, ProxyResult, ProxyResult]>(a, [
        { op: 'tcp', host: site.address, port: site.port },
        { op: 'proxy', head: getHead(`http://${authority}/`) },
        { op: 'proxy', head: connectHead(site.address, site.port), tunnel: tunnelGet('/', authority) },
      ]);
      assert.equal(direct.outcome, 'ENETUNREACH');
      for (const [answer, type] of [
        [viaGet, 'egress.request'],
        [viaConnect, 'egress.connect'],
      ] as const) {
        assert.equal(answer.status, 403, JSON.stringify(answer));
        assert.equal(answer.headers['x-porthole-egress'], 'refused; reason=reserved');
        assert.ok(!answer.body.includes(site.body), 'nothing of the site came back');
        const event = await egressEvent(t, sessionA.id, mark, type, site.address, site.port);
        assert.deepEqual([event.allowed, event.reason, event.bytesDown], [false, 'reserved', 0]);
      }
    });
  });
}

/** The gvisor test server, with the server's default limits (the driver scales the pids limit to gVisor's host tasks). */
const gvisorServerEnv = { PORTHOLE_DRIVER: 'gvisor' };

// The same attempts on each driver: a local sandbox (bubblewrap's namespaces on the host's kernel)
// and a gVisor sandbox (its own user-space kernel and network stack). What only one of them has
// is said where the test differs.
for (const driver of ['local', 'gvisor'] as const) {
  describe(`from inside sandbox A on the ${driver} driver, as its user`, () => {
    let t: TestServer;
    let sessionA: Session;
    let a: SandboxTarget;

    before(async () => {
      t = await startTestServer(`security-escape-${driver}`, driver === 'gvisor' ? gvisorServerEnv : {});
      sessionA = await t.readySession();
      a = await sandboxTarget(t.dataDir, sessionA.sandboxId!);
      assert.equal(a.driver, driver, `sandbox.json of ${sessionA.sandboxId} is the ${driver} driver's`);
    });
    after(() => t?.stop());

    const whoamiTitle =
      driver === 'local'
        ? 'the probe runs as the sandbox user: uid 1000 inside, the sandbox’s uid on the host, no capabilities, a network namespace with only loopback'
        : 'the probe runs as the sandbox user: the sandbox’s uid inside gVisor too, no capabilities, only loopback; no host process has that uid';
    test(whoamiTitle, async () => {
      const [me] = await probe<[WhoAmI]>(a, [{ op: 'whoami' }]);
      assert.equal(me.uid, a.insideUid);
      assert.equal(me.gid, a.insideUid);
      assert.equal(me.capEff, '0000000000000000');
      assert.deepEqual(me.interfaces, ['lo']);
      const [firstUid, lastUid] = testSandboxUids.split('-').map(Number) as [number, number];
      assert.ok(a.uid >= firstUid && a.uid <= lastUid, `the sandbox has a test uid of its own (${testSandboxUids}): ${a.uid}`);
      if (a.driver === 'local') {
        assert.equal(me.uid, 1000, 'uid 1000 in its user namespace');
        assert.notEqual(me.netns, await readlink('/proc/self/ns/net'), 'not the host’s network namespace');
        assert.equal(me.netns, await readlink(`/proc/${a.agentPid}/ns/net`), 'the agent’s network namespace');
      } else {
        // gVisor's namespaces are its own, not the host's, so there is nothing on the host to
        // compare them with. What shows instead: the desktop, the agent and this probe all run as
        // the sandbox's uid inside, and none of them is a host process.
        assert.equal(me.uid, a.uid, 'the same uid inside gVisor as on the host');
        assert.deepEqual(await processesOfUid(a.uid), [], `no host process runs as ${a.uid}: the Sentry runs the sandbox's processes`);
      }
    });

    test('porthole’s own port on 127.0.0.1: refused on the sandbox’s loopback; through the proxy 403 loopback, on the timeline', async () => {
      const port = portOf(t.server.url);
      const mark = await lastSeq(t, sessionA.id);
      const [direct, viaConnect, viaGet] = await probe<[TcpResult, ProxyResult, ProxyResult]>(a, [
        { op: 'tcp', host: '127.0.0.1', port },
        { op: 'proxy', head: connectHead('127.0.0.1', port) },
        { op: 'proxy', head: getHead(`http://127.0.0.1:${port}/v1/sessions`) },
      ]);
      assert.equal(direct.outcome, 'ECONNREFUSED', 'the sandbox’s own loopback has nothing on that port');
      assert.equal(viaConnect.status, 403, JSON.stringify(viaConnect));
      assert.equal(viaConnect.headers['x-porthole-egress'], 'refused; reason=loopback');
      assert.equal(viaGet.status, 403, JSON.stringify(viaGet));
      assert.equal(viaGet.headers['x-porthole-egress'], 'refused; reason=loopback');
      const connectEvent = await egressEvent(t, sessionA.id, mark, 'egress.connect', '127.0.0.1', port);
      assert.deepEqual([connectEvent.allowed, connectEvent.reason, connectEvent.bytesUp, connectEvent.bytesDown], [false, 'loopback', 0, 0]);
      const getEvent = await egressEvent(t, sessionA.id, mark, 'egress.request', '127.0.0.1', port);
      assert.deepEqual([getEvent.allowed, getEvent.reason], [false, 'loopback']);
    });

    test('host services on 127.0.0.1 (porthole, another listener): none reachable; the demo issuer only through the proxy (the agent’s tunnel serves its port inside)', async () => {
      const other = await hostListener();
      try {
        const issuer = new URL(t.server.demoOidc?.issuer ?? assert.fail('the test server runs the demo issuer'));
        const issuerPort = Number(issuer.port);
        const serverPort = portOf(t.server.url);
        const mark = await lastSeq(t, sessionA.id);
        const [toServer, toIssuer, toOther, proxiedServer, proxiedIssuer, proxiedOther] = await probe<
          [TcpResult, TcpResult, TcpResult, ProxyResult, ProxyResult, ProxyResult]
        >(a, [
          { op: 'tcp', host: '127.0.0.1', port: serverPort },
          { op: 'tcp', host: '127.0.0.1', port: issuerPort },
          { op: 'tcp', host: '127.0.0.1', port: other.port },
          { op: 'proxy', head: connectHead('127.0.0.1', serverPort) },
          {
            op: 'proxy',
            head: connectHead('127.0.0.1', issuerPort),
            tunnel: tunnelGet(`${issuer.pathname.replace(/\/$/, '')}/.well-known/openid-configuration`, issuer.host),
          },
          { op: 'proxy', head: connectHead('127.0.0.1', other.port) },
        ]);
        assert.deepEqual([toServer.outcome, toOther.outcome], ['ECONNREFUSED', 'ECONNREFUSED'], 'the host’s loopback is not the sandbox’s');
        // The issuer's port inside is the agent's tunnel: a CONNECT through the egress proxy, recorded below.
        assert.equal(toIssuer.outcome, 'connected', 'the demo issuer is tunnelled to the same address inside');
        assert.equal(proxiedServer.status, 403);
        assert.equal(proxiedServer.headers['x-porthole-egress'], 'refused; reason=loopback');
        assert.equal(proxiedOther.status, 403);
        assert.equal(proxiedOther.headers['x-porthole-egress'], 'refused; reason=loopback');
        assert.equal(other.connections(), 0, 'the other listener saw no connection');
        assert.equal(proxiedIssuer.status, 200, JSON.stringify(proxiedIssuer));
        assert.match(proxiedIssuer.body, /^HTTP\/1\.1 200 /, 'the tunnel reaches the issuer');
        assert.ok(proxiedIssuer.body.includes(`"issuer":"${issuer.href.replace(/\/$/, '')}`), proxiedIssuer.body.slice(0, 400));

        for (const [port, allowed] of [
          [serverPort, false],
          [other.port, false],
          [issuerPort, true],
        ] as const) {
          const event = await egressEvent(t, sessionA.id, mark, 'egress.connect', '127.0.0.1', port);
          assert.equal(event.allowed, allowed, `127.0.0.1:${port}: ${JSON.stringify(event)}`);
          if (!allowed) assert.equal(event.reason, 'loopback');
        }
        // The issuer's connections: the tunnel's (opened and closed by the direct probe) and the proxied one, which read the discovery document.
        const issuerEvents = await until(
          'the proxied connection to the issuer, with bytes back, on the timeline',
          async () => (await t.api.listEvents(sessionA.id, mark)).events.filter((e) => e.type === 'egress.connect' && e.details.port === issuerPort),
          (events) => events.some((e) => Number(e.details.bytesDown) > 0),
          10_000,
        );
        assert.ok(
          issuerEvents.every((e) => e.details.allowed === true),
          JSON.stringify(issuerEvents.map((e) => e.details)),
        );
      } finally {
        await other.close();
      }
    });

    // No route, at once, whichever kernel: Linux finds no route to the network (ENETUNREACH);
    // gVisor's network stack, whose one interface is its loopback, finds no route to the host.
    const noRoute = driver === 'local' ? 'ENETUNREACH' : 'EHOSTUNREACH';
    test(`metadata and private addresses: no route at all (${noRoute} at once); through the proxy 403 link-local / private, on the timeline`, async () => {
      const targets = [
        ['169.254.169.254', 'link-local'],
        ['10.0.0.1', 'private'],
        ['192.168.1.1', 'private'],
      ] as const;
      const mark = await lastSeq(t, sessionA.id);
      const results = await probe<Array<TcpResult | ProxyResult>>(
        a,
        targets.flatMap(([host]) => [
          { op: 'tcp', host, port: 80 } as const,
          { op: 'proxy', head: connectHead(host, 80) } as const,
          { op: 'proxy', head: getHead(`http://${host}/latest/meta-data/`) } as const,
        ]),
      );
      for (const [i, [host, reason]] of targets.entries()) {
        const direct = results[i * 3] as TcpResult;
        const viaConnect = results[i * 3 + 1] as ProxyResult;
        const viaGet = results[i * 3 + 2] as ProxyResult;
        // The errno itself says no packet was sent: connect() found no route. A timeout would be a different errno.
        assert.equal(direct.outcome, noRoute, `${host}: ${JSON.stringify(direct)}`);
        assert.ok(direct.ms < 1_000, `${host}: failed after ${direct.ms} ms`);
        assert.equal(viaConnect.status, 403, `${host}: ${JSON.stringify(viaConnect)}`);
        assert.equal(viaConnect.headers['x-porthole-egress'], `refused; reason=${reason}`);
        assert.equal(viaGet.status, 403, `${host}: ${JSON.stringify(viaGet)}`);
        assert.equal(viaGet.headers['x-porthole-egress'], `refused; reason=${reason}`);
        for (const type of ['egress.connect', 'egress.request'] as const) {
          const event = await egressEvent(t, sessionA.id, mark, type, host, 80);
          assert.deepEqual([event.allowed, event.reason, event.address], [false, reason, host], `${type} ${host}`);
        }
      }
    });

    test('another sandbox’s listener: A cannot reach it, cannot see it in /proc/net/tcp, and binds the same port itself', async () => {
      const port = 45123;
      const sessionB = await t.readySession();
      const b = await sandboxTarget(t.dataDir, sessionB.sandboxId!);
      assert.notEqual(b.uid, a.uid, 'each sandbox has a host uid of its own');
      let listener: InSandbox | undefined;
      try {
        listener = spawnInSandbox(b, [
          '/usr/bin/node',
          '-e',
          `const s = require('node:net').createServer((c) => c.end('hello from B\\n')); s.listen(${port}, '127.0.0.1', () => console.log('listening')); process.stdin.on('end', () => process.exit(0)); process.stdin.resume();`,
        ]);
        await listener.waitForOutput(/listening/);
        // Control: from inside B the listener is there.
        const [fromB, seenInB] = await probe<[TcpResult, number[]]>(b, [{ op: 'tcp', host: '127.0.0.1', port }, { op: 'listening' }]);
        assert.equal(fromB.outcome, 'connected', 'B reaches its own listener');
        assert.ok(seenInB.includes(port), `B's /proc/net/tcp lists ${port}: ${seenInB.join(', ')}`);

        const [fromA, seenInA, bindInA] = await probe<[TcpResult, number[], string]>(a, [
          { op: 'tcp', host: '127.0.0.1', port },
          { op: 'listening' },
          { op: 'bind', host: '127.0.0.1', port },
        ]);
        assert.equal(fromA.outcome, 'ECONNREFUSED', 'A’s loopback is its own');
        assert.ok(!seenInA.includes(port), `A's /proc/net/tcp does not list ${port}: ${seenInA.join(', ')}`);
        assert.equal(bindInA, 'bound', 'A binds the port B listens on: a callback port cannot be squatted across sandboxes');
      } finally {
        if (listener) {
          listener.child.stdin!.end();
          await listener.finished;
        }
        await t.api.endSession(sessionB.id);
      }
    });

    test('/proc/net/tcp in A lists none of the host’s listeners', async () => {
      const hostListening = async () => {
        const ports = new Set<number>();
        for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
          for (const line of (await readFile(file, 'utf8')).trim().split('\n').slice(1)) {
            const fields = line.trim().split(/\s+/);
            if (fields[3] === '0A') ports.add(parseInt(fields[1]!.split(':')[1]!, 16));
          }
        }
        return ports;
      };
      const onHost = await hostListening();
      const serverPort = portOf(t.server.url);
      const issuerPort = portOf(t.server.demoOidc!.issuer);
      // Control: the host's own table does list them.
      assert.ok(onHost.has(serverPort) && onHost.has(issuerPort), `the host's /proc/net/tcp lists ${serverPort} and ${issuerPort}`);
      const [inA] = await probe<[number[]]>(a, [{ op: 'listening' }]);
      // What A lists is its own: the agent's egress forwarder on 3128, its tunnel to the demo issuer
      // (same port as on the host, by design: see the test above), and whatever its desktop opened.
      assert.ok(inA.includes(3128), `A lists its own proxy port 3128: ${inA.join(', ')}`);
      assert.ok(inA.includes(issuerPort), `A lists its tunnel to the demo issuer on ${issuerPort}: ${inA.join(', ')}`);
      assert.ok(!inA.includes(serverPort), `A does not list porthole's port ${serverPort}: ${inA.join(', ')}`);
    });

    test('abstract unix sockets belong to the network namespace: the host’s is not reachable from A', async () => {
      // Abstract sockets have no file, so no mount namespace hides them; only the network namespace does.
      const name = `\0porthole-test-abstract-${randomBytes(4).toString('hex')}`;
      let connections = 0;
      const server = createServer((socket) => {
        connections++;
        socket.destroy();
      });
      await new Promise<void>((resolve) => server.listen(name, resolve));
      try {
        // Control: on the host it answers.
        await new Promise<void>((resolve, reject) => {
          const socket = connect(name, () => {
            socket.destroy();
            resolve();
          });
          socket.once('error', reject);
        });
        await until(
          'the host’s own connection arrived',
          () => connections,
          (n) => n === 1,
          5_000,
          { intervalMs: 20 },
        );
        const [fromA] = await probe<[TcpResult]>(a, [{ op: 'unix', path: name }]);
        assert.equal(fromA.outcome, 'ECONNREFUSED', 'the host’s abstract socket does not exist in the sandbox’s network namespace');
        assert.equal(connections, 1, 'nothing from the sandbox arrived');
      } finally {
        await new Promise<void>((resolve) => server.close(() => resolve()));
      }
    });

    test('the agent channel (/run/porthole-host/server.sock) answers only this session’s agent routes, and its directory is read-only', async () => {
      const channel = '/run/porthole-host/server.sock';
      const own = `/v1/agent/sessions/${sessionA.id}`;
      const post = (target: string, body = '{}') =>
        `POST ${target} HTTP/1.1\r\nHost: porthole\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`;
      const get = (target: string) => `GET ${target} HTTP/1.1\r\nHost: porthole\r\nConnection: close\r\n\r\n`;
      const refused: Array<[what: string, head: string]> = [
        ['the API', get('/v1/sessions')],
        ['creating a session', post('/v1/sessions')],
        ['metrics', get('/metrics')],
        ['the dashboard', get('/')],
        ['a GET of its own agent route', get(`${own}/events`)],
        ['another session’s agent route', post(`/v1/agent/sessions/${newSessionId()}/events`)],
        ['a path climbing out of its prefix', post(`${own}/../../sessions`)],
        ['the same, percent-encoded', post(`${own}/%2e%2e/%2e%2e/%2e%2e/sessions`)],
        ['an absolute-form target', post(`http://127.0.0.1${own}/events`)],
      ];
      const results = await probe<ProxyResult[]>(a, [
        // Control: its own route gets through to the API, which wants the sandbox token.
        { op: 'proxy', socketPath: channel, head: post(`${own}/events`, JSON.stringify({ type: 'login.waiting', details: {} })) },
        ...refused.map(([, head]) => ({ op: 'proxy', socketPath: channel, head }) as const),
      ]);
      const [control, ...answers] = results;
      assert.equal(control!.status, 401, `its own route reaches the API: ${JSON.stringify(control)}`);
      assert.match(control!.body, /AGENT_TOKEN_INVALID/);
      for (const [i, [what]] of refused.entries()) {
        const answer = answers[i]!;
        assert.equal(answer.status, 404, `${what}: ${JSON.stringify(answer)}`);
        assert.match(answer.body, /ROUTE_NOT_FOUND/, what);
      }

      const [replace, create, mounts] = await probe<[ExecResult, ExecResult, ExecResult]>(a, [
        { op: 'exec', argv: ['/usr/bin/rm', '-f', channel] },
        { op: 'exec', argv: ['/usr/bin/touch', '/run/porthole-host/porthole-test-planted'] },
        { op: 'exec', argv: ['/usr/bin/cat', '/proc/self/mounts'] },
      ]);
      // Linux refuses for the read-only mount before it looks at the directory's permissions;
      // gVisor looks at the permissions first (the directory is root's, 0711), so the person hears
      // of those. The mount is read-only on both, as /proc/self/mounts says.
      const refusal = driver === 'local' ? /Read-only file system/ : /Permission denied/;
      assert.notEqual(replace.status, 0, `rm of the channel socket fails: ${JSON.stringify(replace)}`);
      assert.match(replace.stderr, refusal);
      assert.notEqual(create.status, 0, `a new file beside it fails: ${JSON.stringify(create)}`);
      assert.match(create.stderr, refusal);
      const hostMount = mounts.stdout.split('\n').find((line) => line.split(' ')[1] === '/run/porthole-host');
      assert.ok(hostMount, `/proc/self/mounts lists /run/porthole-host: ${mounts.stdout}`);
      assert.ok(hostMount.split(' ')[3]!.split(',').includes('ro'), `mounted read-only: ${hostMount}`);
    });

    test('unshare -Ur inside: a nested user namespace is allowed (current behaviour), and gains no way out', async () => {
      // Nested user namespaces stay allowed: Chromium's own sandbox needs them (its zygote makes a
      // user and pid namespace per renderer), and bwrap runs without --disable-userns. Being "root"
      // in a nested namespace grants nothing outside it: the network namespace is still the
      // sandbox's own (only loopback), and the host's services are as unreachable as before.
      const serverPort = portOf(t.server.url);
      const [plain, nested] = await probe<[ExecResult, ExecResult]>(a, [
        { op: 'exec', argv: ['/usr/bin/unshare', '-Ur', 'true'] },
        {
          op: 'exec',
          argv: [
            '/usr/bin/unshare',
            '-Ur',
            '/usr/bin/node',
            '-e',
            `const s = require('node:net').connect(${serverPort}, '127.0.0.1'); s.on('connect', () => { console.log(JSON.stringify({ uid: process.getuid(), outcome: 'connected' })); s.destroy(); }); s.on('error', (e) => console.log(JSON.stringify({ uid: process.getuid(), outcome: e.code, ifaces: Object.keys(require('node:os').networkInterfaces()) })));`,
          ],
        },
      ]);
      assert.equal(plain.status, 0, `unshare -Ur true: ${JSON.stringify(plain)}`);
      assert.equal(nested.status, 0, JSON.stringify(nested));
      const inside = JSON.parse(nested.stdout.trim()) as { uid: number; outcome: string; ifaces: string[] };
      assert.deepEqual(inside, { uid: 0, outcome: 'ECONNREFUSED', ifaces: ['lo'] }, 'root in the nested namespace still has only the sandbox’s loopback');
    });

    if (driver === 'local') internetSiteAttempts(() => ({ t, sessionA, a }));
  });
}
