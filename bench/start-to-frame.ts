// Time from POST /v1/sessions to the first framebuffer update received by an RFB client through
// porthole's relay, over N sessions (BENCH_SESSIONS, default 10), with the start-up steps broken
// out. Baseline in the same run: the same first-frame request sent straight to the VNC unix socket
// at the same moment, so the relay's share of the first frame shows as a ratio.
//   node dist/bench/start-to-frame.js
import { pinSocket } from '../src/drivers/pinned-socket.js';
import type { SandboxId, SessionId } from '../src/protocol/ids.js';
import { startTestServer } from '../test/support/server.js';
import { until } from '../test/support/until.js';
import { RfbClient, rfbEncodings } from '../src/drivers/rfb-client.js';
import { openUnix, openWs, percentile } from './rfb-client.js';

const sessions = Number(process.env.BENCH_SESSIONS ?? 10);
const t = await startTestServer('bench-start-to-frame', { PORTHOLE_LOG_LEVEL: 'info', PORTHOLE_MAX_SESSIONS: '2' });
const totals: number[] = [];
const steps: Record<string, number[]> = { sandbox: [], agent: [], vnc: [] };
const relayFirstFrame: number[] = [];
const directFirstFrame: number[] = [];

async function firstFrame(client: RfbClient): Promise<number> {
  const started = performance.now();
  const { width, height } = await client.handshake();
  // Raw encoding only: frame sizes are predictable, so the paths are compared, not encoders.
  client.setEncodings([rfbEncodings.raw]);
  client.requestUpdate({ width, height });
  await client.readFramebufferUpdate();
  return performance.now() - started;
}

try {
  for (let i = 0; i < sessions; i++) {
    const t0 = performance.now();
    const created = await t.api.createSession({});
    // Polled often: the wait is part of what is measured.
    const session = await until(
      `session ${created.id} leaves starting`,
      () => t.api.getSession(created.id),
      (s) => s.state !== 'starting',
      120_000,
      { intervalMs: 10 },
    );
    if (session.state !== 'ready') throw new Error(`session ${session.id}: ${session.state} ${session.detail}`);
    const { ticket } = await t.api.createTicket(session.id);
    const relayFrame = async () => {
      const relay = new RfbClient(await openWs(`${t.server.url.replace('http', 'ws')}/v1/sessions/${session.id}/vnc?ticket=${ticket}`));
      relayFirstFrame.push(await firstFrame(relay));
      relay.close();
    };
    const directFrame = async () => {
      const handle = await t.server.driver.inspect(session.sandboxId as SandboxId);
      if (handle?.vnc.kind !== 'unix') throw new Error('expected a unix VNC endpoint');
      // The server connects only through its pin of the sandbox's socket (src/drivers/pinned-socket.ts): so does the baseline.
      if (handle.vnc.pin) await pinSocket(handle.vnc.pin, handle.vnc.path).catch(() => {});
      const direct = new RfbClient(await openUnix(handle.vnc.path));
      directFirstFrame.push(await firstFrame(direct));
      direct.close();
    };
    // The total is measured on the relay path; which client goes first alternates, so neither always meets a cold server.
    if (i % 2 === 0) {
      await relayFrame();
      totals.push(performance.now() - t0);
      await directFrame();
    } else {
      await directFrame();
      await relayFrame();
      totals.push(performance.now() - t0 - directFirstFrame.at(-1)!);
    }
    const { events } = await t.api.listEvents(session.id);
    for (const e of events) if (e.type === 'step.succeeded') steps[String(e.details.step)]?.push(Number(e.details.ms));
    await t.server.sessions.end(session.id as SessionId, 'user');
    process.stderr.write(`session ${i + 1}/${sessions}: ${totals.at(-1)!.toFixed(0)} ms\n`);
  }
} finally {
  await t.stop();
}

const row = (name: string, values: number[]) =>
  `${name.padEnd(44)} p50 ${percentile(values, 50).toFixed(0).padStart(5)} ms   p95 ${percentile(values, 95).toFixed(0).padStart(5)} ms`;
console.log(`\nPOST /v1/sessions → first framebuffer update through the relay (${sessions} sessions)`);
console.log(row('total', totals));
for (const [name, values] of Object.entries(steps)) console.log(row(`  step ${name}`, values));
console.log(row('  viewer handshake + first full frame (relay)', relayFirstFrame));
console.log(row('  same, straight to the VNC socket (baseline)', directFirstFrame));
console.log(`  ratio relay / direct first frame (p50): ${(percentile(relayFirstFrame, 50) / percentile(directFirstFrame, 50)).toFixed(2)}×`);
