import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import { agentEventLimits } from '../../src/protocol/agent.js';
import { newSessionId, type SessionId } from '../../src/protocol/ids.js';
import type { SessionEvent } from '../../src/protocol/session.js';
import { hashAgentToken } from '../../src/server/sessions/agent-token.js';
import { demoSignIn } from '../support/demo-sign-in.js';
import { startTestServer, testApiKey, type TestServer } from '../support/server.js';
import { elapse } from '../support/until.js';

// The agent channel under abuse: whoever holds a sandbox token (the person in the sandbox can reach
// it) must not be able to fill the timeline. Events are capped in size, rate and number per
// session, and the timeline is read a page at a time. The sessions here have no sandbox (made in
// the store, moved to ready): the agent routes only need the session and its token hash, and no
// reconcile pass runs during the test to end them.

let t: TestServer;

before(async () => {
  t = await startTestServer('agent-events', { PORTHOLE_RECONCILE_INTERVAL_MS: '3600000' });
});
after(() => t?.stop());

async function sessionWithToken(): Promise<{ id: SessionId; token: string }> {
  const id = newSessionId();
  const created = await t.server.store.createSession({ id, provider: 'demo', userId: null });
  await t.server.store.transition(id, { from: 'starting', to: 'ready', expectVersion: created.version, reason: 'desktop_answered' });
  const token = randomBytes(32).toString('base64url');
  await t.server.store.setAgentTokenHash(id, hashAgentToken(token));
  return { id, token };
}

function postEvent(id: string, token: string, body: unknown): Promise<Response> {
  return fetch(`${t.server.url}/v1/agent/sessions/${id}/events`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify(body),
  });
}

async function outcome(
  response: Response,
): Promise<{ status: number; code: string | null; retryAfter: string | null; details: Record<string, unknown> | undefined }> {
  const text = await response.text();
  const error = text ? (JSON.parse(text) as { error?: { code: string; details?: Record<string, unknown> } }).error : undefined;
  return { status: response.status, code: error?.code ?? null, retryAfter: response.headers.get('retry-after'), details: error?.details };
}

const agentEventCount = async (id: SessionId) => (await t.server.store.listEvents(id)).filter((e) => e.type.startsWith('login.')).length;

test('a flood is cut after the burst with 429 AGENT_EVENTS_RATE_LIMITED and a Retry-After; the bucket refills', async () => {
  const { id, token } = await sessionWithToken();
  // All at once, as a flood comes: what passes is the burst plus what the bucket refilled meanwhile (a slow host takes longer to answer 60).
  const started = performance.now();
  const results = await Promise.all(
    Array.from({ length: 60 }, (_, i) => postEvent(id, token, { type: 'login.waiting', details: { waitingFor: `step ${i}` } }).then(outcome)),
  );
  const refilled = Math.ceil((agentEventLimits.perSecond * (performance.now() - started)) / 1000);
  const statuses = results.map((r) => r.status).join(' ');
  const accepted = results.filter((r) => r.status === 204).length;
  assert.ok(accepted >= agentEventLimits.burst, `the burst goes through: ${statuses}`);
  assert.ok(accepted <= agentEventLimits.burst + refilled, `no more than the burst and the refill (${refilled}): ${statuses}`);
  const limited = results.filter((r) => r.status === 429);
  assert.equal(limited.length, results.length - accepted, `the rest are refused: ${statuses}`);
  for (const r of limited) {
    assert.equal(r.code, 'AGENT_EVENTS_RATE_LIMITED');
    assert.match(r.retryAfter ?? '', /^[1-9]\d*$/, 'Retry-After in whole seconds');
  }
  const stored = await agentEventCount(id);
  assert.equal(stored, results.filter((r) => r.status === 204).length, 'only accepted events were recorded');
  assert.ok(stored <= agentEventLimits.burst + refilled && stored < 60, `about a burst was stored (and the refill meanwhile), not 60: ${stored}`);

  await elapse(Number(limited.at(-1)!.retryAfter) * 1000, "the rate limit's Retry-After");
  assert.equal(
    (await postEvent(id, token, { type: 'login.waiting', details: { waitingFor: 'after the wait' } })).status,
    204,
    'after Retry-After the next one fits',
  );
});

test('the red team’s flood (61 KB events as fast as possible) stores nothing: 400 AGENT_EVENT_TOO_LARGE, then 429', async () => {
  const { id, token } = await sessionWithToken();
  const huge = { type: 'login.waiting', details: Object.fromEntries(Array.from({ length: 61 }, (_, i) => [`k${i}`, 'x'.repeat(1000)])) };
  const started = performance.now();
  const results = await Promise.all(Array.from({ length: 100 }, () => postEvent(id, token, huge).then(outcome)));
  const codes = new Set(results.map((r) => `${r.status} ${r.code}`));
  assert.deepEqual([...codes].sort(), ['400 AGENT_EVENT_TOO_LARGE', '429 AGENT_EVENTS_RATE_LIMITED']);
  assert.equal(await agentEventCount(id), 0);
  assert.ok(performance.now() - started < 20_000);
});

