import { connect } from 'node:net';
import { WebSocket } from 'ws';
import { RfbClient, rfbEncodings, socketTransport, webSocketTransport, type RfbTransport } from '../src/drivers/rfb-client.js';

// How the benchmarks reach a VNC server: the same RFB client (src/drivers/rfb-client.ts) over a
// direct unix socket, over porthole's relay, or over websockify, so the three paths are compared
// like for like.

export async function openUnix(path: string): Promise<RfbTransport> {
  const socket = connect(path);
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  return socketTransport(socket);
}

export async function openWs(url: string, protocols?: string[]): Promise<RfbTransport> {
  const ws = new WebSocket(url, protocols, { perMessageDeflate: false });
  ws.binaryType = 'nodebuffer';
  // Paused from the open on: a first message in the same packet as the upgrade's answer waits for the transport's listener.
  await new Promise<void>((resolve, reject) =>
    ws
      .once('open', () => {
        ws.pause();
        resolve();
      })
      .once('error', reject),
  );
  const transport = webSocketTransport(ws);
  ws.resume();
  return transport;
}

export function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ?? NaN;
}

/**
 * One path to a VNC server, measured with the same RFB requests whatever the path: `pings` 1×1
 * update round trips, then `frames` full frames in raw encoding, one request in flight at a time.
 * Throughput in MiB/s of framebuffer data; round trips in ms. (relay.ts, drivers.ts)
 */
export async function measureRfbPath(open: () => Promise<RfbTransport>, counts: { frames: number; pings: number }): Promise<{ mbps: number; rttMs: number[] }> {
  const client = new RfbClient(await open());
  const { width, height } = await client.handshake();
  // Raw encoding only: frame sizes are predictable, so throughput compares the paths, not encoders.
  client.setEncodings([rfbEncodings.raw]);
  const rtt: number[] = [];
  for (let i = 0; i < counts.pings; i++) {
    const started = performance.now();
    client.requestUpdate({ width: 1, height: 1 });
    await client.readFramebufferUpdate();
    rtt.push(performance.now() - started);
  }
  // Full raw frames, one request in flight at a time: an RFB server may merge pending requests, so
  // pipelining would not give a countable number of replies.
  const started = performance.now();
  let bytes = 0;
  for (let i = 0; i < counts.frames; i++) {
    client.requestUpdate({ width, height });
    bytes += (await client.readFramebufferUpdate()).bytes;
  }
  const seconds = (performance.now() - started) / 1000;
  client.close();
  return { mbps: bytes / 1048576 / seconds, rttMs: rtt };
}
