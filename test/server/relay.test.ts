import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { closeCodeOf } from '../../src/protocol/errors.js';
import { newSessionId, type SessionId } from '../../src/protocol/ids.js';
import type { Session } from '../../src/protocol/session.js';
import { createTicketSigner } from '../../src/server/tickets.js';
import { startTestServer, testApiKey, type TestServer } from '../support/server.js';
import { createReader, framebufferUpdateRequest, nextClose, openViewerSocket, rfbHandshake, setEncodingsRaw } from '../support/ws.js';
import { until } from '../support/until.js';

const pingMs = 2_000;
let t: TestServer;
let session: Session;
let wsBase: string;
let ticket: (id: string) => string;

before(async () => {
  t = await startTestServer('relay', { PORTHOLE_PING_INTERVAL_MS: String(pingMs) });
  wsBase = t.server.url.replace(/^http/, 'ws');
  session = await t.readySession();
  ticket = (id) => t.server.tickets.issue(id as SessionId).ticket;
});
after(() => t?.stop());

const vncUrl = (id: string, tk?: string) => `${wsBase}/v1/sessions/${id}/vnc${tk === undefined ? '' : `?ticket=${encodeURIComponent(tk)}`}`;

describe('refused before the upgrade, with a real HTTP status and code', () => {
  test('no ticket → 401 TICKET_MISSING', async () => {
    assert.deepEqual(await openViewerSocket(vncUrl(session.id)), { refused: { status: 401, code: 'TICKET_MISSING' } });
  });
  test('bad ticket → 401 TICKET_INVALID', async () => {
    assert.deepEqual(await openViewerSocket(vncUrl(session.id, 'vt.x.y.z.w')), { refused: { status: 401, code: 'TICKET_INVALID' } });
    const tampered = `${ticket(session.id).slice(0, -2)}AA`;
    assert.deepEqual(await openViewerSocket(vncUrl(session.id, tampered)), { refused: { status: 401, code: 'TICKET_INVALID' } });
  });
  test('expired ticket → 401 TICKET_EXPIRED', async () => {
    const key = await readFile(join(t.dataDir, 'signing.key'));
    const expired = createTicketSigner(key, -1_000).issue(session.id as SessionId).ticket;
    assert.deepEqual(await openViewerSocket(vncUrl(session.id, expired)), { refused: { status: 401, code: 'TICKET_EXPIRED' } });
  });
  test('a ticket signed by another key → 401 TICKET_INVALID', async () => {
    const foreign = createTicketSigner(Buffer.alloc(32, 7), 60_000).issue(session.id as SessionId).ticket;
    assert.deepEqual(await openViewerSocket(vncUrl(session.id, foreign)), { refused: { status: 401, code: 'TICKET_INVALID' } });
  });
  test('ticket for another session → 403 TICKET_WRONG_SESSION', async () => {
    const other = newSessionId();
    assert.deepEqual(await openViewerSocket(vncUrl(session.id, ticket(other))), { refused: { status: 403, code: 'TICKET_WRONG_SESSION' } });
  });
  test('foreign Origin → 403 ORIGIN_NOT_ALLOWED', async () => {
    const result = await openViewerSocket(vncUrl(session.id, ticket(session.id)), { origin: 'http://evil.example' });
    assert.deepEqual(result, { refused: { status: 403, code: 'ORIGIN_NOT_ALLOWED' } });
  });
  test('wrong route → 404 ROUTE_NOT_FOUND', async () => {
    assert.deepEqual(await openViewerSocket(`${wsBase}/v1/sessions/${session.id}/nope`), { refused: { status: 404, code: 'ROUTE_NOT_FOUND' } });
  });
});

