// Relay throughput and added round-trip latency, as ratios against a direct connection to the
// sandbox's VNC unix socket and against websockify (Debian's), all measured in this one run on
// the same sandbox with the same RFB requests (raw encoding).
//   node dist/bench/relay.js
import { spawn } from 'node:child_process';
import { createServer, type AddressInfo } from 'node:net';
import type { SandboxId } from '../src/protocol/ids.js';
import { startTestServer } from '../test/support/server.js';
import { elapse, until } from '../test/support/until.js';
import { pinSocket } from '../src/drivers/pinned-socket.js';
import type { RfbTransport } from '../src/drivers/rfb-client.js';
import { measureRfbPath, openUnix, openWs, percentile } from './rfb-client.js';

const frames = Number(process.env.BENCH_FRAMES ?? 60);
const pings = Number(process.env.BENCH_ROUNDTRIPS ?? 300);
const rounds = 3;

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

async function measure(open: () => Promise<RfbTransport>): Promise<{ mbps: number; rttMs: number[] }> {
  const result = await measureRfbPath(open, { frames, pings });
  // websockify tears a connection down on its next 1 s select tick, and a new one opened before that
  // gets no banner; every path waits the same, outside the measured time.
  await elapse(1_500, "websockify's 1 s select tick tears the connection down");
  return result;
}

const t = await startTestServer('bench-relay', { PORTHOLE_LOG_LEVEL: 'warn' });
let websockify: ReturnType<typeof spawn> | null = null;
try {
  const session = await t.readySession();
  const handle = await t.server.driver.inspect(session.sandboxId as SandboxId);
  if (handle?.vnc.kind !== 'unix') throw new Error('expected a unix VNC endpoint');
  const vncPath = handle.vnc.path;
  // The server connects only through its pin of the sandbox's socket (src/drivers/pinned-socket.ts): so does the baseline.
  if (handle.vnc.pin) await pinSocket(handle.vnc.pin, vncPath).catch(() => {});
  const port = await freePort();
  websockify = spawn('websockify', ['--unix-target', vncPath, `127.0.0.1:${port}`], { stdio: 'ignore' });
  await until(
    'websockify (Debian package "websockify") accepting connections',
    async () => (await openWs(`ws://127.0.0.1:${port}/`, ['binary'])).close(),
    () => true,
    10_000,
    { intervalMs: 100, canProbeFail: true },
  );
  const paths: Record<string, () => Promise<RfbTransport>> = {
    direct: () => openUnix(vncPath),
    porthole: async () => openWs(`${t.server.url.replace('http', 'ws')}/v1/sessions/${session.id}/vnc?ticket=${(await t.api.createTicket(session.id)).ticket}`),
    websockify: () => openWs(`ws://127.0.0.1:${port}/`, ['binary']),
  };
  const results: Record<string, { mbps: number[]; rtt: number[] }> = {};
  // Interleaved rounds, so drift on the machine falls on every path alike.
  for (let round = 0; round < rounds; round++) {
    for (const [name, open] of Object.entries(paths)) {
      const r = await measure(open);
      const slot = results[name] ?? { mbps: [], rtt: [] };
      results[name] = slot;
      slot.mbps.push(r.mbps);
      slot.rtt.push(...r.rttMs);
    }
  }
  const median = (v: number[]) => percentile(v, 50);
  const base = results.direct!;
  console.log(
    `\nrelay: ${frames} full raw frames (${(1280 * 800 * 4) / 1048576} MiB each) and ${pings} 1×1 round trips per path, ${rounds} interleaved rounds`,
  );
  console.log(
    `${'path'.padEnd(12)} ${'MiB/s'.padStart(8)} ${'×direct'.padStart(8)}   ${'rtt p50'.padStart(8)} ${'rtt p95'.padStart(8)}  ${'added p50'.padStart(9)}`,
  );
  for (const [name, r] of Object.entries(results)) {
    console.log(
      `${name.padEnd(12)} ${median(r.mbps).toFixed(0).padStart(8)} ${(median(r.mbps) / median(base.mbps)).toFixed(2).padStart(8)}   ` +
        `${median(r.rtt).toFixed(3).padStart(8)} ${percentile(r.rtt, 95).toFixed(3).padStart(8)}  ${(median(r.rtt) - median(base.rtt)).toFixed(3).padStart(9)}`,
    );
  }
  const p = results.porthole!;
  const w = results.websockify!;
  console.log(`porthole vs websockify: throughput ${(median(p.mbps) / median(w.mbps)).toFixed(2)}×, round trip ${(median(p.rtt) / median(w.rtt)).toFixed(2)}×`);
} finally {
  websockify?.kill('SIGTERM');
  await t.stop();
}
