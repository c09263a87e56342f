import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { AppError } from '../../src/protocol/errors.js';
import { newSessionId } from '../../src/protocol/ids.js';
import { createTicketSigner, maxTicketChainMs } from '../../src/server/tickets.js';

// The signer on a clock the test moves: a chain of renewals carries the time it began and ends
// after maxChainMs (at most 12 h) however often it is renewed; dashboard logins can be revoked.

const ttlMs = 60_000;
const hour = 3600_000;

function signer(maxChainMs?: number) {
  let clock = Date.parse('2026-01-01T00:00:00Z');
  const tickets = createTicketSigner(randomBytes(32), ttlMs, { ...(maxChainMs === undefined ? {} : { maxChainMs }), now: () => clock });
  return { tickets, advance: (ms: number) => (clock += ms), now: () => clock };
}

const codeOf = (fn: () => unknown) => {
  try {
    fn();
  } catch (error) {
    return error instanceof AppError ? error.code : String(error);
  }
  return null;
};

test('a renewal keeps its chain’s start; at maxChainMs the chain is refused TICKET_RENEWAL_LIMIT, however fresh its ticket', () => {
  const { tickets, advance, now } = signer(hour);
  const id = newSessionId();
  const startedAt = now();
  let { ticket } = tickets.issue(id);
  // Renew at each half-life, as the viewer page does, up to the end of the hour.
  while (now() + ttlMs / 2 < startedAt + hour) {
    advance(ttlMs / 2);
    const { chainStartedAt } = tickets.verify(ticket, id);
    assert.equal(chainStartedAt, startedAt);
    const renewed = tickets.renew(id, chainStartedAt);
    assert.equal(renewed.expiresAt.getTime(), now() + ttlMs);
    ticket = renewed.ticket;
  }
  advance(startedAt + hour - now());
  const { chainStartedAt } = tickets.verify(ticket, id);
  assert.equal(chainStartedAt, startedAt, 'the newest ticket still names the first one’s time');
  assert.equal(
    codeOf(() => tickets.renew(id, chainStartedAt)),
    'TICKET_RENEWAL_LIMIT',
  );
  assert.equal(
    codeOf(() => tickets.verify(ticket, id)),
    null,
    'the ticket itself lives out its TTL',
  );
  const fresh = tickets.issue(id);
  assert.equal(tickets.verify(fresh.ticket, id).chainStartedAt, now(), 'issue starts a new chain');
});

test('the chain never outlasts 12 h, even when sessions may live longer', () => {
  const { tickets, advance, now } = signer(48 * hour);
  const id = newSessionId();
  const startedAt = now();
  advance(maxTicketChainMs - 1);
  assert.equal(
    codeOf(() => tickets.renew(id, startedAt)),
    null,
  );
  advance(1);
  assert.equal(
    codeOf(() => tickets.renew(id, startedAt)),
    'TICKET_RENEWAL_LIMIT',
  );
  assert.equal(maxTicketChainMs, 12 * hour);
});

test('the chain’s start is signed: editing it makes the ticket invalid, and the old five-part format is refused', () => {
  const { tickets } = signer(hour);
  const id = newSessionId();
  const { ticket } = tickets.issue(id);
  const parts = ticket.split('.');
  assert.equal(parts.length, 6);
  const moved = [...parts.slice(0, 3), (Date.now() + hour).toString(36), ...parts.slice(4)].join('.');
  assert.equal(
    codeOf(() => tickets.verify(moved, id)),
    'TICKET_INVALID',
  );
  const fivePart = [...parts.slice(0, 3), ...parts.slice(4)].join('.');
  assert.equal(
    codeOf(() => tickets.verify(fivePart, id)),
    'TICKET_INVALID',
  );
});

test('a revoked dashboard login is refused until it would have expired anyway; others are not', () => {
  const { tickets, advance } = signer();
  const a = tickets.issueLogin(hour);
  const b = tickets.issueLogin(hour);
  assert.ok(tickets.isValidLogin(a) && tickets.isValidLogin(b));
  tickets.revokeLogin(a);
  tickets.revokeLogin(a); // idempotent
  tickets.revokeLogin('dash.admin.x.y.z.w'); // not a login: ignored
  tickets.revokeLogin(undefined);
  assert.equal(tickets.isValidLogin(a), false);
  assert.equal(tickets.isValidLogin(b), true);
  advance(hour);
  assert.equal(tickets.isValidLogin(b), false, 'expired');
});

test('a viewer ticket names its session’s node and generation; the same key checks it anywhere; a node id with dots survives', () => {
  const key = randomBytes(32);
  const issuing = createTicketSigner(key, ttlMs);
  const checking = createTicketSigner(key, ttlMs);
  const id = newSessionId();
  const node = { id: 'ip-10-0-3-7.eu-west-1.compute.internal', generation: 4 };
  const { ticket } = issuing.issue(id, node);
  assert.deepEqual(checking.verify(ticket, id).node, node);
  assert.deepEqual(checking.verify(issuing.renew(id, Date.now(), node).ticket, id).node, node);
  assert.equal(checking.verify(issuing.issue(id).ticket, id).node, null, 'an all-in-one’s ticket names no node');
  assert.equal(
    codeOf(() => checking.verify(ticket, newSessionId())),
    'TICKET_WRONG_SESSION',
  );
  // The node and generation are signed: a ticket moved to another node does not verify.
  const [purpose, subject, ...rest] = ticket.split('.');
  const moved = [purpose, subject?.replace(/~4$/, '~5'), ...rest].join('.');
  assert.notEqual(moved, ticket);
  assert.equal(
    codeOf(() => checking.verify(moved, id)),
    'TICKET_INVALID',
  );
  assert.equal(
    codeOf(() => createTicketSigner(randomBytes(32), ttlMs).verify(ticket, id)),
    'TICKET_INVALID',
    'another cluster’s key',
  );
});
