import { createHmac } from 'node:crypto';

// Standard Webhooks (https://www.standardwebhooks.com/, spec v1): the signed content is
// `${webhook-id}.${webhook-timestamp}.${body}`, the key is the secret's base64 after `whsec_`, the
// signature HMAC-SHA256 in base64, sent as `v1,<signature>`; several space-separated while a
// secret is being rotated, so a receiver holding either the old or the new secret verifies.

export function signWebhook(secrets: readonly string[], id: string, timestampSeconds: number, body: string): string {
  return secrets
    .map((secret) => {
      const key = Buffer.from(secret.startsWith('whsec_') ? secret.slice('whsec_'.length) : secret, 'base64');
      return `v1,${createHmac('sha256', key).update(`${id}.${timestampSeconds}.${body}`).digest('base64')}`;
    })
    .join(' ');
}

/** The headers of one attempt (the id stays the same on every retry; the timestamp is the attempt's). */
export function webhookHeaders(secrets: readonly string[], id: string, body: string, now = Date.now()): Record<string, string> {
  const timestamp = Math.floor(now / 1000);
  return {
    'content-type': 'application/json',
    'user-agent': 'porthole-webhooks',
    'webhook-id': id,
    'webhook-timestamp': String(timestamp),
    'webhook-signature': signWebhook(secrets, id, timestamp, body),
  };
}
