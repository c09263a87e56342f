import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { SessionId } from '../../src/protocol/ids.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { nextClose, openViewerSocket } from '../support/ws.js';

// Each timeout ends the session with its own reason and close code, as an event in the timeline.

function viewerUrl(t: TestServer, id: string) {
  return `${t.server.url.replace(/^http/, 'ws')}/v1/sessions/${id}/vnc?ticket=${encodeURIComponent(t.server.tickets.issue(id as SessionId).ticket)}`;
}

async function endedEvent(t: TestServer, id: string) {
  const { events } = await t.api.listEvents(id);
  return events.find((e) => e.type === 'session.ended');
}

test('idle timeout: a session with no viewer ends (idle_timeout); a connected viewer keeps it alive', async () => {
  const idleMs = 1_500;
  const t = await startTestServer('timeouts-idle', { PORTHOLE_IDLE_TIMEOUT_MS: String(idleMs), PORTHOLE_RECONCILE_INTERVAL_MS: '200' });
  try {
    const watched = await t.readySession();
    const opened = await openViewerSocket(viewerUrl(t, watched.id));
    assert.ok('ws' in opened);
    const unwatched = await t.readySession();
    const ended = await t.waitForState(unwatched.id, ['ended'], idleMs + 5_000);
    assert.equal(ended.reason, 'idle_timeout');
    assert.equal((await endedEvent(t, unwatched.id))?.reason, 'idle_timeout');
    assert.equal((await t.api.getSession(watched.id)).state, 'authenticating', 'the watched session lives on');

    // The viewer leaves: the idle clock starts then.
    const left = Date.now();
    opened.ws.close(1000);
    await nextClose(opened.ws);
    const idle = await t.waitForState(watched.id, ['ended'], idleMs + 5_000);
    assert.equal(idle.reason, 'idle_timeout');
    assert.ok(Date.now() - left >= idleMs - 100, 'not before the idle time passed');
    const late = await openViewerSocket(viewerUrl(t, watched.id));
    assert.ok('ws' in late);
    assert.deepEqual(await nextClose(late.ws), { code: 4408, reason: 'SESSION_IDLE_TIMEOUT' });
  } finally {
    await t.stop();
  }
});

test('max lifetime: a session older than the limit ends (max_lifetime) and its viewer closes 4410 SESSION_EXPIRED', async () => {
  const t = await startTestServer('timeouts-lifetime', { PORTHOLE_MAX_LIFETIME_MS: '3000', PORTHOLE_RECONCILE_INTERVAL_MS: '200' });
  try {
    const session = await t.readySession();
    const opened = await openViewerSocket(viewerUrl(t, session.id));
    assert.ok('ws' in opened);
    assert.deepEqual(await nextClose(opened.ws, 10_000), { code: 4410, reason: 'SESSION_EXPIRED' });
    const ended = await t.api.getSession(session.id);
    assert.equal(ended.state, 'ended');
    assert.equal(ended.reason, 'max_lifetime');
    assert.equal((await endedEvent(t, session.id))?.reason, 'max_lifetime');
  } finally {
    await t.stop();
  }
});
