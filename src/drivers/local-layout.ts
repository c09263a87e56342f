import { join, resolve } from 'node:path';
import { newSandboxId } from '../protocol/ids.js';
import { pinTempSuffixBytes } from './pinned-socket.js';

// Where the local driver keeps each sandbox: <data>/sandboxes/<id>/ (0700, porthole's):
//   sandbox.json  the record (porthole's; local/sandbox-record.ts)
//   run/          the sandbox's /run/porthole (its uid's): vnc.sock, agent.sock, agent.json, logs/
//   sockets/      porthole's only: where the server pins run/'s sockets before connecting (pinned-socket.ts)
//   host/         porthole's, read-only inside at /run/porthole-host: the server listens there for
//                 this sandbox (proxy.sock: the egress proxy; server.sock: the agent channel)
// Beside local/ rather than in it so that `porthole doctor` checks the very paths the driver uses:
// only src/server/main.ts may import the concrete driver (.dependency-cruiser.cjs).

/** sun_path is 108 bytes with its NUL. */
export const maxUnixPathBytes = 107;

/** The data directory's entry that holds every sandbox's directory. */
export const sandboxesEntry = 'sandboxes';

export function sandboxesDir(dataDir: string): string {
  return join(resolve(dataDir), sandboxesEntry);
}

export function sandboxDir(dataDir: string, id: string): string {
  return join(sandboxesDir(dataDir), id);
}

/** The entries of one sandbox's directory `dir`. */
export function sandboxPaths(dir: string) {
  const run = join(dir, 'run');
  const host = join(dir, 'host');
  return {
    run,
    logs: join(run, 'logs'),
    agentConfig: join(run, 'agent.json'),
    agentLog: join(run, 'logs', 'agent.log'),
    sockets: join(dir, 'sockets'),
    host,
    proxySocket: join(host, 'proxy.sock'),
    serverSocket: join(host, 'server.sock'),
  } as const;
}

/** The sockets the sandbox's own servers bind in run/, which the server pins into sockets/ before connecting. */
export const sandboxSocketNames = { vnc: 'vnc.sock', agent: 'agent.sock' } as const;

/** Where the sandbox's server binds socket `name`, and where porthole pins it. */
export function pinnedSocketPaths(dir: string, name: string): { source: string; pinned: string } {
  return { source: join(dir, 'run', name), pinned: join(dir, 'sockets', name) };
}

/** Every unix socket path of the sandbox in `dir`: run/'s, their pins in sockets/, and host/'s. */
export function socketPathsOf(dir: string): string[] {
  const { proxySocket, serverSocket } = sandboxPaths(dir);
  const pins = Object.values(sandboxSocketNames).flatMap((name) => Object.values(pinnedSocketPaths(dir, name)));
  return [...pins, proxySocket, serverSocket];
}

/**
 * The longest unix socket path a sandbox in `dataDir` gets, counted with room for a pin's
 * temporary name (pinned-socket.ts), and whether it fits in sun_path. The driver refuses a create
 * that does not fit; `porthole doctor` reports the same number beforehand.
 */
export function longestSocketPath(dataDir: string, id: string = newSandboxId()): { path: string; bytes: number; fits: boolean } {
  const [path, bytes] = socketPathsOf(sandboxDir(dataDir, id))
    .map((p) => [p, Buffer.byteLength(p) + pinTempSuffixBytes] as const)
    .reduce((a, b) => (b[1] > a[1] ? b : a));
  return { path, bytes, fits: bytes <= maxUnixPathBytes };
}
