import assert from 'node:assert/strict';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { lstat, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, request, type IncomingHttpHeaders, type Server } from 'node:http';
import { connect, createServer as createTcpServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startEgressForwarder, type EgressForwarder } from '../../src/agent/egress-forwarder.js';
import type { EgressEvent } from '../../src/protocol/egress.js';
import type { EgressLookup, EgressPolicyOptions } from '../../src/server/egress/egress-policy.js';
import { createEgressProxy, type EgressProxyOptions } from '../../src/server/egress/egress-proxy.js';
import { startInternetSite, type InternetSite } from '../support/internet-site.js';
import { rawRequest, type RawResponse } from '../support/raw-http.js';
import { elapse, until } from '../support/until.js';

// The egress proxy over real sockets: a target HTTP server on loopback (refused unless it is the
// loopback exception), addresses the policy refuses before any connection is made, an "internet"
// host in a network namespace this test creates (203.0.113.2, allowed only by an explicit CIDR),
// an upstream proxy, and the agent's forwarder in front of it all.

/** The path and query every request carries: none of it may reach an event. */
const secretPath = '/callback?code=porthole-oauth-code-secret';

interface Target {
  readonly port: number;
  /** Headers of each request the target received. */
  readonly seen: IncomingHttpHeaders[];
  close(): Promise<void>;
}

