// The test cluster's helpers that must run inside a member's network namespace (a process joins
// one only when it starts: test/support/cluster.ts runs this file under `nsenter --net=…`).
//
//   node cluster-sidecar.js forward <listen host:port> <target host:port> [--cluster <name>]
//       pipes every TCP connection to <listen> on to <target>.
//   node cluster-sidecar.js issuer <address> <port> [--cluster <name>]
//       the demo OpenID Connect provider (src/demo/oidc) on 127.0.0.1:<port> of this namespace, and
//       <address>:<port> piped to it, so the other members reach it over the bridge.
//
// Why a forward on every member: the demo issuer is `http://127.0.0.1:<port>` by design, the same
// URL inside a sandbox (the agent's tunnel), on its host (the egress proxy's one loopback
// exception) and in the server that verifies and refreshes its grants. One issuer for the whole
// cluster keeps that URL: each member's 127.0.0.1:<port> is piped to the issuer's namespace, as a
// node-local proxy would be on real hosts. `--cluster` only names the cluster in the command line
// (the test runner's leak check looks for it there).
import { connect, createServer, type Socket } from 'node:net';
import { defaultDemoAccount } from '../../src/providers/demo.js';
import { createLogger } from '../../src/server/logger.js';

function parseHostPort(text: string): { host: string; port: number } {
  const at = text.lastIndexOf(':');
  const port = Number(text.slice(at + 1));
  if (at <= 0 || !Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`not host:port: ${text}`);
  return { host: text.slice(0, at), port };
}

function pipeBoth(a: Socket, b: Socket): void {
  for (const [socket, other] of [
    [a, b],
    [b, a],
  ] as const) {
    socket.on('error', () => {
      socket.destroy();
      other.destroy();
    });
    socket.once('close', () => other.end(() => other.destroy()));
  }
  a.pipe(b);
  b.pipe(a);
}

async function forward(listen: { host: string; port: number }, target: { host: string; port: number }): Promise<void> {
  const server = createServer((client) => pipeBoth(client, connect(target.port, target.host)));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(listen.port, listen.host, () => resolve());
  });
}

const [mode, first, second] = process.argv.slice(2);
if (mode === 'forward' && first && second) {
  await forward(parseHostPort(first), parseHostPort(second));
} else if (mode === 'issuer' && first && second) {
  const { startDemoOidc } = await import('../../src/demo/oidc/demo-oidc.js');
  const port = Number(second);
  const issuer = await startDemoOidc({ port, account: defaultDemoAccount, logger: createLogger('info') });
  await forward({ host: first, port }, { host: '127.0.0.1', port });
  process.once('SIGTERM', () => void issuer.close().then(() => process.exit(0)));
} else {
  process.stderr.write('usage: cluster-sidecar.js forward <host:port> <host:port> | issuer <address> <port>\n');
  process.exit(2);
}
process.stdout.write('listening\n');
