import assert from 'node:assert/strict';
import { createHmac, randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { verifyWebhook, WebhookVerificationError, type WebhookEvent } from '@porthole/sdk';

// verifyWebhook against webhooks signed here by hand, per the Standard Webhooks spec (HMAC-SHA256
// of "id.timestamp.body" under the base64 secret), not by the library the SDK verifies with.

const newSecret = () => `whsec_${randomBytes(24).toString('base64')}`;
const sign = (secret: string, id: string, timestamp: number, body: string) =>
  `v1,${createHmac('sha256', Buffer.from(secret.slice('whsec_'.length), 'base64'))
    .update(`${id}.${timestamp}.${body}`)
    .digest('base64')}`;

const session = {
  id: 'ses_00000000000000000001',
  state: 'completed',
  provider: 'demo',
  userId: 'user-1',
  reason: null,
  detail: null,
  sandboxId: null,
  version: 4,
  createdAt: '2026-11-27T18:00:00.000Z',
  updatedAt: '2026-11-27T18:01:00.000Z',
  credential: null,
};
const body = JSON.stringify({ type: 'session.completed', timestamp: '2026-11-27T18:01:00.000Z', data: { session, eventSeq: 7 } });
const now = () => Math.floor(Date.now() / 1000);

function signed(secrets: string[], options: { body?: string; timestamp?: number; id?: string } = {}) {
  const id = options.id ?? `msg_${randomBytes(8).toString('hex')}`;
  const timestamp = options.timestamp ?? now();
  return {
    'webhook-id': id,
    'webhook-timestamp': String(timestamp),
    'webhook-signature': secrets.map((s) => sign(s, id, timestamp, options.body ?? body)).join(' '),
  };
}

function rejects(reason: WebhookVerificationError['reason'], run: () => unknown) {
  assert.throws(run, (error: unknown) => {
    assert.ok(error instanceof WebhookVerificationError, `a WebhookVerificationError, not ${String(error)}`);
    assert.equal(error.reason, reason, error.message);
    return true;
  });
}

describe('verifyWebhook', () => {
  const secret = newSecret();

  test('a correctly signed body → the parsed, typed payload', () => {
    const event: WebhookEvent = verifyWebhook(body, signed([secret]), secret);
    assert.equal(event.type, 'session.completed');
    assert.equal(event.timestamp, '2026-11-27T18:01:00.000Z');
    assert.equal(event.data.session.id, session.id);
    assert.equal(event.data.session.state, 'completed');
    assert.equal(event.data.eventSeq, 7);
  });

  test('the body as bytes, and the headers as a fetch Headers or Node headers in any case, work alike', () => {
    const headers = signed([secret]);
    assert.equal(verifyWebhook(new TextEncoder().encode(body), new Headers(headers), secret).type, 'session.completed');
    assert.equal(verifyWebhook(Buffer.from(body), headers, secret).type, 'session.completed');
    const shouting = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toUpperCase(), v]));
    assert.equal(verifyWebhook(body, shouting, secret).type, 'session.completed');
  });

  test('a tampered body is refused', () => {
    rejects('signature', () => verifyWebhook(body.replace('user-1', 'user-2'), signed([secret]), secret));
  });

  test('a wrong secret is refused', () => {
    rejects('signature', () => verifyWebhook(body, signed([secret]), newSecret()));
  });

  test('an old timestamp (a replay) is refused, and so is one far in the future', () => {
    rejects('timestamp', () => verifyWebhook(body, signed([secret], { timestamp: now() - 301 }), secret));
    rejects('timestamp', () => verifyWebhook(body, signed([secret], { timestamp: now() + 301 }), secret));
    // A replay with the old id and signature under a new timestamp no longer matches.
    const old = signed([secret], { timestamp: now() - 600 });
    rejects('signature', () => verifyWebhook(body, { ...old, 'webhook-timestamp': String(now()) }, secret));
    // Within the tolerance it passes.
    assert.equal(verifyWebhook(body, signed([secret], { timestamp: now() - 240 }), secret).type, 'session.completed');
  });

  test('missing headers are refused, naming them', () => {
    const { 'webhook-signature': _drop, ...unsigned } = signed([secret]);
    assert.throws(() => verifyWebhook(body, unsigned, secret), /webhook-signature/);
    rejects('missing-headers', () => verifyWebhook(body, {}, secret));
    rejects('timestamp', () => verifyWebhook(body, { ...signed([secret]), 'webhook-timestamp': 'yesterday' }, secret));
  });

  test('rotation: with two secrets, a webhook signed by the second alone passes; the server signing with both passes either', () => {
    const previous = newSecret();
    const next = newSecret();
    assert.equal(verifyWebhook(body, signed([next]), [previous, next]).type, 'session.completed');
    assert.equal(verifyWebhook(body, signed([next]), `${previous} ${next}`).type, 'session.completed', 'space-separated, as PORTHOLE_WEBHOOK_SECRET');
    const both = signed([previous, next]);
    assert.equal(verifyWebhook(body, both, previous).type, 'session.completed');
    assert.equal(verifyWebhook(body, both, next).type, 'session.completed');
    rejects('signature', () => verifyWebhook(body, signed([next]), [previous, newSecret()]));
    assert.throws(() => verifyWebhook(body, signed([next]), []), TypeError);
  });
});
