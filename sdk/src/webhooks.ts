import { Webhook, WebhookVerificationError as SignatureError } from 'standardwebhooks';
import type { Session } from './types.js';

// porthole's webhooks follow the Standard Webhooks spec: headers `webhook-id`, `webhook-timestamp`
// (unix seconds) and `webhook-signature` (`v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, several
// separated by spaces while the server rotates its secret). The `standardwebhooks` library checks
// the signature in constant time; this module adds rotation on the receiving side (several
// secrets, any one passes) and a typed payload.

export const webhookEventTypes = ['session.ready', 'session.completed', 'session.failed', 'session.ended', 'credential.needs_login'] as const;
export type WebhookEventType = (typeof webhookEventTypes)[number];

/**
 * A verified webhook's body. `timestamp` is when the event happened (ISO 8601); `data.session` the
 * session as it was then, `data.eventSeq` the seq of the event on its timeline (events(id, {after})
 * resumes from it).
 */
export interface WebhookEvent<T extends WebhookEventType = WebhookEventType> {
  type: T;
  timestamp: string;
  data: { session: Session; eventSeq: number };
}

/** How far in the past or future a webhook's timestamp may be: the spec's five minutes, against replays. */
export const webhookToleranceSeconds = 5 * 60;

export type WebhookFailure = 'missing-headers' | 'timestamp' | 'signature';

/** The webhook is not porthole's, was changed on the way, or is a replay: answer 400 and do nothing. */
export class WebhookVerificationError extends Error {
  override readonly name = 'WebhookVerificationError';
  /** What failed, for logs. */
  readonly reason: WebhookFailure;
  constructor(reason: WebhookFailure, message: string) {
    super(message);
    this.reason = reason;
  }
}

/** Incoming headers: a fetch `Headers`, or Node's `request.headers` (names in any case). */
export type WebhookHeaders = Headers | Record<string, string | string[] | undefined>;

/**
 * Checks a webhook porthole sent and returns its payload. `rawBody` must be the body exactly as
 * received (parse it after: re-serialized JSON no longer matches the signature). `secret` is the
 * `whsec_…` secret (PORTHOLE_WEBHOOK_SECRET, or the one `createKey` returned); several (an array,
 * or separated by spaces) while rotating: any one valid passes. Throws WebhookVerificationError on
 * missing headers, a timestamp more than five minutes off, or no matching signature.
 */
export function verifyWebhook(rawBody: string | Uint8Array, headers: WebhookHeaders, secret: string | readonly string[]): WebhookEvent {
  const secrets = (typeof secret === 'string' ? [secret] : secret).flatMap((s) => s.split(/\s+/)).filter((s) => s.length > 0);
  if (secrets.length === 0) throw new TypeError('verifyWebhook: no secret given');
  const id = header(headers, 'webhook-id');
  const timestamp = header(headers, 'webhook-timestamp');
  const signature = header(headers, 'webhook-signature');
  if (!id || !timestamp || !signature) {
    const missing = [!id && 'webhook-id', !timestamp && 'webhook-timestamp', !signature && 'webhook-signature'].filter(Boolean);
    throw new WebhookVerificationError('missing-headers', `The webhook has no ${missing.join(', ')} header.`);
  }
  const seconds = /^\d+$/.test(timestamp) ? Number(timestamp) : Number.NaN;
  const skew = Math.floor(Date.now() / 1000) - seconds;
  if (!Number.isFinite(seconds) || Math.abs(skew) > webhookToleranceSeconds) {
    throw new WebhookVerificationError(
      'timestamp',
      Number.isFinite(seconds)
        ? `The webhook's timestamp is ${Math.abs(skew)} s in the ${skew > 0 ? 'past' : 'future'} (at most ${webhookToleranceSeconds} s): a replay, or a clock far off.`
        : `The webhook's timestamp "${timestamp.slice(0, 40)}" is not unix seconds.`,
    );
  }
  const body = typeof rawBody === 'string' ? rawBody : new TextDecoder().decode(rawBody);
  const normalized = { 'webhook-id': id, 'webhook-timestamp': timestamp, 'webhook-signature': signature };
  for (const candidate of secrets) {
    try {
      return new Webhook(candidate).verify(body, normalized) as WebhookEvent;
    } catch (error) {
      if (!(error instanceof SignatureError)) throw error;
    }
  }
  throw new WebhookVerificationError(
    'signature',
    `No signature of the webhook matches ${secrets.length === 1 ? 'the secret' : `any of the ${secrets.length} secrets`}: a wrong secret, or a changed body.`,
  );
}

function header(headers: WebhookHeaders, name: string): string | undefined {
  if (typeof (headers as Headers).get === 'function' && typeof (headers as Headers).has === 'function') return (headers as Headers).get(name) ?? undefined;
  for (const [key, value] of Object.entries(headers as Record<string, string | string[] | undefined>)) {
    if (key.toLowerCase() !== name) continue;
    // A header sent twice: Node gives an array for some names; signatures join as the spec separates them.
    return Array.isArray(value) ? value.join(' ') : value;
  }
  return undefined;
}