describe('after the upgrade', () => {
  test('unknown session → close 4404 SESSION_NOT_FOUND', async () => {
    const id = newSessionId();
    const opened = await openViewerSocket(vncUrl(id, ticket(id)));
    assert.ok('ws' in opened);
    assert.deepEqual(await nextClose(opened.ws), { code: 4404, reason: 'SESSION_NOT_FOUND' });
  });

  test('RFB passes through both ways, from porthole’s own origin', async () => {
    const opened = await openViewerSocket(vncUrl(session.id, ticket(session.id)), { origin: t.server.url });
    assert.ok('ws' in opened, JSON.stringify(opened));
    const reader = createReader(opened.ws);
    const size = await rfbHandshake(opened.ws, reader);
    assert.deepEqual(size, { width: 1280, height: 800 });
    opened.ws.send(setEncodingsRaw());
    opened.ws.send(framebufferUpdateRequest(false, 0, 0, 16, 16));
    const header = await reader.read(4);
    assert.equal(header[0], 0, 'FramebufferUpdate');
    opened.ws.close(1000);
    await nextClose(opened.ws);
  });

  test('idle viewers are pinged', async () => {
    const opened = await openViewerSocket(vncUrl(session.id, ticket(session.id)));
    assert.ok('ws' in opened);
    let pings = 0;
    opened.ws.on('ping', () => pings++);
    await until(
      'two pings',
      () => pings,
      (n) => n >= 2,
      2 * pingMs + 300,
      { intervalMs: 20 },
    );
    opened.ws.close(1000);
    await nextClose(opened.ws);
  });

  test('a slow reader does not make the server buffer without bound, and one that stops answering pings is dropped', async () => {
    const opened = await openViewerSocket(vncUrl(session.id, ticket(session.id)));
    assert.ok('ws' in opened);
    const ws = opened.ws;
    const reader = createReader(ws);
    const { width, height } = await rfbHandshake(ws, reader);
    ws.send(setEncodingsRaw());
    // 100 full raw frames ≈ 400 MB asked for, then stop reading: the relay must pause the sandbox side.
    for (let i = 0; i < 100; i++) ws.send(framebufferUpdateRequest(false, 0, 0, width, height));
    const rssBefore = process.memoryUsage().rss;
    ws.pause(); // stops reading: neither frames nor pings are answered
    // Within one ping interval (the relay drops a viewer only after it missed a whole one), the
    // sandbox side must be paused: polled, as a loaded machine may take a while to fill the buffers.
    // The viewer keeps asking (Xvnc may answer a burst of identical requests with one frame).
    const stats = await until(
      'the relay pauses the sandbox side',
      () => {
        const now = t.server.relay.stats().find((s) => s.sessionId === session.id);
        if (!now?.sandboxPaused) ws.send(framebufferUpdateRequest(false, 0, 0, width, height));
        return now;
      },
      (now) => now?.sandboxPaused === true,
      pingMs * 0.9,
      { intervalMs: 20 },
    );
    assert.ok(stats, 'connection registered');
    const grew = process.memoryUsage().rss - rssBefore;
    assert.ok(stats.sandboxPaused, 'the sandbox side is paused while the viewer does not read');
    assert.ok(stats.bytesToViewer < 100 * width * height * 4, `relayed only what the viewer could take: ${stats.bytesToViewer}`);
    assert.ok(stats.maxBufferedAmount < 8 * 1024 * 1024, `buffered towards the viewer at most ${stats.maxBufferedAmount} bytes`);
    assert.ok(grew < 64 * 1024 * 1024, `server RSS grew ${Math.round(grew / 1048576)} MiB`);
    const closed = nextClose(ws, 3 * pingMs);
    await until(
      'the unresponsive viewer is dropped',
      () => t.server.relay.stats().some((s) => s.sessionId === session.id),
      (isHeld) => !isHeld,
      3 * pingMs,
      { intervalMs: 50 },
    );
    ws.resume();
    await closed;
  });

  test('ending the session closes its viewer with 4410 SESSION_ENDED', async () => {
    const own = await t.readySession();
    const opened = await openViewerSocket(vncUrl(own.id, ticket(own.id)));
    assert.ok('ws' in opened);
    await t.waitForState(own.id, ['authenticating'], 5_000);
    const closed = nextClose(opened.ws);
    await t.api.endSession(own.id);
    assert.deepEqual(await closed, { code: closeCodeOf('SESSION_ENDED'), reason: 'SESSION_ENDED' });
    const again = await openViewerSocket(vncUrl(own.id, ticket(own.id)));
    assert.ok('ws' in again);
    assert.deepEqual(await nextClose(again.ws), { code: 4410, reason: 'SESSION_ENDED' }, 'a late viewer learns it too');
  });
});

test('/metrics reports sessions by state, start-up steps, relay traffic and errors by code', async () => {
  const response = await fetch(`${t.server.url}/metrics`, { headers: { authorization: `Bearer ${testApiKey}` } });
  assert.equal(response.status, 200);
  const text = await response.text();
  const value = (pattern: RegExp) => Number(pattern.exec(text)?.[1] ?? NaN);
  assert.ok(value(/^porthole_sessions\{state="ready"\} (\d+)/m) >= 1, 'a ready session is counted');
  assert.ok(value(/^porthole_sessions\{state="ended"\} (\d+)/m) >= 1, 'the ended one too');
  assert.ok(value(/^porthole_start_step_seconds_count\{step="agent",outcome="ok"\} (\d+)/m) >= 2);
  assert.ok(value(/^porthole_relay_connections_total (\d+)/m) >= 3);
  assert.ok(value(/^porthole_relay_bytes_total\{direction="to_viewer"\} (\d+)/m) > 1_000_000, 'the slow reader moved megabytes');
  assert.ok(value(/^porthole_errors_total\{code="TICKET_INVALID",surface="relay"\} (\d+)/m) >= 2);
  assert.ok(value(/^porthole_session_transitions_total\{to="ended",reason="user"\} (\d+)/m) >= 1);
});
