// `npm run cluster`: the cluster of issue 12 on this one machine, for a person to try — the one the
// tests make (test/support/cluster.ts): three porthole nodes and two porthole servers, each in its
// own network namespace on a bridge (10.213.N.0/24), one PostgreSQL on the bridge, one demo
// OpenID Connect provider, haproxy in front of the servers on 127.0.0.1. Prints where to go and
// tears everything down on Ctrl+C. Root only (namespaces, veth pairs, a bridge).
//
// Sign in with the demo provider: no namespace has a route off the bridge, so the real CLIs'
// sign-ins, which need the internet, do not work here.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const root = new URL('..', import.meta.url).pathname;
const dist = process.env.PORTHOLE_DIST ?? join(root, 'dist');
const cli = join(dist, 'src/cli/main.js');

if (process.getuid?.() !== 0) {
  process.stderr.write('npm run cluster: run it as root (it makes network namespaces, veth pairs and a bridge)\n');
  process.exit(1);
}

// The split roles once this build has them (`porthole node`); until then all-in-one servers.
const usage = spawnSync(process.execPath, [cli, '--help'], { encoding: 'utf8' }).stdout ?? '';
const hasRoles = /porthole node\b/.test(usage);
const roles = process.env.PORTHOLE_CLUSTER_ROLES ?? (hasRoles ? 'split' : 'all-in-one');

const { startCluster } = await import(pathToFileURL(join(dist, 'test/support/cluster.js')).href);
const logDir = join(root, '.porthole-cluster', 'logs');
const apiKey = `ph_cluster_${randomBytes(18).toString('base64url')}`;
process.stderr.write(
  `cluster: starting ${roles === 'split' ? '3 nodes and 2 servers' : '2 all-in-one servers (this build has no `porthole node` yet)'}; logs in ${logDir}\n`,
);
const started = Date.now();
const cluster = await startCluster({
  name: 'cluster',
  roles,
  servers: 2,
  nodes: 3,
  prefix: 'porthole-cluster-',
  logDir,
  apiKey,
  isForPeople: true,
  sandboxUids: process.env.PORTHOLE_SANDBOX_UIDS ?? '61000-61999',
});

let stopping = false;
const stop = async (signal) => {
  if (stopping) return;
  stopping = true;
  process.stderr.write(`\n${signal}: ending every session and removing the cluster…\n`);
  try {
    await cluster.stop();
    process.stderr.write('cluster: removed (namespaces, bridge, processes, data)\n');
    process.exit(0);
  } catch (error) {
    process.stderr.write(`cluster: ${error.message}\n`);
    process.exit(1);
  }
};
process.on('SIGINT', () => void stop('SIGINT'));
process.on('SIGTERM', () => void stop('SIGTERM'));

// A login link of one server, through its own haproxy frontend: before the split roles, a link (and
// the dashboard's cookie) is good only on the server that made it.
const first = cluster.servers[0];
const link = await cluster.apiVia(first).createLoginLink();
const loginUrl = roles === 'split' ? link.url : link.url.replace(cluster.url, first.proxyUrl);
const pad = (text, width) => text.padEnd(width);
const lines = [
  '',
  `porthole cluster is running at ${cluster.url} (haproxy over ${cluster.servers.length} servers), up in ${((Date.now() - started) / 1000).toFixed(1)} s`,
  '',
  'Open the dashboard with this one-time login link (10 minutes; `porthole login-link` makes another):',
  `  ${loginUrl}`,
  '',
  'API key (admin):',
  `  ${apiKey}`,
  `  e.g. PORTHOLE_URL=${cluster.url} PORTHOLE_API_KEY=${apiKey} bin/porthole sessions create --provider demo`,
  '',
  `Members (bridge ${cluster.bridge}, ${cluster.subnet}):`,
  ...[cluster.postgres, cluster.issuer, ...cluster.servers, ...cluster.nodes]
    .filter(Boolean)
    .map(
      (m) =>
        `  ${pad(m.name, 9)} ${pad(`${m.address}:${m.port}`, 19)} ${pad(`pid ${m.pid}`, 11)} netns ${m.namespace} veth ${m.veth}${m.proxyUrl ? `  (alone through ${m.proxyUrl})` : ''}${m.sandboxUids ? `  sandbox uids ${m.sandboxUids}` : ''}`,
    ),
  '',
  `Demo sign-in: ${cluster.issuerUrl ?? 'off'} on every member (demo@porthole.test / demo-password).`,
  "Try a member down: kill -9 <pid> (a node's desktops run on until their own lease, unlike a lost host's), or cut it off: ip link set <veth> down (and up).",
  'Ctrl+C ends every session and removes the cluster.',
  '',
];
process.stderr.write(`${lines.join('\n')}\n`);