test('an oversized event is 400 AGENT_EVENT_TOO_LARGE naming the limit: a long string, or details over 4 KiB', async () => {
  const { id, token } = await sessionWithToken();
  const longString = await outcome(await postEvent(id, token, { type: 'login.failed', details: { error: 'e'.repeat(agentEventLimits.maxStringChars + 1) } }));
  assert.deepEqual([longString.status, longString.code], [400, 'AGENT_EVENT_TOO_LARGE']);
  assert.match(String(longString.details?.limit), /1024 characters per string/);
  const manyStrings = Object.fromEntries(Array.from({ length: 5 }, (_, i) => [`part${i}`, 'p'.repeat(900)]));
  const tooMany = await outcome(await postEvent(id, token, { type: 'login.waiting', details: manyStrings }));
  assert.deepEqual([tooMany.status, tooMany.code], [400, 'AGENT_EVENT_TOO_LARGE']);
  assert.match(String(tooMany.details?.limit), /4096 bytes/);
  // Multi-byte text counts in bytes: 1,024 characters of 4 bytes each are too many.
  const emoji = await outcome(await postEvent(id, token, { type: 'login.waiting', details: { a: '😀'.repeat(512), b: '😀'.repeat(512) } }));
  assert.deepEqual([emoji.status, emoji.code], [400, 'AGENT_EVENT_TOO_LARGE']);
  // At the limits is fine.
  assert.equal((await postEvent(id, token, { type: 'login.failed', details: { error: 'e'.repeat(agentEventLimits.maxStringChars) } })).status, 204);
  assert.equal(await agentEventCount(id), 1);
});

test('after 500 agent events the agent’s events are refused with AGENT_EVENTS_LIMIT_REACHED; transitions and delivery still work', async () => {
  const { id, token } = await sessionWithToken();
  for (let i = 0; i < agentEventLimits.maxPerSession - 1; i++) await t.server.store.appendEvent(id, { type: 'login.waiting', details: { i } });
  assert.equal((await postEvent(id, token, { type: 'login.waiting', details: { last: true } })).status, 204, 'the 500th fits');
  const refused = await outcome(await postEvent(id, token, { type: 'login.browser_opened', details: { host: '127.0.0.1' } }));
  assert.deepEqual([refused.status, refused.code], [429, 'AGENT_EVENTS_LIMIT_REACHED']);
  assert.equal(refused.details?.maxPerSession, 500);
  assert.equal(await agentEventCount(id), agentEventLimits.maxPerSession);

  // Transitions, the server's own events and the credential delivery are not the agent's events.
  const ready = await t.api.getSession(id);
  await t.server.store.transition(id, { from: 'ready', to: 'authenticating', expectVersion: ready.version, reason: 'viewer_connected' });
  await t.server.store.appendEvent(id, { type: 'viewer.connected', details: {} });
  assert.equal((await t.api.getSession(id)).state, 'authenticating');
  const content = JSON.stringify(await demoSignIn(t.server.demoOidc!.issuer));
  const delivered = await fetch(`${t.server.url}/v1/agent/sessions/${id}/credentials`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify({ provider: 'demo', file: 'credentials.json', content, expiresAt: null, account: null }),
  });
  assert.equal(delivered.status, 201, await delivered.text());
  assert.equal((await t.api.getSession(id)).state, 'completed');
});

test('GET …/events pages: 200 by default, at most 1000, every event exactly once across pages', async () => {
  const { id } = await sessionWithToken();
  for (let i = 0; i < 520; i++) await t.server.store.appendEvent(id, { type: i % 3 ? 'login.waiting' : 'viewer.connected', details: { i } });
  const all = await t.server.store.listEvents(id);
  assert.equal(all.length, 522, 'created, ready, and 520 more');

  const get = async (query: string) => {
    const response = await fetch(`${t.server.url}/v1/sessions/${id}/events${query}`, { headers: { authorization: `Bearer ${testApiKey}` } });
    return {
      status: response.status,
      json: (await response.json()) as { events: SessionEvent[]; hasMore: boolean; nextAfter: number; error?: { code: string } },
    };
  };
  const first = await get('');
  assert.equal(first.status, 200);
  assert.equal(first.json.events.length, 200, 'one page by default, never the whole timeline');
  assert.equal(first.json.hasMore, true);
  assert.equal(first.json.nextAfter, first.json.events.at(-1)!.seq);

  const seen: SessionEvent[] = [];
  let pages = 0;
  for (let after = 0; ; ) {
    pages++;
    const page = await get(`?after=${after}&limit=150`);
    assert.equal(page.status, 200);
    assert.ok(page.json.events.length <= 150);
    seen.push(...page.json.events);
    if (!page.json.hasMore) {
      assert.equal(page.json.nextAfter, page.json.events.at(-1)?.seq ?? after);
      break;
    }
    after = page.json.nextAfter;
  }
  assert.equal(pages, 4, '522 events in pages of 150');
  assert.deepEqual(
    seen.map((e) => e.seq),
    all.map((e) => e.seq),
    'every event once, in order',
  );

  const exact = await get(`?after=${all.at(-151)!.seq}&limit=150`);
  assert.deepEqual([exact.json.events.length, exact.json.hasMore], [150, false], 'a page that ends exactly at the last event says so');
  const past = await get(`?after=${all.at(-1)!.seq}`);
  assert.deepEqual(past.json, { events: [], hasMore: false, nextAfter: all.at(-1)!.seq });
  assert.equal((await get('?limit=1000')).json.events.length, 522);
  for (const bad of ['?limit=1001', '?limit=0', '?after=-1', '?limit=abc']) {
    const refused = await get(bad);
    assert.deepEqual([refused.status, refused.json.error?.code], [400, 'VALIDATION_FAILED'], bad);
  }

  // The CLI's client (porthole sessions events) walks the pages itself.
  assert.deepEqual((await t.api.listEvents(id)).events, all);
  assert.deepEqual((await t.api.listEvents(id, all[99]!.seq)).events, all.slice(100));
  const page = await t.api.listEventsPage(id, { after: all[9]!.seq, limit: 5 });
  assert.deepEqual(page.events, all.slice(10, 15));
  assert.equal(page.hasMore, true);
});
