import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { connectEndpoint } from '../../src/drivers/endpoint-probes.js';
import type { Driver, Endpoint, SandboxHandle, SandboxInfo } from '../../src/drivers/driver.js';
import type { SandboxId } from '../../src/protocol/ids.js';

// A fault-injection TCP proxy between the relay and a sandbox's VNC endpoint, and a driver wrapper
// that puts one in front of every sandbox it creates (startTestServer(…, {wrapDriver})). The relay,
// the readiness probe and the diagnosis all reach the sandbox's VNC server through it, as they
// would a VNC server on another host. Faults apply at once to open connections and to new ones:
//
//   latency    every chunk (and the end of the stream) is forwarded `ms` later, each way;
//   reset      every connection is reset (RST, no FIN), new ones right after they are accepted;
//   blackhole  bytes go in and nothing comes out: both sides stay open, what they send is dropped;
//   half-open  the sandbox side vanished without FIN or RST: the proxy drops its own connection to
//              the sandbox and freezes the relay's (no read, no write, no close), as a host that
//              lost power would; new connections are accepted and never answered. A frozen
//              connection cannot see its peer leave until the fault is healed (set({kind: 'none'})).

export type Fault = { kind: 'none' } | { kind: 'latency'; ms: number } | { kind: 'reset' } | { kind: 'blackhole' } | { kind: 'half-open' };

interface Pair {
  readonly client: Socket;
  upstream: Socket | null;
}

export class FaultProxy {
  readonly #server: Server;
  readonly #target: Endpoint;
  readonly #pairs = new Set<Pair>();
  #fault: Fault = { kind: 'none' };
  #accepted = 0;

  private constructor(server: Server, target: Endpoint) {
    this.#server = server;
    this.#target = target;
  }

  /** Listens on 127.0.0.1:<random port> and forwards to `target`. */
  static async start(target: Endpoint): Promise<FaultProxy> {
    const server = createServer({ pauseOnConnect: true });
    const proxy = new FaultProxy(server, target);
    server.on('connection', (client) => proxy.#accept(client));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    return proxy;
  }

  get endpoint(): Endpoint {
    return { kind: 'tcp', host: '127.0.0.1', port: (this.#server.address() as AddressInfo).port };
  }

  get fault(): Fault {
    return this.#fault;
  }

  /** Connections from the relay side still open (whatever state their sandbox side is in). */
  get connections(): number {
    return this.#pairs.size;
  }

  /** Connections accepted so far. */
  get accepted(): number {
    return this.#accepted;
  }

  set(fault: Fault): void {
    this.#fault = fault;
    for (const pair of this.#pairs) this.#apply(pair);
  }

  async close(): Promise<void> {
    for (const pair of this.#pairs) this.#drop(pair);
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #accept(client: Socket): void {
    this.#accepted++;
    const pair: Pair = { client, upstream: null };
    this.#pairs.add(pair);
    client.on('error', () => {});
    client.once('close', () => this.#drop(pair));
    const kind = this.#fault.kind;
    if (kind === 'reset' || kind === 'blackhole' || kind === 'half-open') {
      this.#apply(pair);
      return;
    }
    // Through the one door into a sandbox's socket (its pin), as the server itself connects.
    void connectEndpoint(this.#target).then(
      (upstream) => {
        if (client.destroyed || !this.#pairs.has(pair)) return void upstream.destroy();
        const fault = this.#fault.kind;
        if (fault === 'reset' || fault === 'blackhole' || fault === 'half-open') {
          // The fault came while it connected: as if it had held at accept.
          upstream.destroy();
          return this.#apply(pair);
        }
        pair.upstream = upstream;
        upstream.on('error', () => {});
        upstream.once('close', () => {
          // A sandbox side that "vanished" (half-open) tells the relay nothing; one that closed says so.
          if (pair.upstream === upstream) this.#later(() => client.end());
        });
        this.#forward(upstream, client, pair);
        this.#forward(client, upstream, pair);
        client.resume();
      },
      () => this.#later(() => client.end()),
    );
  }

  /** Copies `from` → `to` under whatever fault holds when each chunk arrives. */
  #forward(from: Socket, to: Socket, pair: Pair): void {
    from.on('data', (chunk: Buffer) => {
      const fault = this.#fault;
      if (fault.kind === 'blackhole' || fault.kind === 'half-open' || fault.kind === 'reset') return;
      if (pair.upstream === null) return;
      this.#later(() => {
        if (!to.destroyed) to.write(chunk);
      });
    });
  }

  #later(work: () => void): void {
    const fault = this.#fault;
    if (fault.kind === 'latency') setTimeout(work, fault.ms);
    else work();
  }

  /** Puts an open connection into the current fault. */
  #apply(pair: Pair): void {
    const { client } = pair;
    switch (this.#fault.kind) {
      case 'reset':
        // RST needs TCP: towards a unix socket the sandbox side just closes.
        if (this.#target.kind === 'tcp') pair.upstream?.resetAndDestroy();
        else pair.upstream?.destroy();
        client.resetAndDestroy();
        break;
      case 'blackhole':
        // Keep reading (and dropping) what the relay sends; send nothing back.
        client.resume();
        break;
      case 'half-open': {
        const upstream = pair.upstream;
        pair.upstream = null; // its close is not passed on
        upstream?.destroy();
        client.pause();
        break;
      }
      default:
        // Healed: a connection frozen by half-open reads again, so that it notices its peer left
        // (what it reads goes nowhere: its sandbox side is gone).
        if (pair.upstream === null) client.resume();
        break;
    }
  }

  #drop(pair: Pair): void {
    if (!this.#pairs.delete(pair)) return;
    const upstream = pair.upstream;
    pair.upstream = null;
    upstream?.destroy();
    pair.client.destroy();
  }
}

export interface FaultProxiedDriver extends Driver {
  /** The proxy in front of a sandbox's VNC endpoint. Throws for a sandbox it did not create. */
  proxyOf(sandboxId: string): FaultProxy;
}

/**
 * Wraps a driver so that every sandbox it creates is reached through its own FaultProxy: create(),
 * inspect() and list() report the proxy's endpoint as the sandbox's VNC endpoint; destroy() closes
 * the proxy with the sandbox.
 */
export function withFaultProxies(inner: Driver): FaultProxiedDriver {
  const proxies = new Map<string, FaultProxy>();
  const proxied = <T extends SandboxHandle>(handle: T): T => {
    const proxy = proxies.get(handle.id);
    return proxy ? { ...handle, vnc: proxy.endpoint } : handle;
  };
  return {
    name: inner.name,
    async create(spec, options) {
      const handle = await inner.create(spec, options);
      try {
        proxies.set(spec.id, await FaultProxy.start(handle.vnc));
      } catch (error) {
        await inner.destroy(spec.id);
        throw error;
      }
      return proxied(handle);
    },
    async destroy(id: SandboxId, options?: { now?: boolean }) {
      await inner.destroy(id, options);
      await proxies.get(id)?.close();
      proxies.delete(id);
    },
    async inspect(id: SandboxId): Promise<SandboxInfo | null> {
      const info = await inner.inspect(id);
      return info && proxied(info);
    },
    async list() {
      return (await inner.list()).map(proxied);
    },
    async close() {
      for (const proxy of proxies.values()) await proxy.close();
      proxies.clear();
      await inner.close();
    },
    proxyOf(sandboxId: string) {
      const proxy = proxies.get(sandboxId);
      if (!proxy) throw new Error(`no fault proxy in front of sandbox ${sandboxId}`);
      return proxy;
    },
  };
}
