import { connect } from 'node:net';
import { WebSocket } from 'ws';
import { socketTransport, webSocketTransport, type RfbTransport } from '../src/drivers/rfb-client.js';

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