/** An HTTP server on 127.0.0.1 that answers `hello from <name> <path>`. */
async function startTarget(name: string): Promise<Target> {
  const seen: IncomingHttpHeaders[] = [];
  const server = createServer((req, res) => {
    seen.push(req.headers);
    res.setHeader('Connection', 'close');
    res.end(`hello from ${name} ${req.url}`);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { port: (server.address() as { port: number }).port, seen, close: () => closeServer(server) };
}

function closeServer(server: Server): Promise<void> {
  server.closeAllConnections();
  return new Promise((resolve) => server.close(() => resolve()));
}

interface TestProxy {
  readonly socketPath: string;
  readonly dir: string;
  readonly events: EgressEvent[];
  /** The next event not yet taken, waiting for it when needed. */
  nextEvent(): Promise<EgressEvent>;
  close(): Promise<void>;
}

async function startProxy(policy: EgressPolicyOptions, options: Omit<EgressProxyOptions, 'policy'> = {}): Promise<TestProxy> {
  const dir = await mkdtemp(join(tmpdir(), 'porthole-test-egress-'));
  const socketPath = join(dir, 'egress.sock');
  const proxy = createEgressProxy({ policy, ...options });
  const events: EgressEvent[] = [];
  let taken = 0;
  try {
    await proxy.listen(socketPath, { sessionId: 'ses_test', onEvent: (event) => events.push(event) });
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
  return {
    socketPath,
    dir,
    events,
    async nextEvent() {
      // Polled often: the events come from this process's own proxy, and a test may wait for many.
      await until(
        `egress event ${taken + 1}`,
        () => [...events],
        (had) => had.length > taken,
        10_000,
        { intervalMs: 10 },
      );
      return events[taken++]!;
    },
    async close() {
      await proxy.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

const connectHead = (authority: string) => `CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`;
const getHead = (url: string, host: string, extra: readonly string[] = []) =>
  `GET ${url} HTTP/1.1\r\nHost: ${host}\r\n${extra.map((line) => `${line}\r\n`).join('')}Connection: close\r\n\r\n`;

/** One GET over an established tunnel (socket from a CONNECT's 200): status and body. */
function getOverTunnel(socket: Socket, host: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ createConnection: () => socket, path: secretPath, headers: { Host: host, Connection: 'close' } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

/** CONNECT through `to` (a unix socket path or a TCP port), then GET over the tunnel. */
async function fetchThroughConnect(to: string | number, authority: string): Promise<{ connect: RawResponse; status: number; body: string }> {
  const answer = await rawRequest(to, connectHead(authority));
  assert.equal(answer.status, 200, `CONNECT ${authority}: ${answer.status} ${answer.body.toString()}`);
  assert.ok(answer.socket);
  const { status, body } = await getOverTunnel(answer.socket, authority);
  return { connect: answer, status, body };
}

function assertNoSecrets(event: EgressEvent): void {
  assert.doesNotMatch(JSON.stringify(event), /callback|code=|secret/, 'an event carries host and port only');
}

/** Counts the client sockets this process creates, to prove the proxy made none. */
function watchClientSockets(): { readonly count: () => number; stop(): void } {
  let created = 0;
  const onSocket = () => created++;
  subscribe('net.client.socket', onSocket);
  return { count: () => created, stop: () => unsubscribe('net.client.socket', onSocket) };
}

describe('on loopback: refused but for the exact loopback exception', () => {
  let target: Target;
  let other: Target;
  let proxy: TestProxy;

  before(async () => {
    target = await startTarget('the demo issuer');
    other = await startTarget('another loopback service');
    proxy = await startProxy({ loopbackExceptions: [{ host: '127.0.0.1', port: target.port }] });
  });
  after(async () => {
    await proxy?.close();
    await target?.close();
    await other?.close();
  });

  test('the socket is mode 0666 and replaces a stale socket file, but no other file', async () => {
    assert.equal((await lstat(proxy.socketPath)).mode & 0o777, 0o666);
    const second = createEgressProxy();
    const listener = await second.listen(`${proxy.socketPath}.2`, { sessionId: 'ses_other', onEvent: () => {} });
    await listener.close();
    // A socket file left by a process that died (closing a listening server removes its file).
    const stale = createTcpServer();
    await new Promise<void>((resolve) => stale.listen(`${proxy.socketPath}.3`, resolve));
    const again = await second.listen(`${proxy.socketPath}.3`, { sessionId: 'ses_other', onEvent: () => {} }).catch((error: unknown) => error);
    assert.ok(!(again instanceof Error), `a live socket file is replaced too: ${String(again)}`);
    await second.close();
    await new Promise<void>((resolve) => stale.close(() => resolve()));
    await writeFile(`${proxy.socketPath}.file`, 'not a socket');
    await assert.rejects(second.listen(`${proxy.socketPath}.file`, { sessionId: 'ses_other', onEvent: () => {} }), /exists and is not a socket/);
    assert.equal((await lstat(`${proxy.socketPath}.file`)).isFile(), true, 'the file is left alone');
  });

  test('the exception passes CONNECT, and the event has host, port, address and bytes', async () => {
    const sockets = watchClientSockets();
    let status: number;
    let body: string;
    try {
      ({ status, body } = await fetchThroughConnect(proxy.socketPath, `127.0.0.1:${target.port}`));
      assert.equal(sockets.count(), 2, 'the watch sees the proxy’s own connection besides the test’s');
    } finally {
      sockets.stop();
    }
    assert.equal(status, 200);
    assert.equal(body, `hello from the demo issuer ${secretPath}`);
    const event = await proxy.nextEvent();
    assert.equal(event.type, 'egress.connect');
    assert.equal(event.host, '127.0.0.1');
    assert.equal(event.port, target.port);
    assert.equal(event.address, '127.0.0.1');
    assert.equal(event.allowed, true);
    assert.equal(event.reason, undefined);
    assert.ok(event.bytesUp > secretPath.length, `bytesUp ${event.bytesUp}`);
    assert.ok(event.bytesDown > body.length, `bytesDown ${event.bytesDown}`);
    assert.ok(event.durationMs >= 0);
    assertNoSecrets(event);
  });

  test('the exception passes a plain GET: Host kept, Proxy-* and hop-by-hop headers dropped, Connection: close', async () => {
    const authority = `127.0.0.1:${target.port}`;
    const answer = await rawRequest(
      proxy.socketPath,
      getHead(`http://${authority}${secretPath}`, authority, ['Proxy-Authorization: Basic c2VjcmV0', 'Keep-Alive: timeout=5', 'X-Kept: yes']),
    );
    assert.equal(answer.status, 200);
    assert.equal(answer.body.toString(), `hello from the demo issuer ${secretPath}`);
    const seen = target.seen.at(-1)!;
    assert.equal(seen.host, authority);
    assert.equal(seen['proxy-authorization'], undefined);
    assert.equal(seen['keep-alive'], undefined);
    assert.equal(seen.connection, 'close');
    assert.equal(seen['x-kept'], 'yes');
    const event = await proxy.nextEvent();
    assert.deepEqual(
      { ...event, durationMs: 0 },
      {
        type: 'egress.request',
        host: '127.0.0.1',
        port: target.port,
        address: '127.0.0.1',
        allowed: true,
        bytesUp: 0,
        bytesDown: answer.body.length,
        durationMs: 0,
      },
    );
    assertNoSecrets(event);
    const payload = 'x'.repeat(100_000);
    const post = await rawRequest(
      proxy.socketPath,
      `POST http://${authority}/upload HTTP/1.1\r\nHost: ${authority}\r\nContent-Length: ${payload.length}\r\nConnection: close\r\n\r\n${payload}`,
    );
    assert.equal(post.status, 200);
    const postEvent = await proxy.nextEvent();
    assert.deepEqual([postEvent.type, postEvent.bytesUp, postEvent.bytesDown], ['egress.request', payload.length, post.body.length]);
  });

  test('an idle tunnel is ended, and says so', async () => {
    const idle = await startProxy({ loopbackExceptions: [{ host: '127.0.0.1', port: target.port }] }, { idleTimeoutMs: 300 });
    try {
      const answer = await rawRequest(idle.socketPath, connectHead(`127.0.0.1:${target.port}`));
      assert.equal(answer.status, 200);
      answer.socket!.on('error', () => {});
      await new Promise((resolve) => answer.socket!.once('close', resolve));
      const event = await idle.nextEvent();
      assert.deepEqual([event.allowed, event.error], [true, 'idle-timeout']);
      assert.ok(event.durationMs >= 250, `ended after ${event.durationMs} ms`);
    } finally {
      await idle.close();
    }
  });

  test('another loopback port is refused, CONNECT and GET, with no connection made', async () => {
    const sockets = watchClientSockets();
    try {
      const authority = `127.0.0.1:${other.port}`;
      const refused = await rawRequest(proxy.socketPath, connectHead(authority));
      assert.equal(refused.status, 403);
      assert.equal(refused.headers['x-porthole-egress'], 'refused; reason=loopback');
      assert.match(refused.body.toString(), /refused: loopback/);
      const event = await proxy.nextEvent();
      assert.deepEqual(
        { ...event, durationMs: 0 },
        {
          type: 'egress.connect',
          host: '127.0.0.1',
          port: other.port,
          address: '127.0.0.1',
          allowed: false,
          reason: 'loopback',
          bytesUp: 0,
          bytesDown: 0,
          durationMs: 0,
        },
      );
      const get = await rawRequest(proxy.socketPath, getHead(`http://${authority}${secretPath}`, authority));
      assert.equal(get.status, 403);
      assert.equal(get.headers['x-porthole-egress'], 'refused; reason=loopback');
      const getEvent = await proxy.nextEvent();
      assert.equal(getEvent.type, 'egress.request');
      assert.equal(getEvent.reason, 'loopback');
      assertNoSecrets(getEvent);
      assert.equal(other.seen.length, 0, 'the other service saw nothing');
      assert.equal(sockets.count(), 2, 'only the test’s own two connections to the proxy were made');
    } finally {
      sockets.stop();
    }
  });

  const refusedByPolicy: Array<[authority: string, reason: string]> = [
    ['169.254.169.254:80', 'link-local'],
    ['10.1.2.3:443', 'private'],
    ['192.168.1.1:80', 'private'],
    ['100.64.0.1:443', 'cgnat'],
    ['[::1]:443', 'loopback'],
    ['[fe80::1]:443', 'link-local'],
    ['0.0.0.0:80', 'unspecified'],
    ['224.0.0.1:80', 'multicast'],
    ['localhost:80', 'loopback'],
  ];
  for (const [authority, reason] of refusedByPolicy) {
    test(`${authority} is refused (${reason}) before any connection, CONNECT and GET`, async () => {
      const sockets = watchClientSockets();
      try {
        const host = authority.replace(/:\d+$/, '').replace(/^\[(.*)\]$/, '$1');
        const connectAnswer = await rawRequest(proxy.socketPath, connectHead(authority));
        assert.equal(connectAnswer.status, 403);
        assert.equal(connectAnswer.headers['x-porthole-egress'], `refused; reason=${reason}`);
        const connectEvent = await proxy.nextEvent();
        assert.equal(connectEvent.type, 'egress.connect');
        assert.equal(connectEvent.host, host);
        assert.equal(connectEvent.reason, reason);
        assert.equal(connectEvent.allowed, false);
        const getAnswer = await rawRequest(proxy.socketPath, getHead(`http://${authority}${secretPath}`, authority));
        assert.equal(getAnswer.status, 403);
        assert.equal(getAnswer.headers['x-porthole-egress'], `refused; reason=${reason}`);
        const getEvent = await proxy.nextEvent();
        assert.deepEqual([getEvent.type, getEvent.host, getEvent.reason, getEvent.allowed], ['egress.request', host, reason, false]);
        assertNoSecrets(getEvent);
        assert.equal(sockets.count(), 2, 'the proxy opened no connection of its own');
      } finally {
        sockets.stop();
      }
    });
  }

  test('loopback in the spellings a resolver still accepts is refused', async () => {
    for (const host of ['2130706433', '0x7f.0.0.1', '127.1', '[::ffff:127.0.0.1]', '[0:0:0:0:0:0:0:1]']) {
      const answer = await rawRequest(proxy.socketPath, connectHead(`${host}:${other.port}`));
      assert.equal(answer.status, 403, host);
      assert.equal(answer.headers['x-porthole-egress'], 'refused; reason=loopback', host);
      assert.equal((await proxy.nextEvent()).address, host.startsWith('[0') ? '::1' : '127.0.0.1');
    }
    assert.equal(other.seen.length, 0);
  });

  test('an allowed destination that does not answer is a 502 naming the errno', async () => {
    const closed = await startTarget('gone');
    await closed.close();
    const refusing = await startProxy({ loopbackExceptions: [{ host: '127.0.0.1', port: closed.port }] });
    try {
      const answer = await rawRequest(refusing.socketPath, connectHead(`127.0.0.1:${closed.port}`));
      assert.equal(answer.status, 502);
      assert.equal(answer.headers['x-porthole-egress'], 'failed; error=ECONNREFUSED');
      const event = await refusing.nextEvent();
      assert.deepEqual([event.allowed, event.error, event.address], [true, 'ECONNREFUSED', '127.0.0.1']);
    } finally {
      await refusing.close();
    }
  });

  test('a client that leaves while its destination is decided still makes exactly one event, CONNECT and GET', async () => {
    let answer: () => void = () => {};
    let lookups = 0;
    // The issuer under a name, resolved slowly: the client is gone by the time it is reached.
    const lookup: EgressLookup = () => {
      lookups++;
      return new Promise((resolve) => (answer = () => resolve([{ address: '127.0.0.1', family: 4 }])));
    };
    const slow = await startProxy({ loopbackExceptions: [{ host: 'issuer.porthole-test.example', port: target.port }], lookup });
    try {
      for (const [type, head] of [
        ['egress.connect', connectHead(`issuer.porthole-test.example:${target.port}`)],
        ['egress.request', getHead(`http://issuer.porthole-test.example:${target.port}${secretPath}`, 'issuer.porthole-test.example')],
      ] as const) {
        const seen = target.seen.length;
        const lookedUp = lookups;
        // The proxy's end of the connection (the only one accepted meanwhile), to see when it has taken in the close.
        let proxySide: Socket | undefined;
        const onAccepted = (message: unknown) => {
          proxySide ??= (message as { socket: Socket }).socket;
        };
        subscribe('net.server.socket', onAccepted);
        const socket = connect(slow.socketPath);
        await new Promise((resolve) => socket.once('connect', resolve));
        socket.write(head);
        // The close must land while the lookup is pending, which is the case under test: the proxy
        // has read the head once it asks for the name.
        await until(
          'the proxy looks the name up',
          () => lookups,
          (n) => n > lookedUp,
          5_000,
          { intervalMs: 10 },
        );
        unsubscribe('net.server.socket', onAccepted);
        socket.destroy();
        // A GET's connection is read all along: the proxy has seen the close once its end is destroyed.
        // A CONNECT's is not read before the 200, so the proxy cannot see the close before it answers.
        if (type === 'egress.request')
          await until(
            "the proxy's end sees the close",
            () => proxySide?.destroyed,
            (isGone) => isGone === true,
            5_000,
            { intervalMs: 10 },
          );
        answer();
        const event = await slow.nextEvent();
        assert.deepEqual([event.type, event.allowed, event.bytesUp, event.bytesDown], [type, true, 0, 0]);
        // A GET's connection is read all along, so its end is seen; a CONNECT's is not read before the 200.
        if (type === 'egress.request') assert.equal(event.error, 'client-closed');
        assert.equal(target.seen.length, seen, 'no request was sent on its behalf');
      }
      // That no third event comes: only time shows it.
      await elapse(200, 'no third egress event comes');
      assert.equal(slow.events.length, 2, 'one event each');
    } finally {
      await slow.close();
    }
  });

  test('a request that is not a proxy request is a 400 with no event; a bad CONNECT target a 400 with one', async () => {
    const before = proxy.events.length;
    const origin = await rawRequest(proxy.socketPath, getHead('/path', 'example.com'));
    assert.equal(origin.status, 400);
    const https = await rawRequest(proxy.socketPath, getHead('https://example.com/', 'example.com'));
    assert.equal(https.status, 400);
    assert.equal(proxy.events.length, before);
    const bad = await rawRequest(proxy.socketPath, connectHead('no-port-here'));
    assert.equal(bad.status, 400);
    assert.equal((await proxy.nextEvent()).reason, 'invalid-host');
    const port = await rawRequest(proxy.socketPath, connectHead('8.8.8.8:70000'));
    assert.equal(port.status, 403);
    assert.equal((await proxy.nextEvent()).reason, 'invalid-port');
  });

  test('close() ends live tunnels, each with its event, and removes the socket', async () => {
    const closing = await startProxy({ loopbackExceptions: [{ host: '127.0.0.1', port: target.port }] });
    const answer = await rawRequest(closing.socketPath, connectHead(`127.0.0.1:${target.port}`));
    assert.equal(answer.status, 200);
    const ended = new Promise((resolve) => answer.socket!.once('close', resolve));
    answer.socket!.on('error', () => {});
    await closing.close();
    await ended;
    const event = await closing.nextEvent();
    assert.deepEqual([event.type, event.allowed], ['egress.connect', true]);
    await assert.rejects(lstat(closing.socketPath), { code: 'ENOENT' });
  });
});

describe('names: resolved once, decided on every address, connected to the checked one', () => {
  let proxy: TestProxy;
  before(async () => {
    // A name that fails to resolve, without asking any real resolver.
    const lookup: EgressLookup = async (host) => {
      throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
    };
    proxy = await startProxy({ lookup });
  });
  after(() => proxy?.close());

  test('an unresolvable name is a 502, CONNECT and GET', async () => {
    const answer = await rawRequest(proxy.socketPath, connectHead('nowhere.porthole-test.example:443'));
    assert.equal(answer.status, 502);
    assert.equal(answer.headers['x-porthole-egress'], 'refused; reason=resolve-failed');
    assert.match(answer.body.toString(), /cannot resolve nowhere\.porthole-test\.example \(ENOTFOUND\)/);
    assert.deepEqual(await proxy.nextEvent().then((e) => [e.allowed, e.reason, e.address]), [false, 'resolve-failed', null]);
    const get = await rawRequest(proxy.socketPath, getHead(`http://nowhere.porthole-test.example${secretPath}`, 'nowhere.porthole-test.example'));
    assert.equal(get.status, 502);
    assert.equal((await proxy.nextEvent()).reason, 'resolve-failed');
  });
});

// ---- An "internet" host: 203.0.113.2 in a network namespace of this test's own ----

/** The internet host: `/big` is 8 MiB (for backpressure), anything else names the Host it was asked for. */
function startInternetHost(): Promise<InternetSite> {
  const script =
    'const big = Buffer.alloc(8 * 1024 * 1024, 120);' +
    "require('http').createServer((q, s) => { s.setHeader('Connection', 'close'); s.end(q.url === '/big' ? big : 'hello from the internet host ' + q.headers.host); })" +
    ".listen(8080, '203.0.113.2', () => console.log('listening'));";
  return startInternetSite('egress', script);
}

/** A plain upstream proxy (CONNECT only) on 127.0.0.1 that records what it was asked, answering 407 to `refuse`. */
async function startUpstream(
  resolveName: (host: string) => string,
): Promise<{ url: URL; asked: string[]; authorizations: (string | undefined)[]; close(): Promise<void> }> {
  const asked: string[] = [];
  const authorizations: (string | undefined)[] = [];
  const server = createServer((_req, res) => res.writeHead(405).end());
  server.on('connect', (req, client: Socket, head: Buffer) => {
    asked.push(req.url ?? '');
    authorizations.push(req.headers['proxy-authorization']);
    client.on('error', () => {});
    const [, host = '', port = '0'] = /^(.*):(\d+)$/.exec(req.url ?? '') ?? [];
    if (host === 'refuse.porthole-test.example') return client.end('HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n');
    const remote = connect(Number(port), resolveName(host), () => {
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      remote.write(head);
      client.pipe(remote).pipe(client);
    });
    remote.on('error', () => client.destroy());
    client.on('close', () => remote.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return { url: new URL(`http://porthole:upstream-secret@127.0.0.1:${port}`), asked, authorizations, close: () => closeServer(server) };
}

describe('an internet host (203.0.113.2, in a network namespace)', () => {
  let internet: InternetSite;
  before(async () => {
    internet = await startInternetHost();
  });
  after(() => internet?.close());

  test('allowed by an explicit CIDR: CONNECT and plain GET reach it', async () => {
    const proxy = await startProxy({ allow: ['203.0.113.0/24'] });
    try {
      const authority = `${internet.address}:${internet.port}`;
      const tunnel = await fetchThroughConnect(proxy.socketPath, authority);
      assert.equal(tunnel.body, `hello from the internet host ${authority}`);
      const connectEvent = await proxy.nextEvent();
      assert.deepEqual(
        [connectEvent.type, connectEvent.host, connectEvent.port, connectEvent.address, connectEvent.allowed],
        ['egress.connect', internet.address, internet.port, internet.address, true],
      );
      assert.ok(connectEvent.bytesUp > 0 && connectEvent.bytesDown > 0);
      const get = await rawRequest(proxy.socketPath, getHead(`http://${authority}${secretPath}`, authority));
      assert.equal(get.status, 200);
      assert.equal(get.body.toString(), `hello from the internet host ${authority}`);
      const getEvent = await proxy.nextEvent();
      assert.deepEqual([getEvent.type, getEvent.address, getEvent.allowed, getEvent.bytesDown], ['egress.request', internet.address, true, get.body.length]);
      assertNoSecrets(getEvent);
    } finally {
      await proxy.close();
    }
  });

  test('8 MiB through a tunnel to a reader that pauses, all counted in the event', async () => {
    const proxy = await startProxy({ allow: ['203.0.113.0/24'] });
    try {
      const authority = `${internet.address}:${internet.port}`;
      const answer = await rawRequest(proxy.socketPath, connectHead(authority));
      assert.equal(answer.status, 200);
      const socket = answer.socket!;
      let received = 0;
      let start = Buffer.alloc(0);
      let hasPaused = false;
      // The reader stops near the end, so that the host has sent everything and closed while the
      // proxy still holds the tail: the tail must still arrive.
      socket.on('data', (chunk: Buffer) => {
        received += chunk.length;
        if (start.length < 1024) start = Buffer.concat([start, chunk]).subarray(0, 1024);
        if (!hasPaused && received > 8 * 1024 * 1024 - 256 * 1024) {
          hasPaused = true;
          socket.pause();
          setTimeout(() => socket.resume(), 500);
        }
      });
      socket.write(`GET /big HTTP/1.1\r\nHost: ${authority}\r\nConnection: close\r\n\r\n`);
      await new Promise((resolve) => socket.once('close', resolve));
      const headLength = start.indexOf('\r\n\r\n') + 4;
      assert.ok(headLength > 4);
      assert.equal(received - headLength, 8 * 1024 * 1024, 'the whole body arrived');
      const event = await proxy.nextEvent();
      assert.equal(event.bytesDown, received);
    } finally {
      await proxy.close();
    }
  });

  test('an allowed address that does not answer in time is a 502 naming the errno', async () => {
    const proxy = await startProxy({ allow: ['203.0.113.0/24'] }, { connectTimeoutMs: 300 });
    try {
      // 203.0.113.3 is on the namespace's link but nobody has it: the connect waits for ARP.
      const answer = await rawRequest(proxy.socketPath, connectHead('203.0.113.3:8080'));
      assert.equal(answer.status, 502);
      assert.match(answer.headers['x-porthole-egress'] ?? '', /^failed; error=(ETIMEDOUT|EHOSTUNREACH)$/);
      const event = await proxy.nextEvent();
      assert.deepEqual([event.allowed, event.address], [true, '203.0.113.3']);
    } finally {
      await proxy.close();
    }
  });

  test('without the allow entry the same host is refused (reserved range)', async () => {
    const proxy = await startProxy({});
    try {
      const authority = `${internet.address}:${internet.port}`;
      const answer = await rawRequest(proxy.socketPath, connectHead(authority));
      assert.equal(answer.status, 403);
      assert.equal(answer.headers['x-porthole-egress'], 'refused; reason=reserved');
      assert.equal((await proxy.nextEvent()).reason, 'reserved');
      const get = await rawRequest(proxy.socketPath, getHead(`http://${authority}/`, authority));
      assert.equal(get.status, 403);
      assert.equal((await proxy.nextEvent()).reason, 'reserved');
    } finally {
      await proxy.close();
    }
  });

  test('a name is connected at the address that was checked, whatever it resolves to afterwards', async () => {
    let lookups = 0;
    // The first answer is the internet host; every later one would be loopback (a rebinding name).
    const lookup: EgressLookup = async () => (lookups++ === 0 ? [{ address: internet.address, family: 4 }] : [{ address: '127.0.0.1', family: 4 }]);
    const proxy = await startProxy({ allow: ['203.0.113.0/24'], lookup });
    try {
      const authority = `www.porthole-test.example:${internet.port}`;
      const { body } = await fetchThroughConnect(proxy.socketPath, authority);
      assert.equal(body, `hello from the internet host ${authority}`);
      assert.equal(lookups, 1);
      const event = await proxy.nextEvent();
      assert.deepEqual([event.host, event.address, event.allowed], ['www.porthole-test.example', internet.address, true]);
      // Asked again, the name now points at loopback, and is refused.
      const again = await rawRequest(proxy.socketPath, connectHead(authority));
      assert.equal(again.status, 403);
      assert.equal((await proxy.nextEvent()).reason, 'loopback');
    } finally {
      await proxy.close();
    }
  });

  test('through an upstream proxy: CONNECT <checked address>:<port>, plain GET tunnelled too, the loopback exception direct', async () => {
    const upstream = await startUpstream((host) => (host === 'intranet.porthole-test.example' ? internet.address : host));
    const issuer = await startTarget('the demo issuer');
    const names: EgressLookup = async (host) => {
      if (host === 'www.porthole-test.example') return [{ address: internet.address, family: 4 }];
      throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
    };
    const proxy = await startProxy(
      {
        allow: ['203.0.113.0/24', 'intranet.porthole-test.example', 'refuse.porthole-test.example'],
        loopbackExceptions: [{ host: '127.0.0.1', port: issuer.port }],
        lookup: names,
      },
      { upstream: upstream.url },
    );
    try {
      const authority = `www.porthole-test.example:${internet.port}`;
      assert.equal((await fetchThroughConnect(proxy.socketPath, authority)).body, `hello from the internet host ${authority}`);
      assert.deepEqual(upstream.asked, [`${internet.address}:${internet.port}`], 'the upstream is asked for the checked address, not the name');
      assert.equal(upstream.authorizations[0], `Basic ${Buffer.from('porthole:upstream-secret').toString('base64')}`);
      assert.equal((await proxy.nextEvent()).address, internet.address);

      const get = await rawRequest(proxy.socketPath, getHead(`http://${authority}${secretPath}`, authority));
      assert.equal(get.status, 200);
      assert.equal(get.body.toString(), `hello from the internet host ${authority}`);
      assert.equal(upstream.asked.at(-1), `${internet.address}:${internet.port}`, 'plain HTTP goes through a tunnel: the upstream never sees the path');
      assert.equal((await proxy.nextEvent()).type, 'egress.request');

      // A name porthole cannot resolve passes on an allow-list name entry: the upstream resolves it.
      const intranet = `intranet.porthole-test.example:${internet.port}`;
      assert.equal((await fetchThroughConnect(proxy.socketPath, intranet)).body, `hello from the internet host ${intranet}`);
      assert.equal(upstream.asked.at(-1), intranet);
      assert.deepEqual(await proxy.nextEvent().then((e) => [e.host, e.address, e.allowed]), ['intranet.porthole-test.example', null, true]);
      // One that no name entry lists is refused.
      const unlisted = await rawRequest(proxy.socketPath, connectHead(`other.porthole-test.example:${internet.port}`));
      assert.equal(unlisted.status, 403);
      assert.equal((await proxy.nextEvent()).reason, 'not-allowed');

      // The upstream's refusal is a 502 naming its status.
      const refused = await rawRequest(proxy.socketPath, connectHead('refuse.porthole-test.example:443'));
      assert.equal(refused.status, 502);
      assert.equal(refused.headers['x-porthole-egress'], 'failed; error=upstream-407');
      assert.equal((await proxy.nextEvent()).error, 'upstream-407');

      // The demo issuer is this host's own: reached directly.
      const asked = upstream.asked.length;
      const { body } = await fetchThroughConnect(proxy.socketPath, `127.0.0.1:${issuer.port}`);
      assert.equal(body, `hello from the demo issuer ${secretPath}`);
      assert.equal(upstream.asked.length, asked);
      assert.equal((await proxy.nextEvent()).allowed, true);
    } finally {
      await proxy.close();
      await issuer.close();
      await upstream.close();
    }
  });
});

// ---- The agent's forwarder, as it runs inside the sandbox ----

describe('the agent’s forwarder', () => {
  let issuer: Target;
  let other: Target;
  let proxy: TestProxy;
  let forwarder: EgressForwarder;
  /** The forwarder's proxy port (127.0.0.1:3128 in a sandbox). */
  let port: number;

  before(async () => {
    issuer = await startTarget('the demo issuer');
    other = await startTarget('another loopback service');
    proxy = await startProxy({ loopbackExceptions: [{ host: '127.0.0.1', port: issuer.port }] });
    forwarder = await startEgressForwarder({
      proxySocket: proxy.socketPath,
      listenPort: 0,
      tunnels: [
        { port: 0, host: '127.0.0.1', targetPort: issuer.port },
        { port: 0, host: '127.0.0.1', targetPort: other.port },
      ],
    });
    port = forwarder.port ?? assert.fail('no proxy port');
  });
  after(async () => {
    await forwarder?.close();
    await proxy?.close();
    await issuer?.close();
    await other?.close();
  });

  test('returns the bound ports', () => {
    assert.ok(port > 0);
    assert.equal(forwarder.tunnels.length, 2);
    for (const tunnel of forwarder.tunnels) assert.ok(tunnel.port > 0 && tunnel.port !== port);
  });

  test('CONNECT and plain GET through the forwarder’s TCP port reach the proxy', async () => {
    const authority = `127.0.0.1:${issuer.port}`;
    const { body } = await fetchThroughConnect(port, authority);
    assert.equal(body, `hello from the demo issuer ${secretPath}`);
    assert.deepEqual(await proxy.nextEvent().then((e) => [e.type, e.port, e.allowed]), ['egress.connect', issuer.port, true]);
    const get = await rawRequest(port, getHead(`http://${authority}${secretPath}`, authority));
    assert.equal(get.status, 200);
    assert.deepEqual(await proxy.nextEvent().then((e) => [e.type, e.allowed]), ['egress.request', true]);
    const refused = await rawRequest(port, connectHead(`127.0.0.1:${other.port}`));
    assert.equal(refused.status, 403);
    assert.equal((await proxy.nextEvent()).reason, 'loopback');
  });

  test('a tunnel maps the host’s issuer to a port of the sandbox’s own loopback', async () => {
    const tunnel = forwarder.tunnels[0]!;
    const answer = await rawRequest(tunnel.port, getHead(secretPath, `127.0.0.1:${tunnel.port}`));
    assert.equal(answer.status, 200);
    assert.equal(answer.body.toString(), `hello from the demo issuer ${secretPath}`);
    const event = await proxy.nextEvent();
    assert.deepEqual([event.type, event.host, event.port, event.allowed], ['egress.connect', '127.0.0.1', issuer.port, true]);
  });

  test('a tunnel the proxy refuses closes the client’s connection', async () => {
    const tunnel = forwarder.tunnels[1]!;
    await assert.rejects(rawRequest(tunnel.port, getHead('/', `127.0.0.1:${tunnel.port}`)), /ended without a response|ECONNRESET/);
    assert.equal((await proxy.nextEvent()).reason, 'loopback');
    assert.equal(other.seen.length, 0);
  });

  test('a port in use is an error naming it', async () => {
    await assert.rejects(startEgressForwarder({ proxySocket: proxy.socketPath, listenPort: port }), new RegExp(`cannot listen on 127\\.0\\.0\\.1:${port}`));
    await assert.rejects(
      startEgressForwarder({ proxySocket: proxy.socketPath, listenPort: 0, tunnels: [{ port, host: '127.0.0.1', targetPort: issuer.port }] }),
      new RegExp(`cannot listen on 127\\.0\\.0\\.1:${port} \\(tunnel to 127\\.0\\.0\\.1:${issuer.port}\\)`),
    );
  });
});
