import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import type { NewEvent } from '../../src/store/store.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { until } from '../support/until.js';
import { closeViewer, connectViewer, expectFramebufferUpdate, openViewerSocket, viewerSocketUrl } from '../support/ws.js';

// A session shows its desktop as soon as its agent and VNC server answer, while its sign-in is
// still being started: the relay lets a viewer in, and ready then goes straight to authenticating.
// Before the desktop answers, a viewer is still told 4409 SESSION_NOT_READY. The login step is held
// here by holding the store's write of the agent's `login.started` event (the agent waits for it).

let t: TestServer;
after(() => t?.stop());

test('a viewer watches the desktop while the sign-in starts; the session is authenticating once ready', async () => {
  t = await startTestServer('early-view');
  const store = t.server.store;
  const append = store.appendEvent.bind(store);
  let release = (): void => {};
  const held = new Promise<void>((resolve) => (release = resolve));
  let isLoginHeld = false;
  store.appendEvent = async (id, event: NewEvent) => {
    if (event.type === 'login.started') {
      isLoginHeld = true;
      await held;
    }
    return append(id, event);
  };
  try {
    const created = await t.api.createSession({ provider: 'demo' });
    const { ticket } = await t.api.createTicket(created.id);
    const early = await openViewerSocket(viewerSocketUrl(t.server.url, created.id, ticket));
    // The first look comes before the desktop answers: not ready yet, said as such.
    if (!('refused' in early)) {
      const closed = await new Promise<number>((resolve) => early.ws.once('close', resolve));
      assert.equal(closed, 4409, 'SESSION_NOT_READY before the desktop answers');
    }

    await until(
      'the login step held',
      () => isLoginHeld,
      (held) => held,
      60_000,
    );
    assert.equal((await t.api.getSession(created.id)).state, 'starting');
    const viewer = await connectViewer(viewerSocketUrl(t.server.url, created.id, (await t.api.createTicket(created.id)).ticket));
    await expectFramebufferUpdate(viewer);
    assert.equal((await t.api.getSession(created.id)).state, 'starting', 'the desktop is shown while the session still starts');

    release();
    const ready = await t.waitForState(created.id, ['authenticating', 'failed', 'ended'], 30_000);
    assert.equal(ready.state, 'authenticating', 'ready, and someone already watches');
    const { events } = await t.api.listEvents(created.id);
    const moves = events.filter((e) => e.type.startsWith('session.')).map((e) => `${e.from ?? ''}→${e.to}`);
    assert.deepEqual(moves.slice(-2), ['starting→ready', 'ready→authenticating']);
    await closeViewer(viewer);
  } finally {
    release();
    store.appendEvent = append;
  }
});
